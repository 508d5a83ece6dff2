"""Brute force and flooding against two replicas on one database (and, in the long run, also on a Redis
of the scenario's own), each trusting 127.0.0.1 as its proxy so that X-Forwarded-For names the client,
with the shipped limits. An attacker guesses one account's password on both replicas in turn, many at
a time, and a second one at a time; one client tries many accounts; one client signs up over and over.
The limits hold across the replicas: past the account + client limit every guess gets 429 with
Retry-After, even the right password; the 401s number no more than the limit plus what can be in flight
(security/login_limits.py); one at a time, exactly the limit. The real user, from another address,
logs in on both replicas during and after the attacks. No guess succeeds."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from auth_service.settings import Settings
from reliability import postgres
from reliability.context import Context
from reliability.load import Tally
from reliability.redis import own_redis
from reliability.scenario import Findings, Scenario
from reliability.service import Service, running
from reliability.workload import seed_users

# The clients, as the ingress would name them in X-Forwarded-For (documentation ranges, RFC 5737).
GUESSER, ONE_AT_A_TIME, STUFFER, SIGNER_UP, REAL_USER = (
    "203.0.113.7",
    "203.0.113.8",
    "203.0.113.9",
    "203.0.113.10",
    "198.51.100.20",
)
REPLICAS = 2
# What each kind of request may get. A 503 (with Retry-After: counted otherwise) is a client past its
# share of the hashing queue; the real user, within its share, never gets one.
EXPECTED = {
    "guess": frozenset({401, 429, 503}),
    "one_at_a_time": frozenset({401, 429}),
    "right_password_locked": frozenset({429}),
    "stuffing": frozenset({401, 429, 503}),
    "signup": frozenset({201, 429, 503}),
    "real_user": frozenset({200}),
    "real_user_after": frozenset({200}),
}
ATTACKS = ("guess", "one_at_a_time", "right_password_locked", "stuffing")
# Guesses made one at a time past the limit, each of which must get 429.
PAST_THE_LIMIT = 4
SIGNUP_CONCURRENCY = 4
STUFFING_ATTEMPTS = 4
REAL_USER_EVERY_SECONDS = 0.25
MAX_REAL_USER_LOGINS = 400  # a bound on the real user's loop, whatever happens to the attacks
COUNTERS = "SELECT count(*) FROM attempt_counters"


def shipped(name: str) -> Any:
    """A setting's default: the service's environment here sets its own for every other scenario."""
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class Params:
    stores: tuple[str, ...]  # where the counters live: "postgresql", "redis" (a Redis of the scenario's own)
    guesses: int
    concurrency: int  # the guesser's (and the stuffer's) requests in the air at once, over both replicas
    per_client: int  # AUTH_LOGIN_FAILURES_PER_CLIENT: the shipped 300 in the long run, fewer in the short
    past_per_client: int  # the 429s the stuffer goes on to, past it
    past_signups: int  # the signups beyond AUTH_SIGNUPS_PER_CLIENT


@dataclass
class Replicas:
    """The replicas' clients; sends as a named client and tallies what each kind got on each replica."""

    context: Context
    clients: list[httpx.AsyncClient]
    tally: Tally = field(default_factory=lambda: Tally(EXPECTED))
    by_replica: Counter[tuple[str, int, int | None]] = field(default_factory=Counter)
    refusals_without_retry_after: int = 0

    async def post(self, kind: str, replica: int, client: str, path: str, body: dict[str, str]) -> int | None:
        request = self.clients[replica].post(path, json=body, headers={"X-Forwarded-For": client})
        response = await self.tally.timed(kind, request)
        status = None if response is None else response.status_code
        self.by_replica[(kind, replica, status)] += 1
        if response is not None and status in (429, 503) and not response.headers.get("retry-after", "").isdigit():
            self.refusals_without_retry_after += 1
        if response is not None and status == 200:
            self.context.witness.secret("token", response.json()["access_token"])
        return status

    async def login(self, kind: str, replica: int, client: str, email: str, password: str) -> int | None:
        return await self.post(kind, replica, client, "/v1/auth/token", {"email": email, "password": password})

    def count(self, kind: str, status: int | None = None, replica: int | None = None) -> int:
        return sum(
            n
            for (k, r, s), n in self.by_replica.items()
            if k == kind and (status is None or s == status) and (replica is None or r == replica)
        )


