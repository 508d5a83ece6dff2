"""Housekeeping of the tables that only grow (attempt counters, revoked subjects): the rows past their
time deleted a batch at a time, a bounded round every minute, in a task of the lifespan's.

Each replica purges, which is harmless: the same DELETE. A fault postpones a round to the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from auth_service.db.engine import Database
from auth_service.errors import ServiceUnavailable

log = logging.getLogger(__name__)

PURGE_BATCH = 10_000
PURGE_BATCHES = 20  # a round: up to 200k rows; at a round a minute, 12M rows an hour
PURGE_INTERVAL_SECONDS = 60.0

Purge = Callable[[], Awaitable[int]]


async def delete_in_batches(db: Database, statement: str, *args: object) -> int:
    """Run a DELETE whose last parameter is the batch size until a batch comes short, for one round; rows deleted."""
    deleted = 0
    for _ in range(PURGE_BATCHES):
        async with db.driver_connection() as conn:
            status = await conn.execute(statement, *args, PURGE_BATCH)
        batch = int(status.split()[-1])
        deleted += batch
        if batch < PURGE_BATCH:
            break
    return deleted


async def purge_every(interval: float, purge: Purge, what: str) -> None:
    """Purge every `interval` seconds until cancelled (at shutdown); a fault waits for the next round."""
    while True:
        await asyncio.sleep(interval)
        try:
            deleted = await purge()
        except ServiceUnavailable as exc:
            log.info("%s: purge postponed: %s", what, exc.code)
        except Exception:
            # Housekeeping: whatever went wrong (a schema not migrated yet), the next round retries.
            log.warning("%s: purge failed", what, exc_info=True)
        else:
            log.debug("%s: purged %d rows", what, deleted)


@contextlib.asynccontextmanager
async def purging(purge: Purge, what: str, interval: float = PURGE_INTERVAL_SECONDS) -> AsyncIterator[None]:
    """purge_every in the background for the length of the block."""
    task = asyncio.create_task(purge_every(interval, purge, what), name=f"{what}-purge")
    try:
        yield
    finally:
        await cancel_and_wait(task)


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
