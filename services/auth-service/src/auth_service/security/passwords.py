"""Password hashing with argon2id, off the event loop, in a bounded pool that refuses rather than queues."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn, TypeVar

import nacl.pwhash.argon2id as sodium_argon2id
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from nacl.exceptions import CryptoError
from opentelemetry import trace
from prometheus_client import Histogram

from auth_service.errors import ServiceUnavailable
from auth_service.settings import Settings

T = TypeVar("T")


class PasswordHasher:
    """Hash and verify in worker threads (argon2-cffi drops the GIL); admit at most workers + queue."""

    def __init__(
        self, settings: Settings, tracer: trace.Tracer | None = None, wait_histogram: Histogram | None = None
    ) -> None:
        self.tracer = tracer
        self.wait_histogram = wait_histogram
        self._argon2 = Argon2id(
            settings.argon2_backend, settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
        )
        self.backend = settings.argon2_backend
        self.workers = settings.hash_workers
        self.capacity = settings.hash_capacity
        # The most one client (address) may hold of the capacity: beyond, it gets the 503, not the others.
        self.client_share = max(1, int(settings.hash_capacity * settings.hash_client_share))
        self.retry_after = settings.retry_after_seconds
        self.admitted = 0
        self.rejected = 0
        self._held: dict[str, int] = {}  # admitted operations per client; a client at zero has no entry
        self._executor = ThreadPoolExecutor(
            settings.hash_workers,
            thread_name_prefix="argon2",
            initializer=_lower_priority,
            initargs=(settings.hash_worker_nice,),
        )
        # Verified against when the email is unknown, so that answer costs what a wrong password costs.
        # Made in a worker, as verifications run, and timed there (the floor may be this one's cost),
        # after a first hash: a process's first also pays for paging in its memory and the library, which
        # is not what a verification costs (a CI run's floors came out 1.95x apart for 4x the work).
        self._executor.submit(self._argon2.hash, secrets.token_urlsafe(24)).result()
        made = self._executor.submit(_timed, self._argon2.hash, (secrets.token_urlsafe(24),)).result()
        self._dummy_hash, started_at, finished_at = made
        self._dummy_seconds = (finished_at - started_at) / 1e9
        self._current = (settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism)
        self._costliest = costliest_parameters(settings)
        self._floor: asyncio.Future[float] | None = None

    async def hash(self, password: str, client: str | None = None) -> str:
        return await self._run("hash", client, self._argon2.hash, password)

    async def hash_many(self, passwords: Sequence[str], client: str | None = None) -> list[str]:
        """Hash a batch a few at a time (a worker's worth, within the client's share): logins still find room."""
        step = min(self.workers, self.client_share) if client is not None else self.workers
        hashes: list[str] = []
        for start in range(0, len(passwords), step):
            chunk = passwords[start : start + step]
            hashes += await asyncio.gather(*(self.hash(password, client) for password in chunk))
        return hashes

    async def verify(self, password_hash: str, password: str, client: str | None = None) -> bool:
        return await self._run("verify", client, self._argon2.verify, password_hash, password)

    async def verify_dummy(self, password: str, client: str | None = None) -> None:
        """Spend the time of a verification at the current parameters (unknown user), and fail."""
        await self._run("verify", client, self._argon2.verify, self._dummy_hash, password)

    async def failure_floor(self) -> float:
        """Seconds a failed credential check takes at least (see FLOOR_MARGIN); measured on first use."""
        if self._floor is None:
            self._floor = asyncio.ensure_future(self._measure_floor())
        # Shielded: the first failure's request may be cancelled, the measurement is everyone's.
        return await asyncio.shield(self._floor)

    async def _measure_floor(self) -> float:
        if self._costliest == self._current:
            return self._dummy_seconds * FLOOR_MARGIN
        memory, time_cost, _ = self._costliest
        costliest = Argon2id(self.backend, time_cost, memory, 1)
        loop = asyncio.get_running_loop()
        work = (secrets.token_urlsafe(24),)
        _, started_at, finished_at = await loop.run_in_executor(self._executor, _timed, costliest.hash, work)
        return (finished_at - started_at) / 1e9 * FLOOR_MARGIN

    def needs_rehash(self, password_hash: str) -> bool:
        return self._argon2.needs_rehash(password_hash)

    async def _run(self, operation: str, client: str | None, work: Callable[..., T], *args: str) -> T:
        self._admit(client)
        queued_at = time.time_ns()
        try:
            loop = asyncio.get_running_loop()
            result, started_at, finished_at = await loop.run_in_executor(self._executor, _timed, work, args)
        finally:
            self._release(client)
        self._observe(operation, queued_at, started_at, finished_at)
        return result

    def _admit(self, client: str | None) -> None:
        """Take a place in the queue, or refuse at once: the queue is full, or this client holds its share."""
        if self.admitted >= self.capacity:
            self._refuse("too many password operations")
        if client is not None:
            held = self._held.get(client, 0)
            if held >= self.client_share:
                self._refuse("too many password operations from this client")
            self._held[client] = held + 1
        self.admitted += 1

    def _release(self, client: str | None) -> None:
        self.admitted -= 1
        if client is not None:
            held = self._held.pop(client) - 1
            if held:
                self._held[client] = held

    def _refuse(self, message: str) -> NoReturn:
        self.rejected += 1
        raise ServiceUnavailable("hashing_overloaded", message, self.retry_after)

    def _observe(self, operation: str, queued_at: int, started_at: int, finished_at: int) -> None:
        if self.wait_histogram is not None:
            self.wait_histogram.observe((started_at - queued_at) / 1e9)
        if self.tracer is None or not trace.get_current_span().is_recording():
            return
        # Recorded afterwards with the times taken in the worker: the work ran in another thread.
        self.tracer.start_span("password.queue_wait", start_time=queued_at).end(end_time=started_at)
        work = self.tracer.start_span(f"password.{operation}", start_time=started_at)
        work.set_attribute("password.algorithm", "argon2id")
        work.end(end_time=finished_at)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


class Argon2id:
    """argon2id at fixed parameters, computed by libsodium (PyNaCl) or by argon2-cffi (libargon2).

    libsodium picks an implementation for the CPU it runs on (AVX2, AVX-512), which libargon2 as
    argon2-cffi ships does not: less CPU per hash at the same parameters (`python -m bench.hashing`).
    Both write the same PHC strings (v=19, 16-byte salt, 32-byte hash) and each verifies the other's,
    so switching keeps every stored hash. Reading a hash's parameters, for a rehash, is argon2-cffi's.
    """

    def __init__(self, backend: str, time_cost: int, memory_kib: int, lanes: int) -> None:
        self.sodium = backend == "libsodium"
        self.time_cost, self.memory_kib = time_cost, memory_kib
        self._cffi = Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=lanes, type=Type.ID)

    def hash(self, password: str) -> str:
        if self.sodium:
            made = sodium_argon2id.str(password.encode(), opslimit=self.time_cost, memlimit=self.memory_kib * 1024)
            return made.decode("ascii")
        return self._cffi.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """False for a wrong password and for a string that is no argon2id hash alike."""
        try:
            if self.sodium:
                return bool(sodium_argon2id.verify(password_hash.encode("ascii", "replace"), password.encode()))
            return self._cffi.verify(password_hash, password)
        except (CryptoError, VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._cffi.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True


# Timing after a cost change. A stored hash is verified at its own parameters, which stay until the
# user's next login (a rehash), or forever for an imported one; the dummy hash for an unknown email is
# at the current ones. Raising the time cost from 2 made unknown emails slower than known ones (105
# against 38 ms), and a costlier import makes its account slower: either tells which emails exist.
# So every failed credential check is answered no sooner than a floor (api/routes/auth.py sleeps,
# without CPU) that covers the costliest verification the service can be asked to do: at the current
# parameters or the import range's maximum, whichever is costlier. Successful logins are not padded.
# Rejected: a dummy hash per parameter set in the database. An unknown email would still need one set
# picked for it, any pick differs from the known accounts on the other sets, and those change as users
# log in and are rehashed; the floor is one constant for all. Its price is latency on failures alone.
# The floor is measured, not scaled from the current parameters' cost: argon2's time is not linear in
# memory (here 19 MiB fits the 32 MiB L3 and 64 MiB does not: 1.0 against 1.3-1.9 us per KiB-pass).
# One hash at the costliest parameters (p=1: lanes share the same work, so one lane is the slowest), in
# a worker, the first time a floor is needed: a process that never sees a failed login never pays it.
# When the current parameters are the costliest, the dummy hash's own time serves. The margin covers
# the noise of one measurement on a loaded machine (338 to 459 ms for one same hash here).
FLOOR_MARGIN = 1.5


def costliest_parameters(settings: Settings) -> tuple[int, int, int]:
    """(memory KiB, time cost, lanes) of the costliest hash the service may verify: its own or an import's."""
    return (
        max(settings.argon2_memory_kib, settings.argon2_import_max_memory_kib),
        max(settings.argon2_time_cost, settings.argon2_import_max_time_cost),
        1,
    )


def _lower_priority(nice: int) -> None:
    """In a worker thread: yield the CPU to the event loop when both want it (Linux: niceness is per thread).

    Only ever lowers the priority: raising it back would need a privilege the service does not have.
    """
    thread = threading.get_native_id()
    if nice > os.getpriority(os.PRIO_PROCESS, thread):
        os.setpriority(os.PRIO_PROCESS, thread, nice)


def _timed(work: Callable[..., T], args: tuple[str, ...]) -> tuple[T, int, int]:
    """Run in a worker: the result, and when the work started and finished (ns since the epoch)."""
    started_at = time.time_ns()
    result = work(*args)
    return result, started_at, time.time_ns()
