"""The issue's targets, checked against a run's results: measured value, goal, met or not, and by how much.

Throughput targets are checked on rps, as the issue states them, and again on rps/core (1e6 / CPU time per
request), which other processes on a shared machine do not move: `by_cpu` and `met_by_cpu`. A ratio between
servers is the median of the rounds' ratios (bench/ratios.py), each round's beside it (`ratio_runs`); a
figure wrk's own limit set is flagged (`load_generator_bound`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import ratios

Results = dict[str, Any]
# (results, the key that holds throughput: "rps" or "capacity_rps") -> the measured value, or None
Measure = Callable[[Results, str], float | None]
# The same, round by round: the ratios a median-of-rounds target is the median of.
Rounds = Callable[[Results, str], list[float]]


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    goal: float
    at_least: bool  # True: measured >= goal; False: measured <= goal
    unit: str
    measure: Measure
    throughput: bool = True  # also checked on rps/core
    rounds: Rounds | None = None
    reads: tuple[tuple[str, str], ...] = ()  # the (endpoint, server) entries it reads, for wrk's limit


def value(results: Results, endpoint: str, server: str, key: str) -> float | None:
    found = results.get("endpoints", {}).get(endpoint, {}).get(server, {}).get(key)
    return float(found) if isinstance(found, int | float) else None


def rps(endpoint: str) -> Measure:
    return lambda results, key: value(results, endpoint, "service", key)


def rps_target(name: str, endpoint: str, goal: float) -> Target:
    return Target(name, f"{endpoint} >= {goal:g} rps", goal, True, "rps", rps(endpoint), reads=((endpoint, "service"),))


def ratio_target(endpoint: str, other: str, goal: float) -> Target:
    """The service's throughput at least `goal` times the other's: the median of the rounds' ratios."""

    def rounds(results: Results, key: str) -> list[float]:
        return ratios.between(results, endpoint, other, key)

    def measure(results: Results, key: str) -> float | None:
        return ratios.median(rounds(results, key))

    description, reads = f"{endpoint} >= {goal:g} x {other}", ((endpoint, "service"), (endpoint, other))
    return Target(f"{endpoint}_vs_{other}", description, goal, True, "x", measure, rounds=rounds, reads=reads)


# The latency targets are at 70% of saturation: a run paced otherwise (--fixed-rate-share) does not check them.
TARGET_PACED_SHARE = 0.7


def p99_paced(endpoint: str) -> Measure:
    def measure(results: Results, _: str) -> float | None:
        if results.get("settings", {}).get("fixed_rate_share") != TARGET_PACED_SHARE:
            return None
        return value(results, endpoint, "service", "fixed_p99_ms")

    return measure


def allocated(endpoint: str) -> Measure:
    def measure(results: Results, _: str) -> float | None:
        found = results.get("allocations", {}).get(endpoint, {}).get("peak_bytes_per_request")
        return float(found) if isinstance(found, int | float) else None

    return measure


def tracing_cost(endpoint: str, ratio: str = "0.01") -> Measure:
    """Throughput lost with tracing at this sampling ratio, in % of the throughput with tracing off."""

    def measure(results: Results, key: str) -> float | None:
        found = results.get("tracing", {}).get("ratios", {}).get(ratio, {}).get(endpoint, {})
        change = found.get("rps_change_pct" if key == "rps" else "capacity_change_pct")
        return -float(change) if isinstance(change, int | float) else None

    return measure


TARGETS = (
    ratio_target("verify", "ceiling", 0.2),
    ratio_target("verify", "baseline", 4),
    ratio_target("user_hit", "ceiling", 0.2),
    ratio_target("user_hit", "baseline", 4),
    rps_target("user_miss_rps", "user_miss", 4000),
    ratio_target("user_miss", "baseline", 2),
    rps_target("mixed_rps", "mixed", 12000),
    Target(
        "mixed_no_hashing_rps",
        "(breakdown) mixed less its creates and logins >= 12000 rps",
        12000,
        True,
        "rps",
        rps("mixed_no_hashing"),
        reads=(("mixed_no_hashing", "service"),),
    ),
    Target("verify_p99_at_70pct", "verify p99 at 70% load <= 2 ms", 2, False, "ms", p99_paced("verify"), False),
    Target("user_hit_p99_at_70pct", "user_hit p99 at 70% load <= 2 ms", 2, False, "ms", p99_paced("user_hit"), False),
    Target("user_miss_p99_at_70pct", "user_miss p99 at 70% <= 10 ms", 10, False, "ms", p99_paced("user_miss"), False),
    Target("verify_allocation", "verify allocates <= 4096 B/request", 4096, False, "B", allocated("verify"), False),
    Target(
        "user_hit_allocation", "user_hit allocates <= 4096 B/request", 4096, False, "B", allocated("user_hit"), False
    ),
    Target("verify_tracing_cost", "tracing at 0.01 costs verify <= 10%", 10, False, "%", tracing_cost("verify")),
    Target("user_hit_tracing_cost", "tracing at 0.01 costs user_hit <= 10%", 10, False, "%", tracing_cost("user_hit")),
)


