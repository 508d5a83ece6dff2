"""The hot PATCH: a user renaming itself with its own token, answered without FastAPI.

A rename is the mix's `update`. Through FastAPI, its routing (every route's match), its dependency
solving (Claims, ClientAddress, ServicesDep), its body parsing and its own exception layers cost
about as much CPU as the database write: a rename cost 968 us of service CPU and a PATCH of `{}`,
which stops before the database, 470-494 us. Answered here, a rename costs about half: 481 us
against 997 us through FastAPI (medians of 5 alternating rounds, wrk -t1 -c8 on one process, a
busy host, 2026-12-03; 452 against 973 at -c32). This layer answers the common case (JSON, a body
of `name` alone that UserUpdate accepts) with what update_user would send: the same checks in the
same order, the same model, and the same answer, built by the route's own `apply_changes`.

It runs where HotPaths runs, inside telemetry and admission control: the body has arrived whole
(within its size, time and arriving-bytes limits) before this sees it and before the request takes
an in-flight slot, the latency metric and the server span are the middleware's, traced or not. It
cannot answer on the wire as the fast lane answers GETs: the write awaits the database, so the
request needs its ASGI cycle anyway.

Everything else goes on to FastAPI with its body: another media type (415), JSON that does not
parse (400), any other field or shape (email, password, current_password, `{}`), and every name
UserUpdate refuses (422), since FastAPI's own answer for those is the one to give.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth_service.admission import replay_body
from auth_service.api.deps import claims_of
from auth_service.api.routes.users import apply_changes, require_self
from auth_service.errors import ApiError, answer_unexpected, error_response
from auth_service.services import Services
from auth_service.users.schemas import UserUpdate

JSON_TYPE = b"application/json"


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of a header, as Starlette's `Headers.get` finds it."""
    for key, value in headers:
        if key == name:
            return value
    return None


def new_name(headers: list[tuple[bytes, bytes]], message: Message) -> str | None:
    """The name, as UserUpdate validates it, of a JSON body that changes the name alone; else None."""
    if message["type"] != "http.request" or message.get("more_body") or header(headers, b"content-type") != JSON_TYPE:
        return None
    try:
        # orjson accepts a subset of what json.loads (FastAPI's parser) does, and reads it the same.
        body = orjson.loads(message.get("body", b""))
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict) or len(body) != 1 or not isinstance(body.get("name"), str):
        return None
    try:
        return UserUpdate.model_validate(body).name
    except ValidationError:
        return None


async def rename(headers: list[tuple[bytes, bytes]], user_id: str, name: str, services: Services) -> Response:
    """update_user for a body of `name` alone: no password, so no re-authentication and no hash."""
    # The Claims dependency's check, on the header Starlette's `Headers.get` would find.
    claims = claims_of((header(headers, b"authorization") or b"").decode("latin-1"), services)
    user = uuid.UUID(user_id)
    require_self(claims, user)
    return await apply_changes(services, user, {"name": name})


class FastRename:
    """Answers a hot rename of the user at a canonical path, or hands the request to FastAPI."""

    def __init__(self, app: ASGIApp, route: Any) -> None:
        self.app = app
        self.route = route  # FastAPI's PATCH route: telemetry labels by its template
        self.answered = 0  # renames this layer answered, not FastAPI (the tests count them)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, user_id: str) -> None:
        message = await receive()
        name = new_name(scope["headers"], message)
        if name is None:
            await self.app(scope, replay_body(message, receive), send)
            return
        scope["route"] = self.route
        scope["path_params"] = {"user_id": user_id}
        self.answered += 1
        try:
            response = await rename(scope["headers"], user_id, name, scope["state"]["services"])
        except ApiError as error:  # 401, 403, 404, or a 503 from the database
            response = error_response(error)
        except Exception:
            await answer_unexpected(scope, receive, send)
            raise
        await response(scope, receive, send)
