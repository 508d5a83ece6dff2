"""The calls the seeding makes before any user starts: readiness, the batch import, logins.

Over urllib (the standard library; in a Locust process gevent has made its sockets cooperative),
each retried within a bound while the service is starting or shedding load.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from loadtests.endpoints import LOAD_TEST_HEADERS, retry_after

# A service starting up, or refusing for now: worth asking again after a while.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_ATTEMPTS = 8
CONNECT_RETRY_SECONDS = 0.5
READY_POLL_SECONDS = 0.5


class ServiceError(RuntimeError):
    """The service refused the seeding, or did not answer within the bounds; the message says which."""


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ServiceClient:
    """One service, e.g. http://127.0.0.1:8000, with the batch token when it needs one."""

    def __init__(self, host: str, batch_token: str | None = None, timeout: float = 120.0) -> None:
        if not host.startswith(("http://", "https://")):
            raise ServiceError(f"the host must be an http:// or https:// URL, not {host!r}")
        self.host = host.rstrip("/")
        self.batch_token = batch_token or None
        # Long enough for a batch whose passwords the service hashes (~17 ms each).
        self.timeout = timeout

    def is_ready(self) -> bool:
        """GET /readyz answers 200 now."""
        try:
            return self._send("GET", "/readyz", None, {}, timeout=2.0).status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.host}/readyz did not answer 200 within {timeout:.0f} s")
            time.sleep(READY_POLL_SECONDS)

    def create_users(self, items: list[dict[str, str]]) -> list[dict[str, Any]]:
        """POST /v1/users:batch; the users created, in the order given."""
        headers = {"Authorization": f"Bearer {self.batch_token}"} if self.batch_token else {}
        users: list[dict[str, Any]] = self._call("POST", "/v1/users:batch", {"users": items}, headers, 201)["users"]
        return users

    def log_in(self, email: str, password: str) -> dict[str, Any]:
        """POST /v1/auth/token: the token's body (access_token, expires_in)."""
        body: dict[str, Any] = self._call("POST", "/v1/auth/token", {"email": email, "password": password}, {}, 200)
        return body

    def _call(self, method: str, path: str, payload: Any, headers: dict[str, str], expected: int) -> Any:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                answer = self._send(method, path, payload, headers, self.timeout)
            except OSError as error:
                if attempt == MAX_ATTEMPTS:
                    raise ServiceError(f"{method} {self.host}{path}: {error}") from error
                time.sleep(CONNECT_RETRY_SECONDS)
                continue
            if answer.status == expected:
                return answer.json()
            if answer.status not in RETRY_STATUSES or attempt == MAX_ATTEMPTS:
                raise ServiceError(f"{method} {self.host}{path}: {answer.status} {answer.body[:300]!r}{_hint(answer)}")
            time.sleep(retry_after(answer.retry_after))
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, payload: Any, headers: dict[str, str], timeout: float) -> Answer:
        data = json.dumps(payload).encode() if payload is not None else None
        all_headers = LOAD_TEST_HEADERS | headers | ({"Content-Type": "application/json"} if data else {})
        # The scheme is http(s), checked when the client was made.
        request = urllib.request.Request(self.host + path, data=data, headers=all_headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return Answer(response.status, response.headers.get("Retry-After"), response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Answer(error.code, error.headers.get("Retry-After"), error.read())


def _hint(answer: Answer) -> str:
    if answer.status in (401, 403) and b"batch" in answer.body:
        return " (set LOADTEST_BATCH_TOKEN to the service's AUTH_BATCH_TOKEN)"
    return ""
