"""Rendering charts/locust as its tests check it: the values cases, the release the Tiltfile deploys, the
scenarios' copy in the chart. The shared helpers of charts.py (tools, objects, pod specs) do the rest."""

from __future__ import annotations

from pathlib import Path

from tests.deploy.charts import HERE, REPO, Chart

# The Tiltfile's release and namespace: the tests check what Tilt deploys, beside the service's release `auth`.
LOCUST = Chart(
    REPO / "charts" / "locust",
    release="locust",
    namespace="auth-service",
    golden=HERE / "golden" / "locust",
    policy_exceptions=HERE / "locust_policy_exceptions.yaml",
)
# The names the Locust chart's tests import.
CHART, RELEASE, NAMESPACE, GOLDEN = LOCUST.path, LOCUST.release, LOCUST.namespace, LOCUST.golden
CASES, CASE_NAMES = LOCUST.cases, LOCUST.case_names
case_named, helm_template, rendered = LOCUST.case_named, LOCUST.helm_template, LOCUST.rendered
LOADTESTS = REPO / "loadtests"
FILES = CHART / "files" / "loadtests"


def runtime_modules() -> dict[str, str]:
    """What the official image runs, by file name: loadtests/*.py but the capacity model's (stdlib and
    locust only). mk/chart.mk's chart-locust-files copies the same set."""
    paths = sorted(path for path in LOADTESTS.glob("*.py") if not path.name.startswith("capacity"))
    return {path.name: path.read_text() for path in paths}


def chart_modules(files: Path = FILES) -> dict[str, str]:
    """The chart's copy, by file name."""
    return {path.name: path.read_text() for path in sorted(files.glob("*")) if path.is_file()}
