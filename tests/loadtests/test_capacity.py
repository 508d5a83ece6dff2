"""The capacity model's arithmetic on fixed inputs (capacity_fixtures/), each expected figure worked by hand,
and each refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests import capacity
from loadtests.capacity_chart import read_chart_values
from loadtests.capacity_inputs import REPO_ROOT, Refusal, read_bench, read_topology
from loadtests.capacity_model import scale_up_periods, surge_pods
from loadtests.capacity_plan import Plan, PostgresCpu, Refused, Request, Workers, build
from loadtests.capacity_report import markdown

FIXTURES = Path(__file__).parent / "capacity_fixtures"
CURRENT = FIXTURES / "bench_current.json"  # today's bench: no update endpoint, no PostgreSQL CPU
WITH_DB = FIXTURES / "bench_db.json"  # the same with an update endpoint and db_cpu_us_per_request
WORKERS = FIXTURES / "worker_rate.json"
MIX = {"verify": 70.0, "user_hit": 20.0, "not_found": 7.0, "update": 2.5, "create": 0.4, "login": 0.1}


def plan_of(bench: Path = CURRENT, **asked: object) -> Plan:
    request = Request(**{"mix": MIX, "worker_rate_path": WORKERS, "max_connections": 300, **asked})  # type: ignore[arg-type]
    return build(request, read_bench(bench), read_chart_values(FIXTURES / "values.yaml"))


def test_update_is_derived_from_the_mix_less_its_hashing() -> None:
    # 40 us x 99.5 = 3980 for the mix less hashing; the others: 70 x 20 + 20 x 20 + 7 x 100 = 2500
    # update = (3980 - 2500) / 2.5 = 592 us
    update = plan_of().sizing.costs["update"]
    assert update.us == 592.0
    assert update.source.startswith("derived from endpoints.mixed_no_hashing")


def test_cpu_of_the_mix_less_its_hashing_and_its_pods() -> None:
    s = plan_of().sizing
    # (70 x 20 + 20 x 20 + 7 x 100 + 2.5 x 592) / 100 = 3980 / 100 = 39.8 us a request
    assert s.rest_us == pytest.approx(39.8)
    # 100,000 x 39.8 us = 3.98 cores; at 70%: 5.69, so 6 one-core pods
    assert s.cores_at_target(s.rest_us) == pytest.approx(3.98)
    assert s.pods_for(s.rest_us, 0.7) == 6


def test_hashing_cores_are_cost_per_hash_times_hash_rate() -> None:
    s = plan_of().sizing
    # 0.5% of 100,000 = 500 hashes/s x 20 ms = 10 cores; 100 us of the 139.8 a request: 71.5% of the CPU
    assert s.hash_rate == pytest.approx(500)
    assert s.cores_at_target(s.hashing_us) == pytest.approx(10.0)
    assert s.hashing_us / s.total_us == pytest.approx(0.7153, abs=1e-4)
    # at saturation, no headroom: 13.98 cores, 14 pods
    assert s.pods_for(s.total_us, 1.0) == 14


def test_hashing_cost_from_the_endpoints_without_the_breakdown(tmp_path: Path) -> None:
    bench = tmp_path / "no_breakdown.json"
    bench.write_text(CURRENT.read_text().replace('"mixed_breakdown"', '"not_the_breakdown"'))
    s = plan_of(bench, max_connections=400).sizing
    # (0.4 x 22 ms + 0.1 x 21 ms) / 0.5 = 21.8 ms a hash; x 500 hashes/s = 10.9 cores
    assert s.hash_cost.us == pytest.approx(21_800)
    assert s.cores_at_target(s.hashing_us) == pytest.approx(10.9)


def test_hpa_target_replicas_and_scale_up() -> None:
    s = plan_of().sizing
    # p99 8 ms at 14,000 of 20,000 req/s (70%) within 10 ms; 20 ms at saturation is not
    assert s.p99.share == 0.7
    # one core serves 1e6 / 139.8 = 7,153.1 req/s of the mix; 70% of it: 5,007.2, so 5,007
    assert s.pod_rps == 5007
    # 100,000 / 5,007 = 19.97: 20 pods; from 2 the chart's policy (+100% or +4) goes 6, 12, 20
    assert s.replicas == 20
    assert s.min_replicas == 2
    assert scale_up_periods(2, 20, 100, 4) == 3


def test_the_p99_lowers_the_target_below_the_headroom() -> None:
    # 10% headroom would be 90% of the core, but only 70% was measured within the p99 budget
    s = plan_of(headroom_pct=10).sizing
    assert s.utilisation == 0.7
    assert s.pod_rps == 5007
    # a budget the saturation run meets (20 ms): the headroom decides, 90% of 7,153.1 = 6,437.8
    assert plan_of(headroom_pct=10, p99_budget_ms=25).sizing.pod_rps == 6437


def test_connections_are_pools_times_pods_within_the_budget() -> None:
    c = plan_of().connections
    # 6 + 4 + 0 overflow + 1 listener = 11 a pod; 20 pods + 25% surge (5) = 25; + 1 migration = 276
    assert (c.per_pod, c.surge, c.needed, c.steady) == (11, 5, 276, 220)
    assert c.budget == 290  # 300 - 10 reserved
    assert surge_pods(21, "25%") == 6
    assert surge_pods(21, 3) == 3


def test_notify_fan_out_is_updates_times_replicas() -> None:
    # 2.5% of 100,000 = 2,500 updates/s, each to 20 replicas
    assert plan_of().sizing.notify_per_s == pytest.approx(50_000)


def test_locust_workers_from_the_measured_rate_with_headroom() -> None:
    workers = plan_of().workers
    assert isinstance(workers, Workers)
    # 100,000 / (2,000 req/s a core x 70%) = 71.4: 72 worker cores
    assert workers.cores == 72


def test_postgres_cpu_from_measured_misses_and_writes() -> None:
    plan = plan_of(WITH_DB)
    assert plan.sizing.costs["update"].us == 600.0  # measured, no longer derived
    pg = plan.postgres
    assert isinstance(pg, PostgresCpu)
    # (7 x 50 + 2.5 x 80 + 0.4 x 100) / 100 = 5.9 us a request; x 100,000 = 0.59 cores
    assert pg.us_per_request == pytest.approx(5.9)
    assert pg.cores == pytest.approx(0.59)


def test_postgres_cpu_is_refused_where_the_bench_did_not_measure_it() -> None:
    pg = plan_of().postgres
    assert isinstance(pg, Refused)
    assert "no db_cpu_us_per_request for not_found (user_miss), update" in pg.reason


def test_postgres_cpu_from_explicit_figures() -> None:
    pg = plan_of(db_cpu_given={"not_found": 50.0, "update": 80.0}).postgres
    assert isinstance(pg, PostgresCpu)
    # (7 x 50 + 2.5 x 80) / 100 = 5.5 us; x 100,000 = 0.55 cores
    assert pg.cores == pytest.approx(0.55)
    assert pg.costs["update"].source.startswith("given")


def test_refuses_a_p99_budget_below_every_measured_p99() -> None:
    with pytest.raises(Refusal, match=r"p99 budget 5 ms is below the measured p99 of mixed_no_hashing at every"):
        plan_of(p99_budget_ms=5)
    with pytest.raises(Refusal, match=r"600 ms at 4,900 req/s \(paced, 70%\); 900 ms at 7,000 req/s"):
        plan_of(p99_of="mixed")


def test_refuses_connections_that_cannot_fit() -> None:
    with pytest.raises(Refusal) as refused:
        plan_of(max_connections=100)
    # 276 needed against 100 - 10 = 90: 186 over; 276 + 10 reserved = 286 would fit
    assert "= 276, over max_connections 100 - 10 reserved = 90 by 186" in str(refused.value)
    assert "to 286 or more" in str(refused.value)
    assert "PgBouncer" in str(refused.value)


def test_refuses_missing_inputs(tmp_path: Path) -> None:
    with pytest.raises(Refusal, match=r"latest.json is missing; run `make bench`"):
        read_bench(tmp_path / "latest.json")
    no_miss = tmp_path / "no_miss.json"
    no_miss.write_text(CURRENT.read_text().replace('"user_miss"', '"not_measured"'))
    with pytest.raises(Refusal, match=r"no cpu_us_per_request for not_found \(user_miss\), update"):
        plan_of(no_miss)
    with pytest.raises(Refusal, match="unknown kinds of request: nope"):
        plan_of(db_cpu_given={"nope": 1.0})


def test_a_missing_worker_rate_refuses_the_workers_only(tmp_path: Path) -> None:
    plan = plan_of(worker_rate_path=tmp_path / "worker_rate.json")
    assert isinstance(plan.workers, Refused)
    assert "worker_rate.json is missing" in plan.workers.reason
    assert plan.sizing.replicas == 20
    bad = tmp_path / "bad.json"
    bad.write_text('{"rps_per_worker_core": 0}')
    refused = plan_of(worker_rate_path=bad).workers
    assert isinstance(refused, Refused) and "not a positive number" in refused.reason


def fixture_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        *("--bench-results", str(CURRENT), "--worker-rate", str(WORKERS)),
        *("--chart-values", str(FIXTURES / "values.yaml"), "--topology-results", str(tmp_path / "no-topology.json")),
        *("--values-output", str(tmp_path / "values.yaml"), "--report-output", str(tmp_path / "report.md")),
        *extra,
    ]


def test_the_cli_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert capacity.main(fixture_args(tmp_path, "--max-connections", "300")) == 0
    assert "20 one-core pods at 5,007 req/s each" in capsys.readouterr().out
    assert "maxReplicas: 20" in (tmp_path / "values.yaml").read_text()
    assert "Hashing is the mix's biggest cost" in (tmp_path / "report.md").read_text()


def test_the_cli_refuses_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert capacity.main(fixture_args(tmp_path)) == 2
    assert "refused: database connections" in capsys.readouterr().err
    assert not (tmp_path / "values.yaml").exists()


def test_the_cli_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        capacity.parser().parse_args(["--headroom", "100"])
    with pytest.raises(SystemExit):
        capacity.parser().parse_args(["--target-rps", "0"])


def test_the_model_does_not_import_locust() -> None:
    # Locust patches the process with gevent on import; the model runs anywhere, make capacity included.
    check = "import sys, loadtests.capacity; sys.exit('locust' in sys.modules or 'gevent' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, check=False).returncode == 0


def topology_results(path: Path, **replicas: float) -> Path:
    """A bench.topology result with the figures the report reads, worked by hand."""
    found = {
        "date": "2026-12-04 19:17 UTC",
        "machine": {"cpu_model": "Test CPU", "cores": 2},
        "settings": {"core_share": 0.5, "surge": 3.0},
        "replicas": {"two_vs_one_cpu_per_request": 0.96, "one_cpu_us_per_request": 40.0} | replicas,
        "placement": {"same_hot_p99_ms": 5.0, "tier_hot_p99_ms": 4.0, "tier_vs_same_hot_p99": 0.8},
        "surge": {"same_hot_p99_ms": 30.0, "tier_hot_p99_ms": 20.0, "tier_vs_same_hot_p99": 0.667},
    }
    path.write_text(json.dumps(found))
    return path


def test_the_report_states_what_the_topology_run_measured(tmp_path: Path) -> None:
    topology = read_topology(topology_results(tmp_path / "topology.json", two_cpu_us_per_request=38.4))
    report = markdown(plan_of(max_connections=300), "the command", topology)
    assert "0.96x the CPU per request of one (40 against 38.4 µs" in report
    assert "with the mix at 50% of one core, the hot requests' p99 was 5 ms with argon2 in the same process" in report
    assert "and 4 ms with it in another (0.8x)" in report
    assert "in a login surge (3x the logins), 30 against 20 ms (0.667x)" in report
    assert "what replicas sharing the database and the NOTIFY channel cost is not in it" not in report


def test_without_a_topology_run_the_report_says_what_is_not_measured(tmp_path: Path) -> None:
    assert read_topology(tmp_path / "none.json") is None
    report = markdown(plan_of(max_connections=300), "the command", None)
    assert "Measured across processes" not in report
    assert "what replicas sharing the database and the NOTIFY channel cost is not in it" in report
    assert "The p99 of the hot requests with argon2 in the same process is not measured" in report


def test_a_topology_run_without_its_figures_is_refused(tmp_path: Path) -> None:
    path = topology_results(tmp_path / "topology.json")
    found = json.loads(path.read_text())
    del found["replicas"]["two_vs_one_cpu_per_request"]
    path.write_text(json.dumps(found))
    with pytest.raises(Refusal, match=r"no replicas\.two_vs_one_cpu_per_request"):
        read_topology(path)


def test_a_hashing_tier_is_sized_at_the_cost_a_hash_has_alone() -> None:
    # 500 hashes/s x 21.80 ms (the create and login endpoints alone, weighted 0.4 : 0.1) = 10.90 cores;
    # at 70% of each core, 15.6 -> 16 pods; with the 6 of the rest, 22.
    report = markdown(plan_of(max_connections=300), "the command")
    assert "alone cost 21.80 ms a hash (weighted by the mix), 10.90 cores at this rate" in report
    assert "a hashing tier of its own would be 16 pods (22 in all)" in report
