"""`make load` and `make load-ui`: Locust on this machine, against the service on 127.0.0.1.

    python -m loadtests.local [--ui] [--workers N] [--timeout S] [locust options...]

Against the service that answers /readyz at LOCUST_HOST (default http://127.0.0.1:8000). With none
there, it starts one as `make run` does (`auth-service serve --migrate` on the embedded PostgreSQL
under .data/, or on AUTH_DATABASE_URL), with the per-client limits lifted, and stops it afterwards.
Locust runs as a master and one worker per spare core (`--processes`): the service started here
gets the first core, Locust the others; the master only gathers statistics and shares a worker's
core. Reports go to a dated folder of LOADTEST_RESULTS_DIR (default loadtests/results/). Every
process listens on 127.0.0.1 only, and the run is stopped after --timeout seconds whatever it does.
Standard library only: it starts Locust and the service as processes of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from loadtests.service_client import ServiceClient

REPO_ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"
DEFAULT_HOST = "http://127.0.0.1:8000"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
UI_PORT = 8089
# Locust's own default; one of its ports is taken by another run: --master-port moves both.
MASTER_PORT = 5557
# A load test from 127.0.0.1 is one client to the service, where production's are many behind the
# ingress: its share of the hashing queue and its signups a minute would be what is measured. The
# same settings as the bench's (bench/servers.py ONE_CLIENT_SETTINGS).
ONE_CLIENT_SETTINGS = {"AUTH_HASH_CLIENT_SHARE": "1.0", "AUTH_SIGNUPS_PER_CLIENT": str(10**9)}
SERVICE_READY_SECONDS = 180.0  # the embedded PostgreSQL's first start initialises a cluster
STOP_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class Plan:
    """Where each process runs: the CPUs of the service started here (none: it was running) and of Locust."""

    service_cpus: tuple[int, ...]
    locust_cpus: tuple[int, ...]
    workers: int


def plan(cpus: tuple[int, ...], starting_service: bool, workers: int | None) -> Plan:
    """One worker per spare core: all cores but the first when the service is started here on it."""
    if not starting_service or len(cpus) < 2:
        return Plan((), (), workers or max(1, len(cpus) - 1))
    return Plan(cpus[:1], cpus[1:], workers or len(cpus) - 1)


def pinned(cpus: tuple[int, ...], command: list[str]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus)), *command] if cpus else command


def service_env(host: str) -> dict[str, str]:
    """`make run`'s service on the host's port, its per-client limits lifted, its admin port any free one."""
    env = os.environ | ONE_CLIENT_SETTINGS | {"AUTH_HOST": "127.0.0.1", "AUTH_PORT": str(urlsplit(host).port or 80)}
    env.setdefault("AUTH_DATA_DIR", str(REPO_ROOT / ".data"))
    env.setdefault("AUTH_ADMIN_PORT", "0")
    # No load balancer to drain from: stop at once.
    env.setdefault("AUTH_DRAIN_DELAY_SECONDS", "0")
    return env


@contextlib.contextmanager
def service(host: str, cpus: tuple[int, ...], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`auth-service serve --migrate` until /readyz answers; SIGTERM (then SIGKILL) afterwards."""
    command = pinned(cpus, [str(Path(sys.executable).with_name("auth-service")), "serve", "--migrate"])
    with log.open("ab") as output:
        process = subprocess.Popen(  # noqa: S603 - our own command
            command,
            env=service_env(host),
            cwd=REPO_ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_ready(host, process, log)
        yield process
    finally:
        stop(process, signal.SIGTERM)


def _wait_ready(host: str, process: subprocess.Popen[bytes], log: Path) -> None:
    client, deadline = ServiceClient(host), time.monotonic() + SERVICE_READY_SECONDS
    while not client.is_ready():
        if process.poll() is not None:
            raise SystemExit(f"load: the service exited with {process.returncode}; its log: {log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"load: the service was not ready within {SERVICE_READY_SECONDS:.0f} s; its log: {log}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], sig: signal.Signals) -> int:
    """Signal the process's group, give it STOP_GRACE_SECONDS to finish, then kill the group; its exit code.

    The group, not the process: Locust's --processes forks its workers, and a worker left behind by a
    killed master keeps running and keeps the output pipes it inherited open."""
    if process.poll() is None:
        _signal_group(process, sig)
    try:
        return process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        return process.wait()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def locust_command(host: str, args: argparse.Namespace, run_plan: Plan, results: Path, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", host]
    command += ["--processes", str(run_plan.workers), "--master-bind-host", "127.0.0.1"]
    command += ["--master-bind-port", str(args.master_port), "--master-port", str(args.master_port)]
    command += ["--csv", str(results / "locust"), "--html", str(results / "report.html")]
    if args.ui:
        command += ["--web-host", "127.0.0.1", "--web-port", str(args.web_port), "--class-picker"]
    else:
        command += ["--headless", "--only-summary"]
    return pinned(run_plan.locust_cpus, command + extra)


def run_locust(command: list[str], timeout: float) -> int:
    """Locust until it exits, or SIGINT (it then stops and writes its reports) after `timeout` seconds."""
    # A session of its own, so that stop() reaches its workers too; Ctrl-C comes here and is passed on.
    process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True)  # noqa: S603 - our own command
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"load: stopping Locust after {timeout:.0f} s (--timeout)", file=sys.stderr)
        return stop(process, signal.SIGINT)
    except KeyboardInterrupt:
        # Ctrl-C: Locust stops on SIGINT and writes its reports.
        return stop(process, signal.SIGINT)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ui", action="store_true", help=f"the web UI on 127.0.0.1:{UI_PORT} instead of a headless run"
    )
    parser.add_argument("--workers", type=int, help="Locust workers (default: one per spare core)")
    parser.add_argument("--timeout", type=float, help="stop Locust after this many seconds (default 600, UI 1800)")
    parser.add_argument("--web-port", type=int, default=UI_PORT)
    parser.add_argument("--master-port", type=int, default=MASTER_PORT)
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> int:
    args, extra = parse(argv)
    host = os.environ.get("LOCUST_HOST", DEFAULT_HOST).rstrip("/")
    if urlsplit(host).hostname not in LOOPBACK:
        raise SystemExit(f"load: {host} is not on this machine; run locust -f {LOCUSTFILE} there yourself")
    results = Path(os.environ.get("LOADTEST_RESULTS_DIR", REPO_ROOT / "loadtests" / "results"))
    results /= time.strftime("%Y%m%d-%H%M%S-") + ("ui" if args.ui else "headless")
    results.mkdir(parents=True, exist_ok=True)
    running = ServiceClient(host).is_ready()
    run_plan = plan(tuple(sorted(os.sched_getaffinity(0))), not running, args.workers)
    timeout = args.timeout or (1800.0 if args.ui else 600.0)
    print(f"load: reports in {results}", file=sys.stderr)
    if running:
        print(f"load: the service at {host} is up; its per-client limits stay: its 429s count as shed", file=sys.stderr)
        return run_locust(locust_command(host, args, run_plan, results, extra), timeout)
    lifted = " ".join(f"{name}={value}" for name, value in ONE_CLIENT_SETTINGS.items())
    database = "AUTH_DATABASE_URL" if os.environ.get("AUTH_DATABASE_URL") else "the embedded PostgreSQL under .data/"
    print(
        f"load: no service at {host}; starting one as `make run` does, on {database}, on CPU "
        f"{','.join(map(str, run_plan.service_cpus)) or 'any'}, with the per-client limits lifted "
        f"(a load test from 127.0.0.1 is one client): {lifted}",
        file=sys.stderr,
    )
    with service(host, run_plan.service_cpus, results / "service.log"):
        return run_locust(locust_command(host, args, run_plan, results, extra), timeout)


if __name__ == "__main__":
    sys.exit(main())
