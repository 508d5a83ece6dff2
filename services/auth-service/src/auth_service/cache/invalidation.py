"""Cache invalidation and token revocation across replicas: LISTEN on the channels database triggers NOTIFY on.

A dedicated connection (LISTEN holds it for good, so it stays out of the request pool), on a DSN of
its own (AUTH_DATABASE_LISTENER_URL): PgBouncer in transaction mode returns the server session to its
pool after each transaction, so a LISTEN there stops hearing (PgBouncer lists it as unsupported in
that mode). The pools may go through PgBouncer; this connection goes to PostgreSQL directly.

While it is down, changes may be missed: the cache is cleared when it drops and again when it is
back, and entries made meanwhile live at most one TTL, which bounds staleness. Revocations on a
second channel, on the same connection (one session per replica, whatever it listens to): each time
it listens again, the revoked subjects are read anew before it counts as connected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from auth_service.db.schema import INVALIDATION_CHANNEL, REVOCATION_CHANNEL
from auth_service.errors import ServiceUnavailable

log = logging.getLogger(__name__)

# How the listener's connection shows in pg_stat_activity.
LISTENER_APPLICATION_NAME = "auth-service-listener"


class InvalidationListener:
    """Runs until stopped: connect, LISTEN, catch up, watch the connection, reconnect after a pause.

    `on_change` and `on_revoked` get the payloads of the two channels; `on_gap` is called when
    NOTIFYs may have been missed; `catch_up` reads again, within the keepalive, what they would have
    said (the revocations), once LISTEN has taken effect.
    """

    def __init__(
        self,
        dsn: str,
        on_change: Callable[[str], None],
        on_gap: Callable[[], None],
        on_revoked: Callable[[str], None],
        catch_up: Callable[[], Awaitable[None]],
        reconnect_delay: float = 1.0,
        keepalive: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.on_change = on_change
        self.on_gap = on_gap
        self.on_revoked = on_revoked
        self.catch_up = catch_up
        self.reconnect_delay = reconnect_delay
        self.keepalive = keepalive
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.received = 0

    async def run(self) -> None:
        while True:
            try:
                await self._listen_once()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ServiceUnavailable) as exc:
                # ServiceUnavailable: the catch-up's pool did not answer; it is tried again with the connection.
                log.warning("invalidation listener lost its connection or could not catch up: %r", exc)
            if self.connected.is_set():
                self.connected.clear()
                self.on_gap()
            await asyncio.sleep(self.reconnect_delay)
            self.reconnects += 1

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(
            self.dsn, timeout=self.keepalive, server_settings={"application_name": LISTENER_APPLICATION_NAME}
        )
        try:
            await conn.add_listener(INVALIDATION_CHANNEL, self._notified)
            await conn.add_listener(REVOCATION_CHANNEL, self._revoked)
            # Anything changed or revoked before LISTEN took effect could have been missed. A NOTIFY
            # arriving while the revocations are read is applied as well: they only add up.
            self.on_gap()
            await asyncio.wait_for(self.catch_up(), self.keepalive)
            self.connected.set()
            await self._watch(conn)
        finally:
            conn.terminate()

    async def _watch(self, conn: asyncpg.Connection) -> None:
        closed = asyncio.Event()
        conn.add_termination_listener(lambda _conn: closed.set())
        while not conn.is_closed():
            try:
                await asyncio.wait_for(closed.wait(), self.keepalive)
            except TimeoutError:
                # A connection that died without a FIN (a partition, a killed host) shows up here.
                await conn.fetchval("SELECT 1", timeout=self.keepalive)

    def _notified(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self.received += 1
        self.on_change(str(payload))

    def _revoked(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        self.on_revoked(str(payload))
