"""Slow clients: a slowloris (sockets that send a request head a byte at a time and never finish it),
then the partial-body attack (a whole head of POST /v1/auth/token, then part of its body, a byte at a
time), each from hundreds of sockets at once, while normal traffic goes on: reads of cached users,
token checks, signups and logins. Every attacking socket is answered 408 or closed within the
service's timeout (AUTH_HTTP_HEADER_TIMEOUT_SECONDS, AUTH_HTTP_BODY_TIMEOUT_SECONDS, short here) plus
a margin; no normal request fails and their p99 stays within a bound; and no attacker holds a slot:
the service runs with fewer request slots (AUTH_MAX_IN_FLIGHT) than there are attackers, so one held
by each would turn the normal traffic into 503s."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from bench import seed
from reliability import postgres, raw
from reliability.context import Context
from reliability.load import Tally, paced
from reliability.scenario import Findings, Scenario
from reliability.scenarios.rolling import phases
from reliability.service import BUSY, Service, running
from reliability.workload import EXPECTED, Workload

# An attacker must be answered or closed within the timeout and this: the service's watchdog looks at
# the deadline itself, so this is the event loop's lateness and the way back, on a shared machine.
CLOSE_MARGIN_SECONDS = 2.0
# Its bytes: one every this long (each a read for the service, none a whole head or body).
DRIP_SECONDS = 0.5
# A body declared this long, of which the attacker sends a few bytes, then one a drip.
DECLARED_BODY_BYTES = 4096
# Of the normal traffic, one request in this many is a login (the rest is the workload's mix).
LOGIN_EVERY = 10
NORMAL = EXPECTED | {"login": frozenset({200})}
QUIET_TIMEOUT_SECONDS = 10.0
REJECTED = "http_server_requests_rejected_total"


@dataclass(frozen=True)
class Params:
    attackers: int  # sockets of each attack
    header_timeout_s: float
    body_timeout_s: float
    max_in_flight: int  # fewer than the attackers: one slot held by each would leave none for the rest
    rate: float  # normal requests a second
    before_s: float  # normal traffic alone, first
    users: int
    # Normal traffic's p99 while attacked. Its slowest requests hash a password (argon2, tens of ms on one
    # worker); a request that waited for a slot an attacker held would wait seconds (the timeouts), or
    # fail. Far below those, with room for a machine the suite shares.
    max_p99_ms: float


@dataclass
class Attack:
    """What each socket of one attack got: (status of what came back or None, seconds until it closed or None)."""

    name: str
    timeout_s: float
    sockets: list[tuple[int | None, float | None]] = field(default_factory=list)
    in_flight_gauge: float | None = None  # http_server_requests_in_flight halfway through
    rejected: dict[str, float] = field(default_factory=dict)  # the service's refusals during it, by reason

    def summary(self) -> dict[str, Any]:
        bound = self.timeout_s + CLOSE_MARGIN_SECONDS
        closed = [seconds for _, seconds in self.sockets if seconds is not None]
        return {
            "attack": self.name,
            "sockets": len(self.sockets),
            "answered_408": sum(1 for status, _ in self.sockets if status == 408),
            "closed_unanswered": sum(1 for status, seconds in self.sockets if status is None and seconds is not None),
            "other_answers": sorted({status for status, _ in self.sockets if status not in (None, 408)}),
            "open_past_bound": sum(1 for _, seconds in self.sockets if seconds is None or seconds > bound),
            "timeout_s": self.timeout_s,
            "bound_s": bound,
            "first_closed_s": round(min(closed), 2) if closed else None,
            "last_closed_s": round(max(closed), 2) if closed else None,
            "in_flight_gauge_halfway": self.in_flight_gauge,
            "rejected_by_reason": self.rejected,
        }


async def trickle(port: int, head: bytes, drip_for: float) -> tuple[int | None, float | None]:
    """Send `head`, then a byte every DRIP_SECONDS, until the service closes the connection or `drip_for` has
    passed; (the status it answered, if any; seconds from the head until it closed, or None if it did not)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    received = b""
    try:
        writer.write(head)
        while time.monotonic() - started < drip_for:
            try:
                async with asyncio.timeout(DRIP_SECONDS):
                    while chunk := await reader.read(65536):
                        received += chunk
                return raw.status_of(received), time.monotonic() - started  # closed by the service
            except TimeoutError:
                pass
            with contextlib.suppress(ConnectionError):
                writer.write(b"a")
        return raw.status_of(received), None
    except ConnectionError:
        return raw.status_of(received), time.monotonic() - started
    finally:
        writer.close()


async def attack(service: Service, name: str, head: bytes, timeout_s: float, params: Params) -> Attack:
    """`attackers` sockets at once, each trickling after this head until closed (or well past the bound)."""
    found = Attack(name, timeout_s)
    before = await service.by_label(REJECTED, "reason")
    drip_for = timeout_s + 2 * CLOSE_MARGIN_SECONDS
    sockets = asyncio.gather(*(trickle(service.port, head, drip_for) for _ in range(params.attackers)))
    await asyncio.sleep(timeout_s / 2)
    found.in_flight_gauge = (await service.metrics()).get("http_server_requests_in_flight")
    found.sockets = list(await sockets)
    after = await service.by_label(REJECTED, "reason")
    found.rejected = {reason: n - before.get(reason, 0.0) for reason, n in after.items() if n > before.get(reason, 0.0)}
    return found


