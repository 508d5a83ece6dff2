"""The OpenAPI schema says what the service does: every status it answers, every bound it enforces."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import jsonschema_rs
import pytest
import schemathesis

from tests.utils.app import RunningApp, assert_error, bearer, create_user, login, new_user, serve, unique_email

EXPECTED = {
    ("/v1/users", "post"): "201",
    ("/v1/users:batch", "post"): "201",
    ("/v1/users/{user_id}", "get"): "200",
    ("/v1/users/{user_id}", "patch"): "200",
    ("/v1/users/{user_id}", "delete"): "204",
    ("/v1/auth/token", "post"): "200",
    ("/v1/auth/verify", "get"): "200",
    ("/v1/me", "get"): "200",
    ("/healthz", "get"): "200",
    ("/readyz", "get"): "200",
}
ERROR_REF = "#/components/schemas/ErrorBody"
# The models a client sends; each of their fields may be left out or is required, none is nullable.
REQUEST_MODELS = ["UserCreate", "UserUpdate", "UserImport", "UserBatch", "Reauthentication", "Credentials"]
NEW_PASSWORDS = [("UserCreate", "password"), ("UserUpdate", "password"), ("UserImport", "password")]


async def openapi(app: RunningApp) -> dict[str, Any]:
    response = await app.client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def objects(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from objects(value)


async def test_every_route_is_documented_with_its_success_status(app: RunningApp) -> None:
    schema = await openapi(app)
    assert {(path, method) for path, method, _ in operations(schema)} == set(EXPECTED)
    for (path, method), status in EXPECTED.items():
        operation = schema["paths"][path][method]
        assert status in operation["responses"], (path, method)
        assert operation.get("description") or operation.get("summary"), (path, method)


async def test_every_error_status_has_the_shared_error_body_and_says_what_it_means(app: RunningApp) -> None:
    schema = await openapi(app)
    for path, method, operation in operations(schema):
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            assert response["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, (path, method, status)
            assert response["description"] and response["description"] != "Successful Response"
            if status in ("429", "503"):
                assert "Retry-After" in response["headers"], (path, method, status)
    assert "HTTPValidationError" not in schema["components"]["schemas"], "FastAPI's own 422 shape is never sent"


async def test_every_route_with_a_body_documents_the_answers_to_a_bad_body(app: RunningApp) -> None:
    schema = await openapi(app)
    for path, method, operation in operations(schema):
        if "requestBody" in operation:
            assert {"400", "413", "415", "422", "503"} <= set(operation["responses"]), (path, method)


async def test_the_user_body_is_documented_without_any_password_field(app: RunningApp) -> None:
    schema = await openapi(app)
    user = schema["components"]["schemas"]["UserOut"]["properties"]
    assert set(user) == {"id", "email", "name", "created_at", "updated_at"}


async def test_the_interactive_docs_are_served(app: RunningApp) -> None:
    response = await app.client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


# --- Bounds and nullability: as the schema says, so the service enforces


@pytest.mark.parametrize(("low", "high"), [(8, 1024), (12, 64)], ids=["defaults", "configured"])
async def test_password_bounds_in_the_schema_are_those_enforced(settings_for: Any, low: int, high: int) -> None:
    async with serve(settings_for(password_min_length=low, password_max_length=high)) as app:
        schema = await openapi(app)
        models = schema["components"]["schemas"]
        for model, field in NEW_PASSWORDS:
            bounds = models[model]["properties"][field]
            assert (bounds["minLength"], bounds["maxLength"]) == (low, high), model
        assert not [node for node in objects(schema) if "x-password-bounds" in node]
        client = app.client
        for length in (low - 1, high + 1):
            error = assert_error(await client.post("/v1/users", json=new_user(password="p" * length)), 422)
            assert [d["field"] for d in error["details"]] == ["password"]
            batch = {"users": [new_user(password="p" * length)]}
            error = assert_error(await client.post("/v1/users:batch", json=batch), 422)
            assert [(d["index"], d["field"]) for d in error["details"]] == [(0, "password")]
        user = await create_user(client, password="p" * low)
        token = await login(client, user["email"], user["password"])
        for length in (low - 1, high + 1):
            body = {"password": "q" * length, "current_password": user["password"]}
            response = await client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))
            assert [d["field"] for d in assert_error(response, 422)["details"]] == ["password"]
        body = {"password": "q" * high, "current_password": user["password"]}
        assert (await client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))).status_code == 200
        batch = {"users": [new_user(password="p" * high)]}
        assert (await client.post("/v1/users:batch", json=batch)).status_code == 201


async def test_no_request_field_is_nullable_and_null_is_refused(app: RunningApp) -> None:
    schema = await openapi(app)
    models = schema["components"]["schemas"]
    for model in REQUEST_MODELS:
        nulls = [node for node in objects(models[model]) if node.get("type") == "null" or "default" in node]
        assert nulls == [], model
    user = await create_user(app.client)
    token = await login(app.client, user["email"], user["password"])
    for field in ("name", "email", "password", "current_password"):
        body = {"name": "Renamed", field: None}
        response = await app.client.patch(f"/v1/users/{user['id']}", json=body, headers=bearer(token))
        error = assert_error(response, 422, "validation_error")
        assert [(d["field"], d["code"]) for d in error["details"]] == [(field, "null_not_allowed")]
    item = {**new_user(), "password_hash": None}
    error = assert_error(await app.client.post("/v1/users:batch", json={"users": [item]}), 422)
    assert [(d["index"], d["field"]) for d in error["details"]] == [(0, "password_hash")]


async def test_the_batch_item_takes_a_password_or_a_hash_as_the_schema_says(app: RunningApp) -> None:
    schema = await openapi(app)
    item_schema = schema["components"]["schemas"]["UserImport"]
    assert item_schema["oneOf"] == [{"required": ["password"]}, {"required": ["password_hash"]}]
    validator = jsonschema.Draft202012Validator(item_schema)
    a_hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
    base = {"name": "Imported", "email": unique_email("choice")}
    for item, valid in [
        ({**base, "password": "a-long-enough-password"}, True),
        ({**base, "password": "a-long-enough-password", "password_hash": a_hash}, False),
        (base, False),
    ]:
        assert validator.is_valid(item) is valid, item
        response = await app.client.post("/v1/users:batch", json={"users": [item]})
        assert response.status_code == (201 if valid else 422), (item, response.text)


async def test_a_name_refused_by_the_schema_pattern_is_refused_by_the_service(app: RunningApp) -> None:
    schema = await openapi(app)
    ecma = schema["components"]["schemas"]["UserCreate"]["properties"]["name"]["pattern"]
    # As JSON Schema reads it: its closing $ is the end of the string (Python's also matches before a final newline).
    pattern = re.compile(ecma.removesuffix("$") + r"\Z")
    for name in ("Ada\u0085", "Ada\u202e", "Ada\u2066", "Ada\u200f", "Ada\n", "Ada\u2028"):
        assert pattern.search(name) is None, repr(name)
        response = await app.client.post("/v1/users", json=new_user(name=name))
        assert [d["field"] for d in assert_error(response, 422)["details"]] == ["name"], repr(name)
    assert pattern.search("Zoë Saldaña") is not None


# --- Security schemes: on the routes that check a token, and only there


async def test_the_routes_that_need_a_token_say_so(settings_for: Any) -> None:
    batch_token = "a-batch-token-for-internal-callers"
    async with serve(settings_for(batch_token=batch_token)) as app:
        schema = await openapi(app)
        secured = {(path, method): op["security"] for path, method, op in operations(schema) if "security" in op}
        assert secured == {
            ("/v1/users/{user_id}", "patch"): [{"accessToken": []}],
            ("/v1/users/{user_id}", "delete"): [{"accessToken": []}],
            ("/v1/auth/verify", "get"): [{"accessToken": []}],
            ("/v1/me", "get"): [{"accessToken": []}],
            ("/v1/users:batch", "post"): [{"batchToken": []}],
        }
        schemes = schema["components"]["securitySchemes"]
        assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
            "accessToken": ("http", "bearer"),
            "batchToken": ("http", "bearer"),
        }
        user = await create_user(app.client)
        for (path, method), _ in secured.items():
            url = path.replace("{user_id}", user["id"])
            body = {"users": [new_user()]} if "batch" in path else {"name": "Nobody"}
            response = await app.client.request(method.upper(), url, json=body if method != "get" else None)
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
    async with serve(settings_for()) as app:
        # Without a batch token the import is open (outside production): the schema asks for none.
        schema = await openapi(app)
        assert "security" not in schema["paths"]["/v1/users:batch"]["post"]
        assert set(schema["components"]["securitySchemes"]) == {"accessToken"}


# --- 405: Allow names every method of the path


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/users/{id}", "DELETE, GET, PATCH"),
        ("POST", "/v1/users/{id}", "DELETE, GET, PATCH"),
        ("GET", "/v1/users", "POST"),
        ("DELETE", "/v1/auth/token", "POST"),
        ("POST", "/v1/me", "GET"),
        ("PATCH", "/healthz", "GET"),
    ],
)
async def test_405_names_every_method_of_the_path_in_allow(
    app: RunningApp, method: str, path: str, allowed: str
) -> None:
    url = path.replace("{id}", "00000000-0000-4000-8000-000000000000")
    response = await app.client.request(method, url)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed
    schema = await openapi(app)
    template = path.replace("{id}", "{user_id}")
    assert sorted(method.upper() for method in schema["paths"][template]) == allowed.split(", ")


# --- Every status the service answers is documented, with the body the schema gives it


class Observed:
    """Responses seen, by operation, each checked against the schema by schemathesis."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.loaded = schemathesis.openapi.from_dict(schema)
        self.seen: dict[tuple[str, str], set[int]] = {}

    def record(self, response: httpx.Response, template: str) -> None:
        method = response.request.method
        self.seen.setdefault((template, method.lower()), set()).add(response.status_code)
        documented = self.schema["paths"][template][method.lower()]["responses"]
        assert str(response.status_code) in documented, (method, template, response.status_code, response.text)
        # The status, the content type, the headers and the body, as the operation documents them.
        self.loaded[template][method].validate_response(response)


