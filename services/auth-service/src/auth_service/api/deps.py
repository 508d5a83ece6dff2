"""Typed dependencies: the running services, and the claims of a bearer token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from auth_service.errors import unauthorized
from auth_service.security.tokens import InvalidToken
from auth_service.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def parse_bearer(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer ...` value (scheme in any case), or None."""
    parts = authorization.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1].strip()


def bearer_token(request: Request) -> str:
    """The token of an `Authorization: Bearer ...` header, or 401."""
    token = parse_bearer(request.headers.get("authorization", ""))
    if token is None:
        raise unauthorized("a bearer token is required")
    return token


def verified_claims(request: Request) -> dict[str, Any]:
    services = get_services(request)
    try:
        return services.tokens.verify_encoded(bearer_token(request))[1]
    except InvalidToken:
        raise unauthorized() from None


Claims = Annotated[dict[str, Any], Depends(verified_claims)]
