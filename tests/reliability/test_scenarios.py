"""The short version of every scenario `make reliability` runs, against real processes: each must hold.

In the registry's order, in one context: `secret`, last, greps what all the others produced.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_asyncio

from reliability.config import QUICK
from reliability.context import Context
from reliability.runner import PASSED, run_one
from reliability.scenarios import SCENARIOS, brute, overload, slow

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]


async def held(context: Context, key: str) -> dict[str, Any]:
    """The scenario's entry, once it has passed (the entry is the failure message otherwise)."""
    entry = await run_one(context, SCENARIOS[key], QUICK)
    assert entry["status"] == PASSED, json.dumps(entry, indent=2, default=str)
    return entry


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rolling_entry(context: Context) -> dict[str, Any]:
    return await run_one(context, SCENARIOS["rolling"], QUICK)


async def test_a_rolling_restart_loses_no_acknowledged_write_and_fails_nothing_but_at_the_close(
    rolling_entry: dict[str, Any],
) -> None:
    entry, drain = rolling_entry, SCENARIOS["rolling"].quick.drain_delay_s
    described = json.dumps(entry, indent=2, default=str)
    assert entry["lost_writes"] == 0 and entry["acknowledged_writes"] > 0, described
    assert [step["old_exit_code"] for step in entry["replacements"]] == [0], described
    assert entry["refused_connections"] == 0 and entry["skipped_by_the_client"] == 0, described
    # The only failures seen: requests sent on an idle kept-alive connection as the old process, its drain
    # over, closed it (next test). Any other failure is another fault.
    assert all(drain - 0.5 <= seconds <= drain + 2 for seconds in entry["failures_s_after_sigterm"]), described


async def test_a_rolling_restart_fails_no_request(rolling_entry: dict[str, Any]) -> None:
    assert rolling_entry["failed"] == 0, rolling_entry["results"]


async def test_a_request_held_in_the_database_completes_through_sigterm(context: Context) -> None:
    entry = await held(context, "sigterm")
    assert entry["held_request_status"] == 200 and entry["lost_writes"] == 0
    assert entry["refused_after_drain"] and entry["exit_code"] == 0


async def test_a_database_restart_gets_fast_503s_and_recovers_without_a_restart(context: Context) -> None:
    entry = await held(context, "database")
    assert entry["unavailable_503"] > 0, "the outage was not seen: nothing was tried"
    assert entry["recovery_s"] is not None and entry["idle_in_transaction_after"] == 0
    assert entry["connections_after"] <= entry["sessions_bound"]


async def test_abandoned_requests_leave_the_pools_at_their_size(context: Context) -> None:
    entry = await held(context, "cancel")
    assert entry["sent"] >= 1000 and entry["could_not_send"] == 0
    assert entry["db_read_pool_connections_in_use_after"] == 0 and entry["db_pool_connections_in_use_after"] == 0
    assert entry["idle_in_transaction_after"] == 0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis_entry(context: Context) -> dict[str, Any]:
    return await run_one(context, SCENARIOS["redis"], QUICK)


def staleness(entry: dict[str, Any], variant: str) -> dict[str, Any]:
    [found] = [found for found in entry["staleness"] if found["variant"].startswith(variant)]
    return found


async def test_redis_stopped_or_paused_gives_no_5xx_and_a_delivered_del_no_stale_user(
    redis_entry: dict[str, Any],
) -> None:
    described = json.dumps(redis_entry, indent=2, default=str)
    assert redis_entry["server_errors"] == 0 and redis_entry["failed"] == 0, described
    assert {phase["phase"] for phase in redis_entry["phases"]} >= {"Redis stopped", "Redis paused"}
    for variant in ("DEL delivered", "DEL delayed"):
        assert staleness(redis_entry, variant)["stale_past_ttl"] == 0, described


async def test_a_lost_redis_del_serves_no_stale_user_past_the_ttl(redis_entry: dict[str, Any]) -> None:
    lost = staleness(redis_entry, "DEL lost")
    assert lost["stale_past_ttl"] == 0, lost