async def run(context: Context, params: Params) -> Findings:
    variants = [await variant(context, params, store) for store in params.stores]
    return findings(params, variants)


async def variant(context: Context, params: Params, store: str) -> dict[str, Any]:
    """Two replicas with their counters in `store`, fresh, and every attack against them."""
    settings = {
        "AUTH_TRUSTED_PROXIES": "127.0.0.1",
        "AUTH_LOGIN_FAILURES_PER_ACCOUNT_CLIENT": str(shipped("login_failures_per_account_client")),
        "AUTH_LOGIN_FAILURES_PER_ACCOUNT": str(shipped("login_failures_per_account")),
        "AUTH_LOGIN_FAILURES_PER_CLIENT": str(params.per_client),
        "AUTH_SIGNUPS_PER_CLIENT": str(shipped("signups_per_client")),
        "AUTH_HASH_CLIENT_SHARE": str(shipped("hash_client_share")),
    }
    async with postgres.fresh_database(context.database_server) as database, AsyncExitStack() as stack:
        redis = None
        if store == "redis":
            redis = await stack.enter_async_context(own_redis(context.scratch("redis")))
            settings["AUTH_REDIS_URL"] = redis.url
        services = await asyncio.gather(
            *(stack.enter_async_context(running(context, f"{store}-{n}", database, **settings)) for n in (1, 2))
        )
        clients = [await stack.enter_async_context(context.witness.client(service.url)) for service in services]
        replicas = Replicas(context, clients)
        password = f"real-{secrets.token_urlsafe(18)}"
        [(_, victim)] = await seed_users(context, services[0].url, 1, password=password)
        first_429 = await attacks(replicas, params, victim, password)
        limits = bounds(services[0], params)
        # Where the counts went: the variant's store, or PostgreSQL behind a Redis that failed a call.
        stored = {"counters_in_postgresql": await postgres.fetch_value(database, COUNTERS)}
        if redis is not None:
            stored["counters_in_redis"] = int((await redis.command("DBSIZE")).strip()[1:])
    summary = replicas.tally.summary()
    return {
        "store": store,
        "sent": summary["sent"],
        "failed": summary["failed"],
        **figures(replicas),
        "first_429_one_at_a_time": first_429,
        **limits,
        **stored,
        "results": summary["results"],
    }


async def attacks(replicas: Replicas, params: Params, victim: str, password: str) -> int | None:
    """Every attack, the real user logging in throughout; then the right password from the guesser, and the
    real user once more on each replica. The index of the first 429 of the guesses made one at a time."""
    guesses = f"guess-{secrets.token_urlsafe(12)}"  # every wrong password begins so: the `secret` grep's needle
    replicas.context.witness.secret("password", guesses)
    stop = asyncio.Event()
    real_user = asyncio.create_task(log_in_throughout(replicas, victim, password, stop))
    try:
        _, first_429 = await asyncio.gather(
            guess(replicas, params, victim, guesses), one_at_a_time(replicas, victim, guesses)
        )
        await stuffing(replicas, params, guesses)
        await signups(replicas, params)
    finally:
        stop.set()
        await real_user
    for replica in range(REPLICAS):
        await replicas.login("right_password_locked", replica, GUESSER, victim, password)
        await replicas.login("real_user_after", replica, REAL_USER, victim, password)
    return first_429


async def guess(replicas: Replicas, params: Params, victim: str, guesses: str) -> None:
    slots = asyncio.Semaphore(params.concurrency)

    async def one(index: int) -> None:
        async with slots:
            await replicas.login("guess", index % REPLICAS, GUESSER, victim, f"{guesses}-{index}")

    await asyncio.gather(*(one(index) for index in range(params.guesses)))


async def one_at_a_time(replicas: Replicas, victim: str, guesses: str) -> int | None:
    """Guesses one after another on alternate replicas; the index of the first 429 (the limit, if shared)."""
    first_429 = None
    for index in range(shipped("login_failures_per_account_client") + PAST_THE_LIMIT):
        status = await replicas.login("one_at_a_time", index % REPLICAS, ONE_AT_A_TIME, victim, f"{guesses}-s{index}")
        if status == 429 and first_429 is None:
            first_429 = index
    return first_429


