"""The in-process cache: TTLs, bounds, LRU order, counters and single-flight loads."""

from __future__ import annotations

import asyncio

import pytest

from auth_service.cache.local import ENTRY_OVERHEAD_BYTES, LocalCache
from tests.utils.waiting import wait_until

VALUE = b"v" * 100
ENTRY_BYTES = ENTRY_OVERHEAD_BYTES + len(VALUE)


def make_cache(
    max_entries: int = 1000, max_bytes: int = 1 << 20, ttl: float = 60.0, negative_ttl: float = 60.0
) -> LocalCache:
    return LocalCache(max_entries=max_entries, max_bytes=max_bytes, ttl=ttl, negative_ttl=negative_ttl)


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