async def test_overload_at_3x_and_10x_gets_fast_honest_503s_in_bounded_memory_and_then_ends(context: Context) -> None:
    entry, params = await held(context, "overload"), SCENARIOS["overload"].quick
    described = json.dumps(entry, indent=2, default=str)
    levels = {level["level"]: level for level in entry["levels"]}
    assert list(levels) == ["3x", "10x", "3x again"], described
    assert entry["capacity_rps"] > 0, described
    honest = {"read 200", "read 503 db_pool_exhausted", "read 503 overloaded"}
    for level in levels.values():
        # Nothing but 200s and 503s with Retry-After and a true reason: no database_unavailable, no other 5xx.
        assert set(level["results"]) <= honest and level["failed"] == 0, described
        assert level["served_rps"] > 0 and level["unavailable_503"] > 0, described
        # At the client, unless the client was its own limit (its loop late): then the service's own time counts.
        fast = level["p99_503_ms"] <= params.max_p99_503_ms
        assert fast or overload.generator_bound(level, params.max_p99_503_ms), described
        assert level["p99_503_in_service_ms_at_most"] <= overload.MAX_P99_503_IN_SERVICE_MS, described
        assert level["p99_200_in_service_ms_at_most"] > 0, described  # a figure, not a bound (README)
        assert level["rss_mb_peak"] <= entry["rss_mb_before"] + overload.RSS_MARGIN_MB, described
    assert levels["3x again"]["rss_mb_peak"] - levels["3x"]["rss_mb_peak"] <= overload.REPEAT_GROWTH_MB, described
    # Below the capacity after it, the overload is over (the pool's gate keeps no waiters while overloaded).
    after = entry["after"]
    assert after["level"] == "half, after" and after["served_rps"] > 0, described
    assert after["unavailable_503"] <= overload.AFTER_MAX_REFUSED_SHARE * after["sent"], described
    assert after["failed"] == 0, described


@pytest.mark.parametrize(
    ("offered", "loop_lag_ms", "service_cores", "bound"),
    [
        (14_000, 250.0, 0.56, True),  # the client's loop fell behind while the service had time: the client's limit
        (14_000, 250.0, 0.95, False),  # the service was the busy one: its socket queue is its own fault
        (14_000, 2.0, 0.56, False),  # the client kept time, short since its connections all awaited answers
        (14_000, 20.0, 0.56, True),  # short, and late beyond keeping a schedule of thousands a second
        (50_000, 60.0, 0.56, True),  # the target reached, but the client late by over half the 100 ms bound
        (50_000, 20.0, 0.56, False),  # the target reached, the client's lateness well inside the bound
    ],
)
async def test_a_level_is_the_generators_limit_only_when_the_client_fell_behind(
    offered: int, loop_lag_ms: float, service_cores: float, bound: bool
) -> None:
    level = {
        "offered_rps": offered,
        "target_rps": 53_000,
        "client_loop_lag_p99_ms": loop_lag_ms,
        "service_cores": service_cores,
    }
    assert overload.generator_bound(level, bound_ms=100.0) is bound


async def test_slow_clients_hold_no_slot_and_normal_traffic_keeps_its_p99(context: Context) -> None:
    entry, params = await held(context, "slow"), SCENARIOS["slow"].quick
    described = json.dumps(entry, indent=2, default=str)
    assert params.attackers > params.max_in_flight  # else a slot held by each would go unnoticed
    for attack, reason in zip(entry["attacks"], ("header_timeout", "body_timeout"), strict=True):
        assert attack["sockets"] == params.attackers and attack["answered_408"] == params.attackers, described
        # Held to the timeout and no longer: the 408s are the timeouts', each counted once, and nothing
        # else was refused meanwhile (no `overloaded`: the normal requests always found a slot).
        assert attack["timeout_s"] * 0.9 <= attack["first_closed_s"], described
        assert attack["last_closed_s"] <= attack["timeout_s"] + slow.CLOSE_MARGIN_SECONDS, described
        assert attack["rejected_by_reason"] == {reason: params.attackers}, described
    phases = {phase["phase"]: phase for phase in entry["phases"]}
    assert list(phases) == ["before", "slowloris", "partial body"], described
    assert all(phase["sent"] > 0 and phase["failed"] == 0 for phase in phases.values()), described
    under_attack = entry["results_under_attack"]
    assert under_attack.get("login 200", 0) > 0 and under_attack.get("read 200", 0) > 0, described
    assert entry["failed"] == 0 and entry["p99_ms"] <= params.max_p99_ms, described
    assert entry["http_server_requests_in_flight_after"] == 0, described


