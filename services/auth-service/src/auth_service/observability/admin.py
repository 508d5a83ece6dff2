"""The admin port: /metrics and the profiling endpoints, never on the public port.

A second uvicorn server in the same event loop: the profiles and task dumps it serves are of the
loop that serves the API, which is the point of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Iterator

import uvicorn
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from auth_service.errors import error_body
from auth_service.observability.profiling import debug_routes
from auth_service.observability.telemetry import Telemetry
from auth_service.prompt_server import PromptServer
from auth_service.settings import Settings


class AdminAuth:
    """Asks for `Authorization: Bearer <AUTH_ADMIN_TOKEN>` when a token is configured."""

    def __init__(self, app: ASGIApp, token: str | None, metrics_open: bool) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.metrics_open = metrics_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.expected is not None and not self._allowed(scope):
            body = error_body("unauthorized", "the admin token is required")
            response = Response(body, 401, {"WWW-Authenticate": "Bearer"}, media_type="application/json")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        if self.metrics_open and scope["path"] == "/metrics":
            return True
        given = dict(scope["headers"]).get(b"authorization", b"")
        assert self.expected is not None
        return hmac.compare_digest(given, self.expected)


def admin_app(telemetry: Telemetry, settings: Settings) -> ASGIApp:
    async def metrics(request: Request) -> Response:
        """Prometheus text format, or OpenMetrics (with exemplars) when the scraper asks for it."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(telemetry.metrics.registry), headers={"Content-Type": content_type})

    app = Starlette(routes=[Route("/metrics", metrics), *debug_routes(telemetry.slow_requests)])
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    return AdminAuth(app, token, metrics_open=not settings.admin_metrics_require_token)


class AdminServer(PromptServer):
    """A uvicorn server that leaves signals to the main one, and stops the moment it is told to."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn exits the process when it cannot bind; here a clear start-up error
            where = f"{self.config.host}:{self.config.port}"
            raise RuntimeError(f"the admin server cannot listen on {where} (AUTH_ADMIN_PORT)") from None

    def stop(self) -> None:
        self.should_exit = True


@contextlib.asynccontextmanager
async def serving_admin(telemetry: Telemetry, settings: Settings) -> AsyncIterator[AdminServer]:
    config = uvicorn.Config(
        admin_app(telemetry, settings),
        host=settings.admin_host,
        port=settings.admin_port,
        lifespan="off",
        access_log=False,
        log_config=None,
        # None leaves the loggers' levels alone: uvicorn sets the level of its shared `uvicorn.error`
        # logger from log_level, and "warning" here silenced the main server's start and stop lines.
        log_level=None,
        server_header=False,
    )
    server = AdminServer(config)
    task = asyncio.create_task(server.serve(), name="admin-server")
    while not server.started:
        if task.done():
            task.result()  # raises what stopped it (a taken port, say)
            raise RuntimeError(f"the admin server on {settings.admin_host}:{settings.admin_port} did not start")
        await asyncio.sleep(0.01)
    try:
        yield server
    finally:
        server.stop()
        await task


def bound_port(server: uvicorn.Server) -> int:
    return int(server.servers[0].sockets[0].getsockname()[1])
