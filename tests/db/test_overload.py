"""Beyond the pools' capacity: an immediate, truthful 503 for the excess, and a bounded backlog."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import argon2
import httpx
import pytest

from auth_service.cache.local import LocalCache
from auth_service.db.engine import Database
from auth_service.db.gate import ConnectionGate
from auth_service.errors import ServiceUnavailable
from auth_service.users.store import UserStore
from tests.utils.app import RunningApp, assert_error, make_settings, serve, unique_email

log = logging.getLogger(__name__)

# High, so that "much faster than the acquire timeout" is no tight timing check: on a loaded machine
# httpx alone took 3 s to send 300 requests at once through new connections.
ACQUIRE_TIMEOUT = 20.0
MAX_WAITERS = 4
MISSES = 200


async def seed_users(client: httpx.AsyncClient, count: int) -> list[str]:
    """The ids of `count` new users, imported with a hash in one batch (no hashing per user)."""
    hashed = argon2.PasswordHasher().hash("an-imported-password")
    items = [{"email": unique_email("overload"), "name": "Overload", "password_hash": hashed} for _ in range(count)]
    response = await client.post("/v1/users:batch", json={"users": items})
    assert response.status_code == 201, response.text
    return [user["id"] for user in response.json()["users"]]


@contextlib.asynccontextmanager
async def wide_client(app: RunningApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends every request at once: one connection each, no queue of its own."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=app.url, limits=limits, timeout=60.0) as client:
        yield client


async def timed(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.get(path)
    return response, time.perf_counter() - started


async def until_done(tasks: list[asyncio.Task[Any]], count: int, timeout: float) -> int:
    """Wait until `count` of the tasks are done, or `timeout`; how many were done then."""
    enough = asyncio.Event()
    done = 0

    def one_more(_: asyncio.Task[Any]) -> None:
        nonlocal done
        done += 1
        if done >= count:
            enough.set()

    for task in tasks:
        task.add_done_callback(one_more)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), timeout)
    return sum(task.done() for task in tasks)


async def test_misses_beyond_the_read_pool_and_its_waiters_get_an_immediate_truthful_503(settings_for: Any) -> None:
    settings = settings_for(
        db_read_pool_size=2,
        db_pool_max_waiters=MAX_WAITERS,
        db_pool_acquire_timeout_seconds=ACQUIRE_TIMEOUT,
        cache_max_entries=1,  # every read a miss, a point read through the pool
    )
    async with serve(settings) as app, wide_client(app) as client:
        ids = await seed_users(client, MISSES)
        db = app.services.db
        # Both read connections held, as by slow queries: the pool is exhausted until they are released.
        async with db.driver_connection(), db.driver_connection():
            tasks = [asyncio.create_task(timed(client, f"/v1/users/{user_id}")) for user_id in ids]
            refused_in_time = await until_done(tasks, MISSES - MAX_WAITERS, ACQUIRE_TIMEOUT / 2)
            backlog = app.services.cache.loads_in_flight
        answers = await asyncio.gather(*tasks)

    statuses = [response.status_code for response, _ in answers]
    refusals = [(response, seconds) for response, seconds in answers if response.status_code == 503]
    slowest = max((seconds for _, seconds in refusals), default=0.0)
    log.info(
        "%d misses, pool 2 held, %d waiters: %d answered while held, %d x 200, %d x 503 (slowest %.0f ms), backlog %d",
        MISSES,
        MAX_WAITERS,
        refused_in_time,
        statuses.count(200),
        len(refusals),
        slowest * 1000,
        backlog,
    )
    assert set(statuses) <= {200, 503}, statuses
    for response, _ in refusals:
        assert_error(response, 503, "db_pool_exhausted")  # never database_unavailable: the database is fine
        assert response.headers["retry-after"] == "1"
    assert refused_in_time >= MISSES - MAX_WAITERS, "the excess waited instead of being refused"
    assert slowest < ACQUIRE_TIMEOUT / 2, f"a refusal took {slowest:.2f} s"
    assert backlog <= MAX_WAITERS, f"{backlog} loads waiting for the pool"
    assert statuses.count(200) >= MAX_WAITERS, "the waiters are served once connections free up"


@pytest.fixture
async def write_db(database_url: str) -> AsyncIterator[Database]:
    settings = make_settings(
        database_url,
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_max_waiters=2,
        db_pool_acquire_timeout_seconds=ACQUIRE_TIMEOUT,
    )
    db = await Database.open(settings, database_url)
    try:
        yield db
    finally:
        await db.dispose()


async def write(db: Database) -> float:
    started = time.perf_counter()
    async with db.transaction() as conn:
        await conn.exec_driver_sql("SELECT 1")
    return time.perf_counter() - started


async def test_writes_beyond_the_write_pool_and_its_waiters_are_refused_at_once(write_db: Database) -> None:
    async with write_db.transaction():  # the only write connection
        tasks = [asyncio.create_task(write(write_db)) for _ in range(20)]
        refused_in_time = await until_done(tasks, 18, ACQUIRE_TIMEOUT / 2)
    results = await asyncio.gather(*tasks, return_exceptions=True)

    refused = [result for result in results if isinstance(result, BaseException)]
    assert refused_in_time >= 18, "the excess waited instead of being refused"
    assert len(refused) == 18, results
    for error in refused:
        assert isinstance(error, ServiceUnavailable) and error.code == "db_pool_exhausted", error
        assert error.headers == {"Retry-After": "1"}


# --- a real fault is still the database's


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers: a database that hangs before its handshake."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


async def test_a_connect_that_times_out_is_database_unavailable_not_an_exhausted_pool(silent_server: int) -> None:
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{silent_server}/test"
    settings = make_settings(url, db_connect_timeout_seconds=0.3, db_pool_acquire_timeout_seconds=ACQUIRE_TIMEOUT)
    db = await Database.open(settings, url)
    try:
        started = time.perf_counter()
        with pytest.raises(ServiceUnavailable) as raised:
            async with db.driver_connection():
                pass
        seconds = time.perf_counter() - started
    finally:
        db.read_pool.terminate()
        await db.engine.dispose()
    assert raised.value.code == "database_unavailable"
    assert seconds < ACQUIRE_TIMEOUT / 2, f"{seconds:.2f} s"


# --- the hot path's refusals


class GatedReads:
    """Just what UserStore asks of the database before a load: its read gate."""

    def __init__(self, capacity: int, max_waiters: int) -> None:
        self.read_gate = ConnectionGate(capacity, max_waiters, ACQUIRE_TIMEOUT)


async def test_misses_passed_on_in_one_turn_of_the_loop_count_against_the_bound() -> None:
    db = GatedReads(capacity=2, max_waiters=2)
    store = UserStore(cast(Any, db), LocalCache(10, 1 << 20, 30.0, 2.0))
    # Parsed in one turn of the loop: none of them has reached the gate or started its load yet.
    first_turn = [store.refuses_miss(str(uuid.uuid4())) for _ in range(10)]
    assert first_turn == [False] * 4 + [True] * 6
    assert db.read_gate.rejected == 6
    await asyncio.sleep(0)  # their requests would have started their loads by now; none did here
    assert store.refuses_miss(str(uuid.uuid4())) is False


async def test_a_miss_that_can_join_a_load_under_way_is_never_refused() -> None:
    db = GatedReads(capacity=1, max_waiters=0)
    cache = LocalCache(10, 1 << 20, 30.0, 2.0)
    store = UserStore(cast(Any, db), cache)
    release = asyncio.Event()

    async def slow_load() -> bytes | None:
        await release.wait()
        return b"{}"

    loading = asyncio.ensure_future(cache.get_or_load("joined", slow_load))
    await asyncio.sleep(0)
    assert store.refuses_miss("another") is True  # one load under way: the bound of 1
    assert store.refuses_miss("joined") is False  # joins the load, needs no connection
    release.set()
    assert await loading == b"{}"