def heads(user_id: str, email: str) -> tuple[bytes, bytes]:
    """(a GET head that never ends, a login's whole head with the start of its body)."""
    slowloris = f"GET /v1/users/{user_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()
    start = f'{{"email": "{email}", "password": "'.encode()
    lines = ["POST /v1/auth/token HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    partial = "\r\n".join([*lines, f"Content-Length: {DECLARED_BODY_BYTES}"]).encode() + b"\r\n\r\n" + start
    return slowloris, partial


async def run(context: Context, params: Params) -> Findings:
    settings = {
        "AUTH_HTTP_HEADER_TIMEOUT_SECONDS": str(params.header_timeout_s),
        "AUTH_HTTP_BODY_TIMEOUT_SECONDS": str(params.body_timeout_s),
        "AUTH_MAX_IN_FLIGHT": str(params.max_in_flight),
    }
    async with (
        postgres.fresh_database(context.database_server) as database,
        running(context, "service", database, **settings) as service,
        context.witness.client(service.url) as client,
    ):
        workload = await Workload.seeded(context, client, params.users)
        workload.tally = Tally(NORMAL)
        send = normal_traffic(context, workload)
        marks, stop = [("before", time.monotonic())], asyncio.Event()
        load = asyncio.create_task(paced(params.rate, 600, send, stop))
        await asyncio.sleep(params.before_s)
        slowloris, partial = heads(*workload.users[0])
        marks.append(("slowloris", time.monotonic()))
        attacks = [await attack(service, "slowloris", slowloris, params.header_timeout_s, params)]
        marks.append(("partial body", time.monotonic()))
        attacks.append(await attack(service, "partial body", partial, params.body_timeout_s, params))
        stop.set()
        pacing = await load
        metrics = await service.quiesced(QUIET_TIMEOUT_SECONDS)
    return findings(params, workload, marks, attacks, metrics, pacing)


def normal_traffic(context: Context, workload: Workload) -> Any:
    """The workload's mix, and a login in every LOGIN_EVERY requests."""

    async def send(index: int) -> None:
        if index % LOGIN_EVERY:
            await workload.send(index)
            return
        _, email = workload.users[index % len(workload.users)]
        login = workload.client.post("/v1/auth/token", json={"email": email, "password": seed.PASSWORD})
        response = await workload.tally.timed("login", login)
        if response is not None and response.status_code == 200:
            context.witness.secret("token", response.json()["access_token"])

    return send


def findings(
    params: Params,
    workload: Workload,
    marks: list[tuple[str, float]],
    attacks: list[Attack],
    metrics: dict[str, float],
    pacing: dict[str, int],
) -> Findings:
    tally, by_phase = workload.tally, phases(workload, marks)
    attacked = tally.summary(tally.between(marks[1][1]))
    summaries = [one.summary() for one in attacks]
    busy = {name: metrics.get(name, 0.0) for name in BUSY}
    overall = tally.summary()
    found = Findings(sent=overall["sent"], failed=overall["failed"])
    found.figures = {
        "p99_ms": attacked["p99_ms"],
        "p99_ms_before": by_phase[0]["p99_ms"],
        "max_p99_ms": params.max_p99_ms,
        "attacks": summaries,
        "phases": by_phase,
        "results_under_attack": attacked["results"],
        "max_in_flight": params.max_in_flight,
        **{f"{name}_after": value for name, value in busy.items()},
        "skipped_by_the_client": pacing["skipped"],
    }
    found.expect(attacked["sent"] > 0, "no normal request was sent during the attacks")
    found.expect(
        attacked["p99_ms"] is not None and attacked["p99_ms"] <= params.max_p99_ms,
        f"normal traffic's p99 under attack {attacked['p99_ms']} ms > {params.max_p99_ms} ms",
    )
    for one in summaries:
        name = one["attack"]
        held = one["open_past_bound"]
        found.expect(held == 0, f"{name}: {held} sockets open past {one['bound_s']} s")
        found.expect(not one["other_answers"], f"{name}: answered {one['other_answers']}, not 408")
        found.expect("overloaded" not in one["rejected_by_reason"], f"{name}: requests refused for want of a slot")
    found.expect(not any(busy.values()), f"still busy {QUIET_TIMEOUT_SECONDS:.0f} s after the attacks: {busy}")
    found.observed = (
        "; ".join(
            f"{one['attack']}: {one['sockets']} sockets, {one['answered_408']} answered 408, "
            f"{one['closed_unanswered']} closed unanswered, the last after {one['last_closed_s']} s "
            f"(timeout {one['timeout_s']:g} s)"
            for one in summaries
        )
        + f"; normal traffic: {attacked['sent']} requests under attack, {attacked['failed']} failed, "
        f"p99 {attacked['p99_ms']} ms (before: {by_phase[0]['p99_ms']} ms)"
    )
    gauge = summaries[-1]["in_flight_gauge_halfway"]
    if gauge is not None and gauge > params.max_in_flight:
        found.observed += (
            f"; the in-flight gauge read {gauge:.0f} halfway through the partial bodies, past the "
            f"{params.max_in_flight} slots: it counts requests whose bodies are still arriving"
        )
    return found


SCENARIO = Scenario(
    key="slow",
    tried=(
        "A slowloris (request heads sent a byte at a time), then login heads with part of their body sent a byte "
        "at a time, from hundreds of sockets each, against a service with fewer request slots than attackers and "
        "short header and body timeouts, under reads, token checks, signups and logins"
    ),
    run=run,
    quick=Params(
        attackers=200,
        header_timeout_s=2.0,
        body_timeout_s=2.0,
        max_in_flight=100,
        rate=40,
        before_s=2.0,
        users=100,
        max_p99_ms=250.0,
    ),
    long=Params(
        attackers=500,
        header_timeout_s=5.0,
        body_timeout_s=5.0,
        max_in_flight=250,
        rate=80,
        before_s=5.0,
        users=1000,
        max_p99_ms=250.0,
    ),
)
