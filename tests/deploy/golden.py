"""Golden renders: each case's manifests as committed, so that a chart change shows in review.

`make chart-golden` writes them anew (python -m tests.deploy.golden); test_golden.py diffs against them.
What `helm template` generates at random (no cluster to look up the kept secrets) is masked.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.charts import SERVICE, Chart

GENERATED = "GENERATED"
# A generated Secret's values (data of the chart's own Secrets) and the checksum that covers them.
_SECRET_VALUE = re.compile(r"^(  (?:token-keys|batch-token|admin-token|password|dsn): ).+$", re.M)
_SECRET_CHECKSUM = re.compile(r"^(\s+checksum/secret: ).+$", re.M)


def masked(manifests: str) -> str:
    manifests = _SECRET_VALUE.sub(rf"\g<1>{GENERATED}", manifests)
    return _SECRET_CHECKSUM.sub(rf"\g<1>{GENERATED}", manifests)


@dataclass(frozen=True)
class Golden:
    """A chart's golden renders: what its mask hides, and the make target that writes them anew."""

    chart: Chart
    masked: Callable[[str], str]
    refresh: str

    def path(self, case: str) -> Path:
        return self.chart.golden / f"{case}.yaml"

    def cases(self) -> list[str]:
        """The cases that have a golden file."""
        return sorted(path.stem for path in self.chart.golden.glob("*.yaml"))

    def diff(self, case: str) -> str:
        """How the case's masked render differs from its golden file ('' when it does not)."""
        expected, actual = self.path(case).read_text(), self.masked(self.chart.rendered(case))
        return "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "golden", "rendered"))

    def write(self) -> None:
        """Each case's golden file anew, and none for a case that is gone."""
        names = self.chart.case_names
        self.chart.golden.mkdir(parents=True, exist_ok=True)
        for stale in set(self.chart.golden.glob("*.yaml")) - {self.path(case) for case in names}:
            stale.unlink()
        for case in names:
            self.path(case).write_text(self.masked(self.chart.rendered(case)))
        print(f"wrote {len(names)} golden renders to {self.chart.golden}", file=sys.stderr)


GOLDEN = Golden(SERVICE, masked, "make chart-golden")


if __name__ == "__main__":
    GOLDEN.write()
