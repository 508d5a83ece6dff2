"""Tokens over HTTP: log in, verify, and who am I."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
import uuid
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from auth_service.services import driver_dsn
from auth_service.settings import OWASP_MIN_MEMORY_KIB, OWASP_MIN_TIME_COST
from tests.utils.app import TEST_SIGNING_KEY, RunningApp, assert_error, bearer, create_user, login, serve, unique_email

TOKEN_PATH = "/v1/auth/token"
TIMING_ROUNDS = 25
OWN_PARAMETERS_ONLY = {
    "argon2_import_max_memory_kib": OWASP_MIN_MEMORY_KIB,
    "argon2_import_max_time_cost": OWASP_MIN_TIME_COST,
}


async def post_credentials(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(TOKEN_PATH, json={"email": email, "password": password})


async def stored_password_hash(database_url: str, user_id: str) -> str:
    """Read straight from the users table, past the service."""
    conn = await asyncpg.connect(driver_dsn(database_url))
    try:
        value: str = await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", uuid.UUID(user_id))
        return value
    finally:
        await conn.close()


def time_cost(phc: str) -> int:
    match = re.search(r"[$,]t=(\d+)[,$]", phc)
    assert match is not None, phc
    return int(match.group(1))


# --- POST /v1/auth/token


async def test_login_returns_a_bearer_token_that_is_not_cached(app: RunningApp) -> None:
    user = await create_user(app.client)
    response = await post_credentials(app.client, user["email"], user["password"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == app.services.settings.token_ttl_seconds
    assert body["access_token"].count(".") == 2
    assert response.headers["cache-control"] == "no-store"


async def test_login_ignores_the_case_of_the_email(app: RunningApp) -> None:
    user = await create_user(app.client, email=unique_email("MixedCase"))
    for variant in (user["email"].upper(), user["email"].lower()):
        response = await post_credentials(app.client, variant, user["password"])
        assert response.status_code == 200, (variant, response.text)


async def test_wrong_password_and_unknown_email_answer_identically(app: RunningApp) -> None:
    user = await create_user(app.client)
    wrong = await post_credentials(app.client, user["email"], "not-the-password")
    unknown = await post_credentials(app.client, unique_email("nobody"), user["password"])
    assert_error(wrong, 401, "invalid_credentials")
    assert unknown.status_code == wrong.status_code
    assert unknown.content == wrong.content
    assert set(unknown.headers) == set(wrong.headers)


async def test_a_malformed_email_fails_exactly_like_an_unknown_one(app: RunningApp) -> None:
    unknown = await post_credentials(app.client, unique_email("nobody"), "some-password")
    assert_error(unknown, 401, "invalid_credentials")
    for email in ("not-an-email", "nul\u0000byte@example.com", "@"):
        malformed = await post_credentials(app.client, email, "some-password")
        assert (malformed.status_code, malformed.content) == (401, unknown.content), email


async def _timed_post(client: httpx.AsyncClient, email: str, password: str) -> float:
    started = time.perf_counter()
    response = await post_credentials(client, email, password)
    elapsed = time.perf_counter() - started
    assert response.status_code == 401, response.text
    return elapsed


async def test_wrong_password_and_unknown_email_take_the_same_time(settings_for: Any) -> None:
    # Imports only at the service's own parameters: the floor of a failure is then one hash's time
    # (tests/security/test_failure_timing.py has other parameters), and 50 failures stay quick.
    async with serve(settings_for(**OWN_PARAMETERS_ONLY)) as app:
        user = await create_user(app.client)
        wrong: list[float] = []
        unknown: list[float] = []
        for round_ in range(TIMING_ROUNDS):
            # Interleaved, and in alternating order, so that drift in the machine's load hits both alike.
            pair = [(wrong, user["email"]), (unknown, unique_email("nobody"))]
            for samples, email in pair if round_ % 2 else reversed(pair):
                samples.append(await _timed_post(app.client, email, "not-the-password"))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.67 <= ratio <= 1.5, (ratio, statistics.median(unknown), statistics.median(wrong))


async def test_a_failed_login_is_answered_no_sooner_than_the_floor(app: RunningApp) -> None:
    user = await create_user(app.client)
    floor = await app.services.hasher.failure_floor()
    for email in (user["email"], unique_email("nobody")):
        # A lower bound: the server sleeps it out, so no load on the machine can make it shorter.
        assert await _timed_post(app.client, email, "not-the-password") >= floor, email


async def test_the_limits_429_is_documented_on_login_and_signup(app: RunningApp) -> None:
    schema = (await app.client.get("/openapi.json")).json()
    for path in ("/v1/auth/token", "/v1/users"):
        content = schema["paths"][path]["post"]["responses"]["429"]["content"]
        assert content["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorBody", path


async def test_login_with_a_missing_field_is_422(app: RunningApp) -> None:
    for body in ({"email": unique_email()}, {"password": "a-long-enough-password"}, {}):
        error = assert_error(await app.client.post(TOKEN_PATH, json=body), 422, "validation_error")
        assert {detail["code"] for detail in error["details"]} == {"missing"}, (body, error)


async def test_login_with_an_unknown_field_is_422(app: RunningApp) -> None:
    body = {"email": unique_email(), "password": "a-long-enough-password", "remember_me": True}
    error = assert_error(await app.client.post(TOKEN_PATH, json=body), 422, "validation_error")
    assert [detail["field"] for detail in error["details"]] == ["remember_me"]


async def _login_outcomes(client: httpx.AsyncClient, user: dict[str, Any], attempts: int) -> list[httpx.Response]:
    logins = (post_credentials(client, user["email"], user["password"]) for _ in range(attempts))
    return await asyncio.wait_for(asyncio.gather(*logins), timeout=30)


async def test_a_full_hashing_pool_refuses_logins_with_503(settings_for: Any) -> None:
    async with serve(settings_for(hash_workers=1, hash_queue_max=0)) as app:
        user = await create_user(app.client)
        responses = await _login_outcomes(app.client, user, attempts=8)
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 503}, statuses
    refused = [response for response in responses if response.status_code == 503]
    assert refused, statuses
    for response in refused:
        assert_error(response, 503, "hashing_overloaded")
        assert response.headers["retry-after"] == "1"


async def test_login_rehashes_a_password_stored_with_old_parameters(settings_for: Any, database_url: str) -> None:
    async with serve(settings_for(argon2_time_cost=2)) as old:
        user = await create_user(old.client)
    assert time_cost(await stored_password_hash(database_url, user["id"])) == 2
    async with serve(settings_for(argon2_time_cost=3)) as new:
        await login(new.client, user["email"], user["password"])
        assert time_cost(await stored_password_hash(database_url, user["id"])) == 3
        await login(new.client, user["email"], user["password"])


@pytest.mark.parametrize(("before", "after"), [("argon2-cffi", "libsodium"), ("libsodium", "argon2-cffi")])
async def test_a_switch_of_argon2_library_keeps_every_login_and_rehashes_on_a_cost_change(
    settings_for: Any, database_url: str, before: str, after: str
) -> None:
    async with serve(settings_for(argon2_backend=before)) as old:
        user = await create_user(old.client)
    stored = await stored_password_hash(database_url, user["id"])
    async with serve(settings_for(argon2_backend=after)) as switched:
        await login(switched.client, user["email"], user["password"])
        assert await stored_password_hash(database_url, user["id"]) == stored  # same parameters: kept
        wrong = {"email": user["email"], "password": "wrong-password"}
        assert_error(await switched.client.post("/v1/auth/token", json=wrong), 401, "invalid_credentials")
    async with serve(settings_for(argon2_backend=after, argon2_time_cost=3)) as costlier:
        await login(costlier.client, user["email"], user["password"])
        assert time_cost(await stored_password_hash(database_url, user["id"])) == 3
        await login(costlier.client, user["email"], user["password"])


# --- GET /v1/auth/verify


async def test_verify_returns_the_claims_of_a_valid_token(app: RunningApp) -> None:
    user = await create_user(app.client)
    before = int(time.time())
    token = await login(app.client, user["email"], user["password"])
    response = await app.client.get("/v1/auth/verify", headers=bearer(token))
    assert response.status_code == 200, response.text
    claims = response.json()
    settings = app.services.settings
    assert set(claims) == {"sub", "iss", "aud", "iat", "nbf", "exp", "jti"}
    assert claims["sub"] == user["id"]
    assert (claims["iss"], claims["aud"]) == (settings.token_issuer, settings.token_audience)
    assert before <= claims["iat"] == claims["nbf"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + settings.token_ttl_seconds
    assert isinstance(claims["jti"], str) and claims["jti"]


def assert_unauthorized(response: httpx.Response) -> None:
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_verify_without_an_authorization_header_is_401(client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/v1/auth/verify"))


async def test_verify_with_the_basic_scheme_is_401(client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/v1/auth/verify", headers={"Authorization": "Basic dXNlcjpwYXNz"}))


async def test_verify_with_an_empty_bearer_is_401(client: httpx.AsyncClient) -> None:
    # HTTP strips trailing whitespace from a header value, so this is what an empty bearer looks like.
    for header in ("Bearer", "bearer"):
        assert_unauthorized(await client.get("/v1/auth/verify", headers={"Authorization": header}))


async def test_verify_with_a_garbage_token_is_401(client: httpx.AsyncClient) -> None:
    for token in ("garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30."):
        assert_unauthorized(await client.get("/v1/auth/verify", headers=bearer(token)))


# --- GET /v1/me


async def test_me_returns_the_user_of_the_token(app: RunningApp) -> None:
    user = await create_user(app.client)
    token = await login(app.client, user["email"], user["password"])
    response = await app.client.get("/v1/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json() == {key: value for key, value in user.items() if key != "password"}


async def test_me_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert_unauthorized(await client.get("/v1/me"))


async def test_me_is_401_for_a_valid_token_whose_subject_is_not_a_user_id(app: RunningApp) -> None:
    settings = app.services.settings
    now = int(time.time())
    claims = {"sub": "not-a-uuid", "iss": settings.token_issuer, "aud": settings.token_audience}
    claims |= {"iat": now, "nbf": now, "exp": now + 60}
    token = jwt.encode(claims, TEST_SIGNING_KEY, algorithm="HS256", headers={"kid": settings.token_active_kid})
    assert (await app.client.get("/v1/auth/verify", headers=bearer(token))).status_code == 200
    assert_unauthorized(await app.client.get("/v1/me", headers=bearer(token)))


async def test_me_is_401_once_the_user_is_deleted(app: RunningApp) -> None:
    user = await create_user(app.client)
    token = await login(app.client, user["email"], user["password"])
    assert (await app.client.get("/v1/me", headers=bearer(token))).status_code == 200
    body = {"current_password": user["password"]}
    deleted = await app.client.request("DELETE", f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert deleted.status_code == 204, deleted.text
    assert_unauthorized(await app.client.get("/v1/me", headers=bearer(token)))
