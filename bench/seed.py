"""The data every server is measured on: users created through the service's batch endpoint, tokens from
logins, and the files the wrk script picks its ids, emails and tokens from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from argon2 import PasswordHasher, Type

from auth_service.settings import Settings

# Every seeded user has this password; its hash is computed once and imported with every user.
PASSWORD = "bench-correct-horse-battery-staple"
BATCH = 1_000


def password_hash(password: str = PASSWORD) -> str:
    """One argon2id hash with the service's default parameters (~20 ms: too slow to compute per user)."""
    defaults = Settings.model_fields
    hasher = PasswordHasher(
        time_cost=defaults["argon2_time_cost"].default,
        memory_cost=defaults["argon2_memory_kib"].default,
        parallelism=defaults["argon2_parallelism"].default,
        type=Type.ID,
    )
    return hasher.hash(password)


def email_of(index: int) -> str:
    return f"bench-{index:06d}@example.com"


def create_users(client: httpx.Client, count: int, hashed: str) -> list[tuple[str, str]]:
    """(id, email) of `count` new users, created a batch at a time through POST /v1/users:batch."""
    users: list[tuple[str, str]] = []
    for start in range(0, count, BATCH):
        items = [
            {"email": email_of(index), "name": f"Bench User {index}", "password_hash": hashed}
            for index in range(start, min(start + BATCH, count))
        ]
        response = client.post("/v1/users:batch", json={"users": items}, timeout=60.0)
        response.raise_for_status()
        users += [(user["id"], user["email"]) for user in response.json()["users"]]
    return users


def import_users(url: str, batch_token: str, count: int) -> list[tuple[str, str]]:
    """(id, email) of `count` new users with PASSWORD, imported through the batch endpoint with its token."""
    importer = {"Authorization": f"Bearer {batch_token}"}
    with httpx.Client(base_url=url, headers=importer) as client:
        return create_users(client, count, password_hash())


def fresh_tokens(url: str, users: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    """(user id, access token) of the first `count` users, from real logins now: a token lives 15 minutes."""
    with httpx.Client(base_url=url) as client:
        return log_in(client, users, count)


def log_in(client: httpx.Client, users: list[tuple[str, str]], count: int) -> list[tuple[str, str]]:
    """(user id, access token) of the first `count` users, each from a real login."""
    tokens = []
    for user_id, email in users[:count]:
        response = client.post("/v1/auth/token", json={"email": email, "password": PASSWORD}, timeout=30.0)
        response.raise_for_status()
        tokens.append((user_id, response.json()["access_token"]))
    return tokens


@dataclass(frozen=True)
class Dataset:
    """The files given to the wrk script (one item a line) and what they hold."""

    directory: Path
    users: list[tuple[str, str]]
    hot_set: int

    def file(self, name: str) -> Path:
        return self.directory / f"{name}.txt"

    def wrk_args(self) -> dict[str, str]:
        files = {name: str(self.file(name)) for name in ("ids", "hot", "emails", "tokens")}
        return files | {"password": PASSWORD}

    def write_users(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ids = [user_id for user_id, _ in self.users]
        self.file("ids").write_text("\n".join(ids) + "\n")
        self.file("hot").write_text("\n".join(ids[: self.hot_set]) + "\n")
        self.file("emails").write_text("\n".join(email for _, email in self.users) + "\n")

    def write_tokens(self, tokens: list[tuple[str, str]]) -> None:
        self.file("tokens").write_text("".join(f"{user_id} {token}\n" for user_id, token in tokens))

    def first_token(self) -> str:
        return self.file("tokens").read_text().split("\n", 1)[0].split()[1]

    def first_hot_id(self) -> str:
        return self.users[0][0]
