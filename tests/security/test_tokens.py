"""Tampered, forged, stale and foreign tokens are refused; rotation and EdDSA work."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from auth_service.security.tokens import InvalidToken, TokenService
from tests.utils.app import TEST_SIGNING_KEY, RunningApp, assert_error, bearer, create_user, login, serve

KID = "test-1"  # the kid of TEST_SIGNING_KEY in make_settings
ED_KID = "ed-1"


# --- building tokens by hand


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hmac_sha256_token(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A JWS built without PyJWT, which refuses PEM keys as HMAC secrets."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned_token(claims: dict[str, Any], alg: str = "none", kid: str = KID) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def good_claims(settings: Any, **offsets: int) -> dict[str, Any]:
    """Claims the service would accept, with time claims moved by `offsets` seconds from now."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()),
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "iat": now,
        "nbf": now,
        "exp": now + settings.token_ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    for claim, offset in offsets.items():
        claims[claim] = now + offset
    return claims


def hs256(claims: dict[str, Any], key: str = TEST_SIGNING_KEY, kid: str | None = KID) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm="HS256", headers=headers)


def flip_jti_byte(token: str) -> str:
    """The same token with one bit of the payload changed (inside the jti, so it stays valid JSON)."""
    header, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(payload))
    raw[raw.index(b'"jti":"') + len(b'"jti":"')] ^= 0x01
    return f"{header}.{b64url(bytes(raw))}.{signature}"


def flip_signature_byte(token: str) -> str:
    header, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[0] ^= 0x01
    return f"{header}.{payload}.{b64url(bytes(raw))}"


# --- asking the service


