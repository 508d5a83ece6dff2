"""Driving wrk: one run of one endpoint against one server, read back from the script's JSON line."""

from __future__ import annotations

import json
import resource
import secrets
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.tools import pinned

SCRIPT = Path(__file__).resolve().parent / "wrk" / "run.lua"
MARKER = "BENCH_JSON "
# wrk's own default; a request still unanswered then counts as a timeout error.
TIMEOUT_SECONDS = 2


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int  # failed connections, reads, writes, timeouts and unexpected statuses (4xx, 5xx)
    not_found: int  # expected 404s (reads of ids that do not exist, in the mix)
    shed: int  # 503s with Retry-After: requests the service refused under overload (in the mix)
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    client_cpu_s: float = 0.0  # wrk's own CPU time: near the run's duration, wrk was the bottleneck

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def client_cpu_pct(self) -> float:
        return self.client_cpu_s / self.duration_s * 100 if self.duration_s else 0.0


@dataclass(frozen=True)
class Load:
    """What to send: the endpoint, how many connections, the data files, and a rate when paced."""

    endpoint: str
    connections: int
    data: dict[str, str]
    rate: float | None = None


def command(wrk: str, url: str, load: Load, seconds: int) -> list[str]:
    args = {**load.data, "endpoint": load.endpoint, "nonce": secrets.token_hex(4), "seed": str(secrets.randbits(20))}
    if load.rate is not None:
        args["rate"] = f"{load.rate:.3f}"
    options = ["-t", "1", "-c", str(load.connections), "-d", f"{seconds}s", "--timeout", f"{TIMEOUT_SECONDS}s"]
    return [wrk, *options, "-s", str(SCRIPT), url, "--", *(f"{key}={value}" for key, value in args.items())]


def run(wrk: str, cpu: int, url: str, load: Load, seconds: int) -> WrkResult:
    """One run of `seconds` on that CPU; raises with wrk's output when it gives no result."""
    argv = pinned(cpu, command(wrk, url, load, seconds))
    before = children_cpu_seconds()
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    client_cpu_s = children_cpu_seconds() - before
    for line in completed.stdout.splitlines():
        if line.startswith(MARKER):
            return replace(parse(json.loads(line[len(MARKER) :])), client_cpu_s=client_cpu_s)
    raise RuntimeError(f"wrk gave no result (exit {completed.returncode}):\n{completed.stdout}\n{completed.stderr}")


def children_cpu_seconds() -> float:
    """User plus system time of the finished children of this process (the harness runs one wrk at a time)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse(summary: dict[str, Any]) -> WrkResult:
    """The script's summary; 404s of the mix are expected answers and 503s with Retry-After refusals,
    each counted apart from the errors."""
    latency, not_found, shed = summary["latency_us"], int(summary["not_found"]), int(summary.get("shed", 0))
    return WrkResult(
        requests=int(summary["requests"]),
        duration_s=int(summary["duration_us"]) / 1e6,
        errors=sum(int(count) for count in summary["errors"].values()) - not_found - shed,
        not_found=not_found,
        shed=shed,
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p999_ms=latency["p999"] / 1000,
        max_ms=latency["max"] / 1000,
    )
