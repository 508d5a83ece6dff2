"""Enumeration by login: a known email with a wrong password against an unknown email, interleaved at
random, one at a time, compared by status, body, headers and timing (two-sample Kolmogorov-Smirnov,
p > 0.05). Three ways: users hashed at the service's own argon2 parameters; the same users after a
restart with a higher time cost; users imported with hashes of other parameters."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
from argon2 import PasswordHasher, Type
from scipy.stats import ks_2samp

from auth_service.settings import Settings
from reliability.context import Context
from reliability.scenario import Findings, Scenario
from reliability.service import running, shared
from reliability.workload import seed_users

SIGNIFICANCE = 0.05
# Headers that differ between any two answers, whoever asked.
VARYING_HEADERS = frozenset({"date", "traceresponse", "content-length"})
DEFAULTS = {name: Settings.model_fields[name].default for name in ("argon2_time_cost", "argon2_memory_kib")}


@dataclass(frozen=True)
class Params:
    samples: int  # logins of each kind, per variant
    known_users: int


@dataclass
class Answers:
    seconds: list[float]
    statuses: set[int]
    bodies: set[bytes]
    headers: set[frozenset[str]]


def imported_hash(password: str) -> str:
    """A hash of other parameters than the service's (as an import from another system brings)."""
    hasher = PasswordHasher(
        time_cost=DEFAULTS["argon2_time_cost"] + 2,
        memory_cost=DEFAULTS["argon2_memory_kib"],
        parallelism=1,
        type=Type.ID,
    )
    return hasher.hash(password)


async def run(context: Context, params: Params) -> Findings:
    service, database = await shared(context)
    password = f"known-{uuid.uuid4().hex}"
    known = [email for _, email in await seed_users(context, service.url, params.known_users, password)]
    other_hash = await asyncio.to_thread(imported_hash, password)
    imported = [email for _, email in await seed_users(context, service.url, params.known_users, password, other_hash)]
    raised = str(DEFAULTS["argon2_time_cost"] + 1)
    variants: dict[str, dict[str, Any]] = {}
    async with AsyncExitStack() as stack:
        costlier = stack.enter_async_context(running(context, "costlier", database, AUTH_ARGON2_TIME_COST=raised))
        restarted = asyncio.ensure_future(costlier)  # starts while the first variant is measured
        async with context.witness.client(service.url) as client:
            variants["same parameters"] = await compare(client, known, params.samples)
            variants["imported at other parameters"] = await compare(client, imported, params.samples)
        raised_service = await restarted
        async with context.witness.client(raised_service.url) as client:
            variants[f"after raising the time cost to {raised}"] = await compare(client, known, params.samples)
    return findings(variants, params)


async def compare(client: httpx.AsyncClient, known: list[str], samples: int) -> dict[str, Any]:
    """Known emails with a wrong password against unknown ones, in a random order, one at a time."""
    order = ["known"] * samples + ["unknown"] * samples
    random.shuffle(order)
    answers = {kind: Answers([], set(), set(), set()) for kind in ("known", "unknown")}
    wrong = f"wrong-{uuid.uuid4().hex}"
    for kind in order:
        email = random.choice(known) if kind == "known" else f"nobody-{uuid.uuid4().hex[:12]}@example.com"  # noqa: S311
        started = time.perf_counter()
        response = await client.post("/v1/auth/token", json={"email": email, "password": wrong})
        seconds = time.perf_counter() - started
        found = answers[kind]
        found.seconds.append(seconds)
        found.statuses.add(response.status_code)
        found.bodies.add(response.content)
        found.headers.add(frozenset(f"{n}: {v}" for n, v in response.headers.items() if n not in VARYING_HEADERS))
    return judge(answers["known"], answers["unknown"])


def judge(known: Answers, unknown: Answers) -> dict[str, Any]:
    test = ks_2samp(known.seconds, unknown.seconds)
    return {
        "samples": len(known.seconds),
        "statuses": sorted(known.statuses | unknown.statuses),
        "same_status": known.statuses == unknown.statuses and len(known.statuses) == 1,
        "same_body": known.bodies == unknown.bodies and len(known.bodies) == 1,
        "same_headers": known.headers == unknown.headers,
        "median_known_ms": round(statistics.median(known.seconds) * 1000, 2),
        "median_unknown_ms": round(statistics.median(unknown.seconds) * 1000, 2),
        "ks_statistic": round(float(test.statistic), 3),
        "ks_p": float(f"{test.pvalue:.3g}"),
    }


def findings(variants: dict[str, dict[str, Any]], params: Params) -> Findings:
    sent = sum(2 * variant["samples"] for variant in variants.values())
    unexpected = sum(1 for variant in variants.values() if variant["statuses"] != [401])
    found = Findings(sent=sent, failed=unexpected)
    found.figures = {"variants": variants, "significance": SIGNIFICANCE}
    for name, variant in variants.items():
        found.figures[f"ks_p {name}"] = variant["ks_p"]
        for what in ("status", "body", "headers"):
            found.expect(variant[f"same_{what}"], f"{name}: the {what} tells a known email from an unknown one")
        found.expect(
            variant["ks_p"] > SIGNIFICANCE,
            f"{name}: the timing tells them apart (KS p = {variant['ks_p']}; medians {variant['median_known_ms']} ms "
            f"known, {variant['median_unknown_ms']} ms unknown)",
        )
    found.observed = "; ".join(
        f"{name}: KS p = {v['ks_p']} ({v['median_known_ms']} vs {v['median_unknown_ms']} ms), "
        f"{'same' if v['same_status'] and v['same_body'] and v['same_headers'] else 'DIFFERENT'} status/body/headers"
        for name, v in variants.items()
    )
    return found


SCENARIO = Scenario(
    key="enumeration",
    tried=(
        "Logins with a known email and a wrong password against unknown emails, shuffled, one at a time: at the "
        "service's argon2 parameters, for users imported at other parameters, and after a restart at a higher time cost"
    ),
    run=run,
    # Each failed login takes at least the failure floor (security/passwords.py), about 0.35 s here.
    quick=Params(samples=6, known_users=6),
    long=Params(samples=80, known_users=40),
)
