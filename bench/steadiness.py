"""How fast and how steady the server's CPU was through a run: a fixed piece of Python, timed at each block.

The hosts this runs on are shared virtual machines. On some days the same code ran at half the speed
of the day before, and within one run a slow spell can fall on the service's block and spare the
ceiling's, which bends the ratios. The guest does not see it: no steal time is reported, and the
server's run-queue wait ("stolen %") stays at zero. So the harness times one fixed workload on the
server's CPU before each endpoint's rounds, before tracing and at the end: the same figure everywhere
on a steady host, and comparable across runs on the same kind of CPU. (The ratios between servers
come from interleaved rounds for this reason: bench/rounds.py.)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from bench.tools import pinned

SAMPLES = 7
# After an idle spell the server's CPU runs this probe at 11-12 ms for its first 0.3 s of work, then at
# 7-8 ms (measured 2026-11-29): the probe works this long before it times, so that it reads the speed
# the blocks run at, not the ramp.
RAMP_SECONDS = 0.5
# A note when the slowest reading of a run is this much slower than its fastest.
UNSTEADY_RATIO = 1.15
# Pure-Python work of about 10 ms on these machines: calls, integer arithmetic, a dict, a list.
PROBE = f"""
import json, time
def work():
    table = {{}}
    for i in range(60_000):
        table[i % 997] = table.get(i % 997, 0) + i * i
    return sorted(table.values())[-1]
ramp_until = time.perf_counter() + {RAMP_SECONDS}
while time.perf_counter() < ramp_until:
    work()
timings = []
for _ in range({SAMPLES}):
    started = time.perf_counter()
    work()
    timings.append((time.perf_counter() - started) * 1000)
print(json.dumps(timings))
"""


def probe(cpu: int, when: str) -> dict[str, Any]:
    """The probe's timings on that CPU now: median, fastest and slowest of SAMPLES, in ms."""
    command = pinned(cpu, [sys.executable, "-c", PROBE])
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    timings: list[float] = json.loads(completed.stdout)
    return {
        "when": when,
        "ms": round(statistics.median(timings), 2),
        "min_ms": round(min(timings), 2),
        "max_ms": round(max(timings), 2),
    }


def unsteady(readings: list[dict[str, Any]]) -> str | None:
    """A note for the report when the probe's medians moved by more than UNSTEADY_RATIO in the run."""
    if len(readings) < 2:
        return None
    fastest = min(readings, key=lambda reading: reading["ms"])
    slowest = max(readings, key=lambda reading: reading["ms"])
    if slowest["ms"] <= fastest["ms"] * UNSTEADY_RATIO:
        return None
    return (
        f"the host was not steady: the speed probe took {slowest['ms']:.1f} ms {slowest['when']} against "
        f"{fastest['ms']:.1f} ms {fastest['when']} (x{slowest['ms'] / fastest['ms']:.2f}); "
        "figures of different endpoints compare less well than usual (the ratios, round by round, less so)"
    )


def describe(readings: list[dict[str, Any]]) -> str:
    """One line for the report's header."""
    each = "; ".join(f"{r['when']} {r['ms']:.1f} ({r['min_ms']:.1f}-{r['max_ms']:.1f})" for r in readings)
    return (
        f"- Host speed: a fixed piece of pure Python on the server's CPU, median of {SAMPLES} in ms after "
        f"{RAMP_SECONDS:g} s of the same work (fastest-slowest): {each}. "
        "On a steady host these agree within a few percent."
    )
