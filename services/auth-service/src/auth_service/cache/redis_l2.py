"""The optional shared (L2) cache in Redis. A fault never fails a request: Redis is skipped for a while."""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


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

    @classmethod
    def from_url(cls, url: str, ttl: float, timeout: float, retry_after: float) -> RedisL2:
        client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, ttl, timeout, retry_after)

    @property
    def available(self) -> bool:
        return time.monotonic() >= self.down_until

    async def get(self, key: object) -> bytes | None:
        if not self.available:
            return None
        value = await self._call(self.client.get(self.prefix + str(key)))
        return value if isinstance(value, bytes) else None

    async def set(self, key: object, value: bytes) -> None:
        if self.available:
            await self._call(self.client.set(self.prefix + str(key), value, px=self.ttl_ms))

    async def delete(self, key: object) -> None:
        if self.available:
            await self._call(self.client.delete(self.prefix + str(key)))

    async def _call(self, command: object) -> object:
        try:
            async with asyncio.timeout(self.timeout):
                return await command  # type: ignore[misc]
        except (RedisError, OSError, TimeoutError) as exc:
            self.faults += 1
            self.down_until = time.monotonic() + self.retry_after
            log.warning("redis unavailable, skipping it for %.1fs: %r", self.retry_after, exc)
            return None

    async def close(self) -> None:
        await self.client.aclose()
