"""The test data: accounts made through the service's batch endpoint when a run starts, and sessions
(access tokens) from real logins of some of them.

The password is random per run, the emails carry a run id (`loadtest-<run>-000042@example.com`), so
runs never collide and their accounts can be told apart. The seeding retries, within a bound, while
the service is not up yet. Standard library only (argon2-cffi when it happens to be there): the
Locust master runs it in its `init` event, and the tests can run it without locust.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from loadtests.service_client import ServiceClient

log = logging.getLogger(__name__)

# Items per POST /v1/users:batch: below the service's default batch_max_users (1000), and short
# requests when the service hashes each password.
BATCH_SIZE = 200


@dataclass(frozen=True)
class Session:
    """A logged-in account: what a client keeps for its token's lifetime."""

    user_id: str
    email: str
    token: str
    expires_at: float  # seconds since the epoch, from the login's expires_in


@dataclass(frozen=True)
class Accounts:
    """Every seeded account (id, email), the run's one password, and the sessions logged in at the start."""

    host: str
    run: str  # in every email of the run: loadtest-<run>-...
    password: str
    users: tuple[tuple[str, str], ...]
    sessions: tuple[Session, ...]

    def to_message(self) -> dict[str, Any]:
        """A plain dict for Locust's message to the workers (msgpack)."""
        return {
            "host": self.host,
            "run": self.run,
            "password": self.password,
            "users": [list(user) for user in self.users],
            "sessions": [asdict(session) for session in self.sessions],
        }

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Accounts:
        return cls(
            host=data["host"],
            run=data["run"],
            password=data["password"],
            users=tuple((user_id, email) for user_id, email in data["users"]),
            sessions=tuple(Session(**session) for session in data["sessions"]),
        )


def password_hasher() -> Callable[[str], str] | None:
    """argon2id at the OWASP minimum the service defaults to, or None where argon2-cffi is not installed.

    With it, the batch imports hashes computed once here; without it (the official locust image),
    the service hashes every seeded password, about 17 ms of its CPU each.
    """
    try:
        from argon2 import PasswordHasher, Type
    except ImportError:
        return None
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID).hash


def email_of(run: str, index: int) -> str:
    return f"loadtest-{run}-{index:06d}@example.com"


def seed(client: ServiceClient, count: int, session_count: int) -> Accounts:
    """`count` new accounts with one random password, and `session_count` of them logged in."""
    if count < 1 or not 1 <= session_count <= count:
        raise ValueError(f"seed at least one account and 1 to {count} sessions, not {count} and {session_count}")
    run, password = secrets.token_hex(4), secrets.token_urlsafe(18)
    hash_password = password_hasher()
    secret = {"password_hash": hash_password(password)} if hash_password else {"password": password}
    started = time.monotonic()
    users: list[tuple[str, str]] = []
    for start in range(0, count, BATCH_SIZE):
        items = [
            {"email": email_of(run, index), "name": f"Load Test {index}", **secret}
            for index in range(start, min(start + BATCH_SIZE, count))
        ]
        users += [(user["id"], user["email"]) for user in client.create_users(items)]
    sessions = tuple(log_in(client, user_id, email, password) for user_id, email in users[:session_count])
    log.info(
        "seeded %d accounts (passwords %s) and %d sessions on %s in %.1f s",
        len(users),
        "hashed here" if hash_password else "hashed by the service",
        len(sessions),
        client.host,
        time.monotonic() - started,
    )
    return Accounts(client.host, run, password, tuple(users), sessions)


def log_in(client: ServiceClient, user_id: str, email: str, password: str) -> Session:
    body = client.log_in(email, password)
    return Session(user_id, email, body["access_token"], time.time() + float(body["expires_in"]))
