"""Overload: reads that miss the cache (a one-entry cache: each goes to PostgreSQL), first at the rate
the service can serve them (its capacity, measured), then offered open-loop over many connections at
3x and at 10x that rate, and at 3x again. Every answer is a 200 or a 503 at once, with Retry-After and
the true reason (the pool's waiters full, or too many requests in flight), never `database_unavailable`
(the database is up) nor any other 5xx; the memory stays within a margin of its baseline, and the
second 3x burst does not take more of it than the first. Then, at half the capacity, the overload is
over: the pool's gate keeps no waiters while it is overloaded (db/gate.py), and must let that end, so
nearly every read is served. Not all: when the client falls behind its schedule, it sends what it owes
at once, and the misses beyond the pool and its waiters that arrive in one turn of the service's loop
are refused (up to 1.4% of the level's reads in a run, the gate not overloaded meanwhile). The goodput
(200s a second) at each level is a figure: overload may cost some of it, the promise is about the
answers."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any, Self

from reliability import postgres, raw
from reliability.context import Context
from reliability.load import REQUEST_TIMEOUT_SECONDS, Outcome, Tally, answer_error, latency_ms, paced
from reliability.scenario import Findings, Scenario
from reliability.service import Service, running
from reliability.workload import seed_users

# A one-entry cache: every read is a miss and goes to PostgreSQL, the costliest read there is.
SETTINGS = {"AUTH_CACHE_MAX_ENTRIES": "1"}
# What a 503 may say while PostgreSQL is healthy: the pool's bounded waiters are full (db/gate.py), or
# the requests in flight are at their bound (admission.py). `database_unavailable` would be a lie.
HONEST_REASONS = frozenset({"db_pool_exhausted", "overloaded"})
EXPECTED = {"read": frozenset({200, 503})}
# (name, times the capacity): a burst, one far past it, and the first again to see what memory it kept.
LEVELS = (("3x", 3), ("10x", 10), ("3x again", 3))
# Then below the capacity, where next to nothing is to be refused (the module's docstring says what is).
AFTER = ("half, after", 0.5)
AFTER_MAX_REFUSED_SHARE = 0.02
# Memory: the connections (up to 2,000, a few kB each in uvicorn) and the requests admitted at once (at
# most AUTH_MAX_IN_FLIGHT, 1,024) fit in this over the baseline. An unbounded queue would not: requests
# held at tens of thousands a second pass it within a second or two.
RSS_MARGIN_MB = 64.0
# The second 3x burst may take no more than the first did, but for the allocator's noise.
REPEAT_GROWTH_MB = 8.0
RSS_SAMPLE_SECONDS = 0.1
# A level whose client sent less than this share of its target says so: one request a connection at a
# time, `connections` of them can carry no more than connections / latency a second.
SHORT_OF_TARGET = 0.9
LAG_PROBE_SECONDS = 0.01
# A process this busy (cores, over a level) is the limit of what it does.
BUSY_CORES = 0.85
# A client whose loop wakes this late (p99) cannot keep a schedule of thousands of requests a second.
CLIENT_LATE_MS = 10.0
LATENCY_HISTOGRAM = "http_server_request_duration_seconds"
# A 503's own time in the service, from its start to its answer (the service's latency histogram): at once
# means no wait for a connection (db/gate.py; before the gate, exhausted pools made 503s wait up to 1 s).
MAX_P99_503_IN_SERVICE_MS = 10.0


@dataclass(frozen=True)
class Params:
    users: int
    capacity_s: float
    capacity_connections: int  # closed loop, within the read pool and its waiters (15 + 64)
    level_s: float
    connections: int  # open at each level, each carrying one request at a time
    settle_s: float  # idle after each level, before its memory is read
    # The 503s' p99 as the client sees it: they are answered at once, so only the time to read and parse
    # a request stands between a client and its 503.
    max_p99_503_ms: float


@dataclass
class Setup:
    context: Context
    service: Service
    payloads: list[bytes]  # a read of each seeded user


class Sampled:
    """A figure sampled in the background every `interval` seconds while the block runs."""

    interval = 0.1

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._every_interval())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _every_interval(self) -> None:
        while True:
            due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            self.sample(max(0.0, time.monotonic() - due))

    def sample(self, late_s: float) -> None:
        raise NotImplementedError


class LoopLag(Sampled):
    """How late this process's event loop wakes a timer: when the client is the busy one, its own
    lateness is in every latency it measures, and that is not the service's."""

    interval = LAG_PROBE_SECONDS

    def __init__(self) -> None:
        super().__init__()
        self.lags: list[float] = []

    def sample(self, late_s: float) -> None:
        self.lags.append(late_s)

    def p99_ms(self) -> float | None:
        return latency_ms(self.lags)["p99_ms"]


