"""Rendering the charts as the tests check them: the pinned tools, the values cases, the objects."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"
HELM = TOOLS / "bin" / "helm"
HELM3 = TOOLS / "bin" / "helm3"
KUBECTL = TOOLS / "bin" / "kubectl"
CHECKOV = TOOLS / "bin" / "checkov"
NPM_TOOLS = TOOLS / "npm" / "node_modules"
# The oldest and newest Kubernetes the chart supports (Chart.yaml's kubeVersion, kubernetes-validate's newest).
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Case:
    """A values case: the files layered on values.yaml, in order."""

    name: str
    files: tuple[Path, ...]

    def args(self) -> list[str]:
        return [arg for path in self.files for arg in ("--values", str(path))]


def tool(path: Path) -> str:
    """A pinned tool's path; `make tools` installs them (make test does it first)."""
    if not path.exists():
        raise RuntimeError(f"{path.relative_to(REPO)} is missing: run `make tools` (make test runs it)")
    return str(path)


def run(*command: str, check: bool = True, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout, **kwargs)


@dataclass(frozen=True)
class Chart:
    """A chart under test: its folder, the release and namespace it renders as, where its golden renders
    are and the file of its written checkov exceptions."""

    path: Path
    release: str
    namespace: str
    golden: Path
    policy_exceptions: Path

    @property
    def name(self) -> str:
        return self.path.name

    @functools.cached_property
    def cases(self) -> list[Case]:
        """Every ci/*-values.yaml case; some are links to a values-*.yaml beside values.yaml."""
        return [Case(p.name.removesuffix("-values.yaml"), (p,)) for p in sorted((self.path / "ci").glob("*.yaml"))]

    @functools.cached_property
    def case_names(self) -> list[str]:
        return [case.name for case in self.cases]

    def case_named(self, name: str) -> Case:
        return next(case for case in self.cases if case.name == name)

    def helm_template(
        self, case: Case, *extra: str, helm: Path = HELM, chart: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`helm template` of the chart (or of a copy at `chart`) for one case, as its release in its namespace."""
        where = ("--namespace", self.namespace)
        return run(
            tool(helm), "template", self.release, str(chart or self.path), *where, *case.args(), *extra, check=check
        )

    def rendered(self, case_name: str) -> str:
        """The case's manifests (cached: each test reads them, none changes them)."""
        return _rendered(self, case_name)


@functools.cache
def _rendered(chart: Chart, case_name: str) -> str:
    return chart.helm_template(chart.case_named(case_name)).stdout


def each_case(*charts: Chart) -> list[Any]:
    """Parameters (chart, case name) for every case of these charts, with ids `chart-case`."""
    return [pytest.param(chart, case, id=f"{chart.name}-{case}") for chart in charts for case in chart.case_names]


SERVICE = Chart(
    REPO / "charts" / "auth-service",
    release="auth",
    namespace="auth-service",
    golden=HERE / "golden",
    policy_exceptions=HERE / "policy_exceptions.yaml",
)
# The service chart's names, as most of its tests import them.
CHART, RELEASE, NAMESPACE = SERVICE.path, SERVICE.release, SERVICE.namespace
CASES, CASE_NAMES = SERVICE.cases, SERVICE.case_names
case_named, helm_template, rendered = SERVICE.case_named, SERVICE.helm_template, SERVICE.rendered


def objects(manifests: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(manifests) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} objects"
    return matches[0]


POD_SPEC_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "Pod": ("spec",),
}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload, or None for other kinds."""
    path = POD_SPEC_PATHS.get(doc["kind"])
    if path is None:
        return None
    spec = doc
    for key in path:
        spec = spec[key]
    return spec


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    if doc["kind"] == "Pod":
        return doc["metadata"].get("labels", {})
    return doc["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions with In, or a plain map) against labels."""
    match = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    if any(labels.get(key) != value for key, value in match.items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(doc)
    if spec is not None:
        yield from spec.get("initContainers", [])
        yield from spec["containers"]


def write_manifests(directory: Path, name: str, manifests: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(manifests)
    return path


def env_without_proxy_noise() -> dict[str, str]:
    """The environment for tools that would phone home (checkov's guideline download)."""
    return {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