async def stuffing(replicas: Replicas, params: Params, guesses: str) -> None:
    """One client, one guess on each of many accounts (none exists: the limit counts them alike), until it has
    had `past_per_client` 429s. Its 503s (past its share of the hashing queue) are no answer on the limit, so
    it goes on, up to STUFFING_ATTEMPTS times what it needed."""
    prefix, turns = uuid.uuid4().hex[:8], itertools.count()
    most = STUFFING_ATTEMPTS * (params.per_client + params.past_per_client)

    async def client() -> None:
        while replicas.count("stuffing", 429) < params.past_per_client and (index := next(turns)) < most:
            email = f"stuffed-{prefix}-{index}@example.com"
            await replicas.login("stuffing", index % REPLICAS, STUFFER, email, f"{guesses}-c{index}")

    await asyncio.gather(*(client() for _ in range(params.concurrency)))


async def signups(replicas: Replicas, params: Params) -> None:
    password, prefix = f"signup-{secrets.token_urlsafe(18)}", uuid.uuid4().hex[:8]
    replicas.context.witness.secret("password", password)
    slots = asyncio.Semaphore(SIGNUP_CONCURRENCY)

    async def one(index: int) -> None:
        body = {"email": f"signup-{prefix}-{index}@example.com", "name": "Signed Up", "password": password}
        async with slots:
            await replicas.post("signup", index % REPLICAS, SIGNER_UP, "/v1/users", body)

    await asyncio.gather(*(one(index) for index in range(shipped("signups_per_client") + params.past_signups)))


async def log_in_throughout(replicas: Replicas, email: str, password: str, stop: asyncio.Event) -> None:
    for turn in range(MAX_REAL_USER_LOGINS):
        if stop.is_set():
            return
        await replicas.login("real_user", turn % REPLICAS, REAL_USER, email, password)
        await asyncio.sleep(REAL_USER_EVERY_SECONDS)


def bounds(service: Service, params: Params) -> dict[str, int]:
    """The most each limit may be overrun by: what one client has between the read of its counters and
    the count of its failure.

    The limits read, then count (security/login_limits.py): a guess whose failure is not yet counted
    does not stop the next. Such a guess is hashing, within the client's share of the hashing queue on
    each replica (security/passwords.py), or has hashed and gave its share back while its failure is
    being written to the counters (a round trip to PostgreSQL or Redis). So the overrun is bounded by
    what the client sends at once, not by its share: the stuffing of the run of 2026-12-03 16:29 had
    317 401s against 300 + 16, its share on two replicas. Signups are read and counted the same way.
    """
    capacity = int(service.env["AUTH_HASH_WORKERS"]) + shipped("hash_queue_max")
    share = max(1, int(capacity * shipped("hash_client_share")))
    return {
        "hash_share_per_replica": share,
        "max_401_guessing": shipped("login_failures_per_account_client") + params.concurrency,
        "max_401_stuffing": params.per_client + params.concurrency,
        "max_201_signups": shipped("signups_per_client") + SIGNUP_CONCURRENCY,
    }


def figures(replicas: Replicas) -> dict[str, Any]:
    count = replicas.count

    def statuses(kind: str, *wanted: int) -> dict[int, int]:
        return {status: count(kind, status) for status in wanted}

    def ok_on(kind: str) -> list[int]:
        return [replica for replica in range(REPLICAS) if count(kind, 200, replica)]

    return {
        "accepted_attacks": sum(count(kind, 200) for kind in ATTACKS),
        "guesses": statuses("guess", 401, 429, 503),
        "guess_429_by_replica": [count("guess", 429, replica) for replica in range(REPLICAS)],
        "one_at_a_time": statuses("one_at_a_time", 401, 429),
        "right_password_locked_429": count("right_password_locked", 429),
        "stuffing": statuses("stuffing", 401, 429, 503),
        "signups": statuses("signup", 201, 429, 503),
        "real_user_logins": count("real_user"),
        "real_user_ok_on": ok_on("real_user"),
        "real_user_after_ok_on": ok_on("real_user_after"),
        "refusals_without_retry_after": replicas.refusals_without_retry_after,
    }


