"""The clients of the auth service, one Locust user class per kind, with the mix's weights.

Clients behave as real ones do: a signed-in client keeps its token for the token's lifetime and logs
in again only when it is about to expire or the service answers 401. A request answered 503 or 429
is shed, not failed: it is recorded as a SHED row of its own (endpoints.py), and the client honours
its Retry-After before it sends again.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from typing import Any

import gevent
from locust import FastHttpUser, constant_throughput, task
from locust.contrib.fasthttp import FastResponse

from loadtests import pacing
from loadtests.accounts import Accounts, Session
from loadtests.endpoints import ENDPOINTS, LOAD_TEST_HEADERS, SHED, SHED_STATUSES, Endpoint, retry_after
from loadtests.mix import LOADTEST_MIX_ENV, mix_from_env
from loadtests.sharing import WAIT_MARGIN_SECONDS, shared_accounts

# Read when the locustfile loads, on the master (which weighs the classes) and on every worker (which
# weighs the tasks): give the same LOADTEST_MIX to all of them.
MIX = mix_from_env(LOADTEST_MIX_ENV)
# A token is renewed at least this long before it expires, for the clocks of the load generators and
# the service to differ by as much (the service allows 5 s of leeway), and up to RENEW_SPREAD_SECONDS
# sooner, at random: the seeded tokens were all issued at once, and their users would otherwise all
# log in again in the same second, a burst of argon2 hashes no real population of clients makes.
RENEW_BEFORE_SECONDS = 30.0
RENEW_SPREAD_SECONDS = 120.0
# The service closes a connection idle for 5 s (AUTH_HTTP_KEEP_ALIVE_TIMEOUT_SECONDS). A client that
# sends less often than that would meet its pooled connection just as the service closes it, a
# failure no real client makes (it would not have kept the connection): it asks for a new
# connection each time instead. Below the 5 s, for the scheduling of a busy load generator. The long
# Retry-Afters (429s of signups and failed logins) come to the Visitor, which is such a client; the
# 503s ask for 1 s (AUTH_RETRY_AFTER_SECONDS).
FRESH_CONNECTION_SECONDS = 4.0


class ServiceUser(FastHttpUser):
    """A client of the service, paced by constant throughput at its kind's share of --user-rps."""

    abstract = True
    # Each kind sets its pacing, and its Locust weight from the mix: its share of the users (pacing.py).
    client_kind: pacing.Client
    default_headers = LOAD_TEST_HEADERS
    connection_timeout = 5.0
    network_timeout = 10.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        box = shared_accounts(self.environment)
        self.accounts: Accounts = box.wait(options.ready_timeout + WAIT_MARGIN_SECONDS)
        self.popular_ids = box.popular_ids(options.zipf_exponent)
        rate = options.user_rps * self.client_kind.pace
        self._pacing = constant_throughput(rate)
        self._connection = {"Connection": "close"} if 1 / rate >= FRESH_CONNECTION_SECONDS else {}

    def wait_time(self) -> float:
        return float(self._pacing(self))

    def send(self, endpoint: Endpoint, path: str, expected: int, **kwargs: Any) -> FastResponse:
        """One request, named after its endpoint: the expected status succeeds, 503 and 429 are shed."""
        pause = 0.0
        kwargs["headers"] = kwargs.get("headers", {}) | self._connection
        with self.client.request(endpoint.method, path, name=endpoint.name, catch_response=True, **kwargs) as answer:
            status = answer.status_code
            if status == expected:
                answer.success()
            elif status in SHED_STATUSES:
                answer.request_meta["request_type"] = SHED
                answer.request_meta["name"] = endpoint.shed_name(status)
                answer.success()
                pause = retry_after(answer.headers.get("Retry-After") if answer.headers else None)
            else:
                answer.failure(_describe(answer))
        if pause:
            gevent.sleep(pause)
        return answer


def _describe(answer: FastResponse) -> str:
    """A failure's key in Locust's failures table: the status and the service's error code, no ids."""
    if not answer.status_code:
        # No HTTP answer at all (refused, reset, timed out): Locust's response then carries the error.
        return f"no answer: {getattr(answer, 'error', None)!r}"
    try:
        code = json.loads(answer.content or b"{}").get("error", {}).get("code", "")
    except (ValueError, AttributeError):
        code = ""
    return f"{answer.status_code} {code}".strip()


