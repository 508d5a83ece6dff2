"""Bytes allocated per request on the hot path, measured with tracemalloc, with no load and no network.

The service app is built in this process as the server serves it (`front_door(create_app(...))`) and
its lifespan run. verify and user_hit are answered as the server answers them: by the fast lane
(`FastLane.respond`, called with the request's target and headers as the connection protocol hands
them over). `verify_asgi` and `user_hit_asgi` are the same requests through the ASGI interface, as
uvicorn calls it for a request the lane passes on (a traced one) or another server calls it. Two
figures per path:
- peak: for each request, the highest traced memory during the call above what was traced before it
  (`tracemalloc.reset_peak()` before each call); the median over the requests is reported, and the max.
  It is what one request needs at once: every object it creates and still holds at its busiest moment.
- net: traced memory after N requests minus before them, over N, with a full collection at both ends.
  It is what requests leave behind: caches filling, leaks.
The request itself (the scope, or the header list) is made before each measurement, as the server
makes it before the application sees it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from auth_service.api.lane import FAST_LANE, FastLane
from auth_service.app import create_app, front_door
from auth_service.settings import Settings

WARMUP_REQUESTS = 200
Scope = dict[str, Any]


def settings_like_service(database_url: str, keys: tuple[str, str]) -> Settings:
    """The settings `make bench` gives the service, less its ports (the admin server takes a free one)."""
    return Settings(
        environment="production",
        database_url=database_url,
        token_keys=json.loads(keys[0]),
        token_active_kid=keys[1],
        hash_workers=1,
        log_level="WARNING",
        admin_port=0,
    )


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    """Run the app's lifespan over ASGI; the state it fills is handed to every request."""
    state: dict[str, Any] = {}
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    task = asyncio.create_task(app(scope, inbox.get, replies.put))
    started = await replies.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the service did not start: {started}")
    try:
        yield state
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await replies.get()
        await task


def http_scope(path: str, headers: list[tuple[bytes, bytes]], state: dict[str, Any]) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": dict(state),
    }


class Exchange:
    """The receive and send callables of a bodiless request; remembers the status, allocates nothing."""

    REQUEST = {"type": "http.request", "body": b"", "more_body": False}

    def __init__(self) -> None:
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        return self.REQUEST

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]


async def call(app: Any, scope: Scope, exchange: Exchange) -> None:
    await app(scope, exchange.receive, exchange.send)
    if exchange.status != 200:
        raise RuntimeError(f"{scope['path']} answered {exchange.status}")


Prepare = Callable[[], Any]
Answer = Callable[[Any], Awaitable[None]]


async def net_bytes(prepare: Prepare, answer: Answer, requests: int) -> float:
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(requests):
        await answer(prepare())
    gc.collect()
    return (tracemalloc.get_traced_memory()[0] - before) / requests


async def peak_bytes(prepare: Prepare, answer: Answer, requests: int) -> list[int]:
    peaks = [0] * requests
    for index in range(requests):
        request = prepare()
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        await answer(request)
        peaks[index] = tracemalloc.get_traced_memory()[1] - before
    return peaks


async def measure_path(prepare: Prepare, answer: Answer, requests: int) -> dict[str, float]:
    for _ in range(WARMUP_REQUESTS):
        await answer(prepare())
    net = await net_bytes(prepare, answer, requests)
    peaks = await peak_bytes(prepare, answer, requests)
    return {
        "peak_bytes_per_request": int(statistics.median(peaks)),
        "peak_bytes_max": max(peaks),
        "net_bytes_per_request": round(net, 1),
    }


def through_asgi(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], state: dict[str, Any]
) -> tuple[Prepare, Answer]:
    exchange = Exchange()

    async def answer(scope: Scope) -> None:
        await call(app, scope, exchange)

    return (lambda: http_scope(path, headers, state)), answer


def through_lane(lane: FastLane, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[Prepare, Answer]:
    target = path.encode()
    server_headers = [(b"date", b"Sun, 29 Nov 2026 12:00:00 GMT")]

    async def answer(request_headers: list[tuple[bytes, bytes]]) -> None:
        response, _ = lane.respond(target, request_headers, server_headers)
        if response is None or not response.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"the fast lane did not answer {path} with 200: {response!r}")

    return (lambda: [(b"host", b"127.0.0.1"), *headers]), answer


async def hot_paths(settings: Settings, token: str, user_id: str, requests: int) -> dict[str, dict[str, float]]:
    # What the server serves: telemetry, admission and the hot paths in front of FastAPI.
    app = front_door(create_app(settings))
    async with lifespan(app) as state:
        bearer = [(b"authorization", f"Bearer {token}".encode())]
        paths = {"verify": ("/v1/auth/verify", bearer), "user_hit": (f"/v1/users/{user_id}", [])}
        lane: FastLane = state[FAST_LANE]
        ways = {name: through_lane(lane, path, headers) for name, (path, headers) in paths.items()}
        ways |= {f"{name}_asgi": through_asgi(app, path, headers, state) for name, (path, headers) in paths.items()}
        for prepare, answer in (ways["verify_asgi"], ways["user_hit_asgi"]):
            await answer(prepare())  # the lane answers from the caches: the ASGI path fills them
        tracemalloc.start(1)
        try:
            return {name: await measure_path(prepare, answer, requests) for name, (prepare, answer) in ways.items()}
        finally:
            tracemalloc.stop()


def allocations(settings: Settings, token: str, user_id: str, requests: int) -> dict[str, object]:
    """The allocation figures of verify and user_hit, on the event loop the service uses."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        measured = runner.run(hot_paths(settings, token, user_id, requests))
    return {"requests": requests, "warmup_requests": WARMUP_REQUESTS, **measured}
