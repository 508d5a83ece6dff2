"""checkov on rendered manifests, with each chart's written exceptions (policy_exceptions.yaml for the
service chart and the kustomize builds, locust_policy_exceptions.yaml for charts/locust)."""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.charts import CHECKOV, env_without_proxy_noise, run, tool


@dataclass(frozen=True)
class Failure:
    check: str
    title: str
    resource: str  # Kind/name
    file: str

    def __str__(self) -> str:
        return f"{self.check} ({self.title}) on {self.resource} in {self.file}"


def exceptions(path: Path) -> list[dict[str, Any]]:
    """The written exceptions of a file; each names its check, the resources it spares and why."""
    entries = yaml.safe_load(path.read_text())
    for entry in entries:
        assert set(entry) == {"check", "resources", "reason"}, entry
        assert len(entry["reason"]) > 40, f"{entry['check']}: a reason, not a label"
    return entries


def checkov_failures(directory: Path) -> tuple[list[Failure], int]:
    """Every failed check of the manifests under directory, and the number of checks that passed."""
    result = run(
        tool(CHECKOV), "--directory", str(directory), "--framework", "kubernetes", "--output", "json",
        "--quiet", "--skip-download", check=False, timeout=300, env=env_without_proxy_noise(),
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]
    reports = json.loads(result.stdout) if result.stdout.strip() else []
    reports = reports if isinstance(reports, list) else [reports]
    failures, passed = [], 0
    for report in reports:
        if "results" not in report:  # nothing to check ("passed": 0 and an empty summary)
            continue
        assert report["summary"]["parsing_errors"] == 0, report["summary"]
        passed += report["summary"]["passed"]  # --quiet lists only the failures
        for failed in report["results"]["failed_checks"]:
            kind, *_, name = failed["resource"].split(".")
            failures.append(Failure(failed["check_id"], failed["check_name"], f"{kind}/{name}", failed["file_path"]))
    return failures, passed


def excepted(failure: Failure, entries: list[dict[str, Any]]) -> bool:
    return any(
        entry["check"] == failure.check and any(fnmatch.fnmatch(failure.resource, p) for p in entry["resources"])
        for entry in entries
    )
