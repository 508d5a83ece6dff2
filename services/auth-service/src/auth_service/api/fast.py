"""The hot routes without FastAPI: token verification, user reads, /v1/me and liveness (and renames,
in fast_rename.py: a PATCH has a body and a write, so it is answered here but never on the wire).

FastAPI resolves dependencies, validates parameters and builds a Request and a Response per call:
about 100 µs of a ~130 µs cached read on this machine (see bench/results). These routes need none
of it: their answers are bytes the caches already hold. The same routes stay declared in FastAPI,
so the OpenAPI schema documents them and anything this layer does not answer (another method, a
malformed id) falls through to FastAPI and gets its usual answer.

Each hot route answers in two steps: `now`, without awaiting (a token check, a cache hit), or None
when it needs the loop (a cache miss, a traced read); then `later`, awaiting the database. Two
callers use them: `HotPaths`, a plain ASGI layer inside telemetry and admission control, and the
connection protocol (`wire.py`), which answers the `now` cases as the request is parsed, before
uvicorn builds an ASGI request for it (see `FastLane`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from fastapi import FastAPI
from opentelemetry import trace
from starlette.types import ASGIApp, Receive, Scope, Send

from auth_service.api.deps import parse_bearer
from auth_service.api.fast_rename import FastRename
from auth_service.api.methods import all_routes
from auth_service.db.gate import PoolExhausted
from auth_service.errors import UNAUTHORIZED_HEADERS, ApiError, answer_unexpected, error_body, error_response
from auth_service.observability.tracing import CACHE_HIT
from auth_service.security.tokens import InvalidToken
from auth_service.services import Services

USERS_PREFIX = "/v1/users/"
USER_ROUTE = "/v1/users/{user_id}"
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
JSON_TYPE = (b"content-type", b"application/json")
NO_TOKEN = error_body("unauthorized", "a bearer token is required")
BAD_TOKEN = error_body("unauthorized", "invalid or expired token")
USER_GONE = error_body("unauthorized", "the token's user no longer exists")
NO_USER = error_body("not_found", "user not found")
CHALLENGE = [(name.lower().encode(), value.encode()) for name, value in UNAUTHORIZED_HEADERS.items()]
Headers = list[tuple[bytes, bytes]]


class HotAnswer(NamedTuple):
    status: int
    body: bytes
    challenge: bool = False  # a 401: the response carries WWW-Authenticate
    cache_hit: bool = False  # a user's cached bytes (or its cached absence): the fast lane's span says so
    headers: tuple[tuple[bytes, bytes], ...] = ()  # any others (a 503's Retry-After)


def _refusal(error: ApiError) -> HotAnswer:
    headers = tuple((name.lower().encode(), value.encode()) for name, value in error.headers.items())
    return HotAnswer(error.status, error_body(error.code, error.message), headers=headers)


OK_LIVE = HotAnswer(200, b'{"status":"ok"}')
NO_TOKEN_ANSWER = HotAnswer(401, NO_TOKEN, challenge=True)
BAD_TOKEN_ANSWER = HotAnswer(401, BAD_TOKEN, challenge=True)
USER_GONE_ANSWER = HotAnswer(401, USER_GONE, challenge=True)
USER_GONE_CACHED = HotAnswer(401, USER_GONE, challenge=True, cache_hit=True)
NO_USER_ANSWER = HotAnswer(404, NO_USER)
NO_USER_CACHED = HotAnswer(404, NO_USER, cache_hit=True)
# A miss the read pool cannot take: answered at once, as it is parsed. Through the application such
# a refusal cost as much CPU as a served read (py-spy at 2,000 connections of misses: 57% of the loop
# in the ASGI path, nearly all of it 503s), which left the admitted reads next to nothing.
POOL_EXHAUSTED_ANSWER = _refusal(PoolExhausted())

AnswerNow = Callable[[Headers, str, Services], HotAnswer | None]
AnswerLater = Callable[[Headers, str, Services], Awaitable[HotAnswer]]


def response_headers(answer: HotAnswer) -> Headers:
    headers = [JSON_TYPE, (b"content-length", str(len(answer.body)).encode()), *answer.headers]
    return headers + CHALLENGE if answer.challenge else headers


async def reply(send: Send, answer: HotAnswer) -> None:
    await send({"type": "http.response.start", "status": answer.status, "headers": response_headers(answer)})
    await send({"type": "http.response.body", "body": answer.body})


def bearer_token(headers: Headers) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            return parse_bearer(value.decode("latin-1"))
    return None


def verified(headers: Headers, services: Services) -> tuple[bytes, dict[str, Any]] | HotAnswer:
    """(claims bytes, claims) of the request's token, or the 401 to answer with."""
    token = bearer_token(headers)
    if token is None:
        return NO_TOKEN_ANSWER
    try:
        return services.tokens.verify_encoded(token)
    except InvalidToken:
        return BAD_TOKEN_ANSWER


def verify_now(headers: Headers, param: str, services: Services) -> HotAnswer:
    result = verified(headers, services)
    return result if isinstance(result, HotAnswer) else HotAnswer(200, result[0])


def user_answer(body: bytes | None, *, cache_hit: bool = False) -> HotAnswer:
    if body is None:
        return NO_USER_CACHED if cache_hit else NO_USER_ANSWER
    return HotAnswer(200, body, cache_hit=cache_hit)


