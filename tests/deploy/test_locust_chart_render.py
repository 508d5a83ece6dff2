"""charts/locust renders every case on Helm 4 and Helm 3 alike and installs as it is: the scenarios
travel inside the chart. test_chart_render.py lints it strictly, validates it strictly against the oldest
and newest Kubernetes it supports and checks that it refuses bad values (the tables below) with a
readable message, as it does the service chart."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.deploy.charts import HELM, HELM3, REPO, objects, run, tool, write_manifests
from tests.deploy.locust_chart import (
    CASE_NAMES,
    CHART,
    NAMESPACE,
    RELEASE,
    case_named,
    helm_template,
    rendered,
    runtime_modules,
)


def test_the_validator_refuses_a_field_kubernetes_does_not_have(tmp_path: Path) -> None:
    """The strict validation above can fail: a misspelt field of a worker's container is refused."""
    docs = objects(rendered("default"))
    worker = next(doc for doc in docs if doc["metadata"]["name"] == "locust-worker" and doc["kind"] == "Deployment")
    worker["spec"]["template"]["spec"]["containers"][0]["arg"] = ["--worker"]
    path = write_manifests(tmp_path, "wrong", yaml.safe_dump(worker))
    result = run(str(REPO / ".venv/bin/kubernetes-validate"), "--strict", str(path), check=False)
    assert result.returncode != 0 and "arg" in result.stdout + result.stderr


@pytest.mark.parametrize("case", CASE_NAMES)
def test_helm3_renders_what_helm4_renders(case: str) -> None:
    assert objects(helm_template(case_named(case), helm=HELM3).stdout) == objects(rendered(case))


def test_the_chart_installs_as_it_is_with_the_scenarios_inside(tmp_path: Path) -> None:
    """`helm package` keeps files/ (every runtime module) and leaves out ci/; the package renders alone."""
    result = run(tool(HELM), "package", str(CHART), "--destination", str(tmp_path))
    [package] = tmp_path.glob("locust-*.tgz")
    assert str(package) in result.stdout
    with tarfile.open(package) as archive:
        names = set(archive.getnames())
    assert {f"locust/files/loadtests/{name}" for name in runtime_modules()} <= names
    assert not [name for name in names if "/ci/" in name or "__pycache__" in name or "capacity" in name]
    installed = run(tool(HELM), "install", RELEASE, str(package), "--namespace", NAMESPACE, "--dry-run=client")
    assert "kind: ConfigMap" in installed.stdout and "locustfile.py: |" in installed.stdout


# What the chart refuses, which test_chart_render.py checks on both Helms beside the service chart's.
# Schema errors: Helm 4's message, then Helm 3's (another JSON-schema library words them its own way).
SCHEMA_ERRORS = {
    "unknown mode": (
        ["--set", "mode=distributed"],
        "at '/mode': value must be one of 'ui', 'headless'",
        "mode: mode must be one of the following",
    ),
    "no workers": (
        ["--set", "workers.replicas=0"],
        "at '/workers/replicas': minimum: got 0, want 1",
        "workers.replicas: Must be greater than or equal to 1",
    ),
    "unknown key": (
        ["--set", "worker.replicas=3"],
        "additional properties 'worker' not allowed",
        "(root): Additional property worker is not allowed",
    ),
    "unknown nested key": (
        ["--set", "workers.autoscaling.targetCPU=50"],
        "at '/workers/autoscaling': additional properties 'targetCPU' not allowed",
        "workers.autoscaling: Additional property targetCPU is not allowed",
    ),
    "a host without its scheme": (
        ["--set", "target.host=auth-auth-service:80"],
        "at '/target/host': 'auth-auth-service:80' does not match pattern",
        "target.host: Does not match pattern",
    ),
    "a run time Locust cannot parse": (
        ["--set", "headless.runTime=10 minutes"],
        "at '/headless/runTime': '10 minutes' does not match pattern",
        "headless.runTime: Does not match pattern",
    ),
    "a spread that is not a policy": (
        ["--set", "workers.topologySpread.whenUnsatisfiable=Never"],
        "at '/workers/topologySpread/whenUnsatisfiable': value must be one of 'ScheduleAnyway', 'DoNotSchedule'",
        "workers.topologySpread.whenUnsatisfiable: workers.topologySpread.whenUnsatisfiable must be one of",
    ),
    "a relative reports folder": (
        ["--set", "results.mountPath=results"],
        "at '/results/mountPath': 'results' does not match pattern",
        "results.mountPath: Does not match pattern",
    ),
    "an environment variable that is not the scenario's": (
        ["--set", "scenario.env.PATH=/bin"],
        "invalid propertyName 'PATH'",
        'scenario.env: Property name of "PATH" does not match',
    ),
}

# The chart's own checks (templates/_checks.tpl): the same words on both.
CHECK_ERRORS = {
    "no batch token": (
        ["--set", "target.batchToken.existingSecret="],
        "target.batchToken.existingSecret: the master seeds its test users through POST /v1/users:batch",
    ),
    "an autoscaled headless run": (
        ["--set", "mode=headless", "--set", "workers.autoscaling.enabled=true"],
        "a headless run waits for workers.replicas workers (--expect-workers) and is sized before it starts",
    ),
    "a headless run that nothing ends": (
        ["--set", "mode=headless", "--set", "scenario.shape=none"],
        "headless.runTime: with scenario.shape none no shape ends the run; set headless.runTime",
    ),
    "a variable the chart sets itself": (
        ["--set", "scenario.env.LOADTEST_RATE=5"],
        "scenario.env.LOADTEST_RATE: the chart sets LOADTEST_RATE from scenario.targetRps; set that instead",
    ),
    "an empty autoscaling range": (
        ["--set", "workers.autoscaling.minReplicas=5", "--set", "workers.autoscaling.maxReplicas=4"],
        "workers.autoscaling: minReplicas 5 is above maxReplicas 4",
    ),
}


def test_a_chart_without_its_scenarios_says_how_to_copy_them(tmp_path: Path) -> None:
    copy = tmp_path / "locust"
    run("cp", "-r", str(CHART), str(copy))
    (copy / "files" / "loadtests" / "locustfile.py").unlink()
    result = helm_template(case_named("default"), chart=copy, check=False)
    assert result.returncode != 0
    assert "files/loadtests/locustfile.py is missing from the chart: run `make chart-locust-files`" in result.stderr


def test_the_defaults_need_no_values() -> None:
    """`helm install` with nothing set: the service chart's release `auth` in the same namespace."""
    assert yaml.safe_load((CHART / "ci" / "default-values.yaml").read_text()) == {}
    result = run(tool(HELM), "template", "x", str(CHART))
    assert re.search(r"kind: Deployment\n", result.stdout)
