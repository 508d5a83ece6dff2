"""The service running for real: uvicorn on a loopback socket, in the test's event loop."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from auth_service.app import create_app, front_door
from auth_service.server import DrainingServer, server_config
from auth_service.services import Services
from auth_service.settings import Settings
from tests.utils.serving import running

TEST_SIGNING_KEY = secrets.token_urlsafe(48)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings as tests use them: real argon2id at the OWASP minimum, a random signing key."""
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "token_keys": {"test-1": TEST_SIGNING_KEY},
        "token_active_kid": "test-1",
        "drain_delay_seconds": 0.0,
        "graceful_timeout_seconds": 2.0,
        "hash_workers": 2,
        "gc_freeze": False,
        "admin_port": 0,
        # Every test comes from 127.0.0.1 and the session shares one database, where the counters
        # outlive a test: the limits' own tests (tests/security/) set these, the others are not about them.
        "login_failures_per_account_client": 1_000_000,
        "login_failures_per_account": 1_000_000,
        "login_failures_per_client": 1_000_000,
        "signups_per_client": 1_000_000,
        "hash_client_share": 1.0,
        # A failed login waits out the costliest verification allowed (security/passwords.py): the
        # suite's imports are argon2-cffi's defaults (m=64 MiB, t=3), so the range stops there.
        "argon2_import_max_time_cost": 3,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class RunningApp:
    url: str
    server: DrainingServer
    services: Services
    client: httpx.AsyncClient
    task: asyncio.Task[None]


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[RunningApp]:
    """Start the service on 127.0.0.1 at a free port; stop it (gracefully) afterwards."""
    app = create_app(settings)
    config = server_config(front_door(app), settings, host="127.0.0.1", port=0, log_level="warning")
    server = DrainingServer(config, app.state.health, settings.drain_delay_seconds)
    async with running(server) as (task, port):
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
            yield RunningApp(url, server, app.state.services, client, task)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def new_user(**overrides: Any) -> dict[str, Any]:
    user = {
        "email": unique_email(),
        "name": "Test User",
        "password": "a-long-enough-password",
    }
    user.update(overrides)
    return user


async def create_user(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    """Create a user over HTTP; returns the response body plus the password used."""
    payload = new_user(**overrides)
    response = await client.post("/v1/users", json=payload)
    assert response.status_code == 201, response.text
    return {**response.json(), "password": payload["password"]}


async def login(client: httpx.AsyncClient, email: str, password: str) -> str:
    response = await client.post("/v1/auth/token", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has this status and the one error shape; returns the error object."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    if code is not None:
        assert error["code"] == code, error
    return error


def bearer(token: str) -> dict[str, str]:
    """The Authorization header that carries this token."""
    return {"Authorization": f"Bearer {token}"}
