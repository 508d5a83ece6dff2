"""`python -m bench.hashing`: both libraries measured in the same rounds, the ratio a median of the rounds'."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from tests.deploy.charts import REPO


def test_a_short_run_writes_both_libraries_figures_and_the_median_of_the_rounds_ratios(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "bench.hashing", "--rounds", "3", "--output-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    assert "libsodium" in done.stdout and "argon2-cffi" in done.stdout, done.stdout
    results = json.loads((tmp_path / "hashing-latest.json").read_text())
    assert len(list(tmp_path.glob("hashing-2*.json"))) == 1
    assert results["parameters"] == {"m_kib": 19456, "t": 2, "p": 1}
    figures = results["figures"]
    for operation in ("hash", "verify"):
        runs = figures[f"{operation}_ratio_runs"]
        assert len(runs) == 3 and all(0.2 < ratio < 5 for ratio in runs), figures
        assert figures[f"{operation}_ratio"] == round(statistics.median(runs), 3)
        # An argon2id pass over 19 MiB twice takes milliseconds of CPU, whatever the library.
        assert figures[f"libsodium_{operation}_ms"] > 2 and figures[f"argon2-cffi_{operation}_ms"] > 2, figures
    assert set(results["versions"]) == {"argon2-cffi", "argon2-cffi-bindings", "pynacl"}
