"""Per-request telemetry: the server span, the RED metrics with exemplars, slow-request capture, access logs.

Plain ASGI and written here rather than opentelemetry-instrumentation-asgi: that middleware wraps
every receive and send in spans of their own and builds its attributes on every request, sampled or
not; here a request the sampler leaves out costs a random draw, a look for a traceparent header and
one histogram observation (see tracing.edge_ratio). The
span is named from the route template once routing has matched (FastAPI puts the route in the scope).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth_service.errors import ServiceUnavailable, error_response
from auth_service.observability.tracing import EDGE_CHOSEN, EDGE_SAMPLED

if TYPE_CHECKING:
    from auth_service.observability.telemetry import Telemetry

access_log = logging.getLogger("auth_service.access")

# OpenTelemetry's HTTP conventions: a method outside these is "_OTHER" in labels and attributes, so
# a client sending made-up methods cannot mint a new label value (a new time series) per request.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "_OTHER"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


# Load generators mark their traffic so it can be filtered out in the trace viewer: either the
# header, or the W3C baggage entry `loadtest=1` (which also reaches anything downstream).
LOAD_TEST_HEADER = b"x-load-test"
LOAD_TEST_BAGGAGE = "loadtest"
UNMATCHED_ROUTE = "unmatched"
TRACEPARENT = b"traceparent"


class AsgiHeaders(Getter[list[tuple[bytes, bytes]]]):
    """Reads propagation headers (traceparent, tracestate, baggage) from ASGI's header list."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.encode()
        values = [value.decode("latin-1") for name, value in carrier if name == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


ASGI_HEADERS = AsgiHeaders()


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def is_load_test(headers: list[tuple[bytes, bytes]], ctx: context.Context) -> bool:
    if baggage.get_baggage(LOAD_TEST_BAGGAGE, ctx) is not None:
        return True
    return any(name == LOAD_TEST_HEADER for name, _ in headers)


def start_server_span(
    tracer: trace.Tracer,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    http_version: str,
    *,
    chosen: bool,
    start_time: int | None = None,
) -> tuple[trace.Span, context.Context]:
    """A request's server span (named when it ends, by `end_server_span`) and its upstream context.

    `chosen`: the request middleware or the fast lane drew this request for a new trace (see
    tracing.edge_ratio); otherwise the span continues upstream context, or the SDK's sampler decides.
    """
    parent = propagate.extract(headers, getter=ASGI_HEADERS)
    attributes: dict[str, Any] = {EDGE_CHOSEN: True} if chosen else {}
    attributes |= {
        "http.request.method": method_label(method),
        "url.path": path,
        "network.protocol.version": http_version,
    }
    if method not in KNOWN_METHODS:
        attributes["http.request.method_original"] = method
    if is_load_test(headers, parent):
        attributes["load_test"] = True
    span = tracer.start_span(
        _span_method(method), context=parent, kind=SpanKind.SERVER, attributes=attributes, start_time=start_time
    )
    return span, parent


class TelemetryMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        telemetry = self.telemetry
        started = time.perf_counter()
        status = 500
        span, token = self._start_span(scope)
        traceresponse = traceresponse_header(span)

        answered = False

        async def send_observed(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                if traceresponse is not None:
                    message["headers"] = [*message.get("headers", ()), (b"traceresponse", traceresponse)]
            await send(message)

        profiling = telemetry.slow_requests.begin()
        try:
            await self.app(scope, receive, send_observed)
        except asyncio.CancelledError:
            if not answered:
                # uvicorn cancels what is still running when the graceful timeout ends, and answers
                # 500; the request did not fail, the instance went away: its transaction rolls back
                # and the client may retry elsewhere.
                status = 503
                message = "the instance stopped before answering; retry"
                cut_off = ServiceUnavailable("shutting_down", message, telemetry.settings.retry_after_seconds)
                await error_response(cut_off)(scope, receive, send)
                # Answered: the cancellation has done its work. Raised further, uvicorn would log
                # it as an "Exception in ASGI application" with a traceback, for an intended cut-off.
                return
            raise
        except BaseException as exc:
            if span is not None:
                span.record_exception(exc)
            raise
        finally:
            self._finish(scope, status, time.perf_counter() - started, span, token, profiling)

    def _start_span(self, scope: Scope) -> tuple[trace.Span | None, object | None]:
        tracer = self.telemetry.tracer
        if tracer is None:
            return None, None
        chosen = False
        ratio = self.telemetry.edge_ratio
        if ratio is not None and not has_trace_context(scope["headers"]):
            # The fast lane (api/lane.py) may have drawn already for a request it passed on.
            drawn: bool | None = scope.get(EDGE_SAMPLED)
            chosen = random.random() < ratio if drawn is None else drawn  # noqa: S311 - sampling, not security
            if not chosen:
                # Nothing to record and nothing attached: the root sampler drops any span under it.
                return None, None
        span, parent = start_server_span(
            tracer, scope["method"], scope["path"], scope["headers"], scope.get("http_version", "1.1"), chosen=chosen
        )
        return span, context.attach(trace.set_span_in_context(span, parent))

    def _finish(
        self, scope: Scope, status: int, seconds: float, span: trace.Span | None, token: Any, profiling: Any
    ) -> None:
        method, route = method_label(scope["method"]), route_template(scope)
        trace_id = sampled_trace_id(span)
        self.telemetry.observe_request(method, route, status, seconds, trace_id)
        if span is not None:
            end_server_span(span, method, route, status)
        if token is not None:
            context.detach(token)
        if profiling is not None:
            self.telemetry.slow_requests.end(
                profiling, method=method, route=route, status=status, duration_seconds=seconds, trace_id=trace_id
            )
        ratio = self.telemetry.access_log_ratio
        if ratio and random.random() < ratio:  # noqa: S311 - sampling, not security
            log_access(method, scope["path"], route, status, seconds)


def log_access(method: str, path: str, route: str, status: int, seconds: float) -> None:
    access_log.info(
        "%s %s %d %.2fms",
        method,
        path,
        status,
        seconds * 1000,
        extra={"http_route": route, "status": status, "duration_ms": round(seconds * 1000, 3)},
    )


def has_trace_context(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == TRACEPARENT for name, _ in headers)


def sampled_trace_id(span: trace.Span | None) -> str | None:
    if span is None:
        return None
    span_context = span.get_span_context()
    return format(span_context.trace_id, "032x") if span_context.trace_flags.sampled else None


def traceresponse_header(span: trace.Span | None) -> bytes | None:
    """W3C Trace Context's response header, so a client can find its request in the trace viewer."""
    if span is None:
        return None
    ctx = span.get_span_context()
    if not ctx.trace_flags.sampled:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01".encode()


def _span_method(method: str) -> str:
    """The method part of a span name: "HTTP" for an unknown one (the conventions' span name rule)."""
    return method if method in KNOWN_METHODS else "HTTP"


def end_server_span(span: trace.Span, method: str, route: str, status: int) -> None:
    if span.is_recording():
        span.update_name(f"{_span_method(method)} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
    span.end()
