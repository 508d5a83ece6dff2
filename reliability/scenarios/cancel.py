"""Client cancellation: requests abandoned mid-flight (the whole request sent, then the socket closed,
by FIN or by RST, at once or after a few milliseconds) for signups, reads that go to PostgreSQL, reads
of cached users and logins. Afterwards nothing is left checked out or in flight, PostgreSQL holds no
more sessions than the pools allow and none idle in a transaction, and normal requests succeed."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass

from bench import seed
from reliability import postgres, raw
from reliability.context import Context
from reliability.scenario import Findings, Scenario
from reliability.service import BUSY, Service, shared
from reliability.workload import Workload

KINDS = ("create", "read_miss", "read_hit", "login")
QUIET_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class Params:
    abandoned: int
    concurrency: int  # abandoned requests in the air at once
    users: int


class Abandoner:
    """Builds the requests and abandons them, counting those that could not even be sent."""

    def __init__(self, context: Context, service: Service, users: list[tuple[str, str]]) -> None:
        self.port, self.users = service.port, users
        self.password = f"cancel-{uuid.uuid4().hex}"
        context.witness.secret("password", self.password)
        self.unsent = 0
        self.by_kind = dict.fromkeys(KINDS, 0)

    def payload(self, index: int) -> tuple[str, bytes]:
        kind = KINDS[index % len(KINDS)]
        user_id, email = self.users[index % len(self.users)]
        if kind == "create":
            body = {"email": f"gone-{uuid.uuid4().hex[:16]}@example.com", "name": "Gone", "password": self.password}
            return kind, raw.request("POST", "/v1/users", body)
        if kind == "login":
            return kind, raw.request("POST", "/v1/auth/token", {"email": email, "password": seed.PASSWORD})
        target = uuid.uuid4() if kind == "read_miss" else user_id
        return kind, raw.request("GET", f"/v1/users/{target}")

    async def one(self, index: int, slots: asyncio.Semaphore) -> None:
        kind, payload = self.payload(index)
        # Every third closes at once, every third after up to 20 ms (mid-query), every third by RST.
        linger = random.uniform(0, 20) if index % 3 == 1 else 0.0  # noqa: S311 - spreading, not security
        async with slots:
            try:
                await raw.abandon(self.port, payload, linger, reset=index % 3 == 2)
                self.by_kind[kind] += 1
            except OSError:
                self.unsent += 1


async def run(context: Context, params: Params) -> Findings:
    service, database = await shared(context)
    async with context.witness.client(service.url) as client:
        workload = await Workload.seeded(context, client, params.users)
        users = list(workload.users)
        for index in range(len(KINDS) * 5):  # each kind a few times: the pools at their normal size
            await workload.send(index)
        before, rss_before = await postgres.sessions(database), service.rss_mb()
        abandoner, slots = Abandoner(context, service, users), asyncio.Semaphore(params.concurrency)
        started = time.monotonic()
        await asyncio.gather(*(abandoner.one(index, slots) for index in range(params.abandoned)))
        flood_s = time.monotonic() - started
        metrics = await service.quiesced(QUIET_TIMEOUT_SECONDS)
        after, rss_after = await postgres.sessions(database), service.rss_mb()
        following = time.monotonic()
        for index in range(len(KINDS) * 5):
            await workload.send(index)
        follow_up = workload.tally.summary(workload.tally.between(following))
    return findings(params, abandoner, before, after, metrics, follow_up, flood_s, (rss_before, rss_after))


def findings(
    params: Params,
    abandoner: Abandoner,
    before: dict[str, int],
    after: dict[str, int],
    metrics: dict[str, float],
    follow_up: dict[str, object],
    flood_s: float,
    rss: tuple[float | None, float | None],
) -> Findings:
    busy = {name: metrics.get(name, 0.0) for name in BUSY}
    idle_in_transaction = after.get("idle in transaction", 0) + after.get("idle in transaction (aborted)", 0)
    pool_bound = int(metrics.get("db_read_pool_size", 15) + metrics.get("db_pool_size", 10)) + 1
    found = Findings(sent=params.abandoned, failed=abandoner.unsent + int(follow_up["failed"]))  # type: ignore[call-overload]
    found.figures = {
        "connections_before": before["total"],
        "connections_after": after["total"],
        "idle_in_transaction_after": idle_in_transaction,
        "sessions_bound": pool_bound,
        "read_pool_open_after": metrics.get("db_read_pool_open"),
        **{f"{name}_after": value for name, value in busy.items()},
        "abandoned_by_kind": abandoner.by_kind,
        "could_not_send": abandoner.unsent,
        "abandoned_per_s": round(params.abandoned / flood_s, 1),
        "rss_mb_before": rss[0],
        "rss_mb_after": rss[1],
        "follow_up": follow_up["results"],
    }
    found.expect(not any(busy.values()), f"still busy {QUIET_TIMEOUT_SECONDS:.0f} s after the flood: {busy}")
    found.expect(idle_in_transaction == 0, f"{idle_in_transaction} sessions left idle in a transaction")
    found.expect(after["total"] <= pool_bound, f"{after['total']} sessions after, beyond the pools' {pool_bound}")
    found.observed = (
        f"{params.abandoned:,} requests abandoned in {flood_s:.0f} s; then nothing in flight or checked out, "
        f"sessions {before['total']} → {after['total']} (bound {pool_bound}), {idle_in_transaction} idle in "
        f"transaction; {follow_up['failed']} of the follow-up requests failed"
    )
    return found


SCENARIO = Scenario(
    key="cancel",
    tried=(
        "Signups, cache-miss reads, cached reads and logins sent whole and abandoned (FIN or RST, at once or "
        "within 20 ms), then normal requests"
    ),
    run=run,
    quick=Params(abandoned=1_500, concurrency=100, users=100),
    long=Params(abandoned=10_000, concurrency=200, users=1000),
)
