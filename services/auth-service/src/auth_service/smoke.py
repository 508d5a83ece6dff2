"""The smoke test a Helm test pod runs against a deployed service: readiness, then a token round trip.

Standard library only: it runs from the service's own image, which has neither curl nor httpx.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A domain email-validator accepts (special-use names such as .test are refused) that routes no mail.
SMOKE_EMAIL_DOMAIN = "example.com"
BODY_EXCERPT_CHARS = 200
MAX_BODY_BYTES = 1024 * 1024  # the answers are a few hundred bytes; more is read no further


class SmokeFailed(Exception):
    """A step did not get the answer it expected."""

    def __init__(self, step: str, problem: str) -> None:
        super().__init__(f"smoke test failed at {step}: {problem}")
        self.step = step


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def excerpt(self) -> str:
        return self.body[:BODY_EXCERPT_CHARS].decode("utf-8", "replace")


class SmokeClient:
    """HTTP calls to the service, each bounded by `timeout` seconds; every step is reported by `say`."""

    def __init__(self, base_url: str, timeout: float, say: Callable[[str], None]) -> None:
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise ValueError(f"{base_url!r}: give an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.say = say

    def step(self, name: str, method: str, path: str, expect: int, note: str = "", **request: Any) -> Answer:
        """Send one request; SmokeFailed unless it answers `expect`."""
        answer = self._send(name, method, path, **request)
        if answer.status != expect:
            raise SmokeFailed(name, f"HTTP {answer.status}, expected {expect}: {answer.excerpt()}")
        self.say(f"{name}: HTTP {answer.status}{note}")
        return answer

    def _send(self, name: str, method: str, path: str, body: Any = None, token: str | None = None) -> Answer:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        # S310 warns of file:// and custom schemes: __init__ admits http(s) only.
        request = urllib.request.Request(self.base_url + path, data, headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return Answer(response.status, response.read(MAX_BODY_BYTES))
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, error.read(MAX_BODY_BYTES))
        except OSError as error:  # URLError, refused, reset, timed out
            reason = getattr(error, "reason", error)
            raise SmokeFailed(name, f"no answer from {self.base_url}: {reason}") from error


def run_smoke(base_url: str, timeout: float, say: Callable[[str], None]) -> None:
    """Readiness, then create a user, log in, verify the token and delete the user; SmokeFailed on the first fault."""
    client = SmokeClient(base_url, timeout, say)
    client.step("readiness", "GET", "/readyz", 200)
    credentials = {"email": f"smoke-{secrets.token_hex(8)}@{SMOKE_EMAIL_DOMAIN}", "password": secrets.token_urlsafe(24)}
    new_user = {**credentials, "name": "Smoke Test"}
    created = client.step("create user", "POST", "/v1/users", 201, f" ({credentials['email']})", body=new_user)
    user_id = _field("create user", created, "id")
    token = _field(
        "issue token", client.step("issue token", "POST", "/v1/auth/token", 200, body=credentials), "access_token"
    )
    try:
        _verify(client, token, user_id)
    except SmokeFailed:
        with contextlib.suppress(SmokeFailed):  # leave nothing behind; report the first fault
            _delete(client, token, user_id, credentials["password"])
        raise
    _delete(client, token, user_id, credentials["password"])


def _verify(client: SmokeClient, token: str, user_id: str) -> None:
    subject = _field("verify token", client.step("verify token", "GET", "/v1/auth/verify", 200, token=token), "sub")
    if subject != user_id:
        raise SmokeFailed("verify token", f"the claims' subject is {subject!r}, not the user {user_id}")


def _delete(client: SmokeClient, token: str, user_id: str, password: str) -> None:
    # A delete re-authenticates: the token and the current password (api/reauthentication.py).
    body = {"current_password": password}
    client.step("delete user", "DELETE", f"/v1/users/{user_id}", 204, token=token, body=body)


def _field(step: str, answer: Answer, key: str) -> str:
    """A string field of the answer's JSON object; SmokeFailed when the body is not such an object."""
    try:
        value = json.loads(answer.body)[key]
    except (ValueError, TypeError, KeyError):
        raise SmokeFailed(step, f"no {key!r} in the answer: {answer.excerpt()}") from None
    return str(value)
