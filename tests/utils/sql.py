"""A plain asyncpg connection to the test database, as psql or a migration would open one."""

from __future__ import annotations

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
