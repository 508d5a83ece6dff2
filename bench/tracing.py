"""Tracing overhead: the service with spans exported over OTLP to a local sink that discards them."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench import ratios, stats
from bench.ports import free_port
from bench.servers import Server, running
from bench.stats import Rep
from bench.tools import pinned

ENDPOINTS = ("verify", "user_hit")
SAMPLER = "parentbased_traceidratio"
METHOD = (
    "The service as shipped but with OTEL_TRACES_EXPORTER=otlp (http/protobuf) to a local sink that answers 200 "
    f"to every POST /v1/traces and keeps nothing (`python -m bench.sink`, on the client's CPU), "
    f"OTEL_TRACES_SAMPLER={SAMPLER} and OTEL_TRACES_SAMPLER_ARG as in the first column; wrk sends no "
    "traceparent, so every request is a root sampled at that ratio. `off` is the service as shipped "
    "(no exporter), measured in the same block. In rounds: each round starts a fresh process of every setting "
    "in turn (warm-up, then one run per endpoint), so that the host's drift moves them alike; rps is the median "
    "over the rounds, and 'vs off' the median over the rounds of the change against that round's run with "
    "tracing off (fresh processes of the same settings differ by up to 9% on this machine)."
)


def otel_env(ratio: float, sink: Server) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": SAMPLER,
        "OTEL_TRACES_SAMPLER_ARG": f"{ratio:g}",
    }


@contextlib.contextmanager
def running_sink(cpu: int, log: Path) -> Iterator[Server]:
    port = free_port()
    command = [sys.executable, "-m", "bench.sink", "--host", "127.0.0.1", "--port", str(port)]
    with running("sink", pinned(cpu, command), {}, port, log) as sink:
        yield sink


def exports(sink: Server) -> int:
    """Export requests the sink has received so far."""
    return int(httpx.get(f"{sink.url}/stats", timeout=5.0).json()["exports"])


def summary(reps: list[Rep], retried_runs: int, off: list[Rep] | None = None) -> dict[str, Any]:
    """rps and latency of one endpoint over the rounds, and how they compare with tracing off (negative: slower).

    The comparison pairs each round with the same round's run with tracing off: the median of those changes.
    """
    entry = stats.saturation(reps)
    keys = ("rps", "rps_min", "rps_max", "p50_ms", "p99_ms", "cpu_us_per_request", "capacity_rps", "stolen_pct")
    found = {key: entry[key] for key in keys} | {"retried_runs": retried_runs}
    if off is not None:
        found["rps_change_pct"] = paired_change([rep.result.rps for rep in reps], [rep.result.rps for rep in off])
        # The same comparison from CPU time per request: what a whole core would sustain, unmoved by other load.
        found["capacity_change_pct"] = paired_change(
            [rep.capacity_rps for rep in reps], [rep.capacity_rps for rep in off]
        )
    return found


def paired_change(values: list[float], references: list[float]) -> float | None:
    """The median over the rounds of each round's change, in %: the median of the rounds' ratios, less 1."""
    median = ratios.median(ratios.per_round(values, references))
    return round((median - 1) * 100, 1) if median is not None else None
