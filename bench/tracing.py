"""Tracing overhead: the service with spans exported over OTLP to a local sink that discards them."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.servers import Server, free_port, running
from bench.tools import pinned

ENDPOINTS = ("verify", "user_hit")
SAMPLER = "parentbased_traceidratio"
METHOD = (
    "The service as shipped but with OTEL_TRACES_EXPORTER=otlp (http/protobuf) to a local sink that answers 200 "
    f"to every POST /v1/traces and keeps nothing (`python -m bench.sink`, on the client's CPU), "
    f"OTEL_TRACES_SAMPLER={SAMPLER} and OTEL_TRACES_SAMPLER_ARG as in the first column; wrk sends no "
    "traceparent, so every request is a root sampled at that ratio. `off` is the service as shipped "
    "(no exporter), measured in the same block. Each is a fresh process: warm-up, then the repetitions."
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


def summary(entry: dict[str, Any], off: dict[str, Any] | None) -> dict[str, Any]:
    """rps and latency of one endpoint, and how they compare with tracing off (negative: slower)."""
    keys = ("rps", "rps_min", "rps_max", "p50_ms", "p99_ms", "cpu_us_per_request", "capacity_rps", "stolen_pct")
    found = {key: entry[key] for key in (*keys, "retried_runs")}
    if off is not None:
        found["rps_change_pct"] = change(entry["rps"], off["rps"])
        # The same comparison from CPU time per request: what a whole core would sustain, unmoved by other load.
        found["capacity_change_pct"] = change(entry["capacity_rps"], off["capacity_rps"])
    return found


def change(value: float, reference: float) -> float | None:
    return round((value / reference - 1) * 100, 1) if reference else None
