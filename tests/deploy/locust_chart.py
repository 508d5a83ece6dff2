"""Rendering charts/locust as its tests check it: the values cases, the release the Tiltfile deploys, the
scenarios' copy in the chart. The shared helpers of charts.py (tools, objects, pod specs) do the rest."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from tests.deploy.charts import HELM, REPO, Case, run, tool

CHART = REPO / "charts" / "locust"
# The Tiltfile's release and namespace: the tests check what Tilt deploys, beside the service's release `auth`.
RELEASE = "locust"
NAMESPACE = "auth-service"
LOADTESTS = REPO / "loadtests"
FILES = CHART / "files" / "loadtests"
GOLDEN = Path(__file__).with_name("golden") / "locust"


def chart_cases() -> list[Case]:
    """Every ci/*-values.yaml case; dev is a link to values-dev.yaml."""
    return [Case(path.name.removesuffix("-values.yaml"), (path,)) for path in sorted((CHART / "ci").glob("*.yaml"))]


CASES = chart_cases()
CASE_NAMES = [case.name for case in CASES]


def case_named(name: str) -> Case:
    return next(case for case in CASES if case.name == name)


def helm_template(
    case: Case, *extra: str, helm: Path = HELM, chart: Path = CHART, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart (or a copy of it) for one case, as release RELEASE in NAMESPACE."""
    return run(tool(helm), "template", RELEASE, str(chart), "--namespace", NAMESPACE, *case.args(), *extra, check=check)


@functools.cache
def rendered(case_name: str) -> str:
    """The case's manifests (cached: each test reads them, none changes them)."""
    return helm_template(case_named(case_name)).stdout


def runtime_modules() -> dict[str, str]:
    """What the official image runs, by file name: loadtests/*.py but the capacity model's (stdlib and
    locust only). mk/chart.mk's chart-locust-files copies the same set."""
    paths = sorted(path for path in LOADTESTS.glob("*.py") if not path.name.startswith("capacity"))
    return {path.name: path.read_text() for path in paths}


def chart_modules(files: Path = FILES) -> dict[str, str]:
    """The chart's copy, by file name."""
    return {path.name: path.read_text() for path in sorted(files.glob("*")) if path.is_file()}
