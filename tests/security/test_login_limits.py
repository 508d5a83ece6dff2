"""Failed-login limits over HTTP, on the real PostgreSQL (and Redis): 429 past them, the real user still in."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from auth_service.security.login_limits import account_key
from auth_service.settings import OWASP_MIN_MEMORY_KIB, OWASP_MIN_TIME_COST
from bench.ports import free_port
from tests.security.clients import (
    OTHER_PEER,
    WRONG,
    client_from,
    counted_verifications,
    forwarded,
    log_in,
    random_address,
    statuses,
    stored_counters,
)
from tests.utils.app import RunningApp, assert_error, create_user, serve, unique_email
from tests.utils.sql import sql_connection

WINDOW = 3600


@pytest.fixture
def quick(settings_for: Any) -> Any:
    """Test settings whose failures are quick: imports only at the service's own parameters (a low floor)."""
    own = {"argon2_import_max_memory_kib": OWASP_MIN_MEMORY_KIB, "argon2_import_max_time_cost": OWASP_MIN_TIME_COST}
    return lambda **overrides: settings_for(**own, **overrides)


def assert_limited(response: httpx.Response, window: int = WINDOW) -> int:
    """A 429 in the error shape with a Retry-After within the window; its seconds."""
    assert_error(response, 429, "too_many_failed_logins")
    retry_after = int(response.headers["retry-after"])
    assert 0 < retry_after <= window, retry_after
    return retry_after


