"""One error shape for every failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

JSON = "application/json"


class ApiError(Exception):
    """An answer that is not a success, raised anywhere below a route."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class ServiceUnavailable(ApiError):
    """A fault or overload: 503 at once, with Retry-After."""

    def __init__(self, code: str, message: str, retry_after: int = 1) -> None:
        super().__init__(503, code, message, headers={"Retry-After": str(retry_after)})


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message, "details": details or []}})


def error_response(error: ApiError) -> Response:
    return Response(
        error_body(error.code, error.message, error.details),
        status_code=error.status,
        headers=error.headers,
        media_type=JSON,
    )


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


def unauthorized(message: str = "invalid or expired token") -> ApiError:
    return ApiError(401, "unauthorized", message, headers=UNAUTHORIZED_HEADERS)


def validation_details(errors: list[dict[str, Any]] | Any) -> list[dict[str, Any]]:
    """Pydantic errors as {index?, field, code, message}; `index` names the item of a batch."""
    details = []
    for err in errors:
        loc = [part for part in err.get("loc", ()) if part != "body"]
        item: dict[str, Any] = {}
        if len(loc) >= 2 and loc[0] == "users" and isinstance(loc[1], int):
            item["index"] = loc[1]
            loc = loc[2:]
        item["field"] = ".".join(str(part) for part in loc) or None
        item["code"] = err.get("type", "invalid")
        item["message"] = err.get("msg", "invalid value")
        details.append(item)
    return details


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(ApiError(400, "malformed_json", "the request body is not valid JSON"))
    return error_response(ApiError(422, "validation_error", "the request is invalid", validation_details(errors)))


_HTTP_CODES = {
    400: "malformed_body",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(ApiError(exc.status_code, code, message, headers=dict(exc.headers or {})))


def internal_error() -> ApiError:
    return ApiError(500, "internal_error", "an unexpected error occurred")


async def answer_unexpected(scope: Scope, receive: Receive, send: Send) -> None:
    """The error shape's 500, for ASGI code in front of FastAPI, which its handler of last resort does
    not cover: as Starlette's ServerErrorMiddleware, the caller then raises the fault for the server to
    log. (Unhandled there, a fault reached a client as uvicorn's plain-text 500.)"""
    await error_response(internal_error())(scope, receive, send)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # Logged with its traceback by Starlette's ServerErrorMiddleware; the client learns nothing of it.
    return error_response(internal_error())


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _on_unexpected)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
