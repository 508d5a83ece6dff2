"""The servers under test: each ONE process pinned to one CPU, started, waited for and stopped here."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.config import REPO_ROOT
from bench.ports import free_port, free_ports
from bench.tools import pinned

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
# Variables of the shell that would change what is measured: the servers get only the ones given here.
SCRUBBED_PREFIXES = ("AUTH_", "OTEL_")
# Overridable to measure another implementation with the same command line.
BASELINE_MODULE = os.environ.get("AUTH_BENCH_BASELINE_MODULE", "bench.baseline")
CEILING_MODULE = os.environ.get("AUTH_BENCH_CEILING_MODULE", "bench.ceiling")


class ServerFailed(RuntimeError):
    """A server did not start or died; the message ends with its log."""


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    admin_url: str | None = None

    @property
    def pid(self) -> int:
        """The process that serves: the one started, or its one worker (granian serves from a child)."""
        children = child_pids(self.process.pid)
        return children[0] if len(children) == 1 else self.process.pid


def child_pids(pid: int) -> list[int]:
    """The children of every thread of a process (Linux's /proc/PID/task/TID/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread has exited
    return found


def signing_keys() -> tuple[str, str]:
    """(AUTH_TOKEN_KEYS, AUTH_TOKEN_ACTIVE_KID): a fresh HS256 key for this run, shared by every server."""
    return json.dumps({"bench-1": secrets.token_urlsafe(48)}), "bench-1"


def common_env(database_url: str, keys: tuple[str, str], batch_token: str) -> dict[str, str]:
    """What the service and the baseline both read: the environment, the database and the secrets."""
    return {
        "AUTH_ENVIRONMENT": "production",
        "AUTH_DATABASE_URL": database_url,
        "AUTH_TOKEN_KEYS": keys[0],
        "AUTH_TOKEN_ACTIVE_KID": keys[1],
        # The data is imported through the batch endpoint, which production opens to this token only.
        "AUTH_BATCH_TOKEN": batch_token,
        "AUTH_LOG_LEVEL": "WARNING",
        # The process has one core: one argon2 thread (the default is one per CPU of the machine).
        "AUTH_HASH_WORKERS": "1",
    }


# wrk is one client address, where a real deployment's clients are many behind the ingress: the
# per-client limits (a client's share of the hashing queue, its signups a minute) would otherwise
# measure the limits instead of the service. The counters are still read and written on every signup
# and login, so what they cost stays in the figures.
ONE_CLIENT_SETTINGS = {
    "AUTH_HASH_CLIENT_SHARE": "1.0",
    "AUTH_SIGNUPS_PER_CLIENT": str(10**9),
}


def process_env(settings: dict[str, str]) -> dict[str, str]:
    """The harness's environment less any AUTH_* and OTEL_* of the shell, plus these settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(SCRUBBED_PREFIXES)}
    return env | settings


def service_command() -> list[str]:
    return [str(Path(sys.executable).with_name("auth-service")), "serve"]


def baseline_command(port: int) -> list[str]:
    return [sys.executable, "-m", BASELINE_MODULE, "--host", "127.0.0.1", "--port", str(port)]


def ceiling_command(port: int, responses: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        CEILING_MODULE,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--responses",
        str(responses),
    ]


def service_settings(env: dict[str, str], port: int, admin_port: int) -> dict[str, str]:
    return env | {
        "AUTH_PORT": str(port),
        "AUTH_ADMIN_PORT": str(admin_port),
        # Shutdown only: the harness stops the server between runs, with no load balancer to drain.
        "AUTH_DRAIN_DELAY_SECONDS": "0",
    }


@contextlib.contextmanager
def running_service(cpu: int, env: dict[str, str], log: Path) -> Iterator[Server]:
    """`auth-service serve` with these settings, a free port and admin port; stopped afterwards."""
    port, admin_port = free_ports(2)
    settings = service_settings(env, port, admin_port)
    with running("service", pinned(cpu, service_command()), settings, port, log) as server:
        server.admin_url = f"http://127.0.0.1:{admin_port}"
        yield server


@contextlib.contextmanager
def running_replicas(cpus: list[int], env: dict[str, str], logs: Path) -> Iterator[list[Server]]:
    """One `auth-service serve` per CPU, all on one port with SO_REUSEPORT (the kernel spreads the
    connections), each pinned to its CPU with an admin port of its own; stopped afterwards."""
    port, *admin_ports = free_ports(1 + len(cpus))
    with contextlib.ExitStack() as started:
        replicas = []
        for index, (cpu, admin_port) in enumerate(zip(cpus, admin_ports, strict=True)):
            settings = service_settings(env, port, admin_port) | {"AUTH_REUSE_PORT": "true"}
            name, admin_url = f"replica-{index + 1}", f"http://127.0.0.1:{admin_port}"
            command = pinned(cpu, service_command())
            # Ready when its own admin port answers: the shared port may be answered by another replica.
            replica = started.enter_context(running(name, command, settings, port, logs / f"{name}.log", admin_url))
            replica.admin_url = admin_url
            replicas.append(replica)
        yield replicas


@contextlib.contextmanager
def running_baseline(cpu: int, env: dict[str, str], log: Path) -> Iterator[Server]:
    port = free_port()
    with running("baseline", pinned(cpu, baseline_command(port)), env, port, log) as server:
        yield server


@contextlib.contextmanager
def running_ceiling(cpu: int, responses: Path, log: Path) -> Iterator[Server]:
    port = free_port()
    with running("ceiling", pinned(cpu, ceiling_command(port, responses)), {}, port, log) as server:
        yield server


@contextlib.contextmanager
def running(
    name: str, command: list[str], settings: dict[str, str], port: int, log: Path, ready_url: str | None = None
) -> Iterator[Server]:
    """Start the command, wait until it answers HTTP on the port (or at `ready_url`), and stop it afterwards."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env=process_env(settings), cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log)
    started = time.monotonic()
    try:
        wait_until_ready(server, ready_url)
        print(f"bench: {name} ready in {time.monotonic() - started:.1f} s (log: {log})", file=sys.stderr, flush=True)
        yield server
    finally:
        started = time.monotonic()
        stop(server)
        print(f"bench: {name} stopped in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


def wait_until_ready(server: Server, url: str | None = None) -> None:
    """Any HTTP answer to GET /healthz (a 404 from the ceiling too) means the server is serving."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerFailed(f"{server.name} exited with {server.process.returncode}{log_tail(server.log)}")
        with contextlib.suppress(httpx.TransportError):
            httpx.get(f"{url or server.url}/healthz", timeout=1.0)
            return
        time.sleep(0.05)
    raise ServerFailed(f"{server.name} did not answer within {READY_TIMEOUT_SECONDS:.0f}s{log_tail(server.log)}")


def check_alive(server: Server) -> None:
    if server.process.poll() is not None:
        raise ServerFailed(f"{server.name} died with {server.process.returncode}{log_tail(server.log)}")


def stop(server: Server) -> None:
    """SIGTERM (graceful in uvicorn), then SIGKILL if it does not finish in time."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def log_tail(log: Path, lines: int = 20) -> str:
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"; the end of {log}:\n" + "\n".join(tail) if tail else f"; {log} is empty"