async def test_guesses_on_one_account_from_one_client_get_429_without_hashing(
    quick: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(quick(login_failures_per_account_client=5)) as app:
        user = await create_user(app.client)
        with counted_verifications(app.services.hasher, monkeypatch) as verifications:
            assert await statuses(app.client, user["email"], WRONG, 5) == [401] * 5
            assert verifications == [5]
            for _ in range(5):
                assert_limited(await log_in(app.client, user["email"], WRONG))
            # Even the right password: the guesser's client is refused before anything is checked.
            assert_limited(await log_in(app.client, user["email"], user["password"]))
            assert verifications == [5], "a refused guess cost an argon2 verification"
            async with client_from(app, OTHER_PEER) as real_user:
                assert (await log_in(real_user, user["email"], user["password"])).status_code == 200


async def test_the_429_tells_an_unknown_email_from_a_known_one_by_nothing(quick: Any) -> None:
    async with serve(quick(login_failures_per_account_client=2)) as app:
        known = (await create_user(app.client))["email"]
        unknown = unique_email("nobody")
        limited = []
        for email in (known, unknown):
            assert await statuses(app.client, email, WRONG, 2) == [401, 401]
            limited.append(await log_in(app.client, email, WRONG))
    for response in limited:
        assert_limited(response)
    assert limited[0].content == limited[1].content
    assert set(limited[0].headers) == set(limited[1].headers)


async def test_concurrent_guesses_overrun_the_limit_by_the_client_share_at_most(
    quick: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checked before the hash, counted after: only what one client may have in flight gets past.
    settings = quick(login_failures_per_account_client=3, hash_workers=2, hash_queue_max=6, hash_client_share=0.25)
    async with serve(settings) as app:
        assert app.services.hasher.client_share == 2
        user = await create_user(app.client)
        with counted_verifications(app.services.hasher, monkeypatch) as verifications:
            for _ in range(4):  # waves of concurrent guesses, until the limit stops them all
                wave = await asyncio.gather(*(log_in(app.client, user["email"], WRONG) for _ in range(10)))
        statuses_seen = [response.status_code for response in wave]
    assert statuses_seen == [429] * 10
    assert 3 <= verifications[0] <= 3 + 2, verifications


async def test_a_success_resets_its_client_counter(quick: Any) -> None:
    async with serve(quick(login_failures_per_account_client=3)) as app:
        user = await create_user(app.client)
        assert await statuses(app.client, user["email"], WRONG, 2) == [401, 401]
        assert (await log_in(app.client, user["email"], user["password"])).status_code == 200
        assert await statuses(app.client, user["email"], WRONG, 3) == [401] * 3
        assert_limited(await log_in(app.client, user["email"], WRONG))


async def test_the_limit_holds_across_two_instances_on_one_database(quick: Any, database_url: str) -> None:
    settings = quick(login_failures_per_account_client=4)
    async with serve(settings) as a, serve(settings) as b:
        user = await create_user(a.client)
        for app in (a, b, a, b):
            assert (await log_in(app.client, user["email"], WRONG)).status_code == 401
        for app in (a, b):
            assert_limited(await log_in(app.client, user["email"], WRONG))
    pair = f"login:pair:{account_key(user['email'])}:127.0.0.1"
    assert {row["key"]: row["count"] for row in await stored_counters(database_url, user["email"])}[pair] == 4


@pytest.mark.redis
async def test_the_limit_holds_across_two_instances_on_one_redis(quick: Any, database_url: str, redis_url: str) -> None:
    settings = quick(login_failures_per_account_client=4, redis_url=redis_url)
    async with serve(settings) as a, serve(settings) as b:
        user = await create_user(a.client)
        for app in (b, a, b, a):
            assert (await log_in(app.client, user["email"], WRONG)).status_code == 401
        for app in (a, b):
            assert_limited(await log_in(app.client, user["email"], WRONG))
        redis = a.services.limits.store.redis.client  # type: ignore[attr-defined]
        pair = f"login:pair:{account_key(user['email'])}:127.0.0.1"
        assert int(await redis.get(f"auth:limits:{pair}")) == 4
        assert 0 < await redis.ttl(f"auth:limits:{pair}") <= WINDOW
        assert (await counter_metrics(a))["login_counters_redis_read"] == 1
    # Every count in PostgreSQL too, so that a Redis fault loses none (security/counters.py).
    counted = {row["key"]: row["count"] for row in await stored_counters(database_url, user["email"])}
    assert counted[pair] == 4, counted


async def test_with_redis_down_the_limits_hold_in_postgresql(quick: Any, database_url: str) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    async with serve(quick(login_failures_per_account_client=2, redis_url=nowhere)) as app:
        user = await create_user(app.client)
        assert await statuses(app.client, user["email"], WRONG, 2) == [401, 401]
        assert_limited(await log_in(app.client, user["email"], WRONG))
        async with client_from(app, OTHER_PEER) as real_user:
            assert (await log_in(real_user, user["email"], user["password"])).status_code == 200
        exported = await counter_metrics(app)
    assert await stored_counters(database_url, user["email"]), "nothing counted in PostgreSQL"
    assert exported["login_counters_redis_read"] == 0, "PostgreSQL answers the reads after a fault: an alert's signal"
    assert exported["login_counters_redis_faults_total"] >= 1


async def counter_metrics(app: RunningApp) -> dict[str, float]:
    """The login counters' metrics from the admin port, by name."""
    async with httpx.AsyncClient() as admin:
        page = (await admin.get(f"http://127.0.0.1:{app.services.telemetry.admin_port}/metrics")).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name.startswith("login_counters_redis_")
    }


async def test_counters_that_postgresql_cannot_read_in_time_fail_closed_fast(quick: Any, database_url: str) -> None:
    # The counters' table locked as a stuck migration would: the read waits out the statement timeout.
    async with serve(quick(db_statement_timeout_ms=300)) as app:
        user = await create_user(app.client)
        async with sql_connection(database_url) as conn, conn.transaction():
            await conn.execute("LOCK TABLE attempt_counters IN ACCESS EXCLUSIVE MODE")
            refused = await asyncio.wait_for(log_in(app.client, user["email"], user["password"]), 10)
        assert_error(refused, 503, "database_timeout")
        assert refused.headers["retry-after"]
        assert (await log_in(app.client, user["email"], user["password"])).status_code == 200


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(quick: Any) -> None:
    async with serve(quick(login_failures_per_account_client=3)) as app:
        user = await create_user(app.client)
        guesses = [await log_in(app.client, user["email"], WRONG, forwarded(random_address())) for _ in range(4)]
    assert [response.status_code for response in guesses] == [401, 401, 401, 429]


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(quick: Any) -> None:
    settings = quick(login_failures_per_account_client=3, trusted_proxies=["127.0.0.0/30"])
    async with serve(settings) as app:
        user = await create_user(app.client)
        guesser, other = random_address(), random_address()
        # What the client wrote itself (the left part) is not believed: the proxy appended `guesser`.
        spoofed = {"X-Forwarded-For": f"{random_address()}, {guesser}"}
        assert await statuses(app.client, user["email"], WRONG, 3, spoofed) == [401] * 3
        assert_limited(await log_in(app.client, user["email"], WRONG, forwarded(guesser)))
        # Through two trusted proxies (127.0.0.2 in front of 127.0.0.1), still the same client.
        assert_limited(await log_in(app.client, user["email"], WRONG, forwarded(f"{guesser}, 127.0.0.2")))
        other_client = await log_in(app.client, user["email"], user["password"], forwarded(other))
        assert other_client.status_code == 200


async def test_past_the_account_ceiling_only_clients_known_to_the_account_get_in(quick: Any) -> None:
    settings = quick(login_failures_per_account_client=2, login_failures_per_account=4, trusted_proxies=["127.0.0.1"])
    async with serve(settings) as app:
        user = await create_user(app.client)
        usual = forwarded(random_address())
        assert (await log_in(app.client, user["email"], user["password"], usual)).status_code == 200
        for _ in range(2):  # a guesser spread over two clients reaches the ceiling of 4
            assert await statuses(app.client, user["email"], WRONG, 2, forwarded(random_address())) == [401] * 2
        for password in (WRONG, user["password"]):
            assert_limited(await log_in(app.client, user["email"], password, forwarded(random_address())))
        assert (await log_in(app.client, user["email"], user["password"], usual)).status_code == 200


async def test_one_client_trying_many_accounts_is_stopped_at_the_client_ceiling(quick: Any) -> None:
    settings = quick(login_failures_per_client=3, trusted_proxies=["127.0.0.1"])
    async with serve(settings) as app:
        stuffer = forwarded(random_address())
        for _ in range(3):
            assert (await log_in(app.client, unique_email("stuffed"), WRONG, stuffer)).status_code == 401
        assert_limited(await log_in(app.client, unique_email("stuffed"), WRONG, stuffer))
        elsewhere = await log_in(app.client, unique_email("stuffed"), WRONG, forwarded(random_address()))
        assert elsewhere.status_code == 401


async def test_a_refused_hash_is_not_counted_as_a_failure(quick: Any, database_url: str) -> None:
    settings = quick(login_failures_per_account_client=2, hash_workers=1, hash_queue_max=0)
    async with serve(settings) as app:
        app.services.hasher.capacity = 0  # every password operation is refused (503) from here on
        email = unique_email("overloaded")
        for _ in range(3):
            assert_error(await log_in(app.client, email, WRONG), 503, "hashing_overloaded")
    assert await stored_counters(database_url, email) == []


async def test_signups_from_one_client_get_429_past_the_limit(quick: Any, database_url: str) -> None:
    settings = quick(signups_per_client=3, signup_window_seconds=60, trusted_proxies=["127.0.0.1"])
    async with serve(settings) as app:
        taken = unique_email()
        first = await app.client.post("/v1/users", json=_signup(taken), headers=forwarded(random_address()))
        assert first.status_code == 201, first.text
        client = forwarded(random_address())
        answers = [
            await app.client.post("/v1/users", json=_signup(email), headers=client)
            for email in (unique_email(), taken, unique_email(), unique_email())
        ]
        assert [answer.status_code for answer in answers] == [201, 409, 201, 429]
        assert_error(answers[-1], 429, "too_many_signups")
        assert 0 < int(answers[-1].headers["retry-after"]) <= 60
        another = forwarded(random_address())
        elsewhere = await app.client.post("/v1/users", json=_signup(unique_email()), headers=another)
        assert elsewhere.status_code == 201, elsewhere.text


def _signup(email: str) -> dict[str, str]:
    return {"email": email, "name": "Signup", "password": "a-long-enough-password"}
