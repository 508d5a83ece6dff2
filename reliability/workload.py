"""The steady traffic the fault scenarios run under: signups, reads of known users and token checks.

The users are seeded through the batch import with one precomputed hash (as the bench seeds them);
the signups during the load each pay their argon2 hash, and every 201 is an acknowledged write whose
row must be there afterwards.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from dataclasses import dataclass, field

import httpx

from bench import seed
from reliability.context import Context
from reliability.load import Tally

# Of every ten requests: six reads of a known user, three token checks, one signup.
MIX = ("read", "verify", "read", "read", "verify", "create", "read", "verify", "read", "read")
EXPECTED = {"read": frozenset({200}), "verify": frozenset({200}), "create": frozenset({201})}
TOKENS = 10


async def seed_users(
    context: Context, url: str, count: int, password: str = seed.PASSWORD, hashed: str | None = None
) -> list[tuple[str, str]]:
    """(id, email) of `count` new users imported through the batch endpoint, all with one password and hash.

    As bench.seed imports its users, with emails of their own: scenarios may share a database.
    """
    if hashed is None:
        hashed = await asyncio.to_thread(seed.password_hash, password)
    context.witness.secret("password", password)
    context.witness.secret("hash", hashed)
    prefix = uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {context.batch_token}"}
    users: list[tuple[str, str]] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60.0) as client:
        for start in range(0, count, seed.BATCH):
            items = [
                {"email": f"seed-{prefix}-{index}@example.com", "name": f"Seeded {index}", "password_hash": hashed}
                for index in range(start, min(start + seed.BATCH, count))
            ]
            response = await client.post("/v1/users:batch", json={"users": items})
            response.raise_for_status()
            users += [(user["id"], user["email"]) for user in response.json()["users"]]
    return users


async def log_in(context: Context, client: httpx.AsyncClient, email: str, password: str) -> str:
    response = await client.post("/v1/auth/token", json={"email": email, "password": password})
    response.raise_for_status()
    token: str = response.json()["access_token"]
    context.witness.secret("token", token)
    return token


@dataclass
class Workload:
    """Sends the mix through one client; knows every user id it may read and every write acknowledged."""

    context: Context
    client: httpx.AsyncClient
    ids: list[str]
    tokens: list[str]
    tally: Tally = field(default_factory=lambda: Tally(EXPECTED))
    acknowledged: list[str] = field(default_factory=list)
    password: str = field(default_factory=lambda: f"load-{secrets.token_urlsafe(18)}")
    users: list[tuple[str, str]] = field(default_factory=list)  # (id, email) of the seeded users

    def __post_init__(self) -> None:
        self.context.witness.secret("password", self.password)

    @classmethod
    async def seeded(cls, context: Context, client: httpx.AsyncClient, users: int) -> Workload:
        """A workload over `users` new users, with tokens of the first few from real logins."""
        seeded = await seed_users(context, str(client.base_url), users)
        tokens = [await log_in(context, client, email, seed.PASSWORD) for _, email in seeded[:TOKENS]]
        return cls(context, client, [user_id for user_id, _ in seeded], tokens, users=seeded)

    async def send(self, index: int) -> None:
        kind = MIX[index % len(MIX)]
        if kind == "create":
            await self.create()
        elif kind == "verify":
            token = self.tokens[index % len(self.tokens)]
            await self.tally.timed(
                kind, self.client.get("/v1/auth/verify", headers={"Authorization": f"Bearer {token}"})
            )
        else:
            await self.tally.timed(kind, self.client.get(f"/v1/users/{random.choice(self.ids)}"))  # noqa: S311

    async def create(self) -> None:
        body = {"email": f"load-{uuid.uuid4().hex[:16]}@example.com", "name": "Load User", "password": self.password}
        response = await self.tally.timed("create", self.client.post("/v1/users", json=body))
        if response is not None and response.status_code == 201:
            user_id = response.json()["id"]
            self.acknowledged.append(user_id)
            self.ids.append(user_id)
