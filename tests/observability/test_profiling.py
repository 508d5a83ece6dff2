"""Profiling over real HTTP: whole-loop CPU profiles, task dumps, GC stats and the slow-request ring.

A small Starlette app carries the debug routes, a few busy routes and a middleware that drives the
SlowRequestRecorder the way the service's telemetry middleware does; uvicorn serves it in the test's
event loop, so the profiles are of the loop the client and the routes run on.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth_service.observability.profiling import HOLD_OFF_SECONDS, SlowRequestRecorder, debug_routes
from auth_service.observability.telemetry import Telemetry
from tests.utils.app import assert_error
from tests.utils.serving import running
from tests.utils.waiting import wait_until

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def burn_cpu_for_profile(seconds: float) -> int:
    """Keeps the loop's thread busy; its name is what the profiles are searched for."""
    deadline = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return spins


def spin_briefly_for_profile(seconds: float = 0.0005) -> int:
    """A fraction of a millisecond per call, as a real route costs: far under 1% of any profile, each."""
    return burn_cpu_for_profile(seconds)


async def burn_route(request: Request) -> Response:
    burn_cpu_for_profile(float(request.query_params["ms"]) / 1000)
    return Response(b"burnt")


async def sleep_route(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params["ms"]) / 1000)
    return Response(b"slept")


async def fast_route(request: Request) -> Response:
    return Response(b"fast")


async def brief_route(request: Request) -> Response:
    spin_briefly_for_profile()
    return Response(b"brief")


async def parked_for_dump(event: asyncio.Event) -> None:
    await event.wait()


