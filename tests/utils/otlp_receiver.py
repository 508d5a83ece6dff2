"""A real OTLP/HTTP trace receiver on a loopback port, in the test's event loop: the spans the exporter really sent.

The exporter under test sends from its own thread (the SDK's batch worker, or `asyncio.to_thread`). A synchronous
flush in the loop thread itself (`provider.force_flush()`, `provider.shutdown()`) blocks this receiver and the
export fails at the exporter's timeout.
"""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    "": bytes,
    "identity": bytes,
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
}


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # 16 hex digits, "" for a root span
    kind: str  # "SERVER", "CLIENT", "INTERNAL", ...
    attributes: dict[str, Any]
    resource: dict[str, Any]
    start_ns: int
    end_ns: int
    status_code: str  # "UNSET", "OK", "ERROR"
    status_message: str = ""
    scope: str = ""  # the instrumentation scope (tracer) name
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def decode_value(value: AnyValue) -> Any:
    """An OTLP AnyValue as Python: str, bool, int, float, bytes, list, dict, or None."""
    which = value.WhichOneof("value")
    if which == "array_value":
        return [decode_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return None if which is None else getattr(value, which)


def decode_attributes(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: decode_value(pair.value) for pair in attributes}


def decode_request(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """The spans of one export request, each with its resource and scope."""
    received = []
    for resource_spans in request.resource_spans:
        resource = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                received.append(_decode_span(span, dict(resource), scope_spans.scope.name))
    return received


def _decode_span(span: Span, resource: dict[str, Any], scope: str) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        attributes=decode_attributes(span.attributes),
        resource=resource,
        start_ns=span.start_time_unix_nano,
        end_ns=span.end_time_unix_nano,
        status_code=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
        status_message=span.status.message,
        scope=scope,
        events=[(event.name, decode_attributes(event.attributes)) for event in span.events],
    )


class OtlpReceiver:
    """POST /v1/traces in OTLP protobuf (plain, gzip or deflate), over HTTP/1.1 with keep-alive."""

    def __init__(self) -> None:
        self.endpoint = ""  # the base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it
        self.spans: list[ReceivedSpan] = []
        self.request_headers: list[dict[str, str]] = []  # one per export request, names lower-case
        self.errors: list[str] = []  # requests answered 4xx, and why
        self._status = HTTPStatus.OK
        self._retry_after: int | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    @property
    def traces_url(self) -> str:
        return self.endpoint + TRACES_PATH

    @property
    def requests(self) -> int:
        """Export requests received, those answered with a failure status included."""
        return len(self.request_headers)

    def respond_with(self, status: int, retry_after: int | None = None) -> None:
        """Answer later export requests with this status (200 again to recover), storing nothing unless 200."""
        self._status = HTTPStatus(status)
        self._retry_after = retry_after

    def by_trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.trace_id == trace_id]

    def children_of(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        return [span for span in self.by_trace(parent.trace_id) if span.parent_span_id == parent.span_id]

    async def wait_for_spans(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float
    ) -> list[ReceivedSpan]:
        """Poll until predicate(spans) holds; the spans then. Fails the test, listing what came, after `timeout`."""
        deadline = time.monotonic() + timeout
        while not predicate(list(self.spans)):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout}s; {self.requests} export requests; {self.describe()}")
            await asyncio.sleep(0.01)
        return list(self.spans)

    def describe(self) -> str:
        lines = [f"{len(self.spans)} spans:"]
        for s in self.spans:
            lines.append(f"  {s.trace_id[:8]} {s.span_id} <- {s.parent_span_id or 'root':16} {s.kind} {s.name!r}")
        return "\n".join(lines + [f"  rejected: {error}" for error in self.errors])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        """Close the port and every open connection: the collector is gone."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        # Closing the sockets ends each connection's task. Not cancel(): Python 3.11's streams log a cancelled one.
        for writer in self._connections.values():
            writer.close()
        await asyncio.gather(*self._connections)
        await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while self._server is not None and await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass  # the client went away mid-request, or did not speak HTTP/1.1
        finally:
            del self._connections[task]
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if error.partial:
                raise
            return False  # the client closed an idle connection
        request_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await self._respond(writer, HTTPStatus.LENGTH_REQUIRED, keep_alive=False)
            return False
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        status, payload = self._handle(method, target.partition("?")[0], headers, body)
        await self._respond(writer, status, payload, keep_alive)
        return keep_alive

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[HTTPStatus, bytes]:
        if path != TRACES_PATH:
            return HTTPStatus.NOT_FOUND, b""
        if method != "POST":
            return HTTPStatus.METHOD_NOT_ALLOWED, b""
        self.request_headers.append(headers)
        if self._status != HTTPStatus.OK:
            return self._status, b""
        content_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        decompress = _DECOMPRESS.get(headers.get("content-encoding", "").lower())
        if content_type != PROTOBUF or decompress is None:
            return self._reject(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"{content_type=} {headers.get('content-encoding')=}"
            )
        try:
            request = ExportTraceServiceRequest.FromString(decompress(body))
        except (DecodeError, OSError, EOFError, zlib.error) as error:
            return self._reject(HTTPStatus.BAD_REQUEST, f"undecodable body: {error!r}")
        self.spans.extend(decode_request(request))
        return HTTPStatus.OK, ExportTraceServiceResponse().SerializeToString()

    def _reject(self, status: HTTPStatus, why: str) -> tuple[HTTPStatus, bytes]:
        self.errors.append(f"{status.value} {why}")
        return status, b""

    async def _respond(
        self, writer: asyncio.StreamWriter, status: HTTPStatus, body: bytes = b"", keep_alive: bool = True
    ) -> None:
        head = [f"HTTP/1.1 {status.value} {status.phrase}", f"Content-Type: {PROTOBUF}", f"Content-Length: {len(body)}"]
        if status != HTTPStatus.OK and self._retry_after is not None:
            head.append(f"Retry-After: {self._retry_after}")
        if not keep_alive:
            head.append("Connection: close")
        writer.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
        await writer.drain()


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[OtlpReceiver]:
    """An OTLP/HTTP trace receiver on 127.0.0.1 at a free port, until the block ends."""
    receiver = OtlpReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()
