"""Traces reach a real OTLP/HTTP endpoint over a socket, with the span tree and context they should have."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

from auth_service.observability.logs import JsonFormatter
from auth_service.observability.tracing import EDGE_CHOSEN
from tests.utils.app import RunningApp, create_user, serve
from tests.utils.otlp_receiver import ReceivedSpan, otlp_receiver

USER_ROUTE = "GET /v1/users/{user_id}"


def traced(settings_for: Any, endpoint: str, ratio: float = 1.0, **overrides: Any) -> Any:
    values = {
        "otel_traces_exporter": "otlp",
        "otel_exporter_otlp_endpoint": endpoint,
        "otel_traces_sampler": "parentbased_traceidratio",
        "otel_traces_sampler_arg": ratio,
        "otel_bsp_schedule_delay_ms": 50,
    }
    return settings_for(**{**values, **overrides})


@pytest.fixture
async def receiver() -> AsyncIterator[Any]:
    async with otlp_receiver() as running:
        yield running


@pytest.fixture
async def traced_app(settings_for: Any, receiver: Any) -> AsyncIterator[RunningApp]:
    async with serve(traced(settings_for, receiver.endpoint)) as app:
        yield app


def trace_of(response: httpx.Response) -> tuple[str, str]:
    """(trace id, server span id) from the W3C traceresponse header."""
    _, trace_id, span_id, flags = response.headers["traceresponse"].split("-")
    assert flags == "01"
    return trace_id, span_id


def only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    named = [span for span in spans if span.name == name]
    assert len(named) == 1, (name, [span.name for span in spans])
    return named[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [span for span in spans if span.parent_span_id == parent.span_id]


async def spans_of(receiver: Any, trace_id: str, expected: set[str]) -> list[ReceivedSpan]:
    def complete(spans: list[ReceivedSpan]) -> bool:
        return expected <= {span.name for span in spans if span.trace_id == trace_id}

    await receiver.wait_for_spans(complete, timeout=10)
    return receiver.by_trace(trace_id)


async def test_a_cache_miss_is_server_span_then_cache_lookup_then_database_query(
    traced_app: RunningApp, receiver: Any
) -> None:
    user = await create_user(traced_app.client)
    response = await traced_app.client.get(f"/v1/users/{user['id']}")
    assert response.status_code == 200
    trace_id, server_span_id = trace_of(response)
    spans = await spans_of(receiver, trace_id, {USER_ROUTE, "cache.lookup"})

    server = only(spans, USER_ROUTE)
    assert (server.span_id, server.kind, server.parent_span_id) == (server_span_id, "SERVER", "")
    assert server.attributes["http.route"] == "/v1/users/{user_id}"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["url.path"] == f"/v1/users/{user['id']}"
    assert server.attributes["cache.hit"] is False
    lookup = only(children(spans, server), "cache.lookup")
    (query,) = children(spans, lookup)
    assert query.kind == "CLIENT"
    assert query.attributes["db.system"] == "postgresql"
    assert "FROM users WHERE id" in str(query.attributes.get("db.statement", ""))
    assert server.resource["service.name"] == "auth-service"


@pytest.mark.parametrize("fast_lane", [True, False])
async def test_a_cache_hit_is_the_server_span_alone_marked_as_a_hit(
    settings_for: Any, receiver: Any, fast_lane: bool
) -> None:
    """The same span whether the fast lane answers the hit (api/lane.py) or the ASGI path does."""
    async with serve(traced(settings_for, receiver.endpoint, fast_lane=fast_lane)) as app:
        user = await create_user(app.client)
        await app.client.get(f"/v1/users/{user['id']}")
        lane_before = app.services.telemetry.lane_responses
        response = await app.client.get(f"/v1/users/{user['id']}")
        answered_in_lane = app.services.telemetry.lane_responses - lane_before
    assert answered_in_lane == (1 if fast_lane else 0)
    trace_id, server_span_id = trace_of(response)
    (server,) = await spans_of(receiver, trace_id, {USER_ROUTE})
    assert (server.span_id, server.kind, server.parent_span_id) == (server_span_id, "SERVER", "")
    assert server.attributes == {
        "http.request.method": "GET",
        "url.path": f"/v1/users/{user['id']}",
        "network.protocol.version": "1.1",
        "http.route": "/v1/users/{user_id}",
        "http.response.status_code": 200,
        "cache.hit": True,
    }
    assert 0 < server.end_ns - server.start_ns < 1_000_000_000


async def test_a_miss_with_redis_shows_the_redis_calls_under_the_cache_lookup(
    settings_for: Any, receiver: Any, redis_url: str
) -> None:
    async with serve(traced(settings_for, receiver.endpoint, redis_url=redis_url)) as app:
        user = await create_user(app.client)
        response = await app.client.get(f"/v1/users/{user['id']}")
        trace_id, _ = trace_of(response)
        # GET and PTTL in one pipeline: the copy's remaining TTL bounds how long it is kept in process.
        spans = await spans_of(receiver, trace_id, {USER_ROUTE, "cache.lookup", "GET PTTL", "SET"})
    lookup = only(spans, "cache.lookup")
    redis_calls = [span for span in children(spans, lookup) if span.attributes.get("db.system") == "redis"]
    assert sorted(span.name for span in redis_calls) == ["GET PTTL", "SET"]
    assert any(span.attributes.get("db.system") == "postgresql" for span in children(spans, lookup))


async def test_a_sampled_upstream_trace_is_continued(traced_app: RunningApp, receiver: Any) -> None:
    upstream_trace, upstream_span = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{upstream_trace}-{upstream_span}-01"}
    response = await traced_app.client.get("/v1/auth/verify", headers=headers)
    assert response.status_code == 401
    trace_id, _ = trace_of(response)
    assert trace_id == upstream_trace
    spans = await spans_of(receiver, upstream_trace, {"GET /v1/auth/verify"})
    assert only(spans, "GET /v1/auth/verify").parent_span_id == upstream_span


async def test_an_upstream_decision_not_to_sample_is_respected(traced_app: RunningApp, receiver: Any) -> None:
    upstream_trace = secrets.token_hex(16)
    headers = {"traceparent": f"00-{upstream_trace}-{secrets.token_hex(8)}-00"}
    response = await traced_app.client.get("/healthz", headers=headers)
    assert "traceresponse" not in response.headers
    marker = await traced_app.client.get("/healthz")  # a sampled request, flushed after the first
    marker_trace, _ = trace_of(marker)
    await spans_of(receiver, marker_trace, {"GET /healthz"})
    assert receiver.by_trace(upstream_trace) == []


async def test_load_test_traffic_is_marked_for_filtering(traced_app: RunningApp, receiver: Any) -> None:
    by_baggage = await traced_app.client.get("/healthz", headers={"baggage": "loadtest=1"})
    by_header = await traced_app.client.get("/healthz", headers={"x-load-test": "1"})
    plain = await traced_app.client.get("/healthz")
    for response, marked in ((by_baggage, True), (by_header, True), (plain, False)):
        trace_id, _ = trace_of(response)
        (server,) = await spans_of(receiver, trace_id, {"GET /healthz"})
        assert server.attributes.get("load_test", False) is marked


async def test_a_login_shows_the_hashing_wait_and_work(traced_app: RunningApp, receiver: Any) -> None:
    user = await create_user(traced_app.client)
    credentials = {"email": user["email"], "password": user["password"]}
    response = await traced_app.client.post("/v1/auth/token", json=credentials)
    trace_id, server_span_id = trace_of(response)
    spans = await spans_of(receiver, trace_id, {"POST /v1/auth/token", "password.queue_wait", "password.verify"})
    wait, work = only(spans, "password.queue_wait"), only(spans, "password.verify")
    assert wait.parent_span_id == work.parent_span_id == server_span_id
    assert wait.end_ns <= work.start_ns and work.end_ns - work.start_ns > 1_000_000  # argon2 takes ms


async def test_the_span_name_is_the_route_template_never_the_raw_path(traced_app: RunningApp, receiver: Any) -> None:
    response = await traced_app.client.get("/no/such/path/12345")
    assert response.status_code == 404
    trace_id, _ = trace_of(response)
    (server,) = await spans_of(receiver, trace_id, {"GET unmatched"})
    assert "12345" not in server.name


async def test_sampling_ratio_zero_records_nothing(settings_for: Any, receiver: Any) -> None:
    async with serve(traced(settings_for, receiver.endpoint, ratio=0.0)) as app:
        user = await create_user(app.client)
        for _ in range(20):
            response = await app.client.get(f"/v1/users/{user['id']}")
            assert "traceresponse" not in response.headers
        await asyncio.to_thread(_flush, app.services.telemetry.provider)
    assert receiver.spans == []


async def test_the_ratio_decides_how_many_new_traces_are_recorded(settings_for: Any, receiver: Any) -> None:
    async with serve(traced(settings_for, receiver.endpoint, ratio=0.25)) as app:
        responses = [await app.client.get("/healthz") for _ in range(400)]
    sampled = sum("traceresponse" in response.headers for response in responses)
    assert 60 <= sampled <= 140, sampled  # 100 expected; binomial sd ~8.7, so far outside ±4.5 sd fails


async def test_only_requests_chosen_at_the_edge_leave_spans(settings_for: Any, receiver: Any) -> None:
    """About half the reads are chosen; the database spans of the others, which have no parent, are dropped."""
    async with serve(traced(settings_for, receiver.endpoint, ratio=0.5)) as app:
        misses = [await app.client.get(f"/v1/users/{uuid.uuid4()}") for _ in range(40)]
        await asyncio.to_thread(_flush, app.services.telemetry.provider)
    assert all(response.status_code == 404 for response in misses)
    chosen = {trace_of(response)[0] for response in misses if "traceresponse" in response.headers}
    assert 5 <= len(chosen) <= 35, len(chosen)  # 20 expected; binomial sd ~3.2
    assert {span.trace_id for span in receiver.spans} == chosen
    for trace_id in chosen:
        spans = receiver.by_trace(trace_id)
        server = only(spans, USER_ROUTE)
        assert server.parent_span_id == ""
        assert server.attributes["http.request.method"] == "GET"
        assert EDGE_CHOSEN not in server.attributes  # the sampler's mark is not a span attribute
        assert any(span.attributes.get("db.system") == "postgresql" for span in spans)


async def test_spans_still_queued_at_shutdown_are_flushed(settings_for: Any, receiver: Any) -> None:
    settings = traced(settings_for, receiver.endpoint, otel_bsp_schedule_delay_ms=60_000)
    async with serve(settings) as app:
        trace_id, _ = trace_of(await app.client.get("/healthz"))
        assert receiver.by_trace(trace_id) == []  # the next scheduled export is a minute away
    await spans_of(receiver, trace_id, {"GET /healthz"})


def _flush(provider: TracerProvider | None) -> None:
    assert provider is not None
    assert provider.force_flush(5000)


async def test_dropped_spans_are_counted_while_the_collector_is_unreachable(settings_for: Any) -> None:
    async with otlp_receiver() as gone:
        endpoint = gone.endpoint
    settings = traced(
        settings_for,
        endpoint,
        otel_exporter_otlp_timeout_ms=200,
        otel_bsp_max_queue_size=16,
        otel_bsp_max_export_batch_size=8,
    )
    async with serve(settings) as app:
        for _ in range(60):
            assert (await app.client.get("/healthz")).status_code == 200
        admin = f"http://127.0.0.1:{app.services.telemetry.admin_port}/metrics"
        dropped = 0.0
        for _ in range(100):
            text = (await app.client.get(admin)).text
            dropped = sum(_samples(text, "tracing_spans_dropped_total").values())
            if dropped > 0:
                break
            await asyncio.sleep(0.1)
        assert dropped > 0
        assert (await app.client.get("/readyz")).status_code == 200


def _samples(text: str, name: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def test_log_lines_are_json_with_the_current_trace_and_span() -> None:
    import orjson

    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    record = logging.LogRecord("auth_service.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    record.http_route = "/v1/me"
    with tracer.start_as_current_span("request") as span:
        line = orjson.loads(JsonFormatter().format(record))
    context = span.get_span_context()
    assert line["message"] == "hello world"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    assert line["http_route"] == "/v1/me"
    assert line["level"] == "INFO"
    provider.shutdown()
