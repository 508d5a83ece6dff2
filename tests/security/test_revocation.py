"""A deleted user's token is refused everywhere, as an invalid token is: at the token check, /v1/me and
a PATCH, through the fast lane and through the application, on the instance that deleted the user
and on another within the coherence bound, on an instance started after the delete, and after the
listener missed the delete's NOTIFY. Another user's token is untouched. The table revoked_subjects
is read at start within the horizon (the token lifetime and its leeway), purged past it, and an
instance that has not read it is not ready."""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from auth_service.db.purge import purging
from bench.ports import free_port
from tests.cache.test_coherence import COHERENCE_BOUND_SECONDS, listener_pids
from tests.utils.app import RunningApp, assert_error, bearer, create_user, login, serve
from tests.utils.sql import sql_connection
from tests.utils.waiting import wait_until

INVALID = bearer("not.a.token")
HOT_PATHS = ("/v1/auth/verify", "/v1/me")
# fast_lane=True: httpx's GETs of the hot paths are answered by the lane as they are parsed;
# False: by the application (the plain-ASGI hot paths in front of FastAPI).
PATHS = pytest.mark.parametrize("fast_lane", [True, False], ids=["lane", "application"])
HORIZON = 900.0 + 5.0  # the default token lifetime and leeway


@pytest.fixture
async def sql(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with sql_connection(database_url) as conn:
        yield conn


async def listening(*apps: RunningApp) -> None:
    for app in apps:
        await asyncio.wait_for(app.services.listener.connected.wait(), 5)


async def user_with_token(app: RunningApp) -> tuple[dict[str, Any], str]:
    """A new user and a token of theirs, verified once (so that its verdict is cached)."""
    user = await create_user(app.client)
    token = await login(app.client, user["email"], user["password"])
    assert (await app.client.get("/v1/auth/verify", headers=bearer(token))).status_code == 200
    return user, token


async def delete(app: RunningApp, user: dict[str, Any], token: str) -> None:
    body = {"current_password": user["password"]}
    deleted = await app.client.request("DELETE", f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert deleted.status_code == 204, deleted.text


def answer(response: httpx.Response) -> tuple[int, bytes, str | None]:
    return response.status_code, response.content, response.headers.get("www-authenticate")


async def assert_refused_as_invalid(app: RunningApp, token: str, user_id: str) -> None:
    """The same status, body and challenge as a malformed token gets, at both hot paths and a PATCH."""
    for path in HOT_PATHS:
        got, invalid = [await app.client.get(path, headers=headers) for headers in (bearer(token), INVALID)]
        assert answer(got) == answer(invalid), (path, got.text)
        assert got.status_code == 401
    patch = {"json": {"name": "Taken Over"}}
    got, invalid = [
        await app.client.patch(f"/v1/users/{user_id}", headers=headers, **patch) for headers in (bearer(token), INVALID)
    ]
    assert answer(got) == answer(invalid), ("PATCH", got.text)


async def assert_accepted(app: RunningApp, token: str, user: dict[str, Any]) -> None:
    verified = await app.client.get("/v1/auth/verify", headers=bearer(token))
    assert verified.status_code == 200 and verified.json()["sub"] == user["id"], verified.text
    me = await app.client.get("/v1/me", headers=bearer(token))
    assert me.status_code == 200 and me.json()["id"] == user["id"], me.text


@PATHS
async def test_a_deleted_users_token_is_refused_as_an_invalid_one_where_it_was_deleted(
    settings_for: Any, fast_lane: bool
) -> None:
    async with serve(settings_for(fast_lane=fast_lane)) as app:
        await listening(app)
        user, token = await user_with_token(app)
        other, others_token = await user_with_token(app)
        await delete(app, user, token)
        lane_before = app.services.telemetry.lane_responses
        await assert_refused_as_invalid(app, token, user["id"])
        answered_by_lane = app.services.telemetry.lane_responses - lane_before
        assert answered_by_lane == (2 * len(HOT_PATHS) if fast_lane else 0)
        await assert_accepted(app, others_token, other)


async def test_the_deleting_instance_refuses_it_at_once_without_waiting_for_the_notify(
    settings_for: Any, sql: asyncpg.Connection
) -> None:
    """Its listener is down (and stays down): the delete's answer already means the token is refused there."""
    async with serve(settings_for(invalidation_reconnect_seconds=60)) as app:
        await listening(app)
        user, token = await user_with_token(app)
        (pid,) = await listener_pids(sql)
        assert await sql.fetchval("SELECT pg_terminate_backend($1)", pid)
        await wait_until(lambda: not app.services.listener.connected.is_set(), 5, "the listener saw its connection go")
        await delete(app, user, token)
        await assert_refused_as_invalid(app, token, user["id"])


@PATHS
async def test_another_instance_refuses_it_within_the_coherence_bound(settings_for: Any, fast_lane: bool) -> None:
    async with serve(settings_for(fast_lane=fast_lane)) as a, serve(settings_for(fast_lane=fast_lane)) as b:
        await listening(a, b)
        user, token = await user_with_token(a)
        other, others_token = await user_with_token(a)
        await assert_accepted(b, token, user)  # b has verified it, and cached the user
        await delete(a, user, token)
        start = time.perf_counter()
        while (await b.client.get("/v1/auth/verify", headers=bearer(token))).status_code == 200:
            assert time.perf_counter() - start < 5, "the other instance kept accepting the token for 5 s"
        assert time.perf_counter() - start < COHERENCE_BOUND_SECONDS
        await assert_refused_as_invalid(b, token, user["id"])
        await assert_accepted(b, others_token, other)


async def test_an_instance_started_after_the_delete_refuses_it(settings_for: Any) -> None:
    async with serve(settings_for()) as first:
        user, token = await user_with_token(first)
        other, others_token = await user_with_token(first)
        await delete(first, user, token)
    async with serve(settings_for()) as later:  # it heard no NOTIFY of the delete: it read the table
        assert (await later.client.get("/readyz")).status_code == 200
        await assert_refused_as_invalid(later, token, user["id"])
        await assert_accepted(later, others_token, other)


async def test_a_delete_the_listener_missed_is_refused_once_it_has_reconnected(
    settings_for: Any, sql: asyncpg.Connection
) -> None:
    """Deleted in SQL, as psql would, while the listener is down: its NOTIFY reaches nobody."""
    async with serve(settings_for(invalidation_reconnect_seconds=0.5)) as app:
        await listening(app)
        listener = app.services.listener
        user, token = await user_with_token(app)
        reconnects = listener.reconnects
        (pid,) = await listener_pids(sql)
        assert await sql.fetchval("SELECT pg_terminate_backend($1)", pid)
        await wait_until(lambda: not listener.connected.is_set(), 5, "the listener saw its connection go")

        assert await sql.execute("DELETE FROM users WHERE id = $1", uuid.UUID(user["id"])) == "DELETE 1"
        assert listener.reconnects == reconnects, "the listener was back before the delete: nothing was missed"
        await wait_until(lambda: listener.reconnects > reconnects and listener.connected.is_set(), 5, "reconnected")

        await assert_refused_as_invalid(app, token, user["id"])


async def insert_revocation(sql: asyncpg.Connection, seconds_ago: float) -> str:
    subject = str(uuid.uuid4())
    await sql.execute(
        "INSERT INTO revoked_subjects VALUES ($1, now() - make_interval(secs => $2))", uuid.UUID(subject), seconds_ago
    )
    return subject


async def stored(sql: asyncpg.Connection, *subjects: str) -> set[str]:
    rows = await sql.fetch(
        "SELECT user_id::text FROM revoked_subjects WHERE user_id = ANY($1::uuid[])", [uuid.UUID(s) for s in subjects]
    )
    return {row[0] for row in rows}


async def test_the_start_loads_the_revocations_within_the_horizon_only(
    settings_for: Any, sql: asyncpg.Connection
) -> None:
    old, recent = await insert_revocation(sql, HORIZON + 60), await insert_revocation(sql, HORIZON - 60)
    async with serve(settings_for()) as app:
        revoked = app.services.revocations
        assert revoked.loaded
        assert revoked.revoked_at(recent) is not None
        assert revoked.revoked_at(old) is None


async def test_the_purge_removes_rows_past_the_horizon_from_the_table_and_the_map(
    app: RunningApp, sql: asyncpg.Connection
) -> None:
    revoked, db = app.services.revocations, app.services.db
    await asyncio.wait_for(app.services.listener.connected.wait(), 5)
    old, recent = await insert_revocation(sql, HORIZON + 60), await insert_revocation(sql, 1)
    # Both NOTIFY: the old one too reaches the map, which the purge empties of it.
    await wait_until(lambda: revoked.revoked_at(old) is not None and revoked.revoked_at(recent) is not None, 5, "heard")

    assert await revoked.purge(db) >= 1
    assert await stored(sql, old, recent) == {recent}
    assert revoked.revoked_at(old) is None and revoked.revoked_at(recent) is not None

    later = await insert_revocation(sql, HORIZON + 60)
    await wait_until(lambda: revoked.revoked_at(later) is not None, 5, "heard")
    # The lifespan purges every minute; the same loop here, every 50 ms.
    async with purging(functools.partial(revoked.purge, db), "revocations", interval=0.05):
        deadline = time.perf_counter() + 5
        while await stored(sql, later, recent) != {recent}:
            assert time.perf_counter() < deadline, "the loop did not purge the table"
            await asyncio.sleep(0.02)
        assert revoked.revoked_at(later) is None


async def test_readiness_waits_for_the_revocations_to_be_loaded(settings_for: Any) -> None:
    """A listener that cannot connect never loads them: the database answers, the instance is not ready."""
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    settings = settings_for(database_listener_url=nowhere, db_connect_timeout_seconds=0.2)
    async with serve(settings) as app:
        assert not app.services.revocations.loaded
        assert_error(await app.client.get("/readyz"), 503, "revocations_not_loaded")
        assert (await app.client.get("/healthz")).status_code == 200
