"""The invalidation listener on a DSN of its own (AUTH_DATABASE_LISTENER_URL), as when the pools use PgBouncer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from auth_service.cache.invalidation import LISTENER_APPLICATION_NAME
from auth_service.settings import Settings
from tests.cache.test_coherence import COHERENCE_BOUND_SECONDS, bearer, cache_on, named, seconds_until
from tests.utils.app import create_user, login, serve
from tests.utils.sql import sql_connection

POOL_APPLICATION_NAME = "auth-service"


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with sql_connection(database_url) as conn:
        yield conn


@pytest.fixture
async def listener_url(database_url: str, sql: asyncpg.Connection) -> AsyncIterator[str]:
    """The test database's URL as a LOGIN role of its own, made for the test and dropped after it."""
    role = f"auth_listener_{uuid.uuid4().hex[:12]}"
    await sql.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        yield make_url(database_url).set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        await sql.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
        await sql.execute(f'DROP ROLE "{role}"')


def role_of(url: str) -> str:
    username = make_url(url).username
    assert username is not None
    return username


async def sessions(sql: asyncpg.Connection, application_name: str) -> list[str]:
    """The roles of this test database's sessions with that application_name."""
    query = "SELECT usename FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1"
    return [row["usename"] for row in await sql.fetch(query, application_name)]


def test_the_listener_url_is_normalised_like_the_database_url() -> None:
    settings = Settings(database_url="postgres://u@pgbouncer/d", database_listener_url="postgresql://u@primary/d")
    assert settings.database_listener_url == "postgresql+asyncpg://u@primary/d"


def test_a_non_postgres_listener_url_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="database_listener_url must be a postgresql:// URL"):
        Settings(database_listener_url="mysql://u@h/d")


async def test_the_listener_connects_as_the_listener_url_and_the_pools_as_the_database_url(
    settings_for: Any, listener_url: str, sql: asyncpg.Connection
) -> None:
    async with serve(settings_for(database_listener_url=listener_url)) as app:
        await asyncio.wait_for(app.services.listener.connected.wait(), 5)
        user = await create_user(app.client)  # a connection of SQLAlchemy's pool
        await cache_on(app, user)  # and one of asyncpg's, for the miss
        listeners = await sessions(sql, LISTENER_APPLICATION_NAME)
        pools = await sessions(sql, POOL_APPLICATION_NAME)
    assert listeners == [role_of(listener_url)]
    assert len(pools) >= 2, pools
    assert role_of(listener_url) not in pools


async def test_invalidations_reach_an_instance_listening_through_the_listener_url(
    settings_for: Any, listener_url: str
) -> None:
    async with serve(settings_for()) as writer, serve(settings_for(database_listener_url=listener_url)) as reader:
        for running in (writer, reader):
            await asyncio.wait_for(running.services.listener.connected.wait(), 5)
        user = await create_user(writer.client)
        await cache_on(reader, user)
        received = reader.services.listener.received
        token = await login(writer.client, user["email"], user["password"])
        patched = await writer.client.patch(f"/v1/users/{user['id']}", json={"name": "Renamed"}, headers=bearer(token))
        assert patched.status_code == 200, patched.text
        delay = await seconds_until(reader, user["id"], named("Renamed"))
        assert reader.services.listener.received > received
    assert delay < COHERENCE_BOUND_SECONDS
