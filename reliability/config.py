"""Where results go, which scenarios the report must name, and the two lengths a scenario runs at."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "reliability" / "results"

# The scenarios the issue names: each has an entry in every report, "not run" when none is registered
# under its key or it was not chosen; never a pass by omission.
ISSUE_KEYS = (
    "rolling",
    "database",
    "cancel",
    "redis",
    "overload",
    "slow",
    "schemathesis",
    "bad_input",
    "brute",
    "enumeration",
    "token",
    "secret",
)

# quick: the test suite's version of each scenario (seconds); long: `make reliability`'s (minutes in all).
QUICK, LONG = "quick", "long"
PROFILES = (QUICK, LONG)