class SignedInUser(ServiceUser):
    """A client that holds a session: a seeded one at first, then its own logins."""

    abstract = True

    def on_start(self) -> None:
        super().on_start()
        self.keep(random.choice(self.accounts.sessions))  # noqa: S311 - a test account

    def keep(self, session: Session) -> None:
        self.session = session
        spread = random.uniform(0, RENEW_SPREAD_SECONDS)  # noqa: S311 - a test's timing
        self.renew_at = session.expires_at - RENEW_BEFORE_SECONDS - spread

    def signed_in(self) -> Session | None:
        """The session, renewed first if its token is about to expire; None if the renewal was refused."""
        if time.time() > self.renew_at:
            self.log_in_again()
        return self.session if self.session.expires_at > time.time() else None

    def send_signed(self, endpoint: Endpoint, path: str, expected: int, **kwargs: Any) -> None:
        """A request with the session's token (`{user_id}` in the path is its user's id).

        A 401 is a failure, the token not having expired, and the client logs in again.
        """
        session = self.signed_in()
        if session is None:
            return
        headers = {"Authorization": f"Bearer {session.token}"}
        answer = self.send(endpoint, path.format(user_id=session.user_id), expected, headers=headers, **kwargs)
        if answer.status_code == 401:
            self.log_in_again()

    def log_in_again(self) -> None:
        credentials = {"email": self.session.email, "password": self.accounts.password}
        answer = self.send(ENDPOINTS["login"], "/v1/auth/token", 200, json=credentials)
        if answer.status_code == 200:
            body = json.loads(answer.content)
            user_id, email = self.session.user_id, self.session.email
            self.keep(Session(user_id, email, body["access_token"], time.time() + body["expires_in"]))


class TokenVerifier(SignedInUser):
    """A service that checks the bearer token of each call it gets: most of the traffic."""

    client_kind = pacing.BY_NAME["TokenVerifier"]
    weight = pacing.user_weight(client_kind, MIX)

    @task
    def verify_token(self) -> None:
        self.send_signed(ENDPOINTS["verify"], "/v1/auth/verify", 200)


READS = pacing.task_weights(
    {"me": MIX["user_hit"] / 2, "user_read": MIX["user_hit"] / 2, "not_found": MIX["not_found"]}
)


class ProfileReader(SignedInUser):
    """An app showing profiles: its own, popular ones (Zipf over the seeded users), and ids no user has."""

    client_kind = pacing.BY_NAME["ProfileReader"]
    weight = pacing.user_weight(client_kind, MIX)

    @task(READS["me"])
    def read_own_profile(self) -> None:
        self.send_signed(ENDPOINTS["me"], "/v1/me", 200)

    @task(READS["user_read"])
    def read_user(self) -> None:
        self.send(ENDPOINTS["user_read"], f"/v1/users/{self.popular_ids.pick()}", 200)

    @task(READS["not_found"])
    def read_unknown_user(self) -> None:
        # 404 is this task's success: an id no user has, a database read each.
        self.send(ENDPOINTS["not_found"], f"/v1/users/{uuid.uuid4()}", 404)


class ProfileEditor(SignedInUser):
    """A user renaming themselves: a name-only PATCH needs the token, not the current password."""

    client_kind = pacing.BY_NAME["ProfileEditor"]
    weight = pacing.user_weight(client_kind, MIX)

    @task
    def rename(self) -> None:
        name = {"name": f"Load Test {random.randrange(10**6)}"}  # noqa: S311 - a test name
        self.send_signed(ENDPOINTS["update"], "/v1/users/{user_id}", 200, json=name)


VISITS = pacing.task_weights({"sign_up": MIX["create"], "log_in": MIX["login"]})


class Visitor(ServiceUser):
    """Someone at the forms: signs up (a new account) or logs in to a seeded one. An argon2id hash each."""

    client_kind = pacing.BY_NAME["Visitor"]
    weight = pacing.user_weight(client_kind, MIX)

    @task(VISITS["sign_up"])
    def sign_up(self) -> None:
        email = f"loadtest-{self.accounts.run}-new-{uuid.uuid4().hex[:16]}@example.com"
        account = {"email": email, "name": "Load Test Visitor", "password": self.accounts.password}
        self.send(ENDPOINTS["create"], "/v1/users", 201, json=account)

    @task(VISITS["log_in"])
    def log_in(self) -> None:
        _, email = random.choice(self.accounts.users)  # noqa: S311 - a test account
        self.send(ENDPOINTS["login"], "/v1/auth/token", 200, json={"email": email, "password": self.accounts.password})
