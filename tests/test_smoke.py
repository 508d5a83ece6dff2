"""`auth-service smoke`, as a Helm test pod runs it: the real command against the service on a real socket."""

from __future__ import annotations

import asyncio
import re
import time

from bench.ports import free_port
from tests.test_cli import CLI, cli_env
from tests.utils.app import RunningApp
from tests.utils.postgres import stored_emails

SMOKE_STEPS = ["readiness: HTTP 200", "create user: HTTP 201", "issue token: HTTP 200", "verify token: HTTP 200"]


async def smoke(url: str) -> tuple[int, list[str], str]:
    """(exit code, stdout lines, stderr) of the command, run beside the test's event loop, which serves the app.

    The environment is a Helm test pod's: production, with none of the service's settings.
    """
    process = await asyncio.create_subprocess_exec(
        CLI,
        "smoke",
        "--url",
        url,
        "--timeout",
        "5",
        env=cli_env(AUTH_ENVIRONMENT="production"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode().splitlines(), err.decode()


async def test_smoke_passes_against_the_service_and_leaves_no_user(app: RunningApp, database_url: str) -> None:
    code, lines, errors = await smoke(app.url)
    assert code == 0, (lines, errors)
    assert [line.split(" (")[0] for line in lines] == [*SMOKE_STEPS, "delete user: HTTP 204", "smoke test passed"]
    created = re.fullmatch(r"create user: HTTP 201 \((smoke-[0-9a-f]{16}@example\.com)\)", lines[1])
    assert created, lines[1]
    assert await stored_emails(database_url, [created.group(1)]) == set()


async def test_smoke_fails_at_readiness_when_the_service_is_draining(app: RunningApp) -> None:
    app.services.health.start_draining()
    code, lines, errors = await smoke(app.url)
    assert code != 0
    assert lines == []
    assert errors.strip().startswith("smoke test failed at readiness: HTTP 503, expected 200: "), errors
    assert '"draining"' in errors


async def test_smoke_fails_at_readiness_when_nothing_listens() -> None:
    started = time.monotonic()
    code, lines, errors = await smoke(f"http://127.0.0.1:{free_port()}")
    assert code != 0 and lines == []
    assert errors.strip().startswith("smoke test failed at readiness: no answer from http://127.0.0.1:"), errors
    assert time.monotonic() - started < 10
