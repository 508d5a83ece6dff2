"""Users: create (one or a batch), read (cached), update and delete (both invalidate every replica)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from auth_service.api.deps import Claims, ClientAddress, InternalCaller, ServicesDep
from auth_service.api.media import JsonRoute
from auth_service.api.reauthentication import reauthenticate
from auth_service.api.responses import BODY_ERRORS, errors, json_response
from auth_service.errors import JSON, ApiError, not_found
from auth_service.security.imported_hashes import import_problem
from auth_service.services import Services
from auth_service.settings import Settings
from auth_service.users.repository import DuplicateEmail
from auth_service.users.schemas import (
    Reauthentication,
    UserBatch,
    UserBatchOut,
    UserCreate,
    UserImport,
    UserOut,
    UserUpdate,
    user_dict,
)

router = APIRouter(prefix="/v1", tags=["users"], route_class=JsonRoute)
# The changes that hand an account over: they need the current password besides the token.
TAKEOVER_FIELDS = frozenset({"email", "password"})


def _email_taken() -> ApiError:
    return ApiError(409, "email_taken", "a user with this email already exists")


def _invalid(details: list[dict[str, Any]]) -> ApiError:
    return ApiError(422, "validation_error", "the request is invalid", details)


def _password_problem(password: str, settings: Settings) -> dict[str, str] | None:
    if len(password) < settings.password_min_length:
        return {"code": "string_too_short", "message": f"at least {settings.password_min_length} characters"}
    if len(password) > settings.password_max_length:
        return {"code": "string_too_long", "message": f"at most {settings.password_max_length} characters"}
    return None


def _check_password(password: str, settings: Settings) -> None:
    problem = _password_problem(password, settings)
    if problem is not None:
        raise _invalid([{"field": "password", **problem}])


def _location(row: Any) -> dict[str, str]:
    return {"Location": f"/v1/users/{row['id']}"}


@router.post("/users", status_code=201, response_model=UserOut, responses=errors(*BODY_ERRORS, 409, 429, 503))
async def create_user(body: UserCreate, client: ClientAddress, services: ServicesDep) -> Response:
    """Create a user; the email must be new (compared without case). Limited per client: 429 with Retry-After."""
    _check_password(body.password, services.settings)
    # The 409 for a taken email tells that an account exists (by design: a signup form must say so):
    # the limit bounds the asking. Checked before the hash, so that a refused signup costs no argon2;
    # counted after it, taken or not.
    await services.limits.check_signup(client)
    password_hash = await services.hasher.hash(body.password, client)
    await services.limits.count_signup(client)
    try:
        row = await services.users.create(body.email, body.name, password_hash)
    except DuplicateEmail:
        raise _email_taken() from None
    return json_response(user_dict(row), 201, _location(row))


@router.post(
    "/users:batch",
    status_code=201,
    response_model=UserBatchOut,
    responses=errors(*BODY_ERRORS, 401, 403, 409, 503),
    dependencies=[InternalCaller],
)
async def create_users(body: UserBatch, client: ClientAddress, services: ServicesDep) -> Response:
    """Create up to `batch_max_users` users in one statement: all of them, or none with every problem named."""
    settings = services.settings
    if len(body.users) > settings.batch_max_users:
        raise _invalid([{"field": "users", "code": "too_many_items", "message": f"at most {settings.batch_max_users}"}])
    _check_batch(body.users, settings)
    await _check_emails_free(body.users, services)
    hashes = await _batch_hashes(body.users, services, client)
    try:
        rows = await services.users.create_many(
            [(item.email, item.name, password_hash) for item, password_hash in zip(body.users, hashes, strict=True)]
        )
    except DuplicateEmail:
        # Taken between the check and the insert: nothing was written; the client may retry.
        raise _email_taken() from None
    by_email = {row["email"].lower(): row for row in rows}
    ordered = [user_dict(by_email[item.email.lower()]) for item in body.users]
    return json_response({"users": ordered}, 201)


def _check_batch(items: list[UserImport], settings: Settings) -> None:
    details: list[dict[str, Any]] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        if (item.password is None) == (item.password_hash is None):
            details.append(_item_problem(index, "password", "password_xor_hash", "give password or password_hash"))
        elif item.password is not None and (problem := _password_problem(item.password, settings)):
            details.append({"index": index, "field": "password", **problem})
        elif item.password_hash is not None and (problem := import_problem(item.password_hash, settings)):
            details.append({"index": index, "field": "password_hash", **problem})
        key = item.email.lower()
        if key in first_index:
            message = f"the same email as item {first_index[key]}"
            details.append(_item_problem(index, "email", "duplicate_in_batch", message))
        first_index.setdefault(key, index)
    if details:
        raise _invalid(details)


async def _check_emails_free(items: list[UserImport], services: Services) -> None:
    taken = await services.users.taken_emails([item.email for item in items])
    details = [
        _item_problem(index, "email", "email_taken", "a user with this email already exists")
        for index, item in enumerate(items)
        if item.email.lower() in taken
    ]
    if details:
        raise ApiError(409, "email_taken", "some emails already belong to users", details)


def _item_problem(index: int, field: str, code: str, message: str) -> dict[str, Any]:
    return {"index": index, "field": field, "code": code, "message": message}


async def _batch_hashes(items: list[UserImport], services: Services, client: str) -> list[str]:
    plain = [item.password for item in items if item.password is not None]
    hashed = iter(await services.hasher.hash_many(plain, client))
    return [item.password_hash if item.password_hash is not None else next(hashed) for item in items]


@router.get("/users/{user_id}", response_model=UserOut, responses=errors(404, 422, 503))
async def get_user(user_id: uuid.UUID, request: Request) -> Response:
    """A user by id, served from the cache when it can be."""
    body = await request.state.services.users.get_json(user_id)
    if body is None:
        raise not_found("user")
    return Response(body, media_type=JSON)


def require_self(claims: dict[str, Any], user_id: uuid.UUID) -> None:
    """403 unless the token is the user's own."""
    if claims.get("sub") != str(user_id):
        raise ApiError(403, "forbidden", "a token can only change its own user")


