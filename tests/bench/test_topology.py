"""`python -m bench.topology`: the arithmetic of its summaries on fixed rounds, and one quick run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import topology
from bench.config import DEFAULT_MIX, REPO_ROOT, hashing_share
from bench.tools import find_wrk

needs_wrk = pytest.mark.skipif(
    find_wrk() is None, reason="wrk is not on PATH nor in .tools/bin, and `make bench-tools` could not install it"
)


def replicas_round(one_rps: float, two_rps: float, one_cpu: float, two_cpu: float) -> dict[str, Any]:
    return {
        "one": {"rps": one_rps, "service_cpu_us_per_request": one_cpu, "database_cpu_us_per_request": 30.0},
        "two": {"rps": two_rps, "service_cpu_us_per_request": two_cpu, "database_cpu_us_per_request": None},
        "login": {"rps": 50.0, "service_cpu_us_per_request": 17_000.0},
    }


def test_the_replicas_ratios_are_the_medians_of_each_rounds_ratios() -> None:
    # A host twice as fast in the second round: each round's ratio is the same, their medians' is not.
    rounds = [replicas_round(10_000, 15_000, 60.0, 66.0), replicas_round(20_000, 30_000, 30.0, 33.0)]
    summary = topology.summarise_replicas(rounds)
    assert summary["two_vs_one_rps"] == 1.5
    assert summary["two_vs_one_cpu_per_request"] == 1.1
    assert summary["one_rps"] == 15_000 and summary["two_rps"] == 22_500
    assert summary["one_database_cpu_us_per_request"] == 30.0
    assert summary["two_database_cpu_us_per_request"] is None  # no round had it
    assert summary["login_cpu_us_per_request"] == 17_000.0


def test_the_hashing_blocks_paces_put_the_mix_at_its_share_of_one_core() -> None:
    hot_rps, login_rps = topology.paces(hot_us=40.0, login_us=17_000.0, core_share=0.5)
    share = hashing_share(DEFAULT_MIX)
    assert login_rps / (hot_rps + login_rps) == pytest.approx(share)
    busy = (hot_rps * 40.0 + login_rps * 17_000.0) / 1e6
    assert busy == pytest.approx(0.5)


def placement_round(same_p99: float, tier_p99: float) -> dict[str, Any]:
    def run(p99: float) -> dict[str, Any]:
        hot = {"p50_ms": p99 / 4, "p99_ms": p99, "p999_ms": p99 * 2}
        return {"hot_rps_target": 5000, "login_rps_target": 25.1, "hot": hot, "login": {"p99_ms": 40.0}}

    return {"same": run(same_p99), "tier": run(tier_p99)}


def test_the_placement_ratio_is_the_tiers_p99_over_the_same_process_one() -> None:
    rounds = [placement_round(8.0, 2.0), placement_round(4.0, 2.0), placement_round(10.0, 4.0)]
    summary = topology.summarise_placement(rounds)
    assert summary["tier_vs_same_hot_p99"] == 0.4  # the median of 0.25, 0.5 and 0.4
    assert summary["same_hot_p99_ms"] == 8.0 and summary["tier_hot_p99_ms"] == 2.0
    assert summary["hot_rps_target"] == 5000 and summary["login_rps_target"] == 25.1


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("topology")
    command = [sys.executable, "-m", "bench.topology", "--quick", "--output-dir", str(directory)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return directory, json.loads((directory / "topology-latest.json").read_text())


@needs_wrk
@pytest.mark.timeout(330)
def test_a_quick_run_measures_both_blocks_and_writes_its_report(quick_run: tuple[Path, dict[str, Any]]) -> None:
    directory, results = quick_run
    assert (directory / "topology-latest.md").read_text().startswith("# Topologies on one machine")
    replicas = results["replicas"]
    (entry,) = replicas["rounds"]
    assert entry["one"]["processes"] == 1 and entry["two"]["processes"] == 2
    for run in (entry["one"], entry["two"]):
        assert run["requests"] > 0 and run["errors"] == 0, run
        assert run["service_cpu_us_per_request"] > 0, run
    # Both replicas served (the kernel spread the connections), and each heard every update's NOTIFY.
    assert all(spent > 0 for spent in entry["two"]["each_process_cpu_s"]), entry
    heard = entry["two"]["invalidations_received"]
    assert min(heard) > 0 and min(heard) >= 0.9 * max(heard), heard
    for block in ("placement", "surge"):
        placement = results[block]
        (paced,) = placement["rounds"]
        for where in ("same", "tier"):
            for kind in ("hot", "login"):
                assert paced[where][kind]["requests"] > 0 and paced[where][kind]["errors"] == 0, paced
        assert len(paced["tier"]["hot"]["each_process_cpu_s"]) == 2  # the hot process and the hashing one
        assert placement["tier_vs_same_hot_p99"] > 0
    surge, mix = results["surge"], results["placement"]
    assert surge["hot_rps_target"] == mix["hot_rps_target"]
    # Both targets are reported to 0.1/s: each within 0.05 of its exact value, the mix's then multiplied.
    times = results["settings"]["surge"]
    assert surge["login_rps_target"] == pytest.approx(times * mix["login_rps_target"], abs=0.05 * (1 + times))
