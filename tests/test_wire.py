"""The coalescing HTTP protocol over real sockets: one send per small response, and nothing held back.

The server is uvicorn on a loopback port in an event loop of the test's own, uvloop's (as the service
runs) and the standard library's; clients are blocking sockets in a worker thread, so the loop
thread's own write() calls can be counted from /proc/thread-self/io.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from auth_service.wire import CoalescingHttpToolsProtocol
from tests.utils.serving import running

SMALL_BODY = b'{"ok":true}'
BIG = b"b" * (8 * 1024 * 1024)  # more than the kernel's buffers and the transport's high-water mark
THREAD_IO = Path("/proc/thread-self/io")
LOOPS = pytest.mark.parametrize(
    "loop_factory", [uvloop.new_event_loop, asyncio.new_event_loop], ids=["uvloop", "asyncio"]
)


def run_on(loop_factory: Callable[[], asyncio.AbstractEventLoop], scenario: Callable[[], Awaitable[Any]]) -> Any:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(scenario())  # type: ignore[arg-type]


class StreamGate:
    """Lets the streaming route send its body only once the test says so."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.big_sent = asyncio.Event()  # the big route's last send returned


async def small(send: Callable[..., Any]) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(SMALL_BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": SMALL_BODY})


def make_app(gate: StreamGate) -> Callable[..., Any]:
    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await gate.open.wait()
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            await send({"type": "http.response.body", "body": b"second"})
        elif scope["path"] == "/big":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": BIG, "more_body": True})
            await send({"type": "http.response.body", "body": BIG})  # waits while the client reads nothing
            gate.big_sent.set()
        elif scope["path"] == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            headers = [(b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        else:
            await small(send)

    return app


@asynccontextmanager
async def serving(protocol: type[asyncio.Protocol], gate: StreamGate) -> AsyncIterator[int]:
    config = uvicorn.Config(
        make_app(gate), host="127.0.0.1", port=0, http=protocol, lifespan="off", log_level="warning"
    )
    async with running(uvicorn.Server(config)) as (_, port):
        yield port


def loop_thread_writes() -> int:
    """write()-family calls this thread has made (the kernel's count)."""
    for line in THREAD_IO.read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/thread-self/io")


def get_many(port: int, count: int) -> list[bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        bodies = []
        for _ in range(count):
            connection.request("GET", "/small")
            bodies.append(connection.getresponse().read())
        return bodies
    finally:
        connection.close()


def read_until(sock: socket.socket, marker: bytes, buffer: bytes = b"") -> tuple[bytes, bytes]:
    """(everything up to and including marker, what came after it)."""
    while marker not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {marker!r}; got {buffer!r}"
        buffer += chunk
    head, _, rest = buffer.partition(marker)
    return head + marker, rest


def read_to_eof(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.mark.skipif(not THREAD_IO.exists(), reason="needs Linux's /proc/thread-self/io to count writes")
@pytest.mark.parametrize(
    ("protocol", "writes_per_response"), [(CoalescingHttpToolsProtocol, 1), (HttpToolsProtocol, 2)]
)
def test_a_small_response_leaves_in_one_write(protocol: type[asyncio.Protocol], writes_per_response: int) -> None:
    # On uvloop, which writes with writev() (counted as syscw); the standard loop's send() is not.
    # uvicorn's own protocol is measured too: it shows the count is real, and what coalescing saves.
    requests = 200

    async def scenario() -> tuple[list[bytes], int]:
        async with serving(protocol, StreamGate()) as port:
            await asyncio.to_thread(get_many, port, 5)  # connection set-up and first requests out of the count
            before = loop_thread_writes()
            bodies = await asyncio.to_thread(get_many, port, requests)
            return bodies, loop_thread_writes() - before

    bodies, writes = run_on(uvloop.new_event_loop, scenario)
    assert bodies == [SMALL_BODY] * requests
    assert writes == requests * writes_per_response


@LOOPS
def test_a_head_the_application_sends_alone_leaves_without_waiting_for_the_body(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        gate, loop = StreamGate(), asyncio.get_running_loop()

        def client(port: int) -> tuple[bytes, bytes]:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /stream HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
                head, rest = read_until(sock, b"\r\n\r\n")  # a head held for its body would time out here
                loop.call_soon_threadsafe(gate.open.set)
                return head, rest + read_to_eof(sock)

        async with serving(CoalescingHttpToolsProtocol, gate) as port:
            return await asyncio.to_thread(client, port)

    head, body = run_on(loop_factory, scenario)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n"


@LOOPS
def test_a_head_request_is_answered_and_the_connection_stays_usable(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"HEAD /small HTTP/1.1\r\nhost: test\r\n\r\n")
            head, rest = read_until(sock, b"\r\n\r\n")  # nothing follows a HEAD's head to send it along
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and rest == b""
            sock.sendall(b"GET /small HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
            return read_to_eof(sock)

    async def scenario() -> bytes:
        async with serving(CoalescingHttpToolsProtocol, StreamGate()) as port:
            return await asyncio.to_thread(client, port)

    received = run_on(loop_factory, scenario)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"\r\n\r\n" + SMALL_BODY)


@LOOPS
def test_pipelined_requests_are_answered_in_order(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 3\r\n\r\none"
                b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 3\r\n\r\ntwo"
                b"GET /small HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n"
            )
            return read_to_eof(sock)

    async def scenario() -> bytes:
        async with serving(CoalescingHttpToolsProtocol, StreamGate()) as port:
            return await asyncio.to_thread(client, port)

    received = run_on(loop_factory, scenario)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in received.split(b"HTTP/1.1 200 OK\r\n")[1:]]
    assert bodies == [b"one", b"two", SMALL_BODY]


@LOOPS
def test_expect_100_continue_is_sent_before_the_client_sends_its_body(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    def client(port: int) -> tuple[bytes, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /echo HTTP/1.1\r\nhost: test\r\ncontent-length: 5\r\n"
                b"expect: 100-continue\r\nconnection: close\r\n\r\n"
            )
            interim, rest = read_until(sock, b"\r\n\r\n")  # held until the body, this would time out
            sock.sendall(b"hello")
            return interim, rest + read_to_eof(sock)

    async def scenario() -> tuple[bytes, bytes]:
        async with serving(CoalescingHttpToolsProtocol, StreamGate()) as port:
            return await asyncio.to_thread(client, port)

    interim, final = run_on(loop_factory, scenario)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")
    assert final.endswith(b"\r\n\r\nhello")


# --- Limits on request heads (the service's own values are its settings: tests/test_slow_clients.py)

HEAD_LIMIT = 2048
LIMITED = CoalescingHttpToolsProtocol.limited(max_head_bytes=HEAD_LIMIT, head_timeout=0.5, send_timeout=0.5)


def head_of(size: int, path: str = "/small") -> bytes:
    """A GET head of exactly `size` bytes (padded with a header)."""
    start, end = f"GET {path} HTTP/1.1\r\nhost: test\r\nx-pad: ".encode(), b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def status_of(response: bytes) -> bytes:
    return response.split(b" ", 2)[1]


@LOOPS
@pytest.mark.parametrize(("size", "status"), [(HEAD_LIMIT, b"200"), (HEAD_LIMIT + 1, b"431")])
def test_a_head_is_measured_whole_in_one_read_or_across_reads(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], size: int, status: bytes
) -> None:
    def client(port: int, split: bool) -> bytes:
        head = head_of(size)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if split:  # each part under the limit, the whole over it when the size is
                sock.sendall(head[: size // 2])
                time.sleep(0.1)  # read apart
                sock.sendall(head[size // 2 :])
            else:
                sock.sendall(head)
            response = read_response(sock)
            if status_of(response) == b"200":  # the connection goes on, measured afresh
                sock.sendall(head_of(HEAD_LIMIT // 2))
                response += read_response(sock)
            return response

    async def scenario() -> list[bytes]:
        async with serving(LIMITED, StreamGate()) as port:
            return [await asyncio.to_thread(client, port, split) for split in (False, True)]

    for response in run_on(loop_factory, scenario):
        assert status_of(response) == status, response
        if status == b"431":
            assert b"\r\nconnection: close\r\n" in response
            assert b'{"error":{"code":"headers_too_large","message":"the request head is larger' in response
        else:
            assert response.count(b"HTTP/1.1 200 OK\r\n") == 2


def read_response(sock: socket.socket) -> bytes:
    """One response with a content-length."""
    head, rest = read_until(sock, b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"content-length: ")).split(b": ")[1])
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + rest


@LOOPS
def test_a_head_late_behind_a_response_under_way_is_not_cut_into_it(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # The head timeout ends while the response before it is still being written: no 408 inside
    # that response; it completes, then the connection closes.
    async def scenario() -> bytes:
        gate, loop = StreamGate(), asyncio.get_running_loop()

        def client(port: int) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\nGET /small HTTP/1.1\r\n")
                time.sleep(1.0)  # twice the head timeout
                loop.call_soon_threadsafe(gate.open.set)
                return read_to_eof(sock)

        async with serving(LIMITED, gate) as port:
            return await asyncio.to_thread(client, port)

    received = run_on(loop_factory, scenario)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"5\r\nfirst\r\n6\r\nsecond\r\n0\r\n\r\n")
    assert received.count(b"HTTP/1.1") == 1


@LOOPS
def test_the_head_timeout_does_not_run_while_the_server_holds_reading_back(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # Pipelined behind a slow response, uvicorn stops reading; a head it has only part of waits
    # through no fault of the client's, and is answered once the client sends the rest.
    async def scenario() -> bytes:
        gate, loop = StreamGate(), asyncio.get_running_loop()

        def client(port: int) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(
                    b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n"
                    b"GET /small HTTP/1.1\r\nhost: test\r\n\r\n"
                    b"GET /small HTTP/1.1\r\n"
                )
                time.sleep(1.0)  # twice the head timeout, with reading paused
                loop.call_soon_threadsafe(gate.open.set)
                time.sleep(0.1)
                sock.sendall(b"host: test\r\nconnection: close\r\n\r\n")
                return read_to_eof(sock)

        async with serving(LIMITED, gate) as port:
            return await asyncio.to_thread(client, port)

    received = run_on(loop_factory, scenario)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 3, received
    assert received.endswith(b"\r\n\r\n" + SMALL_BODY)


@LOOPS
def test_a_client_that_reads_nothing_is_dropped_and_frees_the_request_it_blocks(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    # Its response waits on the client: the request writing it (which holds an in-flight slot in
    # the service) would wait for ever.
    async def scenario() -> int:
        gate = StreamGate()

        def client(port: int) -> int:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /big HTTP/1.1\r\nhost: test\r\n\r\n")
                # The request's last send returns (into a closed connection) once the client is dropped.
                asyncio.run_coroutine_threadsafe(gate.big_sent.wait(), loop).result(timeout=5)
                received = 0
                try:
                    while chunk := sock.recv(65536):
                        received += len(chunk)
                except ConnectionResetError:
                    pass
                return received

        loop = asyncio.get_running_loop()
        async with serving(LIMITED, gate) as port:
            return await asyncio.to_thread(client, port)

    received = run_on(loop_factory, scenario)
    assert received < 2 * len(BIG)  # dropped, not served
