"""Headless Locust runs against a real service: `make load`'s own path, and the gate failing a run."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

from bench.ports import free_ports
from loadtests.endpoints import ENDPOINTS, SHED
from tests.loadtests.conftest import LoadService
from tests.loadtests.locust_runs import LOOSE_BUDGETS, clean_env, data_rows, locust, run, stats_rows, tail


def test_make_load_starts_the_service_and_runs_every_request_without_a_failure(
    database_url: str, tmp_path: Path
) -> None:
    """loadtests.local as `make load` runs it, with no service up: it starts one, a master and a worker."""
    port, master_port = free_ports(2)
    env = clean_env(
        LOCUST_HOST=f"http://127.0.0.1:{port}",
        AUTH_DATABASE_URL=database_url,
        LOADTEST_RESULTS_DIR=str(tmp_path),
        LOADTEST_RATE="300",
        LOADTEST_DURATION="12",
        LOADTEST_SEED_USERS="200",
        # Logins at 0.1% of ~3,000 requests would show up in so short a run only by luck; as often as creates, surely.
        LOADTEST_MIX="login=0.4",
        **LOOSE_BUDGETS,
    )
    command = [sys.executable, "-m", "loadtests.local", "--workers", "1", "--master-port", str(master_port)]
    completed = run([*command, "--timeout", "60"], env)

    assert completed.returncode == 0, tail(completed)
    assert "starting one as `make run` does, on AUTH_DATABASE_URL" in completed.stderr
    assert "AUTH_HASH_CLIENT_SHARE=1.0 AUTH_SIGNUPS_PER_CLIENT=1000000000" in completed.stderr
    assert "(index 0) reported as ready. 1 workers connected" in completed.stderr
    (results,) = tmp_path.iterdir()
    rows = stats_rows(results / "locust_stats.csv")
    for task, endpoint in ENDPOINTS.items():
        row = rows[(endpoint.method, endpoint.name)]
        assert int(row["Request Count"]) > 0, task
        assert row["Failure Count"] == "0", (task, row)
    assert not [key for key in rows if key[0] == SHED], "the per-client limits were lifted: nothing is shed"
    assert data_rows(results / "locust_failures.csv") == []
    assert data_rows(results / "locust_exceptions.csv") == []
    assert ENDPOINTS["verify"].name in (results / "report.html").read_text()
    gate = json.loads((results / "locust_gate.json").read_text())
    assert gate["passed"] and gate["failures"] == 0 and gate["shed"] == 0, gate
    # The CSV is rewritten every second; the gate judges the final statistics.
    assert gate["requests"] >= int(rows[("", "Aggregated")]["Request Count"])
    assert re.search(r"loadtest PASS: [\d,]+ requests", completed.stderr)
    assert (results / "service.log").stat().st_size > 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the service started for the run was stopped after it"


def test_the_gate_fails_a_run_over_its_budget_and_counts_shed_requests_apart(
    load_service: LoadService, tmp_path: Path
) -> None:
    """A standalone runner (the master-worker path is the test above) with an impossible budget for the hashing."""
    env = clean_env(
        LOADTEST_SHAPE="soak",
        LOADTEST_RATE="100",
        LOADTEST_DURATION="6",
        LOADTEST_SEED_USERS="100",
        LOADTEST_SEED_SESSIONS="10",
        LOADTEST_BATCH_TOKEN=load_service.batch_token,
        # Many signups, past the service's 3 per client: shed with 429 and a long Retry-After.
        LOADTEST_MIX="create=5,login=1",
        LOADTEST_MAX_SHED_RATIO="1",
        **(LOOSE_BUDGETS | {"LOADTEST_HASHING_P99_MS": "1"}),  # an argon2id hash alone takes ~17 ms
    )
    prefix = tmp_path / "locust"
    # --json-file: Locust's final statistics (the CSV is rewritten every second, and may miss the last).
    options = (
        "--headless",
        "--only-summary",
        "--host",
        load_service.url,
        "--csv",
        str(prefix),
        "--json-file",
        str(prefix),
    )
    completed = run(locust(*options), env)

    assert completed.returncode == 1, tail(completed)
    gate = json.loads(Path(f"{prefix}_gate.json").read_text())
    hashing = (ENDPOINTS["create"], ENDPOINTS["login"])
    assert gate["problems"], gate
    assert all(problem.startswith(tuple(f"{e.method} {e.name} p99" for e in hashing)) for problem in gate["problems"])
    assert f"loadtest FAIL: {gate['requests']:,} requests" in completed.stderr
    assert "over budget: POST /v1/" in completed.stderr
    # Shed, not failed: a row of its own, in the CSV too, no failure anywhere.
    final = {(entry["method"], entry["name"]): entry for entry in json.loads(Path(f"{prefix}.json").read_text())}
    refused_signups = final[(SHED, ENDPOINTS["create"].shed_name(429))]
    assert refused_signups["num_requests"] > 0 and refused_signups["num_failures"] == 0
    assert (SHED, ENDPOINTS["create"].shed_name(429)) in stats_rows(Path(f"{prefix}_stats.csv"))
    assert gate["shed"] == sum(entry["num_requests"] for (kind, _), entry in final.items() if kind == SHED)
    assert gate["failures"] == 0 == sum(entry["num_failures"] for entry in final.values())
    # The service asks for minutes (what is left of its signup window): each visitor was refused once at most.
    visitors = int(re.findall(r'"Visitor": (\d+)', completed.stderr)[-1])
    assert refused_signups["num_requests"] <= visitors, "a visitor signed up again before its Retry-After"
    # Every request says it is a load test's, and the service's spans say so.
    spans = load_service.spans_when(lambda spans: len(spans) >= 20, timeout=10)
    # The harness's own probe of /healthz, which started the service, is the one request without the mark.
    served = [span for span in spans if span.kind == "SERVER" and span.attributes.get("http.route") != "/healthz"]
    assert served and all(span.attributes.get("load_test") is True for span in served), load_service.traces.describe()
