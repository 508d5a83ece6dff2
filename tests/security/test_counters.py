"""The attempt counters on the real PostgreSQL and the real Redis: counts, windows, clearing, faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from auth_service.db.engine import Database
from auth_service.security.counters import Counter, CounterStore, MirroredCounters, StoreFault, seconds_until
from auth_service.security.counters_postgres import PostgresCounters
from auth_service.security.counters_redis import RedisCounters
from bench.ports import free_port


@pytest.fixture
async def database(settings_for: Any, database_url: str) -> AsyncIterator[Database]:
    db = await Database.open(settings_for(db_read_pool_size=20, db_pool_max_waiters=100), database_url)
    yield db
    await db.dispose()


@pytest.fixture(params=["postgres", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, database: Database) -> AsyncIterator[CounterStore]:
    if request.param == "postgres":
        yield PostgresCounters(database)
        return
    redis = RedisCounters.from_url(request.getfixturevalue("redis_url"), timeout=1.0)
    yield redis
    await redis.close()


def fresh(window: int = 60) -> Counter:
    return Counter(f"test:{uuid.uuid4().hex}", window)


async def test_counts_add_up_within_a_window_that_started_with_the_first(store: CounterStore) -> None:
    counter, never = fresh(window=60), fresh()
    assert await store.read([counter.key, never.key]) == {}
    for _ in range(3):
        await store.count([counter])
    window = (await store.read([counter.key, never.key]))[counter.key]
    assert window.count == 3
    assert 58_000 < window.remaining_ms <= 60_000, window


async def test_one_count_counts_on_every_counter_given(store: CounterStore) -> None:
    first, second = fresh(), fresh()
    await store.count([first, second])
    await store.count([second])
    windows = await store.read([first.key, second.key])
    assert (windows[first.key].count, windows[second.key].count) == (1, 2)


async def test_the_window_ends_and_the_next_count_starts_another(store: CounterStore) -> None:
    counter = fresh(window=1)
    await store.count([counter])
    await store.count([counter])
    await asyncio.sleep(1.1)
    assert await store.read([counter.key]) == {}
    await store.count([counter])
    assert (await store.read([counter.key]))[counter.key].count == 1


async def test_cleared_counters_are_gone(store: CounterStore) -> None:
    cleared, kept = fresh(), fresh()
    await store.count([cleared, kept])
    await store.clear([cleared.key])
    assert set(await store.read([cleared.key, kept.key])) == {kept.key}


async def test_concurrent_counts_are_each_counted(store: CounterStore) -> None:
    shared = fresh()
    await asyncio.gather(*(store.count([shared, fresh()]) for _ in range(50)))
    assert (await store.read([shared.key]))[shared.key].count == 50


def test_retry_after_is_whole_seconds_rounded_up_and_never_zero() -> None:
    assert [seconds_until(ms) for ms in (1, 999, 1000, 1001, 59_999.5)] == [1, 1, 1, 2, 60]


async def test_a_redis_that_does_not_answer_is_a_store_fault_within_its_timeout() -> None:
    redis = RedisCounters.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    try:
        with pytest.raises(StoreFault):
            await asyncio.wait_for(redis.read(["anything"]), 2)
        with pytest.raises(StoreFault):
            await asyncio.wait_for(redis.count([fresh()]), 2)
    finally:
        await redis.close()


class Switchable:
    """The real Redis store, made faulty on demand: `down` raises StoreFault as a Redis away or too slow
    would. Stopping the shared Redis under the suite would break its other tests, so the fault is
    injected here, in front of a real Redis."""

    def __init__(self, redis: RedisCounters) -> None:
        self.redis = redis
        self.down = False
        self.calls = 0

    async def _call(self, name: str, *args: Any) -> Any:
        self.calls += 1
        if self.down:
            raise StoreFault("down")
        return await getattr(self.redis, name)(*args)

    async def read(self, keys: Any) -> Any:
        return await self._call("read", keys)

    async def count(self, counters: Any) -> None:
        await self._call("count", counters)

    async def clear(self, keys: Any) -> None:
        await self._call("clear", keys)


@dataclass
class Mirrored:
    store: MirroredCounters
    switchable: Switchable
    postgres: PostgresCounters


# Redis skipped for 0.3 s after a fault, read from PostgreSQL for 0.8 s after it.
@pytest.fixture
async def mirrored(redis_url: str, database: Database) -> AsyncIterator[Mirrored]:
    redis = RedisCounters.from_url(redis_url, timeout=1.0)
    switchable, postgres = Switchable(redis), PostgresCounters(database)
    yield Mirrored(MirroredCounters(switchable, postgres, retry_after=0.3, reconcile=0.8), switchable, postgres)  # type: ignore[arg-type]
    await redis.close()


@pytest.mark.redis
async def test_every_count_and_clear_reaches_postgresql_while_redis_answers_the_reads(mirrored: Mirrored) -> None:
    store, switchable, postgres = mirrored.store, mirrored.switchable, mirrored.postgres
    counted, cleared = fresh(), fresh()
    for _ in range(3):
        await store.count([counted, cleared])
    await store.clear([cleared.key])
    for where in (switchable.redis, postgres):
        windows = await where.read([counted.key, cleared.key])
        assert {key: window.count for key, window in windows.items()} == {counted.key: 3}, where
    await switchable.redis.count([counted])  # in Redis alone: the reads are Redis's
    assert (await store.read([counted.key]))[counted.key].count == 4


@pytest.mark.redis
async def test_a_redis_fault_loses_no_count_neither_while_it_lasts_nor_after(mirrored: Mirrored) -> None:
    store, switchable = mirrored.store, mirrored.switchable
    counter = fresh()
    for _ in range(10):
        await store.count([counter])  # a guesser at its limit, counted while Redis was up
    switchable.down = True
    assert (await store.read([counter.key]))[counter.key].count == 10, "the fault reset the counter"
    calls = switchable.calls
    await store.count([counter])
    assert switchable.calls == calls, "Redis was asked again within its retry period"
    await asyncio.sleep(0.35)
    switchable.down = False
    await store.count([counter])  # Redis written again, but it missed the count made while it was away
    assert (await switchable.redis.read([counter.key]))[counter.key].count == 11
    assert (await store.read([counter.key]))[counter.key].count == 12, "read from Redis before reconciling"
    await asyncio.sleep(0.6)  # the reconcile period (the longest window) has ended since the fault
    await switchable.redis.count([counter])  # in Redis alone
    assert (await store.read([counter.key]))[counter.key].count == 12, "Redis not read again after reconciling"
