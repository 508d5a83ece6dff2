"""Re-authentication: a bearer token alone cannot change a user's email or password, nor delete the user.

A stolen access token is worth its TTL of reads and renames, not the account: the changes that
take an account over (email, password) or destroy it (delete) also need the current password.
Every refusal leaves the row exactly as it was, which the tests read from the database itself.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.utils.app import RunningApp, assert_error, bearer, create_user, login, serve, unique_email
from tests.utils.sql import sql_connection

NEW_PASSWORD = "a-brand-new-password"


async def stored_row(database_url: str, user_id: str) -> dict[str, Any] | None:
    """The user's whole row, hash and timestamps included, as the database holds it."""
    async with sql_connection(database_url) as conn:
        row = await conn.fetchrow("SELECT * FROM users WHERE id = $1", uuid.UUID(user_id))
    return None if row is None else dict(row)


async def can_log_in(client: httpx.AsyncClient, email: str, password: str) -> bool:
    response = await client.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


class Account:
    """A user, its token and its row as stored before the request under test."""

    def __init__(self, app: RunningApp, database_url: str, user: dict[str, Any], token: str) -> None:
        self.app, self.database_url, self.user, self.token = app, database_url, user, token
        self.path = f"/v1/users/{user['id']}"
        self.row: dict[str, Any] | None = None

    async def patch(self, body: dict[str, Any]) -> httpx.Response:
        return await self.app.client.patch(self.path, json=body, headers=bearer(self.token))

    async def delete(self, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.app.client.request("DELETE", self.path, json=body, headers=bearer(self.token))

    async def assert_untouched(self) -> None:
        """The row is byte for byte what it was (updated_at too), and the old password still logs in."""
        assert await stored_row(self.database_url, self.user["id"]) == self.row
        assert await can_log_in(self.app.client, self.user["email"], self.user["password"])


@pytest.fixture
async def account(app: RunningApp, database_url: str) -> Account:
    user = await create_user(app.client)
    found = Account(app, database_url, user, await login(app.client, user["email"], user["password"]))
    found.row = await stored_row(database_url, user["id"])
    return found


TAKEOVERS = {
    "email": lambda: {"email": unique_email("takeover")},
    "password": lambda: {"password": NEW_PASSWORD},
    "both": lambda: {"email": unique_email("takeover"), "password": NEW_PASSWORD},
    "with-name": lambda: {"name": "Taken Over", "email": unique_email("takeover")},
}


@pytest.mark.parametrize("change", list(TAKEOVERS))
async def test_changing_email_or_password_without_the_current_password_is_403(account: Account, change: str) -> None:
    error = assert_error(await account.patch(TAKEOVERS[change]()), 403, "reauthentication_required")
    assert [detail["field"] for detail in error["details"]] == ["current_password"]
    await account.assert_untouched()


@pytest.mark.parametrize("change", list(TAKEOVERS))
async def test_changing_email_or_password_with_a_wrong_current_password_is_403(account: Account, change: str) -> None:
    body = {**TAKEOVERS[change](), "current_password": "not-the-current-password"}
    response = await account.patch(body)
    error = assert_error(response, 403, "invalid_credentials")
    assert [detail["field"] for detail in error["details"]] == ["current_password"]
    # The token is fine: no challenge that would make a client drop it and log in again.
    assert "www-authenticate" not in response.headers
    await account.assert_untouched()


async def test_the_email_changes_with_the_current_password(account: Account) -> None:
    email = unique_email("moved")
    response = await account.patch({"email": email, "current_password": account.user["password"]})
    assert response.status_code == 200, response.text
    assert response.json()["email"] == email
    assert await can_log_in(account.app.client, email, account.user["password"])
    assert not await can_log_in(account.app.client, account.user["email"], account.user["password"])


async def test_the_password_changes_with_the_current_password(account: Account) -> None:
    response = await account.patch({"password": NEW_PASSWORD, "current_password": account.user["password"]})
    assert response.status_code == 200, response.text
    assert "password" not in response.text
    assert await can_log_in(account.app.client, account.user["email"], NEW_PASSWORD)
    assert not await can_log_in(account.app.client, account.user["email"], account.user["password"])
    # The old password no longer re-authenticates either.
    body = {"email": unique_email("late"), "current_password": account.user["password"]}
    assert_error(await account.patch(body), 403, "invalid_credentials")


async def test_a_name_change_needs_only_the_token(account: Account) -> None:
    response = await account.patch({"name": "Just Renamed"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Just Renamed"


async def test_a_current_password_given_is_checked_even_for_a_name_change(account: Account) -> None:
    # A credential sent is never ignored: a wrong one is refused, whatever the change.
    response = await account.patch({"name": "Renamed", "current_password": "not-the-current-password"})
    assert_error(response, 403, "invalid_credentials")
    await account.assert_untouched()
    response = await account.patch({"name": "Renamed", "current_password": account.user["password"]})
    assert response.status_code == 200, response.text


async def test_a_null_current_password_is_422(account: Account) -> None:
    error = assert_error(await account.patch({"email": unique_email(), "current_password": None}), 422)
    assert [detail["field"] for detail in error["details"]] == ["current_password"]
    await account.assert_untouched()


async def test_an_invalid_new_password_is_422_before_the_current_one_is_checked(account: Account) -> None:
    # Cheap checks first: a too-short new password costs no argon2 verification, whatever else is sent.
    error = assert_error(await account.patch({"password": "short"}), 422, "validation_error")
    assert [detail["field"] for detail in error["details"]] == ["password"]
    await account.assert_untouched()


async def test_another_users_current_password_does_not_reauthenticate(app: RunningApp, account: Account) -> None:
    other = await create_user(app.client, password="the-other-users-password")
    body = {"email": unique_email("takeover"), "current_password": other["password"]}
    assert_error(await account.patch(body), 403, "invalid_credentials")
    await account.assert_untouched()


# --- DELETE


@pytest.mark.parametrize("body", [None, {}], ids=["no-body", "empty-object"])
async def test_delete_without_the_current_password_is_403(account: Account, body: dict[str, Any] | None) -> None:
    error = assert_error(await account.delete(body), 403, "reauthentication_required")
    assert [detail["field"] for detail in error["details"]] == ["current_password"]
    await account.assert_untouched()


async def test_delete_with_a_wrong_current_password_is_403(account: Account) -> None:
    response = await account.delete({"current_password": "not-the-current-password"})
    assert_error(response, 403, "invalid_credentials")
    await account.assert_untouched()


async def test_delete_with_the_current_password_is_204(account: Account) -> None:
    response = await account.delete({"current_password": account.user["password"]})
    assert response.status_code == 204, response.text
    assert await stored_row(account.database_url, account.user["id"]) is None
    assert not await can_log_in(account.app.client, account.user["email"], account.user["password"])


async def test_delete_with_another_users_token_is_403_before_any_password(app: RunningApp, account: Account) -> None:
    other = await create_user(app.client)
    token = await login(app.client, other["email"], other["password"])
    body = {"current_password": other["password"]}
    response = await app.client.request("DELETE", account.path, json=body, headers=bearer(token))
    assert_error(response, 403, "forbidden")
    await account.assert_untouched()


# --- A wrong current password is a guess: the login limits count it


async def test_wrong_current_passwords_count_against_the_login_limits(settings_for: Any, database_url: str) -> None:
    async with serve(settings_for(login_failures_per_account_client=3)) as app:
        user = await create_user(app.client)
        account = Account(app, database_url, user, await login(app.client, user["email"], user["password"]))
        account.row = await stored_row(database_url, user["id"])
        wrong = {"email": unique_email("takeover"), "current_password": "not-the-current-password"}
        for _ in range(3):
            assert_error(await account.patch(wrong), 403, "invalid_credentials")
        for response in (await account.patch(wrong), await account.delete({"current_password": "wrong-again"})):
            assert_error(response, 429, "too_many_failed_logins")
            assert int(response.headers["retry-after"]) > 0
        # Counted with the logins: this client's next login on the account waits too, right password or not.
        limited = await app.client.post("/v1/auth/token", json={"email": user["email"], "password": user["password"]})
        assert_error(limited, 429, "too_many_failed_logins")
        assert await stored_row(database_url, user["id"]) == account.row


async def test_reauthentication_waits_its_turn_for_the_hasher(account: Account) -> None:
    """Verified in the hashing pool with its backpressure: when it is full, a fast 503 and nothing written."""
    hasher = account.app.services.hasher
    body = {"email": unique_email("moved"), "current_password": account.user["password"]}
    held, hasher.admitted = hasher.admitted, hasher.capacity  # every place in the pool taken
    try:
        response = await account.patch(body)
    finally:
        hasher.admitted = held
    assert_error(response, 503, "hashing_overloaded")
    assert response.headers["retry-after"] == "1"
    await account.assert_untouched()
    assert (await account.patch(body)).status_code == 200, "once there is room, the same change goes through"
