"""PasswordHasher: argon2id at the OWASP minimum or above, off the event loop, refusing beyond its capacity."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from auth_service.errors import ServiceUnavailable
from auth_service.security.passwords import PasswordHasher
from auth_service.settings import OWASP_MIN_MEMORY_KIB, OWASP_MIN_TIME_COST

PASSWORD = "correct horse battery staple"
MakeHasher = Callable[..., PasswordHasher]


@pytest.fixture
def make_hasher(settings_for: Any) -> Iterator[MakeHasher]:
    """PasswordHashers on test settings with overrides, each closed after the test."""
    made: list[PasswordHasher] = []

    def make(**overrides: Any) -> PasswordHasher:
        made.append(PasswordHasher(settings_for(**overrides)))
        return made[-1]

    yield make
    for hasher in made:
        hasher.close()


BACKENDS = ("libsodium", "argon2-cffi")


@pytest.fixture(params=BACKENDS)
def hasher(make_hasher: MakeHasher, request: pytest.FixtureRequest) -> PasswordHasher:
    return make_hasher(argon2_backend=request.param)


def phc_parameters(phc: str) -> tuple[str, dict[str, int]]:
    """('argon2id', {'v': 19, 'm': ..., 't': ..., 'p': ...}) from a PHC string."""
    _, variant, version, params, _salt, _digest = phc.split("$")
    values = {"v": int(version.removeprefix("v="))}
    for pair in params.split(","):
        name, value = pair.split("=")
        values[name] = int(value)
    return variant, values


# --- the hashes


async def test_hashes_are_argon2id_at_or_above_the_owasp_minimum(hasher: PasswordHasher) -> None:
    variant, params = phc_parameters(await hasher.hash(PASSWORD))
    assert variant == "argon2id"
    assert params["v"] == 19
    assert params["m"] >= OWASP_MIN_MEMORY_KIB == 19456
    assert params["t"] >= OWASP_MIN_TIME_COST == 2
    assert params["p"] == 1


async def test_the_same_password_hashes_differently_each_time(hasher: PasswordHasher) -> None:
    first, second = await hasher.hash(PASSWORD), await hasher.hash(PASSWORD)
    assert first != second
    assert first.split("$")[4] != second.split("$")[4]  # the salt


async def test_verify_accepts_the_password_and_refuses_others(hasher: PasswordHasher) -> None:
    stored = await hasher.hash(PASSWORD)
    assert await hasher.verify(stored, PASSWORD) is True
    assert await hasher.verify(stored, PASSWORD + " ") is False
    assert await hasher.verify(stored, "") is False


async def test_verify_refuses_against_a_malformed_hash(hasher: PasswordHasher) -> None:
    assert await hasher.verify("not-a-phc-string", PASSWORD) is False


async def test_needs_rehash_when_the_parameters_changed(make_hasher: MakeHasher) -> None:
    old, new = make_hasher(argon2_time_cost=2), make_hasher(argon2_time_cost=3)
    stored = await old.hash(PASSWORD)
    assert old.needs_rehash(stored) is False
    assert new.needs_rehash(stored) is True
    assert new.needs_rehash("not-a-phc-string") is True


# --- the two libraries: the same strings, each reads the other's


@pytest.mark.parametrize(("maker", "checker"), [BACKENDS, BACKENDS[::-1]])
async def test_a_hash_made_by_one_library_verifies_with_the_other(
    make_hasher: MakeHasher, maker: str, checker: str
) -> None:
    made, checking = make_hasher(argon2_backend=maker), make_hasher(argon2_backend=checker)
    stored = await made.hash(PASSWORD)
    theirs = await checking.hash(PASSWORD)
    assert phc_parameters(stored) == phc_parameters(theirs)
    assert [len(part) for part in stored.split("$")[4:]] == [len(part) for part in theirs.split("$")[4:]]
    assert await checking.verify(stored, PASSWORD) is True
    assert await checking.verify(stored, PASSWORD + "!") is False
    # Same parameters, salt and digest lengths: no rehash on a login after switching library.
    assert checking.needs_rehash(stored) is False


async def test_libsodium_verifies_an_argon2_cffi_hash_of_several_lanes(make_hasher: MakeHasher) -> None:
    # Imports may carry p up to argon2_import_max_parallelism; libsodium hashes with one lane only.
    lanes = make_hasher(argon2_backend="argon2-cffi", argon2_parallelism=4)
    stored = await lanes.hash(PASSWORD)
    assert phc_parameters(stored)[1]["p"] == 4
    sodium = make_hasher(argon2_backend="libsodium")
    assert await sodium.verify(stored, PASSWORD) is True
    assert await sodium.verify(stored, "wrong password") is False
    assert sodium.needs_rehash(stored) is True


def test_libsodium_with_more_than_one_lane_is_a_configuration_error(settings_for: Any) -> None:
    with pytest.raises(ValueError, match="one lane"):
        settings_for(argon2_backend="libsodium", argon2_parallelism=2)


# --- the unknown-user path


async def test_verify_dummy_returns_nothing_whatever_the_password(hasher: PasswordHasher) -> None:
    for password in (PASSWORD, "", "x" * 4096):
        assert await hasher.verify_dummy(password) is None


async def _elapsed(work: Any) -> float:
    started = time.perf_counter()
    await work
    return time.perf_counter() - started


async def test_verify_dummy_costs_what_a_failed_verify_costs(hasher: PasswordHasher) -> None:
    stored = await hasher.hash(PASSWORD)
    real: list[float] = []
    dummy: list[float] = []
    for _ in range(15):  # interleaved, so that the machine's load drifts over both alike
        real.append(await _elapsed(hasher.verify(stored, "wrong password")))
        dummy.append(await _elapsed(hasher.verify_dummy("wrong password")))
    ratio = statistics.median(dummy) / statistics.median(real)
    assert 0.67 <= ratio <= 1.5, (ratio, statistics.median(dummy), statistics.median(real))


# --- admission


async def _admitted_hashes(hasher: PasswordHasher, count: int) -> list[asyncio.Task[str]]:
    tasks = [asyncio.create_task(hasher.hash(PASSWORD)) for _ in range(count)]
    await asyncio.sleep(0)  # each task runs up to its executor await, admitted by then
    return tasks


async def test_capacity_is_workers_plus_queue_and_the_next_call_is_refused_at_once(make_hasher: MakeHasher) -> None:
    # A costlier hash than the minimum, so that the admitted ones are surely still running.
    hasher = make_hasher(hash_workers=1, hash_queue_max=1, argon2_time_cost=6)
    assert hasher.capacity == 2
    running = await _admitted_hashes(hasher, 2)
    assert hasher.admitted == 2
    started = time.perf_counter()
    with pytest.raises(ServiceUnavailable) as refused:
        await hasher.verify_dummy(PASSWORD)
    assert time.perf_counter() - started < 0.05
    assert not any(task.done() for task in running), "refused only after waiting for a slot"
    assert (refused.value.status, refused.value.code) == (503, "hashing_overloaded")
    assert refused.value.headers == {"Retry-After": str(hasher.retry_after)}
    assert hasher.rejected == 1
    assert all(phc.startswith("$argon2id$") for phc in await asyncio.gather(*running))


async def test_capacity_comes_back_once_the_admitted_calls_finish(make_hasher: MakeHasher) -> None:
    hasher = make_hasher(hash_workers=1, hash_queue_max=0)
    await asyncio.gather(*await _admitted_hashes(hasher, 1))
    assert hasher.admitted == 0
    assert await hasher.verify(await hasher.hash(PASSWORD), PASSWORD) is True
    assert hasher.rejected == 0


# --- the event loop


async def _tick(gaps: list[float], stop: asyncio.Event) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def test_the_event_loop_keeps_ticking_while_four_hashes_run(make_hasher: MakeHasher) -> None:
    # ~100 ms a hash, so that a hash run on the loop would show as a gap far above scheduling noise.
    hasher = make_hasher(hash_workers=2, argon2_time_cost=10)
    one_hash = await _elapsed(hasher.hash(PASSWORD))
    gaps: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_tick(gaps, stop))
    await asyncio.gather(*(hasher.hash(PASSWORD) for _ in range(4)))
    stop.set()
    await ticker
    assert len(gaps) >= 10, gaps
    assert max(gaps) < one_hash / 2, (max(gaps), one_hash)


def _hashing_thread_niceness() -> list[int]:
    """The scheduling niceness of each live argon2 worker thread (Linux keeps one per thread)."""
    workers = [thread for thread in threading.enumerate() if thread.name.startswith("argon2")]
    return [os.getpriority(os.PRIO_PROCESS, thread.native_id) for thread in workers if thread.native_id]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="niceness per thread is Linux's")
async def test_hashing_threads_run_at_the_configured_niceness(make_hasher: MakeHasher) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    hasher = make_hasher(hash_workers=2, hash_worker_nice=7)
    await asyncio.gather(hasher.hash(PASSWORD), hasher.hash(PASSWORD))
    assert _hashing_thread_niceness() == [max(own, 7)] * 2
    assert os.getpriority(os.PRIO_PROCESS, 0) == own, "the event loop's thread keeps its priority"


# --- a fair share per client


async def test_one_client_holds_at_most_its_share_and_the_others_still_get_in(make_hasher: MakeHasher) -> None:
    hasher = make_hasher(hash_workers=1, hash_queue_max=7, hash_client_share=0.25, argon2_time_cost=6)
    assert hasher.client_share == 2  # a quarter of the capacity of 8
    flood = [asyncio.create_task(hasher.hash(PASSWORD, "flooder")) for _ in range(2)]
    await asyncio.sleep(0)  # both admitted, and running or queued
    started = time.perf_counter()
    with pytest.raises(ServiceUnavailable) as refused:
        await hasher.verify_dummy(PASSWORD, "flooder")
    assert time.perf_counter() - started < 0.05, "refused only after waiting"
    assert (refused.value.status, refused.value.code) == (503, "hashing_overloaded")
    assert refused.value.headers == {"Retry-After": str(hasher.retry_after)}
    assert await hasher.verify(await hasher.hash(PASSWORD, "another"), PASSWORD, "another") is True
    await asyncio.gather(*flood)
    assert hasher.admitted == 0
    assert await hasher.verify(await hasher.hash(PASSWORD, "flooder"), PASSWORD, "flooder") is True


async def test_a_share_is_at_least_one_operation(make_hasher: MakeHasher) -> None:
    hasher = make_hasher(hash_workers=1, hash_queue_max=0, hash_client_share=0.25)
    assert hasher.client_share == 1
    assert await hasher.verify(await hasher.hash(PASSWORD, "alone"), PASSWORD, "alone") is True


async def test_a_batch_from_a_client_hashes_within_its_share(make_hasher: MakeHasher) -> None:
    hasher = make_hasher(hash_workers=4, hash_queue_max=4, hash_client_share=0.25)
    assert hasher.client_share == 2
    hashes = await hasher.hash_many([f"{PASSWORD} {n}" for n in range(5)], "importer")
    assert len(set(hashes)) == 5 and hasher.rejected == 0


# --- the floor of a failed check


async def test_the_floor_covers_the_costliest_hash_the_import_range_allows(make_hasher: MakeHasher) -> None:
    own = make_hasher(argon2_import_max_memory_kib=OWASP_MIN_MEMORY_KIB, argon2_import_max_time_cost=2)
    costlier = make_hasher(argon2_import_max_memory_kib=OWASP_MIN_MEMORY_KIB, argon2_import_max_time_cost=8)
    own_floor, costlier_floor = await own.failure_floor(), await costlier.failure_floor()
    assert own_floor > 0
    # Four times the work at t=8: at least twice the floor, whatever the machine's noise.
    assert costlier_floor > 2 * own_floor, (costlier_floor, own_floor)
    assert await costlier.failure_floor() == costlier_floor, "measured once"