async def test_schemathesis_finds_nothing(context: Context) -> None:
    entry = await held(context, "schemathesis")
    assert entry["test_cases"] > 0 and entry["failures"] == []


async def test_bad_inputs_get_4xx_and_write_nothing_they_should_not(context: Context) -> None:
    entry = await held(context, "bad_input")
    assert entry["server_errors"] == 0 and entry["broken"] == []


async def test_brute_force_and_flooding_hit_the_limits_across_replicas_and_the_real_user_gets_in(
    context: Context,
) -> None:
    entry, params = await held(context, "brute"), SCENARIOS["brute"].quick
    described = json.dumps(entry, indent=2, default=str)
    assert entry["accepted_attacks"] == 0 and entry["failed"] == 0, described
    [found] = entry["variants"]
    limit, signups = entry["limits"]["login_failures_per_account_client"], entry["limits"]["signups_per_client"]
    # One at a time on alternate replicas: exactly the limit, then 429. Counted per replica it would be twice that.
    assert found["one_at_a_time"] == {401: limit, 429: brute.PAST_THE_LIMIT}, described
    assert found["first_429_one_at_a_time"] == limit, described
    guesses = found["guesses"]
    assert sum(guesses.values()) == params.guesses, described
    assert limit <= guesses[401] <= found["max_401_guessing"] and all(found["guess_429_by_replica"]), described
    assert found["right_password_locked_429"] == brute.REPLICAS, described
    stuffing = found["stuffing"]
    assert params.per_client <= stuffing[401] <= found["max_401_stuffing"], described
    assert stuffing[429] >= params.past_per_client, described
    assert signups <= found["signups"][201] <= found["max_201_signups"] and found["signups"][429] > 0, described
    assert found["real_user_logins"] > 0 and found["results"]["real_user 200"] == found["real_user_logins"], described
    assert found["real_user_ok_on"] == found["real_user_after_ok_on"] == list(range(brute.REPLICAS)), described
    assert found["refusals_without_retry_after"] == 0 and found["counters_in_postgresql"] > 0, described


async def test_no_forged_or_stale_token_is_accepted_and_rotation_works(context: Context) -> None:
    entry = await held(context, "token")
    assert entry["accepted_attacks"] == 0 and entry["key_server_requests"] == 0
    assert entry["rotation_new_kid"] == "rotated-2"


async def test_a_login_tells_no_known_email_by_status_body_or_headers(context: Context) -> None:
    # The timing (KS p > 0.05) is the long run's figure: a short run on a shared machine is no basis to fail on.
    entry = await run_one(context, SCENARIOS["enumeration"], QUICK)
    assert entry["status"] in (PASSED, "failed"), json.dumps(entry, indent=2, default=str)
    for name, variant in entry["variants"].items():
        assert variant["statuses"] == [401], name
        assert variant["same_body"] and variant["same_headers"], name
        assert 0 <= variant["ks_p"] <= 1, name


async def test_no_secret_the_scenarios_used_is_in_any_log_span_or_error_body(context: Context) -> None:
    entry = await held(context, "secret")
    assert entry["leaks"] == []
    assert entry["secrets_looked_for"] > 10 and entry["log_bytes"] > 0 and entry["spans"] > 0