class Memory(Sampled):
    """The service's RSS: the peak since the last `reset`."""

    interval = RSS_SAMPLE_SECONDS

    def __init__(self, service: Service) -> None:
        super().__init__()
        self.service, self.peak = service, 0.0

    def reset(self) -> None:
        self.peak = self.service.rss_mb() or 0.0

    def sample(self, late_s: float) -> None:
        self.peak = max(self.peak, self.service.rss_mb() or 0.0)


async def run(context: Context, params: Params) -> Findings:
    async with (
        postgres.fresh_database(context.database_server) as database,
        running(context, "service", database, **SETTINGS) as service,
    ):
        users = await seed_users(context, service.url, params.users)
        setup = Setup(context, service, [raw.request("GET", f"/v1/users/{user_id}") for user_id, _ in users])
        capacity = await measure_capacity(setup, params)
        await asyncio.sleep(params.settle_s)
        baseline = service.rss_mb()
        levels = []
        async with Memory(service) as memory:
            for name, times in LEVELS:
                levels.append(await offer(setup, params, memory, name, times * capacity))
            name, times = AFTER
            after = await offer(setup, params, memory, name, times * capacity)
        alive = service.server.process.poll() is None
    return findings(params, capacity, baseline, levels, after, alive)


async def measure_capacity(setup: Setup, params: Params) -> float:
    """200s a second of a closed loop of cache-miss reads: as many as the service serves, nothing refused."""
    connections = raw.KeepAlive(setup.service.port)
    deadline, served = time.monotonic() + params.capacity_s, 0

    async def client(offset: int) -> None:
        nonlocal served
        index = offset
        while time.monotonic() < deadline:
            answer = await connections.send(setup.payloads[index % len(setup.payloads)])
            served += answer.status == 200
            index += params.capacity_connections

    started = time.monotonic()
    try:
        await asyncio.gather(*(client(offset) for offset in range(params.capacity_connections)))
    finally:
        connections.close()
    return served / (time.monotonic() - started)


async def offer(setup: Setup, params: Params, memory: Memory, name: str, rate: float) -> dict[str, Any]:
    """One level: `rate` reads a second for `level_s` over `connections` connections; what each got."""
    connections, tally = raw.KeepAlive(setup.service.port), Tally(EXPECTED)
    await connections.open(params.connections)
    payloads, witness = setup.payloads, setup.context.witness

    async def send(index: int) -> None:
        started = time.monotonic()
        try:
            answer = await connections.send(payloads[index % len(payloads)], REQUEST_TIMEOUT_SECONDS)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            tally.outcomes.append(Outcome("read", started, time.monotonic() - started, None, type(exc).__name__))
            return
        seconds = time.monotonic() - started
        error = answer_error(answer.status, "retry-after" in answer.headers, answer.body)
        tally.outcomes.append(Outcome("read", started, seconds, answer.status, error))
        if answer.status != 200:
            witness.body(answer.body)

    memory.reset()
    before = cpu_now(setup.service)
    refused, served = await latency_histogram(setup.service, "5xx"), await latency_histogram(setup.service, "2xx")
    try:
        async with LoopLag() as lag:
            pacing = await paced(rate, params.level_s, send, max_outstanding=params.connections)
    finally:
        connections.close()
    cpu = {name: round(used, 2) for name, used in cpu_since(setup.service, before).items()}
    peak = memory.peak
    await asyncio.sleep(params.settle_s)
    measured = cpu | {
        "client_loop_lag_p99_ms": lag.p99_ms(),
        "p99_503_in_service_ms_at_most": p99_at_most(refused, await latency_histogram(setup.service, "5xx")),
        # The admitted reads' own time in the service: their wait for a connection (among the pool's
        # bounded waiters) and their query, apart from the time they spent in the socket before it.
        "p99_200_in_service_ms_at_most": p99_at_most(served, await latency_histogram(setup.service, "2xx")),
        "rss_mb_after": setup.service.rss_mb(),
    }
    return summary(name, rate, params, tally, pacing, measured, peak)


async def latency_histogram(service: Service, status_class: str) -> dict[float, float]:
    """The service's own latency histogram of one status class (5xx, 2xx), all routes together: {bound: count}."""
    found: dict[float, float] = {}
    for labels, value in await service.samples(f"{LATENCY_HISTOGRAM}_bucket"):
        if labels.get("status_class") == status_class:
            bound = float(labels["le"])
            found[bound] = found.get(bound, 0.0) + value
    return found


