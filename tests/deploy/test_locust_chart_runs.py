"""charts/locust's rendered master and worker, run as processes with the project's Locust (the image's
version) against the service's own rendered pod on a real PostgreSQL: the workers find the master, the
master seeds through the batch endpoint with the token its Secret reference names, the web UI runs a
test, and the headless Job writes its reports, keeps them, and exits with the gate's code.
How a rendered Locust container becomes a process: tests/deploy/locust_pod.py.

The official image itself cannot run here (no registry to pull it from); what it would add is its
Python and its user, which the render checks cover (test_locust_chart_semantics.py).
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy import charts as service_chart
from tests.deploy.charts import named, objects, pod_labels, pod_spec
from tests.deploy.locust_chart import case_named, helm_template
from tests.deploy.locust_pod import Process, locust_process, with_master_address, with_master_ports
from tests.deploy.pod import PodContext
from tests.deploy.test_chart_runs import SERVER, Started, ci_secrets, database_dsn, served

BATCH_SECRET = "auth-service-batch-token"  # the external-db case's, which ci_secrets creates
# Small and short on a shared machine: a few users, a few seconds, a few seeded accounts. The budgets
# are lifted: this is the chart's wiring, not the service's latency (loadtests/ measures that).
SMALL_RUN = {
    "scenario.shape": "soak",
    "scenario.targetRps": "30",
    "scenario.durationSeconds": "6",
    "scenario.env.LOADTEST_SEED_USERS": "20",
    "scenario.env.LOADTEST_SEED_SESSIONS": "4",
    "scenario.env.LOADTEST_HOT_P99_MS": "5000",
    "scenario.env.LOADTEST_HOT_P999_MS": "5000",
    "scenario.env.LOADTEST_DATABASE_P99_MS": "5000",
    "scenario.env.LOADTEST_DATABASE_P999_MS": "5000",
    "scenario.env.LOADTEST_HASHING_P99_MS": "10000",
    "scenario.env.LOADTEST_HASHING_P999_MS": "10000",
    "scenario.env.LOADTEST_MAX_SHED_RATIO": "0.5",
}
# A budget no service meets: the gate must fail the run.
IMPOSSIBLE = {"scenario.env.LOADTEST_HOT_P99_MS": "0.001"}
STARTUP_SECONDS = 90


@pytest.fixture
def service(pg_server: str, tmp_path: Path) -> Iterator[tuple[Started, PodContext]]:
    """The service chart's external-db pod as a process on a migrated database, and the Secrets it reads."""
    with database_dsn(pg_server, "head") as dsn:
        docs = objects(service_chart.rendered("external-db"))
        context = PodContext(ci_secrets(dsn), pod_labels(named(docs, "Deployment", SERVER)))
        with served(docs, context, tmp_path / "service") as (started, _):
            yield started, context


def render(case: str, host: str, settings: dict[str, str]) -> list[dict[str, Any]]:
    sets = {"target.host": host, "target.batchToken.existingSecret": BATCH_SECRET, **settings}
    args = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    return objects(helm_template(case_named(case), *args).stdout)


