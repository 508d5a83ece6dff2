"""What each kind of request costs on one core, and its p99 against load, from one bench run.

A kind is taken from the bench endpoint that measures it alone. A kind without one (update, today) is
derived from the mix less its hashing, which the bench measures whole: n = sum(w c) / sum(w) over its
kinds, so c_update = (n sum(w) - sum of the others' w c) / w_update. Nothing else is filled in.
"""

from __future__ import annotations

from dataclasses import dataclass

from loadtests.capacity_inputs import Bench, Refusal, shown

CPU = "cpu_us_per_request"
DB_CPU = "db_cpu_us_per_request"
MIXED = "mixed"
MIXED_NO_HASHING = "mixed_no_hashing"
# The bench endpoint that measures each kind of the mix on its own.
KIND_ENDPOINTS = {
    "verify": "verify",
    "user_hit": "user_hit",
    "not_found": "user_miss",
    "update": "update",
    "create": "create",
    "login": "login",
}
# Where the endpoint is not the kind itself, what differs.
APPROXIMATIONS = {
    "not_found": "user_miss reads existing users past a one-entry cache; not_found reads random ids (the same query, "
    "answered 404)",
}
# The kinds whose PostgreSQL CPU must be known (the mix's misses and writes); creates and logins count when measured.
DB_KINDS = ("not_found", "update")
DB_KINDS_IF_MEASURED = ("create", "login")


@dataclass(frozen=True)
class Cost:
    """Microseconds of one core per request, and where the figure comes from."""

    us: float
    source: str


def measured(bench: Bench, kind: str, key: str) -> Cost | None:
    endpoint = KIND_ENDPOINTS[kind]
    found = bench.value(endpoint, key)
    return None if found is None else Cost(found, f"endpoints.{endpoint}.service.{key}")


def derived(bench: Bench, kind: str, key: str, known: dict[str, Cost], hashing: tuple[str, ...]) -> Cost:
    """A kind's cost from the bench's mix less its hashing and the other kinds of that mix."""
    weights = {k: w for k, w in bench.mix.items() if k not in hashing and w > 0}
    if kind not in weights:
        raise Refusal(f"{shown(bench.path)}: no endpoint measures {kind} and its mix has none to derive it from")
    whole = bench.require(MIXED_NO_HASHING, key)
    unknown = [k for k in weights if k != kind and k not in known]
    if unknown:
        raise Refusal(f"{shown(bench.path)}: {key} of {kind} cannot be derived: {', '.join(unknown)} not measured")
    rest = sum(weights[k] * known[k].us for k in weights if k != kind)
    us = (whole * sum(weights.values()) - rest) / weights[kind]
    if us <= 0:
        raise Refusal(f"{shown(bench.path)}: {key} of {kind} derived from {MIXED_NO_HASHING} comes out at {us:.1f}")
    source = f"derived from endpoints.{MIXED_NO_HASHING}.service.{key} ({whole:g}) less the other kinds of the mix"
    return Cost(round(us, 1), source)


def kind_costs(
    bench: Bench, kinds: tuple[str, ...], key: str, hashing: tuple[str, ...], given: dict[str, float] | None = None
) -> dict[str, Cost]:
    """Each kind's cost: given explicitly, else measured, else derived (one kind at most)."""
    given = given or {}
    known = {kind: Cost(given[kind], f"given (--db-cpu-us {kind}=...)") for kind in given}
    known |= {k: c for k in KIND_ENDPOINTS if k not in known and (c := measured(bench, k, key)) is not None}
    missing = [kind for kind in kinds if kind not in known]
    if len(missing) > 1:
        names = ", ".join(k if k == KIND_ENDPOINTS[k] else f"{k} ({KIND_ENDPOINTS[k]})" for k in missing)
        raise Refusal(f"{shown(bench.path)}: no {key} for {names}")
    for kind in missing:
        known[kind] = derived(bench, kind, key, known, hashing)
    return {kind: known[kind] for kind in kinds}


def hashing_cost(bench: Bench, mix: dict[str, float], hashing: tuple[str, ...]) -> Cost:
    """One argon2 request's CPU: the bench's breakdown of the mix against the mix less its hashing (same process),
    else the create and login endpoints measured alone."""
    per_hash_ms = bench.breakdown("cpu_ms_per_hashing_request")
    if per_hash_ms is not None and per_hash_ms > 0:
        return Cost(per_hash_ms * 1000, "mixed_breakdown.cpu_ms_per_hashing_request")
    alone = hashing_cost_alone(bench, mix, hashing)
    if alone is None:
        raise Refusal(
            f"{shown(bench.path)}: no mixed_breakdown.cpu_ms_per_hashing_request nor {CPU} of every hashing "
            "endpoint; run `make bench`"
        )
    return alone


def hashing_cost_alone(bench: Bench, mix: dict[str, float], hashing: tuple[str, ...]) -> Cost | None:
    """The same from the create and login endpoints measured alone, weighted by the mix (a cross-check)."""
    costs = {kind: measured(bench, kind, CPU) for kind in hashing}
    total = sum(mix.get(kind, 0.0) for kind in hashing)
    if total <= 0 or any(cost is None for cost in costs.values()):
        return None
    us = sum(mix.get(kind, 0.0) * cost.us for kind, cost in costs.items() if cost) / total
    return Cost(round(us, 1), " and ".join(f"endpoints.{KIND_ENDPOINTS[kind]}.service.{CPU}" for kind in hashing))


@dataclass(frozen=True)
class Point:
    """A measured p99 at a rate, the rate also as a share of that endpoint's saturation."""

    rps: float
    share: float
    p99_ms: float
    label: str


def p99_points(bench: Bench, endpoint: str) -> list[Point]:
    """The paced run (fixed rate) and the saturation run of an endpoint, lowest rate first."""
    saturation = bench.require(endpoint, "rps")
    points = []
    paced = bench.value(endpoint, "fixed_achieved_rps") or bench.value(endpoint, "fixed_rate_rps")
    paced_p99 = bench.value(endpoint, "fixed_p99_ms")
    if paced and paced_p99 is not None:
        points.append(Point(paced, round(paced / saturation, 3), paced_p99, "paced"))
    return [*points, Point(saturation, 1.0, bench.require(endpoint, "p99_ms"), "saturation")]
