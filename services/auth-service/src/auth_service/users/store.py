"""Users as the routes see them: cached reads (L1, then Redis, then PostgreSQL) and invalidating writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg
from opentelemetry import trace
from sqlalchemy.engine import RowMapping

from auth_service.cache.local import Loaded, LocalCache
from auth_service.db.engine import Database
from auth_service.observability.tracing import CACHE_HIT
from auth_service.users import repository
from auth_service.users.schemas import encode_user

if TYPE_CHECKING:
    from auth_service.cache.redis_l2 import RedisL2


class UserStore:
    """The one place that knows a user may be cached, and drops it wherever it changes."""

    def __init__(
        self, db: Database, cache: LocalCache, l2: RedisL2 | None = None, tracer: trace.Tracer | None = None
    ) -> None:
        self.db = db
        self.cache = cache
        self.l2 = l2
        self.tracer = tracer
        self._dropping: set[asyncio.Task[None]] = set()
        self._passed_on: set[str] = set()  # keys of the misses the hot path passed on in this turn of the loop
        cache.refresh_with(self._reload)

    async def get_json(self, user_id: uuid.UUID) -> bytes | None:
        """The user's response bytes, or None when there is no such user."""
        # Cached under the canonical text of the id: the hot path looks it up without parsing.
        key = str(user_id)
        # From here the key's load counts among loads_in_flight (or it is a hit): no longer passed on.
        self._passed_on.discard(key)
        request_span = trace.get_current_span() if self.tracer is not None else None
        if request_span is None or not request_span.is_recording():
            return await self.cache.get_or_load(key, lambda: self._load(user_id))
        assert self.tracer is not None
        hit, value = self.cache.cached(key)
        # A hit takes microseconds: an attribute of the request's span says so (as the fast lane's
        # spans do), where a child span would double what tracing the request costs.
        request_span.set_attribute(CACHE_HIT, hit)
        if hit:
            return value
        with self.tracer.start_as_current_span("cache.lookup", attributes={"cache.name": "users"}):
            # The load task starts here, so the database span is this span's child.
            return await self.cache.get_or_load(key, lambda: self._load(user_id))

    def refuses_miss(self, key: str) -> bool:
        """True, and counted, when a miss of this key is to get 503 db_pool_exhausted at once.

        The hot path asks as it parses a miss, and answers the 503 there: through the application such
        a refusal cost as much CPU as a served read. A miss is refused when it would need a read
        connection (no Redis to ask first, no load of the key under way to join) and the read pool's
        holders and waiters are at their bound, counting the loads under way and the keys passed on
        whose loads have not started yet (at 2,000 connections, hundreds were passed on in one turn of
        the loop, then refused in the application). A key leaves the passed-on set as its load starts:
        counted in both, 39 passed keys and their 41 loads refused misses at 64 connections, under a
        bound of 79 (bench, user_hit, no warm-up).
        """
        if self.l2 is not None or self.cache.loading(key) or key in self._passed_on:
            return False  # a miss of a key passed on in this turn joins that key's load
        if self.db.read_gate.refuses(on_the_way=self.cache.loads_in_flight + len(self._passed_on)):
            return True
        if not self._passed_on:
            # Callbacks run in order: this one before the passed requests' first steps, which start their loads.
            asyncio.get_running_loop().call_soon(self._passed_on.clear)
        self._passed_on.add(key)
        return False

    async def _reload(self, key: Hashable) -> Loaded:
        """A refresh of a cached user, started by a hit on the hot path (the key is the id's text)."""
        return await self._load(uuid.UUID(str(key)))

    async def _load(self, user_id: uuid.UUID) -> Loaded:
        if self.l2 is not None:
            shared = await self.l2.get(user_id)
            if shared is not None:
                return shared  # kept here only as long as Redis keeps it
        row = await repository.fetch_user(self.db, user_id)
        if row is None:
            return None
        encoded = encode_user(row)
        if self.l2 is not None:
            await self.l2.set(user_id, encoded)
        return encoded

    async def create(self, email: str, name: str, password_hash: str) -> RowMapping:
        return await repository.insert_user(self.db, email, name, password_hash)

    async def create_many(self, rows: Sequence[tuple[str, str, str]]) -> list[Any]:
        return await repository.insert_users(self.db, rows)

    async def taken_emails(self, emails: Sequence[str]) -> set[str]:
        return await repository.taken_emails(self.db, emails)

    async def update(self, user_id: uuid.UUID, changes: Mapping[str, Any]) -> asyncpg.Record | None:
        try:
            return await repository.update_user(self.db, user_id, changes)
        finally:
            await self.forget(user_id)

    async def delete(self, user_id: uuid.UUID) -> float | None:
        """When the user's tokens were revoked (epoch seconds), or None when there was no such user."""
        try:
            return await repository.delete_user(self.db, user_id)
        finally:
            await self.forget(user_id)

    async def forget(self, user_id: uuid.UUID) -> None:
        """Drop this replica's copy and the shared one; other replicas hear of it through NOTIFY."""
        self.cache.invalidate(str(user_id))
        if self.l2 is not None:
            await self.l2.delete(user_id)

    def forget_locally(self, payload: str) -> None:
        """A NOTIFY from the database: another writer changed this user."""
        try:
            user_id = uuid.UUID(payload)
        except ValueError:
            return
        self.cache.invalidate(str(user_id))
        if self.l2 is not None:
            task = asyncio.ensure_future(self._forget_shared(self.l2, user_id))
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)

    async def _forget_shared(self, l2: RedisL2, user_id: uuid.UUID) -> None:
        # The NOTIFY comes at commit, before the writer drops the shared copy (and a change made in
        # SQL has no writer to drop it): a read here meanwhile copies the old user back from Redis.
        # So every replica drops the shared copy too, then its own copy again.
        await l2.delete(user_id)
        self.cache.invalidate(str(user_id))

    async def close(self) -> None:
        """Wait for the shared copies being dropped (before Redis closes)."""
        await asyncio.gather(*self._dropping)
