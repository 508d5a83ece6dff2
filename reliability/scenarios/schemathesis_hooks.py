"""Schemathesis hooks of the `schemathesis` scenario, loaded by its CLI (SCHEMATHESIS_HOOKS names this module).

Every request carries the token its route needs: the batch token for the batch import; for a user that
schemathesis itself created (the stateful phase follows links from a signup to that user's routes),
that user's own token, from a login with the credentials it signed up with; else the token of the
user the scenario made. Without that, every PATCH and DELETE of a new user would stop at 403.

One rule of the batch import is not in the schema because JSON Schema cannot state it: no two items
may have the same email (`uniqueItems` compares whole items). Generated batches that break it are
left out here, so that the positive checks still hold every other batch to the schema.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx
import schemathesis

from auth_service.users.schemas import login_email

BASE_URL = os.environ.get("RELIABILITY_SCHEMATHESIS_URL", "")
USER_TOKEN = os.environ.get("RELIABILITY_USER_TOKEN", "")
BATCH_TOKEN = os.environ.get("RELIABILITY_BATCH_TOKEN", "")
BATCH_PATH = "/v1/users:batch"

_lock = threading.Lock()
_credentials: dict[str, tuple[str, str]] = {}  # user id -> (email, password) of users schemathesis signed up
_tokens: dict[str, str] = {}


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Remember who signed up with what, to log in as them for their own routes."""
    body = case.body if isinstance(case.body, dict) else {}
    signed_up = case.method.upper() == "POST" and case.path == "/v1/users" and response.status_code == 201
    if signed_up and isinstance(body.get("email"), str) and isinstance(body.get("password"), str):
        with _lock:
            _credentials[str(response.json()["id"])] = (body["email"], body["password"])


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    """False for a batch with two items of one email (as the service compares them: normalised, lower-cased)."""
    operation = getattr(context, "operation", None)
    if operation is None or operation.path != BATCH_PATH or not isinstance(body, dict):
        return True
    items = body.get("users")
    if not isinstance(items, list):
        return True
    emails = [
        login_email(item["email"]).lower()
        for item in items
        if isinstance(item, dict) and isinstance(item.get("email"), str)
    ]
    return len(emails) == len(set(emails))


def token_of(user_id: str) -> str | None:
    with _lock:
        if user_id in _tokens:
            return _tokens[user_id]
        credentials = _credentials.get(user_id)
    if credentials is None:
        return None
    email, password = credentials
    response = httpx.post(f"{BASE_URL}/v1/auth/token", json={"email": email, "password": password}, timeout=10)
    if response.status_code != 200:
        return None  # it changed its password or was deleted meanwhile
    token: str = response.json()["access_token"]
    with _lock:
        _tokens[user_id] = token
    return token


@schemathesis.auth(refresh_interval=None)
class RouteToken:
    """The token for this case's route (no caching across cases: it depends on the user in the path)."""

    def get(self, case: Any, context: Any) -> str:
        if case.path == BATCH_PATH:
            return BATCH_TOKEN
        user_id = (case.path_parameters or {}).get("user_id")
        own = token_of(str(user_id)) if user_id is not None else None
        return own or USER_TOKEN

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
