"""PostgreSQL restarted mid-load (a PostgreSQL of the scenario's own, stopped fast as on a failover):
requests that need it answer 503 with Retry-After at once, the service recovers with no restart of
its own, and afterwards PostgreSQL holds no more of its sessions than its pools allow, none idle in
a transaction. Every signup acknowledged before, during or after is in the database afterwards."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from reliability import postgres
from reliability.context import Context
from reliability.load import Outcome, Tally, latency_ms, paced
from reliability.scenario import Findings, Scenario
from reliability.service import Service, running
from reliability.workload import Workload

# A one-entry cache: the reads go to PostgreSQL, as cache misses do, instead of being answered from memory.
SETTINGS = {"AUTH_CACHE_MAX_ENTRIES": "1", "AUTH_INVALIDATION_RECONNECT_SECONDS": "0.5"}
POOLS = ("AUTH_DB_READ_POOL_SIZE", "AUTH_DB_POOL_SIZE")
DEFAULT_POOL_SIZES = {"AUTH_DB_READ_POOL_SIZE": 15, "AUTH_DB_POOL_SIZE": 10}
# Beyond its pools the service holds one session: the invalidation listener's.
LISTENER_SESSIONS = 1
RECOVERY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Params:
    rate: float
    before_s: float
    down_s: float
    after_s: float
    users: int


@dataclass
class Timeline:
    down: float = 0.0  # PostgreSQL stopped (monotonic)
    up: float = 0.0  # PostgreSQL answering again
    recovered: float | None = None  # the first answer from PostgreSQL after it came back
    ready_again: float | None = None  # /readyz 200 again


async def run(context: Context, params: Params) -> Findings:
    timeline = Timeline()
    async with (
        postgres.stoppable_postgres(context.scratch("postgres")) as server,
        running(context, "service", server.url, **SETTINGS) as service,
        context.witness.client(service.url) as client,
    ):
        workload = await Workload.seeded(context, client, params.users)
        stop = asyncio.Event()
        load = asyncio.create_task(paced(params.rate, 600, workload.send, stop))
        await asyncio.sleep(params.before_s)
        before = await postgres.sessions(server.url)
        timeline.down = time.monotonic()
        await asyncio.to_thread(server.stop)
        not_ready = await readiness(client, 503, params.down_s)
        await asyncio.sleep(max(0.0, timeline.down + params.down_s - time.monotonic()))
        await asyncio.to_thread(server.start)
        timeline.up = time.monotonic()
        timeline.recovered = await first_answer_after(workload.tally, timeline.up)
        ready_s = await readiness(client, 200, RECOVERY_TIMEOUT_SECONDS)
        timeline.ready_again = timeline.up + ready_s if ready_s is not None else None
        await asyncio.sleep(params.after_s)
        stop.set()
        pacing = await load
        metrics = await service.quiesced(10.0)
        after = await postgres.sessions(server.url)
        lost = await postgres.missing_ids(server.url, workload.acknowledged)
    return findings(workload, timeline, service, before, after, metrics, len(lost), pacing, not_ready)


async def readiness(client: Any, status: int, timeout: float) -> float | None:
    """Seconds until /readyz answers `status` (polled as a probe would, faster), or None within `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if (await client.get("/readyz")).status_code == status:
            return round(time.monotonic() - started, 2)
        await asyncio.sleep(0.05)
    return None


async def first_answer_after(tally: Tally, since: float) -> float | None:
    """When the first request that needs PostgreSQL was answered from it after `since` (monotonic)."""
    deadline = since + RECOVERY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        answered = [o.finished for o in tally.between(since) if o.kind in ("read", "create") and o.status in (200, 201)]
        if answered:
            return min(answered)
        await asyncio.sleep(0.02)
    return None


def unexpected(outcome: Outcome, timeline: Timeline) -> bool:
    """A failure: no answer, a 5xx other than a 503 with Retry-After, or any 503 while PostgreSQL was up."""
    if outcome.status is None or (outcome.status >= 500 and outcome.status != 503):
        return True
    if outcome.status == 503:
        return outcome.error == "no-retry-after" or outcome.finished < timeline.down
    return outcome.status not in (200, 201)


def findings(
    workload: Workload,
    timeline: Timeline,
    service: Service,
    before: dict[str, int],
    after: dict[str, int],
    metrics: dict[str, float],
    lost: int,
    pacing: dict[str, int],
    not_ready_s: float | None,
) -> Findings:
    tally = workload.tally
    unavailable = [o for o in tally.outcomes if o.status == 503]
    after_recovery = [o for o in unavailable if timeline.recovered is not None and o.started > timeline.recovered]
    pool_bound = sum(int(service.env.get(name, DEFAULT_POOL_SIZES[name])) for name in POOLS) + LISTENER_SESSIONS
    found = Findings(
        sent=len(tally.outcomes),
        failed=sum(1 for outcome in tally.outcomes if unexpected(outcome, timeline)),
        lost_writes=lost,
    )
    recovery_s = round(timeline.recovered - timeline.up, 2) if timeline.recovered is not None else None
    latency_503 = latency_ms([o.seconds for o in unavailable])
    found.figures = {
        "recovery_s": recovery_s,
        "ready_again_s": round(timeline.ready_again - timeline.up, 2) if timeline.ready_again is not None else None,
        "readiness_503_after_s": not_ready_s,
        "connections_before": before["total"],
        "connections_after": after["total"],
        "idle_in_transaction_after": after.get("idle in transaction", 0)
        + after.get("idle in transaction (aborted)", 0),
        "sessions_bound": pool_bound,
        "unavailable_503": len(unavailable),
        "unavailable_503_after_recovery": len(after_recovery),
        "p99_503_ms": latency_503["p99_ms"],
        "max_503_ms": latency_503["max_ms"],
        "p99_ms": tally.summary()["p99_ms"],
        "listener_connected_after": metrics.get("cache_listener_connected"),
        "results": tally.summary()["results"],
        "skipped_by_the_client": pacing["skipped"],
    }
    figures = found.figures
    found.expect(
        recovery_s is not None, f"no answer from PostgreSQL within {RECOVERY_TIMEOUT_SECONDS:.0f} s of its restart"
    )
    found.expect(not_ready_s is not None, "readiness stayed 200 while PostgreSQL was down")
    found.expect(figures["ready_again_s"] is not None, "readiness did not come back")
    found.expect(figures["idle_in_transaction_after"] == 0, "sessions left idle in a transaction")
    found.expect(after["total"] <= pool_bound, f"{after['total']} sessions after, beyond the pools' {pool_bound}")
    found.expect(figures["listener_connected_after"] == 1, "the invalidation listener did not reconnect")
    found.observed = (
        f"{len(unavailable)} fast 503s while down (p99 {latency_503['p99_ms']} ms), {found.failed} other failures; "
        f"recovered {recovery_s} s after PostgreSQL was back, no restart; "
        f"sessions {before['total']} → {after['total']} (bound {pool_bound}), "
        f"{figures['idle_in_transaction_after']} idle in transaction"
    )
    return found


SCENARIO = Scenario(
    key="database",
    tried=(
        "Signups, reads that miss the cache and token checks at a steady rate while the scenario's own PostgreSQL "
        "is stopped (fast shutdown) and started again"
    ),
    run=run,
    quick=Params(rate=30, before_s=2.0, down_s=3.0, after_s=3.0, users=100),
    long=Params(rate=80, before_s=5.0, down_s=10.0, after_s=10.0, users=1000),
)
