"""Windowed attempt counters shared by the replicas: what a store does, and Redis mirrored in PostgreSQL.

A counter counts attempts in a fixed window that starts at its first attempt and lasts `window`
seconds; a mark is a counter read for whether it exists. The limits (login_limits.py) read the
counters before the work they guard and count a failure after it: only failures write. Counting
every attempt up front (and giving successes back) was exact under concurrency, but it wrote a row
per login, and a row every request of a client shares became a lock convoy: of 300 concurrent
signups from one address, 17 to 96 waited 15 s for a connection in vain while argon2 held both CPUs
(PostgreSQL; Redis has no such queue, but the stores keep one protocol).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Counter:
    key: str
    window: int  # seconds, from the first attempt


@dataclass(frozen=True)
class Window:
    """A counter whose window has not ended: its count, and the milliseconds left of it."""

    count: int
    remaining_ms: float


class StoreFault(Exception):
    """The store could not answer in time; the caller decides what that means."""


class CounterStore(Protocol):
    async def read(self, keys: Sequence[str]) -> dict[str, Window]:
        """The counters among `keys` whose window is still open."""

    async def count(self, counters: Sequence[Counter]) -> None:
        """One more attempt on each counter; a counter whose window ended starts a new one."""

    async def clear(self, keys: Sequence[str]) -> None:
        """Forget these counters."""


def seconds_until(remaining_ms: float) -> int:
    """Retry-After for a window that ends in `remaining_ms`: whole seconds, at least one."""
    return max(1, -(-int(remaining_ms) // 1000))


class MirroredCounters:
    """Redis answers the reads; every count and clear is written to PostgreSQL too, so a fault loses none.

    A Redis that is slow or away must neither open unlimited guessing nor turn logins into 503s (Redis
    is an accelerator here, as for the cache). Counted in Redis alone, with PostgreSQL taking over
    while Redis was faulty, a fault reset every counter: under load a busy event loop overran the 50 ms
    Redis timeout, PostgreSQL's counters started from zero, and a locked-out guesser's next guesses
    were let through (reliability `brute`, 2026-12-03: its right password among them). So PostgreSQL
    holds every count (failures are rare and each follows a hash of ~17 ms, so its write is a small
    cost), and Redis saves the read every login and signup makes. After a fault the reads stay on
    PostgreSQL for `reconcile` seconds, the longest window counted: counts made while Redis was away
    are in PostgreSQL only until their windows end. Writes to Redis resume after `retry_after`.
    """

    def __init__(self, redis: CounterStore, postgres: CounterStore, retry_after: float, reconcile: float) -> None:
        self.redis = redis
        self.postgres = postgres
        self.retry_after = retry_after
        self.reconcile = reconcile
        self.redis_down_until = 0.0
        self.reads_on_postgres_until = 0.0
        self.faults = 0

    @property
    def reads_from_redis(self) -> bool:
        """False while the reads are on PostgreSQL after a fault (for up to `reconcile` seconds)."""
        return time.monotonic() >= self.reads_on_postgres_until

    def _fault(self, exc: StoreFault) -> None:
        now = time.monotonic()
        self.faults += 1
        reported = now < self.redis_down_until  # by a call that faulted alongside this one
        self.redis_down_until = now + self.retry_after
        self.reads_on_postgres_until = now + self.reconcile
        if reported:
            return
        # Once per retry period at most: the period is the rate limit of this warning.
        log.warning(
            "attempt counters: Redis unavailable, skipped for %.1fs and read from PostgreSQL for %.0fs: %s",
            self.retry_after,
            self.reconcile,
            exc,
        )

    async def read(self, keys: Sequence[str]) -> dict[str, Window]:
        if self.reads_from_redis:
            try:
                return await self.redis.read(keys)
            except StoreFault as exc:
                self._fault(exc)
        return await self.postgres.read(keys)

    async def count(self, counters: Sequence[Counter]) -> None:
        await self._on_redis(lambda: self.redis.count(counters))
        await self.postgres.count(counters)

    async def clear(self, keys: Sequence[str]) -> None:
        await self._on_redis(lambda: self.redis.clear(keys))
        await self.postgres.clear(keys)

    async def _on_redis(self, call: Callable[[], Awaitable[None]]) -> None:
        """The call on Redis, unless Redis is skipped after a fault; a fault here starts a skip."""
        if time.monotonic() < self.redis_down_until:
            return
        try:
            await call()
        except StoreFault as exc:
            self._fault(exc)
