"""The application: FastAPI with its routers, error handlers and lifespan, and what stands in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from auth_service import __version__
from auth_service.admission import AdmissionMiddleware
from auth_service.api.fast import HotPaths, HotRoutes
from auth_service.api.lane import FAST_LANE, FastLane
from auth_service.api.main import api_router
from auth_service.api.methods import method_not_allowed
from auth_service.api.openapi import install_openapi
from auth_service.errors import install_error_handlers
from auth_service.health import HEALTH_STATE, Health
from auth_service.observability.middleware import TelemetryMiddleware
from auth_service.observability.telemetry import Telemetry
from auth_service.runtime import tune_gc
from auth_service.services import open_services
from auth_service.settings import Settings


def front_door(app: FastAPI) -> ASGIApp:
    """What the server serves: telemetry, then admission control, then the hot paths, then FastAPI.

    In front of FastAPI rather than inside its middleware stack: a hot-path request then never
    passes FastAPI's and Starlette's own layers (each a call and a closure per request), and every
    request, answered here or by FastAPI, is measured and admitted exactly once.
    """
    settings: Settings = app.state.settings
    telemetry: Telemetry = app.state.telemetry
    admitted = AdmissionMiddleware(
        HotPaths(app, fastapi=app),
        max_in_flight=settings.max_in_flight,
        max_body_bytes=settings.max_body_bytes,
        retry_after=settings.retry_after_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        max_arriving_bytes=settings.http_max_arriving_body_bytes,
        on_reject=lambda reason: telemetry.metrics.rejected.labels(reason).inc(),
    )
    telemetry.admission = admitted
    return TelemetryMiddleware(admitted, telemetry)


def create_app(settings: Settings, database_url: str | None = None) -> FastAPI:
    """The service; `database_url` overrides the settings' (the embedded database's, say)."""
    url = database_url or settings.database_url
    if not url:
        raise ValueError("no database URL: set AUTH_DATABASE_URL or start the embedded database")
    health, telemetry = Health(), Telemetry(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Entered in this order and left in reverse: telemetry is flushed last.
        async with (
            telemetry.tracing(),
            open_services(settings, url, health, telemetry) as services,
            telemetry.serving(services),
        ):
            app.state.services = services
            tune_gc(settings)
            state: dict[str, Any] = {"services": services, HEALTH_STATE: health}
            if settings.fast_lane:
                state[FAST_LANE] = FastLane(HotRoutes(app), services, telemetry)
            yield state

    app = FastAPI(
        title="auth-service",
        version=__version__,
        summary="Users and access tokens",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks are off: observability/ does this once, for every route
        # (the plain-ASGI hot paths included); left on, they cost microseconds on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.health = health
    app.state.telemetry = telemetry
    app.state.settings = settings
    install_error_handlers(app)
    app.add_exception_handler(405, method_not_allowed)
    app.include_router(api_router)
    install_openapi(app, settings)
    return app
