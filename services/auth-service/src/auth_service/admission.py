"""Admission control in front of everything: a bound on requests in flight, and on body size.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: it runs on every request, and a class with
one counter costs a fraction of what a middleware with its own task and streams costs.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth_service.errors import ApiError, ServiceUnavailable, error_response

# Probes must be answered while overloaded: an overloaded pod is alive, and kubelet restarting it
# would only move its load elsewhere.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})


class BodyTooLarge(HTTPException):
    """Raised from receive(); an HTTPException so FastAPI's body parsing lets it through as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class AdmissionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_in_flight: int,
        max_body_bytes: int,
        retry_after: int,
        on_reject: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.app = app
        self.on_reject = on_reject
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.retry_after = retry_after
        self.in_flight = 0
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.rejected += 1
            self.on_reject("overloaded")
            overloaded = ServiceUnavailable("overloaded", "too many requests in flight", self.retry_after)
            await error_response(overloaded)(scope, receive, send)
            return
        has_body = scope["method"] in _BODY_METHODS
        declared = _content_length(scope) if has_body else None
        if declared is not None and declared > self.max_body_bytes:
            self.on_reject("body_too_large")
            too_large = ApiError(
                413, "payload_too_large", f"the request body is larger than {self.max_body_bytes} bytes"
            )
            await error_response(too_large)(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, self._limited(receive) if has_body else receive, send)
        finally:
            self.in_flight -= 1

    def _limited(self, receive: Receive) -> Receive:
        """Count a streamed (chunked) body as it arrives; past the limit, stop reading."""
        seen = 0
        limit = self.max_body_bytes

        async def receive_within_limit() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
            return message

        return receive_within_limit


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
