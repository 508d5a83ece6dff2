"""On-demand profiling, the pprof of this service: CPU profiles, task dumps, GC stats, slow requests.

Served on the admin port only, never the public one: a profile names every function the service runs,
and while a profiler is on, every Python call on the loop thread costs more (about 2.3x the CPU of a
small JSON route, measured with pyinstrument 5.1), for every request the loop serves, not only the
profiled one.

The whole-loop profile merges identical call paths (a flame graph); a slow request's keeps its timeline.
Only the event-loop thread is sampled: pyinstrument hooks one thread, so work in thread pools (argon2
hashing) shows as the loop waiting, in `select`, or in the coroutine that awaits it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import gc
import itertools
import random
import sys
import time
import tracemalloc
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
from pyinstrument import Profiler, processors
from pyinstrument.renderers import HTMLRenderer, SpeedscopeRenderer
from pyinstrument.session import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from auth_service.errors import error_body

Format = Literal["speedscope", "html"]
FORMATS: dict[str, tuple[str, str]] = {
    "speedscope": ("application/json", "speedscope.json"),
    "html": ("text/html; charset=utf-8", "html"),
}
MAX_PROFILE_SECONDS = 60.0
DEFAULT_PROFILE_SECONDS = 10.0
# pyinstrument keeps every sample as a list of fresh strings, one per frame: about 3.5 KB a sample
# for a Starlette stack 22 frames deep, so 60 s of a busy loop would hold some 200 MB. The whole-loop
# profile is therefore taken in slices of a second, each compacted as it ends (7x smaller, measured);
# a kept slow-request profile is compacted and, past this many records, resampled.
SLICE_SECONDS = 1.0
MAX_RECORDS_PER_PROFILE = 5_000
# No slow request is profiled for this long after the service last refused work with a 503: a profile
# makes every request on the loop cost ~2.3x, which a loop that sheds load cannot spare. Under 3x of
# the cache misses' capacity, profiles of slow reads (1 a second, each up to 2 s) held the profiler
# on for much of the time: 14% of the loop's samples were pyinstrument's own (py-spy, 2026-12-04).
HOLD_OFF_SECONDS = 1.0

_cpu_profile_running = False


class ProfilerBusy(RuntimeError):
    """A CPU profile is already being taken; one at a time."""


# --- the whole-loop CPU profile ---------------------------------------------------------------------


async def cpu_profile(seconds: float, interval: float = 0.001) -> Session:
    """Sample everything the event loop's thread runs for `seconds`; raises ProfilerBusy if one is running."""
    global _cpu_profile_running
    if _cpu_profile_running:
        raise ProfilerBusy("a CPU profile is already running")
    _cpu_profile_running = True
    try:
        return await _profile_in_slices(seconds, interval)
    finally:
        _cpu_profile_running = False


async def _profile_in_slices(seconds: float, interval: float) -> Session:
    stacks: dict[tuple[str, ...], list[str]] = {}
    deadline = time.monotonic() + seconds
    session = compact(await _profile_slice(min(seconds, SLICE_SECONDS), interval), stacks)
    while (remaining := deadline - time.monotonic()) > 0:
        part = compact(await _profile_slice(min(remaining, SLICE_SECONDS), interval), stacks)
        session = Session.combine(session, part)
    return session


async def _profile_slice(seconds: float, interval: float) -> Session:
    # async_mode="disabled": the profiler is not bound to this request's context, so it records whatever
    # the thread runs while this coroutine sleeps: every other task, callback and the loop itself.
    # "enabled" would record only this coroutine, its sleep, and nothing of the service.
    profiler = Profiler(interval=interval, async_mode="disabled")
    profiler.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        session = profiler.stop()
    return session


def compact(session: Session, stacks: dict[tuple[str, ...], list[str]] | None = None) -> Session:
    """Share identical stacks and strings, and merge consecutive identical samples; the timeline is unchanged."""
    stacks = {} if stacks is None else stacks
    records: list[tuple[list[str], float]] = []
    for stack, seconds in session.frame_records:
        key = tuple(stack)
        shared = stacks.get(key)
        if shared is None:
            shared = [sys.intern(frame) for frame in stack]
            stacks[tuple(shared)] = shared
        if records and records[-1][0] is shared:
            records[-1] = (shared, records[-1][1] + seconds)
        else:
            records.append((shared, seconds))
    session.frame_records = records
    return session


