"""The report's plumbing: every key of the issue is reported, what was not run says so, and a finding
with a broken promise is never a pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reliability import report, runner
from reliability.config import ISSUE_KEYS, QUICK
from reliability.scenario import Findings
from reliability.scenarios import SCENARIOS


def results(scenarios: dict[str, Any]) -> dict[str, Any]:
    machine = {"cpu_model": "x", "cores": 2, "kernel": "6", "memory_gib": 1.0, "load_average_at_start": [0, 0, 0]}
    return {
        "date": "2026-01-01 00:00 UTC",
        "date_stamp": "2026-01-01-0000",
        "profile": QUICK,
        "machine": machine,
        "versions": {"python": "3"},
        "database": "a test server",
        "elapsed_s": 1.0,
        "scenarios": scenarios,
        "summary": {"passed": 0, "failed": 0, "error": 0, "not run": len(scenarios)},
    }


async def test_every_issue_key_is_reported_and_the_unbuilt_ones_as_not_run() -> None:
    entries = await runner.run_all(None, (), QUICK)  # type: ignore[arg-type]  # nothing chosen: no context used
    assert set(ISSUE_KEYS) <= set(entries) and set(SCENARIOS) <= set(entries)
    assert {entries[key]["status"] for key in entries} == {runner.NOT_RUN}
    for key in ("overload", "slow", "brute"):
        if key not in SCENARIOS:
            assert entries[key]["observed"] == "no scenario is registered under this key yet"
            assert entries[key]["sent"] is None and entries[key]["failed"] is None


@pytest.mark.parametrize(
    "findings",
    [
        Findings(sent=10, failed=1),
        Findings(sent=10, lost_writes=1),
        Findings(sent=10, figures={"accepted_attacks": 2}),
        Findings(sent=10, problems=["readiness never turned 503"]),
    ],
    ids=["a failed request", "a lost write", "an accepted attack", "a problem"],
)
def test_a_broken_promise_is_never_a_pass(findings: Findings) -> None:
    entry = runner.entry(SCENARIOS["rolling"], findings, 1.0)
    assert entry["status"] == runner.FAILED and entry["problems"]


def test_a_finding_with_nothing_wrong_passes_and_keeps_its_figures() -> None:
    entry = runner.entry(SCENARIOS["database"], Findings(sent=5, figures={"recovery_s": 0.1}), 1.0)
    assert entry["status"] == runner.PASSED
    assert entry | {"recovery_s": 0.1, "sent": 5, "failed": 0, "lost_writes": 0} == entry


def test_a_scenario_that_breaks_is_an_error_not_a_pass() -> None:
    entry = runner.crashed(SCENARIOS["redis"], RuntimeError("redis-server did not start"), 1.0)
    assert entry["status"] == runner.ERROR and "redis-server did not start" in entry["observed"]


def test_the_report_names_every_scenario_and_its_figures(tmp_path: Path) -> None:
    scenarios = {key: runner.not_run(key, "not chosen") for key in ISSUE_KEYS}
    scenarios["database"] = runner.entry(
        SCENARIOS["database"],
        Findings(sent=7, figures={"recovery_s": 0.25, "connections_before": 3, "connections_after": 4}),
        2.0,
    )
    written = report.write(results(scenarios), tmp_path)
    assert {path.name for path in written} == {"latest.json", "2026-01-01-0000.json", "latest.md"}
    assert json.loads((tmp_path / "latest.json").read_text())["scenarios"].keys() == scenarios.keys()
    markdown = (tmp_path / "latest.md").read_text()
    for key in ISSUE_KEYS:
        assert f"| `{key}` |" in markdown
    assert "| `database` | passed | 7 | 0 | 0 | 0.25 |" in markdown and "3 → 4" in markdown
    assert markdown.count("**not run**") == len(ISSUE_KEYS) - 1
