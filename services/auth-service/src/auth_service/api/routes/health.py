"""Probes: liveness answers while the loop runs; readiness while the database answers and not draining."""

from fastapi import APIRouter, Request
from starlette.responses import Response

from auth_service.api.responses import errors
from auth_service.errors import JSON

router = APIRouter(tags=["health"])

OK = b'{"status":"ok"}'


@router.get("/healthz", responses=errors(503))
async def liveness() -> Response:
    """The process and its event loop answer."""
    return Response(OK, media_type=JSON)


@router.get("/readyz", responses=errors(503))
async def readiness(request: Request) -> Response:
    """Send traffic here: the database answers, the revoked tokens are loaded, and the instance is not shutting down."""
    services = request.state.services
    await services.health.check_ready(services.db)
    services.revocations.require_loaded()
    return Response(OK, media_type=JSON)