def workload_of(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    [found] = [
        d
        for d in docs
        if pod_spec(d) is not None and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


@contextmanager
def running(process: Process, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    started = process.start(log)
    try:
        yield started
    finally:
        if started.poll() is None:
            started.kill()
            started.wait(10)


def wait_for(condition: Any, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
    raise AssertionError(f"{what}: not within {timeout:.0f} s\n{tails}")


def locust_pair(docs: list[dict[str, Any]], context: PodContext, tmp: Path) -> tuple[Process, dict[str, int], Process]:
    """The master's process (ports moved) and the worker's (pointed at it)."""
    master, master_container = locust_process(docs, "master", context, tmp)
    master, ports = with_master_ports(master, master_container)
    worker, _ = locust_process(docs, "worker", context, tmp)
    worker = with_master_address(worker, docs, workload_of(docs, "master"), ports["master"])
    return master, ports, worker


def secrets_of(context: PodContext) -> PodContext:
    """Of the Secrets created for the service's pod, the one the Locust master reads: the batch token the
    service checks, under the name the render's secretKeyRef gives."""
    return PodContext({BATCH_SECRET: context.secrets[BATCH_SECRET]}, {})


def test_the_ui_master_and_a_worker_run_a_test_against_the_service(service: Any, tmp_path: Path) -> None:
    server, service_context = service
    docs = render("default", server.url("http", ""), SMALL_RUN)
    master, ports, worker = locust_pair(docs, secrets_of(service_context), tmp_path)
    logs = [tmp_path / "master.log", tmp_path / "worker.log"]
    ui = f"http://127.0.0.1:{ports['ui']}"
    with running(master, logs[0]) as master_process, running(worker, logs[1]) as worker_process:

        def stats() -> dict[str, Any]:
            return httpx.get(f"{ui}/stats/requests", timeout=5).json()

        def ready() -> bool:
            assert master_process.poll() is None, logs[0].read_text()[-3000:]
            try:
                return httpx.get(ui, timeout=2).status_code == 200 and stats()["worker_count"] == 1
            except httpx.TransportError:
                return False

        wait_for(ready, STARTUP_SECONDS, "the UI answers with the worker connected", logs)
        started = httpx.post(f"{ui}/swarm", data={"user_count": "1", "spawn_rate": "1"}, timeout=10).json()
        assert started["success"], started
        wait_for(lambda: stats()["stats"][-1]["num_requests"] >= 60, 30, "60 requests", logs)
        report = stats()
        assert report["fail_ratio"] == 0, report["errors"]
        assert report["workers"][0]["state"] in ("running", "spawning")
        assert httpx.post(f"{ui}/stop", timeout=10).json()["success"]
        master_process.send_signal(signal.SIGTERM)  # as the kubelet stops the pod
        assert master_process.wait(30) == 0, logs[0].read_text()[-3000:]
        assert worker_process.wait(30) == 0, "the master's quit stops the worker"
    rows = list(csv.DictReader((master.root / "results" / "locust_stats.csv").read_text().splitlines()))
    assert int(next(row for row in rows if row["Name"] == "Aggregated")["Request Count"]) >= 60
    assert json.loads((master.root / "results" / "locust_gate.json").read_text())["passed"] is True


@pytest.mark.parametrize(("budgets", "code"), [({}, 0), (IMPOSSIBLE, 1)], ids=["passes", "fails-its-gate"])
def test_the_headless_job_keeps_its_reports_and_exits_with_the_gates_code(
    service: Any, tmp_path: Path, budgets: dict[str, str], code: int
) -> None:
    server, service_context = service
    docs = render("headless", server.url("http", ""), {**SMALL_RUN, **budgets, "workers.replicas": "1"})
    master, _, worker = locust_pair(docs, secrets_of(service_context), tmp_path)
    results = master.root / "results"
    logs = [tmp_path / "master.log", tmp_path / "worker.log"]
    with running(master, logs[0]) as master_process, running(worker, logs[1]) as worker_process:
        wait_for(lambda: (results / "exit-code").exists(), STARTUP_SECONDS + 30, "the run's end", logs)
        # The run is over, its reports are there, and the pod waits for `kubectl cp`.
        assert (results / "exit-code").read_text().strip() == str(code)
        assert {"locust_stats.csv", "locust_failures.csv", "report.html", "locust_gate.json"} <= {
            path.name for path in results.iterdir()
        }
        verdict = json.loads((results / "locust_gate.json").read_text())
        assert verdict["requests"] >= 100 and verdict["failures"] == 0, verdict
        assert verdict["passed"] is (code == 0)
        if code:
            assert verdict["problems"] and all("p99" in problem for problem in verdict["problems"]), verdict
        assert worker_process.wait(30) == 0, "the worker Job's pod completes when the master ends the run"
        time.sleep(1)
        assert master_process.poll() is None, "the pod keeps the reports for headless.keepResultsSeconds"
        master_process.send_signal(signal.SIGTERM)  # `kubectl exec ... -- sh -c 'kill 1'`
        assert master_process.wait(10) == code, logs[0].read_text()[-3000:]
    assert "--expect-workers=1" in master.argv and "--headless" in master.argv
