"""Redis stopped, and Redis paused (SIGSTOP), under a load of reads that miss the in-process cache: no
5xx, and latency bounded by the Redis timeout. Then an update of a cached user, read from both
processes until twice the cache TTL has passed: no stale answer past the TTL, when the Redis DEL gets
through, when it waits in a paused Redis, and when it is lost (Redis down during the write, then back from
its snapshot)."""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from bench import seed
from reliability import postgres
from reliability.context import Context
from reliability.load import Tally, paced
from reliability.redis import OwnRedis, own_redis
from reliability.scenario import Findings, Scenario
from reliability.service import running
from reliability.workload import log_in, seed_users

READ = {"read": frozenset({200}), "patch": frozenset({200})}
# A stale read counts as past the TTL this long after the update was acknowledged beyond the TTL itself:
# the poll's own spacing and the answer's way back.
POLL_SECONDS = 0.05
MARGIN_SECONDS = 0.25
# A paused Redis still has the DEL in its socket: it runs it when it resumes (late, not lost). A stopped one
# refuses it; restarted from its snapshot, it has the old copy back, with what was left of its TTL.
VARIANTS = ("DEL delivered", "DEL delayed: Redis paused", "DEL lost: Redis down, back from its snapshot")


@dataclass(frozen=True)
class Params:
    rate: float  # reads a second, spread over both processes
    phase_s: float  # steady, Redis stopped, steady, Redis paused, steady: each this long
    cache_ttl_s: float
    redis_retry_after_s: float  # below the TTL, as the defaults are (5 s against 30 s)
    users: int


@dataclass
class Setup:
    context: Context
    redis: OwnRedis
    clients: list[httpx.AsyncClient]
    users: list[tuple[str, str]]
    tally: Tally
    timeout_s: float


async def run(context: Context, params: Params) -> Findings:
    settings = {
        "AUTH_CACHE_TTL_SECONDS": str(params.cache_ttl_s),
        "AUTH_REDIS_RETRY_AFTER_SECONDS": str(params.redis_retry_after_s),
        # Small enough that the load's reads miss it and go to Redis.
        "AUTH_CACHE_MAX_ENTRIES": "50",
    }
    async with (
        postgres.fresh_database(context.database_server) as database,
        own_redis(context.scratch("redis")) as redis,
        AsyncExitStack() as stack,
    ):
        settings["AUTH_REDIS_URL"] = redis.url
        services = await asyncio.gather(
            *(stack.enter_async_context(running(context, f"replica-{n}", database, **settings)) for n in (1, 2))
        )
        clients = [await stack.enter_async_context(context.witness.client(service.url)) for service in services]
        users = await seed_users(context, services[0].url, params.users)
        timeout_s = float(services[0].env.get("AUTH_REDIS_TIMEOUT_SECONDS", "0.05"))
        setup = Setup(context, redis, clients, users, Tally(READ), timeout_s)
        phases = await outages(setup, params)
        staleness = [await stale_reads(setup, params, variant, index) for index, variant in enumerate(VARIANTS)]
    return findings(setup, params, phases, staleness)


async def outages(setup: Setup, params: Params) -> list[dict[str, Any]]:
    """Reads at a steady rate through: steady, Redis stopped, steady, Redis paused, steady."""
    stop, marks = asyncio.Event(), [("steady", time.monotonic())]

    async def read(index: int) -> None:
        user_id, _ = setup.users[(index * 7919) % len(setup.users)]  # a stride through all of them
        await setup.tally.timed("read", setup.clients[index % 2].get(f"/v1/users/{user_id}"))

    load = asyncio.create_task(paced(params.rate, 600, read, stop))
    await asyncio.sleep(params.phase_s)
    for name, fault, repair in (
        ("Redis stopped", setup.redis.stop, setup.redis.start),
        ("Redis paused", as_async(setup.redis.pause), as_async(setup.redis.resume)),
    ):
        marks.append((name, time.monotonic()))
        await fault()
        await asyncio.sleep(params.phase_s)
        await repair()
        marks.append(("steady", time.monotonic()))
        await asyncio.sleep(params.phase_s)
    stop.set()
    await load
    ends = [when for _, when in marks[1:]] + [float("inf")]
    keys = ("sent", "failed", "p50_ms", "p99_ms", "max_ms")
    return [
        {"phase": name, **{key: setup.tally.summary(setup.tally.between(start, end))[key] for key in keys}}
        for (name, start), end in zip(marks, ends, strict=True)
    ]


def as_async(step: Any) -> Any:
    async def call() -> None:
        step()

    return call


