"""The forged, tampered and out-of-bounds tokens of the `token` scenario, built by hand.

The builders are the security tests' own (tests/security/test_tokens.py); this module only says which
tokens an attacker would try against a service that signs with HS256, and against one with EdDSA.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from auth_service.settings import Settings
from tests.security.test_tokens import (
    b64url,
    flip_jti_byte,
    flip_signature_byte,
    good_claims,
    hmac_sha256_token,
    unsigned_token,
)

DEFAULTS = SimpleNamespace(
    **{name: Settings.model_fields[name].default for name in ("token_issuer", "token_audience", "token_ttl_seconds")}
)
LEEWAY_SECONDS = int(Settings.model_fields["token_leeway_seconds"].default)
Forgery = tuple[str, str]  # (what it is, the token)


def claims_for(subject: str, **offsets: int) -> dict[str, Any]:
    claims = good_claims(DEFAULTS, **offsets)
    claims["sub"] = subject
    return claims


def with_header(header: dict[str, Any], claims: dict[str, Any], key: Any, algorithm: str) -> str:
    """Signed by PyJWT with these extra header fields (a jku, a jwk, an x5u...)."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=header)


def public_jwk(key: Ed25519PrivateKey, kid: str) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid, "alg": "EdDSA", "use": "sig"}


def tampered(token: str) -> Iterator[Forgery]:
    """A real token with one bit changed: in the payload, the signature, the header."""
    yield "a flipped bit in the payload", flip_jti_byte(token)
    yield "a flipped bit in the signature", flip_signature_byte(token)
    header, payload, signature = token.split(".")
    yield (
        "the header's alg changed to none",
        f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}.{signature}",
    )
    yield "the signature cut off", f"{header}.{payload}."
    yield "an extra segment", f"{token}.{signature}"


def against_hs256(
    secret: str, kid: str, subject: str, attacker: Ed25519PrivateKey, fetch_url: str
) -> Iterator[Forgery]:
    """What an attacker tries against a service signing with this HS256 secret under this kid."""
    good = claims_for(subject)
    for alg in ("none", "None", "NONE"):
        yield f"alg={alg}", unsigned_token(good, alg, kid)
    yield "HS256 with another secret", jwt.encode(good, "not-the-secret-" + uuid.uuid4().hex, "HS256", {"kid": kid})
    yield "HS512 with the real secret (alg not pinned?)", jwt.encode(good, secret, "HS512", {"kid": kid})
    yield "EdDSA by the attacker's key under the service's kid", jwt.encode(good, attacker, "EdDSA", {"kid": kid})
    yield "an unknown kid, signed with the real secret", jwt.encode(good, secret, "HS256", {"kid": f"{kid}-x"})
    yield "no kid, signed with the real secret", jwt.encode(good, secret, "HS256")
    for odd in (123, [kid], None, "../../../../dev/null", "' OR '1'='1"):
        yield f"kid={odd!r}", hmac_sha256_token({"alg": "HS256", "typ": "JWT", "kid": odd}, good, secret.encode())
    yield from header_keys(good, attacker, kid, fetch_url)
    yield from out_of_bounds(secret, kid, subject)


def header_keys(good: dict[str, Any], attacker: Ed25519PrivateKey, kid: str, fetch_url: str) -> Iterator[Forgery]:
    """Tokens that name their own verification key: a jku, an embedded jwk, an x5u (all the attacker's)."""
    jwk = public_jwk(attacker, kid)
    yield (
        "jku to the attacker's JWKS",
        with_header({"kid": kid, "jku": f"{fetch_url}/jwks.json"}, good, attacker, "EdDSA"),
    )
    yield "an embedded jwk", with_header({"kid": kid, "jwk": jwk}, good, attacker, "EdDSA")
    yield (
        "x5u to the attacker's certificate",
        with_header({"kid": kid, "x5u": f"{fetch_url}/cert.pem"}, good, attacker, "EdDSA"),
    )
    attacker_secret = "attacker-" + uuid.uuid4().hex
    header = {"kid": kid, "jku": f"{fetch_url}/jwks-hs.json"}
    yield "jku with an HS256 key of the attacker's", with_header(header, good, attacker_secret, "HS256")


def out_of_bounds(secret: str, kid: str, subject: str) -> Iterator[Forgery]:
    """Signed with the real secret, but not for this service or not now."""
    beyond = LEEWAY_SECONDS + 60

    def signed(claims: dict[str, Any]) -> str:
        return jwt.encode(claims, secret, "HS256", {"kid": kid})

    yield "another audience", signed(claims_for(subject) | {"aud": "some-other-clients"})
    yield "another issuer", signed(claims_for(subject) | {"iss": "some-other-issuer"})
    yield "expired beyond the leeway", signed(claims_for(subject, iat=-900 - beyond, nbf=-900 - beyond, exp=-beyond))
    yield "not valid yet beyond the leeway", signed(claims_for(subject, nbf=beyond))
    yield "issued in the future beyond the leeway", signed(claims_for(subject, iat=beyond))
    for claim in ("exp", "sub", "aud", "iss", "nbf", "iat"):
        claims = claims_for(subject)
        del claims[claim]
        yield f"no {claim}", signed(claims)


def against_eddsa(public_pem: bytes, raw_public: bytes, kid: str, subject: str) -> Iterator[Forgery]:
    """Algorithm confusion against an EdDSA service: HS256 keyed with what is public about its key."""
    good = claims_for(subject)
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    yield "HS256 keyed with the service's public key (PEM)", hmac_sha256_token(header, good, public_pem)
    yield "HS256 keyed with the raw public key", hmac_sha256_token(header, good, raw_public)
    yield "HS256 keyed with the public key's JWK x", hmac_sha256_token(header, good, b64url(raw_public).encode())
    yield "alg=none", unsigned_token(good, "none", kid)
    stranger = Ed25519PrivateKey.generate()
    yield "EdDSA by another Ed25519 key", jwt.encode(good, stranger, "EdDSA", {"kid": kid})
