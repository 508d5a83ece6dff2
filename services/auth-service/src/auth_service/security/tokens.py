"""Access tokens: JWTs signed with HS256 or EdDSA, a `kid` per key for rotation, the algorithm pinned.

Claims checked on every verification: exp, nbf, iat (each with `token_leeway_seconds` of clock skew,
default 5 s), aud and iss (exact), sub (present). The header's alg must be the configured one: a
token signed any other way (`none` included) is refused before its signature is looked at. Then,
on every use, cached or not: a token of a subject revoked since it was issued (revocations.py) is
refused as an invalid one is.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

from auth_service.security.revocations import RevokedSubjects
from auth_service.settings import Settings

REQUIRED_CLAIMS = ["exp", "nbf", "iat", "aud", "iss", "sub"]


class InvalidToken(Exception):
    """Any reason a token is not accepted; the reason stays in the logs, never in the answer."""


def _verifying_key(algorithm: str, material: str) -> Any:
    if algorithm == "HS256":
        return material.encode()
    if "PRIVATE KEY" in material:
        private = load_pem_private_key(material.encode(), password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("EdDSA keys must be Ed25519")
        return private.public_key()
    public = load_pem_public_key(material.encode())
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError("EdDSA keys must be Ed25519")
    return public


def _signing_key(algorithm: str, material: str) -> Any:
    if algorithm == "HS256":
        return material.encode()
    return load_pem_private_key(material.encode(), password=None)


class VerifiedTokens:
    """Tokens already verified, with their encoded claims, until they expire.

    Verification (base64, JSON, an HMAC or Ed25519 check, six claim checks) costs tens of
    microseconds; a client sends the same token with every request until it expires, so the
    answer is kept. Only `exp` can change its verdict, and it is checked on every use; a revocation
    is checked after this cache, by TokenService, on every use too. Bounded: the oldest entries go
    first (dicts keep insertion order).
    """

    def __init__(self, max_entries: int, leeway: int) -> None:
        self.max_entries = max_entries
        self.leeway = leeway
        self._entries: dict[str, tuple[int, bytes, dict[str, Any]]] = {}

    def get(self, token: str, now: float) -> tuple[bytes, dict[str, Any]] | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now > entry[0] + self.leeway:
            del self._entries[token]
            return None
        return entry[1], entry[2]

    def put(self, token: str, claims: dict[str, Any]) -> bytes:
        encoded = orjson.dumps(claims)
        if self.max_entries:
            if len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[token] = (int(claims["exp"]), encoded, claims)
        return encoded


class TokenService:
    """Issues tokens with the active key; verifies with any configured key, chosen by `kid`."""

    def __init__(self, settings: Settings, revoked: RevokedSubjects | None = None) -> None:
        """`revoked`: the subjects whose tokens are refused, the service's own (services.py); else none."""
        self.algorithm = settings.token_algorithm
        self.issuer = settings.token_issuer
        self.audience = settings.token_audience
        self.ttl = settings.token_ttl_seconds
        self.leeway = settings.token_leeway_seconds
        self.active_kid = settings.token_active_kid
        keys = {kid: secret.get_secret_value() for kid, secret in settings.token_keys.items()}
        self._signing = _signing_key(self.algorithm, keys[self.active_kid])
        self._verifying = {kid: _verifying_key(self.algorithm, material) for kid, material in keys.items()}
        self.verified = VerifiedTokens(settings.token_cache_max_entries, self.leeway)
        self.revoked = revoked if revoked is not None else RevokedSubjects(self.ttl + self.leeway)

    def verify_encoded(self, token: str) -> tuple[bytes, dict[str, Any]]:
        """The claims, as response bytes and as a dict; from the cache of verified tokens when there.

        The one token check of every route, the fast lane's included: a revocation applies to
        cached verdicts too.
        """
        verified = self.verified.get(token, time.time())
        if verified is None:
            claims = self.verify(token)
            verified = self.verified.put(token, claims), claims
        if self.revoked.refuses(verified[1]):
            raise InvalidToken("the subject's tokens were revoked")
        return verified

    def issue(self, subject: str) -> str:
        now = int(time.time())
        claims = {
            "sub": subject,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._signing, algorithm=self.algorithm, headers={"kid": self.active_kid})

    def verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            key = self._verifying.get(kid) if isinstance(kid, str) else None
            if key is None or header.get("alg") != self.algorithm:
                raise InvalidToken("unknown kid or unexpected alg")
            return jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
