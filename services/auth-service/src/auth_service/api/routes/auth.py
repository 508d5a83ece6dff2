"""Tokens: log in for one, verify one (the hot path: no database), and who am I."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, Field
from starlette.responses import Response

from auth_service.api.deps import Claims, ClientAddress, ServicesDep
from auth_service.api.media import JsonRoute
from auth_service.api.responses import BODY_ERRORS, errors, json_response
from auth_service.errors import JSON, ApiError, ServiceUnavailable, unauthorized
from auth_service.services import Services
from auth_service.users import repository
from auth_service.users.schemas import EMAIL_MAX, CurrentPassword, StrictModel, UserOut, login_email

router = APIRouter(prefix="/v1", tags=["auth"], route_class=JsonRoute)
log = logging.getLogger(__name__)


class Credentials(StrictModel):
    # A plain string, not an email type: a malformed email must fail exactly like an unknown one
    # (401, not 422). Normalised as signup normalises it, so that the string signed up with logs in.
    email: Annotated[str, Field(min_length=1, max_length=EMAIL_MAX), AfterValidator(login_email)]
    password: CurrentPassword


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int


class ClaimsOut(BaseModel):
    sub: str
    iss: str
    aud: str
    iat: int
    nbf: int
    exp: int
    jti: str


def _bad_credentials() -> ApiError:
    # One answer for an unknown email and a wrong password: nothing tells which it was.
    return ApiError(401, "invalid_credentials", "the email or the password is wrong")


@router.post("/auth/token", response_model=TokenOut, responses=errors(*BODY_ERRORS, 401, 429, 503))
async def issue_token(body: Credentials, client: ClientAddress, services: ServicesDep) -> Response:
    """Exchange an email and password for an access token; repeated failures get 429 with Retry-After."""
    user_id = await _authenticate(services, body.email, body.password, client)
    token = services.tokens.issue(str(user_id))
    return json_response(
        {"access_token": token, "token_type": "Bearer", "expires_in": services.tokens.ttl},
        headers={"Cache-Control": "no-store"},
    )


async def _authenticate(services: Services, email: str, password: str, client: str) -> uuid.UUID:
    # Limited before any hashing, so that a refused guess costs no argon2.
    attempt = await services.limits.begin_login(email, client)
    started = time.monotonic()
    user_id = await _check_password(services, email, password, client)
    if user_id is None:
        await attempt.failed()
        # No sooner than the floor (security/passwords.py says why): a failure then takes the same
        # time whatever the parameters of the hash it was checked against, or if there was none.
        await asyncio.sleep(started + await services.hasher.failure_floor() - time.monotonic())
        raise _bad_credentials()
    await attempt.succeeded()
    return user_id


async def _check_password(services: Services, email: str, password: str, client: str) -> uuid.UUID | None:
    """The user's id if the password is theirs; None for a wrong password or an unknown email alike."""
    row = await repository.fetch_credentials(services.db, email)
    if row is None:
        await services.hasher.verify_dummy(password, client)
        return None
    if not await services.hasher.verify(row["password_hash"], password, client):
        return None
    if services.hasher.needs_rehash(row["password_hash"]):
        await _upgrade_hash(services, row, password, client)
    user_id: uuid.UUID = row["id"]
    return user_id


async def _upgrade_hash(services: Services, row: Any, password: str, client: str) -> None:
    """Store the hash under the current parameters; best effort, so a correct login never fails for it."""
    try:
        new_hash = await services.hasher.hash(password, client)
        await repository.replace_password_hash(services.db, row["id"], row["password_hash"], new_hash)
    except ServiceUnavailable as exc:
        log.info("rehash of user %s postponed to a later login: %s", row["id"], exc.code)


@router.get("/auth/verify", response_model=ClaimsOut, responses=errors(401, 503))
async def verify_token(claims: Claims) -> Response:
    """The claims of a valid bearer token, or 401. Touches no database."""
    # api/fast.py answers it before FastAPI does; this documents it, and answers without that layer.
    return json_response(claims)


@router.get("/me", response_model=UserOut, responses=errors(401, 503))
async def me(claims: Claims, services: ServicesDep) -> Response:
    """The user a bearer token belongs to."""
    body = await services.users.get_json(_subject(claims))
    if body is None:
        raise unauthorized("the token's user no longer exists")
    return Response(body, media_type=JSON)


def _subject(claims: dict[str, Any]) -> uuid.UUID:
    try:
        return uuid.UUID(str(claims["sub"]))
    except ValueError:
        raise unauthorized() from None
