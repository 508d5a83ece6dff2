"""Graceful shutdown, in its order: not ready, drain, stop accepting, finish in flight, close resources."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from auth_service.services import driver_dsn
from bench import servers
from tests.utils.app import RunningApp, assert_error, create_user, new_user, serve
from tests.utils.postgres import stored_emails
from tests.utils.sql import sql_connection, users_table_locked, wait_for_lock_waiters

DRAIN = 0.6


async def login_all(app: RunningApp, user: dict[str, Any], count: int) -> list[int]:
    credentials = {"email": user["email"], "password": user["password"]}
    async with httpx.AsyncClient(base_url=app.url, timeout=10) as fresh:
        answers = await asyncio.gather(*(fresh.post("/v1/auth/token", json=credentials) for _ in range(count)))
    return [answer.status_code for answer in answers]


async def test_once_draining_every_response_closes_its_connection(settings_for: Any) -> None:
    """Kept-alive clients are moved off during the drain: each answer says close, and the socket closes.

    Both a route of the application and the fast lane's (a cached user) answer so, over one raw
    keep-alive connection each, so that a client never sends on a connection the server is closing.
    """
    async with serve(settings_for(drain_delay_seconds=5.0)) as app:
        user = await create_user(app.client)
        paths = ["/healthz", f"/v1/users/{user['id']}"]
        before = [await exchange_keep_alive(app, path) for path in paths]
        app.server.handle_exit(signal.SIGTERM, None)
        await asyncio.sleep(0.05)
        during = [await exchange_keep_alive(app, path) for path in paths]
    assert before == [(200, None, False)] * 2
    assert during == [(200, "close", True)] * 2


async def exchange_keep_alive(app: RunningApp, path: str) -> tuple[int, str | None, bool]:
    """(status, Connection header, closed by the server after it) of a GET on a keep-alive socket."""
    port = httpx.URL(app.url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: test\r\n\r\n".encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
        status_line, *lines = head.strip().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines)
        await reader.readexactly(int(headers["content-length"]))
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.3) == b""
        except TimeoutError:
            closed = False  # still open: kept alive
        return int(status_line.split(" ")[1]), headers.get("connection"), closed
    finally:
        writer.close()


async def test_sigterm_drains_then_finishes_in_flight_requests_then_closes(
    settings_for: Any,
) -> None:
    async with serve(settings_for(drain_delay_seconds=DRAIN, hash_workers=1, hash_queue_max=16)) as app:
        user = await create_user(app.client)
        signalled_at = time.monotonic()
        app.server.handle_exit(signal.SIGTERM, None)
        await asyncio.sleep(0.05)

        # 1. Readiness says 503 at once, while the instance still serves everything else.
        assert_error(await app.client.get("/readyz"), 503, "draining")
        assert (await app.client.get(f"/v1/users/{user['id']}")).status_code == 200

        # 2-4. Requests still arriving near the end of the drain are finished after accepting stops.
        await asyncio.sleep(DRAIN - 0.2)
        in_flight = asyncio.create_task(login_all(app, user, 6))
        await asyncio.wait_for(asyncio.shield(app.task), 15)
        assert time.monotonic() - signalled_at >= DRAIN
        assert await in_flight == [200] * 6

        # Accepting has stopped.
        with pytest.raises(httpx.ConnectError):
            await httpx.AsyncClient().get(f"{app.url}/healthz")

        # 5. The lifespan closed the listener, the hashing pool and the database pool.
        assert await service_backends(app) == 0
        with pytest.raises(RuntimeError, match="shutdown"):
            await app.services.hasher.hash("after-shutdown")


async def service_backends(app: RunningApp) -> int:
    """Connections of the service (pool and listener) still open on its database, after a short grace."""
    dsn = driver_dsn(app.services.settings.database_url or "")
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(40):
            count = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE 'auth-service%' AND pid <> pg_backend_pid()"
            )
            if count == 0:
                return 0
            await asyncio.sleep(0.05)
        return int(count)
    finally:
        await conn.close()


async def test_a_request_cut_off_by_the_graceful_timeout_gets_503_and_writes_nothing(
    settings_for: Any, database_url: str
) -> None:
    settings = settings_for(graceful_timeout_seconds=0.5, db_statement_timeout_ms=30_000, hash_workers=1)
    payload = new_user()
    async with serve(settings) as app, sql_connection(database_url) as sql:
        async with users_table_locked(database_url):
            create = asyncio.create_task(app.client.post("/v1/users", json=payload))  # its insert waits on the lock
            await wait_for_lock_waiters(sql, 1)
            app.server.should_exit = True
            response = await asyncio.wait_for(create, 10)
        await asyncio.wait_for(asyncio.shield(app.task), 10)
    assert_error(response, 503, "shutting_down")
    assert response.headers["retry-after"] == "1"
    assert await stored_emails(database_url, [payload["email"]]) == set()


async def test_the_graceful_cut_off_is_a_warning_without_traceback(
    settings_for: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = settings_for(graceful_timeout_seconds=0.3, db_statement_timeout_ms=30_000, hash_workers=1)
    async with serve(settings) as app, sql_connection(database_url) as sql:
        async with users_table_locked(database_url):
            create = asyncio.create_task(app.client.post("/v1/users", json=new_user()))
            await wait_for_lock_waiters(sql, 1)
            app.server.should_exit = True
            assert_error(await asyncio.wait_for(create, 10), 503, "shutting_down")
        await asyncio.wait_for(asyncio.shield(app.task), 10)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []
    assert [record for record in caplog.records if record.exc_info] == []
    cut_off = [record for record in caplog.records if record.getMessage().startswith("Cancel 1 running task(s)")]
    assert [record.levelname for record in cut_off] == ["WARNING"]


def requests_served(admin_url: str) -> float:
    """Every request the replica has answered, by its own latency histogram's counts."""
    families = text_string_to_metric_families(httpx.get(f"{admin_url}/metrics", timeout=5.0).text)
    family = next(family for family in families if family.name == "http_server_request_duration_seconds")
    return sum(sample.value for sample in family.samples if sample.name.endswith("_count"))


def each_on_a_new_connection(url: str, count: int) -> list[int]:
    statuses = []
    for _ in range(count):
        with httpx.Client(base_url=url, timeout=10.0) as client:  # a new client: a new connection, a new port
            statuses.append(client.get(f"/v1/users/{uuid.uuid4()}").status_code)
    return statuses


def test_replicas_with_reuse_port_share_one_address_and_the_one_left_serves_every_connection(
    database_url: str, tmp_path: Path
) -> None:
    env = servers.common_env(driver_dsn(database_url), servers.signing_keys(), secrets.token_urlsafe(32))
    cpus = sorted(os.sched_getaffinity(0))[:2] * 2
    with servers.running_replicas(cpus[:2], env, tmp_path) as (first, second):
        assert first.url == second.url  # one address
        statuses = each_on_a_new_connection(first.url, 60)
        assert statuses == [404] * 60  # no such user: each answered by a replica, from the database
        served = [requests_served(replica.admin_url or "") for replica in (first, second)]
        # The kernel hashes each connection to a replica: with 60, both get some but for a 2**-59 chance.
        assert all(count > 0 for count in served) and sum(served) == 60, served
        servers.stop(first)
        assert each_on_a_new_connection(second.url, 30) == [404] * 30
        assert requests_served(second.admin_url or "") == served[1] + 30
