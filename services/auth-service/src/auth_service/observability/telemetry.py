"""Everything telemetry of one process, built at app creation and started in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from auth_service.observability.metrics import GcPauseTimer, Metrics, watch_loop_lag
from auth_service.observability.profiling import SlowRequestRecorder
from auth_service.observability.tracing import DroppedSpans, build_tracer_provider, edge_ratio, get_tracer
from auth_service.settings import Settings

if TYPE_CHECKING:
    from auth_service.services import Services


class AdmissionCounts(Protocol):
    in_flight: int  # requests admitted and not yet answered
    arriving_bytes: int  # of request bodies not yet whole


class Telemetry:
    """Metrics exist from the start; the tracer only once the worker runs (see `tracing`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.dropped_spans = DroppedSpans()
        self.slow_requests = SlowRequestRecorder(
            threshold_seconds=settings.slow_request_threshold_ms / 1000,
            sample_ratio=settings.slow_request_sample_ratio,
            max_per_second=settings.slow_request_max_per_second,
            capacity=settings.slow_request_capacity,
            max_seconds=settings.slow_request_profile_max_seconds,
        )
        self.access_log_ratio = settings.access_log_sample_ratio
        # The admission control in front of the application (app.front_door sets it): its count of
        # admitted requests is the in-flight figure. This middleware, in front of it, also counted
        # requests whose bodies were still arriving (500 of them read as 500 in flight of 250 slots).
        self.admission: AdmissionCounts | None = None
        self.lane_responses = 0  # a plain int on the hot path, exported at scrape time: requests the fast lane answered
        self.provider: TracerProvider | None = None
        self.tracer: trace.Tracer | None = None
        self.edge_ratio: float | None = None
        self.admin_port: int | None = None

    def observe_request(self, method: str, route: str, status: int, seconds: float, trace_id: str | None) -> None:
        """A request answered: the latency metric; and a 503 holds off the slow-request profiles."""
        self.metrics.observe_request(method, route, status, seconds, trace_id)
        if status == 503:
            self.slow_requests.hold_off()

    @contextlib.asynccontextmanager
    async def tracing(self) -> AsyncIterator[None]:
        """The tracer provider and the library instrumentations, for this process; flushed at the end."""
        self.provider = build_tracer_provider(self.settings, self.dropped_spans)
        self.edge_ratio = edge_ratio(self.settings)
        self.tracer = get_tracer(self.provider)
        uninstrument = _instrument_libraries(self.provider)
        try:
            yield
        finally:
            uninstrument()
            if self.provider is not None:
                # The last export runs in the calling thread: keep it off the event loop.
                await asyncio.to_thread(self.provider.shutdown)
            self.tracer = None

    @contextlib.asynccontextmanager
    async def serving(self, services: Services) -> AsyncIterator[None]:
        """Resource metrics, GC and loop watches, and the admin port."""
        from auth_service.observability.admin import bound_port, serving_admin

        self.metrics.watch_services(services)
        remove_gc_timer = GcPauseTimer(self.metrics.gc_pause).install()
        lag = asyncio.create_task(watch_loop_lag(self.metrics.loop_lag, self.settings.loop_lag_interval_seconds))
        try:
            async with serving_admin(self, self.settings) as admin:
                self.admin_port = bound_port(admin)
                yield
        finally:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag
            remove_gc_timer()


def _instrument_libraries(provider: TracerProvider | None) -> Callable[[], None]:
    """Spans for asyncpg queries and Redis calls through the OpenTelemetry instrumentations."""
    if provider is None:
        return lambda: None
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    instrumentors: list[BaseInstrumentor] = [AsyncPGInstrumentor(), RedisInstrumentor()]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)

    def uninstrument() -> None:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()

    return uninstrument