class RecordingMiddleware:
    """begin() at the start of each request, end() once the status is known, in the request's task."""

    def __init__(self, app: ASGIApp, recorder: SlowRequestRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/debug"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        handle = self.recorder.begin()
        trace_id = dict(scope["headers"]).get(b"x-trace-id", b"").decode() or None
        status = 500

        def finish() -> None:
            nonlocal handle
            seconds = time.perf_counter() - started
            self.recorder.end(
                handle,
                method=scope["method"],
                route=scope["path"],
                status=status,
                duration_seconds=seconds,
                trace_id=trace_id,
            )
            handle = None

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body", False):
                finish()  # before the last byte leaves, so a client never reads /debug/slow ahead of it
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            if handle is not None:
                finish()


def recorder(
    threshold_seconds: float = 0.01,
    sample_ratio: float = 1.0,
    max_per_second: float = 1000.0,
    capacity: int = 100,
    max_seconds: float = 2.0,
) -> SlowRequestRecorder:
    return SlowRequestRecorder(threshold_seconds, sample_ratio, max_per_second, capacity, max_seconds)


@asynccontextmanager
async def serving(slow: SlowRequestRecorder) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[
            *debug_routes(slow),
            Route("/burn", burn_route),
            Route("/sleep", sleep_route),
            Route("/fast", fast_route),
            Route("/brief", brief_route),
        ],
        middleware=[Middleware(RecordingMiddleware, recorder=slow)],
    )
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http="httptools", lifespan="off", log_level="warning")
    async with (
        running(uvicorn.Server(config)) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        yield client


def speedscope_frames(response: httpx.Response) -> set[str]:
    """The function names of a speedscope file, after checking it is one."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["$schema"] == SPEEDSCOPE_SCHEMA
    assert body["profiles"] and body["profiles"][0]["events"]
    frames = body["shared"]["frames"]
    assert all({"name", "file", "line"} <= set(frame) for frame in frames)
    return {frame["name"] for frame in frames}


async def test_cpu_profile_samples_the_whole_loop_as_speedscope() -> None:
    async with serving(recorder()) as client:
        profiling = asyncio.create_task(client.get("/debug/profile", params={"seconds": "1.5"}))
        while not profiling.done():
            assert (await client.get("/burn", params={"ms": "20"})).status_code == 200
        response = await profiling

    assert burn_cpu_for_profile.__name__ in speedscope_frames(response)
    assert re.fullmatch(
        r'attachment; filename="profile-\d+\.speedscope\.json"', response.headers["content-disposition"]
    )
    # Taken in slices of a second: the pieces add up to the time asked for.
    assert 1.4 <= response.json()["profiles"][0]["endValue"] <= 3.0


def speedscope_seconds(body: dict[str, Any], name: str) -> float:
    """The time a function's frames were open in a speedscope evented profile."""
    indexes = {index for index, frame in enumerate(body["shared"]["frames"]) if frame["name"] == name}
    opened: list[float] = []
    total = 0.0
    for event in body["profiles"][0]["events"]:
        if event["frame"] in indexes:
            if event["type"] == "O":
                opened.append(event["at"])
            else:
                total += event["at"] - opened.pop()
    return total


async def profile_under_brief_requests(client: httpx.AsyncClient, fmt: str) -> httpx.Response:
    """A 1.5 s whole-loop profile while requests of a fraction of a millisecond each keep the loop busy."""
    profiling = asyncio.create_task(client.get("/debug/profile", params={"seconds": "1.5", "format": fmt}))
    while not profiling.done():
        assert (await client.get("/brief")).status_code == 200
    return await profiling


async def test_cpu_profile_shows_where_many_brief_requests_spend_the_loop() -> None:
    # A service's requests each take well under 1% of a profile: each is a node of its own in the
    # timeline, and a profile that drops nodes under a share of the total showed none of them.
    # Every request is offered to the slow-request recorder too: while the loop is profiled it takes none
    # (each of its profilers re-armed the sampler, and the loop's profile misattributed their time).
    slow = recorder(sample_ratio=1.0)
    async with serving(slow) as client:
        response = await profile_under_brief_requests(client, "speedscope")
        page = await profile_under_brief_requests(client, "html")

    assert spin_briefly_for_profile.__name__ in speedscope_frames(response)
    body = response.json()
    spinning = speedscope_seconds(body, spin_briefly_for_profile.__name__)
    # About a tenth of the loop's time (the client shares the loop); lost, it was under 1%.
    assert spinning >= 0.02 * body["profiles"][0]["endValue"], spinning
    assert slow.skipped_busy > slow.sampled, (slow.skipped_busy, slow.sampled)
    assert page.status_code == 200, page.text
    assert spin_briefly_for_profile.__name__ in page.text


async def test_cpu_profile_as_html() -> None:
    async with serving(recorder()) as client:
        response = await client.get("/debug/profile", params={"seconds": "0.2", "format": "html"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    assert "pyinstrumentHTMLRenderer" in response.text
    assert re.fullmatch(r'attachment; filename="profile-\d+\.html"', response.headers["content-disposition"])


async def test_a_second_cpu_profile_while_one_runs_is_refused() -> None:
    async with serving(recorder()) as client:
        first = asyncio.create_task(client.get("/debug/profile", params={"seconds": "1"}))

        async def profiling_now() -> bool:
            dump = (await client.get("/debug/tasks")).json()
            return any("in cpu_profile" in line for task in dump for line in task["stack"])

        deadline = time.monotonic() + 5
        while not await profiling_now():
            assert time.monotonic() < deadline, "the first profile never started"
            await asyncio.sleep(0.01)
        second = await client.get("/debug/profile", params={"seconds": "0.1"})
        assert not first.done()
        assert_error(second, 409, "profiler_busy")
        assert (await first).status_code == 200
        # and the next one, once the first is over, is taken
        assert (await client.get("/debug/profile", params={"seconds": "0.1"})).status_code == 200


@pytest.mark.parametrize("seconds", ["0", "-1", "60.5", "3600", "abc", "", "nan", "inf"])
async def test_profile_seconds_out_of_bounds_are_refused(seconds: str) -> None:
    async with serving(recorder()) as client:
        started = time.perf_counter()
        response = await client.get("/debug/profile", params={"seconds": seconds})
        elapsed = time.perf_counter() - started

    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "seconds"
    assert elapsed < 0.5  # refused before profiling, not after


async def test_unknown_profile_format_is_refused() -> None:
    async with serving(recorder()) as client:
        response = await client.get("/debug/profile", params={"seconds": "0.1", "format": "pprof"})

    error = assert_error(response, 422, "validation_error")
    assert error["details"][0]["field"] == "format"


async def test_task_dump_lists_tasks_with_their_await_stacks() -> None:
    release = asyncio.Event()
    parked = asyncio.create_task(parked_for_dump(release), name="parked-for-dump")
    try:
        async with serving(recorder()) as client:
            response = await client.get("/debug/tasks")
    finally:
        release.set()
        await parked

    assert response.status_code == 200
    tasks = {task["name"]: task for task in response.json()}
    task = tasks["parked-for-dump"]
    assert task["coroutine"] == "parked_for_dump"
    assert (task["done"], task["cancelled"]) == (False, False)
    assert task["stack"][0].startswith(f"{__file__}:")
    assert task["stack"][0].endswith(" in parked_for_dump")
    # below the task's own coroutine, the await it is parked on
    assert any(line.endswith(" in wait") and "asyncio" in line for line in task["stack"][1:]), task["stack"]
    assert "test-server" in tasks


def hoard_memory() -> list[bytearray]:
    return [bytearray(1000) for _ in range(3000)]


async def test_gc_stats_per_generation_and_tracemalloc_when_tracing() -> None:
    async with serving(recorder()) as client:
        plain = (await client.get("/debug/gc")).json()
        tracemalloc.start()
        try:
            hoard = hoard_memory()
            traced = (await client.get("/debug/gc")).json()
        finally:
            tracemalloc.stop()

    assert [generation["generation"] for generation in plain["generations"]] == [0, 1, 2]
    for generation in plain["generations"]:
        assert {"count", "threshold", "collections", "collected", "uncollectable"} <= set(generation)
    assert len(plain["count"]) == len(plain["threshold"]) == 3
    assert plain["allocated_blocks"] > 0 and plain["frozen"] >= 0 and plain["enabled"] in (True, False)
    assert plain["tracemalloc"] is None

    memory = traced["tracemalloc"]
    assert memory["current_bytes"] >= 3_000_000 and memory["peak_bytes"] >= memory["current_bytes"]
    hoarding_line = hoard_memory.__code__.co_firstlineno + 1
    assert any(site["site"] == f"{__file__}:{hoarding_line}" and site["bytes"] >= 3_000_000 for site in memory["top"])
    del hoard


async def test_slow_requests_are_kept_with_their_profiles_and_fast_ones_are_not() -> None:
    slow = recorder(threshold_seconds=0.01)
    async with serving(slow) as client:
        await client.get("/burn", params={"ms": "40"}, headers={"x-trace-id": "t-burn"})
        await client.get("/fast", headers={"x-trace-id": "t-fast"})
        await client.get("/sleep", params={"ms": "40"}, headers={"x-trace-id": "t-sleep"})
        listed = await client.get("/debug/slow")
        newest, oldest = listed.json()
        burnt = await client.get(f"/debug/slow/{oldest['id']}")
        slept = await client.get(f"/debug/slow/{newest['id']}")
        as_html = await client.get(f"/debug/slow/{oldest['id']}", params={"format": "html"})
        gone = await client.get("/debug/slow/999")
        not_an_id = await client.get("/debug/slow/abc")

    assert (slow.sampled, slow.kept) == (3, 2)
    assert listed.status_code == 200 and listed.json() == slow.entries()
    assert (oldest["route"], oldest["trace_id"], newest["route"], newest["trace_id"]) == (
        "/burn",
        "t-burn",
        "/sleep",
        "t-sleep",
    )
    assert newest["id"] > oldest["id"]
    for entry in (oldest, newest):
        assert set(entry) == {"id", "time", "method", "route", "status", "duration_ms", "trace_id", "profiled_ms"}
        assert (entry["method"], entry["status"]) == ("GET", 200)
        assert entry["duration_ms"] >= 40 and abs(entry["time"] - time.time()) < 60
        assert entry["profiled_ms"] == entry["duration_ms"]  # not cut: shorter than the bound

    assert burn_cpu_for_profile.__name__ in speedscope_frames(burnt)
    assert sleep_route.__name__ in speedscope_frames(slept)
    assert re.fullmatch(
        rf'attachment; filename="slow-{oldest["id"]}\.speedscope\.json"', burnt.headers["content-disposition"]
    )
    assert as_html.status_code == 200 and as_html.headers["content-type"].startswith("text/html")
    assert_error(gone, 404, "not_found")
    assert_error(not_an_id, 422, "validation_error")
    assert slow.profile(999) is None
    assert b"burn_cpu_for_profile" in (slow.profile(oldest["id"]) or b"")


async def test_a_request_profile_leaves_out_other_requests_work() -> None:
    slow = recorder(threshold_seconds=0.01)
    async with serving(slow) as client:
        sleeping = asyncio.create_task(client.get("/sleep", params={"ms": "600"}))
        await wait_until(lambda: slow.sampled == 1, 5, "the sleeping request is profiled")
        for _ in range(3):
            await client.get("/burn", params={"ms": "20"})
        await sleeping
        (entry,) = slow.entries()
        profile = await client.get(f"/debug/slow/{entry['id']}")

    # one profiled request at a time: the burns ran while the sleep was being profiled
    assert (slow.sampled, slow.skipped_busy, entry["route"]) == (1, 3, "/sleep")
    frames = speedscope_frames(profile)
    assert sleep_route.__name__ in frames
    assert burn_cpu_for_profile.__name__ not in frames


async def test_the_ring_keeps_only_the_newest_requests() -> None:
    slow = recorder(threshold_seconds=0.01, capacity=5)
    async with serving(slow) as client:
        for index in range(20):
            await client.get("/sleep", params={"ms": "15"}, headers={"x-trace-id": f"t-{index}"})
        entries = (await client.get("/debug/slow")).json()
        evicted = await client.get("/debug/slow/1")
        kept = await client.get(f"/debug/slow/{entries[-1]['id']}")

    assert slow.kept == 20
    assert [entry["id"] for entry in entries] == [20, 19, 18, 17, 16]
    assert [entry["trace_id"] for entry in entries] == [f"t-{index}" for index in range(19, 14, -1)]
    assert_error(evicted, 404, "not_found")
    assert sleep_route.__name__ in speedscope_frames(kept)


async def test_sampling_is_rate_limited() -> None:
    slow = recorder(threshold_seconds=0.0, max_per_second=2)
    async with serving(slow) as client:
        started = time.monotonic()
        for _ in range(20):
            await client.get("/fast")
        elapsed = time.monotonic() - started
        burst_sampled = slow.sampled
        await asyncio.sleep(0.6)  # a token comes back every half second
        await client.get("/fast")

    # the bucket starts with 2 tokens and gains 2 a second
    assert 2 <= burst_sampled <= 2 + math.floor(2 * elapsed), (burst_sampled, elapsed)
    assert slow.skipped_rate_limited == 20 - burst_sampled > 0
    assert slow.sampled == burst_sampled + 1
    assert slow.kept == slow.sampled


async def test_sample_ratio_zero_profiles_nothing() -> None:
    slow = recorder(threshold_seconds=0.01, sample_ratio=0.0)
    async with serving(slow) as client:
        for _ in range(10):
            await client.get("/sleep", params={"ms": "15"})
        listed = await client.get("/debug/slow")

    assert listed.json() == []
    assert (slow.sampled, slow.kept, slow.skipped_rate_limited, slow.skipped_busy) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "settings",
    [
        {"threshold_seconds": -1.0},
        {"sample_ratio": 1.5},
        {"sample_ratio": -0.1},
        {"max_per_second": 0.0},
        {"capacity": 0},
    ],
)
def test_recorder_refuses_impossible_settings(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        recorder(**settings)


async def test_a_profile_stops_at_its_bound_while_its_request_goes_on() -> None:
    # While a profile runs, the sampler slows every request of the loop: a request that lasts (a body
    # that never comes) must not keep it running. Cut at 0.2 s, the recorder is free for the next one.
    slow = recorder(max_seconds=0.2)
    async with serving(slow) as client:
        long_request = asyncio.create_task(client.get("/sleep", params={"ms": "1000"}))
        await wait_until(lambda: slow.sampled == 1, 5, "the long request profiled")
        await wait_until(lambda: slow.cut_short == 1, 5, "its profile cut")
        assert not long_request.done()
        assert (await client.get("/sleep", params={"ms": "50"})).status_code == 200  # profiled in turn
        assert (await long_request).status_code == 200
        entries = slow.entries()
    assert slow.sampled == 2
    long_entry = next(entry for entry in entries if entry["duration_ms"] >= 1000)
    assert long_entry["profiled_ms"] == 200.0
    assert sleep_route.__name__ in {frame.function for frame in frames_of(slow, long_entry["id"])}


def frames_of(slow: SlowRequestRecorder, entry_id: int) -> list[Any]:
    session = slow.session(entry_id)
    assert session is not None
    root = session.root_frame()
    assert root is not None
    frames, pending = [], [root]
    while pending:
        frame = pending.pop()
        frames.append(frame)
        pending.extend(frame.children)
    return frames


async def test_a_503_stops_the_profile_under_way_and_holds_off_the_next_for_a_while(settings_for: Any) -> None:
    # A profile costs every request on the loop (~2.3x): a service shedding load cannot spare it.
    telemetry = Telemetry(settings_for(slow_request_sample_ratio=1.0, slow_request_max_per_second=1000.0))
    slow = telemetry.slow_requests
    profiling = slow.begin()
    assert profiling is not None and slow.sampled == 1
    telemetry.observe_request("GET", "/v1/users/{user_id}", 200, 0.001, None)
    assert slow.cut_short == 0, "a request answered is no reason to stop"
    telemetry.observe_request("GET", "/v1/users/{user_id}", 503, 0.001, None)
    assert slow.cut_short == 1, "the profile under way went on while the service refused work"
    slow.end(profiling, method="GET", route="/slow", status=200, duration_seconds=1.0, trace_id=None)
    assert [slow.begin() for _ in range(3)] == [None, None, None]
    assert slow.skipped_shedding == 3
    await asyncio.sleep(HOLD_OFF_SECONDS + 0.05)
    again = slow.begin()
    assert again is not None, "still held off a second after the last 503"
    slow.end(again, method="GET", route="/fast", status=200, duration_seconds=0.0, trace_id=None)
