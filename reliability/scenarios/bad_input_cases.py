"""The bad inputs of the `bad_input` scenario, each a whole request as bytes and what it must get.

The endpoints and their fields are the API tests' own table (tests/api/test_bad_input.py), so a field
added there is attacked here too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from reliability import raw
from reliability.context import Context
from reliability.witness import Witness
from tests.api.test_bad_input import ENDPOINTS

# refused: a 4xx; accepted: a 2xx, and what was stored is what was sent; protocol: a 4xx or a closed connection.
Expectation = str
INJECTIONS = (
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    '" OR ""="',
    "1); SELECT pg_sleep(3); --",
    "$1; DELETE FROM users",
    "') UNION SELECT id, password_hash, email, name, now(), now() FROM users --",
)
MAX_BODY_BYTES = 1024 * 1024  # the service's default AUTH_MAX_BODY_BYTES


@dataclass(frozen=True)
class Case:
    name: str
    payload: bytes
    expect: Expectation
    rows: int = 0  # rows an accepted case writes
    stored: Callable[[asyncpg.Connection], Awaitable[bool]] | None = None  # was it stored as sent?
    changes_owner: bool = False  # an accepted PATCH of the targeted user


@dataclass(frozen=True)
class Owner:
    """The user the PATCH and DELETE cases target, with its token and password."""

    id: str
    email: str
    password: str
    token: str

    @classmethod
    async def signed_up(cls, context: Context, client: httpx.AsyncClient) -> Owner:
        email, password = f"owner-{uuid.uuid4().hex[:12]}@example.com", f"owner-{uuid.uuid4().hex}"
        context.witness.secret("password", password)
        created = await client.post("/v1/users", json={"email": email, "name": "Owner", "password": password})
        created.raise_for_status()
        login = await client.post("/v1/auth/token", json={"email": email, "password": password})
        login.raise_for_status()
        token: str = login.json()["access_token"]
        context.witness.secret("token", token)
        return cls(created.json()["id"], email, password, token)


class Endpoint:
    """One body endpoint: a valid body for it, and requests with parts of that body replaced."""

    def __init__(self, key: str, owner: Owner, batch_token: str, witness: Witness) -> None:
        self.key, self.witness = key, witness
        self.method, path, self.fields = ENDPOINTS[key]
        self.path = path.format(id=owner.id)
        token = batch_token if key == "batch" else owner.token
        self.headers = {"Authorization": f"Bearer {token}"}
        self.owner = owner

    def item(self, **changes: Any) -> dict[str, Any]:
        # A new email each time, so that an accepted case never collides with an earlier one.
        values = {
            "email": f"bad-{uuid.uuid4().hex[:12]}@example.com",
            "name": "Bad Input",
            "password": f"bad-{uuid.uuid4().hex[:16]}",
            "current_password": self.owner.password,
        }
        self.witness.secret("password", values["password"])
        return {**{field: values[field] for field in self.fields}, **changes}

    def wrap(self, item: dict[str, Any] | str) -> Any:
        return {"users": [item]} if self.key == "batch" else item

    def send(self, body: bytes, content_type: str = "application/json") -> bytes:
        headers = self.headers | {"Content-Type": content_type}
        lines = [f"{self.method} {self.path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return "\r\n".join(lines).encode() + b"\r\n\r\n" + body

    def json(self, **changes: Any) -> bytes:
        return self.send(json.dumps(self.wrap(self.item(**changes))).encode())


def cases(owner: Owner, batch_token: str, deep: int, witness: Witness) -> Iterator[Case]:
    for key in ENDPOINTS:
        endpoint = Endpoint(key, owner, batch_token, witness)
        yield from body_cases(endpoint, deep)
        yield from field_cases(endpoint)
    yield from injection_cases(owner, batch_token, witness)
    yield from duplicate_key_cases(owner, batch_token, witness)
    yield from protocol_cases(owner)


def body_cases(endpoint: Endpoint, deep: int) -> Iterator[Case]:
    e, valid = endpoint, json.dumps(endpoint.wrap(endpoint.item())).encode()
    yield Case(f"{e.key}: body over the limit", e.send(valid + b" " * (MAX_BODY_BYTES + 1 - len(valid))), "refused")
    yield Case(f"{e.key}: invalid UTF-8", e.send(valid.replace(b'{"', b'{"\xff\xfe', 1)), "refused")
    yield Case(f"{e.key}: raw NUL", e.send(valid.replace(b'": "', b'": "\x00', 1)), "refused")
    yield Case(f"{e.key}: truncated JSON", e.send(valid[:-1]), "refused")
    yield Case(f"{e.key}: not JSON at all, as text/plain", e.send(b"email=x&password=y", "text/plain"), "refused")
    nested = b'{"name": ' + b"[" * deep + b"]" * deep + b"}"
    yield Case(f"{e.key}: nested {deep:,} deep in a field", e.send(nested), "refused")
    yield Case(f"{e.key}: nested {deep:,} deep", e.send(b"[" * deep + b"]" * deep), "refused")
    yield Case(f"{e.key}: a 5,000-digit number", e.send(b'{"name": 1' + b"0" * 5000 + b"}"), "refused")
    yield Case(
        f"{e.key}: 1e999, NaN, -Infinity", e.send(b'{"name": 1e999, "email": NaN, "password": -Infinity}'), "refused"
    )


# Fields stored as text (a password may hold any character but a lone surrogate: it is only hashed).
TEXT_FIELDS = ("name", "email")


def field_cases(endpoint: Endpoint) -> Iterator[Case]:
    e = endpoint
    for field in e.fields:
        yield Case(f"{e.key}.{field}: lone surrogate", e.json(**{field: "bad-input-\ud800"}), "refused")
        yield Case(f"{e.key}.{field}: 100,000 characters", e.json(**{field: "a" * 100_000}), "refused")
        yield Case(f"{e.key}.{field}: an object", e.json(**{field: {"$ne": None}}), "refused")
        if field in TEXT_FIELDS:
            yield Case(f"{e.key}.{field}: escaped NUL", e.json(**{field: "bad\u0000input@example.com"}), "refused")
            yield Case(
                f"{e.key}.{field}: C1 control, bidi override", e.json(**{field: "Bad\u0085\u202eInput"}), "refused"
            )


def injection_cases(owner: Owner, batch_token: str, witness: Witness) -> Iterator[Case]:
    create, batch = Endpoint("create", owner, batch_token, witness), Endpoint("batch", owner, batch_token, witness)
    patch, token = Endpoint("patch", owner, batch_token, witness), Endpoint("token", owner, batch_token, witness)
    for index, text in enumerate(INJECTIONS):
        names = {key: f"{text} #{index} {key}" for key in ("create", "batch", "patch")}
        yield Case(
            f"create.name: {text}",
            create.json(name=names["create"]),
            "accepted",
            rows=1,
            stored=name_stored(names["create"]),
        )
        yield Case(
            f"batch.name: {text}",
            batch.json(name=names["batch"]),
            "accepted",
            rows=1,
            stored=name_stored(names["batch"]),
        )
        yield Case(
            f"patch.name: {text}",
            patch_name(patch, names["patch"]),
            "accepted",
            stored=name_stored(names["patch"]),
            changes_owner=True,
        )
        yield Case(f"create.email: {text}", create.json(email=f"{text}@example.com"), "refused")
        yield Case(f"token.email: {text}", token.json(email=text, password=owner.password), "refused")
        yield Case(f"token.password: {text}", token.json(email=owner.email, password=text), "refused")
        path = raw.quote_path(text)
        yield Case(f"GET /v1/users/{text}", raw.request("GET", f"/v1/users/{path}"), "refused")
        yield Case(f"GET /v1/users/<id>?id={text}", raw.request("GET", f"/v1/users/{owner.id}?id={path}"), "handled")
    apostrophe = f"o'brien.{uuid.uuid4().hex[:8]}@example.com"
    yield Case(
        "create.email: an apostrophe (valid)",
        create.json(email=apostrophe),
        "accepted",
        rows=1,
        stored=email_stored(apostrophe),
    )


def patch_name(patch: Endpoint, name: str) -> bytes:
    # A rename needs no current password.
    return patch.send(json.dumps({"name": name}).encode())


def duplicate_key_cases(owner: Owner, batch_token: str, witness: Witness) -> Iterator[Case]:
    create = Endpoint("create", owner, batch_token, witness)
    first, last = f"dup-first-{uuid.uuid4().hex[:8]}@example.com", f"dup-last-{uuid.uuid4().hex[:8]}@example.com"
    body = f'{{"email": "{first}", "name": "Dup", "password": "dup-{uuid.uuid4().hex}", "email": "{last}"}}'
    # Either refused, or one row with one of the two emails: the JSON parser keeps the last.
    yield Case(
        "create: duplicate email keys", create.send(body.encode()), "handled", rows=1, stored=only_one_of(first, last)
    )


def protocol_cases(owner: Owner) -> Iterator[Case]:
    user = f"/v1/users/{owner.id}"
    head = b"POST /v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    yield Case("HTTP: garbage request line", b"GARBAGE\r\n\r\n", "protocol")
    yield Case("HTTP: unknown method", raw.request("BREW", user), "protocol")
    yield Case("HTTP: negative Content-Length", head + b"Content-Length: -1\r\n\r\n{}", "protocol")
    yield Case("HTTP: Content-Length not a number", head + b"Content-Length: abc\r\n\r\n{}", "protocol")
    yield Case(
        "HTTP: two different Content-Lengths", head + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}x", "protocol"
    )
    smuggled = b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v1/users HTTP/1.1\r\n\r\n"
    yield Case("HTTP: Content-Length with chunked (smuggling)", head + smuggled, "protocol")
    yield Case("HTTP: bad chunk size", head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", "protocol")
    yield Case("HTTP: NUL in a header", f"GET {user} HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n".encode(), "protocol")
    yield Case("HTTP: NUL in the path", raw.request("GET", "/v1/users/%00"), "refused")
    yield Case("HTTP: a 100 KB path", raw.request("GET", "/v1/users/" + "a" * 100_000), "protocol")
    # Within HTTP, if beyond what a server need accept: a 431 or an answer, never a 5xx.
    yield Case("HTTP: a 60 KB header", raw.request("GET", user, headers={"X-Big": "a" * 60_000}), "handled")
    bearer = {"Authorization": "Bearer " + "a" * 100_000}
    yield Case("HTTP: a 100 KB bearer token", raw.request("GET", "/v1/me", headers=bearer), "protocol")
    yield Case("HTTP/0.9 request", f"GET {user}\r\n\r\n".encode(), "handled")


def name_stored(name: str) -> Callable[[asyncpg.Connection], Awaitable[bool]]:
    async def check(sql: asyncpg.Connection) -> bool:
        return bool(await sql.fetchval("SELECT count(*) = 1 FROM users WHERE name = $1", name))

    return check


def email_stored(email: str) -> Callable[[asyncpg.Connection], Awaitable[bool]]:
    async def check(sql: asyncpg.Connection) -> bool:
        return bool(await sql.fetchval("SELECT count(*) = 1 FROM users WHERE email = $1", email))

    return check


def only_one_of(first: str, last: str) -> Callable[[asyncpg.Connection], Awaitable[bool]]:
    async def check(sql: asyncpg.Connection) -> bool:
        query = "SELECT count(*) FROM users WHERE email = ANY($1::text[])"
        return int(await sql.fetchval(query, [first, last])) <= 1

    return check
