"""The wrk script's tally of the mix, by real wrk against a server that answers a known cycle of statuses."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import wrk
from bench.tools import find_wrk, pick_cpus

pytestmark = pytest.mark.skipif(find_wrk() is None, reason="wrk is not on PATH nor in .tools/bin")

# A 503 with Retry-After is the service refusing under overload (shed); one without is a failure.
ANSWERS = (
    ("ok", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"),
    ("not_found", b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}"),
    ("shed", b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 2\r\n\r\n{}"),
    ("failed", b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}"),
)


class CyclingServer:
    """Answers each request with the next of ANSWERS, and counts what it sent."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent: Counter[str] = Counter()
        self.next = 0
        self.lock = threading.Lock()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(ConnectionError):  # wrk resets its connections when it stops
            self.answer_until_closed(connection)

    def answer_until_closed(self, connection: socket.socket) -> None:
        buffer = b""
        while chunk := connection.recv(65536):
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                buffer = buffer[body_length(head) :]  # the mix's POSTs and PATCHes carry small bodies
                with self.lock:
                    kind, response = ANSWERS[self.next % len(ANSWERS)]
                    self.next += 1
                    self.sent[kind] += 1
                connection.sendall(response)


def body_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


@pytest.fixture
def server() -> Iterator[CyclingServer]:
    running = CyclingServer()
    threading.Thread(target=running.serve, daemon=True).start()
    yield running
    running.listener.close()


def dataset(directory: Path) -> dict[str, str]:
    user_id = "0b6f2d4e-6a3c-4c59-9e53-2f6d1c3b7a10"
    files = {"ids": user_id, "hot": user_id, "emails": "a@example.com", "tokens": f"{user_id} not.a.token"}
    for name, text in files.items():
        (directory / name).write_text(text + "\n")
    return {name: str(directory / name) for name in files} | {"password": "pw"}


def test_404s_and_503s_with_retry_after_are_counted_apart_from_errors(server: CyclingServer, tmp_path: Path) -> None:
    mix = "verify:70,user_hit:20,not_found:7,update:2.5,create:0.4,login:0.1"
    load = wrk.Load("mixed", connections=1, data=dataset(tmp_path) | {"mix": mix})
    found = find_wrk()
    assert found is not None
    _, client_cpu, _ = pick_cpus()
    result = wrk.run(found, client_cpu, f"http://127.0.0.1:{server.port}", load, seconds=1)
    # One connection: at most the one request in flight when wrk stops was answered but not counted.
    assert result.requests > 100
    assert sum(server.sent.values()) - result.requests in (0, 1)
    assert abs(result.not_found - server.sent["not_found"]) <= 1
    assert abs(result.shed - server.sent["shed"]) <= 1
    assert abs(result.errors - server.sent["failed"]) <= 1
    assert result.shed > 20 and result.errors > 20
