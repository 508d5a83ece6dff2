"""The OTLP receiver against the real SDK exporter: what it decodes is what the SDK sent, and its failures are real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AnyValue

from tests.utils.otlp_receiver import ReceivedSpan, otlp_receiver

RESOURCE = Resource.create({"service.name": "receiver-test"})
# Every type an attribute can have; SDK 1.45 also takes bytes, maps and mixed arrays.
ATTRIBUTES: dict[str, AnyValue] = {
    "text": "x",
    "flag": True,
    "count": 7,
    "ratio": 1.5,
    "texts": ("a", "b"),
    "flags": (True, False),
    "counts": (1, 2),
    "ratios": (0.5, 2.0),
    "raw": b"\x00\x01",
    "map": {"k": 1, "nested": {"x": "y"}},
    "mixed": [1, "a"],
}
DECODED = {
    **ATTRIBUTES,
    "texts": ["a", "b"],
    "flags": [True, False],
    "counts": [1, 2],
    "ratios": [0.5, 2.0],
}


def batch_provider(exporter: OTLPSpanExporter) -> TracerProvider:
    """A standalone provider; the batch worker never wakes on its own, so only force_flush exports."""
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    return provider


def finished_spans(*names: str) -> Sequence[ReadableSpan]:
    """Ended SDK spans, to hand to an exporter's export() directly."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for name in names:
        provider.get_tracer("tests.otlp").start_span(name).end()
    provider.shutdown()
    return memory.get_finished_spans()


def only(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    [span] = [span for span in spans if span.name == name]
    return span


async def test_a_parent_and_its_child_arrive_decoded() -> None:
    async with otlp_receiver() as receiver:
        provider = batch_provider(OTLPSpanExporter(endpoint=receiver.traces_url, timeout=2))
        tracer = provider.get_tracer("tests.otlp")
        try:
            with tracer.start_as_current_span("parent", kind=SpanKind.SERVER, attributes=ATTRIBUTES) as parent:
                parent.add_event("checked", {"n": 1})
                parent.set_status(Status(StatusCode.ERROR, "boom"))
                with tracer.start_as_current_span("child", kind=SpanKind.CLIENT):
                    pass
            # The exporter blocks its thread; in the loop's thread it would block this receiver.
            assert await asyncio.to_thread(provider.force_flush)
            spans = await receiver.wait_for_spans(lambda spans: len(spans) == 2, timeout=2)
        finally:
            await asyncio.to_thread(provider.shutdown)

    sent = parent.get_span_context()
    received_parent, received_child = only(spans, "parent"), only(spans, "child")
    assert received_parent.trace_id == f"{sent.trace_id:032x}"
    assert received_parent.span_id == f"{sent.span_id:016x}"
    assert received_parent.parent_span_id == ""
    assert received_child.trace_id == received_parent.trace_id
    assert received_child.parent_span_id == received_parent.span_id
    assert len(received_child.span_id) == 16 and received_child.span_id != received_parent.span_id
    assert (received_parent.kind, received_child.kind) == ("SERVER", "CLIENT")
    assert received_parent.attributes == DECODED
    assert received_child.attributes == {}
    assert (received_parent.status_code, received_parent.status_message) == ("ERROR", "boom")
    assert received_child.status_code == "UNSET"
    assert received_parent.events == [("checked", {"n": 1})]
    assert received_parent.start_ns <= received_child.start_ns <= received_child.end_ns <= received_parent.end_ns
    assert received_parent.resource["service.name"] == "receiver-test"
    assert received_parent.resource["telemetry.sdk.language"] == "python"
    assert received_parent.scope == "tests.otlp"
    assert receiver.by_trace(received_parent.trace_id) == spans
    assert receiver.children_of(received_parent) == [received_child]
    assert receiver.children_of(received_child) == []
    assert receiver.requests == 1
    assert receiver.request_headers[0]["content-type"] == "application/x-protobuf"


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.Deflate])
async def test_compressed_bodies_are_decoded(compression: Compression) -> None:
    async with otlp_receiver() as receiver:
        provider = batch_provider(OTLPSpanExporter(endpoint=receiver.traces_url, timeout=2, compression=compression))
        try:
            provider.get_tracer("tests.otlp").start_span("compressed").end()
            assert await asyncio.to_thread(provider.force_flush)
            [span] = await receiver.wait_for_spans(lambda spans: len(spans) == 1, timeout=2)
        finally:
            await asyncio.to_thread(provider.shutdown)

    assert (span.name, span.kind, span.resource["service.name"]) == ("compressed", "INTERNAL", "receiver-test")
    assert receiver.request_headers[0]["content-encoding"] == compression.value
    assert receiver.errors == []


