"""Admission control: past max_in_flight, requests get 503 at once; probes are always answered."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.utils.app import RunningApp, assert_error, create_user, serve
from tests.utils.sql import sql_connection, users_table_locked, wait_for_lock_waiters

log = logging.getLogger(__name__)

# A refusal does no work: it is answered in milliseconds (generous here, for a shared machine).
REFUSAL_BOUND_SECONDS = 0.5


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with sql_connection(database_url) as conn:
        yield conn


def many_connections(app: RunningApp) -> httpx.AsyncClient:
    """A client that sends every request at once, each on its own connection."""
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    return httpx.AsyncClient(base_url=app.url, limits=limits, timeout=30)


async def open_connections(client: httpx.AsyncClient, count: int) -> None:
    """Connect beforehand (probes are never refused), so that timings are the server's answers only."""
    responses = await asyncio.gather(*(client.get("/healthz") for _ in range(count)))
    assert {response.status_code for response in responses} == {200}


async def timed(request: Any) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = await request
    return response, time.perf_counter() - start


def assert_overloaded(response: httpx.Response) -> None:
    assert_error(response, 503, "overloaded")
    assert response.headers["retry-after"] == "1"


async def test_concurrent_logins_beyond_max_in_flight_are_refused_at_once(settings_for: Any) -> None:
    # One hashing thread: each login holds its slot for an argon2id verification (tens of ms).
    async with serve(settings_for(max_in_flight=2, hash_workers=1)) as app:
        user = await create_user(app.client)
        credentials = {"email": user["email"], "password": user["password"]}
        async with many_connections(app) as client:
            await open_connections(client, 20)
            results = await asyncio.gather(*(timed(client.post("/v1/auth/token", json=credentials)) for _ in range(20)))
    served = [response for response, _ in results if response.status_code == 200]
    refused = [(response, seconds) for response, seconds in results if response.status_code != 200]
    slowest = max(seconds for _, seconds in refused)
    log.info("%d logins served, %d refused, the slowest refusal in %.0f ms", len(served), len(refused), slowest * 1000)
    assert len(served) >= 2 and len(refused) >= 1
    for response, _ in refused:
        assert_overloaded(response)
    assert slowest < REFUSAL_BOUND_SECONDS


async def test_a_saturated_instance_refuses_new_requests_and_still_answers_its_probes(
    settings_for: Any, database_url: str, sql: asyncpg.Connection
) -> None:
    async with serve(settings_for(max_in_flight=2, db_statement_timeout_ms=30_000)) as app:
        first, second = await create_user(app.client), await create_user(app.client)
        async with many_connections(app) as client:
            async with users_table_locked(database_url):
                stuck = [asyncio.create_task(client.get(f"/v1/users/{user['id']}")) for user in (first, second)]
                await wait_for_lock_waiters(sql, 2)
                # Reads the cache does not hold would wait for the database: refused.
                misses = [client.get(f"/v1/users/{uuid.uuid4()}") for _ in range(18)]
                refused = await asyncio.gather(*(timed(miss) for miss in misses))
                probes = [await client.get("/healthz"), await client.get("/readyz")]
                # What the fast lane answers from memory never waits, and is answered (api/lane.py).
                from_memory = await client.get("/v1/auth/verify")
                assert not any(task.done() for task in stuck)
            answered = await asyncio.gather(*stuck)
            after = await client.get(f"/v1/users/{first['id']}")
    for response, _ in refused:
        assert_overloaded(response)
    slowest = max(seconds for _, seconds in refused)
    log.info("saturated: 18 of 18 refused, the slowest in %.0f ms", slowest * 1000)
    assert slowest < REFUSAL_BOUND_SECONDS
    assert [probe.status_code for probe in probes] == [200, 200]
    assert_error(from_memory, 401, "unauthorized")
    assert [response.status_code for response in answered] == [200, 200]
    assert after.status_code == 200
