"""Export over gRPC too, a provider made per worker at start-up, and sampled access logs."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from auth_service.app import create_app
from tests.utils.app import make_settings, serve


class TraceCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC trace receiver: keeps the names of the spans it is sent."""

    def __init__(self) -> None:
        self.span_names: list[str] = []

    async def Export(self, request: Any, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.span_names += [span.name for span in scope_spans.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
async def grpc_collector() -> AsyncIterator[tuple[TraceCollector, int]]:
    collector, server = TraceCollector(), grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield collector, port
    await server.stop(grace=None)


async def test_spans_are_exported_over_grpc(settings_for: Any, grpc_collector: tuple[TraceCollector, int]) -> None:
    collector, port = grpc_collector
    settings = settings_for(
        otel_traces_exporter="otlp",
        otel_exporter_otlp_protocol="grpc",
        otel_exporter_otlp_endpoint=f"http://127.0.0.1:{port}",
        otel_traces_sampler_arg=1.0,
        otel_bsp_schedule_delay_ms=50,
    )
    async with serve(settings) as app:
        assert (await app.client.get("/healthz")).status_code == 200
        for _ in range(100):
            if "GET /healthz" in collector.span_names:
                break
            await asyncio.sleep(0.05)
    assert "GET /healthz" in collector.span_names


def span_threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith("OtelBatch")}


async def test_the_tracer_provider_is_made_when_the_worker_starts_never_before(database_url: str) -> None:
    """A provider made before a fork would leave the child with a dead export thread: none exists until start-up."""
    before = span_threads()
    settings = make_settings(database_url, otel_traces_exporter="console", otel_traces_sampler_arg=0.0)
    app = create_app(settings)
    assert app.state.telemetry.provider is None
    assert span_threads() == before
    async with serve(settings) as running:
        assert running.services.telemetry.provider is not None
        assert len(span_threads() - before) == 1
    assert span_threads() == before


async def test_access_logs_are_sampled(settings_for: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="auth_service.access")
    async with serve(settings_for(access_log_sample_ratio=1.0)) as app:
        for _ in range(5):
            await app.client.get("/healthz")
    logged = [r for r in caplog.records if r.name == "auth_service.access"]
    assert len(logged) == 5
    assert logged[0].http_route == "/healthz" and logged[0].status == 200  # type: ignore[attr-defined]
    caplog.clear()
    async with serve(settings_for(access_log_sample_ratio=0.0)) as app:
        for _ in range(5):
            await app.client.get("/healthz")
    assert [r for r in caplog.records if r.name == "auth_service.access"] == []
