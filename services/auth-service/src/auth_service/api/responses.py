"""JSON responses encoded by orjson, and the error answers every route documents."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import Response

from auth_service.errors import JSON


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]]


class ErrorBody(BaseModel):
    """The one shape of every error."""

    error: ErrorInfo


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, headers=headers, media_type=JSON)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for these error statuses, all with the error body."""
    return {status: {"model": ErrorBody} for status in statuses}
