"""Schema migrations through Alembic, with the scripts shipped inside the package."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from auth_service.db.engine import driver_dsn


def alembic_config(database_url: str | None = None) -> Config:
    """Alembic's configuration: the package's scripts, and the database when one is given."""
    config = Config()
    config.set_main_option("script_location", "auth_service:migrations")
    if database_url is not None:
        # ConfigParser interpolation: a literal % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (blocking: run it before serving, or in a thread)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


@contextmanager
def temporary_database(server_url: str, prefix: str, revision: str | None = "head") -> Iterator[str]:
    """A new database on that server, migrated to `revision` (None: left empty) and dropped afterwards.

    For tests and benchmarks.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_execute(server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        if revision is not None:
            upgrade(url, revision)
        yield url
    finally:
        asyncio.run(_execute(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(driver_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
