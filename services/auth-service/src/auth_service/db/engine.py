"""The database: one SQLAlchemy async engine (asyncpg) and its pool, and how its faults become 503s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

import asyncpg
from prometheus_client import Histogram
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from auth_service.errors import ServiceUnavailable
from auth_service.settings import Settings

# Errors that mean "the server or the connection is gone", as opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)


def driver_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a plain libpq-style DSN that asyncpg.connect takes."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def build_engine(settings: Settings, url: str) -> AsyncEngine:
    """The engine and its pool, sized and bounded from settings."""
    timeout_ms = settings.db_statement_timeout_ms
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_acquire_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        # No pre-ping: it costs a round trip per checkout on the hot path. A dead connection is
        # invalidated on first use instead, that one request answers 503 and the next reconnects.
        pool_pre_ping=False,
        connect_args={
            "timeout": settings.db_connect_timeout_seconds,
            # Client-side bound slightly above the server's, so the server's cancel wins normally.
            "command_timeout": timeout_ms / 1000 + 1.0,
            "server_settings": {
                "statement_timeout": str(timeout_ms),
                "idle_in_transaction_session_timeout": str(max(timeout_ms * 5, 10_000)),
                "application_name": "auth-service",
            },
        },
    )


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    if isinstance(exc, sa_exc.TimeoutError):
        return ServiceUnavailable("db_pool_exhausted", "no database connection was free in time")
    if isinstance(exc, asyncpg.QueryCanceledError):
        return ServiceUnavailable("database_timeout", "the database did not answer in time")
    return ServiceUnavailable("database_unavailable", "the database is unavailable")


def is_unavailability(exc: BaseException) -> bool:
    """True for faults of the database or the pool (503), false for errors of the request or code."""
    if isinstance(exc, sa_exc.TimeoutError | asyncpg.QueryCanceledError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        cause = exc.orig.__cause__ if exc.orig is not None else None
        return isinstance(cause, (*CONNECTION_ERRORS, asyncpg.QueryCanceledError))
    return isinstance(exc, CONNECTION_ERRORS)


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Turn pool timeouts and connection faults into a fast 503; let everything else through."""
    try:
        yield
    except Exception as exc:
        if is_unavailability(exc):
            raise _unavailable(exc) from exc
        raise


class Database:
    """Owns the engine; hands out SQLAlchemy connections and, for hot reads, the asyncpg connection."""

    def __init__(self, engine: AsyncEngine, acquire_wait: Histogram | None = None) -> None:
        self.engine = engine
        self.acquire_wait = acquire_wait

    def _waited(self, started: float) -> None:
        if self.acquire_wait is not None:
            self.acquire_wait.observe(time.perf_counter() - started)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on success; faults become 503."""
        with translate_db_errors():
            started = time.perf_counter()
            async with self.engine.connect() as conn:
                self._waited(started)
                async with conn.begin():
                    yield conn

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The asyncpg connection under a pooled one, for prepared point reads.

        SQLAlchemy Core costs about 3x raw asyncpg per request on this machine; the pool, its
        bounds and its timeouts stay SQLAlchemy's.
        """
        with translate_db_errors():
            started = time.perf_counter()
            pooled = await self.engine.raw_connection()
            self._waited(started)
            try:
                yield cast(asyncpg.Connection, pooled.driver_connection)
            except CONNECTION_ERRORS:
                await greenlet_spawn(pooled.invalidate)
                raise
            finally:
                await greenlet_spawn(pooled.close)

    async def ping(self) -> None:
        """One round trip; raises ServiceUnavailable when the database cannot be reached."""
        async with self.driver_connection() as conn:
            await conn.fetchval("SELECT 1")

    def pool_status(self) -> dict[str, Any]:
        pool: Any = self.engine.pool
        return {"size": pool.size(), "checked_out": pool.checkedout(), "overflow": pool.overflow()}

    async def dispose(self) -> None:
        await self.engine.dispose()
