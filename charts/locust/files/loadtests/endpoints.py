"""The requests the scenarios send: how Locust's statistics name them and which latency budget each has.

Standard library only: the gate's arithmetic and the tests read it without importing locust.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# The budget tiers (budgets.py): answered from memory, from PostgreSQL, or after an argon2id hash.
HOT, DATABASE, HASHING = "hot", "database", "hashing"
TIERS = (HOT, DATABASE, HASHING)
# The request type of a request the service shed (503 or 429 with Retry-After): a row of its own in
# Locust's table and CSV, a success to Locust, and the gate's shed ratio.
SHED = "SHED"
SHED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class Endpoint:
    method: str
    name: str  # the stats name: the route with its ids as placeholders, so that one row holds every id
    tier: str

    def shed_name(self, status: int) -> str:
        """The name of the SHED row for this endpoint's refusals with that status."""
        return f"{self.method} {self.name} ({status})"


# Keyed by task: `me` and `user_read` are the two halves of the mix's cached reads (user_hit).
ENDPOINTS = {
    "verify": Endpoint("GET", "/v1/auth/verify", HOT),
    "me": Endpoint("GET", "/v1/me", HOT),
    "user_read": Endpoint("GET", "/v1/users/{id}", HOT),
    # A random UUID: a database read each (the cache keeps absences for only 2 s), answered 404.
    "not_found": Endpoint("GET", "/v1/users/{unknown id}", DATABASE),
    "update": Endpoint("PATCH", "/v1/users/{id}", DATABASE),
    "create": Endpoint("POST", "/v1/users", HASHING),
    "login": Endpoint("POST", "/v1/auth/token", HASHING),
}
BY_ROW = {(endpoint.method, endpoint.name): endpoint for endpoint in ENDPOINTS.values()}


def tier_of(method: str, name: str) -> str:
    """The budget tier of a row of Locust's statistics; a request the scenarios do not name is held to the hot one."""
    endpoint = BY_ROW.get((method, name))
    return endpoint.tier if endpoint is not None else HOT


# Every request of a run says it is load-test traffic (the service marks its spans: observability/middleware.py).
LOAD_TEST_HEADERS = {"X-Load-Test": "1"}
# The service sends whole seconds; an HTTP date or nonsense gets the default. A client waits at most the cap.
DEFAULT_RETRY_AFTER_SECONDS = 1.0
MAX_RETRY_AFTER_SECONDS = 30.0


def retry_after(value: str | None) -> float:
    """Seconds to wait before the next request, from a Retry-After header (absent or unreadable: 1 s)."""
    try:
        seconds = float(value) if value is not None else DEFAULT_RETRY_AFTER_SECONDS
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
    if math.isnan(seconds):
        return DEFAULT_RETRY_AFTER_SECONDS
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
