"""Re-authentication: the current password, asked before a change that a stolen token must not make.

A bearer token proves a login within its TTL, not that whoever holds it knows the password. A new
email or password hands the account over for good, and a delete destroys it, so each also needs
the current password (OWASP's Authentication Cheat Sheet: re-authenticate before sensitive
features; ASVS 4.0.3, 2.1.6, for the password). Renames and reads need the token alone.

Both refusals are 403, without WWW-Authenticate: the token is valid, and a client that took a 401
for "log in again" would throw it away for nothing. A wrong current password is a guess like a
wrong login, so it counts against the same limits (429 past them): a stolen token is no way around
them, nor around the hashing queue's share per client.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from auth_service.errors import ApiError, not_found
from auth_service.users import repository

if TYPE_CHECKING:
    from auth_service.services import Services

FIELD = "current_password"


def reauthentication_required() -> ApiError:
    detail = {"field": FIELD, "code": "missing", "message": "give the user's current password"}
    return ApiError(403, "reauthentication_required", "this change needs the current password", [detail])


def wrong_current_password() -> ApiError:
    detail = {"field": FIELD, "code": "wrong_password", "message": "not the user's current password"}
    return ApiError(403, "invalid_credentials", "the current password is wrong", [detail])


async def reauthenticate(services: Services, user_id: uuid.UUID, password: str | None, client: str) -> None:
    """Return if `password` is the user's current one; else 403 (missing, wrong), 404 (no user), 429 or 503."""
    if password is None:
        raise reauthentication_required()
    row = await repository.fetch_own_credentials(services.db, user_id)
    if row is None:
        raise not_found("user")
    attempt = await services.limits.begin_login(row["email"], client)
    if not await services.hasher.verify(row["password_hash"], password, client):
        await attempt.failed()
        raise wrong_current_password()
    await attempt.succeeded()
