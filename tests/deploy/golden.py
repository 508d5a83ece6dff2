"""Golden renders: each case's manifests as committed, so that a chart change shows in review.

`make chart-golden` writes them anew (python -m tests.deploy.golden); test_golden.py diffs against them.
What `helm template` generates at random (no cluster to look up the kept secrets) is masked.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.deploy.charts import CASE_NAMES, rendered

GOLDEN = Path(__file__).with_name("golden")
GENERATED = "GENERATED"
# A generated Secret's values (data of the chart's own Secrets) and the checksum that covers them.
_SECRET_VALUE = re.compile(r"^(  (?:token-keys|batch-token|admin-token|password|dsn): ).+$", re.M)
_SECRET_CHECKSUM = re.compile(r"^(\s+checksum/secret: ).+$", re.M)


def masked(manifests: str) -> str:
    manifests = _SECRET_VALUE.sub(rf"\g<1>{GENERATED}", manifests)
    return _SECRET_CHECKSUM.sub(rf"\g<1>{GENERATED}", manifests)


def golden_path(case: str) -> Path:
    return GOLDEN / f"{case}.yaml"


def main() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for stale in set(GOLDEN.glob("*.yaml")) - {golden_path(case) for case in CASE_NAMES}:
        stale.unlink()
    for case in CASE_NAMES:
        golden_path(case).write_text(masked(rendered(case)))
    print(f"wrote {len(CASE_NAMES)} golden renders to {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    main()