async def test_a_failure_status_fails_the_export_until_it_recovers() -> None:
    async with otlp_receiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.traces_url, timeout=2)
        try:
            receiver.respond_with(503)
            started = time.monotonic()
            assert await asyncio.to_thread(exporter.export, finished_spans("lost")) is SpanExportResult.FAILURE
            assert time.monotonic() - started < 2.5  # retries end at the exporter's timeout
            assert receiver.requests >= 1 and receiver.spans == []

            receiver.respond_with(503, retry_after=0)  # retried at once, until the exporter's attempts run out
            before = receiver.requests
            assert await asyncio.to_thread(exporter.export, finished_spans("lost")) is SpanExportResult.FAILURE
            assert receiver.requests - before > 1 and receiver.spans == []

            receiver.respond_with(200)
            assert await asyncio.to_thread(exporter.export, finished_spans("kept")) is SpanExportResult.SUCCESS
            assert [span.name for span in receiver.spans] == ["kept"]
        finally:
            exporter.shutdown()


async def test_a_stopped_receiver_is_unreachable() -> None:
    async with otlp_receiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.traces_url, timeout=2)
        try:
            assert await asyncio.to_thread(exporter.export, finished_spans("before")) is SpanExportResult.SUCCESS
            await receiver.stop()  # also closes the exporter's kept-alive connection
            started = time.monotonic()
            assert await asyncio.to_thread(exporter.export, finished_spans("after")) is SpanExportResult.FAILURE
            assert time.monotonic() - started < 2.5
            port = int(receiver.endpoint.rsplit(":", 1)[1])
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", port)
        finally:
            exporter.shutdown()
    assert [span.name for span in receiver.spans] == ["before"]


async def test_what_it_rejects_and_how_it_keeps_connections() -> None:
    async with otlp_receiver() as receiver, httpx.AsyncClient(base_url=receiver.endpoint) as client:
        protobuf = {"Content-Type": "application/x-protobuf"}
        empty = await client.post("/v1/traces", content=b"", headers=protobuf)
        assert (empty.status_code, empty.content) == (200, b"")
        assert (await client.get("/v1/traces")).status_code == 405
        assert (await client.post("/v1/metrics", content=b"", headers=protobuf)).status_code == 404
        assert (await client.post("/v1/traces", json={"resourceSpans": []})).status_code == 415
        assert (await client.post("/v1/traces", content=b"\xff\xff", headers=protobuf)).status_code == 400
        gzip_garbage = {**protobuf, "Content-Encoding": "gzip"}
        assert (await client.post("/v1/traces", content=b"not gzip", headers=gzip_garbage)).status_code == 400
        assert len(receiver._connections) == 1  # one kept-alive connection served them all
    assert receiver.requests == 4 and receiver.spans == []
    assert [error.split()[0] for error in receiver.errors] == ["415", "400", "400"]


async def test_waiting_in_vain_says_what_came() -> None:
    async with otlp_receiver() as receiver:
        with pytest.raises(AssertionError, match=r"not within 0.05s; 0 export requests; 0 spans"):
            await receiver.wait_for_spans(lambda spans: len(spans) > 0, timeout=0.05)
