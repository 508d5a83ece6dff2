"""The OpenAPI schema documents every route, its success body and the shared error body."""

from tests.utils.app import RunningApp

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


async def test_every_route_is_documented_with_its_success_status(app: RunningApp) -> None:
    schema = (await app.client.get("/openapi.json")).json()
    documented = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert documented == set(EXPECTED)
    for (path, method), status in EXPECTED.items():
        operation = schema["paths"][path][method]
        assert status in operation["responses"], (path, method)
        assert operation.get("description") or operation.get("summary"), (path, method)


async def test_error_statuses_use_the_shared_error_body(app: RunningApp) -> None:
    schema = (await app.client.get("/openapi.json")).json()
    error_ref = "#/components/schemas/ErrorBody"
    for path, method, status in [
        ("/v1/users", "post", "409"),
        ("/v1/users/{user_id}", "get", "404"),
        ("/v1/auth/token", "post", "401"),
        ("/v1/auth/verify", "get", "401"),
        ("/readyz", "get", "503"),
    ]:
        content = schema["paths"][path][method]["responses"][status]["content"]
        assert content["application/json"]["schema"]["$ref"] == error_ref, (path, method, status)


async def test_the_user_body_is_documented_without_any_password_field(app: RunningApp) -> None:
    schema = (await app.client.get("/openapi.json")).json()
    user = schema["components"]["schemas"]["UserOut"]["properties"]
    assert set(user) == {"id", "email", "name", "created_at", "updated_at"}


async def test_the_interactive_docs_are_served(app: RunningApp) -> None:
    response = await app.client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
