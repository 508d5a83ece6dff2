"""Tokens: alg=none, algorithm confusion both ways, tampering, unknown and odd kids, jku/jwk/x5u headers
(their URLs point at a local server that counts what it is asked), wrong aud/iss, exp and nbf beyond the
leeway, missing claims, a deleted user: every one refused by the token check, by /v1/me and by a PATCH
(accepted_attacks 0), and nothing fetched. Key rotation: a token of the old key verifies while its kid
is still configured, the new key signs, and once the old kid is gone its tokens are refused."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from reliability.context import Context
from reliability.scenario import Findings, Scenario
from reliability.scenarios import token_forgery
from reliability.service import Service, running, shared
from reliability.workload import log_in

ED_KID, NEW_KID = "ed-1", "rotated-2"


@dataclass(frozen=True)
class Params:
    repeats: int  # each forgery is sent this often (a verdict must not change once cached)


@dataclass
class Tally:
    tried: int = 0
    accepted: list[str] = field(default_factory=list)  # "what: where answered 2xx"
    controls_refused: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class User:
    id: str
    email: str
    password: str
    token: str


class FetchCounter:
    """The attacker's key server for jku and x5u: it answers every request, and counts them."""

    def __init__(self) -> None:
        self.requests = 0
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.requests += 1
        body = b'{"keys": []}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()


@asynccontextmanager
async def fetch_counter() -> AsyncIterator[FetchCounter]:
    counter = FetchCounter()
    server = await asyncio.start_server(counter.serve, "127.0.0.1", 0)
    counter.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield counter
    finally:
        server.close()
        await server.wait_closed()


async def new_user(context: Context, client: httpx.AsyncClient) -> User:
    email, password = f"tokens-{uuid.uuid4().hex[:12]}@example.com", f"tokens-{uuid.uuid4().hex}"
    context.witness.secret("password", password)
    created = await client.post("/v1/users", json={"email": email, "name": "Tokens", "password": password})
    created.raise_for_status()
    return User(created.json()["id"], email, password, await log_in(context, client, email, password))


async def attempt(client: httpx.AsyncClient, token: str, user_id: str) -> dict[str, int]:
    """The status of the token check, /v1/me and a rename of the token's user, with this token."""
    bearer = {"Authorization": f"Bearer {token}"}
    return {
        "verify": (await client.get("/v1/auth/verify", headers=bearer)).status_code,
        "me": (await client.get("/v1/me", headers=bearer)).status_code,
        "patch": (await client.patch(f"/v1/users/{user_id}", json={"name": "Taken Over"}, headers=bearer)).status_code,
    }


async def attack(
    client: httpx.AsyncClient, tally: Tally, forgeries: Iterable[tuple[str, str]], user: User, repeats: int
) -> None:
    for what, token in forgeries:
        for _ in range(repeats):
            tally.tried += 1
            for where, status in (await attempt(client, token, user.id)).items():
                if 200 <= status < 300:
                    tally.accepted.append(f"{what}: {where} {status}")


async def control(client: httpx.AsyncClient, tally: Tally, what: str, token: str, user: User) -> None:
    """A genuine token must pass everywhere, or the refusals above prove nothing."""
    answers = await attempt(client, token, user.id)
    if answers != {"verify": 200, "me": 200, "patch": 200}:
        tally.controls_refused.append(f"{what}: {answers}")


async def run(context: Context, params: Params) -> Findings:
    tally = Tally()
    service, database = await shared(context)
    secret = json.loads(context.keys[0])[context.keys[1]]
    attacker = Ed25519PrivateKey.generate()
    ed_key, new_secret = Ed25519PrivateKey.generate(), secrets.token_urlsafe(48)
    record_keys(context, ed_key, new_secret)
    async with AsyncExitStack() as stack, fetch_counter() as fetches:
        eddsa, rotating, rotated = await asyncio.gather(
            stack.enter_async_context(running(context, "eddsa", database, **eddsa_settings(ed_key))),
            stack.enter_async_context(running(context, "rotating", database, **rotation(context, new_secret, True))),
            stack.enter_async_context(running(context, "rotated", database, **rotation(context, new_secret, False))),
        )
        async with context.witness.client(service.url) as client:
            user = await new_user(context, client)
            await control(client, tally, "HS256 from a login", user.token, user)
            forgeries = token_forgery.against_hs256(secret, context.keys[1], user.id, attacker, fetches.url)
            await attack(client, tally, [*forgeries, *token_forgery.tampered(user.token)], user, params.repeats)
            await deleted_user(context, client, tally)
        await against_eddsa(context, eddsa, ed_key, tally, params.repeats)
        await key_rotation(context, user, rotating, rotated, tally)
        tally.notes["key_server_requests"] = fetches.requests
    return findings(tally)


