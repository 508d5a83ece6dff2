"""Liveness and readiness state: draining on shutdown, and a cached look at the database."""

from __future__ import annotations

import asyncio
import time

from auth_service.db.engine import Database
from auth_service.errors import ServiceUnavailable

# Where the lifespan state holds the Health, for the HTTP protocol (wire.py) to read while draining.
HEALTH_STATE = "health"
# Probes from kubelet, load balancers and scrapers can come often; one ping a second is enough.
READINESS_CACHE_SECONDS = 1.0


class Health:
    """Whether this process should receive traffic."""

    def __init__(self) -> None:
        self.draining = False
        self._checked_at = float("-inf")
        self._last_error: ServiceUnavailable | None = None
        self._lock = asyncio.Lock()

    def start_draining(self) -> None:
        self.draining = True

    async def check_ready(self, db: Database) -> None:
        """Raise ServiceUnavailable when draining or when the database does not answer."""
        if self.draining:
            raise ServiceUnavailable("draining", "this instance is shutting down")
        async with self._lock:
            if time.monotonic() - self._checked_at >= READINESS_CACHE_SECONDS:
                self._last_error = await self._ping(db)
                self._checked_at = time.monotonic()
        if self._last_error is not None:
            raise self._last_error

    @staticmethod
    async def _ping(db: Database) -> ServiceUnavailable | None:
        try:
            await db.ping()
        except ServiceUnavailable as exc:
            return exc
        return None
