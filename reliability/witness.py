"""What the scenarios used and saw: the secrets they sent, and the error bodies they got back.

The `secret` scenario greps everything a run produced (logs, traces, error bodies) for every secret
recorded here, so each scenario records the passwords, tokens, hashes and keys it sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

# Shorter values would match by chance (and no secret of the scenarios is this short).
MIN_SECRET_LENGTH = 8
# Error bodies kept for the grep: enough of each kind, bounded in memory over a long run.
MAX_BODIES = 20_000
MAX_BODY_BYTES = 4096
KEEPALIVE_EXPIRY = 2.0


@dataclass
class Witness:
    secrets: dict[str, set[str]] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)
    bodies_seen: int = 0

    def secret(self, kind: str, value: str) -> None:
        """Remember a secret the scenarios sent (kind: password, token, hash, key)."""
        if len(value) >= MIN_SECRET_LENGTH:
            self.secrets.setdefault(kind, set()).add(value)

    def body(self, content: bytes) -> None:
        """Remember an error body the service answered."""
        self.bodies_seen += 1
        if len(self.bodies) < MAX_BODIES:
            self.bodies.append(content[:MAX_BODY_BYTES])

    async def on_response(self, response: httpx.Response) -> None:
        """An httpx response hook: keeps the body of every answer that is not a success."""
        if response.status_code >= 300:
            self.body(await response.aread())

    def client(self, base_url: str, **options: object) -> httpx.AsyncClient:
        """An HTTP client whose error bodies this witness keeps.

        It drops idle connections well before the service's keep-alive timeout (5 s), as a client must:
        at the same bound, a request sent as the service closes the connection fails for nothing.
        """
        options.setdefault("timeout", 10.0)
        options.setdefault(
            "limits", httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=KEEPALIVE_EXPIRY)
        )
        return httpx.AsyncClient(base_url=base_url, event_hooks={"response": [self.on_response]}, **options)  # type: ignore[arg-type]

    def count(self) -> int:
        return sum(len(values) for values in self.secrets.values())


def needles(kind: str, value: str) -> list[str]:
    """What to look for: the value, and for a token its signature alone (the part that makes it usable)."""
    found = [value]
    if kind == "token" and value.count(".") == 2:
        found.append(value.rsplit(".", 1)[1])
    if kind == "hash" and value.startswith("$argon2"):
        found.append(value.rsplit("$", 1)[1])  # the digest, however the rest is printed
    return [needle for needle in found if len(needle) >= MIN_SECRET_LENGTH]


def leaks(witness: Witness, haystacks: dict[str, bytes]) -> list[tuple[str, str]]:
    """(kind of secret, where) for every secret found in any haystack (name -> content)."""
    found = []
    for kind, values in witness.secrets.items():
        for value in values:
            for needle in needles(kind, value):
                encoded = needle.encode()
                found += [(kind, where) for where, content in haystacks.items() if encoded in content]
    return sorted(set(found))
