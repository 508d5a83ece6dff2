"""The gate's arithmetic: which runs pass, and what the line says about those that do not."""

from __future__ import annotations

from loadtests.budgets import DEFAULT_BUDGETS, Row, judge
from loadtests.endpoints import ENDPOINTS, SHED


def row(task: str, requests: int = 1000, failures: int = 0, p99: float = 2, p999: float = 4) -> Row:
    endpoint = ENDPOINTS[task]
    return Row(endpoint.method, endpoint.name, requests, failures, p99, p999)


def shed_row(task: str, status: int, requests: int) -> Row:
    return Row(SHED, ENDPOINTS[task].shed_name(status), requests, 0, 1, 1)


def test_a_run_within_every_budget_passes_with_one_line_saying_so() -> None:
    verdict = judge(
        [row("verify"), row("not_found", p99=12, p999=40), row("login", 10, p99=90, p999=90)], DEFAULT_BUDGETS, 99.5
    )
    assert verdict.passed and not verdict.problems
    line = verdict.summary()
    assert line.startswith("loadtest PASS: 2,010 requests (99.5/s), failed 0")
    assert "hot 2/4 (<= 5/15), database 12/40 (<= 15/50), hashing 90/90 (<= 300/1000)" in line
    assert "\n" not in line


def test_each_request_type_is_held_to_its_own_tier() -> None:
    # 12 ms is within the database's budget, not the hot requests'.
    verdict = judge([row("not_found", p99=12), row("user_read", p99=12)], DEFAULT_BUDGETS, 1.0)
    assert verdict.problems == ("GET /v1/users/{id} p99 12 ms > 5",)
    assert verdict.summary().startswith("loadtest FAIL") and verdict.summary().endswith("> 5")


def test_the_p999_and_the_failed_share_of_any_type_fail_the_run() -> None:
    verdict = judge([row("verify", p999=16), row("update", requests=999, failures=1), row("me")], DEFAULT_BUDGETS, 1.0)
    assert verdict.problems == ("GET /v1/auth/verify p99.9 16 ms > 15", "PATCH /v1/users/{id} 1 of 999 failed > 0.100%")
    assert verdict.failures == 1


def test_shed_requests_are_no_failures_but_too_many_fail_the_run() -> None:
    few = judge([row("verify", requests=990), shed_row("create", 429, 10)], DEFAULT_BUDGETS, 1.0)
    assert few.passed and few.shed == 10 and few.failures == 0 and few.requests == 1000
    assert "shed 10 (1.00% <= 1.00%)" in few.summary()
    many = judge(
        [row("verify", requests=980), shed_row("create", 429, 11), shed_row("verify", 503, 9)], DEFAULT_BUDGETS, 1
    )
    assert many.problems == ("2.00% of the requests shed > 1.00%",)
    assert many.to_json()["shed_ratio"] == 0.02


def test_a_run_that_sent_nothing_or_broke_its_own_code_fails() -> None:
    assert judge([], DEFAULT_BUDGETS, 0.0).problems == ("no requests were made",)
    assert judge([row("verify")], DEFAULT_BUDGETS, 1.0, exceptions=2).problems == (
        "2 errors in the scenario's code (Locust's exceptions report)",
    )


def test_the_line_names_the_first_problems_and_counts_the_rest() -> None:
    rows = [row(task, p99=400, p999=2000) for task in ("verify", "me", "user_read", "not_found", "update", "login")]
    verdict = judge(rows, DEFAULT_BUDGETS, 1.0)
    assert len(verdict.problems) == 12
    assert verdict.summary().endswith("; and 7 more") and len(verdict.to_json()["problems"]) == 12