async def apply_changes(services: Services, user_id: uuid.UUID, changes: dict[str, Any]) -> Response:
    """Write checked changes and answer with the user as it now is (the hot rename answers through this too)."""
    try:
        row = await services.users.update(user_id, changes)
    except DuplicateEmail:
        raise _email_taken() from None
    if row is None:
        raise not_found("user")
    # The sessions issue's seam: once sessions exist, a change of TAKEOVER_FIELDS revokes the user's
    # other sessions here (the caller's stays), before the answer, so that a thief's ends with it.
    return json_response(user_dict(row))


@router.patch("/users/{user_id}", response_model=UserOut, responses=errors(*BODY_ERRORS, 401, 403, 404, 409, 429, 503))
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, claims: Claims, client: ClientAddress, services: ServicesDep
) -> Response:
    """Change a user's name, email or password: the user's token, and for email or password `current_password`."""
    require_self(claims, user_id)
    changes = body.model_dump(exclude_unset=True)
    current_password = changes.pop("current_password", None)
    if not changes:
        raise _invalid([{"field": None, "code": "no_changes", "message": "give name, email or password"}])
    if "password" in changes:
        _check_password(changes["password"], services.settings)
    # A password sent is checked even for a rename: a credential given is never ignored.
    if current_password is not None or not TAKEOVER_FIELDS.isdisjoint(changes):
        await reauthenticate(services, user_id, current_password, client)
    if "password" in changes:
        changes["password_hash"] = await services.hasher.hash(changes.pop("password"), client)
    return await apply_changes(services, user_id, changes)


@router.delete("/users/{user_id}", status_code=204, responses=errors(*BODY_ERRORS, 401, 403, 404, 429, 503))
async def delete_user(
    user_id: uuid.UUID,
    claims: Claims,
    client: ClientAddress,
    services: ServicesDep,
    body: Reauthentication | None = None,
) -> Response:
    """Delete a user: the user's token and `current_password`. From then on its tokens are refused everywhere."""
    require_self(claims, user_id)
    await reauthenticate(services, user_id, body.current_password if body is not None else None, client)
    revoked_at = await services.users.delete(user_id)
    if revoked_at is None:
        raise not_found("user")
    # Refused here from this answer on; on the other replicas once the trigger's NOTIFY reaches them.
    services.revocations.revoke(str(user_id), revoked_at)
    return Response(status_code=204)
