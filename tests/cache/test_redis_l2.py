"""The shared cache in Redis: filled by reads, used by other instances, dropped by writes, never required."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from auth_service.users import store
from tests.utils.app import RunningApp, create_user, login, serve
from tests.utils.spies import count_calls
from tests.utils.sql import sql_connection

pytestmark = pytest.mark.redis

log = logging.getLogger(__name__)

# Keys are auth:user:<a new uuid4>, so tests never share a key and nothing needs flushing.
KEY_PREFIX = "auth:user:"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the real Redis (the session's redis_url fixture skips, saying why, when none runs)."""
    client = Redis.from_url(redis_url, socket_connect_timeout=0.5, socket_timeout=0.5)
    yield client
    await client.aclose()


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with sql_connection(database_url) as conn:
        yield conn


def key(user: dict[str, Any]) -> str:
    return KEY_PREFIX + user["id"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def read(app: RunningApp, user: dict[str, Any]) -> httpx.Response:
    response = await app.client.get(f"/v1/users/{user['id']}")
    assert response.status_code == 200, response.text
    return response


async def test_a_read_stores_the_user_in_redis_for_the_cache_ttl(
    settings_for: Any, redis: Redis, redis_url: str
) -> None:
    async with serve(settings_for(redis_url=redis_url, cache_ttl_seconds=30)) as a:
        user = await create_user(a.client)
        assert await redis.exists(key(user)) == 0
        response = await read(a, user)
    assert await redis.get(key(user)) == response.content
    assert 0 < await redis.pttl(key(user)) <= 30_000


async def test_an_instance_with_a_cold_cache_serves_the_user_from_redis(
    settings_for: Any, redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fetch_user is wrapped by a spy that counts its calls and runs the real query: not a mock."""
    settings = settings_for(redis_url=redis_url)
    async with serve(settings) as a, serve(settings) as b:
        user = await create_user(a.client)
        through_a = await read(a, user)
        queries = count_calls(monkeypatch, store.repository, "fetch_user")
        through_b = await read(b, user)
        assert queries.calls == 0
        assert through_b.content == through_a.content
        assert b.services.cache.peek(user["id"]) == (True, through_a.content)


async def test_a_patch_drops_the_user_from_redis(settings_for: Any, redis: Redis, redis_url: str) -> None:
    settings = settings_for(redis_url=redis_url)
    async with serve(settings) as a, serve(settings) as b:
        user = await create_user(a.client)
        old = await read(a, user)
        token = await login(a.client, user["email"], user["password"])
        patched = await a.client.patch(f"/v1/users/{user['id']}", json={"name": "Patched"}, headers=bearer(token))
        assert patched.status_code == 200, patched.text
        assert await redis.exists(key(user)) == 0
        through_b = await read(b, user)
    assert through_b.json()["name"] == "Patched"
    assert await redis.get(key(user)) in (None, through_b.content)
    assert through_b.content != old.content


async def test_reads_racing_a_patch_on_another_instance_do_not_bring_the_old_user_back(
    settings_for: Any, redis: Redis, redis_url: str
) -> None:
    """While B is read continuously, A's commit reaches B (NOTIFY) before A drops Redis' copy."""
    settings = settings_for(redis_url=redis_url)
    async with serve(settings) as a, serve(settings) as b:
        stale = []
        for attempt in range(20):
            user = await create_user(a.client)
            await read(b, user)
            token = await login(a.client, user["email"], user["password"])
            async with reading_continuously(b, user):
                patch = {"name": f"Patched {attempt}"}
                patched = await a.client.patch(f"/v1/users/{user['id']}", json=patch, headers=bearer(token))
                assert patched.status_code == 200, patched.text
                await asyncio.sleep(0.05)
            if (await read(b, user)).json()["name"] != patch["name"]:
                stale.append(attempt)
    assert stale == [], f"B kept the old user after {len(stale)} of 20 patches"


@asynccontextmanager
async def reading_continuously(app: RunningApp, user: dict[str, Any], readers: int = 4) -> AsyncIterator[None]:
    reading = True

    async def reader() -> None:
        while reading:
            await read(app, user)

    tasks = [asyncio.create_task(reader()) for _ in range(readers)]
    try:
        yield
    finally:
        reading = False
        await asyncio.gather(*tasks)


async def test_a_change_made_directly_in_sql_is_not_served_from_redis_afterwards(
    settings_for: Any, redis: Redis, redis_url: str, sql: asyncpg.Connection
) -> None:
    async with serve(settings_for(redis_url=redis_url)) as a:
        user = await create_user(a.client)
        await read(a, user)
        await sql.execute("UPDATE users SET name = 'Changed In SQL' WHERE id = $1", uuid.UUID(user["id"]))
        deadline = time.perf_counter() + 1.0
        while (await read(a, user)).json()["name"] != "Changed In SQL":
            assert time.perf_counter() < deadline, "the old user is still served (from Redis) 1 s after the change"


# --- Redis gone: the service answers from L1 and PostgreSQL


@pytest.fixture
def refused_redis_url() -> str:
    """A port that was free a moment ago and has no listener: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def silent_redis_url() -> Iterator[str]:
    """A port that accepts connections and never answers: a hung Redis."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        yield f"redis://127.0.0.1:{hung.getsockname()[1]}/0"


async def timed(request: Any) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = await request
    return response, time.perf_counter() - start


async def every_endpoint(app: RunningApp) -> list[tuple[str, int, float]]:
    """(what, status, seconds) for one call of each endpoint, in an order that makes each one succeed."""
    results: list[tuple[str, int, float]] = []

    async def call(what: str, request: Any) -> httpx.Response:
        response, seconds = await timed(request)
        results.append((what, response.status_code, seconds))
        return response

    client = app.client
    payload = {"email": f"redis-down-{uuid.uuid4().hex[:12]}@example.com", "name": "N", "password": "long-password-1"}
    credentials = {"email": payload["email"], "password": payload["password"]}
    created = (await call("create", client.post("/v1/users", json=payload))).json()
    batch = {"users": [{"email": f"batch-{uuid.uuid4().hex[:12]}@example.com", "name": "B", "password": "pw-long-1"}]}
    await call("batch create", client.post("/v1/users:batch", json=batch))
    await call("read (miss)", client.get(f"/v1/users/{created['id']}"))
    await call("read (hit)", client.get(f"/v1/users/{created['id']}"))
    login_response = await call("token", client.post("/v1/auth/token", json=credentials))
    headers = bearer(login_response.json()["access_token"])
    await call("verify", client.get("/v1/auth/verify", headers=headers))
    await call("me", client.get("/v1/me", headers=headers))
    await call("patch", client.patch(f"/v1/users/{created['id']}", json={"name": "M"}, headers=headers))
    await call("read after patch", client.get(f"/v1/users/{created['id']}"))
    reauthentication = {"current_password": payload["password"]}
    deleting = client.request("DELETE", f"/v1/users/{created['id']}", json=reauthentication, headers=headers)
    await call("delete", deleting)
    await call("healthz", client.get("/healthz"))
    await call("readyz", client.get("/readyz"))
    return results


EXPECTED_STATUS = {"create": 201, "batch create": 201, "delete": 204}


@pytest.mark.parametrize("redis_fault", ["refused_redis_url", "silent_redis_url"])
async def test_without_redis_every_endpoint_still_answers_and_fast(
    settings_for: Any, redis_fault: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(redis_fault)
    # Retry Redis on (nearly) every request, so that each one pays the fault, not only the first; a
    # login makes up to three counter calls, each bounded by the counters' own timeout.
    settings = settings_for(
        redis_url=url, redis_timeout_seconds=0.05, redis_counter_timeout_seconds=0.05, redis_retry_after_seconds=0.001
    )
    async with serve(settings) as app:
        results = await every_endpoint(app)
        faults = app.services.l2.faults if app.services.l2 is not None else 0
    assert [(what, status) for what, status, _ in results] == [
        (what, EXPECTED_STATUS.get(what, 200)) for what, _, _ in results
    ]
    what, _, seconds = max(results, key=lambda result: result[2])
    log.info("%s: %d Redis faults; the slowest endpoint, %s, took %.0f ms", redis_fault, faults, what, seconds * 1000)
    slow = [(what, round(seconds, 3)) for what, _, seconds in results if seconds >= 1.0]
    assert slow == []
    assert faults >= 2, "Redis was never tried"


async def test_one_outage_is_one_warning_however_many_requests_meet_it(
    settings_for: Any, refused_redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="auth_service.cache.redis_l2")
    settings = settings_for(redis_url=refused_redis_url, redis_timeout_seconds=0.05, redis_retry_after_seconds=0.001)
    async with serve(settings) as app:
        for _ in range(3):  # bursts of reads of ids never seen: each misses L1 and asks Redis
            answers = await asyncio.gather(*(app.client.get(f"/v1/users/{uuid.uuid4()}") for _ in range(30)))
            assert {answer.status_code for answer in answers} == {404}
        assert app.services.l2 is not None
        faults = app.services.l2.faults
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert faults >= 30, faults
    assert len(warnings) == 1 and warnings[0].startswith("redis unavailable"), warnings
