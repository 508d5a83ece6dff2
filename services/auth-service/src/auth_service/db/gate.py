"""A bound in front of a connection pool: connections out at once, and requests waiting for one.

Both pools queue any number of waiters, each until its own timeout (asyncpg's acquire, SQLAlchemy's
QueuePool). Under overload that is every request: at 2,000 connections of cache misses, 1,000 requests
waited up to the acquire timeout with their tasks and request objects, 0.2-1% were served, and the 503s
took 1.2 s at the median. With this gate in front, a request finds a connection, or a place among a
few waiters, or a 503 at once. And since the pool behind it always has a connection free for whoever
passed the gate, the pool itself never waits: a timeout from it can only be a connect that did not
finish, that is the database (a pool wait and a connect timed out alike as TimeoutError before, and
some exhausted pools answered `database_unavailable`).

Overloaded, a full queue of waiters is a standing one: at 3x the misses' capacity, with 64 waiters
ahead the admitted reads took 28-30 ms at the median and 150-177 ms at p99. So once the waiters have been at
their bound (or one waited `timeout` in vain), the gate is overloaded, and at most `overload_waiters`
wait (none by default): there they took 5.3-6.0 ms at the median, 16-84 ms at p99 (reliability, overload).
It stays overloaded while at least EXIT_SHARE of the newcomers in each OVERLOAD_INTERVAL are refused,
not until a lull in the refusals: below the capacity, with no waiters, a burst still finds the pool busy
now and then, and such refusals alone would keep it going. Just above the capacity the state may come
and go (under EXIT_SHARE refused, the waiters allowed again, the queue full again).
Only a full queue starts it, not the hot path's refusals, which count loads about to start as well: so
a closed loop of more clients than connections, such as the bench's misses, waits and is never shed.
Facebook's servers bound their queues so under a standing queue ("Fail at scale", 2015), by delay;
here every holder's work is alike (a point read), so a count bounds the delay as well, and the hot
path's test stays a count.

A few lines on asyncio.Semaphore rather than a library: no asyncio library bounds a semaphore's
waiters, and the Semaphore is first-come first-served (a newcomer never takes a slot from a waiter).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from auth_service.errors import ServiceUnavailable

# The overload is judged over windows this long: the newcomers in one, refused or not, tell whether it
# goes on. A burst drains in less (64 waiters in ~20 ms at the misses' capacity).
OVERLOAD_INTERVAL = 0.1
# Beyond the capacity, most newcomers are refused (two thirds at 3x, a third at 1.5x); below it, a
# few in a burst (at half the capacity after an overload, 0-1.7% of a level's reads in five runs).
EXIT_SHARE = 0.25


class PoolExhausted(ServiceUnavailable):
    """Every connection in use and the waiters at their bound, or no connection freed in time."""

    def __init__(self) -> None:
        super().__init__("db_pool_exhausted", "no database connection was free in time")


class Overload:
    """A gate's overload: from `start` until a window of OVERLOAD_INTERVAL in which fewer than EXIT_SHARE
    of the newcomers were refused, or none came."""

    def __init__(self) -> None:
        self.active = False
        self._window_ends = 0.0
        self._newcomers = 0
        self._refused = 0

    def start(self) -> None:
        if not self.active:
            self.active = True
            self._new_window(time.monotonic())

    def count(self, refused: bool) -> None:
        if self.active:
            self._newcomers += 1
            self._refused += refused

    def check(self) -> bool:
        """Whether it goes on: judged on the last window once it has ended."""
        if not self.active:
            return False
        now = time.monotonic()
        if now < self._window_ends:
            return True
        lull = now >= self._window_ends + OVERLOAD_INTERVAL  # nobody came for a whole window
        if lull or self._refused < EXIT_SHARE * self._newcomers:
            self.active = False
        else:
            self._new_window(now)
        return self.active

    def _new_window(self, now: float) -> None:
        self._window_ends, self._newcomers, self._refused = now + OVERLOAD_INTERVAL, 0, 0


class ConnectionGate:
    """At most `capacity` holders at once, at most `max_waiters` waiting up to `timeout`; beyond, PoolExhausted.

    Overloaded (Overload: from a full queue of waiters until few are refused), at most `overload_waiters` wait.
    """

    def __init__(self, capacity: int, max_waiters: int, timeout: float, overload_waiters: int | None = None) -> None:
        self.capacity = capacity
        self.max_waiters = max_waiters
        self.overload_waiters = max_waiters if overload_waiters is None else min(overload_waiters, max_waiters)
        self.timeout = timeout
        self.waiting = 0
        self.rejected = 0  # refused at once: the waiters were at their bound
        self.timed_out = 0  # waited `timeout` in vain
        self._free = asyncio.Semaphore(capacity)
        self._overload = Overload()

    @property
    def overloaded(self) -> bool:
        return self._overload.check()

    @property
    def waiters_bound(self) -> int:
        return self.overload_waiters if self._overload.active else self.max_waiters

    @property
    def full(self) -> bool:
        """True when a new request would be refused at once."""
        return self._free.locked() and self.waiting >= self.waiters_bound

    @property
    def bound(self) -> int:
        """How many requests may hold or wait for a connection at once, now."""
        return self.capacity + self.waiters_bound

    def refuses(self, on_the_way: int) -> bool:
        """True, and counted, when a request is to be refused before it comes to the gate (the hot path's test).

        `on_the_way` counts the requests passed already that need a place here, holding, waiting or
        not come yet. Only a full queue of waiters starts the overload: those on the way may not all
        need the gate by the time they come. A request passed is counted as it comes to the gate.
        """
        self._overload.check()
        if self.full or on_the_way >= self.bound:
            self._refuse()
            return True
        return False

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """A place among the `capacity` holders for the length of the block."""
        await self._enter()
        try:
            yield
        finally:
            self._free.release()

    def _refuse(self) -> None:
        self.rejected += 1
        if self._free.locked() and self.waiting >= self.max_waiters:
            self._overload.start()
        self._overload.count(refused=True)

    async def _enter(self) -> None:
        self._overload.check()
        if not self._free.locked():
            self._overload.count(refused=False)
            await self._free.acquire()  # a slot is free: returns without suspending
            return
        if self.waiting >= self.waiters_bound:
            self._refuse()
            raise PoolExhausted
        self._overload.count(refused=False)
        self.waiting += 1
        try:
            async with asyncio.timeout(self.timeout):
                await self._free.acquire()
        except TimeoutError:
            self.timed_out += 1
            self._overload.start()
            raise PoolExhausted from None
        finally:
            self.waiting -= 1
