"""Attempt counters in Redis (INCR, and PEXPIRE on a window's first attempt), when the service has a Redis.

Every call is bounded by the Redis timeout; a fault raises StoreFault, and MirroredCounters reads from
PostgreSQL, which holds every count. A count touches several keys in one script, so it needs one Redis (or one
cluster slot): the service's Redis is a single instance, as the cache's is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from auth_service.security.counters import Counter, StoreFault, Window

# KEYS: the counters; ARGV: their windows in ms. Atomic, so a window never lacks its expiry (INCR and
# PEXPIRE sent apart could leave a counter that never ends, if the second were lost).
COUNT = """
for i, key in ipairs(KEYS) do
    if redis.call('INCR', key) == 1 then redis.call('PEXPIRE', key, ARGV[i]) end
end
return 0
"""
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class RedisCounters:
    """Owns its Redis client (closed by `close`)."""

    def __init__(self, client: Redis, timeout: float, prefix: str = "auth:limits:") -> None:
        self.client = client
        self.timeout = timeout
        self.prefix = prefix
        self._count = client.register_script(COUNT)

    @classmethod
    def from_url(cls, url: str, timeout: float) -> RedisCounters:
        return cls(Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout), timeout)

    async def read(self, keys: Sequence[str]) -> dict[str, Window]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.get(self.prefix + key)
            pipe.pttl(self.prefix + key)
        replies = await self._call(pipe.execute())
        windows = {}
        for key, count, remaining_ms in zip(keys, replies[::2], replies[1::2], strict=True):
            if count is not None and remaining_ms > 0:
                windows[key] = Window(int(count), float(remaining_ms))
        return windows

    async def count(self, counters: Sequence[Counter]) -> None:
        keys = [self.prefix + counter.key for counter in counters]
        await self._call(self._count(keys=keys, args=[counter.window * 1000 for counter in counters]))

    async def clear(self, keys: Sequence[str]) -> None:
        await self._call(self.client.delete(*(self.prefix + key for key in keys)))

    async def _call(self, command: Any) -> Any:
        try:
            async with asyncio.timeout(self.timeout):
                return await command
        except REDIS_ERRORS as exc:
            raise StoreFault(repr(exc)) from exc

    async def close(self) -> None:
        await self.client.aclose()
