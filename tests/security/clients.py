"""Clients of the limits' tests: other loopback peers, forwarded addresses, and what the store holds."""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from auth_service.security.login_limits import account_key
from auth_service.security.passwords import PasswordHasher
from auth_service.services import driver_dsn
from tests.utils.app import RunningApp

TOKEN_PATH = "/v1/auth/token"
# Linux answers on all of 127.0.0.0/8: a client bound to another of these is another peer.
OTHER_PEER = "127.0.0.2"
WRONG = "not-the-password"


@asynccontextmanager
async def client_from(app: RunningApp, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections come from `address` (a loopback address), not 127.0.0.1."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=app.url, transport=transport, timeout=30.0) as client:
        yield client


def random_address() -> str:
    """A client address of its own (TEST-NET-2 and -3 are too small for a session): counters start at zero."""
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def forwarded(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def log_in(
    client: httpx.AsyncClient, email: str, password: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(TOKEN_PATH, json={"email": email, "password": password}, headers=headers)


async def statuses(
    client: httpx.AsyncClient, email: str, password: str, count: int, headers: dict[str, str] | None = None
) -> list[int]:
    """The statuses of `count` logins one after the other."""
    return [(await log_in(client, email, password, headers)).status_code for _ in range(count)]


@contextmanager
def counted_verifications(hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A one-item list holding how many argon2 verifications the hasher ran (dummy ones included)."""
    calls = [0]
    lock = threading.Lock()  # the workers run it at once
    real = hasher._argon2.verify

    def spy(password_hash: str, password: str) -> bool:
        with lock:
            calls[0] += 1
        return real(password_hash, password)

    monkeypatch.setattr(hasher._argon2, "verify", spy)
    yield calls


async def stored_counters(database_url: str, email: str) -> list[dict[str, Any]]:
    """The PostgreSQL counter rows of this email's account, straight from the table."""
    conn = await asyncpg.connect(driver_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT key, count FROM attempt_counters WHERE key LIKE '%' || $1 || '%'", account_key(email)
        )
        return [dict(row) for row in rows]
    finally:
        await conn.close()
