"""The attempt counters on the real PostgreSQL and the real Redis: counts, windows, clearing, faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from auth_service.db.engine import Database
from auth_service.security.counters import Counter, CounterStore, FallbackCounters, StoreFault, seconds_until
from auth_service.security.counters_postgres import PostgresCounters
from auth_service.security.counters_redis import RedisCounters
from tests.utils.ports import free_port


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


class Broken:
    """A store whose every call is a fault, as a Redis that is down."""

    calls = 0

    async def count(self, counters: Any) -> None:
        self.calls += 1
        raise StoreFault("down")

    read = clear = count


async def test_the_fallback_counts_in_postgresql_while_redis_is_faulty(database: Database) -> None:
    broken, postgres = Broken(), PostgresCounters(database)
    store = FallbackCounters(broken, postgres, retry_after=0.3)  # type: ignore[arg-type]
    counter = fresh()
    for _ in range(3):
        await store.count([counter])
    assert (await store.read([counter.key]))[counter.key].count == 3
    assert (await postgres.read([counter.key]))[counter.key].count == 3, "not counted in PostgreSQL"
    assert broken.calls == 1, "Redis was asked again within its retry period"
    await asyncio.sleep(0.35)
    await store.clear([counter.key])
    assert broken.calls == 2
    assert await postgres.read([counter.key]) == {}
