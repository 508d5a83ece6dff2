"""Fixtures: one migrated database per test session on a real PostgreSQL, and the running service."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.utils.app import RunningApp, make_settings, serve
from tests.utils.postgres import fresh_database, server_url
from tests.utils.redis_server import redis_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    url, embedded = server_url()
    yield url
    del embedded  # the embedded server stops with the last process using it


@pytest.fixture(scope="session")
def database_url(pg_server: str) -> Iterator[str]:
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def settings_for(database_url: str) -> Any:
    """Build test settings on the session database, with overrides."""
    return lambda **overrides: make_settings(database_url, **overrides)


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[RunningApp]:
    async with serve(make_settings(database_url)) as running:
        yield running


@pytest.fixture
def client(app: RunningApp) -> Any:
    return app.client


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis: the local one, else an embedded one; the test is skipped, saying why, when neither runs."""
    with redis_server() as (url, where):
        if url is None:
            pytest.skip(where)
        yield url
