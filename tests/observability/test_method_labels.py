"""HTTP methods in telemetry: made-up methods share one label value instead of minting a series each."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from auth_service.observability.middleware import OTHER_METHOD, end_server_span, method_label, start_server_span
from tests.observability.test_metrics import scrape
from tests.utils.app import RunningApp

# Methods the HTTP parser (llhttp) accepts beyond the standard ones; it refuses invented ones itself.
PARSER_METHODS = ["PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "PURGE", "REPORT", "LINK"]


async def test_unknown_methods_are_one_label_value(app: RunningApp) -> None:
    invented = PARSER_METHODS
    for method in invented:
        response = await app.client.request(method, "/v1/users")
        assert response.status_code == 405, (method, response.status_code)
    await app.client.get("/healthz")
    families = await scrape(app)
    methods = {sample.labels["method"] for sample in families["http_server_request_duration_seconds"].samples}
    assert OTHER_METHOD in methods and "GET" in methods
    assert not methods & set(invented), methods


def test_a_span_of_an_unknown_method_keeps_the_original_apart() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for method in ("GET", "BREW"):
        span, _ = start_server_span(tracer, method, "/v1/users", [], "1.1", chosen=True)
        end_server_span(span, method_label(method), "/v1/users", 405)
    known, unknown = exporter.get_finished_spans()
    assert (known.name, known.attributes["http.request.method"]) == ("GET /v1/users", "GET")
    assert "http.request.method_original" not in known.attributes
    assert unknown.name == "HTTP /v1/users"
    assert unknown.attributes["http.request.method"] == "_OTHER"
    assert unknown.attributes["http.request.method_original"] == "BREW"