def p99_at_most(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The bucket bound (ms) under which 99% of the answers counted between the two readings took.

    Timed from when the service began the request to its answer: what the client waits beyond that, the
    request spent before the service read it (in the socket, its loop busy).
    """
    counts = sorted((bound, value - before.get(bound, 0.0)) for bound, value in after.items())
    if not counts or counts[-1][1] <= 0:
        return None
    return next(bound * 1000 for bound, cumulative in counts if cumulative >= 0.99 * counts[-1][1])


def cpu_now(service: Service) -> dict[str, float]:
    """CPU seconds so far: the service's, this process's (the client), the whole machine's; and the clock."""
    with open("/proc/stat") as stat:
        # The first line: user nice system idle iowait irq softirq steal, in clock ticks, of every CPU.
        jiffies = [int(value) for value in stat.readline().split()[1:9]]
    busy = (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")
    return {
        "service": service.cpu_seconds() or 0.0,
        "client": time.process_time(),
        "machine": busy,
        "at": time.monotonic(),
    }


def cpu_since(service: Service, before: dict[str, float]) -> dict[str, float]:
    """Cores busy on average since `before`: the service's, the client's, the machine's, and the rest."""
    now = cpu_now(service)
    elapsed = now["at"] - before["at"]
    cores = {f"{name}_cores": (now[name] - before[name]) / elapsed for name in ("service", "client", "machine")}
    # PostgreSQL's, and whatever else the machine runs meanwhile (other work than this run's, too).
    cores["other_cores"] = cores["machine_cores"] - cores["service_cores"] - cores["client_cores"]
    return cores


def unexpected(outcome: Outcome) -> bool:
    """A failure: no answer, a status other than 200 or 503, or a 503 without Retry-After or the true reason."""
    if outcome.status == 503:
        return outcome.error not in HONEST_REASONS
    return outcome.status != 200


def summary(
    name: str,
    rate: float,
    params: Params,
    tally: Tally,
    pacing: dict[str, int],
    measured: dict[str, Any],
    peak: float,
) -> dict[str, Any]:
    served = [o.seconds for o in tally.outcomes if o.status == 200]
    refused = [o for o in tally.outcomes if o.status == 503]
    codes: dict[str, int] = {}
    for outcome in refused:
        codes[str(outcome.error)] = codes.get(str(outcome.error), 0) + 1
    latency_503, latency_200 = latency_ms([o.seconds for o in refused]), latency_ms(served)
    sent = len(tally.outcomes)
    return {
        "level": name,
        "sent": sent,
        "target_rps": round(rate),
        # What the client sent: less than the target when `connections` requests were all unanswered.
        "offered_rps": round(sent / params.level_s),
        "skipped_by_the_client": pacing["skipped"],
        "connections": params.connections,
        "served_rps": round(len(served) / params.level_s),
        "unavailable_503": len(refused),
        "codes_503": dict(sorted(codes.items())),
        "p50_503_ms": latency_503["p50_ms"],
        "p99_503_ms": latency_503["p99_ms"],
        "max_503_ms": latency_503["max_ms"],
        "p50_ms": latency_200["p50_ms"],
        "p99_ms": latency_200["p99_ms"],
        "failed": sum(1 for outcome in tally.outcomes if unexpected(outcome)),
        "results": tally.summary()["results"],
        # Cores busy: the machine is shared by the service, the client (this process), PostgreSQL and the rest.
        **measured,
        "rss_mb_peak": peak,
    }


def findings(
    params: Params,
    capacity: float,
    baseline: float | None,
    levels: list[dict[str, Any]],
    after: dict[str, Any],
    alive: bool,
) -> Findings:
    by_name = {level["level"]: level for level in levels}
    first, again = by_name["3x"], by_name["3x again"]
    peak = max(level["rss_mb_peak"] for level in levels)
    found = Findings(sent=sum(level["sent"] for level in levels) + after["sent"])
    found.failed = sum(level["failed"] for level in levels) + after["failed"]
    found.figures = {
        "capacity_rps": round(capacity),
        # Of the admitted requests (200), at the level where it was worst: what a client that gets in waits.
        "p99_ms": max(level["p99_ms"] or 0.0 for level in levels),
        "rss_mb_before": baseline,
        "rss_mb_peak": peak,
        "rss_mb_after": levels[-1]["rss_mb_after"],
        "rss_margin_mb": RSS_MARGIN_MB,
        "max_p99_503_ms": params.max_p99_503_ms,
        "goodput_share": {level["level"]: round(level["served_rps"] / capacity, 2) for level in levels},
        "levels": levels,
        "after": after,
    }
    found.expect(alive, "the service died under the load")
    found.expect(baseline is not None and peak <= baseline + RSS_MARGIN_MB, f"RSS {baseline} → {peak} MB at the peak")
    growth = again["rss_mb_peak"] - first["rss_mb_peak"]
    found.expect(growth <= REPEAT_GROWTH_MB, f"the second 3x burst took {growth:.1f} MB more than the first")
    for level in levels:
        found.expect(level["unavailable_503"] > 0, f"{level['level']}: no 503 at all; the level did not overload")
        slow = level["p99_503_ms"] is not None and level["p99_503_ms"] > params.max_p99_503_ms
        found.expect(
            not slow or generator_bound(level, params.max_p99_503_ms),
            f"{level['level']}: 503 p99 {level['p99_503_ms']} ms > {params.max_p99_503_ms} ms",
        )
        inside = level["p99_503_in_service_ms_at_most"]
        found.expect(
            inside is not None and inside <= MAX_P99_503_IN_SERVICE_MS,
            f"{level['level']}: the service took up to {inside} ms over its 503s (p99), beyond "
            f"{MAX_P99_503_IN_SERVICE_MS} ms",
        )
    found.expect(
        after["unavailable_503"] <= AFTER_MAX_REFUSED_SHARE * after["sent"],
        f"{after['level']}: {after['unavailable_503']} 503s of {after['sent']} at half the capacity; "
        "the overload did not end",
    )
    found.observed = (
        f"capacity {capacity:,.0f} reads/s; "
        + "; ".join(
            f"{level['level']}: offered {level['offered_rps']:,}/s (of {level['target_rps']:,}), served "
            f"{level['served_rps']:,}/s, {level['unavailable_503']:,} 503s (p50/p99 {level['p50_503_ms']}/"
            f"{level['p99_503_ms']} ms; in the service ≤ {level['p99_503_in_service_ms_at_most']} ms), served reads "
            f"p99 {level['p99_ms']} ms (in the service ≤ {level['p99_200_in_service_ms_at_most']} ms), service "
            f"{level['service_cores']} cores, the rest of the machine {level['other_cores']}"
            for level in levels
        )
        + f"; then {after['level']}: served {after['served_rps']:,}/s of {after['target_rps']:,}, "
        f"{after['unavailable_503']} 503s, p50/p99 {after['p50_ms']}/{after['p99_ms']} ms"
        + f"; {found.failed} other answers; RSS {baseline} → peak {peak} → {levels[-1]['rss_mb_after']} MB"
    )
    collapsed = [level["level"] for level in levels if level["served_rps"] < capacity / 2]
    if collapsed:
        found.observed += f"; goodput under half the capacity at {', '.join(collapsed)}"
    short = [level for level in levels if generator_bound(level, params.max_p99_503_ms)]
    found.figures["generator_bound_levels"] = [level["level"] for level in short]
    for level in short:
        found.observed += (
            f"; {level['level']} beyond this client: it offered {level['offered_rps']:,}/s "
            f"({level['offered_rps'] / capacity:.1f}x the capacity) at its limit on this machine (its loop "
            f"{level['client_loop_lag_p99_ms']} ms late at p99, {level['client_cores']} cores; the service "
            f"{level['service_cores']}), so its 503 "
            "latencies are the client's own lateness; the service's own are the figure there"
        )
    return found


def generator_bound(level: dict[str, Any], bound_ms: float) -> bool:
    """The load generator, not the service, is the limit of what the level measured.

    The service was not the busy one, and the client was late: short of its target with its loop
    behind its schedule, or its own loop late (p99) by half the latency bound or more, busy or starved
    of a core by the rest of the machine. Every answer waits for that loop, so its latencies are its
    own lateness, and the level's promise is judged on the service's figures alone: its 503s' time,
    their reasons, its memory. A client short of its target while the service is the busy one (requests
    waiting in the socket, which the service's own latency does not see) is the service's fault.
    """
    if level["service_cores"] >= BUSY_CORES:
        return False
    lag = level["client_loop_lag_p99_ms"] or 0.0
    short = level["offered_rps"] < SHORT_OF_TARGET * level["target_rps"]
    return bool(lag >= bound_ms / 2 or (short and lag >= CLIENT_LATE_MS))


SCENARIO = Scenario(
    key="overload",
    tried=(
        "Cache-miss reads at the measured capacity (closed loop), then paced open-loop at 3x and 10x of it over "
        "many keep-alive connections, then 3x again; the service's RSS sampled throughout"
    ),
    run=run,
    quick=Params(
        users=1000,
        capacity_s=2.0,
        capacity_connections=32,
        level_s=2.0,
        connections=300,
        settle_s=1.0,
        max_p99_503_ms=100.0,
    ),
    long=Params(
        users=5000,
        capacity_s=5.0,
        capacity_connections=32,
        level_s=10.0,
        connections=2000,
        settle_s=2.0,
        max_p99_503_ms=100.0,
    ),
)
