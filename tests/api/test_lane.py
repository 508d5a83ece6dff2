"""The fast lane over real sockets: the same bytes as the ASGI path, in order, and only where it may answer.

Two services run side by side on the same database, one with the lane and one without, and answer
the same raw HTTP/1.1 requests; the lane's own count (`lane_responses`) shows which requests it took.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from auth_service.app import create_app, front_door
from auth_service.server import DrainingServer, server_config
from tests.utils.app import RunningApp, create_user, login, serve
from tests.utils.otlp_receiver import otlp_receiver
from tests.utils.serving import running

DATE_LINE = re.compile(rb"\r\ndate: [^\r]*\r\n")
TRACERESPONSE_LINE = re.compile(rb"\r\ntraceresponse: 00-[0-9a-f]{32}-[0-9a-f]{16}-01\r\n")


def get(path: str, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {path} HTTP/{version}", "host: test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port: int, request: bytes, responses: int = 1, *, heads_only: bool = False) -> list[bytes]:
    """Send raw bytes; read back this many complete responses (each has a content-length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        return list(read_responses(sock, responses, heads_only=heads_only))


def read_responses(sock: socket.socket, count: int, *, heads_only: bool = False) -> Iterator[bytes]:
    buffer = b""
    for _ in range(count):
        while b"\r\n\r\n" not in buffer:
            buffer += receive(sock)
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        match = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        length = 0 if heads_only or match is None else int(match.group(1))
        while len(buffer) < length:
            buffer += receive(sock)
        yield head + b"\r\n\r\n" + buffer[:length]
        buffer = buffer[length:]


def receive(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, "the server closed the connection"
    return chunk


def undated(response: bytes) -> bytes:
    assert DATE_LINE.search(response), response
    return DATE_LINE.sub(b"\r\n", response, count=1)


def port_of(app: RunningApp) -> int:
    return httpx.URL(app.url).port or 80


def lane_count(app: RunningApp) -> int:
    return app.services.telemetry.lane_responses


def traced_only(response: bytes) -> bytes:
    """The response with its trace ids left out (each server starts traces of its own)."""
    assert TRACERESPONSE_LINE.search(response), response
    return TRACERESPONSE_LINE.sub(b"\r\ntraceresponse: ...\r\n", response, count=1)


@asynccontextmanager
async def with_and_without_lane(settings_for: Any, **settings: Any) -> AsyncIterator[tuple[RunningApp, RunningApp]]:
    async with serve(settings_for(**settings)) as lane, serve(settings_for(fast_lane=False, **settings)) as plain:
        yield lane, plain


@asynccontextmanager
async def tracing_settings(traced: bool) -> AsyncIterator[dict[str, Any]]:
    """Every new request traced, to a real OTLP receiver; or tracing off, as shipped."""
    if not traced:
        yield {}
        return
    async with otlp_receiver() as receiver:
        yield {
            "otel_traces_exporter": "otlp",
            "otel_exporter_otlp_endpoint": receiver.endpoint,
            "otel_traces_sampler": "parentbased_traceidratio",
            "otel_traces_sampler_arg": 1.0,
        }


@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
async def test_hot_answers_are_the_same_bytes_with_and_without_the_lane(settings_for: Any, traced: bool) -> None:
    """Traced, the lane writes the middleware's traceresponse header in the same place."""
    async with tracing_settings(traced) as tracing, with_and_without_lane(settings_for, **tracing) as (lane, plain):
        user = await create_user(lane.client)
        token = await login(lane.client, user["email"], user["password"])
        await lane.client.delete(f"/v1/users/{(await create_user(lane.client))['id']}")  # not found, below
        missing = str(uuid.uuid4())
        requests = [
            get("/v1/auth/verify", f"authorization: Bearer {token}"),
            get("/v1/auth/verify"),
            get("/v1/auth/verify", "authorization: Bearer not.a.token"),
            get("/v1/auth/verify", "authorization: Basic abc"),
            get(f"/v1/users/{user['id']}"),
            get(f"/v1/users/{missing}"),
            get("/v1/me", f"authorization: Bearer {token}"),
            get("/v1/me", "authorization: Bearer not.a.token"),
            get("/healthz"),
        ]
        for server in (lane, plain):  # fill both caches: the first read of a user or a miss awaits the database
            await asyncio.to_thread(exchange, port_of(server), b"".join(requests), len(requests))
        before = lane_count(lane)
        answered = {}
        for server in (lane, plain):
            answered[server.url] = await asyncio.to_thread(exchange, port_of(server), b"".join(requests), len(requests))
        assert lane_count(lane) - before == len(requests)
        assert lane_count(plain) == 0
        for with_lane, without in zip(answered[lane.url], answered[plain.url], strict=True):
            if traced:
                with_lane, without = traced_only(with_lane), traced_only(without)
            assert undated(with_lane) == undated(without)
        statuses = [response.split(b" ", 2)[1] for response in answered[lane.url]]
        assert statuses == [b"200", b"401", b"401", b"401", b"200", b"404", b"200", b"401", b"200"]


async def test_what_the_lane_cannot_answer_now_goes_on_and_is_answered(app: RunningApp) -> None:
    user = await create_user(app.client)
    port, before = port_of(app), lane_count(app)
    passed_on = [
        get(f"/v1/users/{user['id']}"),  # the first read misses the cache
        get(f"/v1/users/{user['id'].upper()}"),  # not the canonical spelling: FastAPI's route
        get("/v1/auth/verify?x=1"),
        get("/v1/auth/verify", "content-length: 2") + b"{}",  # a GET with a body
    ]
    for request in passed_on:
        (response,) = await asyncio.to_thread(exchange, port, request)
        assert response.startswith((b"HTTP/1.1 200", b"HTTP/1.1 401")), response
    head = b"HEAD /healthz HTTP/1.1\r\nhost: test\r\n\r\n"
    (response,) = await asyncio.to_thread(exchange, port, head, heads_only=True)
    assert response.startswith(b"HTTP/1.1 405"), response  # FastAPI's answer: the route is GET only
    assert lane_count(app) == before
    (response,) = await asyncio.to_thread(exchange, port, get(f"/v1/users/{user['id']}"))  # now cached
    assert lane_count(app) == before + 1
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_upstream_trace_context_passes_on_only_when_this_service_traces(settings_for: Any) -> None:
    """With tracing on, the request middleware continues the caller's trace; with it off there is nothing to
    continue, and a caller that always sends traceparent must not lose the lane."""
    traceparent = f"traceparent: 00-{'a' * 32}-{'b' * 16}-01"
    async with tracing_settings(True) as tracing, serve(settings_for(**tracing)) as traced_app:
        before = lane_count(traced_app)
        (response,) = await asyncio.to_thread(exchange, port_of(traced_app), get("/healthz", traceparent))
        assert lane_count(traced_app) == before
        assert f"traceresponse: 00-{'a' * 32}-".encode() in response
    async with serve(settings_for()) as untraced_app:
        before = lane_count(untraced_app)
        (response,) = await asyncio.to_thread(exchange, port_of(untraced_app), get("/healthz", traceparent))
        assert lane_count(untraced_app) == before + 1
        assert b"traceresponse" not in response and response.startswith(b"HTTP/1.1 200 OK\r\n")


async def test_pipelined_requests_are_answered_in_order_around_slower_ones(app: RunningApp) -> None:
    user = await create_user(app.client)
    await app.client.get(f"/v1/users/{user['id']}")  # cached
    missing = str(uuid.uuid4())
    body = b'{"email":"not-an-email","name":"x","password":"a-long-enough-password"}'
    pipelined = (
        get("/healthz")
        + b"POST /v1/users HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
        + get(f"/v1/users/{user['id']}")  # the lane could answer it, but a slower one is ahead of it
        + get(f"/v1/users/{missing}")  # a database read
        + get(f"/v1/users/{user['id']}")
    )
    responses = await asyncio.to_thread(exchange, port_of(app), pipelined, 5)
    statuses = [response.split(b" ", 2)[1] for response in responses]
    assert statuses == [b"200", b"422", b"200", b"404", b"200"]
    assert responses[0].endswith(b'{"status":"ok"}')
    assert responses[2].endswith(responses[4].split(b"\r\n\r\n", 1)[1])


async def test_a_closing_request_is_left_to_uvicorn_which_closes(app: RunningApp) -> None:
    def ask(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port_of(app)), timeout=5) as sock:
            sock.sendall(request)
            received = b""
            while chunk := sock.recv(65536):  # until the server closes
                received += chunk
            return received

    before = lane_count(app)
    for request in (get("/healthz", "connection: close"), get("/healthz", version="1.0")):
        response = await asyncio.to_thread(ask, request)
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\nconnection: close\r\n" in response
    assert lane_count(app) == before


async def test_an_idle_connection_is_closed_a_keep_alive_timeout_after_the_last_answer(settings_for: Any) -> None:
    settings = settings_for()
    app = create_app(settings)
    config = server_config(front_door(app), settings, host="127.0.0.1", port=0, log_level="warning")
    config.timeout_keep_alive = 1  # seconds; uvicorn's default is 5

    def two_answers_then_idle(port: int) -> tuple[list[bytes], float]:
        answers = []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            for pause in (0.0, 0.7):  # the second comes before the first answer's timeout ends
                time.sleep(pause)
                sock.sendall(get("/healthz"))
                answers += read_responses(sock, 1)
            last_answer = time.monotonic()
            assert sock.recv(1) == b""  # closed by the server, not by this socket's 10 s timeout
            return answers, time.monotonic() - last_answer

    async with running(DrainingServer(config, app.state.health, 0.0)) as (_, port):
        before = app.state.telemetry.lane_responses
        answers, idle = await asyncio.to_thread(two_answers_then_idle, port)
        assert app.state.telemetry.lane_responses == before + 2
    assert all(answer.startswith(b"HTTP/1.1 200 OK\r\n") for answer in answers)
    assert 0.9 <= idle <= 5, idle  # counted from the last answer, not the first


async def test_lane_answers_are_counted_in_the_latency_histogram_by_route(app: RunningApp) -> None:
    user = await create_user(app.client)
    await app.client.get(f"/v1/users/{user['id']}")
    before = lane_count(app)
    for _ in range(3):
        await asyncio.to_thread(exchange, port_of(app), get(f"/v1/users/{user['id']}"))
    assert lane_count(app) == before + 3
    admin_port = app.services.telemetry.admin_port
    async with httpx.AsyncClient() as admin:
        text = (await admin.get(f"http://127.0.0.1:{admin_port}/metrics")).text
    count = re.search(
        r'http_server_request_duration_seconds_count\{method="GET",route="/v1/users/\{user_id\}",'
        r'status_class="2xx"\} (\S+)',
        text,
    )
    assert count is not None and float(count.group(1)) == 4.0  # the miss through FastAPI's layers, 3 in the lane
    lane_total = re.search(r"^http_server_fast_lane_responses_total (\S+)$", text, re.MULTILINE)
    assert lane_total is not None and float(lane_total.group(1)) == lane_count(app)


@pytest.mark.parametrize("first_draw", [0.3, 0.7])
async def test_the_trace_decision_is_drawn_once_for_a_request_the_lane_passes_on(
    settings_for: Any, monkeypatch: pytest.MonkeyPatch, first_draw: float
) -> None:
    """At ratio 0.5 the lane draws first; a second draw (0.99 or 0.01 here) would reverse its decision."""
    draws = iter([first_draw])
    second = 0.99 if first_draw < 0.5 else 0.01
    monkeypatch.setattr(random, "random", lambda: next(draws, second))
    async with otlp_receiver() as receiver:
        settings = settings_for(
            otel_traces_exporter="otlp",
            otel_exporter_otlp_endpoint=receiver.endpoint,
            otel_traces_sampler="parentbased_traceidratio",
            otel_traces_sampler_arg=0.5,
            slow_request_sample_ratio=0.0,
        )
        async with serve(settings) as app:
            response = await app.client.get(f"/v1/users/{uuid.uuid4()}")  # a miss: passed on after the draw
    assert response.status_code == 404
    assert ("traceresponse" in response.headers) is (first_draw < 0.5)
