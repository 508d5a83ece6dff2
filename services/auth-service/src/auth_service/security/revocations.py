"""Revoked subjects: every token of a subject issued up to an instant is refused, on every replica.

The token check reads no database (tokens.py), so what it refuses has to be in memory: a dict,
subject -> revoked_at in epoch seconds, and a token of a subject in it with `iat <= revoked_at` is
refused as an invalid one is. The dict follows the table revoked_subjects (migration 0003: a trigger
writes a row as a user is deleted, in the deleting transaction, and another NOTIFYs it on
REVOCATION_CHANNEL). The invalidation listener's connection hears those NOTIFYs, and each time it
(re)connects, once LISTEN has taken effect, the table is read again (through the read pool: the
listener's role needs no more than LISTEN): what was revoked while it was down is not missed.
Readiness waits for the first read.

A row matters while a token it refuses could still be accepted: `token_ttl + leeway` after
revoked_at (the horizon). Older rows are not loaded, leave the dict, and are purged from the table
by every replica (harmless: the same DELETE).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from auth_service.db.engine import Database
from auth_service.db.purge import delete_in_batches
from auth_service.errors import ServiceUnavailable

log = logging.getLogger(__name__)

LOAD = """
SELECT user_id::text, extract(epoch FROM revoked_at)::float8
FROM revoked_subjects WHERE revoked_at > now() - make_interval(secs => $1)
"""
# A batch at a time, as the attempt counters' purge; the table holds a horizon's deletes, so one
# batch is the usual round.
PURGE = """
DELETE FROM revoked_subjects WHERE user_id = ANY(ARRAY(
    SELECT user_id FROM revoked_subjects WHERE revoked_at < now() - make_interval(secs => $1) LIMIT $2
))
"""


class RevokedSubjects:
    """What the token path asks: was this token's subject revoked since the token was issued?"""

    def __init__(self, horizon_seconds: float) -> None:
        self.horizon = horizon_seconds
        self.loaded = False  # the table was read once: until then the service is not ready
        self._revoked_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._revoked_at)

    def revoked_at(self, subject: str) -> float | None:
        return self._revoked_at.get(subject)

    def refuses(self, claims: Mapping[str, Any]) -> bool:
        """True for a token issued no later than its subject's revocation: one dict lookup."""
        revoked_at = self._revoked_at.get(claims["sub"])
        return revoked_at is not None and claims["iat"] <= revoked_at

    def revoke(self, subject: str, revoked_at: float) -> None:
        """Note a revocation; the latest wins (a NOTIFY and a reload may bring one in either order)."""
        if revoked_at > self._revoked_at.get(subject, -math.inf):
            self._revoked_at[subject] = revoked_at

    def notified(self, payload: str) -> None:
        """A NOTIFY on REVOCATION_CHANNEL: "<user_id> <revoked_at in epoch seconds>"."""
        subject, _, revoked_at = payload.partition(" ")
        try:
            self.revoke(subject, float(revoked_at))
        except ValueError:
            log.warning("revocations: a NOTIFY not understood: %r", payload)

    async def reload(self, db: Database) -> None:
        """Every row within the horizon; the listener calls it once it listens, so nothing is missed between."""
        async with db.driver_connection() as conn:
            rows = await conn.fetch(LOAD, self.horizon)
        for subject, revoked_at in rows:
            self.revoke(subject, revoked_at)
        self.expire(time.time())
        self.loaded = True

    def expire(self, now: float) -> int:
        """Forget the revocations past the horizon (every token they refuse has expired); how many."""
        cutoff = now - self.horizon
        expired = [subject for subject, revoked_at in self._revoked_at.items() if revoked_at < cutoff]
        for subject in expired:
            del self._revoked_at[subject]
        return len(expired)

    def require_loaded(self) -> None:
        """Readiness: a replica that has not read the table would accept the tokens it lists."""
        if not self.loaded:
            raise ServiceUnavailable("revocations_not_loaded", "the revoked subjects are not loaded yet")

    async def purge(self, db: Database) -> int:
        """Forget the revocations past the horizon, here and in the table (one round); how many rows went."""
        self.expire(time.time())
        return await delete_in_batches(db, PURGE, self.horizon)
