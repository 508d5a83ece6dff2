"""The hot routes in plain ASGI: token verification, cached user reads, /v1/me and liveness.

FastAPI resolves dependencies, validates parameters and builds a Request and a Response per call:
about 100 µs of a ~130 µs cached read on this machine (see bench/results). These routes need none
of it: their answers are bytes the caches already hold. The same routes stay declared in FastAPI,
so the OpenAPI schema documents them and anything this layer does not answer (another method, a
malformed id) falls through to FastAPI and gets its usual answer. Telemetry and admission control
sit outside this layer and see these requests like any other.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from auth_service.api.deps import parse_bearer
from auth_service.errors import UNAUTHORIZED_HEADERS, ApiError, error_body, error_response
from auth_service.security.tokens import InvalidToken
from auth_service.services import Services

USERS_PREFIX = "/v1/users/"
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
JSON_TYPE = (b"content-type", b"application/json")
NO_TOKEN = error_body("unauthorized", "a bearer token is required")
BAD_TOKEN = error_body("unauthorized", "invalid or expired token")
USER_GONE = error_body("unauthorized", "the token's user no longer exists")
NO_USER = error_body("not_found", "user not found")
CHALLENGE = [(name.lower().encode(), value.encode()) for name, value in UNAUTHORIZED_HEADERS.items()]

Handler = Callable[[Scope, Send, Services], Awaitable[None]]


async def reply(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [JSON_TYPE, (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return parse_bearer(value.decode("latin-1"))
    return None


def verified(scope: Scope, services: Services) -> tuple[bytes, dict[str, Any]] | bytes:
    """(claims bytes, claims) of the request's token, or the 401 body to answer with."""
    token = bearer_token(scope)
    if token is None:
        return NO_TOKEN
    try:
        return services.tokens.verify_encoded(token)
    except InvalidToken:
        return BAD_TOKEN


async def verify(scope: Scope, send: Send, services: Services) -> None:
    result = verified(scope, services)
    if isinstance(result, bytes):
        await reply(send, 401, result, CHALLENGE)
    else:
        await reply(send, 200, result[0])


async def me(scope: Scope, send: Send, services: Services) -> None:
    result = verified(scope, services)
    if isinstance(result, bytes):
        await reply(send, 401, result, CHALLENGE)
        return
    try:
        user_id = uuid.UUID(str(result[1]["sub"]))
    except ValueError:
        await reply(send, 401, BAD_TOKEN, CHALLENGE)
        return
    body = await services.users.get_json(user_id)
    await (reply(send, 200, body) if body is not None else reply(send, 401, USER_GONE, CHALLENGE))


async def read_user(scope: Scope, send: Send, services: Services) -> None:
    users, key = services.users, scope["path_params"]["user_id"]
    if not users.traced():
        # The path holds the canonical text of the id, which is the cache's key: no parsing on a hit.
        found, body = users.cache.cached(key)
        if found:
            await (reply(send, 200, body) if body is not None else reply(send, 404, NO_USER))
            return
    body = await users.get_json(uuid.UUID(key))
    await (reply(send, 200, body) if body is not None else reply(send, 404, NO_USER))


async def liveness(scope: Scope, send: Send, services: Services) -> None:
    await reply(send, 200, b'{"status":"ok"}')


def _all_routes(routes: list[Any]) -> list[Any]:
    """Every route with a path, inside included routers too (FastAPI nests them since 0.16x)."""
    found = []
    for route in routes:
        nested = getattr(getattr(route, "original_router", route), "routes", None)
        if isinstance(getattr(route, "path", None), str):
            found.append(route)
        elif nested is not None:
            found += _all_routes(nested)
    return found


class HotPaths:
    """Answers the hot GETs itself and passes everything else to FastAPI."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app = app
        routes = {route.path: route for route in _all_routes(fastapi.routes)}
        # The FastAPI route of each path goes into the scope, as FastAPI's router would put it:
        # telemetry names spans and labels metrics by its template.
        self.exact: dict[str, tuple[Handler, Any]] = {
            "/v1/auth/verify": (verify, routes["/v1/auth/verify"]),
            "/v1/me": (me, routes["/v1/me"]),
            "/healthz": (liveness, routes["/healthz"]),
        }
        self.user_route = routes["/v1/users/{user_id}"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            handler = self._handler(scope)
            if handler is not None:
                try:
                    await handler(scope, send, scope["state"]["services"])
                except ApiError as error:  # a 503 from the database or the pool
                    await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _handler(self, scope: Scope) -> Handler | None:
        path: str = scope["path"]
        found = self.exact.get(path)
        if found is not None:
            scope["route"] = found[1]
            return found[0]
        if path.startswith(USERS_PREFIX):
            user_id = path[len(USERS_PREFIX) :]
            if CANONICAL_UUID.fullmatch(user_id) is None:
                return None  # other spellings, and invalid ids (422), are FastAPI's to answer
            scope["route"] = self.user_route
            scope["path_params"] = {"user_id": user_id}
            return read_user
        return None
