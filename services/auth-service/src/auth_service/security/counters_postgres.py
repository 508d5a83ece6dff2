"""Attempt counters in PostgreSQL (table attempt_counters), shared by the replicas: a statement per call.

Faults fail closed, as the database's own 503s (pool acquire and statement timeouts bound them): the
credentials are in the same database, so a login it cannot count is a login it could not check
either, and counting nothing would let whoever makes the counters slow guess without limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from auth_service.db.engine import Database
from auth_service.db.purge import delete_in_batches
from auth_service.security.counters import Counter, Window

log = logging.getLogger(__name__)

READ = """
SELECT key, count, extract(epoch FROM window_end - now()) * 1000 AS remaining_ms
FROM attempt_counters WHERE key = ANY($1::text[]) AND window_end > now()
"""
# A counter whose window ended starts a new one. Rows are locked in key order, so that two counts
# of the same keys cannot deadlock.
COUNT = """
INSERT INTO attempt_counters AS c (key, count, window_end)
SELECT key, 1, now() + make_interval(secs => window_seconds)
FROM unnest($1::text[], $2::int[]) AS w(key, window_seconds)
ORDER BY key
ON CONFLICT (key) DO UPDATE SET
    count = CASE WHEN c.window_end > now() THEN c.count + 1 ELSE 1 END,
    window_end = CASE WHEN c.window_end > now() THEN c.window_end ELSE excluded.window_end END
"""
CLEAR = "DELETE FROM attempt_counters WHERE key = ANY($1::text[])"
# Windows that ended, a batch at a time (no index on window_end: it would make every count a
# non-HOT update); each replica purges, which is harmless.
PURGE = """
DELETE FROM attempt_counters WHERE key = ANY(ARRAY(
    SELECT key FROM attempt_counters WHERE window_end < now() LIMIT $1
))
"""


class PostgresCounters:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def read(self, keys: Sequence[str]) -> dict[str, Window]:
        async with self.db.driver_connection() as conn:
            rows = await conn.fetch(READ, list(keys))
        return {row["key"]: Window(row["count"], float(row["remaining_ms"])) for row in rows}

    async def count(self, counters: Sequence[Counter]) -> None:
        keys = [counter.key for counter in counters]
        windows = [counter.window for counter in counters]
        async with self.db.driver_connection() as conn:
            await conn.execute(COUNT, keys, windows)

    async def clear(self, keys: Sequence[str]) -> None:
        async with self.db.driver_connection() as conn:
            await conn.execute(CLEAR, list(keys))

    async def purge(self) -> int:
        """Delete rows whose window ended, one round (db/purge.py); how many."""
        return await delete_in_batches(self.db, PURGE)
