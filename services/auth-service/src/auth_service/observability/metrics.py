"""Prometheus metrics of one process: RED per route, and the state of every resource.

One registry per application (not the global one), so that two instances in one test process,
or a reload, never share or collide. Resource gauges are read at scrape time from the counters the
resources keep anyway, so the hot path pays nothing for them.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from auth_service.security.counters import MirroredCounters

if TYPE_CHECKING:
    from auth_service.services import Services

# From 100 µs to 1 s: a cached read takes well under a millisecond, a login tens of milliseconds.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
WAIT_BUCKETS = (0.00001, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PAUSE_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1)


class Metrics:
    """Every metric of the service, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in (ProcessCollector, GCCollector, PlatformCollector):
            collector(registry=self.registry)
        # Dashboards and alerts (RED); rate(..._count) per pod is the requests-per-second the HPA scales on.
        self.request_duration = RequestLatencies(LATENCY_BUCKETS)
        self.registry.register(self.request_duration)
        self.rejected = Counter(
            "http_server_requests_rejected",
            "Requests refused at the door: overloaded and bodies_arriving (503), body_too_large (413), "
            "header_timeout and body_timeout (408), headers_too_large (431), send_timeout (a client that "
            "did not read its response, cut). Alert on overloaded.",
            ["reason"],
            registry=self.registry,
        )
        self.db_acquire_wait = Histogram(
            "db_pool_acquire_wait_seconds",
            "Time to get a pooled database connection. Alert when high: the pool is too small or the DB slow.",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.hash_wait = Histogram(
            "password_hash_queue_wait_seconds",
            "Time a password operation waited for an argon2 worker. Capacity planning for logins.",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "event_loop_lag_seconds",
            "How late the event loop ran a timer. Alert when high: something blocks the loop.",
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.gc_pause = Histogram(
            "python_gc_pause_seconds",
            "Duration of each garbage collection by generation. Dashboards; tail-latency investigations.",
            ["generation"],
            buckets=PAUSE_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float, trace_id: str | None) -> None:
        self.request_duration.observe((method, route, f"{status // 100}xx"), seconds, trace_id)

    def watch_services(self, services: Services) -> None:
        self.registry.register(ServicesCollector(services))


class _Series:
    __slots__ = ("counts", "exemplars", "total")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.exemplars: list[tuple[str, float, float] | None] = [None] * buckets
        self.total = 0.0


class RequestLatencies(Collector):
    """The request-latency histogram, kept in plain lists and exposed at scrape time.

    Written here rather than with prometheus_client's Histogram: its observe() walks the buckets in
    Python under a lock and handles exemplars per call (about 1 µs, a fifth of a cached read's
    whole cost in the application); here one C bisect and two list updates. Only the event-loop
    thread observes and collects (the admin server runs on the same loop), so no lock is needed.
    """

    name = "http_server_request_duration_seconds"
    documentation = (
        "Request latency by method, route template and status class. Dashboards, SLO alerts; "
        "its _count rate is the requests-per-second metric of the HPA."
    )

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = list(buckets)
        self.series: dict[tuple[str, str, str], _Series] = {}

    def observe(self, labels: tuple[str, str, str], seconds: float, trace_id: str | None) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = _Series(len(self.bounds) + 1)
        index = bisect.bisect_left(self.bounds, seconds)  # the first bucket whose bound is >= seconds
        series.counts[index] += 1
        series.total += seconds
        if trace_id is not None:
            series.exemplars[index] = (trace_id, seconds, time.time())

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["method", "route", "status_class"])
        bounds = [*(format(bound, "g") for bound in self.bounds), "+Inf"]
        for labels, series in self.series.items():
            buckets: list[Any] = []
            cumulative = 0
            for bound, count, exemplar in zip(bounds, series.counts, series.exemplars, strict=True):
                cumulative += count
                if exemplar is None:
                    buckets.append((bound, cumulative))
                else:
                    buckets.append((bound, cumulative, Exemplar({"trace_id": exemplar[0]}, exemplar[1], exemplar[2])))
            family.add_metric(list(labels), buckets, sum_value=series.total)
        yield family


class ServicesCollector(Collector):
    """Pool, cache, listener, Redis, hashing and tracing state, read at scrape time."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        yield from self._pool()
        yield from self._cache()
        yield from self._hashing()
        yield from self._limits()
        yield from self._tracing()

    def _pool(self) -> Iterator[Metric]:
        pool = self.services.db.pool_status()
        yield _gauge(
            "db_pool_size", "Connections the write pool keeps at most, overflow aside. Dashboards.", pool["size"]
        )
        yield _gauge("db_pool_open", "Connections the write pool holds open now. Dashboards.", pool["open"])
        yield _gauge(
            "db_pool_connections_in_use", "Connections checked out now. Alert near size+overflow.", pool["checked_out"]
        )
        yield _gauge(
            "db_pool_overflow", "Connections open beyond the pool size (0 when none). Dashboards.", pool["overflow"]
        )
        yield _gauge(
            "db_pool_waiters", "Requests waiting for a write connection. Near the bound: 503s.", pool["waiting"]
        )
        yield _gauge("db_read_pool_size", "Connections the read pool may open. Dashboards.", pool["read_size"])
        yield _gauge("db_read_pool_open", "Connections the read pool holds open now. Dashboards.", pool["read_open"])
        yield _gauge(
            "db_read_pool_connections_in_use",
            "Read connections checked out now. Alert near its size.",
            pool["read_in_use"],
        )
        yield _gauge(
            "db_read_pool_waiters",
            "Requests waiting for a read connection. Near the bound: 503s.",
            pool["read_waiting"],
        )
        family = CounterMetricFamily(
            "db_pool_exhausted",
            "Requests refused 503 db_pool_exhausted (waiters at their bound, or none freed in time). Alert.",
            labels=["pool"],
        )
        family.add_metric(["write"], pool["rejected"])
        family.add_metric(["read"], pool["read_rejected"])
        yield family
        overloaded = GaugeMetricFamily(
            "db_pool_overloaded",
            "1 while the pool is overloaded: its waiters were at their bound, and refusals go on. Dashboards.",
            labels=["pool"],
        )
        overloaded.add_metric(["write"], int(pool["overloaded"]))
        overloaded.add_metric(["read"], int(pool["read_overloaded"]))
        yield overloaded

    def _cache(self) -> Iterator[Metric]:
        cache, listener = self.services.cache, self.services.listener
        stats = cache.stats
        yield _counter("cache_hits", "Reads answered by the in-process cache. Dashboards (hit ratio).", stats.hits)
        yield _counter("cache_misses", "Reads the in-process cache did not hold. Dashboards (hit ratio).", stats.misses)
        yield _counter("cache_loads", "Loads made for misses and refreshes (one per key at a time).", stats.loads)
        yield _counter(
            "cache_refreshes", "Keys in use reloaded in the background before they expired.", stats.refreshes
        )
        yield _counter("cache_evictions", "Entries pushed out by the size bounds. Tune the bounds.", stats.evictions)
        yield _counter("cache_invalidations", "Entries dropped because the user changed.", stats.invalidations)
        yield _counter("cache_invalidations_received", "NOTIFYs received from the database.", listener.received)
        yield _gauge("cache_entries", "Entries held. Dashboards.", len(cache))
        yield _gauge("cache_bytes", "Bytes held, as the cache counts them. Dashboards.", cache.bytes)
        yield _gauge(
            "cache_listener_connected", "1 while invalidations arrive; alert on 0.", listener.connected.is_set()
        )
        yield _counter("cache_listener_reconnects", "Times the listener reconnected.", listener.reconnects)
        l2 = self.services.l2
        if l2 is not None:
            yield _gauge("cache_redis_available", "0 while Redis is skipped after a fault. Alert.", l2.available)
            yield _counter("cache_redis_faults", "Redis calls that failed or timed out.", l2.faults)

    def _hashing(self) -> Iterator[Metric]:
        hasher = self.services.hasher
        yield _gauge("password_hash_in_progress", "Password operations admitted (running or queued).", hasher.admitted)
        queued = max(0, hasher.admitted - hasher.workers)
        yield _gauge("password_hash_queue_depth", "Password operations waiting for a worker. Capacity.", queued)
        yield _counter(
            "password_hash_rejected", "Password operations refused (503): queue full. Alert.", hasher.rejected
        )

    def _limits(self) -> Iterator[Metric]:
        limits = self.services.limits
        family = CounterMetricFamily(
            "login_limit_refusals",
            "Logins (too_many_failed_logins) and signups (too_many_signups) refused with 429. Alert on a rate.",
            labels=["kind"],
        )
        family.add_metric(["login"], limits.refused_logins)
        family.add_metric(["signup"], limits.refused_signups)
        yield family
        store = limits.store
        if isinstance(store, MirroredCounters):
            yield _gauge(
                "login_counters_redis_read",
                "1 while Redis answers the login counters' reads; 0 while PostgreSQL does, after a fault. Alert.",
                store.reads_from_redis,
            )
            yield _counter(
                "login_counters_redis_faults",
                "Login and signup counter calls to Redis that failed or timed out.",
                store.faults,
            )

    def _tracing(self) -> Iterator[Metric]:
        telemetry = self.services.telemetry
        admission = telemetry.admission
        yield _gauge(
            "http_server_requests_in_flight",
            "Requests admitted and being served now. Dashboards; compare with AUTH_MAX_IN_FLIGHT for saturation.",
            0 if admission is None else admission.in_flight,
        )
        if admission is not None:
            yield _gauge(
                "http_server_request_bodies_arriving_bytes",
                "Bytes of request bodies not yet whole (not admitted); compare with AUTH_HTTP_MAX_ARRIVING_BODY_BYTES.",
                admission.arriving_bytes,
            )
        yield _counter(
            "http_server_fast_lane_responses",
            "Requests answered as they were parsed (api/lane.py), of all in the latency histogram. Dashboards.",
            telemetry.lane_responses,
        )
        dropped = telemetry.dropped_spans
        family = CounterMetricFamily(
            "tracing_spans_dropped", "Sampled spans lost before the collector, by reason. Alert.", labels=["reason"]
        )
        family.add_metric(["queue_full"], dropped.queue_full)
        family.add_metric(["export_failed"], dropped.export_failed)
        yield family
        recorder = self.services.telemetry.slow_requests
        yield _counter("slow_requests_captured", "Slow requests whose profile was kept.", recorder.kept)
        yield _counter(
            "slow_requests_profile_cut",
            "Profiles stopped at their length bound, their request still running.",
            recorder.cut_short,
        )
        yield _counter(
            "slow_requests_skipped_shedding",
            "Requests not profiled because the service had just refused work (503). Dashboards.",
            recorder.skipped_shedding,
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=float(value))


class GcPauseTimer:
    """Times every collection through gc.callbacks (CPython calls them at its start and stop)."""

    def __init__(self, histogram: Histogram) -> None:
        self.series = {generation: histogram.labels(str(generation)) for generation in range(3)}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.series[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> Callable[[], None]:
        gc.callbacks.append(self)
        return lambda: gc.callbacks.remove(self)


async def watch_loop_lag(histogram: Histogram, interval: float) -> None:
    """Sleep `interval` again and again; how much later than asked the loop woke up is its lag."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        histogram.observe(max(0.0, time.perf_counter() - started - interval))
