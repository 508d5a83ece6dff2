"""Users over HTTP: create (one or a batch), read, update and delete, with their error answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import argon2
import httpx
import pytest

from tests.utils.app import RunningApp, assert_error, bearer, create_user, login, new_user, serve, unique_email
from tests.utils.postgres import stored_emails

PUBLIC_FIELDS = {"id", "email", "name", "created_at", "updated_at"}
IMPORTED_PASSWORD = "an-imported-password"


@pytest.fixture(scope="module")
def imported_hash() -> str:
    """An argon2id hash made elsewhere (library defaults, not the service's parameters)."""
    return argon2.PasswordHasher().hash(IMPORTED_PASSWORD)


def imported(password_hash: str, **overrides: Any) -> dict[str, Any]:
    item = {"email": unique_email("import"), "name": "Imported User", "password_hash": password_hash}
    item.update(overrides)
    return item


def assert_public_user(body: dict[str, Any], email: str, name: str) -> None:
    assert set(body) == PUBLIC_FIELDS, body
    assert uuid.UUID(body["id"])
    assert (body["email"], body["name"]) == (email, name)
    assert datetime.fromisoformat(body["created_at"]) <= datetime.fromisoformat(body["updated_at"])


async def can_log_in(client: httpx.AsyncClient, email: str, password: str) -> bool:
    response = await client.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def get_body(client: httpx.AsyncClient, user_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/users/{user_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def assert_unchanged(client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    assert await get_body(client, user["id"]) == {key: user[key] for key in PUBLIC_FIELDS}


async def user_with_token(client: httpx.AsyncClient) -> tuple[dict[str, Any], str]:
    user = await create_user(client)
    return user, await login(client, user["email"], user["password"])


async def delete(client: httpx.AsyncClient, user: dict[str, Any], token: str | None) -> httpx.Response:
    """DELETE the user with this token and the user's current password (tests/api/test_reauth.py: without)."""
    headers = bearer(token) if token is not None else {}
    body = {"current_password": user["password"]}
    return await client.request("DELETE", f"/v1/users/{user['id']}", json=body, headers=headers)


# --- POST /v1/users


async def test_create_answers_201_with_the_public_fields_and_location(client: httpx.AsyncClient) -> None:
    payload = new_user()
    response = await client.post("/v1/users", json=payload)
    assert response.status_code == 201, response.text
    body = response.json()
    assert_public_user(body, payload["email"], payload["name"])
    assert response.headers["location"] == f"/v1/users/{body['id']}"
    assert "password" not in response.text and "argon2" not in response.text


async def test_create_refuses_an_email_taken_in_another_case(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    response = await client.post("/v1/users", json=new_user(email=user["email"].upper()))
    assert_error(response, 409, "email_taken")


@pytest.mark.parametrize(
    ("overrides", "field", "code"),
    [
        ({"email": "not-an-email"}, "email", "value_error"),
        ({"name": ""}, "name", "string_too_short"),
        ({"name": "   "}, "name", "string_too_short"),
        ({"password": "x" * 7}, "password", "string_too_short"),
        ({"password": "x" * 1025}, "password", "string_too_long"),
    ],
    ids=["bad-email", "empty-name", "blank-name", "password-7", "password-1025"],
)
async def test_create_refuses_invalid_fields_naming_them(
    database_url: str, app: RunningApp, overrides: dict[str, Any], field: str, code: str
) -> None:
    payload = new_user(**overrides)
    error = assert_error(await app.client.post("/v1/users", json=payload), 422, "validation_error")
    assert [(d["field"], d["code"]) for d in error["details"]] == [(field, code)]
    assert await stored_emails(database_url, [payload["email"]]) == set()


async def test_password_bounds_follow_settings(settings_for: Any) -> None:
    async with serve(settings_for(password_max_length=64)) as app:
        response = await app.client.post("/v1/users", json=new_user(password="x" * 65))
        error = assert_error(response, 422, "validation_error")
        assert [(d["field"], d["code"]) for d in error["details"]] == [("password", "string_too_long")]


@pytest.mark.parametrize("length", [8, 64, 1024])
async def test_create_accepts_passwords_within_bounds_and_they_log_in(client: httpx.AsyncClient, length: int) -> None:
    user = await create_user(client, password="p" * length)
    assert await can_log_in(client, user["email"], "p" * length)


# --- GET /v1/users/{id}


async def test_get_answers_the_created_body(client: httpx.AsyncClient) -> None:
    await assert_unchanged(client, await create_user(client))


async def test_get_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"/v1/users/{uuid.uuid4()}"), 404, "not_found")


async def test_get_non_uuid_id_is_422(client: httpx.AsyncClient) -> None:
    error = assert_error(await client.get("/v1/users/not-a-uuid"), 422, "validation_error")
    assert [d["field"] for d in error["details"]] == ["path.user_id"]


# --- PATCH /v1/users/{id}


async def test_patch_changes_the_name(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    response = await client.patch(f"/v1/users/{user['id']}", json={"name": "New Name"}, headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert_public_user(body, user["email"], "New Name")
    assert (body["id"], body["created_at"]) == (user["id"], user["created_at"])
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(user["updated_at"])


async def test_patch_changes_the_email_used_to_log_in(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    email = unique_email("changed")
    body = {"email": email, "current_password": user["password"]}
    response = await client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == email
    assert await can_log_in(client, email, user["password"])
    assert not await can_log_in(client, user["email"], user["password"])


async def test_patch_changes_the_password(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    new_password = "a-brand-new-password"
    body = {"password": new_password, "current_password": user["password"]}
    response = await client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert set(response.json()) == PUBLIC_FIELDS
    assert not await can_log_in(client, user["email"], user["password"])
    assert await can_log_in(client, user["email"], new_password)


async def test_patch_changes_name_email_and_password_together(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    changes = {"name": "All New", "email": unique_email("all-new"), "password": "another-long-password"}
    body = {**changes, "current_password": user["password"]}
    response = await client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["email"]) == (changes["name"], changes["email"])
    assert body["updated_at"] > user["updated_at"]
    assert await get_body(client, user["id"]) == body
    assert await can_log_in(client, changes["email"], changes["password"])
    assert not await can_log_in(client, changes["email"], user["password"])
    assert not await can_log_in(client, user["email"], changes["password"])


async def test_patch_refuses_a_short_password(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    response = await client.patch(f"/v1/users/{user['id']}", json={"password": "short"}, headers=bearer(token))
    error = assert_error(response, 422, "validation_error")
    assert [d["field"] for d in error["details"]] == ["password"]
    assert await can_log_in(client, user["email"], user["password"])


async def test_patch_refuses_an_email_of_another_user(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    other = await create_user(client)
    body = {"email": other["email"].upper(), "current_password": user["password"]}
    response = await client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert_error(response, 409, "email_taken")
    await assert_unchanged(client, user)


@pytest.mark.parametrize(
    "body", [{}, {"name": None}, {"email": None}, {"password": None}, {"name": "ok", "email": None}]
)
async def test_patch_without_a_change_is_422(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    user, token = await user_with_token(client)
    response = await client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))
    assert_error(response, 422, "validation_error")
    await assert_unchanged(client, user)


async def test_patch_shows_at_once_in_get(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    assert (await get_body(client, user["id"]))["name"] == user["name"]  # now cached
    response = await client.patch(f"/v1/users/{user['id']}", json={"name": "Renamed"}, headers=bearer(token))
    assert response.status_code == 200, response.text
    assert await get_body(client, user["id"]) == response.json()


async def test_patch_of_a_deleted_user_is_401_the_delete_revoked_the_token(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    assert (await delete(client, user, token)).status_code == 204
    response = await client.patch(f"/v1/users/{user['id']}", json={"name": "Ghost"}, headers=bearer(token))
    assert_error(response, 401, "unauthorized")


async def test_patch_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    response = await client.patch(f"/v1/users/{user['id']}", json={"name": "Nobody"})
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    await assert_unchanged(client, user)


@pytest.mark.parametrize("authorization", ["Bearer not-a-token", "Basic dXNlcjpwYXNz", "Bearer", "tampered"])
async def test_patch_with_a_bad_token_is_401(client: httpx.AsyncClient, authorization: str) -> None:
    user, token = await user_with_token(client)
    if authorization == "tampered":
        authorization = f"Bearer {token[:-4]}{'AAAA' if not token.endswith('AAAA') else 'BBBB'}"
    headers = {"Authorization": authorization}
    response = await client.patch(f"/v1/users/{user['id']}", json={"name": "Nobody"}, headers=headers)
    assert_error(response, 401, "unauthorized")
    await assert_unchanged(client, user)


async def test_patch_with_another_users_token_is_403(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    _, other_token = await user_with_token(client)
    response = await client.patch(f"/v1/users/{user['id']}", json={"name": "Hijacked"}, headers=bearer(other_token))
    assert_error(response, 403, "forbidden")
    await assert_unchanged(client, user)


# --- DELETE /v1/users/{id}


async def test_delete_with_own_token_is_204_then_get_is_404(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    await get_body(client, user["id"])  # now cached
    response = await delete(client, user, token)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(await client.get(f"/v1/users/{user['id']}"), 404, "not_found")
    assert not await can_log_in(client, user["email"], user["password"])


async def test_delete_twice_is_401_the_first_revoked_the_token(client: httpx.AsyncClient) -> None:
    user, token = await user_with_token(client)
    assert (await delete(client, user, token)).status_code == 204
    assert_error(await delete(client, user, token), 401, "unauthorized")


async def test_delete_with_another_users_token_is_403(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    _, other_token = await user_with_token(client)
    assert_error(await delete(client, user, other_token), 403, "forbidden")
    await assert_unchanged(client, user)


async def test_delete_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    assert_error(await delete(client, user, None), 401, "unauthorized")
    await assert_unchanged(client, user)


# --- POST /v1/users:batch


async def post_batch(client: httpx.AsyncClient, items: list[dict[str, Any]]) -> httpx.Response:
    return await client.post("/v1/users:batch", json={"users": items})


async def test_batch_creates_every_user_in_input_order(database_url: str, app: RunningApp, imported_hash: str) -> None:
    items = [new_user(), imported(imported_hash), new_user(name="Third"), imported(imported_hash)]
    response = await post_batch(app.client, items)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"users"}
    for out, item in zip(body["users"], items, strict=True):
        assert_public_user(out, item["email"], item["name"])
    assert "argon2" not in response.text and "password" not in response.text
    emails = [item["email"] for item in items]
    assert await stored_emails(database_url, emails) == {e.lower() for e in emails}
    assert [await get_body(app.client, out["id"]) for out in body["users"]] == body["users"]


async def test_batch_users_log_in_with_a_hashed_or_an_imported_password(
    client: httpx.AsyncClient, imported_hash: str
) -> None:
    hashed_here, hashed_elsewhere = new_user(), imported(imported_hash)
    assert (await post_batch(client, [hashed_here, hashed_elsewhere])).status_code == 201
    assert await can_log_in(client, hashed_here["email"], hashed_here["password"])
    assert await can_log_in(client, hashed_elsewhere["email"], IMPORTED_PASSWORD)
    assert not await can_log_in(client, hashed_elsewhere["email"], "not-the-imported-password")


async def test_batch_of_the_default_limit_is_stored_whole(
    database_url: str, app: RunningApp, imported_hash: str
) -> None:
    assert app.services.settings.batch_max_users == 1000
    items = [imported(imported_hash) for _ in range(1000)]
    response = await post_batch(app.client, items)
    assert response.status_code == 201, response.text
    assert [out["email"] for out in response.json()["users"]] == [item["email"] for item in items]
    emails = [item["email"] for item in items]
    stored = await stored_emails(database_url, emails)
    assert len(stored) == 1000 and stored == {email.lower() for email in emails}


async def test_batch_over_the_default_limit_is_refused(database_url: str, app: RunningApp, imported_hash: str) -> None:
    items = [imported(imported_hash) for _ in range(1001)]
    error = assert_error(await post_batch(app.client, items), 422, "validation_error")
    assert [(d["field"], d["code"]) for d in error["details"]] == [("users", "too_many_items")]
    assert await stored_emails(database_url, [item["email"] for item in items]) == set()


async def test_batch_limit_follows_settings(settings_for: Any, database_url: str, imported_hash: str) -> None:
    async with serve(settings_for(batch_max_users=3)) as app:
        items = [imported(imported_hash) for _ in range(4)]
        error = assert_error(await post_batch(app.client, items), 422, "validation_error")
        assert [d["code"] for d in error["details"]] == ["too_many_items"]
        assert await stored_emails(database_url, [item["email"] for item in items]) == set()
        assert (await post_batch(app.client, items[:3])).status_code == 201


BATCH_TOKEN = "a-batch-token-for-internal-callers"


async def test_with_a_batch_token_only_its_bearer_imports(
    settings_for: Any, database_url: str, imported_hash: str
) -> None:
    async with serve(settings_for(batch_token=BATCH_TOKEN)) as app:
        refused = []
        for header in ({}, bearer("a-wrong-token"), bearer(BATCH_TOKEN[:-1]), {"Authorization": BATCH_TOKEN}):
            items = [imported(imported_hash)]
            response = await app.client.post("/v1/users:batch", json={"users": items}, headers=header)
            error = assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert error["message"] == "the batch token is required"
            refused += [item["email"] for item in items]
        # Refused before the body is looked at: an invalid one does not tell a caller without the token more.
        assert_error(await app.client.post("/v1/users:batch", json={"users": []}), 401, "unauthorized")
        items = [imported(imported_hash)]
        response = await app.client.post("/v1/users:batch", json={"users": items}, headers=bearer(BATCH_TOKEN))
        assert response.status_code == 201, response.text
    assert await stored_emails(database_url, refused) == set()
    assert await stored_emails(database_url, [items[0]["email"]]) == {items[0]["email"].lower()}


async def test_in_production_without_a_batch_token_the_batch_is_off(
    settings_for: Any, database_url: str, imported_hash: str
) -> None:
    async with serve(settings_for(environment="production")) as app:
        items = [imported(imported_hash)]
        response = await app.client.post("/v1/users:batch", json={"users": items})
        assert_error(response, 403, "batch_import_disabled")
        assert (await app.client.post("/v1/users", json=new_user())).status_code == 201, "signups stay open"
    assert await stored_emails(database_url, [items[0]["email"]]) == set()


async def test_batch_must_not_be_empty(client: httpx.AsyncClient) -> None:
    error = assert_error(await post_batch(client, []), 422, "validation_error")
    assert [d["field"] for d in error["details"]] == ["users"]


async def test_batch_with_malformed_items_writes_nothing_and_names_each(
    database_url: str, app: RunningApp, imported_hash: str
) -> None:
    items = [
        new_user(),
        imported(imported_hash, email="not-an-email"),
        imported(imported_hash),
        new_user(name=""),
        imported("$2b$12$notanargon2hashatallnotanargon2hashatallxxxxxxxxxxxxx"),
    ]
    error = assert_error(await post_batch(app.client, items), 422, "validation_error")
    assert {(d["index"], d["field"]) for d in error["details"]} == {(1, "email"), (3, "name"), (4, "password_hash")}
    assert await stored_emails(database_url, [item["email"] for item in items]) == set()


async def test_batch_with_bad_passwords_writes_nothing_and_names_each(
    database_url: str, app: RunningApp, imported_hash: str
) -> None:
    items = [new_user(), new_user(password="short"), imported(imported_hash), new_user(password="x" * 1025)]
    error = assert_error(await post_batch(app.client, items), 422, "validation_error")
    assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [
        (1, "password", "string_too_short"),
        (3, "password", "string_too_long"),
    ]
    emails = [item["email"] for item in items]
    assert await stored_emails(database_url, emails) == set()


async def test_batch_with_an_email_twice_names_the_later_item(
    database_url: str, app: RunningApp, imported_hash: str
) -> None:
    first = imported(imported_hash)
    items = [first, imported(imported_hash), imported(imported_hash, email=first["email"].upper())]
    error = assert_error(await post_batch(app.client, items), 422, "validation_error")
    assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [(2, "email", "duplicate_in_batch")]
    emails = [item["email"] for item in items]
    assert await stored_emails(database_url, emails) == set()


async def test_batch_with_a_taken_email_is_409_naming_the_item(
    database_url: str, app: RunningApp, imported_hash: str
) -> None:
    existing = await create_user(app.client)
    items = [imported(imported_hash), imported(imported_hash, email=existing["email"].upper())]
    error = assert_error(await post_batch(app.client, items), 409, "email_taken")
    assert [(d["index"], d["field"]) for d in error["details"]] == [(1, "email")]
    assert await stored_emails(database_url, [items[0]["email"]]) == set()


@pytest.mark.parametrize("both", [False, True], ids=["neither", "both"])
async def test_batch_item_needs_exactly_one_of_password_and_hash(
    database_url: str, app: RunningApp, imported_hash: str, both: bool
) -> None:
    item = {"email": unique_email("import"), "name": "Which Secret"}
    if both:
        item |= {"password": "a-long-enough-password", "password_hash": imported_hash}
    items = [imported(imported_hash), item]
    error = assert_error(await post_batch(app.client, items), 422, "validation_error")
    assert [(d["index"], d["field"], d["code"]) for d in error["details"]] == [(1, "password", "password_xor_hash")]
    emails = [i["email"] for i in items]
    assert await stored_emails(database_url, emails) == set()
