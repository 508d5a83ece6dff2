"""Typed dependencies: the running services, and the claims of a bearer token.

The dependencies are `async def` although they never await: FastAPI runs a plain `def` dependency
in its thread pool, a thread hop per dependency per request (a PATCH cost 866 us of CPU with them,
measured in-process). What they do (a dict lookup, a cached token check) belongs on the loop.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request

from auth_service.errors import ApiError, unauthorized
from auth_service.security.tokens import InvalidToken
from auth_service.services import Services


def services_of(request: Request) -> Services:
    services: Services = request.state.services
    return services


async def get_services(request: Request) -> Services:
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def client_address(request: Request) -> str:
    """The client the login and signup limits count: the peer, or behind trusted proxies, whom they name."""
    peer = request.client.host if request.client is not None else None
    return services_of(request).clients.resolve(peer, request.headers.getlist("x-forwarded-for"))


ClientAddress = Annotated[str, Depends(client_address)]


def parse_bearer(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer ...` value (scheme in any case), or None."""
    parts = authorization.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1].strip()


def claims_of(authorization: str, services: Services) -> dict[str, Any]:
    """The claims of the bearer token in an Authorization value, or 401 (the hot rename asks here too)."""
    token = parse_bearer(authorization)
    if token is None:
        raise unauthorized("a bearer token is required")
    try:
        return services.tokens.verify_encoded(token)[1]
    except InvalidToken:
        raise unauthorized() from None


async def verified_claims(request: Request) -> dict[str, Any]:
    return claims_of(request.headers.get("authorization", ""), services_of(request))


Claims = Annotated[dict[str, Any], Depends(verified_claims)]


async def internal_caller(request: Request) -> None:
    """The batch import is for internal callers: whoever presents AUTH_BATCH_TOKEN.

    It creates a thousand users in one request, without the cost of a hash each when they carry
    hashes: the price a signup pays, which is what keeps mass account creation slow, is not paid.
    With no token configured it is open outside production (development, the tests) and off in it.
    """
    settings = services_of(request).settings
    if settings.batch_token is None:
        if settings.environment == "production":
            raise ApiError(403, "batch_import_disabled", "batch import is off: set AUTH_BATCH_TOKEN to enable it")
        return
    given = parse_bearer(request.headers.get("authorization", "")) or ""
    if not hmac.compare_digest(given.encode(), settings.batch_token.get_secret_value().encode()):
        raise unauthorized("the batch token is required")


InternalCaller = Depends(internal_caller)
