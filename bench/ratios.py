"""How many times another server's throughput the service's is: each round's ratio, and their median.

The servers of an endpoint are measured in interleaved rounds (bench/rounds.py), so the runs of one
round lie seconds apart while the host's speed drifts by up to 2x over a run. A ratio taken round by
round compares the servers at one speed; the median of those ratios is the figure reported. The
ratio of the per-server medians is kept beside it, for comparison with runs made before 2026-12.
"""

from __future__ import annotations

import statistics
from typing import Any

REFERENCES = ("ceiling", "baseline")
# The per-run figure behind each kind of throughput: requests a second, and 1e6 / CPU us per request.
RUNS = {"rps": "rps_runs", "capacity_rps": "capacity_rps_runs"}


def per_round(values: list[float], references: list[float]) -> list[float]:
    """value / reference, round by round; a round whose reference is 0 is left out."""
    return [value / reference for value, reference in zip(values, references, strict=True) if reference]


def median(ratios: list[float]) -> float | None:
    return statistics.median(ratios) if ratios else None


def runs(results: dict[str, Any], endpoint: str, server: str, key: str) -> list[float]:
    found = results.get("endpoints", {}).get(endpoint, {}).get(server, {}).get(RUNS[key], [])
    return [float(value) for value in found]


def between(results: dict[str, Any], endpoint: str, other: str, key: str = "rps") -> list[float]:
    """service / other for each round of the endpoint ([] when either is missing or their rounds do not pair)."""
    service, reference = runs(results, endpoint, "service", key), runs(results, endpoint, other, key)
    if not service or len(service) != len(reference):
        return []
    return per_round(service, reference)


def bound(results: dict[str, Any], endpoint: str, server: str) -> bool:
    """Whether wrk, not the server, set the pace of this entry's runs."""
    return bool(results.get("endpoints", {}).get(endpoint, {}).get(server, {}).get("load_generator_bound"))


def ratio(results: dict[str, Any], endpoint: str, other: str) -> dict[str, Any] | None:
    by_rps, by_cpu = between(results, endpoint, other), between(results, endpoint, other, "capacity_rps")
    if not by_rps:
        return None
    entries = results["endpoints"][endpoint]
    return {
        "median": round(statistics.median(by_rps), 3),
        "runs": [round(value, 3) for value in by_rps],
        "by_cpu": round(statistics.median(by_cpu), 3) if by_cpu else None,
        "by_cpu_runs": [round(value, 3) for value in by_cpu],
        "of_medians": round(entries["service"]["rps"] / entries[other]["rps"], 3) if entries[other]["rps"] else None,
        # wrk set one side's pace: the ratio is then partly wrk's (at most this when it is the reference's).
        "load_generator_bound": bound(results, endpoint, "service") or bound(results, endpoint, other),
    }


def summary(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per endpoint, the service against each other server measured beside it."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for endpoint in results.get("endpoints", {}):
        for other in REFERENCES:
            measured = ratio(results, endpoint, other)
            if measured is not None:
                found.setdefault(endpoint, {})[f"vs_{other}"] = measured
    return found
