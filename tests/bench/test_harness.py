"""`python -m bench` end to end on one-second runs in two rounds: every server, every endpoint, every output file."""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import cli, servers, steadiness, targets, tracing
from bench.config import CEILING_ENDPOINTS, DATABASE_ENDPOINTS, MIXED_NO_HASHING, REPO_ROOT, REPORTED_ENDPOINTS
from bench.tools import find_wrk

pytestmark = [
    pytest.mark.skipif(
        find_wrk() is None, reason="wrk is not on PATH nor in .tools/bin, and `make bench-tools` could not install it"
    ),
    # The harness runs once for the module, in the first test's setup: about two minutes.
    pytest.mark.timeout(420),
]

ROUNDS = 2
VERSIONS = {"python", "fastapi", "starlette", "uvicorn", "sqlalchemy", "asyncpg", "wrk"}
POSITIVE = ("rps", "rps_min", "rps_max", "p50_ms", "p99_ms", "p999_ms", "cpu_us_per_request", "capacity_rps", "rss_mb")
PACED = ("fixed_rate_rps", "fixed_achieved_rps", "fixed_p50_ms", "fixed_p99_ms", "fixed_p999_ms")
TARGETS = {
    "verify_vs_ceiling",
    "verify_vs_baseline",
    "user_hit_vs_ceiling",
    "user_hit_vs_baseline",
    "user_miss_rps",
    "user_miss_vs_baseline",
    "mixed_rps",
    "mixed_no_hashing_rps",
    "verify_p99_at_70pct",
    "user_hit_p99_at_70pct",
    "user_miss_p99_at_70pct",
    "verify_allocation",
    "user_hit_allocation",
    "verify_tracing_cost",
    "user_hit_tracing_cost",
}


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One quick run of the harness (no warm-up: the point is the plumbing, not the figures), in two rounds:
    the fewest that show the servers taking turns and a ratio taken round by round."""
    directory = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bench", "--quick", "--warmup", "0", "--output-dir", str(directory)]
    # The tracing block in one round: its rounds pair as the endpoints' do (unit-tested below), and
    # each of its rounds starts the service four times.
    command += ["--repetitions", str(ROUNDS), "--tracing-repetitions", "1"]
    # A setting with a trace in the service's log (its shutdown line is INFO; the harness runs it at WARNING).
    command += ["--service-setting", "AUTH_LOG_LEVEL=INFO"]
    # The paced runs at a third of saturation rather than 70%: a one-second closed-loop run
    # under-counts the mix's slow hashes (those still queued at the end are not counted), so 70% of
    # it can ask more hashes a second than the core left beside the loop makes, and the queue sheds
    # (7 of 6,738 in one CI run). That is a figure of a noisy machine, not the plumbing checked here.
    command += ["--fixed-rate-share", "0.35"]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=360, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return directory


@pytest.fixture(scope="module")
def results(output: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((output / "latest.json").read_text())
    return loaded


def servers_for(endpoint: str) -> set[str]:
    if endpoint == MIXED_NO_HASHING:
        return {"service"}
    return {"service", "baseline", "ceiling"} if endpoint in CEILING_ENDPOINTS else {"service", "baseline"}


def test_every_file_is_written(output: Path, results: dict[str, Any]) -> None:
    dated = [path.name for path in output.glob("????-??-??-????.json")]
    assert dated == [f"{results['date_stamp']}.json"]
    assert json.loads((output / dated[0]).read_text()) == results
    assert (output / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    report = (output / "latest.md").read_text()
    for endpoint in REPORTED_ENDPOINTS:
        for server in servers_for(endpoint):
            assert f"| {endpoint} | {server} |" in report
    assert "## The mixed scenario: where its CPU goes" in report


def test_the_service_runs_with_the_settings_given_and_the_report_says_so(output: Path, results: dict[str, Any]) -> None:
    assert results["settings"]["service_settings"] == {"AUTH_LOG_LEVEL": "INFO"}
    report = (output / "latest.md").read_text()
    assert "- **Not the shipped defaults**: the service ran with `AUTH_LOG_LEVEL=INFO`." in report
    assert "draining" in (output / "tmp" / "logs" / "service.log").read_text()
    assert "draining" not in (output / "tmp" / "logs" / "baseline.log").read_text(), "the baseline keeps its settings"


def test_the_run_is_described(results: dict[str, Any]) -> None:
    assert results["date"] and results["problems"] == []
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu_model"] and results["machine"]["kernel"]
    assert set(results["versions"]) >= VERSIONS
    assert results["versions"]["wrk"] not in ("", "unknown")
    assert results["settings"]["database"]  # which server the fresh database was made on
    assert results["method"]


def test_the_host_speed_is_probed_before_each_block_and_reported(output: Path, results: dict[str, Any]) -> None:
    readings = results["host_speed"]
    assert [r["when"] for r in readings] == [
        "before verify",
        "before user_hit",
        "before login",
        "before create",
        "before update",
        "before mixed",
        "before user_miss",
        "before tracing",
        "at the end",
    ]
    for reading in readings:
        assert 0 < reading["min_ms"] <= reading["ms"] <= reading["max_ms"], reading
    assert steadiness.describe(readings) in (output / "latest.md").read_text()


def test_a_host_that_slowed_down_in_the_run_is_noted() -> None:
    def reading(when: str, ms: float) -> dict[str, Any]:
        return {"when": when, "ms": ms, "min_ms": ms, "max_ms": ms}

    steady = [reading("before the service", 10.0), reading("at the end", 11.0)]
    slowed = [reading("before the service", 10.0), reading("before the ceiling", 8.0), reading("at the end", 12.0)]
    assert steadiness.unsteady(steady) is None
    note = steadiness.unsteady(slowed)
    assert note is not None
    assert "12.0 ms at the end against 8.0 ms before the ceiling (x1.50)" in note


def test_every_endpoint_has_its_servers_and_figures(results: dict[str, Any]) -> None:
    assert set(results["endpoints"]) == set(REPORTED_ENDPOINTS)
    for endpoint, by_server in results["endpoints"].items():
        assert set(by_server) == servers_for(endpoint), endpoint
        for server, entry in by_server.items():
            where = f"{server} {endpoint}: {entry}"
            assert all(entry[key] > 0 for key in (*POSITIVE, *PACED)), where
            assert entry["rps_min"] <= entry["rps"] <= entry["rps_max"], where
            assert entry["p50_ms"] <= entry["p99_ms"] <= entry["p999_ms"], where
            assert entry["fixed_rate_rps"] < entry["rps"], where
            assert entry["errors"] == 0, where
    assert results["endpoints"]["user_miss"]["service"]["cache_max_entries"] == 1
    # The mix reads ids that do not exist: 404s, counted apart from errors.
    assert results["endpoints"]["mixed"]["service"]["not_found"] > 0
    assert set(results["endpoints"]["verify"]["service"]["gc"]) == {"0", "1", "2"}


# Each endpoint's runs in one round, in the order the harness takes them.
TURNS = {
    "verify": [("verify", "service"), ("verify", "baseline"), ("verify", "ceiling")],
    "user_hit": [("user_hit", "service"), ("user_hit", "baseline"), ("user_hit", "ceiling")],
    "login": [("login", "service"), ("login", "baseline")],
    "create": [("create", "service"), ("create", "baseline")],
    "update": [("update", "service"), ("update", "baseline")],
    "mixed": [("mixed", "service"), ("mixed", "baseline"), (MIXED_NO_HASHING, "service")],
    "user_miss": [("user_miss", "service"), ("user_miss", "baseline")],
}


def test_the_servers_of_an_endpoint_take_turns_round_by_round(results: dict[str, Any]) -> None:
    """service, baseline, ceiling, service, baseline, ceiling: read from when each measured run began."""
    previous_end = 0.0
    for endpoint, turns in TURNS.items():
        started = [results["endpoints"][name][server]["runs_started_s"] for name, server in turns]
        assert all(len(runs) == ROUNDS for runs in started), (endpoint, started)
        in_order = [runs[round_index] for round_index in range(ROUNDS) for runs in started]
        assert in_order == sorted(in_order) and len(set(in_order)) == len(in_order), (endpoint, in_order)
        assert in_order[0] > previous_end, f"{endpoint} began before the endpoint before it ended"
        previous_end = in_order[-1]
    # Each run lasts the --quick second: a round's turns are at least that far apart.
    verify = [results["endpoints"]["verify"][server]["runs_started_s"][0] for server in ("service", "baseline")]
    assert verify[1] - verify[0] >= 1.0


def test_each_ratio_is_the_median_of_the_rounds_ratios(results: dict[str, Any]) -> None:
    endpoints = results["endpoints"]
    for name in ("verify_vs_ceiling", "verify_vs_baseline", "user_hit_vs_ceiling", "user_miss_vs_baseline"):
        endpoint, other = name.split("_vs_")
        service, reference = endpoints[endpoint]["service"], endpoints[endpoint][other]
        each = [s / r for s, r in zip(service["rps_runs"], reference["rps_runs"], strict=True)]
        target = results["targets"][name]
        assert target["ratio_runs"] == [round(value, 3) for value in each], name
        assert target["measured"] == round(statistics.median(each), 3), name
        by_cpu = [s / r for s, r in zip(service["capacity_rps_runs"], reference["capacity_rps_runs"], strict=True)]
        assert target["by_cpu"] == round(statistics.median(by_cpu), 3), name
        assert results["ratios"][endpoint][f"vs_{other}"]["median"] == target["measured"], name
    # Per-server medians are still each server's own figure (from the runs' unrounded rps).
    for by_server in endpoints.values():
        for entry in by_server.values():
            assert entry["rps"] == pytest.approx(statistics.median(entry["rps_runs"]), abs=0.1)
    expected = {endpoint: {"vs_baseline"} for endpoint in ("user_miss", "login", "create", "update", "mixed")}
    expected |= {"verify": {"vs_ceiling", "vs_baseline"}, "user_hit": {"vs_ceiling", "vs_baseline"}}
    assert {endpoint: set(found) for endpoint, found in results["ratios"].items()} == expected


def test_a_figure_wrk_bounded_is_flagged(output: Path, results: dict[str, Any]) -> None:
    report = (output / "latest.md").read_text()
    for endpoint, by_server in results["endpoints"].items():
        for server, entry in by_server.items():
            assert entry["load_generator_bound"] == (entry["client_cpu_pct"] >= 90), (endpoint, server)
            if entry["load_generator_bound"]:
                assert f"{endpoint} {server}" in report.split("(wrk-bound): ", 1)[1].split(".", 1)[0]
    ceiling_bound = results["endpoints"]["verify"]["ceiling"]["load_generator_bound"]
    assert results["targets"]["verify_vs_ceiling"]["load_generator_bound"] == ceiling_bound


def test_postgresqls_cpu_per_request_is_read_for_the_endpoints_that_use_it(results: dict[str, Any]) -> None:
    # The harness's database is on this machine (embedded, or the local server of AUTH_TEST_DATABASE_URL)
    # unless the settings say its processes are not here.
    readable = "its CPU not read" not in results["settings"]["database"]
    for endpoint, by_server in results["endpoints"].items():
        for server, entry in by_server.items():
            if endpoint not in DATABASE_ENDPOINTS:
                assert "db_cpu_us_per_request" not in entry, (endpoint, server)
            elif readable:
                assert entry["db_cpu_us_per_request"] > 0 and entry["db_cpu_pct"] > 0, (endpoint, server)
            else:
                assert entry["db_cpu_us_per_request"] is None, (endpoint, server)


def test_updates_are_measured_alone_and_cost_more_than_a_verify(results: dict[str, Any]) -> None:
    update = results["endpoints"]["update"]
    assert set(update) == {"service", "baseline"}
    # A PATCH is a database write and a NOTIFY; a verify is a token check from memory.
    verify = results["endpoints"]["verify"]["service"]
    assert update["service"]["cpu_us_per_request"] > verify["cpu_us_per_request"]
    assert update["service"]["errors"] == 0 and update["service"]["requests"] > 0


def test_the_mixed_cpu_is_split_between_hashing_and_the_rest(results: dict[str, Any]) -> None:
    breakdown = results["mixed_breakdown"]
    assert breakdown["hashing_share_of_requests_pct"] == 0.5  # create 0.4 + login 0.1 of the default mix
    assert breakdown["cpu_us_per_request"] > breakdown["cpu_us_per_request_without_hashing"] > 0
    # An argon2id hash at the OWASP minimum costs milliseconds: far more than any other request.
    assert breakdown["cpu_ms_per_hashing_request"] > 1
    assert 0 < breakdown["hashing_share_of_cpu_pct"] < 100


def test_the_paced_latency_is_broken_down_from_the_same_run(output: Path, results: dict[str, Any]) -> None:
    found = results["latency_breakdown"]
    assert set(found) == {"verify", "user_hit", "user_miss"}
    for endpoint, breakdown in found.items():
        entry = results["endpoints"][endpoint]["service"]
        assert breakdown["paced_rps"] == entry["fixed_rate_rps"]
        assert breakdown["requests_per_timer_tick"] == round(entry["fixed_rate_rps"] / 1000, 1)
        assert breakdown["one_tick_answered_in_ms"] > 0
    assert found["verify"]["ceiling_p99_ms"] == results["endpoints"]["verify"]["ceiling"]["fixed_p99_ms"]
    assert found["user_miss"]["ceiling_p99_ms"] is None
    assert "## The paced runs: what their p99 is made of" in (output / "latest.md").read_text()


def test_tracing_is_measured_at_each_ratio(results: dict[str, Any]) -> None:
    tracing = results["tracing"]
    assert set(tracing["ratios"]) == {"0", "0.01", "1"}
    assert results["settings"]["tracing_repetitions"] == 1
    for run in [tracing["off"], *tracing["ratios"].values()]:
        assert run["verify"]["rps"] > 0 and run["user_hit"]["rps"] > 0
    for run in tracing["ratios"].values():
        assert isinstance(run["verify"]["rps_change_pct"], float)
    assert tracing["ratios"]["0"]["exports"] == 0
    assert tracing["ratios"]["1"]["exports"] > 0


def test_allocations_are_measured_on_both_hot_paths(results: dict[str, Any]) -> None:
    for endpoint in ("verify", "user_hit"):
        measured = results["allocations"][endpoint]
        assert 0 < measured["peak_bytes_per_request"] <= measured["peak_bytes_max"]
        assert isinstance(measured["net_bytes_per_request"], float)


def test_every_target_is_checked(results: dict[str, Any]) -> None:
    assert set(results["targets"]) == TARGETS
    for name, target in results["targets"].items():
        if name.endswith("_at_70pct"):
            # This run is paced at 35% (see `output`): a 70% latency target is then not measured,
            # and says so rather than pass (test_latency_targets_are_checked_only_on_a_run_paced_at_70_percent).
            assert (target["measured"], target["met"]) == (None, False), name
            continue
        assert target["measured"] is not None, name
        assert isinstance(target["met"], bool) and isinstance(target["margin_pct"], float), name
    # Throughput targets are also checked on CPU time per request, which other load does not move.
    assert results["targets"]["mixed_rps"]["by_cpu"] > 0
    assert isinstance(results["targets"]["verify_vs_ceiling"]["met_by_cpu"], bool)


def test_service_settings_must_be_auth_settings() -> None:
    assert cli.service_setting("AUTH_HASH_WORKER_NICE=10") == ("AUTH_HASH_WORKER_NICE", "10")
    assert cli.service_setting("AUTH_X=a=b") == ("AUTH_X", "a=b")
    for wrong in ("HASH_WORKER_NICE=10", "AUTH_HASH_WORKER_NICE"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.service_setting(wrong)


def test_latency_targets_are_checked_only_on_a_run_paced_at_70_percent() -> None:
    entry = {"endpoints": {"verify": {"service": {"fixed_p99_ms": 1.5}}}}
    at_70 = targets.evaluate(entry | {"settings": {"fixed_rate_share": 0.7}})["verify_p99_at_70pct"]
    at_50 = targets.evaluate(entry | {"settings": {"fixed_rate_share": 0.5}})["verify_p99_at_70pct"]
    assert (at_70["measured"], at_70["met"]) == (1.5, True)
    assert (at_50["measured"], at_50["met"]) == (None, False)


def test_a_server_that_serves_from_one_worker_is_measured_in_that_worker(tmp_path: Path) -> None:
    """granian forks its worker: CPU, memory and the loop's scheduling are read from the child."""
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    forks = f"import subprocess, time; subprocess.Popen({sleep!r}); time.sleep(30)"
    alone, parent = subprocess.Popen(sleep), subprocess.Popen([sys.executable, "-c", forks])
    children: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while not (children := servers.child_pids(parent.pid)):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        log = tmp_path / "log"
        assert servers.Server("forking", parent, "http://x", log).pid == children[0]
        assert servers.Server("alone", alone, "http://x", log).pid == alone.pid
        assert len(children) == 1
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        for process in (parent, alone):
            process.kill()
            process.wait()


def test_the_tracing_cost_pairs_each_round_with_its_own_run_with_tracing_off() -> None:
    """A host twice as fast in the second round: unpaired medians would mix the rounds, paired ones do not."""
    traced = [50.0, 100.0, 100.0]
    off = [55.0, 110.0, 200.0]
    assert tracing.paired_change(traced, off) == -9.1  # the changes are -9.1, -9.1 and -50
    assert tracing.paired_change([1.0], [0.0]) is None