def read_user_now(headers: Headers, user_id: str, services: Services) -> HotAnswer | None:
    # The path holds the canonical text of the id, which is the cache's key: no parsing on a hit.
    found, body = services.users.cache.cached(user_id)
    if found:
        return user_answer(body, cache_hit=True)
    return POOL_EXHAUSTED_ANSWER if services.users.refuses_miss(user_id) else None


async def read_user_later(headers: Headers, user_id: str, services: Services) -> HotAnswer:
    return user_answer(await services.users.get_json(uuid.UUID(user_id)))


def token_subject(headers: Headers, services: Services) -> uuid.UUID | HotAnswer:
    result = verified(headers, services)
    if isinstance(result, HotAnswer):
        return result
    try:
        return uuid.UUID(str(result[1]["sub"]))
    except ValueError:
        return BAD_TOKEN_ANSWER


def me_answer(body: bytes | None, *, cache_hit: bool = False) -> HotAnswer:
    if body is None:
        return USER_GONE_CACHED if cache_hit else USER_GONE_ANSWER
    return HotAnswer(200, body, cache_hit=cache_hit)


def me_now(headers: Headers, param: str, services: Services) -> HotAnswer | None:
    subject = token_subject(headers, services)
    if isinstance(subject, HotAnswer):
        return subject
    key = str(subject)
    found, body = services.users.cache.cached(key)
    if found:
        return me_answer(body, cache_hit=True)
    return POOL_EXHAUSTED_ANSWER if services.users.refuses_miss(key) else None


async def me_later(headers: Headers, param: str, services: Services) -> HotAnswer:
    subject = token_subject(headers, services)
    if isinstance(subject, HotAnswer):
        return subject
    return me_answer(await services.users.get_json(subject))


def liveness_now(headers: Headers, param: str, services: Services) -> HotAnswer:
    return OK_LIVE


async def never_later(headers: Headers, param: str, services: Services) -> HotAnswer:
    raise AssertionError("this route always answers at once")


@dataclass(frozen=True, slots=True)
class HotRoute:
    now: AnswerNow
    later: AnswerLater
    # FastAPI's route of the path: telemetry names spans and labels metrics by its template (.path).
    route: Any


class HotRoutes:
    """Which GET paths are hot, and the route each belongs to."""

    def __init__(self, fastapi: FastAPI) -> None:
        every_route = all_routes(fastapi.routes)
        routes = {route.path: route for route in every_route}
        # FastAPI's PATCH of a user: telemetry labels the hot rename by its template.
        self.patch_user = next(
            route
            for route in every_route
            if route.path == USER_ROUTE and "PATCH" in (getattr(route, "methods", None) or ())
        )

        def hot(path: str, now: AnswerNow, later: AnswerLater) -> HotRoute:
            return HotRoute(now, later, routes[path])

        self.exact: dict[str, HotRoute] = {
            "/v1/auth/verify": hot("/v1/auth/verify", verify_now, never_later),
            "/v1/me": hot("/v1/me", me_now, me_later),
            "/healthz": hot("/healthz", liveness_now, never_later),
        }
        self.user = hot(USER_ROUTE, read_user_now, read_user_later)

    def match(self, path: str) -> tuple[HotRoute, str] | None:
        """The hot route of a GET of `path`, with its parameter (the user id, else "")."""
        found = self.exact.get(path)
        if found is not None:
            return found, ""
        user_id = self.user_of(path)
        return None if user_id is None else (self.user, user_id)

    @staticmethod
    def user_of(path: str) -> str | None:
        """The canonical user id of a path /v1/users/{user_id}, else None.

        Other spellings, and invalid ids (422), are FastAPI's to answer.
        """
        if path.startswith(USERS_PREFIX):
            user_id = path[len(USERS_PREFIX) :]
            if CANONICAL_UUID.fullmatch(user_id) is not None:
                return user_id
        return None


class HotPaths:
    """Answers the hot GETs and renames itself and passes everything else to FastAPI."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app = app
        self.routes = HotRoutes(fastapi)
        self.rename = FastRename(app, self.routes.patch_user)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PATCH":
            user_id = self.routes.user_of(scope["path"])
            if user_id is not None:
                await self.rename(scope, receive, send, user_id)  # answers, or hands it to FastAPI
                return
        if scope["type"] == "http" and scope["method"] == "GET":
            found = self.routes.match(scope["path"])
            if found is not None:
                hot, param = found
                scope["route"] = hot.route
                if param:
                    scope["path_params"] = {"user_id": param}
                try:
                    answer = await self._answer(hot, param, scope)
                except ApiError as error:  # a 503 from the database or the pool
                    await error_response(error)(scope, receive, send)
                    return
                except Exception:
                    await answer_unexpected(scope, receive, send)
                    raise
                await reply(send, answer)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(hot: HotRoute, param: str, scope: Scope) -> HotAnswer:
        services: Services = scope["state"]["services"]
        headers: Headers = scope["headers"]
        answer = hot.now(headers, param, services)
        if answer is None:
            return await hot.later(headers, param, services)  # users.get_json traces the lookup
        if answer.cache_hit:
            trace.get_current_span().set_attribute(CACHE_HIT, True)  # as the fast lane marks it
        return answer
