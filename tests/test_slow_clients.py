"""Slow and oversized clients against the running service, over real sockets.

A head that never ends, a body that never comes, a header of megabytes, an idle connection kept
open by a trickle of bytes: each is answered (408, 431) or closed within its limit, and none holds
a slot of the in-flight bound that other clients need. The limits are short here (settings); the
times each took are logged, not asserted closely: the machine is shared.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.utils.app import RunningApp, create_user, serve
from tests.utils.waiting import wait_until

log = logging.getLogger(__name__)

SHORT = 1.0  # seconds: every timeout under test
# What a socket waits for an answer before the test gives up: far beyond SHORT, short of hanging.
PATIENCE = 10.0
SLOW_SOCKETS = 50
SLOTS = 8


def port_of(app: RunningApp) -> int:
    return httpx.URL(app.url).port or 80


@asynccontextmanager
async def serving(settings_for: Any, **overrides: Any) -> AsyncIterator[RunningApp]:
    limits = {
        "http_header_timeout_seconds": SHORT,
        "http_body_timeout_seconds": SHORT,
        "http_keep_alive_timeout_seconds": SHORT,
    }
    async with serve(settings_for(**(limits | overrides))) as app:
        yield app


async def read_to_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded by PATIENCE)."""
    return await asyncio.wait_for(reader.read(), PATIENCE)


async def answer_to(app: RunningApp, request: bytes) -> bytes:
    """What the server sends on a new connection to these bytes, until it closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))
    try:
        writer.write(request)
        return await read_to_close(reader)
    finally:
        writer.close()


async def read_one(reader: asyncio.StreamReader) -> bytes:
    """One response with a content-length, the connection left as it is."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), PATIENCE)
    _, headers, _ = parsed(head, check_length=False)
    return head + await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), PATIENCE)


