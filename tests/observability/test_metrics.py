"""Prometheus metrics on the admin port: every metric after a short run, sane values, never on the public port."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from auth_service.db import gate
from tests.utils.app import RunningApp, assert_error, create_user, login, new_user, serve
from tests.utils.otlp_receiver import otlp_receiver
from tests.utils.waiting import wait_until

EXPECTED = {
    # RED
    "http_server_request_duration_seconds",
    "http_server_requests_in_flight",
    "http_server_request_bodies_arriving_bytes",
    "http_server_requests_rejected",
    # database pool
    "db_pool_size",
    "db_pool_open",
    "db_pool_connections_in_use",
    "db_pool_overflow",
    "db_pool_waiters",
    "db_pool_exhausted",
    "db_read_pool_size",
    "db_read_pool_open",
    "db_read_pool_connections_in_use",
    "db_read_pool_waiters",
    "db_pool_overloaded",
    "db_pool_acquire_wait_seconds",
    # cache
    "cache_hits",
    "cache_misses",
    "cache_loads",
    "cache_refreshes",
    "cache_evictions",
    "cache_invalidations",
    "cache_invalidations_received",
    "cache_entries",
    "cache_bytes",
    "cache_listener_connected",
    "cache_listener_reconnects",
    # hashing
    "password_hash_in_progress",
    "password_hash_queue_depth",
    "password_hash_queue_wait_seconds",
    "password_hash_rejected",
    # limits
    "login_limit_refusals",
    # runtime
    "event_loop_lag_seconds",
    "python_gc_collections",
    "python_gc_pause_seconds",
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    # telemetry itself
    "tracing_spans_dropped",
    "slow_requests_captured",
    "slow_requests_profile_cut",
    "slow_requests_skipped_shedding",
}


@pytest.fixture
async def app(settings_for: Any) -> AsyncIterator[RunningApp]:
    async with serve(settings_for(admin_port=0, loop_lag_interval_seconds=0.02)) as running:
        yield running


def admin_url(app: RunningApp, path: str = "/metrics") -> str:
    return f"http://127.0.0.1:{app.services.telemetry.admin_port}{path}"


async def scrape(app: RunningApp) -> dict[str, Any]:
    response = await app.client.get(admin_url(app))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    """Sum of the samples called `name` (or `name_total`), from the family they belong to."""
    family = next(families[f] for f in (name, name.rsplit("_", 1)[0]) if f in families)
    return sum(
        sample.value
        for sample in family.samples
        if sample.name in (name, f"{name}_total") and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def short_run(app: RunningApp) -> dict[str, Any]:
    user = await create_user(app.client)
    for _ in range(5):
        assert (await app.client.get(f"/v1/users/{user['id']}")).status_code == 200
    token = await login(app.client, user["email"], user["password"])
    headers = {"Authorization": f"Bearer {token}"}
    assert (await app.client.patch(f"/v1/users/{user['id']}", json={"name": "N"}, headers=headers)).status_code == 200
    assert (await app.client.get("/v1/users/00000000-0000-0000-0000-000000000000")).status_code == 404
    return user


async def test_every_metric_is_exposed_with_sane_values_after_a_short_run(app: RunningApp) -> None:
    await short_run(app)
    families = await scrape(app)
    assert set(families) >= EXPECTED, sorted(EXPECTED - set(families))
    route = "/v1/users/{user_id}"
    assert value(families, "http_server_request_duration_seconds_count", method="GET", route=route) >= 6
    assert value(families, "http_server_request_duration_seconds_count", route=route, status_class="4xx") == 1
    assert value(families, "cache_hits") >= 4 and value(families, "cache_misses") >= 1
    assert value(families, "cache_invalidations_received") >= 1  # the PATCH's NOTIFY came back
    assert value(families, "cache_listener_connected") == 1
    assert value(families, "db_pool_size") == app.services.settings.db_pool_size
    assert value(families, "db_read_pool_size") == app.services.settings.db_read_pool_size
    assert 1 <= value(families, "db_read_pool_open") <= app.services.settings.db_read_pool_size
    assert value(families, "db_pool_acquire_wait_seconds_count") >= 1
    assert value(families, "password_hash_queue_wait_seconds_count") >= 2  # create and login
    assert value(families, "event_loop_lag_seconds_count") >= 1
    assert value(families, "process_resident_memory_bytes") > 10_000_000
    assert value(families, "http_server_requests_in_flight") == 0


async def test_route_labels_are_templates_never_raw_paths(app: RunningApp) -> None:
    await short_run(app)
    await app.client.get("/a/path/nobody/routes/987654")
    families = await scrape(app)
    routes = {s.labels["route"] for s in families["http_server_request_duration_seconds"].samples}
    assert "/v1/users/{user_id}" in routes and "unmatched" in routes
    assert not any(re.search(r"[0-9a-f]{8}-|987654", route) for route in routes), routes


async def test_metrics_are_not_on_the_public_port(app: RunningApp) -> None:
    assert_error(await app.client.get("/metrics"), 404)
    assert_error(await app.client.get("/debug/gc"), 404)


async def test_requests_refused_by_backpressure_are_counted(settings_for: Any) -> None:
    async with serve(settings_for(admin_port=0, max_body_bytes=2048)) as app:
        response = await app.client.post("/v1/users", content=b"x" * 4096, headers={"content-type": "application/json"})
        assert_error(response, 413)
        families = await scrape(app)
        assert value(families, "http_server_requests_rejected", reason="body_too_large") == 1


async def test_the_write_pool_gauges_count_connections_and_overflow_is_never_negative(settings_for: Any) -> None:
    async with serve(settings_for(admin_port=0, db_pool_size=2, db_max_overflow=1)) as app:
        db = app.services.db
        idle = await scrape(app)
        async with db.transaction(), db.transaction(), db.transaction():  # the pool's 2 and 1 beyond
            busy = await scrape(app)
        after = await scrape(app)
    assert value(idle, "db_pool_overflow") == 0  # QueuePool.overflow() itself is -2 here
    assert value(idle, "db_pool_connections_in_use") == 0
    assert value(busy, "db_pool_overflow") == 1
    assert value(busy, "db_pool_connections_in_use") == 3
    assert value(busy, "db_pool_open") == 3
    assert value(busy, "db_pool_size") == 2
    assert value(after, "db_pool_overflow") == 0  # the one beyond the size is closed on return
    assert value(after, "db_pool_open") == 2
    assert value(after, "db_pool_connections_in_use") == 0


class StoppedClock:
    """The pool gate's clock, stopped: its overload, judged over windows of 0.1 s, lasts until the scrape."""

    @staticmethod
    def monotonic() -> float:
        return 1000.0


