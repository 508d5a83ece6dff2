"""Every resource of a running service, opened in order at start-up and closed in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.instrumentation.utils import suppress_instrumentation

from auth_service.cache.invalidation import InvalidationListener
from auth_service.cache.local import LocalCache
from auth_service.db.engine import Database, driver_dsn
from auth_service.db.purge import cancel_and_wait, purging
from auth_service.health import Health
from auth_service.observability.telemetry import Telemetry
from auth_service.security.client_address import ClientAddresses
from auth_service.security.login_limits import LoginLimits, open_login_limits
from auth_service.security.passwords import PasswordHasher
from auth_service.security.revocations import RevokedSubjects
from auth_service.security.tokens import TokenService
from auth_service.settings import Settings
from auth_service.users.store import UserStore

if TYPE_CHECKING:
    from auth_service.cache.redis_l2 import RedisL2

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    cache: LocalCache
    l2: RedisL2 | None
    users: UserStore
    hasher: PasswordHasher
    tokens: TokenService
    listener: InvalidationListener
    health: Health
    telemetry: Telemetry
    clients: ClientAddresses
    limits: LoginLimits
    revocations: RevokedSubjects


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, database_url: str, health: Health, telemetry: Telemetry
) -> AsyncIterator[Services]:
    metrics, tracer = telemetry.metrics, telemetry.tracer
    async with contextlib.AsyncExitStack() as stack:
        db = await Database.open(settings, database_url, metrics.db_acquire_wait)
        stack.push_async_callback(db.dispose)
        hasher = PasswordHasher(settings, tracer, metrics.hash_wait)
        stack.callback(hasher.close)
        limits = await stack.enter_async_context(open_login_limits(settings, db))
        l2 = _open_l2(settings)
        if l2 is not None:
            stack.push_async_callback(l2.close)
        cache = LocalCache(
            settings.cache_max_entries,
            settings.cache_max_bytes,
            settings.cache_ttl_seconds,
            settings.cache_negative_ttl_seconds,
        )
        users = UserStore(db, cache, l2, tracer)
        stack.push_async_callback(users.close)
        # A revocation matters until the tokens it refuses have expired, leeway included.
        revocations = RevokedSubjects(settings.token_ttl_seconds + settings.token_leeway_seconds)
        # Its own DSN, so that it can bypass a PgBouncer the pools go through (settings.py says why).
        listener = InvalidationListener(
            driver_dsn(settings.database_listener_url or database_url),
            on_change=users.forget_locally,
            on_gap=cache.clear,
            on_revoked=revocations.notified,
            catch_up=functools.partial(revocations.reload, db),
            reconnect_delay=settings.invalidation_reconnect_seconds,
        )
        # Its keepalive queries and the purge are housekeeping, not requests: no spans for them.
        with suppress_instrumentation():
            listening = asyncio.create_task(listener.run(), name="invalidation-listener")
            await stack.enter_async_context(purging(functools.partial(revocations.purge, db), "revocations"))
        stack.push_async_callback(cancel_and_wait, listening)
        # Start coherent, revocations loaded, when the database is up; do not wait long when it is not
        # (readiness says so).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listener.connected.wait(), settings.db_connect_timeout_seconds)
        tokens = TokenService(settings, revocations)
        clients = ClientAddresses(settings.trusted_proxies)
        yield Services(
            settings, db, cache, l2, users, hasher, tokens, listener, health, telemetry, clients, limits, revocations
        )


def _open_l2(settings: Settings) -> RedisL2 | None:
    if not settings.redis_url:
        return None
    # Imported only with a Redis to talk to: redis-py is 0.4 s of imports at every start otherwise.
    from auth_service.cache.redis_l2 import RedisL2

    return RedisL2.from_url(
        settings.redis_url,
        ttl=settings.cache_ttl_seconds,
        timeout=settings.redis_timeout_seconds,
        retry_after=settings.redis_retry_after_seconds,
    )