def render(session: Session, fmt: Format = "speedscope", *, timeline: bool = False) -> bytes:
    """The profile as a speedscope JSON file or pyinstrument's HTML page.

    By default identical call paths are merged first, as in a flame graph; `timeline=True` keeps the
    order in which things ran, which is what one request's profile is read for. A whole loop under load
    must be merged: it runs thousands of callbacks of a fraction of a millisecond, each its own node in
    a timeline and each under the share of the total below which nodes are dropped, so the timeline
    showed the loop's outermost frames and none of the requests (pyinstrument 5.1).
    """
    if fmt == "speedscope":
        return cast(str, _speedscope_renderer(timeline).render(session)).encode()
    if fmt == "html":
        return cast(str, _html_renderer(timeline).render(session)).encode()
    raise ValueError(f"unknown profile format {fmt!r}")


# Frames under 0.1% of the time cannot be seen in either viewer; dropping them keeps the file small.
VISIBLE_SHARE = {"filter_threshold": 0.001}


def _speedscope_renderer(timeline: bool) -> SpeedscopeRenderer:
    renderer = SpeedscopeRenderer(processor_options=VISIBLE_SHARE)
    if not timeline:
        # pyinstrument leaves the merge out of its speedscope defaults, speedscope being a timeline format.
        defaults = renderer.processors
        at = defaults.index(processors.remove_irrelevant_nodes)
        renderer.processors = [*defaults[:at], processors.aggregate_repeated_calls, *defaults[at:]]
    return renderer


def _html_renderer(timeline: bool) -> HTMLRenderer:
    # The page embeds what it is given and processes it in the browser: a 10 s timeline of a loop under
    # load made a 17 MB page.
    renderer = HTMLRenderer()
    merge = [] if timeline else [processors.aggregate_repeated_calls]
    renderer.preprocessors = [*merge, processors.remove_irrelevant_nodes]
    renderer.preprocessor_options = VISIBLE_SHARE
    return renderer


# --- tasks and memory -------------------------------------------------------------------------------


def task_dump() -> list[dict[str, Any]]:
    """Every task of the running loop, with the stack it is suspended in."""
    return [_describe_task(task) for task in sorted(asyncio.all_tasks(), key=lambda task: task.get_name())]


def _describe_task(task: asyncio.Task[Any]) -> dict[str, Any]:
    coro = task.get_coro()
    return {
        "name": task.get_name(),
        "coroutine": getattr(coro, "__qualname__", type(coro).__name__),
        "done": task.done(),
        "cancelled": task.cancelled(),
        "stack": [_frame_line(frame) for frame in _task_frames(task)],
    }


def _task_frames(task: asyncio.Task[Any], limit: int = 64) -> list[types.FrameType]:
    # task.get_stack() of a suspended task stops at its outermost coroutine; the interesting part is
    # below it, along the chain of awaits (handler -> store -> pool -> sleep), so follow that too.
    frames = task.get_stack(limit=limit)
    awaited = getattr(task.get_coro(), "cr_await", None)
    while awaited is not None and len(frames) < limit:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return frames


