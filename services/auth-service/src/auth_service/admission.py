"""Admission control in front of everything: a bound on requests in flight, on body size, and on the
time a body may take to arrive.

A request with a body (POST, PUT, PATCH) is admitted only once its whole body has arrived: the
bound on requests in flight is for work, and a client that sends a head and then trickles its body,
or stops, does none. Counted from its head, each such client held a slot for as long as it kept its
connection open, and a thousand of them made every other request a 503. So the body is received
first, within `max_body_bytes` (413), within `body_timeout` (408), and within a budget of bytes for
all bodies still arriving (503: without it, a slot no longer bounds the bodies held at once); then
the request takes a slot, and the application reads the body from memory.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: it runs on every request, and a class with
one counter costs a fraction of what a middleware with its own task and streams costs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth_service.errors import ApiError, ServiceUnavailable, error_response

# Probes must be answered while overloaded: an overloaded pod is alive, and kubelet restarting it
# would only move its load elsewhere.
EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})
# After a 408 the rest of the body, if it ever comes, would be read as the next request: close.
CLOSE = {"Connection": "close"}


class AdmissionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_in_flight: int,
        max_body_bytes: int,
        retry_after: int,
        body_timeout: float = 10.0,
        max_arriving_bytes: int = 64 * 1024 * 1024,
        on_reject: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.app = app
        self.on_reject = on_reject
        self.max_in_flight = max_in_flight
        self.max_body_bytes = max_body_bytes
        self.retry_after = retry_after
        self.body_timeout = body_timeout
        self.max_arriving_bytes = max_arriving_bytes
        self.in_flight = 0
        self.arriving_bytes = 0  # of bodies not yet whole
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._overloaded(scope, receive, send)
            return
        if scope["method"] in _BODY_METHODS:
            body = await self._body(scope, receive, send)
            if body is None:
                return  # refused, or the client went away
            if self.in_flight >= self.max_in_flight:  # slots were taken while it arrived
                await self._overloaded(scope, receive, send)
                return
            receive = replay_body(body, receive)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _overloaded(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.rejected += 1
        self.on_reject("overloaded")
        overloaded = ServiceUnavailable("overloaded", "too many requests in flight", self.retry_after)
        await error_response(overloaded)(scope, receive, send)

    async def _body(self, scope: Scope, receive: Receive, send: Send) -> Message | None:
        """The whole body as one message, or None once a refusal has been sent (or the client has left)."""
        declared = _content_length(scope)
        try:
            if declared is not None and declared > self.max_body_bytes:
                raise _Refusal("body_too_large", self._too_large())
            async with asyncio.timeout(self.body_timeout):
                return await self._receive_whole(receive)
        except TimeoutError:
            message = f"the request body did not arrive within {self.body_timeout:g} s"
            refusal = _Refusal("body_timeout", ApiError(408, "request_timeout", message, headers=dict(CLOSE)))
        except _Refusal as refused:
            refusal = refused
        self.on_reject(refusal.reason)
        await error_response(refusal.error)(scope, _nothing, send)
        return None

    async def _receive_whole(self, receive: Receive) -> Message | None:
        message = await receive()
        if not message.get("more_body"):  # most bodies: all in the first message
            if message["type"] != "http.request":
                return None  # http.disconnect
            if len(message.get("body", b"")) > self.max_body_bytes:  # chunked, so not declared
                raise _Refusal("body_too_large", self._too_large())
            return message
        chunks: list[bytes] = []
        seen = 0
        try:
            while message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                self.arriving_bytes += len(chunk)
                if seen > self.max_body_bytes:
                    raise _Refusal("body_too_large", self._too_large())
                if self.arriving_bytes > self.max_arriving_bytes:
                    # Memory is the bound here: many bodies left unfinished would otherwise add up.
                    busy = ServiceUnavailable("overloaded", "too many request bodies arriving", self.retry_after)
                    raise _Refusal("bodies_arriving", busy)
                chunks.append(chunk)
                if not message.get("more_body"):
                    return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                message = await receive()
            return None  # http.disconnect
        finally:
            self.arriving_bytes -= seen

    def _too_large(self) -> ApiError:
        message = f"the request body is larger than {self.max_body_bytes} bytes"
        # The connection stays open: uvicorn reads the rest of the body and drops it, and the client,
        # still sending, can read this answer (closed with its body unread, the client would get a
        # reset). uvicorn's keep-alive timeout, counted from this answer, bounds that.
        return ApiError(413, "payload_too_large", message)


class _Refusal(Exception):
    """A body refused while it arrives: answered once out of the body's timeout."""

    def __init__(self, reason: str, error: ApiError) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


async def _nothing() -> Message:
    return {"type": "http.disconnect"}  # a refusal reads no more of the request (Response does not ask)


def replay_body(body: Message, receive: Receive) -> Receive:
    """The application's receive: the body already received, then the connection's (a disconnect)."""
    replayed = False

    async def receive_replayed() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return body

    return receive_replayed


# DELETE too: a user's delete carries the current password (api/reauthentication.py).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
