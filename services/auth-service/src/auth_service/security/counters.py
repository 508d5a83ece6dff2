"""Windowed attempt counters shared by the replicas: what a store does, and Redis with PostgreSQL behind it.

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
from collections.abc import Sequence
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


class FallbackCounters:
    """Redis first; while it is faulty, PostgreSQL, Redis retried after `retry_after` seconds.

    Neither fail-open nor fail-closed: a Redis outage must not open unlimited guessing (the counters
    are what stops it) nor turn logins into 503s (Redis is an optional accelerator here, as for the
    cache). The PostgreSQL counters start from zero, so an outage can give an attacker one more
    window's worth at most, and known clients are not known there; a fault costs one Redis timeout
    per `retry_after`.
    """

    def __init__(self, primary: CounterStore, fallback: CounterStore, retry_after: float) -> None:
        self.primary = primary
        self.fallback = fallback
        self.retry_after = retry_after
        self.down_until = 0.0
        self.faults = 0

    def _primary_up(self) -> bool:
        return time.monotonic() >= self.down_until

    def _fault(self, exc: StoreFault) -> None:
        self.faults += 1
        self.down_until = time.monotonic() + self.retry_after
        # Once per retry period at most: the period is the rate limit of this warning.
        log.warning("attempt counters: Redis unavailable, using PostgreSQL for %.1fs: %s", self.retry_after, exc)

    async def read(self, keys: Sequence[str]) -> dict[str, Window]:
        if self._primary_up():
            try:
                return await self.primary.read(keys)
            except StoreFault as exc:
                self._fault(exc)
        return await self.fallback.read(keys)

    async def count(self, counters: Sequence[Counter]) -> None:
        if self._primary_up():
            try:
                return await self.primary.count(counters)
            except StoreFault as exc:
                self._fault(exc)
        await self.fallback.count(counters)

    async def clear(self, keys: Sequence[str]) -> None:
        if self._primary_up():
            try:
                return await self.primary.clear(keys)
            except StoreFault as exc:
                self._fault(exc)
        await self.fallback.clear(keys)
