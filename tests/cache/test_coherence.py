"""Cache coherence across instances: a write anywhere drops every instance's copy (PostgreSQL NOTIFY)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

from auth_service.cache.invalidation import LISTENER_APPLICATION_NAME
from auth_service.users import store
from tests.utils.app import RunningApp, create_user, login, serve
from tests.utils.spies import count_calls
from tests.utils.sql import sql_connection
from tests.utils.waiting import wait_until

log = logging.getLogger(__name__)

# A change made through one instance must show on the others within this bound.
COHERENCE_BOUND_SECONDS = 0.1


@pytest.fixture
async def two_apps(settings_for: Any) -> AsyncIterator[tuple[RunningApp, RunningApp]]:
    """Two instances on the same database, both listening for invalidations."""
    async with serve(settings_for()) as a, serve(settings_for()) as b:
        for running in (a, b):
            await asyncio.wait_for(running.services.listener.connected.wait(), 5)
        yield a, b


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test database, as psql or a migration would use."""
    async with sql_connection(database_url) as conn:
        yield conn


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def cache_on(app: RunningApp, user: dict[str, Any]) -> dict[str, Any]:
    """Read the user through this instance, which leaves it in the instance's cache."""
    response = await app.client.get(f"/v1/users/{user['id']}")
    assert response.status_code == 200, response.text
    assert app.services.cache.peek(user["id"])[0], "the read did not cache the user"
    body: dict[str, Any] = response.json()
    return body


async def seconds_until(app: RunningApp, user_id: str, shows: Callable[[httpx.Response], bool]) -> float:
    """Poll the instance until its answer for the user shows the change; the seconds that took."""
    start = time.perf_counter()
    while not shows(await app.client.get(f"/v1/users/{user_id}")):
        if time.perf_counter() - start > 5:
            raise AssertionError("the instance kept serving the old user for 5 s")
    return time.perf_counter() - start


def named(name: str) -> Callable[[httpx.Response], bool]:
    return lambda response: response.status_code == 200 and response.json()["name"] == name


def gone(response: httpx.Response) -> bool:
    return response.status_code == 404


async def test_a_patch_through_one_instance_shows_on_the_other_within_100ms(
    two_apps: tuple[RunningApp, RunningApp],
) -> None:
    a, b = two_apps
    user = await create_user(a.client)
    await cache_on(b, user)
    token = await login(a.client, user["email"], user["password"])
    patched = await a.client.patch(f"/v1/users/{user['id']}", json={"name": "Renamed"}, headers=bearer(token))
    assert patched.status_code == 200, patched.text
    delay = await seconds_until(b, user["id"], named("Renamed"))
    log.info("patch seen by the other instance after %.1f ms", delay * 1000)
    assert delay < COHERENCE_BOUND_SECONDS


async def test_a_delete_through_one_instance_shows_on_the_other_within_100ms(
    two_apps: tuple[RunningApp, RunningApp],
) -> None:
    a, b = two_apps
    user = await create_user(a.client)
    await cache_on(b, user)
    token = await login(a.client, user["email"], user["password"])
    body = {"current_password": user["password"]}
    deleted = await a.client.request("DELETE", f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert deleted.status_code == 204, deleted.text
    delay = await seconds_until(b, user["id"], gone)
    log.info("delete seen by the other instance after %.1f ms", delay * 1000)
    assert delay < COHERENCE_BOUND_SECONDS


async def test_a_change_made_directly_in_sql_reaches_every_instance(
    two_apps: tuple[RunningApp, RunningApp], sql: asyncpg.Connection
) -> None:
    a, b = two_apps
    user = await create_user(a.client)
    for running in (a, b):
        await cache_on(running, user)
    status = await sql.execute("UPDATE users SET name = 'Changed In SQL' WHERE id = $1", uuid.UUID(user["id"]))
    assert status == "UPDATE 1"
    delays = [await seconds_until(running, user["id"], named("Changed In SQL")) for running in (a, b)]
    log.info("SQL update seen by the instances after %s ms", [round(delay * 1000, 1) for delay in delays])
    assert max(delays) < COHERENCE_BOUND_SECONDS


async def test_200_concurrent_reads_of_an_uncached_user_make_one_query(
    settings_for: Any, sql: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fetch_user is wrapped by a spy that counts its calls and runs the real query: not a mock.

    The users table is locked from another session while the requests arrive, so that the one
    query really is still running when all 200 come in (a slow database, for real).
    """
    async with serve(settings_for(db_statement_timeout_ms=30_000)) as app:
        user = await create_user(app.client)
        queries = count_calls(monkeypatch, store.repository, "fetch_user")
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=app.url, limits=limits, timeout=30) as client:
            async with sql.transaction():
                await sql.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
                reads = [asyncio.create_task(client.get(f"/v1/users/{user['id']}")) for _ in range(200)]
                await wait_until(lambda: app.services.cache.stats.misses == 200, 20, "200 requests waiting")
            responses = await asyncio.gather(*reads)
    assert queries.calls == 1
    assert app.services.cache.stats.loads == 1
    assert [response.status_code for response in responses] == [200] * 200
    assert len({response.content for response in responses}) == 1
    assert responses[0].json()["id"] == user["id"]


async def listener_pids(sql: asyncpg.Connection) -> list[int]:
    """The backends of this test database's invalidation listeners (other databases' are not touched)."""
    rows = await sql.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
        LISTENER_APPLICATION_NAME,
    )
    return [row["pid"] for row in rows]


async def test_the_listener_reconnects_by_itself_after_its_connection_is_killed(
    settings_for: Any, sql: asyncpg.Connection
) -> None:
    async with serve(settings_for(invalidation_reconnect_seconds=0.1)) as app:
        listener = app.services.listener
        await asyncio.wait_for(listener.connected.wait(), 5)
        user = await create_user(app.client)
        await cache_on(app, user)
        (old_pid,) = await listener_pids(sql)
        reconnects = listener.reconnects

        assert await sql.fetchval("SELECT pg_terminate_backend($1)", old_pid)
        await wait_until(
            lambda: listener.reconnects > reconnects and listener.connected.is_set(), 5, "the listener reconnected"
        )

        assert app.services.cache.peek(user["id"]) == (False, None), "the gap did not clear the cache"
        assert len(app.services.cache) == 0
        new_pids = await listener_pids(sql)
        assert len(new_pids) == 1 and new_pids != [old_pid]
        await cache_on(app, user)
        await sql.execute("UPDATE users SET name = 'After The Gap' WHERE id = $1", uuid.UUID(user["id"]))
        delay = await seconds_until(app, user["id"], named("After The Gap"))
        log.info("update seen after the reconnect after %.1f ms", delay * 1000)
        assert delay < COHERENCE_BOUND_SECONDS
