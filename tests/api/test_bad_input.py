"""Bad request bodies: each gets the one error shape, and none of them writes anything."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.utils.app import RunningApp, assert_error, bearer, create_user, login, serve, unique_email
from tests.utils.postgres import stored_emails

PASSWORD = "a-long-enough-password"
ONE_MB = 1_000_000
JSON_HEADERS = {"Content-Type": "application/json"}
# Each endpoint that takes a body, and the fields its body has.
ENDPOINTS = {
    "create": ("POST", "/v1/users", ("email", "name", "password")),
    "batch": ("POST", "/v1/users:batch", ("email", "name", "password")),
    "token": ("POST", "/v1/auth/token", ("email", "password")),
    "patch": ("PATCH", "/v1/users/{id}", ("email", "name", "password", "current_password")),
    "delete": ("DELETE", "/v1/users/{id}", ("current_password",)),
}
# (endpoint, field) for every field of every body.
FIELDS = [(endpoint, field) for endpoint, (_, _, fields) in ENDPOINTS.items() for field in fields]
# (endpoint, field) for the text that is stored: it must be text PostgreSQL can hold.
STORED_TEXT = [(endpoint, field) for endpoint, field in FIELDS if endpoint != "token" and "password" not in field]
WRONG_TYPES = {"name": 123, "email": ["x@example.com"], "password": 12345678, "current_password": True}


class Target:
    """One endpoint of a running service, with a user whose token a PATCH needs."""

    def __init__(self, app: RunningApp, database_url: str, endpoint: str, owner: dict[str, Any], token: str) -> None:
        self.app = app
        self.database_url = database_url
        self.endpoint = endpoint
        self.owner = {key: value for key, value in owner.items() if key != "password"}
        self.method, path, self.fields = ENDPOINTS[endpoint]
        self.path = path.format(id=owner["id"])
        self.headers = {**JSON_HEADERS, **bearer(token)}
        self.email = unique_email("bad-input")

    def item(self, **changes: Any) -> dict[str, Any]:
        """A body item that would succeed, with these changes; its email must never be stored."""
        values = {"email": self.email, "name": "Bad Input", "password": PASSWORD, "current_password": PASSWORD}
        return {**{field: values[field] for field in self.fields}, **changes}

    def body(self, **changes: Any) -> dict[str, Any]:
        item = self.item(**changes)
        return {"users": [item]} if self.endpoint == "batch" else item

    async def send(self, content: Any) -> httpx.Response:
        """Send these bytes (or chunks of them) as the body."""
        return await self.app.client.request(self.method, self.path, content=content, headers=self.headers)

    async def send_json(self, body: dict[str, Any]) -> httpx.Response:
        return await self.send(json.dumps(body).encode())

    def field(self, name: str) -> dict[str, Any]:
        """How the error details name this field of the item."""
        return {"index": 0, "field": name} if self.endpoint == "batch" else {"field": name}

    async def assert_nothing_written(self) -> None:
        """No user has the body's email, and the user a PATCH or DELETE targets is as it was."""
        assert await stored_emails(self.database_url, [self.email]) == set()
        response = await self.app.client.get(f"/v1/users/{self.owner['id']}")
        assert response.json() == self.owner


@pytest.fixture
async def owner(app: RunningApp) -> tuple[dict[str, Any], str]:
    user = await create_user(app.client)
    return user, await login(app.client, user["email"], user["password"])


@pytest.fixture(params=list(ENDPOINTS))
def target(request: Any, app: RunningApp, database_url: str, owner: tuple[dict[str, Any], str]) -> Target:
    return Target(app, database_url, request.param, *owner)


def named(error: dict[str, Any], target: Target) -> list[dict[str, Any]]:
    keys = ("index", "field") if target.endpoint == "batch" else ("field",)
    return [{key: detail.get(key) for key in keys} for detail in error["details"]]


async def test_malformed_json_is_400(target: Target) -> None:
    truncated = json.dumps(target.body()).encode()[:-1]
    assert_error(await target.send(truncated), 400, "malformed_json")
    await target.assert_nothing_written()


@pytest.mark.parametrize(
    "content", [b"", b"null", b"[]", b'"text"', b"42"], ids=["empty", "null", "list", "str", "int"]
)
async def test_a_body_that_is_not_an_object_is_422(target: Target, content: bytes) -> None:
    # A DELETE's body is optional: none (or null) is a delete without the current password.
    absent = target.endpoint == "delete" and content in (b"", b"null")
    expected = (403, "reauthentication_required") if absent else (422, "validation_error")
    assert_error(await target.send(content), *expected)
    await target.assert_nothing_written()


@pytest.mark.parametrize(("target", "field"), FIELDS, indirect=["target"])
async def test_a_wrong_type_is_422_naming_the_field(target: Target, field: str) -> None:
    body = target.body(**{field: WRONG_TYPES[field]})
    error = assert_error(await target.send_json(body), 422, "validation_error")
    assert named(error, target) == [target.field(field)]
    assert error["details"][0]["code"] == "string_type"
    await target.assert_nothing_written()


async def test_an_unknown_field_is_422_extra_forbidden(target: Target) -> None:
    error = assert_error(await target.send_json(target.body(is_admin=True)), 422, "validation_error")
    assert named(error, target) == [target.field("is_admin")]
    assert error["details"][0]["code"] == "extra_forbidden"
    await target.assert_nothing_written()


