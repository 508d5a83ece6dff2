"""A bound in front of a connection pool: connections out at once, and requests waiting for one.

Both pools queue any number of waiters, each until its own timeout (asyncpg's acquire, SQLAlchemy's
QueuePool). Under overload that is every request: at 2,000 connections of cache misses, 1,000 requests
waited up to the acquire timeout with their tasks and request objects, 0.2-1% were served, and the 503s
took 1.2 s at the median. With this gate in front, a request finds a connection, or a place among a
few waiters, or a 503 at once. And since the pool behind it always has a connection free for whoever
passed the gate, the pool itself never waits: a timeout from it can only be a connect that did not
finish, that is the database (a pool wait and a connect timed out alike as TimeoutError before, and
some exhausted pools answered `database_unavailable`).

A few lines on asyncio.Semaphore rather than a library: no asyncio library bounds a semaphore's
waiters, and the Semaphore is first-come first-served (a newcomer never takes a slot from a waiter).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from auth_service.errors import ServiceUnavailable


class PoolExhausted(ServiceUnavailable):
    """Every connection in use and the waiters at their bound, or no connection freed in time."""

    def __init__(self) -> None:
        super().__init__("db_pool_exhausted", "no database connection was free in time")


class ConnectionGate:
    """At most `capacity` holders at once, at most `max_waiters` waiting up to `timeout`; beyond, PoolExhausted."""

    def __init__(self, capacity: int, max_waiters: int, timeout: float) -> None:
        self.capacity = capacity
        self.max_waiters = max_waiters
        self.timeout = timeout
        self.waiting = 0
        self.rejected = 0  # refused at once: the waiters were at their bound
        self.timed_out = 0  # waited `timeout` in vain
        self._free = asyncio.Semaphore(capacity)

    @property
    def full(self) -> bool:
        """True when a new request would be refused at once."""
        return self._free.locked() and self.waiting >= self.max_waiters

    @property
    def bound(self) -> int:
        """How many requests may hold or wait for a connection at once."""
        return self.capacity + self.max_waiters

    def count_refusal(self) -> None:
        """Count a request refused for this pool before it came to the gate (the hot path's)."""
        self.rejected += 1

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """A place among the `capacity` holders for the length of the block."""
        await self._enter()
        try:
            yield
        finally:
            self._free.release()

    async def _enter(self) -> None:
        if not self._free.locked():
            await self._free.acquire()  # a slot is free: returns without suspending
            return
        if self.waiting >= self.max_waiters:
            self.rejected += 1
            raise PoolExhausted
        self.waiting += 1
        try:
            async with asyncio.timeout(self.timeout):
                await self._free.acquire()
        except TimeoutError:
            self.timed_out += 1
            raise PoolExhausted from None
        finally:
            self.waiting -= 1
