"""The optional shared (L2) cache in Redis. A fault never fails a request: Redis is skipped for a while."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from auth_service.cache.local import Aged

log = logging.getLogger(__name__)

# While Redis stays down, a reminder at most this often: every request in flight meets the same fault
# (one outage logged about a hundred identical warnings), and the count says more than the copies.
STILL_DOWN_LOG_SECONDS = 60.0


class RedisL2:
    """get/set/delete that answer None or do nothing while Redis is unreachable or slow."""

    def __init__(self, client: Redis, ttl: float, timeout: float, retry_after: float, prefix: str = "auth:user:"):
        self.client = client
        self.ttl_ms = max(1, int(ttl * 1000))
        self.timeout = timeout
        self.retry_after = retry_after
        self.prefix = prefix
        self.down_until = 0.0
        self.faults = 0
        self.outage: Outage | None = None

    @classmethod
    def from_url(cls, url: str, ttl: float, timeout: float, retry_after: float) -> RedisL2:
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, ttl, timeout, retry_after)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.down_until

    async def get(self, key: object) -> Aged | None:
        """The shared copy, with the time it has left in Redis (one round trip)."""
        if not self.available:
            return None
        answer = await self._call(self._get_with_ttl(self.prefix + str(key)))
        if not isinstance(answer, list) or not isinstance(answer[0], bytes) or answer[1] <= 0:
            return None  # none, or its TTL ended between the two commands (-2), or it has none (-1)
        value, remaining_ms = answer
        return Aged(value, remaining_ms / 1000)

    async def _get_with_ttl(self, name: str) -> list[object]:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.get(name)
            pipe.pttl(name)
            return await pipe.execute()  # type: ignore[no-any-return]

    async def set(self, key: object, value: bytes) -> None:
        if self.available:
            await self._call(self.client.set(self.prefix + str(key), value, px=self.ttl_ms))

    async def delete(self, key: object) -> None:
        if self.available:
            await self._call(self.client.delete(self.prefix + str(key)))

    async def _call(self, command: object) -> object:
        try:
            async with asyncio.timeout(self.timeout):
                result = await command  # type: ignore[misc]
        except (RedisError, OSError, TimeoutError) as exc:
            self._fault(exc)
            return None
        if self.outage is not None:
            log.info("redis is back after %.1fs of faults (%d in all)", *self.outage.summary())
            self.outage = None
        return result

    def _fault(self, exc: BaseException) -> None:
        now = time.monotonic()
        self.faults += 1
        self.down_until = now + self.retry_after
        if self.outage is None:
            self.outage = Outage(now)
            log.warning("redis unavailable, skipping it for %.1fs at a time: %r", self.retry_after, exc)
            return
        self.outage.faults += 1
        if now - self.outage.reported_at >= STILL_DOWN_LOG_SECONDS:
            self.outage.reported_at = now
            log.warning("redis still unavailable after %.1fs (%d faults): %r", *self.outage.summary(), exc)

    async def close(self) -> None:
        await self.client.aclose()


class Outage:
    """One stretch of Redis faults, from the first to the next success."""

    __slots__ = ("faults", "reported_at", "started_at")

    def __init__(self, started_at: float) -> None:
        self.started_at = self.reported_at = started_at
        self.faults = 1

    def summary(self) -> tuple[float, int]:
        return time.monotonic() - self.started_at, self.faults