def _frame_line(frame: types.FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def gc_stats(top: int = 10) -> dict[str, Any]:
    """The collector's state per generation, allocated blocks, and tracemalloc's view when it is tracing."""
    count, threshold = gc.get_count(), gc.get_threshold()
    generations = [
        {"generation": index, "count": count[index], "threshold": threshold[index], **stats}
        for index, stats in enumerate(gc.get_stats())
    ]
    return {
        "enabled": gc.isenabled(),
        "generations": generations,
        "count": list(count),
        "threshold": list(threshold),
        "frozen": gc.get_freeze_count(),
        "allocated_blocks": sys.getallocatedblocks(),
        "tracemalloc": _tracemalloc_stats(top) if tracemalloc.is_tracing() else None,
    }


def _tracemalloc_stats(top: int) -> dict[str, Any]:
    current, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    sites = [
        {"site": f"{stat.traceback[0].filename}:{stat.traceback[0].lineno}", "bytes": stat.size, "count": stat.count}
        for stat in snapshot.statistics("lineno")[:top]
    ]
    return {"current_bytes": current, "peak_bytes": peak, "top": sites}


# --- slow requests ----------------------------------------------------------------------------------


@dataclass
class _Entry:
    id: int
    time: float
    method: str
    route: str
    status: int
    duration_ms: float
    trace_id: str | None
    profiled_ms: float  # the profile's length: shorter than the request's when it was cut (max_seconds)
    session: Session

    def summary(self) -> dict[str, Any]:
        return {key: value for key, value in vars(self).items() if key != "session"}


class _Profiling:
    """One request's profile under way, or cut short: what begin() hands out and end() takes back."""

    __slots__ = ("cut", "profiler", "session")

    def __init__(self, profiler: Profiler) -> None:
        self.profiler = profiler
        self.session: Session | None = None  # set when the profile was cut before the request ended
        self.cut: asyncio.TimerHandle | None = None


class SlowRequestRecorder:
    """Profiles a sample of requests, one at a time and at most `max_per_second`; keeps the slow ones.

    A profile stops after `max_seconds` even if its request goes on. While one runs, pyinstrument's
    sampler slows every request on the loop, not only the profiled one: a request whose body never
    came (the partial-body attack) was profiled for the 10 s of its body timeout, and the p99 of
    normal traffic rose from 20 ms to 100 ms.
    """

    def __init__(
        self,
        threshold_seconds: float,
        sample_ratio: float,
        max_per_second: float,
        capacity: int,
        max_seconds: float = 2.0,
    ) -> None:
        if threshold_seconds < 0 or not 0 <= sample_ratio <= 1 or max_per_second <= 0 or capacity < 1:
            raise ValueError("need threshold_seconds >= 0, 0 <= sample_ratio <= 1, max_per_second > 0, capacity >= 1")
        if max_seconds <= 0:
            raise ValueError("need max_seconds > 0")
        self.max_seconds = max_seconds
        self.threshold_seconds = threshold_seconds
        self.sample_ratio = sample_ratio
        self.max_per_second = max_per_second
        self._burst = max(1.0, max_per_second)
        self._tokens = self._burst
        self._refilled_at = time.monotonic()
        self._ring: collections.deque[_Entry] = collections.deque(maxlen=capacity)
        self._ids = itertools.count(1)
        self._active: _Profiling | None = None
        self.sampled = 0
        self.kept = 0
        self.cut_short = 0
        self.skipped_rate_limited = 0
        self.skipped_busy = 0
        self.skipped_shedding = 0
        self._held_until = 0.0

    def begin(self) -> object | None:
        """At the start of a request, in its task: a handle when this request is profiled, else None."""
        if random.random() >= self.sample_ratio:  # noqa: S311 - sampling, not security
            return None
        # pyinstrument refuses a second profiler in the same async context, not in another task; one at a
        # time still bounds the slowdown of the loop and the samples held in flight. None during a
        # whole-loop profile: each one started and stopped re-arms pyinstrument's sampler, and the loop's
        # profile misattributed the time of the requests profiled (measured, every request profiled:
        # 0.3 ms of work each showed as 15 ms in all where it was 90; 0.5 ms each, as 238 where it was 132).
        if self._active is not None or _cpu_profile_running:
            self.skipped_busy += 1
            return None
        if time.monotonic() < self._held_until:
            self.skipped_shedding += 1
            return None
        if not self._take_token():
            self.skipped_rate_limited += 1
            return None
        # async_mode="enabled": the profiler follows this request's context; time the request spends
        # awaiting is attributed to the await it is parked on, and other requests' work is left out.
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
        handle = self._active = _Profiling(profiler)
        handle.cut = asyncio.get_running_loop().call_later(self.max_seconds, self._cut, handle)
        self.sampled += 1
        return handle

    def hold_off(self) -> None:
        """The service has just refused work (a 503): stop any profile now, and start none for a while."""
        self._held_until = time.monotonic() + HOLD_OFF_SECONDS
        if self._active is not None:
            self._cut(self._active)

    def _cut(self, handle: _Profiling) -> None:
        if self._active is handle:
            handle.session = handle.profiler.stop()
            self._active = None
            self.cut_short += 1

    def end(
        self,
        handle: object | None,
        *,
        method: str,
        route: str,
        status: int,
        duration_seconds: float,
        trace_id: str | None,
    ) -> None:
        """At the end of the request that begin() returned `handle` for; keeps its profile if it was slow."""
        if handle is None:
            return
        if not isinstance(handle, _Profiling) or (handle.session is None and handle is not self._active):
            raise ValueError("end() takes the handle that begin() returned")
        if handle.cut is not None:
            handle.cut.cancel()
        session = handle.session
        if session is None:
            try:
                session = handle.profiler.stop()
            finally:
                self._active = None
        if duration_seconds < self.threshold_seconds:
            return
        session.target_description = f"{method} {route}"
        duration_ms = round(duration_seconds * 1000, 3)
        profiled_ms = round(min(duration_seconds, self.max_seconds) * 1000, 3)
        entry = _Entry(
            next(self._ids), time.time(), method, route, status, duration_ms, trace_id, profiled_ms, _bounded(session)
        )
        self._ring.append(entry)
        self.kept += 1

    def entries(self) -> list[dict[str, Any]]:
        """The kept slow requests, newest first, without their profiles."""
        return [entry.summary() for entry in reversed(self._ring)]

    def session(self, entry_id: int) -> Session | None:
        return next((entry.session for entry in self._ring if entry.id == entry_id), None)

    def profile(self, entry_id: int, format: Format = "speedscope") -> bytes | None:
        """One kept request's profile, rendered; None once it has left the ring."""
        session = self.session(entry_id)
        return None if session is None else render(session, format, timeline=True)

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self.max_per_second)
        self._refilled_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def _bounded(session: Session) -> Session:
    session = compact(session)
    if len(session.frame_records) <= MAX_RECORDS_PER_PROFILE:
        return session
    return session.resample(session.duration / MAX_RECORDS_PER_PROFILE)


