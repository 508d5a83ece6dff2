"""The fast lane: hot GETs answered as wire bytes while the connection parses them.

uvicorn turns every request into an ASGI call: a scope dict, a RequestResponseCycle with its Event,
a Task, header validation by regular expression as the response goes out, and the service's own
layers in front of the routes. For a token check or a cached read that is most of the work: the
answer itself is bytes the caches already hold. The connection protocol (`wire.py`) asks the lane
first, at the end of a request's head; the lane answers what it can without awaiting (a token
check, a cache hit, liveness) and the protocol writes it at once. Anything else (a miss, a traced
request, another route) goes on to uvicorn and the application as before, and gets the same bytes
it would have got from the lane: the tests compare them.

The lane does the work of the layers it skips that applies to such a request: the latency metric
(the HPA's request rate) under the route's template, the sampled access log, and tracing. It draws
for a new trace once, and hands the decision to the request middleware when it passes a request on;
a request it drew and answers gets the server span and `traceresponse` header the middleware would
give it, with `cache.hit` as an attribute rather than a child span. A traced request thus costs a
span, not the ASGI path and two spans: about a third as much (bench, 2026-11-29). A request that
continues an upstream trace is the middleware's (it extracts and follows that context). It
skips admission control's in-flight bound, on purpose: the bound keeps waiting requests from piling
up, and a request answered before the next one is read never waits; under overload an answer from
memory costs less than the 503 would. Nor does the slow-request profiler see these answers: each
runs for microseconds without awaiting, with nothing in it to profile.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from auth_service.api.fast import CHALLENGE, Headers, HotAnswer, HotRoutes
from auth_service.observability.middleware import (
    TRACEPARENT,
    end_server_span,
    log_access,
    sampled_trace_id,
    start_server_span,
    traceresponse_header,
)
from auth_service.observability.tracing import CACHE_HIT

if TYPE_CHECKING:
    from auth_service.observability.telemetry import Telemetry
    from auth_service.services import Services

# Where the lane is in the lifespan state (uvicorn hands that state to each connection).
FAST_LANE = "fast_lane"
CHALLENGE_LINES = b"".join(name + b": " + value + b"\r\n" for name, value in CHALLENGE)
# Requests the lane leaves to the ASGI path: one with a body or a continuation to answer; and, with
# tracing on, one that continues an upstream trace (the request middleware follows its context).
BODY_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"expect"})
BODY_OR_TRACE_HEADERS = BODY_HEADERS | {TRACEPARENT}

# (response bytes or None, the trace sampling decision taken for a request passed on, or None)
LaneResult = tuple[bytes | None, bool | None]
PASS: LaneResult = (None, None)


class FastLane:
    def __init__(self, routes: HotRoutes, services: Services, telemetry: Telemetry) -> None:
        self.routes = routes
        self.services = services
        self.telemetry = telemetry
        self._default_headers: object = None
        self._default_lines = b""
        # Made once the tracer exists (the lifespan makes the lane after it).
        self._passed_headers = BODY_HEADERS if telemetry.tracer is None else BODY_OR_TRACE_HEADERS

    def respond(self, url: bytes, headers: Headers, default_headers: list[tuple[bytes, bytes]]) -> LaneResult:
        """The whole response to a GET of `url` with these headers, or what to pass on with it.

        `default_headers` are the server's (its Date), written first as uvicorn writes them.
        """
        started = time.perf_counter()
        if b"?" in url or b"%" in url or not url.isascii():
            return PASS  # the ASGI path decodes and splits it
        path = url.decode("ascii")
        found = self.routes.match(path)
        if found is None or self._passes_on(headers):
            return PASS
        sampled = self._sampled()
        if sampled is None:
            return PASS  # the SDK's sampler decides
        began_ns = time.time_ns() if sampled else 0
        hot, param = found
        answer = hot.now(headers, param, self.services)
        if answer is None:
            return None, sampled
        route = hot.route.path
        trace_header, trace_id = self._trace(path, route, headers, answer, began_ns) if sampled else (b"", None)
        response = self._encode(answer, default_headers, trace_header)
        self._observe(path, route, answer.status, time.perf_counter() - started, trace_id)
        return response, None

    def _passes_on(self, headers: Headers) -> bool:
        # One loop, not any() over generators (one for bodies, one for traceparent): 0.1 us, not 0.5,
        # on every request.
        passed = self._passed_headers
        for name, _ in headers:  # noqa: SIM110
            if name in passed:
                return True
        return False

    def _sampled(self) -> bool | None:
        """False when the request is not traced; True when it is chosen; None when the middleware decides."""
        telemetry = self.telemetry
        if telemetry.tracer is None:
            return False
        ratio = telemetry.edge_ratio
        if ratio is None:
            return None
        return random.random() < ratio  # noqa: S311 - sampling, not security

    def _trace(
        self, path: str, route: str, headers: Headers, answer: HotAnswer, began_ns: int
    ) -> tuple[bytes, str | None]:
        """The server span of a request drawn for a trace: (its traceresponse line, its trace id)."""
        tracer = self.telemetry.tracer
        assert tracer is not None  # a request is drawn only when tracing is on
        span, _ = start_server_span(tracer, "GET", path, headers, "1.1", chosen=True, start_time=began_ns)
        if answer.cache_hit:
            span.set_attribute(CACHE_HIT, True)
        end_server_span(span, "GET", route, answer.status)
        value = traceresponse_header(span)
        if value is None:  # not recorded after all: the provider is shutting down
            return b"", None
        return b"traceresponse: " + value + b"\r\n", sampled_trace_id(span)

    def _encode(self, answer: HotAnswer, default_headers: list[tuple[bytes, bytes]], trace_header: bytes) -> bytes:
        # uvicorn replaces its default headers (the Date) with a new list each second.
        if default_headers is not self._default_headers:
            self._default_lines = b"".join(name + b": " + value + b"\r\n" for name, value in default_headers)
            self._default_headers = default_headers
        body = answer.body
        return b"".join(
            (
                STATUS_LINE[answer.status],
                self._default_lines,
                b"content-type: application/json\r\ncontent-length: ",
                str(len(body)).encode(),
                b"\r\n",
                CHALLENGE_LINES if answer.challenge else b"",
                b"".join(name + b": " + value + b"\r\n" for name, value in answer.headers) if answer.headers else b"",
                trace_header,
                b"\r\n",
                body,
            )
        )

    def _observe(self, path: str, route: str, status: int, seconds: float, trace_id: str | None) -> None:
        telemetry = self.telemetry
        telemetry.lane_responses += 1
        telemetry.observe_request("GET", route, status, seconds, trace_id)
        ratio = telemetry.access_log_ratio
        if ratio and random.random() < ratio:  # noqa: S311 - sampling, not security
            log_access("GET", path, route, status, seconds)