def verdict(target: Target, measured: float | None) -> tuple[bool, float | None]:
    """(met, margin_pct): how far past the goal in the good direction (positive: met with that much room)."""
    if measured is None:
        return False, None
    if target.at_least:
        return measured >= target.goal, round((measured / target.goal - 1) * 100, 1)
    return measured <= target.goal, round((1 - measured / target.goal) * 100, 1)


def check(target: Target, results: Results) -> dict[str, Any]:
    measured = target.measure(results, "rps")
    met, margin = verdict(target, measured)
    checked = {
        "description": target.description,
        "target": target.goal,
        "unit": target.unit,
        "measured": None if measured is None else round(measured, 3),
        "met": met,
        "margin_pct": margin,
    }
    if target.throughput:
        by_cpu = target.measure(results, "capacity_rps")
        checked |= {"by_cpu": None if by_cpu is None else round(by_cpu, 3), "met_by_cpu": verdict(target, by_cpu)[0]}
    if target.rounds is not None:
        checked["ratio_runs"] = [round(found, 3) for found in target.rounds(results, "rps")]
        checked["by_cpu_runs"] = [round(found, 3) for found in target.rounds(results, "capacity_rps")]
    if target.reads:
        checked["load_generator_bound"] = any(ratios.bound(results, *read) for read in target.reads)
    return checked


def evaluate(results: Results) -> dict[str, dict[str, Any]]:
    return {target.name: check(target, results) for target in TARGETS}


# The CPU a request may cost for one core to serve the mixed target.
MIXED_GOAL_RPS = 12000


def mixed_breakdown(results: Results, hashing_share: float) -> dict[str, float] | None:
    """Where the mix's CPU goes: its argon2 requests (creates, logins) against the rest.

    From the CPU per request of the mix (m) and of the same mix less its hashing requests (n), with h
    the hashing requests' share: m = (1 - h) n + h c, so each hashing request costs c = (m - (1 - h) n) / h.
    """
    mixed = value(results, "mixed", "service", "cpu_us_per_request")
    rest = value(results, "mixed_no_hashing", "service", "cpu_us_per_request")
    if not (mixed and rest and 0 < hashing_share < 1):
        return None
    per_hashing_request = (mixed - (1 - hashing_share) * rest) / hashing_share
    hashing_per_request = hashing_share * per_hashing_request
    return {
        "hashing_share_of_requests_pct": round(hashing_share * 100, 3),
        "cpu_us_per_request": round(mixed, 1),
        "cpu_us_per_request_without_hashing": round(rest, 1),
        "cpu_ms_per_hashing_request": round(per_hashing_request / 1000, 2),
        "hashing_share_of_cpu_pct": round(hashing_per_request / mixed * 100, 1),
        "budget_us_per_request_at_goal": round(1e6 / MIXED_GOAL_RPS, 1),
        "hashing_us_per_request": round(hashing_per_request, 1),
        "rps_per_core_if_hashing_were_free": round(1e6 / ((1 - hashing_share) * rest), 1),
    }


# wrk's timers tick once a millisecond: a paced run's requests leave in up to this many bursts a second.
WRK_TICKS_PER_SECOND = 1000
LATENCY_ENDPOINTS = ("verify", "user_hit", "user_miss")


def latency_breakdown(results: Results) -> dict[str, dict[str, float | None]]:
    """What the paced runs' p99 is made of, per endpoint, from figures of the same run.

    How busy the server really was at the paced rate (its CPU per request rises as load falls: fewer
    requests share each wake-up of the loop), what one tick of wrk's timer releases at that rate and how
    long the server takes to answer that many, and the ceiling's p99 under the same pacer (the share of
    the latency that is the load generator's and the network stack's).
    """
    found = {}
    for endpoint in LATENCY_ENDPOINTS:
        entry = results.get("endpoints", {}).get(endpoint, {}).get("service", {})
        rate, paced_cpu = entry.get("fixed_rate_rps"), entry.get("fixed_cpu_us_per_request")
        if not (isinstance(rate, int | float) and isinstance(paced_cpu, int | float)):
            continue
        per_tick = rate / WRK_TICKS_PER_SECOND
        found[endpoint] = {
            "paced_rps": rate,
            "p50_ms": entry.get("fixed_p50_ms"),
            "p99_ms": entry.get("fixed_p99_ms"),
            "server_cpu_pct": entry.get("fixed_cpu_pct"),
            "cpu_us_per_request_paced": paced_cpu,
            "cpu_us_per_request_saturated": entry.get("cpu_us_per_request"),
            "requests_per_timer_tick": round(per_tick, 1),
            "one_tick_answered_in_ms": round(per_tick * paced_cpu / 1000, 2),
            "ceiling_p99_ms": value(results, endpoint, "ceiling", "fixed_p99_ms"),
        }
    return found
