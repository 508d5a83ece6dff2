"""From repeated runs to the figures reported: medians with their spread, CPU per request, GC pauses."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench.wrk import WrkResult


@dataclass(frozen=True)
class Rep:
    """One measured run: what wrk saw, and what the server spent meanwhile."""

    result: WrkResult
    cpu_s: float
    stolen_s: float  # the server's event loop ready to run, its CPU held by other processes
    gc: dict[str, tuple[float, float]]
    db_cpu_s: float | None = None  # PostgreSQL's, every process of it, over the run; None: not read
    started_s: float = 0.0  # when the run began, in seconds since the benchmark began

    @property
    def cpu_pct(self) -> float:
        return self.cpu_s / self.result.duration_s * 100 if self.result.duration_s else 0.0

    @property
    def capacity_rps(self) -> float:
        """The rate a whole core would sustain at this run's CPU cost a request."""
        return self.result.requests / self.cpu_s if self.cpu_s else 0.0

    @property
    def stolen_pct(self) -> float:
        return self.stolen_s / self.result.duration_s * 100 if self.result.duration_s else 0.0


# At or above this share of its core, wrk rather than the server set the pace: the figure is wrk's limit.
LOAD_GENERATOR_BOUND_PCT = 90.0


def rounded(value: float, digits: int = 3) -> float:
    return round(value, digits)


def saturation(reps: list[Rep]) -> dict[str, object]:
    """rps (median, min, max), latency percentiles (medians across runs), errors and CPU per request.

    The runs' own figures are kept in their order (one a round): the ratios between servers pair them.
    """
    rps = [rep.result.rps for rep in reps]
    requests = sum(rep.result.requests for rep in reps)
    errors = sum(rep.result.errors for rep in reps)
    cpu_us = cpu_per_request(sum(rep.cpu_s for rep in reps), requests)
    client_cpu_pct = rounded(statistics.median(rep.result.client_cpu_pct for rep in reps), 1)
    return {
        "rps": rounded(statistics.median(rps), 1),
        "rps_min": rounded(min(rps), 1),
        "rps_max": rounded(max(rps), 1),
        "rps_runs": [rounded(value, 1) for value in rps],
        "capacity_rps_runs": [rounded(rep.capacity_rps, 1) for rep in reps],
        "runs_started_s": [rounded(rep.started_s, 1) for rep in reps],
        "p50_ms": median_of(reps, "p50_ms"),
        "p99_ms": median_of(reps, "p99_ms"),
        "p999_ms": median_of(reps, "p999_ms"),
        "max_ms": rounded(max(rep.result.max_ms for rep in reps)),
        "requests": requests,
        "errors": errors,
        "error_rate": rounded(errors / requests, 5) if requests else 0.0,
        "not_found": sum(rep.result.not_found for rep in reps),
        "shed": sum(rep.result.shed for rep in reps),
        "cpu_us_per_request": cpu_us,
        # The rate a whole core would sustain at that CPU cost: steadier than rps on a shared machine.
        "capacity_rps": rounded(1e6 / cpu_us, 1) if cpu_us else 0.0,
        "cpu_pct": rounded(statistics.median(rep.cpu_pct for rep in reps), 1),
        "stolen_pct": rounded(statistics.median(rep.stolen_pct for rep in reps), 1),
        "client_cpu_pct": client_cpu_pct,
        "load_generator_bound": client_cpu_pct >= LOAD_GENERATOR_BOUND_PCT,
    }


def median_of(reps: list[Rep], name: str) -> float:
    return rounded(statistics.median(getattr(rep.result, name) for rep in reps))


def cpu_per_request(cpu_s: float, requests: int) -> float:
    return rounded(cpu_s / requests * 1e6, 1) if requests else 0.0


def database_cpu(reps: list[Rep]) -> dict[str, float | None]:
    """PostgreSQL's CPU over the measured runs: per request answered, and in % of one core (None: not read)."""
    readings = [rep.db_cpu_s for rep in reps]
    if not reps or None in readings:
        return {"db_cpu_us_per_request": None, "db_cpu_pct": None}
    db_cpu_s = sum(reading for reading in readings if reading is not None)
    duration_s = sum(rep.result.duration_s for rep in reps)
    return {
        "db_cpu_us_per_request": cpu_per_request(db_cpu_s, sum(rep.result.requests for rep in reps)),
        "db_cpu_pct": rounded(db_cpu_s / duration_s * 100, 1) if duration_s else None,
    }


def gc_pauses(reps: list[Rep]) -> dict[str, dict[str, float]]:
    """Per generation over the measured runs: collections, total pause, and pause per request."""
    requests = sum(rep.result.requests for rep in reps) or 1
    totals: dict[str, list[float]] = {}
    for rep in reps:
        for generation, (count, seconds) in rep.gc.items():
            total = totals.setdefault(generation, [0.0, 0.0])
            total[0] += count
            total[1] += seconds
    return {
        generation: {
            "collections": int(count),
            "pause_ms": rounded(seconds * 1000),
            "pause_us_per_request": rounded(seconds * 1e6 / requests, 4),
        }
        for generation, (count, seconds) in sorted(totals.items())
    }


def fixed_rate(target: float, rep: Rep) -> dict[str, object]:
    """The latencies of a run paced at `target` requests a second, and the rate it really reached."""
    result = rep.result
    return {
        "fixed_rate_rps": rounded(target, 1),
        "fixed_achieved_rps": rounded(result.rps, 1),
        "fixed_p50_ms": rounded(result.p50_ms),
        "fixed_p99_ms": rounded(result.p99_ms),
        "fixed_p999_ms": rounded(result.p999_ms),
        "fixed_requests": result.requests,
        "fixed_errors": result.errors,
        "fixed_shed": result.shed,
        "fixed_cpu_us_per_request": cpu_per_request(rep.cpu_s, result.requests),
        "fixed_cpu_pct": rounded(rep.cpu_pct, 1),
        "fixed_stolen_pct": rounded(rep.stolen_pct, 1),
    }
