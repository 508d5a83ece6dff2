"""The `auth-service` command as `make run` and operators use it: real processes, real databases."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx

from auth_service.cli import DEMO_USERS
from auth_service.services import driver_dsn
from bench.ports import free_port
from tests.utils.app import unique_email
from tests.utils.postgres import fresh_database
from tests.utils.processes import background

CLI = str(Path(sys.executable).parent / "auth-service")
START_TIMEOUT = 90  # a first start initialises the embedded cluster


def cli_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    env["AUTH_ADMIN_PORT"] = "0"  # never collide with another instance's admin port
    env.update(values)
    return env


@contextmanager
def running_cli(
    env: dict[str, str],
) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`auth-service serve --migrate --seed-demo --banner`, as `make run` starts it; yields the banner lines."""
    with background([CLI, "serve", "--migrate", "--seed-demo", "--banner"], env) as process:
        yield process, read_banner(process)


def read_banner(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the server exited early: {lines}")
        lines.append(line.rstrip("\n"))
        if "; echo" in line:  # the last line of the try-it command
            return lines
    raise AssertionError(f"no banner within {START_TIMEOUT}s: {lines}")


def wait_until_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} never became ready")


def run_cli(*arguments: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *arguments], input=stdin, env=env, capture_output=True, text=True, timeout=60)


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def test_make_run_serves_on_the_embedded_database_and_keeps_data_across_restarts(
    tmp_path: Path,
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cli_env(AUTH_DATA_DIR=str(tmp_path), AUTH_PORT=str(port), AUTH_DRAIN_DELAY_SECONDS="0.2")
    email, password = unique_email(), "kept-across-restarts"
    with running_cli(env) as (process, banner):
        assert f"  API docs:  {base}/docs" in banner
        wait_until_ready(base)
        assert_try_it_command_works(banner)
        created = httpx.post(
            f"{base}/v1/users",
            json={"email": email, "name": "Kept", "password": password},
        )
        assert created.status_code == 201
        assert stop(process) == 0
    assert not (tmp_path / "pg" / "postmaster.pid").exists(), "the embedded PostgreSQL was left running"
    with running_cli(env) as (process, _):
        wait_until_ready(base)
        login = httpx.post(f"{base}/v1/auth/token", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        assert stop(process) == 0


def assert_try_it_command_works(banner: list[str]) -> None:
    """Run the printed copy-paste command, as a person would, in bash."""
    start = next(i for i, line in enumerate(banner) if line.strip() == "try it:")
    script = "\n".join(banner[start + 1 :])
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30, check=True)
    claims = result.stdout.strip()
    assert re.search(r'"sub":"[0-9a-f-]{36}"', claims), claims
    assert '"aud":"auth-service-clients"' in claims


def test_create_user_reads_the_password_from_stdin(database_url: str) -> None:
    email = unique_email("cli")
    env = cli_env(AUTH_DATABASE_URL=database_url)
    command = ["create-user", "--email", email, "--name", "From CLI", "--password-stdin"]
    first = run_cli(*command, env=env, stdin="cli-password-123\n")
    assert first.returncode == 0, first.stderr
    again = run_cli(*command, env=env, stdin="cli-password-123\n")
    assert again.returncode != 0 and "already exists" in again.stderr
    assert asyncio.run(stored_hash(database_url, email)).startswith("$argon2id$")


def test_migrate_goes_down_to_base_and_back_to_head(pg_server: str) -> None:
    with fresh_database(pg_server) as url:
        env = cli_env(AUTH_DATABASE_URL=url)
        for arguments, expect_table in (
            (["--downgrade", "base"], False),
            (["head"], True),
        ):
            run = run_cli("migrate", *arguments, env=env)
            assert run.returncode == 0, run.stderr
            assert asyncio.run(has_users_table(url)) is expect_table


async def stored_hash(url: str, email: str) -> str:
    conn = await asyncpg.connect(driver_dsn(url))
    try:
        return str(await conn.fetchval("SELECT password_hash FROM users WHERE email = $1", email))
    finally:
        await conn.close()


async def has_users_table(url: str) -> bool:
    conn = await asyncpg.connect(driver_dsn(url))
    try:
        return bool(await conn.fetchval("SELECT to_regclass('public.users') IS NOT NULL"))
    finally:
        await conn.close()


def test_serve_runs_the_same_service_under_granian(database_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cli_env(AUTH_DATABASE_URL=database_url, AUTH_PORT=str(port), AUTH_SERVER="granian")
    process = subprocess.Popen(
        [CLI, "serve", "--seed-demo"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until_ready(base)
        email, _, password = DEMO_USERS[0]
        token = httpx.post(f"{base}/v1/auth/token", json={"email": email, "password": password}).json()["access_token"]
        verified = httpx.get(f"{base}/v1/auth/verify", headers={"Authorization": f"Bearer {token}"})
        assert verified.status_code == 200 and verified.json()["aud"] == "auth-service-clients"
        me = httpx.get(f"{base}/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert httpx.get(f"{base}/v1/users/{me.json()['id']}").json() == me.json()
        assert stop(process) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_logs_the_servers_start_and_stop_lines(database_url: str, tmp_path: Path) -> None:
    # The admin server's config once set uvicorn's shared logger to WARNING: these lines were lost.
    port = free_port()
    env = cli_env(AUTH_DATABASE_URL=database_url, AUTH_PORT=str(port), AUTH_DRAIN_DELAY_SECONDS="0.1")
    log = tmp_path / "service.log"
    with log.open("w") as sink:
        process = subprocess.Popen([CLI, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=sink, text=True)
        try:
            wait_until_ready(f"http://127.0.0.1:{port}")
            assert stop(process) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    messages = [(record["logger"], record["message"]) for record in records]
    assert ("uvicorn.error", f"Uvicorn running on http://127.0.0.1:{port} (Press CTRL+C to quit)") in messages
    assert ("uvicorn.error", "Application startup complete.") in messages
    assert ("uvicorn.error", "Shutting down") in messages
    assert ("uvicorn.error", "Application shutdown complete.") in messages
    assert [record for record in records if record["level"] == "ERROR"] == []
