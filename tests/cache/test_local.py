"""The in-process cache: TTLs, bounds, LRU order, counters and single-flight loads."""

from __future__ import annotations

import asyncio

import pytest

from auth_service.cache.local import ENTRY_OVERHEAD_BYTES, REFRESH_AFTER, TTL_JITTER, Aged, LocalCache
from tests.utils.waiting import wait_until

VALUE = b"v" * 100
ENTRY_BYTES = ENTRY_OVERHEAD_BYTES + len(VALUE)


def make_cache(
    max_entries: int = 1000, max_bytes: int = 1 << 20, ttl: float = 60.0, negative_ttl: float = 60.0
) -> LocalCache:
    return LocalCache(max_entries=max_entries, max_bytes=max_bytes, ttl=ttl, negative_ttl=negative_ttl)


class ManualClock:
    """The cache's clock, moved by the test: lifetimes checked at exact instants, not after sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def clocked_cache(ttl: float = 10.0, negative_ttl: float = 10.0) -> tuple[LocalCache, ManualClock]:
    clock = ManualClock()
    return LocalCache(1000, 1 << 20, ttl, negative_ttl, clock=clock), clock


# The latest instant no entry is refreshed yet, and the earliest every entry put at once may be expired.
TTL = 10.0
BEFORE_ANY_REFRESH = TTL * (1 - TTL_JITTER) * REFRESH_AFTER - 0.01
REFRESHING_NOT_EXPIRED = TTL * (1 - TTL_JITTER) - 0.01


class GatedLoader:
    """A loader that answers `result` (or raises it) once released, and counts its calls."""

    def __init__(self, result: bytes | Exception | None = VALUE) -> None:
        self.result = result
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> bytes | None:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def start_waiters(cache: LocalCache, loader: GatedLoader, count: int) -> list[asyncio.Task[bytes | None]]:
    return [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(count)]


async def all_waiting(cache: LocalCache, count: int) -> None:
    await wait_until(lambda: cache.stats.misses == count, 1.0, f"{count} callers waiting on the load")


# --- hits, misses and TTLs


async def test_a_loaded_value_is_served_from_the_cache_afterwards() -> None:
    cache = make_cache()
    loader = GatedLoader()
    loader.release.set()
    assert await cache.get_or_load("k", loader) == VALUE
    assert await cache.get_or_load("k", loader) == VALUE
    assert loader.calls == 1
    assert cache.peek("k") == (True, VALUE)


def test_an_unknown_key_is_not_found() -> None:
    assert make_cache().peek("missing") == (False, None)


async def test_an_entry_expires_after_its_ttl() -> None:
    cache = make_cache(ttl=0.05)
    cache.put("k", VALUE)
    assert cache.peek("k") == (True, VALUE)
    await asyncio.sleep(0.1)
    assert cache.peek("k") == (False, None)
    assert len(cache) == 0
    assert cache.bytes == 0


async def test_a_value_aged_elsewhere_is_kept_only_for_the_rest_of_its_lifetime() -> None:
    # A copy from Redis with 2 s left of its TTL: served 2 s at most, not a TTL of its own.
    cache, clock = clocked_cache(ttl=TTL)
    start = clock.now

    async def from_redis() -> Aged:
        return Aged(VALUE, 2.0)

    assert await cache.get_or_load("k", from_redis) == VALUE
    clock.now = start + 1.5
    assert cache.peek("k") == (True, VALUE)
    clock.now = start + 2.0
    assert cache.peek("k") == (False, None)


async def test_not_found_is_cached_with_its_own_shorter_ttl() -> None:
    cache = make_cache(ttl=60.0, negative_ttl=0.05)
    cache.put("absent", None)
    cache.put("present", VALUE)
    assert cache.peek("absent") == (True, None)
    await asyncio.sleep(0.1)
    assert cache.peek("absent") == (False, None)
    assert cache.peek("present") == (True, VALUE)


async def test_a_loaded_not_found_is_cached_too() -> None:
    cache = make_cache()
    loader = GatedLoader(None)
    loader.release.set()
    assert await cache.get_or_load("k", loader) is None
    assert await cache.get_or_load("k", loader) is None
    assert loader.calls == 1


def test_a_zero_negative_ttl_caches_no_not_found() -> None:
    cache = make_cache(negative_ttl=0)
    cache.put("absent", None)
    assert cache.peek("absent") == (False, None)


# --- bounds and LRU order


def test_the_entry_bound_evicts_the_least_recently_used() -> None:
    cache = make_cache(max_entries=3)
    for key in ("a", "b", "c"):
        cache.put(key, VALUE)
    cache.peek("a")  # read: "b" is now the least recently used
    cache.put("d", VALUE)
    assert [key for key in "abcd" if cache.peek(key)[0]] == ["a", "c", "d"]
    assert len(cache) == 3


def test_the_byte_bound_evicts_the_least_recently_used() -> None:
    cache = make_cache(max_bytes=3 * ENTRY_BYTES)
    for key in ("a", "b", "c"):
        cache.put(key, VALUE)
    assert cache.bytes == 3 * ENTRY_BYTES
    cache.peek("a")
    cache.put("d", VALUE)
    assert [key for key in "abcd" if cache.peek(key)[0]] == ["a", "c", "d"]
    assert cache.bytes == 3 * ENTRY_BYTES


def test_one_large_value_evicts_as_many_entries_as_its_bytes_need() -> None:
    cache = make_cache(max_bytes=3 * ENTRY_BYTES)
    for key in ("a", "b", "c"):
        cache.put(key, VALUE)
    cache.put("big", b"x" * (2 * len(VALUE) + ENTRY_OVERHEAD_BYTES))
    assert [key for key in ("a", "b", "c", "big") if cache.peek(key)[0]] == ["c", "big"]
    assert cache.bytes <= cache.max_bytes


def test_replacing_a_value_counts_its_bytes_once() -> None:
    cache = make_cache()
    cache.put("k", VALUE)
    cache.put("k", b"short")
    assert cache.bytes == ENTRY_OVERHEAD_BYTES + len(b"short")
    cache.invalidate("k")
    assert cache.bytes == 0


# --- counters


async def test_stats_count_hits_misses_loads_evictions_and_invalidations() -> None:
    cache = make_cache(max_entries=1)
    loader = GatedLoader()
    loader.release.set()
    await cache.get_or_load("a", loader)  # miss, load
    await cache.get_or_load("a", loader)  # hit
    await cache.get_or_load("b", loader)  # miss, load, evicts "a"
    cache.invalidate("b")
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.loads, stats.evictions, stats.invalidations) == (1, 2, 2, 1, 1)


# --- single flight


async def test_concurrent_misses_share_one_load() -> None:
    cache = make_cache()
    loader = GatedLoader()
    waiters = start_waiters(cache, loader, 50)
    await all_waiting(cache, 50)
    loader.release.set()
    assert await asyncio.gather(*waiters) == [VALUE] * 50
    assert loader.calls == 1
    assert cache.stats.loads == 1


async def test_a_loader_error_reaches_every_waiter_and_is_not_cached() -> None:
    cache = make_cache()
    failing = GatedLoader(RuntimeError("database down"))
    waiters = start_waiters(cache, failing, 10)
    await all_waiting(cache, 10)
    failing.release.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(result, RuntimeError) and str(result) == "database down" for result in results)
    assert cache.peek("k") == (False, None)
    working = GatedLoader()
    working.release.set()
    assert await cache.get_or_load("k", working) == VALUE
    assert working.calls == 1


async def test_a_cancelled_waiter_does_not_cancel_the_shared_load() -> None:
    cache = make_cache()
    loader = GatedLoader()
    gone, staying = start_waiters(cache, loader, 2)
    await all_waiting(cache, 2)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    loader.release.set()
    assert await staying == VALUE
    assert cache.peek("k") == (True, VALUE)
    assert loader.calls == 1


async def test_the_load_of_a_lone_cancelled_waiter_still_fills_the_cache() -> None:
    cache = make_cache()
    loader = GatedLoader()
    (gone,) = start_waiters(cache, loader, 1)
    await all_waiting(cache, 1)
    gone.cancel()
    loader.release.set()
    await wait_until(lambda: cache.peek("k")[0], 1.0, "the shielded load stored its value")
    assert cache.peek("k") == (True, VALUE)


async def test_a_value_loaded_across_an_invalidate_is_not_stored() -> None:
    cache = make_cache()
    loader = GatedLoader()
    (waiter,) = start_waiters(cache, loader, 1)
    await all_waiting(cache, 1)
    cache.invalidate("k")  # the row changed while the old one was being read
    loader.release.set()
    assert await waiter == VALUE
    assert cache.peek("k") == (False, None)


async def test_a_value_loaded_across_a_clear_is_not_stored() -> None:
    cache = make_cache()
    cache.put("other", VALUE)
    loader = GatedLoader()
    (waiter,) = start_waiters(cache, loader, 1)
    await all_waiting(cache, 1)
    cache.clear()
    assert (len(cache), cache.bytes) == (0, 0)
    loader.release.set()
    assert await waiter == VALUE
    assert cache.peek("k") == (False, None)


async def test_a_load_started_after_an_invalidate_is_stored_again() -> None:
    cache = make_cache()
    stale = GatedLoader(b"old")
    (waiter,) = start_waiters(cache, stale, 1)
    await all_waiting(cache, 1)
    cache.invalidate("k")
    stale.release.set()
    await waiter
    fresh = GatedLoader(b"new")
    fresh.release.set()
    assert await cache.get_or_load("k", fresh) == b"new"
    assert cache.peek("k") == (True, b"new")


async def test_a_read_that_comes_after_an_invalidate_does_not_join_the_overtaken_load() -> None:
    """Read-your-writes: the old load may predate the change, so a later reader loads afresh."""
    cache = make_cache()
    stale = GatedLoader(b"old")
    (early,) = start_waiters(cache, stale, 1)
    await all_waiting(cache, 1)
    cache.invalidate("k")
    fresh = GatedLoader(b"new")
    fresh.release.set()
    assert await cache.get_or_load("k", fresh) == b"new"
    stale.release.set()
    assert await early == b"old"
    assert cache.peek("k") == (True, b"new"), "the overtaken load must not overwrite the newer value"


# --- lifetimes spread, and keys in use refreshed before they expire


def test_entries_put_together_expire_over_the_last_fifth_of_the_ttl() -> None:
    cache, clock = clocked_cache(ttl=TTL)
    keys = [f"k{index}" for index in range(200)]
    for key in keys:
        cache.put(key, VALUE)
    start = clock.now

    def alive() -> int:
        return sum(cache.peek(key)[0] for key in keys)

    clock.now = start + TTL * (1 - TTL_JITTER) - 0.001
    assert alive() == 200, "none expires before 0.8 of the TTL"
    clock.now = start + TTL * (1 - TTL_JITTER / 2)
    assert 40 < alive() < 160, "about half have expired at 0.9 of the TTL"
    clock.now = start + TTL
    assert [cache.peek(key) for key in keys] == [(False, None)] * 200, "all have at the TTL: it bounds staleness"


async def test_a_hit_late_in_its_lifetime_is_answered_at_once_and_reloaded_behind() -> None:
    cache, clock = clocked_cache(ttl=TTL)
    first = GatedLoader(b"old")
    first.release.set()
    assert await cache.get_or_load("k", first) == b"old"
    start = clock.now

    clock.now = start + BEFORE_ANY_REFRESH
    assert cache.peek("k") == (True, b"old")
    assert cache.stats.refreshes == 0, "early in its lifetime, a hit only reads"

    clock.now = start + REFRESHING_NOT_EXPIRED
    fresh = GatedLoader(b"new")
    assert await cache.get_or_load("k", fresh) == b"old", "the reader does not wait for the reload"
    assert await cache.get_or_load("k", fresh) == b"old"
    assert (cache.stats.refreshes, cache.stats.misses) == (1, 1)
    fresh.release.set()
    await wait_until(lambda: cache.peek("k") == (True, b"new"), 1.0, "the refreshed value is stored")
    assert fresh.calls == 1, "one reload however many hits"

    clock.now = start + TTL + 0.01
    assert cache.peek("k") == (True, b"new"), "the refreshed entry lives on past the first one's TTL"


async def test_the_hot_path_lookup_refreshes_through_the_registered_refresher() -> None:
    cache, clock = clocked_cache(ttl=TTL)
    cache.put("k", b"old")
    asked: list[object] = []

    async def refresher(key: object) -> bytes:
        asked.append(key)
        return b"new"

    clock.now += REFRESHING_NOT_EXPIRED
    assert cache.peek("k") == (True, b"old"), "no refresher yet: served, not reloaded"
    assert cache.stats.refreshes == 0
    cache.refresh_with(refresher)
    assert cache.peek("k") == (True, b"old")
    await wait_until(lambda: cache.peek("k") == (True, b"new"), 1.0, "the refresher's value is stored")
    assert asked == ["k"]


async def test_an_entry_nobody_reads_is_not_refreshed_and_expires() -> None:
    cache, clock = clocked_cache(ttl=TTL)
    loader = GatedLoader()
    loader.release.set()
    await cache.get_or_load("k", loader)
    clock.now += TTL
    assert cache.peek("k") == (False, None)
    assert (cache.stats.refreshes, loader.calls) == (0, 1)


async def test_a_not_found_is_not_refreshed() -> None:
    cache, clock = clocked_cache(negative_ttl=TTL)
    cache.put("absent", None)
    loader = GatedLoader(None)
    clock.now += REFRESHING_NOT_EXPIRED
    assert await cache.get_or_load("absent", loader) is None
    assert (cache.stats.refreshes, loader.calls) == (0, 0)


async def test_a_refresh_overtaken_by_an_invalidate_is_not_stored() -> None:
    cache, clock = clocked_cache(ttl=TTL)
    cache.put("k", b"old")
    clock.now += REFRESHING_NOT_EXPIRED
    refresh = GatedLoader(b"read before the change")
    assert await cache.get_or_load("k", refresh) == b"old"
    cache.invalidate("k")
    refresh.release.set()
    await wait_until(lambda: cache.loads_in_flight == 0, 1.0, "the refresh finished")
    assert cache.peek("k") == (False, None)


async def test_after_a_failed_refresh_the_entry_serves_until_it_expires_without_retrying() -> None:
    cache, clock = clocked_cache(ttl=TTL)
    cache.put("k", b"old")
    start = clock.now
    clock.now = start + REFRESHING_NOT_EXPIRED
    failing = GatedLoader(ConnectionError("database down"))
    failing.release.set()
    assert await cache.get_or_load("k", failing) == b"old"
    await wait_until(lambda: cache.loads_in_flight == 0, 1.0, "the refresh failed")
    for _ in range(5):
        assert await cache.get_or_load("k", failing) == b"old"
    assert failing.calls == 1, "no reload per hit against a database that is down"
    clock.now = start + TTL
    assert cache.peek("k") == (False, None)