def eddsa_settings(key: Ed25519PrivateKey) -> dict[str, str]:
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    return {
        "AUTH_TOKEN_ALGORITHM": "EdDSA",
        "AUTH_TOKEN_KEYS": json.dumps({ED_KID: pem}),
        "AUTH_TOKEN_ACTIVE_KID": ED_KID,
    }


def rotation(context: Context, new_secret: str, keep_old: bool) -> dict[str, str]:
    """The run's key and a new one, the new one signing; or the new one alone, once the old is retired."""
    keys = json.loads(context.keys[0]) if keep_old else {}
    return {"AUTH_TOKEN_KEYS": json.dumps(keys | {NEW_KID: new_secret}), "AUTH_TOKEN_ACTIVE_KID": NEW_KID}


def record_keys(context: Context, ed_key: Ed25519PrivateKey, new_secret: str) -> None:
    context.witness.secret("key", new_secret)
    pem = ed_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    context.witness.secret("key", "".join(pem.splitlines()[1:-1]))  # the key itself, however it is framed


async def deleted_user(context: Context, client: httpx.AsyncClient, tally: Tally) -> None:
    """A deleted user's real token: refused by the token check, /v1/me and the rename, since the delete revokes it."""
    gone = await new_user(context, client)
    bearer = {"Authorization": f"Bearer {gone.token}"}
    deleted = await client.request(
        "DELETE", f"/v1/users/{gone.id}", json={"current_password": gone.password}, headers=bearer
    )
    tally.notes["deleted_user_delete_status"] = deleted.status_code
    answers = await attempt(client, gone.token, gone.id)
    tally.tried += 1
    tally.notes["deleted_user_verify_status"] = answers["verify"]
    tally.accepted += [f"a deleted user's token: {where} {status}" for where, status in answers.items() if status < 300]


async def against_eddsa(context: Context, eddsa: Service, key: Ed25519PrivateKey, tally: Tally, repeats: int) -> None:
    async with context.witness.client(eddsa.url) as client:
        user = await new_user(context, client)
        await control(client, tally, "EdDSA from a login", user.token, user)
        tally.notes["eddsa_token_header"] = jwt.get_unverified_header(user.token)
        public = key.public_key()
        pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        raw_public = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        forgeries = token_forgery.against_eddsa(pem, raw_public, ED_KID, user.id)
        await attack(client, tally, [*forgeries, *token_forgery.tampered(user.token)], user, repeats)


async def key_rotation(context: Context, user: User, rotating: Service, rotated: Service, tally: Tally) -> None:
    """The user's token from the run's key, against a process that also has a new key, then the new key alone."""
    old_token = user.token
    async with context.witness.client(rotating.url) as during, context.witness.client(rotated.url) as after:
        await control(during, tally, "the old key's token while its kid is still listed", old_token, user)
        new_token = await log_in(context, during, user.email, user.password)
        tally.notes["rotation_new_kid"] = jwt.get_unverified_header(new_token).get("kid")
        if tally.notes["rotation_new_kid"] != NEW_KID:
            tally.controls_refused.append(f"the rotating process signed with {tally.notes['rotation_new_kid']}")
        await control(during, tally, "the new key's token during the rotation", new_token, user)
        await control(after, tally, "the new key's token once the old kid is gone", new_token, user)
        await attack(after, tally, [("the old key's token once its kid is gone", old_token)], user, 1)


def findings(tally: Tally) -> Findings:
    found = Findings(sent=tally.tried, failed=len(tally.controls_refused))
    found.figures = {
        "accepted_attacks": len(tally.accepted),
        "accepted": tally.accepted,
        "controls_refused": tally.controls_refused,
        **tally.notes,
    }
    found.expect(
        tally.notes.get("key_server_requests") == 0,
        f"the key server was asked {tally.notes.get('key_server_requests')} times",
    )
    found.expect(not tally.controls_refused, f"genuine tokens refused: {tally.controls_refused}")
    found.observed = (
        f"{tally.tried} forged or stale tokens, each at the token check, /v1/me and a PATCH: {len(tally.accepted)} "
        f"accepted; key server asked {tally.notes.get('key_server_requests')} times; rotation: old token valid while "
        f"listed, new kid {tally.notes.get('rotation_new_kid')}, old refused once retired"
    )
    return found


SCENARIO = Scenario(
    key="token",
    tried=(
        "alg=none, HS256 keyed with an EdDSA service's public key and EdDSA under an HS256 kid, flipped bits, "
        "unknown and odd kids, jku/jwk/x5u headers, wrong aud/iss, exp/nbf/iat beyond the leeway, missing claims, "
        "a deleted user's token; then a key rotation over three processes"
    ),
    run=run,
    quick=Params(repeats=1),
    long=Params(repeats=3),
)