async def stale_reads(setup: Setup, params: Params, variant: str, index: int) -> dict[str, Any]:
    """Update a user both processes hold, with the Redis DEL delivered or lost; read it for twice the TTL."""
    user_id, email = setup.users[index]
    token = await log_in(setup.context, setup.clients[0], email, seed.PASSWORD)
    for client in (*setup.clients, *setup.clients):  # cached in each process and in Redis
        await setup.tally.timed("read", client.get(f"/v1/users/{user_id}"))
    new_name = f"Renamed {uuid.uuid4().hex[:8]}"
    if variant.endswith("paused"):
        setup.redis.pause()
    elif variant.endswith("snapshot"):
        await setup.redis.command("SAVE")
        await setup.redis.stop()
    patch = setup.clients[0].patch(
        f"/v1/users/{user_id}", json={"name": new_name}, headers={"Authorization": f"Bearer {token}"}
    )
    response = await setup.tally.timed("patch", patch)
    acknowledged = time.monotonic()
    if variant.endswith("paused"):
        await asyncio.sleep(1.0)  # the other process's DEL, on its NOTIFY, is lost too
        setup.redis.resume()
    elif variant.endswith("snapshot"):
        await asyncio.sleep(1.0)
        await setup.redis.start()  # with the old copy, from the snapshot
    stale = await poll(setup, user_id, new_name, acknowledged, 2 * params.cache_ttl_s + 1)
    past = [seconds for seconds in stale if seconds > params.cache_ttl_s + MARGIN_SECONDS]
    return {
        "variant": variant,
        "update_status": response.status_code if response is not None else None,
        "stale_reads": len(stale),
        "last_stale_s": round(max(stale), 2) if stale else None,
        "stale_past_ttl": len(past),
    }


async def poll(setup: Setup, user_id: str, name: str, since: float, window: float) -> list[float]:
    """Read from both processes in turn until `window` seconds after `since`; when each stale answer came."""
    stale = []
    turn = 0
    while time.monotonic() - since < window:
        response = await setup.tally.timed("read", setup.clients[turn % 2].get(f"/v1/users/{user_id}"))
        if response is not None and response.status_code == 200 and response.json()["name"] != name:
            stale.append(time.monotonic() - since)
        turn += 1
        await asyncio.sleep(POLL_SECONDS)
    return stale


def findings(setup: Setup, params: Params, phases: list[dict[str, Any]], staleness: list[dict[str, Any]]) -> Findings:
    summary = setup.tally.summary()
    server_errors = sum(count for result, count in summary["results"].items() if result.split(" ")[1].startswith("5"))
    past = sum(variant["stale_past_ttl"] for variant in staleness)
    found = Findings(sent=summary["sent"], failed=summary["failed"])
    found.figures = {
        "p99_ms": summary["p99_ms"],
        "redis_timeout_ms": setup.timeout_s * 1000,
        "cache_ttl_s": params.cache_ttl_s,
        "redis_retry_after_s": params.redis_retry_after_s,
        "server_errors": server_errors,
        "stale_past_ttl": past,
        "phases": phases,
        "staleness": staleness,
        "results": summary["results"],
    }
    found.expect(server_errors == 0, f"{server_errors} answers were 5xx")
    for variant in staleness:
        found.expect(
            variant["stale_past_ttl"] == 0,
            f"{variant['variant']}: {variant['stale_past_ttl']} stale answers past the {params.cache_ttl_s} s TTL "
            f"(the last {variant['last_stale_s']} s after the update)",
        )
    outage = {phase["phase"]: phase for phase in phases}
    found.observed = (
        f"{summary['sent']:,} reads, {server_errors} 5xx; p99 {outage['Redis stopped']['p99_ms']} ms stopped, "
        f"{outage['Redis paused']['p99_ms']} ms paused (timeout {setup.timeout_s * 1000:.0f} ms); stale up to "
        + ", ".join(f"{variant['last_stale_s'] or 0} s ({variant['variant']})" for variant in staleness)
        + f" after the update, TTL {params.cache_ttl_s} s"
    )
    return found


SCENARIO = Scenario(
    key="redis",
    tried=(
        "Two processes sharing a Redis of the scenario's own: reads that miss the in-process cache while Redis is "
        "stopped, then paused; a cached user updated with the Redis DEL delivered, held by a paused Redis, and lost "
        "while Redis is down before it comes back from its snapshot; read from both until twice the TTL"
    ),
    run=run,
    quick=Params(rate=40, phase_s=1.0, cache_ttl_s=1.5, redis_retry_after_s=0.3, users=100),
    long=Params(rate=100, phase_s=5.0, cache_ttl_s=6.0, redis_retry_after_s=1.0, users=1000),
)
