"""The OpenAPI schema as this process behaves: FastAPI's, plus what only the settings and the guards know.

- Password bounds are settings (password_min_length, password_max_length), checked in the routes;
  the models carry a mark where a password is set, replaced here by the running bounds.
- The import range of argon2id hashes (argon2_import_*) is settings too: the pattern of an imported
  hash is written from it, with libargon2's shortest salt (8 bytes) and hash (4 bytes).
- Security requirements follow the dependencies that check a token: a route that depends on the
  access-token check requires the access token, the batch import its own token (none when no batch
  token is configured: open outside production, refused in it). Read from the routes' dependencies
  rather than declared through FastAPI's HTTPBearer, which would add a dependency to solve on every
  authenticated request for the sake of the documentation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from auth_service.api.deps import internal_caller, verified_claims
from auth_service.api.methods import all_routes
from auth_service.security.imported_hashes import MIN_HASH_BYTES, MIN_SALT_BYTES
from auth_service.settings import Settings
from auth_service.users.names import visible_character_pattern
from auth_service.users.schemas import IMPORT_RANGE_MARK, PASSWORD_BOUNDS_MARK, VISIBLE_NAME_MARK

ACCESS_TOKEN = "accessToken"
BATCH_TOKEN = "batchToken"
SECURITY_SCHEMES = {
    ACCESS_TOKEN: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from POST /v1/auth/token",
    },
    BATCH_TOKEN: {"type": "http", "scheme": "bearer", "description": "AUTH_BATCH_TOKEN, given to internal callers"},
}
GUARDS: dict[Callable[..., Any], str] = {verified_claims: ACCESS_TOKEN, internal_caller: BATCH_TOKEN}


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve FastAPI's schema completed from these settings (made once, on the first request for it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)  # FastAPI's own, which it keeps in app.openapi_schema
            set_password_bounds(schema, settings)
            set_import_range(schema, settings)
            set_visible_names(schema)
            set_security(schema, app, settings)
            return schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign] # FastAPI's documented way to extend it


def set_password_bounds(schema: dict[str, Any], settings: Settings) -> None:
    for node in _objects(schema):
        if node.pop(PASSWORD_BOUNDS_MARK, None):
            node["minLength"] = settings.password_min_length
            node["maxLength"] = settings.password_max_length


def set_import_range(schema: dict[str, Any], settings: Settings) -> None:
    pattern = imported_hash_pattern(settings)
    for node in _objects(schema):
        if node.pop(IMPORT_RANGE_MARK, None):
            node["pattern"] = pattern


def set_visible_names(schema: dict[str, Any]) -> None:
    for node in _objects(schema):
        if node.pop(VISIBLE_NAME_MARK, None):
            node["allOf"] = [{"pattern": visible_character_pattern()}]


def imported_hash_pattern(settings: Settings) -> str:
    """The argon2id PHC strings the batch import takes, as a regular expression."""
    memory = integer_pattern(settings.argon2_import_min_memory_kib, settings.argon2_import_max_memory_kib)
    time_cost = integer_pattern(settings.argon2_import_min_time_cost, settings.argon2_import_max_time_cost)
    lanes = integer_pattern(1, settings.argon2_import_max_parallelism)
    salt, digest = base64_at_least(MIN_SALT_BYTES), base64_at_least(MIN_HASH_BYTES)
    return rf"^\$argon2id\$v=19\$m={memory},t={time_cost},p={lanes}\${salt}\${digest}$"


def base64_at_least(size: int) -> str:
    """Unpadded base64 of at least `size` bytes (argon2-cffi counts a 4k+1 tail as nothing)."""
    return f"[A-Za-z0-9+/]{{{-(-size * 4 // 3)},}}"


def integer_pattern(low: int, high: int) -> str:
    """A regular expression of the decimal integers from low to high, without leading zeros."""
    parts: list[str] = []
    while low <= high:
        top = min(high, 10 ** len(str(low)) - 1)  # one number of digits at a time
        parts += _same_length(str(low), str(top))
        low = top + 1
    return f"(?:{'|'.join(parts)})"


def _same_length(low: str, high: str) -> list[str]:
    if low == high:
        return [low]
    if set(low) == {"0"} and set(high) == {"9"}:
        return [rf"\d{{{len(low)}}}"]
    if len(low) == 1:
        return [f"[{low}-{high}]"]
    if low[0] == high[0]:
        return [low[0] + rest for rest in _same_length(low[1:], high[1:])]
    width = len(low) - 1
    parts = [low[0] + rest for rest in _same_length(low[1:], "9" * width)]
    if int(high[0]) - int(low[0]) > 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}]" + rf"\d{{{width}}}")
    return parts + [high[0] + rest for rest in _same_length("0" * width, high[1:])]


def set_security(schema: dict[str, Any], app: FastAPI, settings: Settings) -> None:
    used: set[str] = set()
    for route in all_routes(app.routes):
        if not isinstance(route, APIRoute) or route.path not in schema["paths"]:
            continue
        schemes = sorted({GUARDS[call] for call in _calls(route.dependant) if call in GUARDS})
        if BATCH_TOKEN in schemes and settings.batch_token is None:
            schemes.remove(BATCH_TOKEN)
        for method in route.methods or ():
            operation = schema["paths"][route.path].get(method.lower())
            if operation is not None and schemes:
                operation["security"] = [{name: [] for name in schemes}]
                used.update(schemes)
    if used:
        components = schema.setdefault("components", {})
        components["securitySchemes"] = {name: SECURITY_SCHEMES[name] for name in sorted(used)}


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    """The functions a route depends on, at any depth."""
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)


def _objects(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object in the schema, depth first."""
    if isinstance(node, dict):
        yield node
        for value in list(node.values()):
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)