async def test_an_unknown_field_beside_the_batch_is_422(app: RunningApp, database_url: str) -> None:
    email = unique_email("bad-input")
    body = {"users": [{"email": email, "name": "N", "password": PASSWORD}], "upsert": True}
    error = assert_error(await app.client.post("/v1/users:batch", json=body), 422, "validation_error")
    assert [(d["field"], d["code"]) for d in error["details"]] == [("upsert", "extra_forbidden")]
    assert await stored_emails(database_url, [email]) == set()


@pytest.mark.parametrize(("target", "field"), FIELDS, indirect=["target"])
async def test_a_string_of_1_mb_is_422_naming_the_field(target: Target, field: str) -> None:
    huge = "a" * ONE_MB + ("@example.com" if field == "email" else "")
    content = json.dumps(target.body(**{field: huge})).encode()
    assert len(content) < target.app.services.settings.max_body_bytes
    error = assert_error(await target.send(content), 422, "validation_error")
    assert named(error, target) == [target.field(field)]
    assert len(error["message"]) + len(json.dumps(error["details"])) < 10_000  # the input is not echoed
    await target.assert_nothing_written()


def padded(body: dict[str, Any], size: int) -> bytes:
    """A valid JSON body of exactly `size` bytes: trailing whitespace is still JSON."""
    content = json.dumps(body).encode()
    assert len(content) < size
    return content + b" " * (size - len(content))


async def chunks(content: bytes, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


async def test_a_body_over_the_limit_is_413_with_content_length(target: Target) -> None:
    content = padded(target.body(), target.app.services.settings.max_body_bytes + 1)
    assert_error(await target.send(content), 413, "payload_too_large")
    await target.assert_nothing_written()


async def test_a_chunked_body_over_the_limit_is_413(target: Target) -> None:
    content = padded(target.body(), target.app.services.settings.max_body_bytes + 1)
    response = await target.send(chunks(content))
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")
    await target.assert_nothing_written()


async def test_a_body_at_the_limit_is_accepted(app: RunningApp, database_url: str) -> None:
    email = unique_email("at-limit")
    content = padded({"email": email, "name": "At Limit", "password": PASSWORD}, app.services.settings.max_body_bytes)
    response = await app.client.post("/v1/users", content=content, headers=JSON_HEADERS)
    assert response.status_code == 201, response.text
    assert await stored_emails(database_url, [email]) == {email}


async def test_the_body_limit_follows_settings(settings_for: Any, database_url: str) -> None:
    async with serve(settings_for(max_body_bytes=2048)) as app:
        emails = [unique_email("limit") for _ in range(40)]
        body = {"users": [{"email": email, "name": "N", "password": PASSWORD} for email in emails]}
        content = json.dumps(body).encode()
        assert len(content) > 2048
        assert_error(
            await app.client.post("/v1/users:batch", content=content, headers=JSON_HEADERS), 413, "payload_too_large"
        )
        response = await app.client.post("/v1/users:batch", content=chunks(content, 512), headers=JSON_HEADERS)
        assert_error(response, 413, "payload_too_large")
        assert await stored_emails(database_url, emails) == set()


async def test_invalid_utf8_is_400(target: Target) -> None:
    content = json.dumps(target.body()).encode().replace(b'{"', b'{"\xff\xfe', 1)
    assert_error(await target.send(content), 400, "malformed_body")
    await target.assert_nothing_written()


async def test_invalid_utf8_inside_a_value_is_400(target: Target) -> None:
    content = json.dumps(target.body()).encode().replace(PASSWORD.encode(), b"pass\xc3\x28word-long-enough")
    assert_error(await target.send(content), 400, "malformed_body")
    await target.assert_nothing_written()


@pytest.mark.parametrize(("target", "field"), STORED_TEXT, indirect=["target"])
async def test_an_escaped_nul_is_422_naming_the_field(target: Target, field: str) -> None:
    value = "Bad\u0000Input" if field == "name" else target.email.replace("@", "\u0000@")
    error = assert_error(await target.send_json(target.body(**{field: value})), 422, "validation_error")
    assert named(error, target) == [target.field(field)]
    await target.assert_nothing_written()


async def test_an_escaped_nul_in_a_login_email_fails_like_an_unknown_email(
    app: RunningApp, owner: tuple[dict[str, Any], str]
) -> None:
    user, _ = owner
    email = user["email"].replace("@", "\u0000@")
    response = await app.client.post("/v1/auth/token", json={"email": email, "password": user["password"]})
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(("target", "field"), FIELDS, indirect=["target"])
async def test_a_lone_surrogate_is_422_naming_the_field(target: Target, field: str) -> None:
    # Valid JSON ("\ud800" is a legal escape) that is no Unicode text: it cannot be stored or hashed.
    value = target.email.replace("@", "\ud800@") if field == "email" else f"{PASSWORD}\ud800"
    error = assert_error(await target.send_json(target.body(**{field: value})), 422, "validation_error")
    assert named(error, target) == [target.field(field)]
    await target.assert_nothing_written()


async def test_a_raw_nul_byte_is_malformed_json(target: Target) -> None:
    # RFC 8259 forbids unescaped control characters inside strings.
    content = json.dumps(target.body()).encode().replace(b'": "', b'": "\x00', 1)
    assert_error(await target.send(content), 400, "malformed_json")
    await target.assert_nothing_written()