def findings(params: Params, variants: list[dict[str, Any]]) -> Findings:
    found = Findings(sent=sum(v["sent"] for v in variants), failed=sum(v["failed"] for v in variants))
    found.figures = {
        "accepted_attacks": sum(v["accepted_attacks"] for v in variants),
        "limits": {
            "login_failures_per_account_client": shipped("login_failures_per_account_client"),
            "login_failures_per_client": params.per_client,
            "signups_per_client": shipped("signups_per_client"),
        },
        "variants": variants,
    }
    for v in variants:
        check(found, v)
    found.observed = (
        "; ".join(
            f"{v['store']}: {v['guesses'][401]} guesses answered 401 (bound {v['max_401_guessing']}), "
            f"{v['guesses'][429]} 429, {v['guesses'][503]} 503; one at a time the first 429 at guess "
            f"{v['first_429_one_at_a_time']}; stuffing {v['stuffing'][401]} 401 then {v['stuffing'][429]} 429; "
            f"signups {v['signups'][201]} 201 then {v['signups'][429]} 429; the real user in on replicas "
            f"{v['real_user_ok_on']} during ({v['real_user_logins']} logins) and {v['real_user_after_ok_on']} after"
            for v in variants
        )
        + f"; {found.figures['accepted_attacks']} guesses accepted"
    )
    return found


def check(found: Findings, v: dict[str, Any]) -> None:
    """The promises, for one variant."""
    store, guesses, limit = v["store"], v["guesses"], shipped("login_failures_per_account_client")
    everywhere = list(range(REPLICAS))
    found.expect(guesses[429] > 0, f"{store}: {sum(guesses.values())} guesses and never a 429")
    found.expect(
        guesses[401] <= v["max_401_guessing"], f"{store}: {guesses[401]} guesses got 401, past {v['max_401_guessing']}"
    )
    found.expect(all(v["guess_429_by_replica"]), f"{store}: 429s by replica {v['guess_429_by_replica']}")
    found.expect(
        v["one_at_a_time"][401] == limit and v["first_429_one_at_a_time"] == limit,
        f"{store}: one at a time, {v['one_at_a_time'][401]} 401s and the first 429 at {v['first_429_one_at_a_time']}, "
        f"not at the limit {limit}: the replicas do not share the count",
    )
    found.expect(v["right_password_locked_429"] == REPLICAS, f"{store}: the locked-out guesser's right password passed")
    stuffing, signups = v["stuffing"], v["signups"]
    found.expect(
        stuffing[429] > 0 and stuffing[401] <= v["max_401_stuffing"],
        f"{store}: one client on many accounts: {stuffing}, past {v['max_401_stuffing']} 401s or no 429",
    )
    found.expect(
        signups[429] > 0 and shipped("signups_per_client") <= signups[201] <= v["max_201_signups"],
        f"{store}: signups {signups}, not {shipped('signups_per_client')} to {v['max_201_signups']} 201s then 429",
    )
    found.expect(v["real_user_ok_on"] == everywhere, f"{store}: the real user got in on {v['real_user_ok_on']} only")
    found.expect(
        v["real_user_after_ok_on"] == everywhere,
        f"{store}: afterwards the real user got in on {v['real_user_after_ok_on']}",
    )
    if store == "redis":
        found.expect(v["counters_in_redis"] > 0, "redis: no counter in Redis: the limits went to PostgreSQL")
    found.expect(
        v["refusals_without_retry_after"] == 0,
        f"{store}: {v['refusals_without_retry_after']} 429/503 without Retry-After",
    )


SCENARIO = Scenario(
    key="brute",
    tried=(
        "Two replicas on one database (and on a Redis of their own), X-Forwarded-For trusted from 127.0.0.1, the "
        "shipped limits: one account's password guessed on both, 20 at a time and one at a time; one client "
        "trying many accounts; one client signing up repeatedly; the real user logging in from another address"
    ),
    run=run,
    quick=Params(
        stores=("postgresql",), guesses=100, concurrency=20, per_client=30, past_per_client=100, past_signups=10
    ),
    long=Params(
        stores=("postgresql", "redis"),
        guesses=300,
        concurrency=20,
        per_client=300,
        past_per_client=200,
        past_signups=20,
    ),
)