async def test_refusals_of_an_exhausted_pool_are_counted(settings_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "time", StoppedClock)
    settings = settings_for(admin_port=0, db_read_pool_size=1, db_pool_max_waiters=0)
    async with serve(settings) as app, app.services.db.driver_connection():  # the only read connection
        response = await app.client.get("/v1/users/00000000-0000-0000-0000-000000000001")
        families = await scrape(app)
    assert_error(response, 503, "db_pool_exhausted")
    assert value(families, "db_pool_exhausted", pool="read") == 1
    assert value(families, "db_pool_exhausted", pool="write") == 0
    assert value(families, "db_read_pool_waiters") == 0
    # No waiter allowed, so the waiters were at their bound: overloaded.
    assert value(families, "db_pool_overloaded", pool="read") == 1
    assert value(families, "db_pool_overloaded", pool="write") == 0
    assert value(families, "db_read_pool_connections_in_use") == 1


async def test_logins_and_signups_refused_by_the_limits_are_counted(settings_for: Any) -> None:
    # A client of this test's own (the counters are shared by the run's tests): named by the proxy.
    limits = {"login_failures_per_account_client": 1, "signups_per_client": 1, "trusted_proxies": ("127.0.0.1",)}
    client = {"x-forwarded-for": f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"}
    async with serve(settings_for(admin_port=0, **limits)) as app:
        user = new_user()
        assert (await app.client.post("/v1/users", json=user, headers=client)).status_code == 201  # its one signup
        wrong = {"email": user["email"], "password": "not-the-password"}
        answers = [await app.client.post("/v1/auth/token", json=wrong, headers=client) for _ in range(3)]
        refused_signup = await app.client.post("/v1/users", json=new_user(), headers=client)
        families = await scrape(app)
    assert [answer.status_code for answer in answers] == [401, 429, 429]
    assert_error(refused_signup, 429, "too_many_signups")
    assert value(families, "login_limit_refusals", kind="login") == 2
    assert value(families, "login_limit_refusals", kind="signup") == 1


async def test_a_body_still_arriving_is_not_in_flight_but_its_bytes_are_counted(settings_for: Any) -> None:
    async with serve(settings_for(admin_port=0)) as app:
        port = httpx.URL(app.url).port
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/users HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n")
        writer.write(b'content-length: 100\r\n\r\n{"email": "x')  # 12 of its 100 bytes
        admission = app.services.telemetry.admission
        assert admission is not None
        await wait_until(lambda: admission.arriving_bytes == 12, 5, "the body under way")
        during = await scrape(app)
        writer.close()
    assert value(during, "http_server_requests_in_flight") == 0
    assert value(during, "http_server_request_bodies_arriving_bytes") == 12


async def test_latency_exemplars_carry_the_trace_id_of_sampled_requests(settings_for: Any) -> None:
    async with otlp_receiver() as receiver:
        settings = settings_for(
            admin_port=0,
            otel_traces_exporter="otlp",
            otel_exporter_otlp_endpoint=receiver.endpoint,
            otel_traces_sampler_arg=1.0,
        )
        async with serve(settings) as app:
            response = await app.client.get("/healthz")
            trace_id = response.headers["traceresponse"].split("-")[1]
            openmetrics = await app.client.get(admin_url(app), headers={"Accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    bucket_lines = [line for line in openmetrics.text.splitlines() if 'route="/healthz"' in line and "_bucket" in line]
    assert any(f'trace_id="{trace_id}"' in line for line in bucket_lines), bucket_lines


async def test_the_admin_token_guards_the_admin_port(settings_for: Any) -> None:
    token = "admin-token-for-tests-0123456789"
    async with serve(settings_for(admin_port=0, admin_token=token)) as app, httpx.AsyncClient() as client:
        assert_error(await client.get(admin_url(app, "/debug/gc")), 401, "unauthorized")
        wrong = {"Authorization": "Bearer not-the-token"}
        assert_error(await client.get(admin_url(app, "/debug/gc"), headers=wrong), 401)
        right = {"Authorization": f"Bearer {token}"}
        assert (await client.get(admin_url(app, "/debug/gc"), headers=right)).status_code == 200
        assert (await client.get(admin_url(app))).status_code == 200  # scrapes stay open by default
    locked = settings_for(admin_port=0, admin_token=token, admin_metrics_require_token=True)
    async with serve(locked) as app, httpx.AsyncClient() as client:
        assert_error(await client.get(admin_url(app)), 401)


def test_an_admin_port_beyond_localhost_needs_a_token(settings_for: Any) -> None:
    with pytest.raises(ValueError, match="AUTH_ADMIN_TOKEN"):
        settings_for(admin_host="0.0.0.0")  # noqa: S104 - the point of the test
    assert settings_for(admin_host="0.0.0.0", admin_token="t" * 32).admin_host == "0.0.0.0"  # noqa: S104
