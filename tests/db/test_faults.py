"""Database faults answer 503 fast, and the service recovers by itself when the database does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth_service.db import migrate
from tests.utils.app import RunningApp, assert_error, bearer, create_user, login, make_settings, serve
from tests.utils.stoppable_postgres import StoppablePostgres

log = logging.getLogger(__name__)


async def timed_get(app: RunningApp, path: str) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = await app.client.get(path)
    return response, time.perf_counter() - start


async def delete_user(app: RunningApp, path: str, token: str, password: str) -> httpx.Response:
    """A delete, with the current password that it needs besides the token (re-authentication)."""
    return await app.client.request("DELETE", path, headers=bearer(token), json={"current_password": password})


# --- pool exhaustion


async def test_an_exhausted_read_pool_answers_503_after_the_acquire_timeout(settings_for: Any) -> None:
    settings = settings_for(db_read_pool_size=1, db_pool_acquire_timeout_seconds=0.3)
    async with serve(settings) as app:
        user = await create_user(app.client)
        async with app.services.db.driver_connection():  # the only read connection, held by someone else
            response, seconds = await timed_get(app, f"/v1/users/{user['id']}")
        log.info("read pool exhausted: 503 after %.0f ms", seconds * 1000)
        assert_error(response, 503, "db_pool_exhausted")
        assert response.headers["retry-after"] == "1"
        assert 0.3 <= seconds < 1.0
        assert (await app.client.get(f"/v1/users/{user['id']}")).status_code == 200


async def test_an_exhausted_write_pool_answers_503_and_reads_go_on(settings_for: Any) -> None:
    settings = settings_for(db_pool_size=1, db_max_overflow=0, db_pool_acquire_timeout_seconds=0.3)
    async with serve(settings) as app:
        user = await create_user(app.client)
        token = await login(app.client, user["email"], user["password"])
        path = f"/v1/users/{user['id']}"
        async with app.services.db.engine.connect():  # the only write connection, held by someone else
            started = time.perf_counter()
            response = await delete_user(app, path, token, user["password"])  # deletes go through this pool
            seconds = time.perf_counter() - started
            assert (await app.client.get(path)).status_code == 200, "reads have a pool of their own"
        assert_error(response, 503, "db_pool_exhausted")
        assert 0.3 <= seconds < 1.0
        assert (await app.client.get(path)).status_code == 200, "nothing was deleted"
        assert (await delete_user(app, path, token, user["password"])).status_code == 204


# --- the database stops and starts again


@pytest.fixture
def stoppable_postgres(tmp_path: Path) -> Iterator[StoppablePostgres]:
    server = StoppablePostgres(tmp_path)
    try:
        migrate.upgrade(server.url)
        yield server
    finally:
        server.close()


async def poll_status(app: RunningApp, path: str, status: int, timeout: float) -> float:
    """Poll the path until it answers this status; the seconds it took. Each answer must come fast."""
    start = time.perf_counter()
    while True:
        response, seconds = await timed_get(app, path)
        assert seconds < 3.0, f"{path} took {seconds:.1f} s"
        if response.status_code == status:
            return time.perf_counter() - start
        assert time.perf_counter() - start < timeout, f"{path} still {response.status_code} after {timeout} s"
        await asyncio.sleep(0.05)


async def test_the_service_answers_503_while_the_database_is_down_and_recovers_without_restart(
    stoppable_postgres: StoppablePostgres,
) -> None:
    settings = make_settings(stoppable_postgres.url, invalidation_reconnect_seconds=0.2)
    async with serve(settings) as app:
        user = await create_user(app.client)
        assert (await app.client.get("/readyz")).status_code == 200

        await asyncio.to_thread(stoppable_postgres.stop)
        response, seconds = await timed_get(app, f"/v1/users/{user['id']}")
        log.info("database down: GET answered %d after %.0f ms", response.status_code, seconds * 1000)
        assert_error(response, 503, "database_unavailable")
        assert response.headers["retry-after"] == "1"
        assert seconds < 3.0
        not_ready_after = await poll_status(app, "/readyz", 503, timeout=1.5)
        assert_error(await app.client.get("/readyz"), 503, "database_unavailable")

        await asyncio.to_thread(stoppable_postgres.start)
        reads_after = await poll_status(app, f"/v1/users/{user['id']}", 200, timeout=15)
        ready_after = await poll_status(app, "/readyz", 200, timeout=15)
        await asyncio.wait_for(app.services.listener.connected.wait(), 15)
        log.info(
            "readyz 503 after %.2f s; after the restart: reads 200 after %.2f s, readyz 200 after %.2f s more",
            not_ready_after,
            reads_after,
            ready_after,
        )