def parsed(response: bytes, *, check_length: bool = True) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body) of one HTTP/1.1 response with a content-length."""
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    if not check_length:
        return int(status_line.split(" ")[1]), headers, None
    assert len(body) == int(headers["content-length"]), response
    return int(status_line.split(" ")[1]), headers, orjson.loads(body)


def assert_refused(response: bytes, status: int, code: str) -> None:
    """This status, in the error shape, with the connection closed after it."""
    actual, headers, body = parsed(response)
    assert actual == status, response
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body


def rejected(app: RunningApp, reason: str) -> float:
    value = app.services.telemetry.metrics.registry.get_sample_value(
        "http_server_requests_rejected_total", {"reason": reason}
    )
    return value or 0.0


async def test_bodies_that_do_not_arrive_hold_no_slot_and_get_408(settings_for: Any) -> None:
    async with serving(settings_for, max_in_flight=SLOTS) as app:
        slow = [await asyncio.open_connection("127.0.0.1", port_of(app)) for _ in range(SLOW_SOCKETS)]
        started = time.monotonic()
        for _, writer in slow:
            writer.write(
                b"POST /v1/users HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                b"content-length: 100\r\n\r\n"  # and then nothing
            )
        tasks = app.server.server_state.tasks
        # Every head parsed: each request waits for its body, or (counted in flight) was refused.
        await wait_until(lambda: len(tasks) + rejected(app, "overloaded") >= SLOW_SOCKETS, 5, "the heads are read")
        user = await create_user(app.client)  # a POST: 201, not 503
        fetched = await app.client.get(f"/v1/users/{user['id']}")
        login = await app.client.post("/v1/auth/token", json={"email": user["email"], "password": user["password"]})
        answers = await asyncio.gather(*(read_to_close(reader) for reader, _ in slow))
        waited = time.monotonic() - started
        for _, writer in slow:
            writer.close()
    assert fetched.status_code == 200, fetched.text
    assert login.status_code == 200, login.text
    for answer in answers:
        assert_refused(answer, 408, "request_timeout")
    log.info("%d bodies that never came: 408 to all within %.2f s (timeout %.1f s)", SLOW_SOCKETS, waited, SHORT)


async def test_a_body_that_stops_halfway_gets_408(settings_for: Any) -> None:
    async with serving(settings_for) as app:
        answer = await answer_to(
            app,
            b"POST /v1/auth/token HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
            b'content-length: 60\r\n\r\n{"email": "someone@example.com", ',
        )
    assert_refused(answer, 408, "request_timeout")


async def test_a_client_that_asks_to_continue_and_sends_nothing_gets_408(settings_for: Any) -> None:
    async with serving(settings_for) as app:
        answer = await answer_to(
            app,
            b"POST /v1/users HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
            b"content-length: 100\r\nexpect: 100-continue\r\n\r\n",
        )
    interim, _, final = answer.partition(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue"
    assert_refused(final, 408, "request_timeout")


async def test_bodies_left_unfinished_are_bounded_in_bytes_not_in_slots(settings_for: Any) -> None:
    half = b"x" * 1500
    async with serving(settings_for, http_max_arriving_body_bytes=4096, http_body_timeout_seconds=PATIENCE) as app:
        partial = []
        for _ in range(3):  # 3 x 1,500 bytes held: beyond 4,096, the third is refused
            reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))
            writer.write(b"POST /v1/users HTTP/1.1\r\nhost: test\r\ncontent-length: 3000\r\n\r\n" + half)
            partial.append((reader, writer))
        refused = await read_one(partial[2][0])
        created = await create_user(app.client)  # a whole body needs no room in the budget
        for _, writer in partial:
            writer.close()
    status, headers, body = parsed(refused)
    assert (status, body["error"]["code"], headers["retry-after"]) == (503, "overloaded", "1")
    assert created["email"]


async def test_a_head_that_never_ends_gets_408(settings_for: Any) -> None:
    async with serving(settings_for) as app:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: test\r\n")
        answer = await read_to_close(reader)
        waited = time.monotonic() - started
        writer.close()
    assert_refused(answer, 408, "request_timeout")
    log.info("an unfinished head: 408 after %.2f s (timeout %.1f s)", waited, SHORT)


async def test_a_head_trickled_a_byte_at_a_time_gets_408_within_the_head_timeout(settings_for: Any) -> None:
    async with serving(settings_for) as app:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))
        started = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\n")

        async def trickle() -> None:
            for _ in range(int(PATIENCE / 0.1)):  # each byte in time, the head never whole
                await asyncio.sleep(0.1)
                writer.write(b"x")

        trickling = asyncio.create_task(trickle())
        answer = await read_to_close(reader)
        waited = time.monotonic() - started
        trickling.cancel()
        writer.close()
    assert_refused(answer, 408, "request_timeout")
    assert waited < PATIENCE / 2, waited  # the bytes did not restart the clock
    log.info("a slowloris head: 408 after %.2f s (timeout %.1f s)", waited, SHORT)


async def test_a_connection_that_sends_nothing_is_closed(settings_for: Any) -> None:
    async with serving(settings_for) as app:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))
        started = time.monotonic()
        received = await read_to_close(reader)
        waited = time.monotonic() - started
        writer.close()
    assert received == b""  # closed without a word: there was no request to answer
    log.info("a silent connection: closed after %.2f s (timeout %.1f s)", waited, SHORT)


@pytest.mark.parametrize("trickle", [b"", b"\r\n"], ids=["silent", "crlf"])
async def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    settings_for: Any, trickle: bytes
) -> None:
    # Answered through FastAPI (a POST), so uvicorn's own keep-alive timer runs, from the setting;
    # empty lines between requests are allowed, and must not keep an idle connection open.
    async with serving(settings_for, http_header_timeout_seconds=PATIENCE) as app:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))
        writer.write(b"POST /v1/auth/token HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n")
        writer.write(b"content-length: 2\r\n\r\n{}")
        answer = await read_one(reader)
        answered = time.monotonic()

        async def keep_trickling() -> None:
            for _ in range(int(PATIENCE / 0.2)):
                await asyncio.sleep(0.2)
                if trickle:
                    writer.write(trickle)

        trickling = asyncio.create_task(keep_trickling())
        rest = await read_to_close(reader)
        idle = time.monotonic() - answered
        trickling.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 422 ")
    assert rest == b""
    assert SHORT * 0.9 <= idle < PATIENCE / 2, idle  # the setting (1 s), not uvicorn's default (5 s) or never
    log.info("an idle connection (%s): closed %.2f s after its answer", trickle or "silent", idle)


async def test_an_answered_request_whose_body_trickles_does_not_keep_its_connection(settings_for: Any) -> None:
    # A GET's body is not read; the answer goes out at once, and the body's bytes, which uvicorn
    # reads and drops, stopped its keep-alive timer on every arrival.
    async with serving(settings_for) as app:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(app))
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: test\r\ncontent-length: 1000000\r\n\r\n")
        answer = await read_one(reader)

        async def keep_trickling() -> None:
            for _ in range(int(PATIENCE / 0.2)):
                await asyncio.sleep(0.2)
                writer.write(b"x" * 100)

        trickling = asyncio.create_task(keep_trickling())
        rest = await read_to_close(reader)
        trickling.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert rest == b""


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def send_head(port: int, start: bytes, size: int) -> tuple[int, bytes, int]:
    """Send `start` then `size` bytes of header value, 64 KiB at a time, until the server stops it.

    (bytes of the value sent, what the server answered, the resident set once sending ended). A
    blocking socket, read only once it can send no more: what the server wrote before closing is
    still there to read (an asyncio stream drops it when the close is a reset).
    """
    chunk = b"a" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        try:
            sock.sendall(start)
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # reset or broken pipe: closed by the server
            pass
        resident = resident_bytes()
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except OSError:
            pass
    return sent, received, resident


HUGE_HEAD = b"GET /healthz HTTP/1.1\r\nhost: test\r\nx-huge: "


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the resident set from /proc")
async def test_a_huge_header_is_431_and_never_held(settings_for: Any) -> None:
    size = 20 * 1024 * 1024
    async with serving(settings_for, http_header_timeout_seconds=PATIENCE) as app:
        before = resident_bytes()
        sent, answer, resident = await asyncio.to_thread(send_head, port_of(app), HUGE_HEAD, size)
        assert (await app.client.get("/healthz")).status_code == 200  # and the server still serves
    grown = resident - before
    assert_refused(answer, 431, "headers_too_large")
    assert sent < size / 2, sent  # closed early: most of the header was never accepted
    assert grown < size / 4, grown  # what was accepted was not held
    log.info("a 20 MB header: 431 after %d bytes sent (kernel buffers included); RSS grew %d bytes", sent, grown)


async def test_many_unfinished_large_heads_are_refused_at_once(settings_for: Any) -> None:
    # Each stops 1 MB into a header and stays open: without a limit, each held what it had sent.
    count = 20
    async with serving(settings_for, http_header_timeout_seconds=PATIENCE) as app:
        with ThreadPoolExecutor(count) as pool:  # all open at once
            loop = asyncio.get_running_loop()
            sends = [loop.run_in_executor(pool, send_head, port_of(app), HUGE_HEAD, 1024 * 1024) for _ in range(count)]
            results = await asyncio.gather(*sends)
    for _, answer, _ in results:
        assert_refused(answer, 431, "headers_too_large")