async def verify(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/v1/auth/verify", headers=bearer(token))


async def assert_accepted(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await verify(client, token)
    assert response.status_code == 200, response.text
    claims: dict[str, Any] = response.json()
    return claims


async def assert_refused(client: httpx.AsyncClient, token: str) -> None:
    response = await verify(client, token)
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def issued_token(app: RunningApp) -> str:
    user = await create_user(app.client)
    return await login(app.client, user["email"], user["password"])


# --- HS256 (the default in tests)


async def test_a_hand_signed_token_with_good_claims_is_accepted(app: RunningApp) -> None:
    # The control for every refusal below: the builders themselves make acceptable tokens.
    claims = good_claims(app.services.settings)
    assert (await assert_accepted(app.client, hs256(claims)))["sub"] == claims["sub"]
    header = {"alg": "HS256", "typ": "JWT", "kid": KID}
    await assert_accepted(app.client, hmac_sha256_token(header, claims, TEST_SIGNING_KEY.encode()))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_an_unsigned_token_is_refused(app: RunningApp, alg: str) -> None:
    await assert_refused(app.client, unsigned_token(good_claims(app.services.settings), alg))


async def test_a_flipped_payload_byte_is_refused(app: RunningApp) -> None:
    token = await issued_token(app)
    tampered = flip_jti_byte(token)
    original_jti = json.loads(b64url_decode(token.split(".")[1]))["jti"]
    assert json.loads(b64url_decode(tampered.split(".")[1]))["jti"] != original_jti
    await assert_accepted(app.client, token)
    await assert_refused(app.client, tampered)


async def test_a_flipped_signature_byte_is_refused(app: RunningApp) -> None:
    token = await issued_token(app)
    await assert_accepted(app.client, token)
    await assert_refused(app.client, flip_signature_byte(token))


async def test_a_token_with_an_unknown_kid_is_refused_even_if_signed_with_a_known_key(app: RunningApp) -> None:
    await assert_refused(app.client, hs256(good_claims(app.services.settings), kid="test-2"))


async def test_a_token_without_a_kid_is_refused(app: RunningApp) -> None:
    token = hs256(good_claims(app.services.settings), kid=None)
    assert "kid" not in jwt.get_unverified_header(token)
    await assert_refused(app.client, token)


async def test_a_token_signed_with_another_secret_is_refused(app: RunningApp) -> None:
    await assert_refused(app.client, hs256(good_claims(app.services.settings), key=secrets.token_urlsafe(48)))


OUT_OF_TIME = {
    "expired_beyond_the_leeway": {"iat": -960, "nbf": -960, "exp": -60},
    "not_yet_valid_beyond_the_leeway": {"nbf": 60},
    "issued_in_the_future_beyond_the_leeway": {"iat": 60},
}


@pytest.mark.parametrize("offsets", OUT_OF_TIME.values(), ids=OUT_OF_TIME.keys())
async def test_a_token_outside_its_time_window_is_refused(app: RunningApp, offsets: dict[str, int]) -> None:
    await assert_refused(app.client, hs256(good_claims(app.services.settings, **offsets)))


@pytest.mark.parametrize(("claim", "value"), [("aud", "some-other-clients"), ("iss", "some-other-issuer")])
async def test_a_token_for_another_audience_or_from_another_issuer_is_refused(
    app: RunningApp, claim: str, value: str
) -> None:
    claims = good_claims(app.services.settings)
    claims[claim] = value
    await assert_refused(app.client, hs256(claims))


@pytest.mark.parametrize("claim", ["sub", "exp", "nbf", "iat", "aud", "iss"])
async def test_a_token_missing_a_required_claim_is_refused(app: RunningApp, claim: str) -> None:
    claims = good_claims(app.services.settings)
    del claims[claim]
    await assert_refused(app.client, hs256(claims))


async def test_a_token_expired_within_the_leeway_is_accepted(app: RunningApp) -> None:
    # Documented behaviour: clock skew of token_leeway_seconds is forgiven on exp, nbf and iat.
    assert app.services.settings.token_leeway_seconds == 5
    await assert_accepted(app.client, hs256(good_claims(app.services.settings, iat=-900, nbf=-900, exp=-2)))


async def test_a_token_not_yet_valid_within_the_leeway_is_accepted(app: RunningApp) -> None:
    assert app.services.settings.token_leeway_seconds == 5
    await assert_accepted(app.client, hs256(good_claims(app.services.settings, iat=2, nbf=2)))


# --- TokenService itself


def test_token_service_honours_exactly_its_configured_leeway(settings_for: Any) -> None:
    tokens = TokenService(settings_for(token_leeway_seconds=5))
    settings = settings_for()
    assert tokens.verify(hs256(good_claims(settings, iat=-900, nbf=-900, exp=-2)))["exp"] < time.time()
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(hs256(good_claims(settings, iat=-900, nbf=-900, exp=-10)))


def test_token_service_refuses_an_unsigned_token_before_any_key_is_tried(settings_for: Any) -> None:
    tokens = TokenService(settings_for())
    with pytest.raises(InvalidToken, match="unexpected alg"):
        tokens.verify(unsigned_token(good_claims(settings_for())))


# --- key rotation


async def test_rotation_keeps_old_tokens_valid_while_their_kid_stays_configured(settings_for: Any) -> None:
    old_key, new_key = secrets.token_urlsafe(48), secrets.token_urlsafe(48)
    async with serve(settings_for(token_keys={"old": old_key}, token_active_kid="old")) as before:
        user = await create_user(before.client)
        old_token = await login(before.client, user["email"], user["password"])
    rotating = settings_for(token_keys={"old": old_key, "new": new_key}, token_active_kid="new")
    async with serve(rotating) as during:
        new_token = await login(during.client, user["email"], user["password"])
        assert jwt.get_unverified_header(new_token)["kid"] == "new"
        await assert_accepted(during.client, old_token)
        await assert_accepted(during.client, new_token)
    async with serve(settings_for(token_keys={"new": new_key}, token_active_kid="new")) as after:
        await assert_refused(after.client, old_token)
        await assert_accepted(after.client, new_token)


# --- EdDSA


@pytest.fixture
def ed25519_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
async def eddsa_app(settings_for: Any, ed25519_key: Ed25519PrivateKey) -> AsyncIterator[RunningApp]:
    settings = settings_for(
        token_algorithm="EdDSA", token_keys={ED_KID: private_pem(ed25519_key)}, token_active_kid=ED_KID
    )
    async with serve(settings) as running:
        yield running


async def test_eddsa_tokens_are_issued_at_login_and_verify(eddsa_app: RunningApp) -> None:
    token = await issued_token(eddsa_app)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "JWT", "kid": ED_KID}
    await assert_accepted(eddsa_app.client, token)


async def test_eddsa_service_refuses_hs256_signed_with_its_public_key(
    eddsa_app: RunningApp, ed25519_key: Ed25519PrivateKey
) -> None:
    # Key confusion: a verifier that trusted the header's alg would HMAC-check with the public key bytes.
    header = {"alg": "HS256", "typ": "JWT", "kid": ED_KID}
    forged = hmac_sha256_token(header, good_claims(eddsa_app.services.settings), public_pem(ed25519_key))
    await assert_refused(eddsa_app.client, forged)


async def test_eddsa_service_refuses_an_hs256_token(eddsa_app: RunningApp) -> None:
    token = hs256(good_claims(eddsa_app.services.settings), key=secrets.token_urlsafe(48), kid=ED_KID)
    await assert_refused(eddsa_app.client, token)


async def test_eddsa_service_refuses_an_unsigned_token(eddsa_app: RunningApp) -> None:
    await assert_refused(eddsa_app.client, unsigned_token(good_claims(eddsa_app.services.settings), kid=ED_KID))


async def test_eddsa_service_refuses_a_flipped_signature_byte(eddsa_app: RunningApp) -> None:
    token = await issued_token(eddsa_app)
    await assert_accepted(eddsa_app.client, token)
    await assert_refused(eddsa_app.client, flip_signature_byte(token))


async def test_eddsa_service_refuses_a_token_signed_by_another_ed25519_key(eddsa_app: RunningApp) -> None:
    stranger = Ed25519PrivateKey.generate()
    token = jwt.encode(good_claims(eddsa_app.services.settings), stranger, algorithm="EdDSA", headers={"kid": ED_KID})
    await assert_refused(eddsa_app.client, token)
