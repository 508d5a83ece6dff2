"""The database: SQLAlchemy's async engine and its pool for writes, asyncpg's pool for the hot reads,
and how their faults become 503s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Histogram
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from auth_service.db.gate import ConnectionGate, PoolExhausted
from auth_service.errors import ServiceUnavailable
from auth_service.settings import Settings

# Errors that mean "the server or the connection is gone", as opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # Class 57, the server intervened: shut down (fast or crashed), starting up, database dropped, idle
    # session ended; its statement timeout (57014) is told apart below. Class 53, out of resources:
    # too many connections, disk full, out of memory. Each is the database's fault, not the request's.
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def driver_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as a plain libpq-style DSN that asyncpg.connect takes."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def connect_arguments(settings: Settings) -> dict[str, Any]:
    """asyncpg.connect's arguments, the same for both pools: timeouts and the session's settings."""
    timeout_ms = settings.db_statement_timeout_ms
    return {
        "timeout": settings.db_connect_timeout_seconds,
        # Client-side bound slightly above the server's, so the server's cancel wins normally.
        "command_timeout": timeout_ms / 1000 + 1.0,
        "server_settings": {
            "statement_timeout": str(timeout_ms),
            "idle_in_transaction_session_timeout": str(max(timeout_ms * 5, 10_000)),
            "application_name": "auth-service",
        },
    }


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Released connections keep their session: asyncpg's default reset is a round trip per release.

    These connections never change session state (no SET, LISTEN or advisory lock), and asyncpg still
    rolls back a transaction left open. With its pool so, a point read took 86 us of CPU against
    135 us through SQLAlchemy's pool (greenlet hops at checkout and checkin; measured on one core).
    """


async def open_read_pool(settings: Settings, url: str) -> asyncpg.Pool:
    """asyncpg's pool for point reads and bulk inserts; no connection until the first is asked for."""
    pool = asyncpg.create_pool(
        driver_dsn(url),
        min_size=0,
        max_size=settings.db_read_pool_size,
        max_inactive_connection_lifetime=settings.db_pool_recycle_seconds,
        reset=_keep_session,
        **connect_arguments(settings),
    )
    await pool  # with min_size 0 this opens nothing: it starts with the database down too
    return pool


def build_engine(settings: Settings, url: str) -> AsyncEngine:
    """The engine and its pool, sized and bounded from settings."""
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_acquire_timeout_seconds,
        pool_recycle=settings.db_pool_recycle_seconds,
        # No pre-ping: it costs a round trip per checkout on the hot path. A dead connection is
        # invalidated on first use instead, that one request answers 503 and the next reconnects.
        pool_pre_ping=False,
        connect_args=connect_arguments(settings),
    )


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    if isinstance(exc, sa_exc.TimeoutError):
        return PoolExhausted()  # SQLAlchemy's own pool wait: its connections were taken past the gate
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
    """Owns both pools: SQLAlchemy connections for writes, asyncpg connections for the hot reads.

    Each pool has a ConnectionGate in front (gate.py says why): a request waits for a connection only
    among a bounded few, and what times out in the pool behind it is a connect, not a wait.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        read_pool: asyncpg.Pool,
        settings: Settings,
        acquire_wait: Histogram | None = None,
    ) -> None:
        self.engine = engine
        self.read_pool = read_pool
        self.acquire_timeout = settings.db_pool_acquire_timeout_seconds
        self.connect_timeout = settings.db_connect_timeout_seconds
        self.acquire_wait = acquire_wait
        bounds = (settings.db_pool_max_waiters, self.acquire_timeout, settings.db_pool_overload_max_waiters)
        self.write_gate = ConnectionGate(settings.db_pool_size + settings.db_max_overflow, *bounds)
        self.read_gate = ConnectionGate(read_pool.get_max_size(), *bounds)

    @classmethod
    async def open(cls, settings: Settings, url: str, acquire_wait: Histogram | None = None) -> Database:
        read_pool = await open_read_pool(settings, url)
        return cls(build_engine(settings, url), read_pool, settings, acquire_wait)

    def _waited(self, started: float) -> None:
        if self.acquire_wait is not None:
            self.acquire_wait.observe(time.perf_counter() - started)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on success; faults become 503."""
        with translate_db_errors():
            started = time.perf_counter()
            async with self.write_gate.held(), self.engine.connect() as conn:
                self._waited(started)
                async with conn.begin():
                    yield conn

    @asynccontextmanager
    async def driver_connection(self) -> AsyncIterator[PoolConnectionProxy]:
        """An asyncpg connection of the read pool, for prepared point reads and bulk inserts.

        SQLAlchemy Core costs about 3x raw asyncpg per request on this machine, and its pool's
        checkout and checkin as much again as the query (see _keep_session).
        """
        with translate_db_errors():
            started = time.perf_counter()
            async with self.read_gate.held():
                # Past the gate a connection is free: this waits only for a connect, bounded by its
                # timeout, and a TimeoutError here means the database (translate_db_errors: 503).
                # asyncio.timeout, not acquire(timeout=): asyncpg's wait_for runs the acquire in a Task
                # of its own, and an acquire and release cost 37 us of CPU that way, 27 us this way
                # (medians of 6 alternating rounds, 2026-12-03).
                async with asyncio.timeout(self.connect_timeout):
                    connection = await self.read_pool.acquire()
                self._waited(started)
                try:
                    yield connection
                finally:
                    # A connection that broke is closed, and the pool replaces it at the next acquire.
                    await self.read_pool.release(connection)

    async def ping(self) -> None:
        """One round trip; raises ServiceUnavailable when the database cannot be reached.

        A pool with every connection busy and its waiters at their bound is a database that answers:
        readiness stays up (taking an overloaded pod out only moves its load to the others).
        """
        try:
            async with self.driver_connection() as conn:
                await conn.fetchval("SELECT 1")
        except PoolExhausted:
            return

    def pool_status(self) -> dict[str, Any]:
        pool: Any = self.engine.pool
        reads, writes, read_gate = self.read_pool, self.write_gate, self.read_gate
        return {
            "size": pool.size(),
            "open": pool.checkedin() + pool.checkedout(),
            "checked_out": pool.checkedout(),
            # QueuePool.overflow() counts from -size up (negative while fewer are open): only the excess.
            "overflow": max(0, pool.overflow()),
            "waiting": writes.waiting,
            "rejected": writes.rejected + writes.timed_out,
            "overloaded": writes.overloaded,
            "read_size": reads.get_max_size(),
            "read_open": reads.get_size(),
            "read_in_use": reads.get_size() - reads.get_idle_size(),
            "read_waiting": read_gate.waiting,
            "read_rejected": read_gate.rejected + read_gate.timed_out,
            "read_overloaded": read_gate.overloaded,
        }

    async def dispose(self) -> None:
        try:
            await asyncio.wait_for(self.read_pool.close(), self.acquire_timeout + 1)
        except TimeoutError:
            self.read_pool.terminate()
        await self.engine.dispose()
