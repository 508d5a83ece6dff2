"""The service's own admin port: a live CPU profile, task dump and GC stats, and the slow-request ring."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from typing import Any

import httpx
import orjson

from tests.test_cli import CLI, cli_env
from tests.utils.app import RunningApp, create_user, serve

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"


def admin(app: RunningApp, path: str) -> str:
    return f"http://127.0.0.1:{app.services.telemetry.admin_port}{path}"


async def logins(app: RunningApp, user: dict[str, Any], count: int) -> None:
    credentials = {"email": user["email"], "password": user["password"]}
    for _ in range(count):
        assert (await app.client.post("/v1/auth/token", json=credentials)).status_code == 200


async def test_a_cpu_profile_of_the_live_service_is_a_speedscope_file(app: RunningApp) -> None:
    user = await create_user(app.client)
    async with httpx.AsyncClient(timeout=30) as client:
        profiling = asyncio.create_task(client.get(admin(app, "/debug/profile?seconds=1")))
        while not profiling.done():
            await app.client.get(f"/v1/users/{user['id']}")
        response = await profiling
    assert response.status_code == 200
    profile = orjson.loads(response.content)
    assert profile["$schema"] == SPEEDSCOPE_SCHEMA
    frames = {frame["name"] for frame in profile["shared"]["frames"]}
    assert profile["profiles"] and frames


async def test_the_task_dump_shows_the_service_tasks(app: RunningApp) -> None:
    async with httpx.AsyncClient() as client:
        tasks = (await client.get(admin(app, "/debug/tasks"))).json()
    names = {task["name"] for task in tasks}
    assert "invalidation-listener" in names and "admin-server" in names
    assert all(task["stack"] for task in tasks if task["name"] == "invalidation-listener")


async def test_gc_stats_describe_every_generation(app: RunningApp) -> None:
    async with httpx.AsyncClient() as client:
        stats = (await client.get(admin(app, "/debug/gc"))).json()
    assert [generation["generation"] for generation in stats["generations"]] == [0, 1, 2]
    assert stats["threshold"] == list(app.services.settings.gc_thresholds)


async def test_the_slow_request_ring_fills_with_slow_logins_and_stays_bounded(settings_for: Any) -> None:
    # Logins are the natural slow path (argon2id takes tens of milliseconds); reads are not.
    settings = settings_for(
        slow_request_threshold_ms=5,
        slow_request_sample_ratio=1.0,
        slow_request_max_per_second=1000,
        slow_request_capacity=3,
    )
    async with serve(settings) as app:
        user = await create_user(app.client)
        await logins(app, user, 6)
        async with httpx.AsyncClient() as client:
            entries = (await client.get(admin(app, "/debug/slow"))).json()
            assert len(entries) == 3
            assert {entry["route"] for entry in entries} == {"/v1/auth/token"}
            assert all(entry["duration_ms"] >= 5 for entry in entries)
            newest = entries[0]["id"]
            profile = await client.get(admin(app, f"/debug/slow/{newest}"))
    assert profile.status_code == 200
    assert orjson.loads(profile.content)["$schema"] == SPEEDSCOPE_SCHEMA
    assert app.services.telemetry.slow_requests.kept >= 6


def test_a_taken_admin_port_stops_start_up_with_a_clear_error(database_url: str) -> None:
    """Run as a process: uvicorn ends a failed start-up with exit code 3, past any event loop."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = cli_env(AUTH_DATABASE_URL=database_url, AUTH_PORT="0")
        env["AUTH_ADMIN_PORT"] = str(port)
        run = subprocess.run([CLI, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 3
    assert f"the admin server cannot listen on 127.0.0.1:{port}" in run.stderr
