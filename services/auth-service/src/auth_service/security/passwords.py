"""Password hashing with argon2id, off the event loop, in a bounded pool that refuses rather than queues."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from auth_service.errors import ServiceUnavailable
from auth_service.settings import Settings

T = TypeVar("T")


class PasswordHasher:
    """Hash and verify in worker threads (argon2-cffi drops the GIL); admit at most workers + queue."""

    def __init__(self, settings: Settings) -> None:
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
        self.last_wait_seconds = 0.0
        self._executor = ThreadPoolExecutor(settings.hash_workers, thread_name_prefix="argon2")
        # Verified against when the email is unknown, so that answer costs what a wrong password costs.
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return await self._run(self._argon2.hash, password)

    async def hash_many(self, passwords: Sequence[str]) -> list[str]:
        """Hash a batch, a worker's worth at a time, so that logins still find room in the queue."""
        hashes: list[str] = []
        for start in range(0, len(passwords), self.workers):
            chunk = passwords[start : start + self.workers]
            hashes += await asyncio.gather(*(self.hash(password) for password in chunk))
        return hashes

    async def verify(self, password_hash: str, password: str) -> bool:
        return await self._run(self._verify, password_hash, password)

    async def verify_dummy(self, password: str) -> None:
        """Spend the time of a real verification (unknown user), and fail."""
        await self._run(self._verify, self._dummy_hash, password)

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

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        if self.admitted >= self.capacity:
            self.rejected += 1
            raise ServiceUnavailable("hashing_overloaded", "too many password operations", self.retry_after)
        self.admitted += 1
        queued_at = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, queued_at, work, args)
        finally:
            self.admitted -= 1

    def _timed(self, queued_at: float, work: Callable[..., T], args: tuple[str, ...]) -> T:
        self.last_wait_seconds = time.perf_counter() - queued_at
        return work(*args)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
