"""Whether the database's schema is at the package's head revision: checked once, or waited for.

An image's code expects the schema its migrations lead to; `migrate --check` and `wait-for-schema`
(a Kubernetes initContainer waiting for the migration Job) ask here.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from auth_service.db.engine import CONNECTION_ERRORS, is_unavailability
from auth_service.db.migrate import alembic_config

# Everything that can go wrong while opening a connection: refused, timed out, unknown host,
# authentication, a database not created yet.
CONNECT_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, sa_exc.DBAPIError, asyncpg.PostgresError)
MIGRATION_LOGGER = "alembic.runtime.migration"


class DatabaseUnreachable(Exception):
    """No connection to the database could be opened."""


class SchemaWaitTimedOut(Exception):
    """The schema did not reach head within the wait's bound."""


@dataclass(frozen=True)
class SchemaState:
    """The revisions the database is at (none before the first migration) and the package's heads."""

    current: tuple[str, ...]
    heads: tuple[str, ...]

    @property
    def at_head(self) -> bool:
        return set(self.current) == set(self.heads)

    def describe(self) -> str:
        return f"database at {_revisions(self.current)}, head is {_revisions(self.heads)}"


def head_revisions() -> tuple[str, ...]:
    """The head revisions of the migration scripts shipped in the package."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def schema_state(database_url: str, timeout: float) -> SchemaState:
    """Where the schema stands; DatabaseUnreachable when no connection opens within `timeout` seconds."""
    current = asyncio.run(_current_revisions(database_url, timeout))
    return SchemaState(current, head_revisions())


def wait_for_head(
    database_url: str,
    timeout: float,
    interval: float,
    check_timeout: float,
    report: Callable[[str], None],
) -> SchemaState:
    """Check every `interval` seconds until the schema is at head; SchemaWaitTimedOut after `timeout`.

    An unreachable database, or one not migrated yet, is "not yet". `report` hears each new reason.
    """
    deadline = time.monotonic() + timeout
    reason = "not checked"
    for _ in range(math.ceil(timeout / interval) + 1):
        remaining = deadline - time.monotonic()
        state, why_not = _look(database_url, max(0.1, min(check_timeout, remaining)))
        if state is not None and state.at_head:
            return state
        if why_not != reason:
            reason = why_not
            report(reason)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    raise SchemaWaitTimedOut(f"schema not at head after {timeout:g}s: {reason}")


def _look(database_url: str, timeout: float) -> tuple[SchemaState | None, str]:
    try:
        state = schema_state(database_url, timeout)
    except DatabaseUnreachable as exc:
        return None, str(exc)
    return state, state.describe()


async def _current_revisions(database_url: str, seconds: float) -> tuple[str, ...]:
    connect_args = {"timeout": seconds, "command_timeout": seconds}
    engine = create_async_engine(database_url, poolclass=NullPool, connect_args=connect_args)
    try:
        try:
            connection = await engine.connect()
        except CONNECT_ERRORS as exc:
            raise DatabaseUnreachable(_unreachable(database_url, exc)) from exc
        try:
            return await connection.run_sync(_read_current_heads)
        except Exception as exc:
            # A connection lost mid-query (a restarting server) is unreachable too; a bad query is not.
            if is_unavailability(exc):
                raise DatabaseUnreachable(_unreachable(database_url, exc)) from exc
            raise
        finally:
            await connection.close()
    finally:
        await engine.dispose()


def _read_current_heads(connection: Connection) -> tuple[str, ...]:
    # Alembic logs two INFO lines per context; a wait's checks every 2 s would fill its log with them.
    with _logs_at_least(logging.WARNING, MIGRATION_LOGGER):
        context = MigrationContext.configure(connection)
    # No alembic_version table yet reads as no revision.
    return tuple(context.get_current_heads())


@contextmanager
def _logs_at_least(level: int, name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        logger.setLevel(previous)


def _unreachable(database_url: str, exc: BaseException) -> str:
    where = make_url(database_url).render_as_string(hide_password=True)
    cause = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    detail = " ".join(str(cause).split()) or type(cause).__name__
    return f"cannot connect to {where}: {detail}"


def _revisions(revisions: Sequence[str]) -> str:
    return ", ".join(revisions) if revisions else "no revision"
