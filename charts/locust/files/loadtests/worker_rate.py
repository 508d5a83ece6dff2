"""How many requests a second one Locust worker core generates against the service, at the default mix.

    python -m loadtests.worker_rate [--runs 3] [--seconds 15] [--users 400] [--user-rps 20]

The service runs on the first CPU (started as `make load` starts it, on AUTH_DATABASE_URL or the
embedded PostgreSQL), one Locust worker alone on the second, its master beside the service (it only
gathers statistics). Each run's figure is the worker's requests over its own CPU time while every
user runs (the statistics are reset once they have all started): what a core of it sends. The
users offer more than a core sends; where the service answers slower than that (one core here,
beside a PostgreSQL the machine shares), the worker is not saturated, and its requests over its
CPU time still tell what a busy core sends: each run's CPU shares are kept, to show which it was.
The median of the runs goes to
loadtests/results/worker_rate.json, with the date, the machine and the command, for the capacity
model and the Locust chart to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from loadtests.endpoints import SHED
from loadtests.local import LOCUSTFILE, REPO_ROOT, pinned, service, stop

RESULT = REPO_ROOT / "loadtests" / "results" / "worker_rate.json"
HOST = "http://127.0.0.1:8766"
MASTER_PORT = 5599
SPAWN_SECONDS = 2.0
# The master seeds the accounts before the run starts.
SEEDING_BOUND_SECONDS = 120.0


@dataclass(frozen=True)
class Run:
    rps: float  # the worker's requests a second in the window
    shed_share: float  # of them, answered 503 or 429 (SHED rows): requests the worker sent all the same
    worker_busy: float  # its CPU time over the window's wall time (1.0: the whole core)
    service_busy: float
    rps_per_worker_core: float  # its requests over its CPU time


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    wall: float
    worker: float
    service: float


def at(samples: list[Sample], wall: float) -> Sample:
    """The sample nearest that moment."""
    return min(samples, key=lambda sample: abs(sample.wall - wall))


@dataclass(frozen=True)
class Window:
    """Locust's final statistics, every request type and the SHED rows too."""

    requests: int
    shed: int
    first: float
    last: float


def window(stats_json: Path) -> Window:
    entries = json.loads(stats_json.read_text())
    return Window(
        sum(entry["num_requests"] for entry in entries),
        sum(entry["num_requests"] for entry in entries if entry["method"] == SHED),
        min(entry["start_time"] for entry in entries),
        max(entry["last_request_timestamp"] for entry in entries),
    )


def measure(args: argparse.Namespace, service_pid: int, prefix: Path, cpus: tuple[int, int]) -> Run:
    """One run: the statistics are reset once every user has started (--reset-stats), so they cover the steady part."""
    env = os.environ | {"LOADTEST_SHAPE": "none", "LOADTEST_USER_RATE": str(args.user_rps)}
    locust = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", HOST]
    master_args = ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(MASTER_PORT)]
    master_args += ["--headless", "--expect-workers", "1", "--reset-stats", "--json-file", str(prefix)]
    master_args += ["--users", str(args.users), "--spawn-rate", str(args.users / SPAWN_SECONDS)]
    master_args += ["--run-time", f"{SPAWN_SECONDS + args.seconds:.0f}s"]
    worker_args = ["--worker", "--master-host", "127.0.0.1", "--master-port", str(MASTER_PORT)]
    master = subprocess.Popen(pinned(cpus[:1], locust + master_args), env=env, cwd=REPO_ROOT)  # noqa: S603
    worker = subprocess.Popen(pinned(cpus[1:], locust + worker_args), env=env, cwd=REPO_ROOT)  # noqa: S603
    samples = []
    deadline = time.monotonic() + SEEDING_BOUND_SECONDS + SPAWN_SECONDS + args.seconds
    try:
        while master.poll() is None and time.monotonic() < deadline:
            samples.append(Sample(time.time(), cpu_seconds(worker.pid), cpu_seconds(service_pid)))
            time.sleep(0.25)
    finally:
        stop(master, signal.SIGINT)
        stop(worker, signal.SIGINT)
    stats = window(Path(f"{prefix}.json"))
    start, end = at(samples, stats.first), at(samples, stats.last)
    wall = end.wall - start.wall
    worker_busy, service_busy = (end.worker - start.worker) / wall, (end.service - start.service) / wall
    rps = stats.requests / (stats.last - stats.first)
    shed = stats.shed / stats.requests
    return Run(
        round(rps, 1), round(shed, 4), round(worker_busy, 3), round(service_busy, 3), round(rps / worker_busy, 1)
    )


def machine(cpus: tuple[int, ...], note: str) -> dict[str, object]:
    """As the bench records it (bench/machine.py), with the CPUs each side had and what else was going on."""
    models = [
        line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line
    ]
    return {
        "cpu_model": models[0] if models else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "cpus_allowed": list(cpus),
        "kernel": platform.release(),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "service_cpu": cpus[0],
        "worker_cpu": cpus[1],
        "note": note,
    }


def versions() -> dict[str, str]:
    return {"python": platform.python_version(), "locust": version("locust"), "auth-service": version("auth-service")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0, help="the measured window of each run")
    parser.add_argument("--users", type=int, default=400)
    parser.add_argument(
        "--user-rps", type=float, default=20.0, help="each user's pace: the users offer more than a core sends"
    )
    parser.add_argument("--output", type=Path, default=RESULT)
    parser.add_argument("--note", default="", help="what else the machine was doing, for the record")
    args = parser.parse_args(argv)
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    if len(cpus) < 2:
        raise SystemExit("worker_rate: needs two CPUs, one for the service and one for the worker")
    work = args.output.parent / "tmp-worker-rate"
    work.mkdir(parents=True, exist_ok=True)
    where = machine(cpus, args.note)
    with service(HOST, cpus[:1], work / "service.log") as process:
        runs = [measure(args, process.pid, work / f"run{index}", (cpus[0], cpus[1])) for index in range(args.runs)]
    for run in runs:
        print(f"worker_rate: {run}", file=sys.stderr)
    result = record(args, argv, cpus, where, runs)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"worker_rate: {result['rps_per_worker_core']} requests/s per worker core -> {args.output}", file=sys.stderr)
    return 0


def record(
    args: argparse.Namespace, argv: list[str] | None, cpus: tuple[int, ...], where: dict[str, object], runs: list[Run]
) -> dict[str, object]:
    """What the file keeps: the figure, when and where, the command that measures it again, each run."""
    return {
        "rps_per_worker_core": statistics.median(run.rps_per_worker_core for run in runs),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": where,
        "versions": versions(),
        "command": shlex.join(["python", "-m", "loadtests.worker_rate", *(argv if argv is not None else sys.argv[1:])]),
        "database": "AUTH_DATABASE_URL" if os.environ.get("AUTH_DATABASE_URL") else "the embedded PostgreSQL",
        "method": (
            f"FastHttpUser, the default mix, {args.users} users paced at {args.user_rps} req/s each (more than a core "
            f"sends); one worker pinned to CPU {cpus[1]}, the service and the master to CPU {cpus[0]}; per run, the "
            f"worker's requests over its CPU time in the {args.seconds:.0f} s after every user started "
            f"(--reset-stats); the median of {args.runs} runs"
        ),
        "runs": [asdict(run) for run in runs],
    }


if __name__ == "__main__":
    sys.exit(main())