# --- routes -----------------------------------------------------------------------------------------


class _InvalidParameter(ValueError):
    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.detail = {"field": field, "code": code, "message": message}


Endpoint = Callable[[Request], Awaitable[Response]]


def debug_routes(recorder: SlowRequestRecorder) -> list[Route]:
    """The /debug routes, for the admin server only."""

    async def debug_profile(request: Request) -> Response:
        """A CPU profile of the whole event loop for ?seconds=N (default 10, at most 60)."""
        seconds = _seconds(request)
        fmt = _format(request)
        session = await cpu_profile(seconds)
        return await _profile_response(session, fmt, f"profile-{int(session.start_time)}", timeline=False)

    async def debug_tasks(request: Request) -> Response:
        """Every asyncio task and where it is suspended."""
        return _json(task_dump())

    async def debug_gc(request: Request) -> Response:
        """Garbage collector and allocator statistics."""
        return _json(gc_stats())

    async def debug_slow(request: Request) -> Response:
        """The slow requests kept, newest first."""
        return _json(recorder.entries())

    async def debug_slow_profile(request: Request) -> Response:
        """One slow request's profile."""
        entry_id = _entry_id(request)
        session = recorder.session(entry_id)
        if session is None:
            return _error(404, "not_found", f"slow request {entry_id} is not (or no longer) kept")
        return await _profile_response(session, _format(request), f"slow-{entry_id}", timeline=True)

    return [
        Route("/debug/profile", _answering_errors(debug_profile), methods=["GET"]),
        Route("/debug/tasks", _answering_errors(debug_tasks), methods=["GET"]),
        Route("/debug/gc", _answering_errors(debug_gc), methods=["GET"]),
        Route("/debug/slow", _answering_errors(debug_slow), methods=["GET"]),
        Route("/debug/slow/{entry_id}", _answering_errors(debug_slow_profile), methods=["GET"]),
    ]


def _answering_errors(endpoint: Endpoint) -> Endpoint:
    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except _InvalidParameter as exc:
            return _error(422, "validation_error", "the request is invalid", [exc.detail])
        except ProfilerBusy as exc:
            return _error(409, "profiler_busy", f"{exc}; try again when it ends")

    return answer


async def _profile_response(session: Session, fmt: Format, stem: str, *, timeline: bool) -> Response:
    # Rendering a long profile takes a while; in a thread, the loop keeps serving meanwhile (the HTML
    # renderer also reads its assets from disk).
    body = await asyncio.to_thread(functools.partial(render, session, fmt, timeline=timeline))
    media_type, extension = FORMATS[fmt]
    headers = {"Content-Disposition": f'attachment; filename="{stem}.{extension}"', "Cache-Control": "no-store"}
    return Response(body, media_type=media_type, headers=headers)


def _seconds(request: Request) -> float:
    raw = request.query_params.get("seconds")
    if raw is None:
        return DEFAULT_PROFILE_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        raise _InvalidParameter("seconds", "float_parsing", "seconds must be a number") from None
    if not 0 < seconds <= MAX_PROFILE_SECONDS:  # also refuses nan and inf
        raise _InvalidParameter("seconds", "out_of_range", f"seconds must be > 0 and <= {MAX_PROFILE_SECONDS:g}")
    return seconds


def _format(request: Request) -> Format:
    fmt = request.query_params.get("format", "speedscope")
    if fmt not in FORMATS:
        raise _InvalidParameter("format", "enum", "format must be one of: " + ", ".join(FORMATS))
    return cast(Format, fmt)


def _entry_id(request: Request) -> int:
    try:
        return int(request.path_params["entry_id"])
    except ValueError:
        raise _InvalidParameter("entry_id", "int_parsing", "the entry id must be an integer") from None


def _json(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type="application/json", headers={"Cache-Control": "no-store"})


def _error(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    return Response(error_body(code, message, details), status_code=status, media_type="application/json")
