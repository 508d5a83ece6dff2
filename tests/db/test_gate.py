"""The connection gate's overload: once its waiters have been at their bound, it keeps none until few are refused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from auth_service.db import gate as gate_module
from auth_service.db.gate import EXIT_SHARE, OVERLOAD_INTERVAL, ConnectionGate, PoolExhausted


class Clock:
    """The gate's clock, moved by the test: the intervals below are exact, however busy the machine."""

    def __init__(self) -> None:
        self.now = 128.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(gate_module, "time", fake)
    return fake


class Holders:
    """Tasks that take a place at the gate and keep it until released, oldest first."""

    def __init__(self, gate: ConnectionGate) -> None:
        self.gate = gate
        self.releases: list[asyncio.Event] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def arrive(self) -> bool:
        """True when the newcomer holds or waits, False when the gate refused it at once."""
        release = asyncio.Event()

        async def hold() -> None:
            async with self.gate.held():
                await release.wait()

        task = asyncio.ensure_future(hold())
        await asyncio.sleep(0)  # it reaches the gate: holds, waits among the waiters, or is refused
        if task.done():
            assert isinstance(task.exception(), PoolExhausted)
            return False
        self.releases.append(release)
        self.tasks.append(task)
        return True

    async def release_oldest(self) -> None:
        self.releases.pop(0).set()
        await self.tasks.pop(0)
        await asyncio.sleep(0)  # the next waiter takes the freed place

    async def release_all(self) -> None:
        while self.tasks:
            await self.release_oldest()


@contextlib.asynccontextmanager
async def gate_with_holder(
    max_waiters: int = 3, overload_waiters: int = 0, timeout: float = 20.0
) -> AsyncIterator[tuple[ConnectionGate, Holders]]:
    """A gate of one connection, held until the block ends."""
    gate = ConnectionGate(1, max_waiters, timeout, overload_waiters)
    holders = Holders(gate)
    assert await holders.arrive()
    try:
        yield gate, holders
    finally:
        await holders.release_all()


async def overload(holders: Holders) -> None:
    """Fill the waiters to their bound, and one more: refused, it starts the overload."""
    while holders.gate.waiting < holders.gate.max_waiters:
        assert await holders.arrive()
    assert not await holders.arrive()
    assert holders.gate.overloaded


async def test_below_overload_the_waiters_queue_up_to_their_bound(clock: Clock) -> None:
    async with gate_with_holder() as (gate, holders):
        for waiting in (1, 2, 3):
            assert not gate.full
            assert await holders.arrive()
            clock.now += 1.0  # however long they wait: a wait is no overload
            assert gate.waiting == waiting and not gate.overloaded
        assert gate.full and gate.rejected == 0


async def test_once_the_waiters_were_at_their_bound_none_may_wait(clock: Clock) -> None:
    async with gate_with_holder() as (gate, holders):
        await overload(holders)
        await holders.release_oldest()
        assert gate.waiting == 2  # under the bound of 3, but overloaded: the bound is 0
        assert gate.full and gate.bound == 1
        assert not await holders.arrive()
        assert gate.rejected == 2 and gate.waiting == 2


async def test_overloaded_a_newcomer_still_takes_a_free_connection(clock: Clock) -> None:
    async with gate_with_holder() as (gate, holders):
        await overload(holders)
        await holders.release_all()
        assert gate.overloaded and not gate.full
        assert await holders.arrive()
        assert not await holders.arrive()  # it holds the one connection, and none may wait
        assert gate.waiting == 0


async def test_the_overload_goes_on_while_newcomers_are_refused_and_ends_when_few_are(clock: Clock) -> None:
    async with gate_with_holder() as (gate, holders):
        await overload(holders)
        clock.now += OVERLOAD_INTERVAL
        assert gate.overloaded  # its first window: every newcomer refused
        await holders.release_all()
        admitted = round(1 / EXIT_SHARE)
        for _ in range(admitted):
            assert await holders.arrive()
            await holders.release_oldest()
        assert await holders.arrive()
        assert gate.refuses(on_the_way=0)  # 1 refused of 22 newcomers in this window: under EXIT_SHARE
        clock.now += OVERLOAD_INTERVAL
        assert not gate.overloaded
        assert await holders.arrive()  # the bound of 3 again
        assert gate.waiting == 1


async def test_a_share_of_refusals_keeps_it(clock: Clock) -> None:
    async with gate_with_holder() as (gate, holders):
        await overload(holders)
        clock.now += OVERLOAD_INTERVAL
        assert gate.overloaded
        await holders.release_all()
        for _ in range(round(1 / EXIT_SHARE) - 2):
            assert await holders.arrive()
            await holders.release_oldest()
        assert await holders.arrive()
        assert gate.refuses(on_the_way=0)  # 1 of 20: EXIT_SHARE
        clock.now += OVERLOAD_INTERVAL
        assert gate.overloaded and gate.bound == 1


async def test_a_window_with_no_newcomer_ends_it(clock: Clock) -> None:
    async with gate_with_holder() as (gate, holders):
        await overload(holders)
        clock.now += 2 * OVERLOAD_INTERVAL  # its first window all refusals, then nobody came for a window
        assert not gate.overloaded


async def test_the_hot_path_starts_the_overload_only_when_the_waiters_are_at_their_bound(clock: Clock) -> None:
    async with gate_with_holder() as (gate, holders):
        assert gate.refuses(on_the_way=gate.bound)  # passed already, but not come yet: they may not all need it
        assert gate.rejected == 1 and not gate.overloaded
        assert not gate.refuses(on_the_way=gate.bound - 1)
        for _ in range(3):
            assert await holders.arrive()
        assert gate.refuses(on_the_way=0)
        assert gate.rejected == 2 and gate.overloaded


async def test_a_waiter_that_times_out_starts_the_overload(clock: Clock) -> None:
    async with gate_with_holder(timeout=0.01) as (gate, holders):
        assert await holders.arrive()
        waiter = holders.tasks.pop()
        holders.releases.pop()
        with pytest.raises(PoolExhausted):
            await waiter
        assert gate.timed_out == 1 and gate.overloaded and gate.waiting == 0


async def test_overloaded_the_waiters_bound_is_overload_waiters(clock: Clock) -> None:
    async with gate_with_holder(overload_waiters=1) as (gate, holders):
        await overload(holders)
        await holders.release_oldest()
        await holders.release_oldest()
        await holders.release_oldest()  # the last waiter holds: none waits
        assert await holders.arrive()
        assert not await holders.arrive()
        assert gate.waiting == 1 and gate.bound == 2


def test_overload_waiters_are_never_more_than_the_waiters() -> None:
    assert ConnectionGate(1, 2, 1.0, overload_waiters=5).overload_waiters == 2
    assert ConnectionGate(1, 2, 1.0).overload_waiters == 2  # unset: no change under overload
