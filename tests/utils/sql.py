"""A plain asyncpg connection to the test database, as psql or a migration would open one, and a locked table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from auth_service.services import driver_dsn


@asynccontextmanager
async def sql_connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(driver_dsn(database_url))
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def users_table_locked(database_url: str) -> AsyncIterator[None]:
    """Reads and writes of users wait while this lasts: a database that does not answer, for real."""
    async with sql_connection(database_url) as conn, conn.transaction():
        await conn.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        yield


async def wait_for_lock_waiters(sql: asyncpg.Connection, count: int) -> None:
    """Until `count` sessions of this test database wait on a lock (the requests are in flight)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    deadline = time.perf_counter() + 5
    while await sql.fetchval(query) != count:
        assert time.perf_counter() < deadline, f"{count} requests never reached the database"
        await asyncio.sleep(0.01)
