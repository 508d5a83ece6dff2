"""Runs the service's image as a cluster would, against the machine's PostgreSQL, and checks it.

    CONTAINERS_CONF=podman/containers.conf .venv/bin/python podman/image_test.py IMAGE

Hardened as in the chart: read-only root filesystem with a tmpfs at /tmp, uid 10001, no
capabilities, no-new-privileges. In a fresh database: `migrate`, then `serve` on a published port,
a token round trip through it, the process's identity from /proc/1/status, and a `podman stop` that
must end with exit code 0 well within the grace period. Also: the image holds no copy of the
build's CA bundle, and the image unconfigured refuses to start. The database and containers are
removed however it ends. PGHOST, PGPORT and PGUSER name the server (default postgres@127.0.0.1:5432,
trust authentication).
"""

# It runs podman with commands it builds itself (S603, S607); /tmp is the container's tmpfs (S108).
# ruff: noqa: S108, S603, S607
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

PGHOST = os.environ.get("PGHOST", "127.0.0.1")
PGPORT = int(os.environ.get("PGPORT", "5432"))
PGUSER = os.environ.get("PGUSER", "postgres")
CA_BUNDLE = Path(os.environ.get("CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
# podman 4.3 has no pasta, and its bridge reaches the host only on addresses PostgreSQL does not
# listen on (it listens on loopback). slirp4netns with allow_host_loopback maps its gateway,
# 10.0.2.2, to the host's 127.0.0.1 inside the container's own network stack; the published port
# goes through slirp4netns as well. host.containers.internal is pointed there.
NETWORK = ["--network", "slirp4netns:allow_host_loopback=true", "--add-host", "host.containers.internal:10.0.2.2"]
HARDENING = [
    "--read-only",
    "--tmpfs",
    "/tmp:rw,nosuid,nodev,size=64m",
    "--user",
    "10001:10001",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
]
DRAIN_DELAY_SECONDS = 0.5
STOP_GRACE_SECONDS = 10
# Drain, closing the pools, and podman's own bookkeeping: far below the grace period.
STOP_BUDGET_SECONDS = DRAIN_DELAY_SECONDS + 4


class Failed(Exception):
    """A check that did not hold."""


def logs(container: str, tail: int = 40) -> str:
    """The container's stdout and stderr (podman logs keeps them apart; the service logs to stderr)."""
    result = subprocess.run(
        ["podman", "logs", "--tail", str(tail), container],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=20,
        check=False,
    )
    return result.stdout


def step(message: str) -> None:
    print(f"image-test: {message}", flush=True)


def podman(*args: str, timeout: float = 60, check: bool = True, env: dict[str, str] | None = None) -> str:
    """podman's stdout; on failure (with check) its stderr in the exception."""
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if check and result.returncode != 0:
        raise Failed(f"podman {args[0]} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


async def _sql(database: str, *statements: str) -> list[Any]:
    conn = await asyncpg.connect(host=PGHOST, port=PGPORT, user=PGUSER, database=database, timeout=5)
    try:
        return [await conn.fetch(statement) for statement in statements]
    finally:
        await conn.close()


def sql(database: str, *statements: str) -> list[Any]:
    return asyncio.run(asyncio.wait_for(_sql(database, *statements), timeout=20))


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    name = f"auth_image_test_{os.getpid()}_{secrets.token_hex(3)}"
    sql("postgres", f'CREATE DATABASE "{name}"')
    step(f"database {name} created on {PGHOST}:{PGPORT}")
    try:
        yield name
    finally:
        sql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        step(f"database {name} dropped")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    # Only the http://127.0.0.1 URL of the published port.
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, json.loads(raw) if raw else None


def expect(what: str, status: int, wanted: int, body: Any) -> None:
    if status != wanted:
        raise Failed(f"{what}: HTTP {status}, expected {wanted}: {body}")
    step(f"{what}: {status}")


def wait_ready(base: str, container: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Status}}", container).strip()
        if state != "running":
            raise Failed(f"the container is {state} before it was ready")
        with contextlib.suppress(OSError):
            if http("GET", f"{base}/readyz")[0] == 200:
                return
        time.sleep(0.25)
    raise Failed(f"/readyz not 200 within {timeout:.0f} s")


def check_refuses_unconfigured(image: str) -> None:
    """With none of the settings production needs, the image exits at once rather than sign with the dev key."""
    result = subprocess.run(
        ["podman", "run", "--rm", *HARDENING, "--network", "none", image],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 0 or "is a placeholder; set AUTH_TOKEN_KEYS" not in result.stderr:
        raise Failed(f"unconfigured, the image exited {result.returncode}: {result.stderr.strip()[-500:]}")
    step(f"unconfigured, it refuses to start (exit {result.returncode}: the development key is a placeholder)")


def check_no_ca_bundle(image: str) -> None:
    """The build's CA bundle (a build secret) is in no file of the image: not whole, not its extra CAs."""
    if not CA_BUNDLE.is_file():
        step(f"no {CA_BUNDLE} on this host: nothing to look for")
        return
    bundle = CA_BUNDLE.read_bytes()
    digest = hashlib.sha256(bundle).digest()
    root = Path(podman("image", "mount", image).strip())
    try:
        image_bundle = (root / "etc/ssl/certs/ca-certificates.crt").read_bytes()
        # The host's certificates that the base's own store lacks (an intercepting proxy's CA).
        extra = [cert for cert in _certificates(bundle) if cert not in image_bundle]
        markers = [cert.splitlines()[1] for cert in extra]
        for path in root.rglob("*"):
            if not path.is_file() or path.is_symlink():
                continue
            content = path.read_bytes()
            if len(content) == len(bundle) and hashlib.sha256(content).digest() == digest:
                raise Failed(f"{path.relative_to(root)} is a copy of {CA_BUNDLE}")
            for marker in markers:
                if marker in content:
                    raise Failed(f"{path.relative_to(root)} holds a certificate of {CA_BUNDLE} the base lacks")
    finally:
        podman("image", "unmount", image, check=False)
    step(f"no copy of {CA_BUNDLE} in the image, nor of the {len(extra)} certificate(s) the base's store lacks")


def _certificates(pem: bytes) -> list[bytes]:
    end = b"-----END CERTIFICATE-----"
    return [part.strip() + b"\n" + end for part in pem.split(end) if b"BEGIN CERTIFICATE" in part]


def check_process(container: str) -> None:
    """PID 1 is the Python server itself, as uid 10001, with no capabilities and no_new_privs."""
    cmdline = podman("exec", container, "cat", "/proc/1/cmdline").split("\0")
    lines = podman("exec", container, "cat", "/proc/1/status").splitlines()
    status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    interpreter = Path(cmdline[0]).name
    if not interpreter.startswith("python") or not cmdline[1].endswith("/auth-service"):
        raise Failed(f"PID 1 is {cmdline}, not the python server")
    if status["Uid"].split() != ["10001"] * 4 or status["Gid"].split() != ["10001"] * 4:
        raise Failed(f"PID 1 runs as uid {status['Uid']} gid {status['Gid']}")
    if int(status["CapEff"], 16) != 0 or int(status["CapPrm"], 16) != 0:
        raise Failed(f"PID 1 has capabilities: CapEff {status['CapEff']} CapPrm {status['CapPrm']}")
    if status["NoNewPrivs"].strip() != "1":
        raise Failed(f"NoNewPrivs is {status['NoNewPrivs']}")
    step(f"PID 1: {' '.join(cmdline).strip()}; uid/gid 10001, CapEff 0, NoNewPrivs 1")
    # As root (which owns /app, still without capabilities): only a read-only mount can refuse it.
    refused = _exec(container, "touch", "/app/written", user="0")
    if refused.returncode == 0 or "Read-only file system" not in refused.stderr:
        raise Failed(f"writing /app as root: exit {refused.returncode} {refused.stderr.strip()}")
    if _exec(container, "touch", "/tmp/written").returncode != 0:
        raise Failed("/tmp is not writable")
    step("root filesystem read-only (even to root), /tmp writable")


def _exec(container: str, *command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    options = ["--user", user] if user else []
    return subprocess.run(
        ["podman", "exec", *options, container, *command], capture_output=True, text=True, timeout=20, check=False
    )


def round_trip(base: str) -> None:
    email, password = f"image-test-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(16)
    status, user = http("POST", f"{base}/v1/users", {"email": email, "name": "Image Test", "password": password})
    expect("POST /v1/users", status, 201, user)
    status, token = http("POST", f"{base}/v1/auth/token", {"email": email, "password": password})
    expect("POST /v1/auth/token", status, 200, token)
    status, claims = http("GET", f"{base}/v1/auth/verify", token=token["access_token"])
    expect("GET /v1/auth/verify", status, 200, claims)
    if claims.get("sub") != user["id"]:
        raise Failed(f"the token's subject {claims.get('sub')} is not the user {user['id']}")
    status, body = http("GET", f"{base}/readyz")
    expect("GET /readyz", status, 200, body)


def stop(container: str) -> None:
    """SIGTERM reaches the server (PID 1); it drains and exits 0 well within the grace period."""
    started = time.monotonic()
    podman("stop", "--time", str(STOP_GRACE_SECONDS), container, timeout=STOP_GRACE_SECONDS + 30)
    elapsed = time.monotonic() - started
    code = int(podman("inspect", "--format", "{{.State.ExitCode}}", container).strip())
    output = logs(container)
    if code != 0:
        raise Failed(f"exit code {code} after podman stop (SIGKILL is 137); logs:\n{output}")
    if elapsed > STOP_BUDGET_SECONDS:
        raise Failed(f"podman stop took {elapsed:.1f} s, over {STOP_BUDGET_SECONDS:.1f} s of {STOP_GRACE_SECONDS} s")
    if "draining" not in output:
        raise Failed(f"no drain in the logs:\n{output}")
    step(f"podman stop: exit code 0 in {elapsed:.1f} s (drain {DRAIN_DELAY_SECONDS} s, grace {STOP_GRACE_SECONDS} s)")


def main(image: str) -> None:
    started = time.monotonic()
    check_refuses_unconfigured(image)
    check_no_ca_bundle(image)
    name = f"auth-image-test-{os.getpid()}"
    with fresh_database() as database:
        # Secrets through the environment of podman (-e NAME), not its command line.
        env = dict(
            os.environ,
            AUTH_ENVIRONMENT="production",
            AUTH_DATABASE_URL=f"postgresql://{PGUSER}@host.containers.internal:{PGPORT}/{database}",
            AUTH_TOKEN_KEYS=json.dumps({"image-test-1": secrets.token_urlsafe(48)}),
            AUTH_TOKEN_ACTIVE_KID="image-test-1",  # noqa: S106 (a key id, not a secret)
            AUTH_DRAIN_DELAY_SECONDS=str(DRAIN_DELAY_SECONDS),
            AUTH_GRACEFUL_TIMEOUT_SECONDS="3",
        )
        settings = [arg for key in env if key.startswith("AUTH_") for arg in ("-e", key)]
        run = ["run", *HARDENING, *NETWORK, *settings]
        try:
            podman(*run, "--rm", "--name", f"{name}-migrate", image, "migrate", env=env, timeout=90)
            tables = sql(database, "SELECT version_num FROM alembic_version")[0]
            step(f"migrate in the container: {database} at revision {tables[0]['version_num']}")
            port = free_port()
            podman(*run, "-d", "--name", name, "--publish", f"127.0.0.1:{port}:8000", image, env=env)
            base = f"http://127.0.0.1:{port}"
            wait_ready(base, name)
            step(f"serving on {base} (published port) after {time.monotonic() - started:.1f} s")
            round_trip(base)
            check_process(name)
            stop(name)
        except BaseException:
            print(logs(name), file=sys.stderr)
            raise
        finally:
            for container in (name, f"{name}-migrate"):
                podman("rm", "--force", "--ignore", "--time", "0", container, check=False, timeout=60)
    step(f"passed in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    # A CI timeout or `kill` still drops the database and removes the containers (the finally blocks).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        main(sys.argv[1])
    except (Failed, subprocess.TimeoutExpired, OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"image-test: FAILED: {exc}") from None
