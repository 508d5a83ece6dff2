"""Password hashing with argon2id, off the event loop, in a bounded pool that refuses rather than queues."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
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
        self._argon2 = Argon2Hasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self.workers = settings.hash_workers
        self.capacity = settings.hash_capacity
        self.retry_after = settings.retry_after_seconds
        self.admitted = 0
        self.rejected = 0
        self._executor = ThreadPoolExecutor(
            settings.hash_workers,
            thread_name_prefix="argon2",
            initializer=_lower_priority,
            initargs=(settings.hash_worker_nice,),
        )
        # Verified against when the email is unknown, so that answer costs what a wrong password costs.
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await self._run("hash", self._argon2.hash, password)

    async def hash_many(self, passwords: Sequence[str]) -> list[str]:
        """Hash a batch, a worker's worth at a time, so that logins still find room in the queue."""
        hashes: list[str] = []
        for start in range(0, len(passwords), self.workers):
            chunk = passwords[start : start + self.workers]
            hashes += await asyncio.gather(*(self.hash(password) for password in chunk))
        return hashes

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run("verify", self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification (unknown user), and fail."""
        await self._run("verify", self._verify, self._dummy_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._argon2.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def _run(self, operation: str, work: Callable[..., T], *args: str) -> T:
        if self.admitted >= self.capacity:
            self.rejected += 1
            raise ServiceUnavailable("hashing_overloaded", "too many password operations", self.retry_after)
        self.admitted += 1
        queued_at = time.time_ns()
        try:
            loop = asyncio.get_running_loop()
            result, started_at, finished_at = await loop.run_in_executor(self._executor, _timed, work, args)
        finally:
            self.admitted -= 1
        self._observe(operation, queued_at, started_at, finished_at)
        return result

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
