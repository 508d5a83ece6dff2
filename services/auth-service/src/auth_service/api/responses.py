"""JSON responses encoded by orjson, and the error answers every route documents."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from starlette.responses import Response

from auth_service.errors import JSON
from auth_service.users.schemas import Omittable


class ErrorDetail(BaseModel):
    """One problem: the field (and the batch item) it is about, when it is about one."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str
    field: str | None = None
    index: Omittable[int] = None


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail]


class ErrorBody(BaseModel):
    """The one shape of every error."""

    error: ErrorInfo


# What each status means here, with the codes that come with it: clients act on the code.
DESCRIPTIONS = {
    400: "The body is not JSON (`malformed_json`) or not UTF-8 (`malformed_body`)",
    401: "No valid bearer token (`unauthorized`, with WWW-Authenticate); at login, a wrong email or password "
    "(`invalid_credentials`)",
    403: "Not allowed: another user's resource (`forbidden`); the current password missing "
    "(`reauthentication_required`) or wrong (`invalid_credentials`); the batch import off (`batch_import_disabled`)",
    404: "No such resource (`not_found`)",
    409: "The email belongs to another user, compared without case (`email_taken`)",
    413: "The body is larger than the service's limit (`payload_too_large`)",
    415: "The body is not declared as JSON: send `Content-Type: application/json` (`unsupported_media_type`)",
    422: "A value is invalid (`validation_error`): `details` names each field, and the item of a batch",
    429: "Too many attempts from this client or on this account: retry after Retry-After seconds",
    503: "Overloaded, or a dependency is unavailable: retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
CHALLENGE = {
    "WWW-Authenticate": {"description": "With `unauthorized`: the bearer challenge", "schema": {"type": "string"}}
}
HEADERS = {401: CHALLENGE, 429: RETRY_AFTER, 503: RETRY_AFTER}
# Every route that reads a JSON body can answer these before it looks at what the body says.
BODY_ERRORS = (400, 413, 415, 422)


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, headers=headers, media_type=JSON)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for these error statuses, all with the error body."""
    return {status: _entry(status) for status in sorted(set(statuses))}


def _entry(status: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"model": ErrorBody, "description": DESCRIPTIONS.get(status, HTTPStatus(status).phrase)}
    if status in HEADERS:
        entry["headers"] = HEADERS[status]
    return entry
