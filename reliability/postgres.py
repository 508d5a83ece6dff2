"""The scenarios' databases: a fresh migrated one per scenario, a PostgreSQL of their own to stop, and
what PostgreSQL says of the service's sessions."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from auth_service.db import migrate
from auth_service.services import driver_dsn
from tests.utils.postgres import stored_ids
from tests.utils.stoppable_postgres import StoppablePostgres

# The service names its sessions so (db/engine.py), the pools' and the invalidation listener's alike.
APPLICATION_NAME = "auth-service"
SESSIONS = """
SELECT coalesce(state, 'unknown') AS state, count(*) AS sessions
FROM pg_stat_activity
WHERE datname = current_database() AND application_name = $1 AND pid <> pg_backend_pid()
GROUP BY 1
"""


@asynccontextmanager
async def fresh_database(server: str) -> AsyncIterator[str]:
    """A new database migrated to head on that server, dropped afterwards (the tests' and the bench's own)."""
    making = migrate.temporary_database(server, "auth_reliability")
    url = await asyncio.to_thread(making.__enter__)
    try:
        yield url
    finally:
        await asyncio.to_thread(making.__exit__, None, None, None)


@asynccontextmanager
async def stoppable_postgres(data_dir: Path) -> AsyncIterator[StoppablePostgres]:
    """A PostgreSQL of the scenario's own (pgserver), migrated, that it may stop and start: never the shared one."""
    server = await asyncio.to_thread(StoppablePostgres, data_dir)
    try:
        await asyncio.to_thread(migrate.upgrade, server.url)
        yield server
    finally:
        await asyncio.to_thread(server.close)
        shutil.rmtree(data_dir, ignore_errors=True)


async def sessions(database_url: str) -> dict[str, int]:
    """The service's sessions on this database by state (active, idle, idle in transaction...), and their total."""
    conn = await asyncpg.connect(driver_dsn(database_url))
    try:
        rows = await conn.fetch(SESSIONS, APPLICATION_NAME)
    finally:
        await conn.close()
    by_state = {row["state"]: int(row["sessions"]) for row in rows}
    return by_state | {"total": sum(by_state.values())}


async def fetch_value(database_url: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(driver_dsn(database_url))
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def user_count(database_url: str) -> int:
    return int(await fetch_value(database_url, "SELECT count(*) FROM users"))


async def missing_ids(database_url: str, ids: Iterable[str]) -> set[str]:
    """Which of these user ids have no row: acknowledged writes that were lost."""
    wanted = set(ids)
    return wanted - await stored_ids(database_url, wanted) if wanted else set()
