"""A real PostgreSQL for the tests: the server named by AUTH_TEST_DATABASE_URL, or an embedded one."""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import asyncpg

from auth_service.db import migrate
from auth_service.db.embedded import asyncpg_url, start_embedded
from auth_service.services import driver_dsn
from auth_service.settings import Settings

TEST_DATABASE_ENV = "AUTH_TEST_DATABASE_URL"
REPO_ROOT = Path(__file__).resolve().parents[2]


def server_url() -> tuple[str, object | None]:
    """(URL of a maintenance database, embedded server handle or None)."""
    configured = os.environ.get(TEST_DATABASE_ENV)
    if configured:
        url = Settings(database_url=configured).database_url
        assert url is not None
        return url, None
    server = start_embedded(REPO_ROOT / ".data" / "test")
    return asyncpg_url(server), server


def fresh_database(server: str) -> AbstractContextManager[str]:
    """A new, migrated database on that server, dropped afterwards."""
    return migrate.temporary_database(server, "auth_test")


async def stored_emails(database_url: str, emails: Iterable[str]) -> set[str]:
    """Which of these emails (compared without case) have a row in users; lower-cased."""
    conn = await asyncpg.connect(driver_dsn(database_url))
    try:
        query = "SELECT lower(email) FROM users WHERE lower(email) = ANY($1::text[])"
        return {row[0] for row in await conn.fetch(query, [email.lower() for email in emails])}
    finally:
        await conn.close()


async def stored_ids(database_url: str, ids: Iterable[str]) -> set[str]:
    """Which of these user ids have a row in users."""
    conn = await asyncpg.connect(driver_dsn(database_url))
    try:
        rows = await conn.fetch("SELECT id::text FROM users WHERE id = ANY($1::uuid[])", list(ids))
        return {row[0] for row in rows}
    finally:
        await conn.close()
