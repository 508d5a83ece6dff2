"""Locust as the tests run it: always a process of its own (importing locust here would patch this
process with gevent under the asyncio suite), with a clean environment, and its CSV reports read back."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"
# Variables of the shell that would change the run: the tests give their own.
SCRUBBED_PREFIXES = ("AUTH_", "OTEL_", "LOCUST_", "LOADTEST_")
# Budgets no run on a shared 2-core machine misses: these tests are about the machinery, not speed.
LOOSE_BUDGETS = {
    f"LOADTEST_{tier}_{percentile}_MS": "10000"
    for tier in ("HOT", "DATABASE", "HASHING")
    for percentile in ("P99", "P999")
}
# Stop a run that hangs long before pytest's own timeout does.
RUN_TIMEOUT_SECONDS = 90


def clean_env(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(SCRUBBED_PREFIXES)}
    return env | {"PYTHONDONTWRITEBYTECODE": "1"} | settings


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)


def locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


def stats_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """Locust's requests CSV: (Type, Name) -> its row."""
    with path.open() as rows:
        return {(row["Type"], row["Name"]): row for row in csv.DictReader(rows)}


def data_rows(path: Path) -> list[dict[str, str]]:
    """A CSV report's rows below its header (failures, exceptions)."""
    with path.open() as rows:
        return list(csv.DictReader(rows))


def tail(completed: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    return "\n".join((completed.stdout + completed.stderr).splitlines()[-lines:])
