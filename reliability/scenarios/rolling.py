"""Rolling restart under load: processes behind one address replaced one at a time, as the chart's
Deployment does it (maxSurge 1, maxUnavailable 0): a new process starts and joins once ready, then
an old one gets SIGTERM, drains (readiness 503 while it still serves), stops accepting, finishes and
exits. Zero failed requests, and every acknowledged signup is in the database afterwards."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from reliability import postgres
from reliability.balancer import Balancer, Probe, balancing
from reliability.context import Context
from reliability.load import paced
from reliability.scenario import Findings, Scenario
from reliability.service import Service, running
from reliability.workload import Workload

READY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Params:
    replicas: int
    replacements: int
    rate: float  # requests a second, of the workload's mix (a tenth are signups)
    settle_s: float  # steady load before the first replacement and after the last
    drain_delay_s: float
    graceful_timeout_s: float
    probe: Probe
    users: int


class Rollout:
    """The processes behind the balancer, by name, and what each replacement took."""

    def __init__(self, context: Context, stack: AsyncExitStack, balancer: Balancer, database: str, params: Params):
        self.context, self.stack, self.balancer = context, stack, balancer
        self.database, self.params = database, params
        self.live: dict[str, Service] = {}
        self.started = 0
        self.replacements: list[dict[str, Any]] = []
        # (phase, when it began): steady load, each replacement, steady load again.
        self.marks: list[tuple[str, float]] = []
        self.signals: list[float] = []  # when each SIGTERM was sent

    async def start(self) -> str:
        """A new process, in rotation once its readiness passes; its name."""
        self.started += 1
        name = f"replica-{self.started}"
        settings = {
            "AUTH_DRAIN_DELAY_SECONDS": str(self.params.drain_delay_s),
            "AUTH_GRACEFUL_TIMEOUT_SECONDS": str(self.params.graceful_timeout_s),
        }
        self.live[name] = await self.stack.enter_async_context(running(self.context, name, self.database, **settings))
        self.balancer.add(name, self.live[name].port)
        await self.balancer.wait_ready(name, READY_TIMEOUT_SECONDS)
        return name

    async def replace(self, old: str) -> None:
        began = time.monotonic()
        self.marks.append((f"replacing {old}", began))
        new = await self.start()
        joined = time.monotonic() - began
        service = self.live.pop(old)
        signalled = service.terminate()
        self.signals.append(signalled)
        out_after = await self.balancer.wait_out(old, READY_TIMEOUT_SECONDS)
        timeout = self.params.drain_delay_s + self.params.graceful_timeout_s + 5
        code = await service.exited(timeout)
        await self.balancer.remove(old)
        self.replacements.append(
            {
                "old": old,
                "new": new,
                "new_in_rotation_s": round(joined, 2),
                "old_out_of_rotation_s": round(out_after, 2),
                "old_exit_code": code,
                "old_exited_s": round(time.monotonic() - signalled, 2),
            }
        )


async def run(context: Context, params: Params) -> Findings:
    async with (
        postgres.fresh_database(context.database_server) as database,
        balancing(params.probe) as balancer,
        AsyncExitStack() as stack,
    ):
        rollout = Rollout(context, stack, balancer, database, params)
        await asyncio.gather(*(rollout.start() for _ in range(params.replicas)))
        async with context.witness.client(balancer.url) as client:
            workload = await Workload.seeded(context, client, params.users)
            stop = asyncio.Event()
            load = asyncio.create_task(paced(params.rate, 600, workload.send, stop))
            rollout.marks.append(("steady", time.monotonic()))
            await asyncio.sleep(params.settle_s)
            for _ in range(params.replacements):
                await rollout.replace(min(rollout.live, key=lambda name: int(name.rsplit("-", 1)[1])))
            rollout.marks.append(("steady after", time.monotonic()))
            await asyncio.sleep(params.settle_s)
            stop.set()
            pacing = await load
        lost = await postgres.missing_ids(database, workload.acknowledged)
    return findings(workload, rollout, balancer, pacing, len(lost))


def findings(workload: Workload, rollout: Rollout, balancer: Balancer, pacing: dict[str, int], lost: int) -> Findings:
    summary = workload.tally.summary()
    found = Findings(
        sent=summary["sent"],
        failed=summary["failed"],
        lost_writes=lost,
        figures={
            "p99_ms": summary["p99_ms"],
            "p50_ms": summary["p50_ms"],
            "max_ms": summary["max_ms"],
            "acknowledged_writes": len(workload.acknowledged),
            "results": summary["results"],
            "replacements": rollout.replacements,
            "phases": phases(workload, rollout.marks),
            "failures_s_after_sigterm": failure_times(workload, rollout.signals),
            "refused_connections": balancer.refused,
            "skipped_by_the_client": pacing["skipped"],
        },
    )
    for step in rollout.replacements:
        found.expect(step["old_exit_code"] == 0, f"{step['old']} exited with {step['old_exit_code']}, not 0")
    found.expect(pacing["skipped"] == 0, f"{pacing['skipped']} requests not sent: too many outstanding")
    found.observed = (
        f"{summary['sent']:,} requests, {summary['failed']} failed, {len(rollout.replacements)} processes replaced; "
        f"{len(workload.acknowledged):,} signups acknowledged, {lost} missing; p99 {summary['p99_ms']} ms"
    )
    return found


def failure_times(workload: Workload, signals: list[float], most: int = 20) -> list[float]:
    """When the failed requests were sent, in seconds after the last SIGTERM before them (negative: before any)."""
    times = []
    for outcome in workload.tally.outcomes:
        if workload.tally.failed(outcome):
            earlier = [when for when in signals if when <= outcome.started]
            times.append(round(outcome.started - (earlier[-1] if earlier else signals[0]), 2) if signals else 0.0)
    return sorted(times)[:most]


def phases(workload: Workload, marks: list[tuple[str, float]]) -> list[dict[str, Any]]:
    """sent, failed and latency of the requests sent in each phase."""
    ends = [when for _, when in marks[1:]] + [float("inf")]
    found = []
    for (name, start), end in zip(marks, ends, strict=True):
        summary = workload.tally.summary(workload.tally.between(start, end))
        found.append({"phase": name, **{key: summary[key] for key in ("sent", "failed", "p50_ms", "p99_ms", "max_ms")}})
    return found


SCENARIO = Scenario(
    key="rolling",
    tried=(
        "Steady signups, reads and token checks through a balancer that routes new connections to the processes "
        "whose /readyz passes (probed as the chart's readiness probe); each process replaced in turn: a new one "
        "joins, the old one gets SIGTERM, drains, exits"
    ),
    run=run,
    quick=Params(
        replicas=2,
        replacements=1,
        rate=50,
        settle_s=2.0,
        drain_delay_s=2.0,
        graceful_timeout_s=5.0,
        probe=Probe(period=0.5, failure_threshold=2),
        users=200,
    ),
    # The chart's timings: readiness every 2 s, out after 2 failures, a drain of 5 s, 20 s to finish.
    long=Params(
        replicas=2,
        replacements=2,
        rate=100,
        settle_s=10.0,
        drain_delay_s=5.0,
        graceful_timeout_s=20.0,
        probe=Probe(period=2.0, failure_threshold=2),
        users=2000,
    ),
)