async def test_every_status_the_service_answers_is_documented_with_its_body(settings_for: Any) -> None:
    batch_token = "a-batch-token-for-internal-callers"
    async with serve(settings_for(batch_token=batch_token, max_body_bytes=4096)) as app:
        client, seen = app.client, Observed(await openapi(app))
        user = await create_user(client)
        other = await create_user(client, password="the-other-users-password")
        token = await login(client, user["email"], user["password"])
        other_token = await login(client, other["email"], other["password"])
        me, batch = bearer(token), bearer(batch_token)
        users, user_path = "/v1/users/{user_id}", f"/v1/users/{user['id']}"
        nobody = "/v1/users/00000000-0000-4000-8000-000000000000"
        as_json = {"Content-Type": "application/json"}
        right = {"email": user["email"], "password": user["password"]}
        take_theirs = {"email": other["email"], "current_password": user["password"]}
        probes: list[tuple[str, str, str, dict[str, Any]]] = [
            ("/v1/users", "POST", "/v1/users", {"json": new_user()}),
            ("/v1/users", "POST", "/v1/users", {"content": b"{", "headers": as_json}),
            ("/v1/users", "POST", "/v1/users", {"json": new_user(email=user["email"])}),
            ("/v1/users", "POST", "/v1/users", {"content": b"{" + b" " * 5000 + b"}", "headers": as_json}),
            ("/v1/users", "POST", "/v1/users", {"content": json.dumps(new_user())}),
            ("/v1/users", "POST", "/v1/users", {"json": new_user(name="")}),
            ("/v1/users:batch", "POST", "/v1/users:batch", {"json": {"users": [new_user()]}, "headers": batch}),
            ("/v1/users:batch", "POST", "/v1/users:batch", {"json": {"users": [new_user()]}}),
            ("/v1/users:batch", "POST", "/v1/users:batch", {"json": {"users": []}, "headers": batch}),
            (users, "GET", user_path, {}),
            (users, "GET", nobody, {}),
            (users, "GET", "/v1/users/not-an-id", {}),
            (users, "PATCH", user_path, {"json": {"name": "Renamed"}, "headers": me}),
            (users, "PATCH", user_path, {"json": {"name": "Renamed"}}),
            (users, "PATCH", user_path, {"json": {"name": "X"}, "headers": bearer(other_token)}),
            (users, "PATCH", user_path, {"json": {"email": unique_email()}, "headers": me}),
            (users, "PATCH", user_path, {"json": take_theirs, "headers": me}),
            (users, "PATCH", user_path, {"json": {"name": None}, "headers": me}),
            (users, "PATCH", user_path, {"content": b"name=x", "headers": me}),
            (users, "DELETE", user_path, {"json": {}, "headers": me}),
            (users, "DELETE", user_path, {"json": {"current_password": 1}, "headers": me}),
            ("/v1/auth/token", "POST", "/v1/auth/token", {"json": right}),
            ("/v1/auth/token", "POST", "/v1/auth/token", {"json": {**right, "password": "wrong"}}),
            ("/v1/auth/token", "POST", "/v1/auth/token", {"json": {"email": user["email"]}}),
            ("/v1/auth/verify", "GET", "/v1/auth/verify", {"headers": me}),
            ("/v1/auth/verify", "GET", "/v1/auth/verify", {}),
            ("/v1/me", "GET", "/v1/me", {"headers": me}),
            ("/v1/me", "GET", "/v1/me", {"headers": bearer("not-a-token")}),
            ("/healthz", "GET", "/healthz", {}),
            ("/readyz", "GET", "/readyz", {}),
            (users, "DELETE", user_path, {"json": {"current_password": user["password"]}, "headers": me}),
            (users, "DELETE", user_path, {"json": {"current_password": user["password"]}, "headers": me}),
            (users, "PATCH", user_path, {"json": {"name": "Ghost"}, "headers": me}),
        ]
        for template, method, url, request in probes:
            seen.record(await client.request(method, url, **request), template)
    # A deleted user's token is refused (401) before its user is looked for: PATCH and DELETE show no 404.
    assert seen.seen[(users, "patch")] == {200, 401, 403, 409, 415, 422}
    assert seen.seen[(users, "delete")] == {204, 401, 403, 422}
    assert seen.seen[("/v1/users", "post")] == {201, 400, 409, 413, 415, 422}


async def test_every_pattern_is_a_regex_the_fuzzers_validator_reads(app: RunningApp) -> None:
    # jsonschema-rs is what schemathesis checks its draws with: a pattern it cannot read is dropped,
    # and the fuzzer then sends values the service rightly refuses (a name of U+00AD alone).
    patterns = sorted({node["pattern"] for node in objects(await openapi(app)) if isinstance(node.get("pattern"), str)})
    assert len(patterns) >= 3
    for pattern in patterns:
        jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    visible = next(p for p in patterns if len(p) > 1000)
    validator = jsonschema_rs.validator_for({"type": "string", "pattern": visible})
    assert [validator.is_valid(name) for name in ("\u00ad", "\u200b\u3164", "Zoë", "\U0001f600")] == [
        False,
        False,
        True,
        True,
    ]
