"""What every scenario of a run shares: the PostgreSQL server, the secrets, the work directory, the witness.

One context per run of `make reliability` (and per module of the test suite): every service process of
the run signs with the same keys, exports its traces to the same receiver and logs into the same
directory, which is what the `secret` scenario greps at the end.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any

from bench.servers import signing_keys
from reliability.witness import Witness
from tests.utils.otlp_receiver import OtlpReceiver, otlp_receiver


@dataclass
class Context:
    database_server: str  # the SQLAlchemy URL of a maintenance database: the scenarios make theirs there
    work_dir: Path
    traces: OtlpReceiver
    witness: Witness = field(default_factory=Witness)
    # (AUTH_TOKEN_KEYS, AUTH_TOKEN_ACTIVE_KID): one HS256 key for the run.
    keys: tuple[str, str] = field(default_factory=signing_keys)
    batch_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    scenario: str = "run"
    # What lives as long as the run: the shared service and its database (service.shared), closed at the end.
    resources: AsyncExitStack = field(default_factory=AsyncExitStack)
    shared: dict[str, Any] = field(default_factory=dict)
    _logs: count[int] = field(default_factory=lambda: count(1))

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    def log(self, name: str) -> Path:
        """A new log file for one process of the current scenario."""
        return self.log_dir / f"{self.scenario}-{name}-{next(self._logs)}.log"

    def scratch(self, name: str) -> Path:
        """A directory of the current scenario's own (a database's data, a report)."""
        path = self.work_dir / self.scenario / name
        path.mkdir(parents=True, exist_ok=True)
        return path


@asynccontextmanager
async def open_context(database_server: str, work_dir: Path) -> AsyncIterator[Context]:
    """A context whose trace receiver runs in this event loop until the block ends."""
    async with otlp_receiver() as traces:
        context = Context(database_server, work_dir, traces)
        for key in json.loads(context.keys[0]).values():
            context.witness.secret("key", key)
        context.witness.secret("token", context.batch_token)
        async with context.resources:
            yield context
