"""`migrate --check` and `wait-for-schema` as a migration Job and an initContainer run them, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import select
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

from auth_service.cli import EXIT_DATABASE_UNREACHABLE, EXIT_NOT_AT_HEAD
from auth_service.db import migrate, revision
from bench.ports import free_port
from tests.test_cli import CLI, cli_env, run_cli
from tests.utils.app import TEST_SIGNING_KEY
from tests.utils.processes import background
from tests.utils.sql import sql_connection

# A wait's answer may lag a migration by one interval plus one check; a process also takes a while to start.
INTERVAL = 0.2
PROCESS_START_SECONDS = 10
# Far below the waiter's 60 s timeout: it returns on a check after the migration, not at the end.
MIGRATION_TO_EXIT_SECONDS = 5


@pytest.fixture
def empty_database(pg_server: str) -> Iterator[str]:
    """A database that has never been migrated: no alembic_version table."""
    with migrate.temporary_database(pg_server, "auth_test", revision=None) as url:
        yield url


def env_in_test_mode(database_url: str) -> dict[str, str]:
    """The environment of a container in test mode: no development defaults, a real signing key."""
    return cli_env(
        AUTH_DATABASE_URL=database_url,
        AUTH_ENVIRONMENT="test",
        AUTH_TOKEN_KEYS=json.dumps({"test-1": TEST_SIGNING_KEY}),
        AUTH_TOKEN_ACTIVE_KID="test-1",
    )


def head() -> str:
    (only,) = revision.head_revisions()
    return only


def test_check_fails_on_an_empty_database_and_passes_after_migrate(empty_database: str) -> None:
    env = env_in_test_mode(empty_database)
    before = run_cli("migrate", "--check", env=env)
    assert before.returncode == EXIT_NOT_AT_HEAD, before
    assert before.stderr.strip().splitlines()[-1] == f"schema not at head: database at no revision, head is {head()}"

    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    after = run_cli("migrate", "--check", env=env)
    assert after.returncode == 0, after.stderr
    assert f"schema at head: database at {head()}, head is {head()}" in after.stdout


def test_check_fails_after_a_downgrade_to_base(pg_server: str) -> None:
    """The alembic_version table is there, but empty."""
    with migrate.temporary_database(pg_server, "auth_test") as url:
        migrate.downgrade(url, "base")
        checked = run_cli("migrate", "--check", env=env_in_test_mode(url))
        assert checked.returncode == EXIT_NOT_AT_HEAD, checked
        assert "database at no revision" in checked.stderr


def test_check_names_an_unreachable_database_with_its_own_exit_code() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    started = time.monotonic()
    checked = run_cli("migrate", "--check", env=env_in_test_mode(url))
    elapsed = time.monotonic() - started
    assert checked.returncode == EXIT_DATABASE_UNREACHABLE, checked
    assert checked.stderr.strip().splitlines()[-1].startswith("database unreachable: cannot connect to ")
    assert elapsed < PROCESS_START_SECONDS


def test_check_refuses_a_revision_other_than_head(database_url: str) -> None:
    checked = run_cli("migrate", "base", "--check", env=env_in_test_mode(database_url))
    assert checked.returncode == 2 and "compares with head" in checked.stderr


def test_wait_returns_at_once_when_the_schema_is_at_head(database_url: str) -> None:
    started = time.monotonic()
    waited = run_cli("wait-for-schema", "--interval", str(INTERVAL), env=env_in_test_mode(database_url))
    elapsed = time.monotonic() - started
    assert waited.returncode == 0, waited.stderr
    assert "waiting" not in waited.stdout  # the first check found it at head
    assert f"schema at head: database at {head()}" in waited.stdout
    assert elapsed < PROCESS_START_SECONDS


def test_wait_times_out_on_an_empty_database(empty_database: str) -> None:
    timeout = 1.0
    started = time.monotonic()
    command = ["wait-for-schema", "--timeout", str(timeout), "--interval", str(INTERVAL)]
    waited = run_cli(*command, env=env_in_test_mode(empty_database))
    elapsed = time.monotonic() - started
    assert waited.returncode == EXIT_NOT_AT_HEAD, waited
    assert waited.stderr.strip().splitlines()[-1] == (
        f"schema not at head after 1s: database at no revision, head is {head()}"
    )
    assert timeout <= elapsed < timeout + PROCESS_START_SECONDS


def test_a_wait_on_an_empty_database_returns_soon_after_a_migration(empty_database: str) -> None:
    with waiting_for_schema(empty_database) as waiter:
        assert first_line(waiter) == f"waiting for the schema: database at no revision, head is {head()}"
        migrate.upgrade(empty_database)  # the migration Job, from another process
        migrated_at = time.monotonic()
        assert waiter.wait(timeout=30) == 0
        lag = time.monotonic() - migrated_at
    assert lag < MIGRATION_TO_EXIT_SECONDS, f"the wait returned {lag:.1f}s after the migration"


def test_a_wait_for_a_database_not_created_yet_returns_once_it_is_migrated(pg_server: str) -> None:
    """An unreachable database is "not yet": here one that does not exist yet, as while PostgreSQL initialises."""
    name = f"auth_test_{uuid.uuid4().hex[:12]}"
    url = make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        with waiting_for_schema(url) as waiter:
            line = first_line(waiter)
            assert line.startswith("waiting for the schema: cannot connect to ") and "does not exist" in line, line
            asyncio.run(execute(pg_server, f'CREATE DATABASE "{name}"'))
            migrate.upgrade(url)
            assert waiter.wait(timeout=30) == 0
    finally:
        asyncio.run(execute(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def waiting_for_schema(database_url: str) -> Iterator[subprocess.Popen[str]]:
    """`auth-service wait-for-schema` running in the background, as an initContainer."""
    command = [CLI, "wait-for-schema", "--timeout", "60", "--interval", str(INTERVAL)]
    with background(command, env_in_test_mode(database_url)) as process:
        yield process


def first_line(process: subprocess.Popen[str]) -> str:
    """The first line the process prints (its first check's finding), within the start-up bound."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], PROCESS_START_SECONDS)
    assert readable, f"nothing printed within {PROCESS_START_SECONDS}s"
    return process.stdout.readline().rstrip("\n")


async def execute(server_url: str, statement: str) -> None:
    async with sql_connection(server_url) as conn:
        await conn.execute(statement)


def test_the_schema_commands_need_the_dsn_and_nothing_else_in_production(empty_database: str) -> None:
    """A migration Job holds the DSN and no signing key: migrate and its check run on that alone,
    while serving with the same environment is refused (the development key is a placeholder)."""
    env = cli_env(AUTH_DATABASE_URL=empty_database, AUTH_ENVIRONMENT="production")
    migrated = run_cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    checked = run_cli("migrate", "--check", env=env)
    assert checked.returncode == 0, checked.stderr
    waited = run_cli("wait-for-schema", "--timeout", "5", env=env)
    assert waited.returncode == 0, waited.stderr
    refused = run_cli("serve", env=env)
    assert refused.returncode != 0
    assert "placeholder" in refused.stderr
