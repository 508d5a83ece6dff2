"""The plain-ASGI hot paths answer exactly as FastAPI would, and hand over what they do not answer."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from typing import Any

import pytest
from fastapi.routing import APIRoute

from auth_service.api.methods import all_routes
from auth_service.app import create_app
from auth_service.security.tokens import VerifiedTokens
from auth_service.users import repository
from tests.utils.app import RunningApp, assert_error, bearer, create_user, login, make_settings, serve
from tests.utils.waiting import wait_until


async def test_a_user_read_answers_the_same_through_the_hot_path_and_through_fastapi(app: RunningApp) -> None:
    user = await create_user(app.client)
    canonical = await app.client.get(f"/v1/users/{user['id']}")  # the hot path
    upper = await app.client.get(f"/v1/users/{user['id'].upper()}")  # not canonical: FastAPI's route
    assert canonical.status_code == upper.status_code == 200
    assert canonical.content == upper.content
    assert canonical.headers["content-type"] == upper.headers["content-type"]


async def test_an_invalid_id_gets_fastapis_validation_answer(app: RunningApp) -> None:
    error = assert_error(await app.client.get("/v1/users/zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"), 422)
    assert error["details"][0]["field"] == "path.user_id"


async def test_an_unknown_user_is_a_404_with_the_error_shape(app: RunningApp) -> None:
    assert_error(await app.client.get("/v1/users/00000000-0000-4000-8000-000000000000"), 404, "not_found")


async def test_other_methods_on_hot_paths_fall_through_to_fastapi(app: RunningApp) -> None:
    assert_error(await app.client.post("/v1/auth/verify"), 405)
    assert_error(await app.client.delete("/healthz"), 405)


async def test_a_token_is_verified_once_then_served_from_the_cache(app: RunningApp) -> None:
    user = await create_user(app.client)
    token = await login(app.client, user["email"], user["password"])
    first = await app.client.get("/v1/auth/verify", headers=bearer(token))
    assert app.services.tokens.verified.get(token, time.time()) is not None
    second = await app.client.get("/v1/auth/verify", headers=bearer(token))
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    me = await app.client.get("/v1/me", headers=bearer(token))
    assert me.json()["id"] == user["id"]


def test_a_cached_token_stops_verifying_when_it_expires() -> None:
    cache = VerifiedTokens(max_entries=10, leeway=5)
    now = time.time()
    cache.put("t", {"exp": int(now) + 1, "sub": "s"})
    assert cache.get("t", now) is not None
    assert cache.get("t", now + 1 + 5 + 1) is None  # past exp and the leeway
    assert cache.get("t", now) is None  # and it is gone


def test_the_token_cache_is_bounded_oldest_out_first() -> None:
    cache = VerifiedTokens(max_entries=3, leeway=0)
    exp = int(time.time()) + 60
    for name in "abcd":
        cache.put(name, {"exp": exp})
    now = time.time()
    assert [name for name in "abcd" if cache.get(name, now) is not None] == ["b", "c", "d"]


def test_a_zero_sized_token_cache_keeps_nothing() -> None:
    cache = VerifiedTokens(max_entries=0, leeway=0)
    cache.put("t", {"exp": int(time.time()) + 60})
    assert cache.get("t", time.time()) is None


def _dependency_calls(dependant: Any) -> list[Any]:
    calls = []
    for dependency in dependant.dependencies:
        calls += [dependency.call, *_dependency_calls(dependency)]
    return calls


def test_no_dependency_of_a_route_runs_in_the_thread_pool() -> None:
    """FastAPI runs a plain `def` dependency in its thread pool: a thread hop per request and dependency."""
    app = create_app(make_settings("postgresql+asyncpg://unused@127.0.0.1:1/unused"))
    routes = [route for route in all_routes(app.routes) if isinstance(route, APIRoute)]
    calls = {call for route in routes for call in _dependency_calls(route.dependant)}
    assert routes and calls
    assert [call.__name__ for call in calls if not inspect.iscoroutinefunction(call)] == []


async def test_a_user_read_on_and_on_is_reloaded_behind_its_readers_and_never_misses(settings_for: Any) -> None:
    # Lifetimes between 0.8 and 1 TTL, refreshed from 0.75 of them: at 0.76 TTL every entry is due for a
    # refresh and none has expired; past one TTL the first load would be gone, the refreshed one is not.
    ttl = 4.0
    async with serve(settings_for(cache_ttl_seconds=ttl)) as app:
        user, stats = await create_user(app.client), app.services.cache.stats
        path = f"/v1/users/{user['id']}"
        assert (await app.client.get(path)).status_code == 200
        loaded_at, misses = time.monotonic(), stats.misses
        await asyncio.sleep(0.76 * ttl)
        assert (await app.client.get(path)).json()["id"] == user["id"]
        assert (stats.misses, stats.refreshes) == (misses, 1)
        await wait_until(lambda: app.services.cache.loads_in_flight == 0, 5, "the refresh is stored")
        await asyncio.sleep(max(0.0, loaded_at + ttl + 0.1 - time.monotonic()))
        assert (await app.client.get(path)).status_code == 200
        assert stats.misses == misses, "read past the first load's TTL, and still a hit"


async def test_an_unexpected_fault_in_a_hot_read_is_a_500_in_the_error_shape(
    app: RunningApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hot path answers cache misses in front of FastAPI, so FastAPI's handler of last resort is not
    # there: a fault it did not expect once reached the client as uvicorn's plain-text 500.
    async def broken(db: Any, user_id: uuid.UUID) -> None:
        raise RuntimeError("a fault nobody expected")

    monkeypatch.setattr(repository, "fetch_user", broken)
    response = await app.client.get(f"/v1/users/{uuid.uuid4()}")  # a miss: its load is the broken one
    error = assert_error(response, 500, "internal_error")
    assert "nobody expected" not in response.text and error["message"] == "an unexpected error occurred"
