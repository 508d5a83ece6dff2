"""The chart renders every case, for Helm 4 and Helm 3, and every object validates strictly against
the oldest and newest Kubernetes it supports; bad values are refused with a readable message. The
strict lint and validation and the refusals (from the tables of test_locust_chart_render.py) are
checked here for charts/locust too."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import test_locust_chart_render as locust_render
from tests.deploy.charts import (
    CASE_NAMES,
    CHART,
    HELM,
    HELM3,
    KUBERNETES_VERSIONS,
    NPM_TOOLS,
    REPO,
    SERVICE,
    Chart,
    case_named,
    each_case,
    helm_template,
    objects,
    rendered,
    run,
    tool,
    write_manifests,
)
from tests.deploy.locust_chart import LOCUST

CUSTOM_RESOURCE_GROUPS = ("monitoring.coreos.com/",)
VALIDATE_CUSTOM_RESOURCES = Path(__file__).with_name("validate_custom_resources.mjs")


# Both charts lint strictly and validate strictly here; the Locust chart lints on Helm 3 too.
LINTED_ON = {SERVICE: {"helm4": HELM}, LOCUST: {"helm4": HELM, "helm3": HELM3}}


@pytest.mark.parametrize(
    ("chart", "case", "helm"),
    [
        pytest.param(chart, case, helm, id=f"{chart.name}-{case}-{helm_id}")
        for chart, helms in LINTED_ON.items()
        for helm_id, helm in helms.items()
        for case in chart.case_names
    ],
)
def test_lint_strict(chart: Chart, case: str, helm: Path) -> None:
    result = run(tool(helm), "lint", "--strict", str(chart.path), *chart.case_named(case).args(), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("chart", "case"), each_case(SERVICE, LOCUST))
def test_every_object_validates_strictly(chart: Chart, case: str, version: str, tmp_path: Path) -> None:
    path = write_manifests(tmp_path, case, chart.rendered(case))
    result = run(str(REPO / ".venv/bin/kubernetes-validate"), "--strict", "-k", version, str(path), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    validated, docs = result.stdout.count(" passed for resource "), objects(chart.rendered(case))
    # The service chart's custom resources are checked against their CRD schemas (below); the Locust
    # chart has none to leave out: kubernetes-validate passes every object of it.
    custom = [doc for doc in docs if doc["apiVersion"].startswith(CUSTOM_RESOURCE_GROUPS)] if chart == SERVICE else []
    assert validated + len(custom) == len(docs), result.stdout


@pytest.mark.parametrize("case", ["hpa-rps", "prod"])
def test_custom_resources_validate_against_their_crd_schemas(case: str) -> None:
    """ServiceMonitor and PrometheusRule, which kubernetes-validate has no schema for: the Prometheus
    Operator's own CRD schemas (@kubernetes-models/prometheus-operator). Like the API server, they do
    not refuse unknown fields (a CRD prunes them), but types, patterns and required fields are checked."""
    custom = [doc for doc in objects(rendered(case)) if doc["apiVersion"].startswith(CUSTOM_RESOURCE_GROUPS)]
    assert {doc["kind"] for doc in custom} == {"ServiceMonitor", "PrometheusRule"}
    result = run("node", str(VALIDATE_CUSTOM_RESOURCES), input=json.dumps(custom), cwd=NPM_TOOLS.parent, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("valid ") == len(custom), result.stdout


def test_custom_resource_validation_refuses_a_wrong_field() -> None:
    """The validator above can fail: an interval that is not a Prometheus duration is refused."""
    monitor = next(doc for doc in objects(rendered("prod")) if doc["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "15 seconds"
    result = run("node", str(VALIDATE_CUSTOM_RESOURCES), input=json.dumps([monitor]), cwd=NPM_TOOLS.parent, check=False)
    assert result.returncode != 0
    assert "interval must match pattern" in result.stdout + result.stderr


@pytest.mark.parametrize("case", CASE_NAMES)
def test_helm3_renders_what_helm4_renders(case: str) -> None:
    """The chart works on Helm 3 too: the same objects, but for the generated secrets' random values."""
    helm3 = objects(helm_template(case_named(case), helm=HELM3).stdout)
    helm4 = objects(rendered(case))
    assert [strip_random(doc) for doc in helm3] == [strip_random(doc) for doc in helm4]


def strip_random(doc: dict) -> dict:
    """The object without what `helm template` generates anew each time (no cluster to look up)."""
    text = json.dumps(doc)
    doc = json.loads(text)
    if doc["kind"] == "Secret":
        doc["data"] = sorted(doc.get("data", {}))
    annotations = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations", {})
    annotations.pop("checksum/secret", None)
    return doc


# Schema errors: Helm 4's message, then Helm 3's (another JSON-schema library words them its own way).
SCHEMA_ERRORS = {
    "negative replicas": (
        ["--set", "replicaCount=-1"],
        "at '/replicaCount': minimum: got -1, want 0",
        "replicaCount: Must be greater than or equal to 0",
    ),
    "missing image repository": (
        ["--set", "image.repository="],
        "at '/image/repository': minLength: got 0, want 1",
        "image.repository: String length must be greater than or equal to 1",
    ),
    "unknown key": (
        ["--set", "replicas=3"],
        "additional properties 'replicas' not allowed",
        "(root): Additional property replicas is not allowed",
    ),
    "unknown nested key": (
        ["--set", "config.poolSize=3"],
        "at '/config': additional properties 'poolSize' not allowed",
        "config: Additional property poolSize is not allowed",
    ),
    "wrong enum": (
        ["--set", "environment=staging"],
        "at '/environment': value must be one of 'production', 'test', 'development'",
        "environment: environment must be one of the following",
    ),
    "keep-alive of zero": (
        ["--set", "config.httpKeepAliveTimeoutSeconds=0"],
        "at '/config/httpKeepAliveTimeoutSeconds': exclusiveMinimum: got 0, want 0",
        "config.httpKeepAliveTimeoutSeconds: Must be greater than 0",
    ),
    "trusted proxy by name": (
        ["--set", "config.trustedProxies[0]=ingress-nginx"],
        "at '/config/trustedProxies/0': 'ingress-nginx' does not match pattern",
        "config.trustedProxies.0: Does not match pattern",
    ),
}

# The chart's own checks (templates/_checks.tpl): the same words on both.
CHECK_ERRORS = {
    "pool budget over max_connections": (
        ["--set", "config.dbReadPoolSize=20"],
        "database connections: 25 per pod (config.dbReadPoolSize 20 + config.dbPoolSize 4 + 1 listener) x 8 pods"
        " at most (6 replicas + 2 surging in a rollout) + 1 migration = 201, over database.maxConnections 100"
        " - database.reservedConnections 10 = 90",
    ),
    "memory below the hash workers": (
        ["--set", "resources.limits.memory=256Mi", "--set", "config.hashWorkers=4"],
        "memory: the pod's memory (256Mi = 256 MiB) is below what it needs: 576 MiB = memoryBaselineMiB 192"
        " + config.cacheMaxBytes 64 MiB + 4 hash workers x 65536 KiB (the larger of config.argon2MemoryKiB and"
        " config.argon2ImportMaxMemoryKiB) + config.httpMaxArrivingBodyBytes 64 MiB",
    ),
    "readiness slower than the drain": (
        ["--set", "probes.readiness.periodSeconds=5"],
        "probes: readiness fails 10 s after the drain starts",
    ),
    "latest in production": (["--set", "image.tag=latest"], "the tag `latest` is refused in production"),
    "no database": (["--set", "database.external.existingSecret="], "set database.external.existingSecret"),
    "bundled database in production": (
        ["--set", "database.external.existingSecret=", "--set", "postgresql.enabled=true"],
        "postgresql.enabled is a single-instance database for development clusters",
    ),
    "alerts without their scrape": (
        ["--set", "metrics.prometheusRule.enabled=true"],
        "without metrics.serviceMonitor.enabled they would match nothing",
    ),
    "live code in production": (["--set", "liveCode.enabled=true"], "liveCode.enabled runs code synced into the pod"),
    "existing keys without an active kid": (
        ["--set", "tokenKeys.existingSecret=keys"],
        "set tokenKeys.activeKid",
    ),
    "empty import memory range": (
        ["--set", "config.argon2ImportMinMemoryKiB=70000"],
        "imported hashes: the argon2 memory range is empty, 70000 (config.argon2ImportMinMemoryKiB) above 65536"
        " (config.argon2ImportMaxMemoryKiB); the service would refuse to start",
    ),
    "empty import time cost range, through extra": (
        ["--set", "config.extra.argon2_import_max_time_cost=1"],
        "imported hashes: the argon2 time cost range is empty, 2 (config.argon2ImportMinTimeCost) above 1"
        " (config.argon2ImportMaxTimeCost)",
    ),
}


# Both charts' refusals, checked alike: the default case with the table's settings.
SCHEMA_TABLES = {SERVICE: SCHEMA_ERRORS, LOCUST: locust_render.SCHEMA_ERRORS}
CHECK_TABLES = {SERVICE: CHECK_ERRORS, LOCUST: locust_render.CHECK_ERRORS}


def each_error(tables: dict[Chart, dict[str, Any]]) -> list[Any]:
    return [pytest.param(chart, name, id=f"{chart.name}-{name}") for chart, table in tables.items() for name in table]


def refusal(chart: Chart, args: list[str], helm: Path) -> str:
    """What `helm template` of the chart's default case with args says on stderr; it must fail."""
    result = chart.helm_template(chart.case_named("default"), *args, helm=helm, check=False)
    assert result.returncode != 0, f"{chart.name} {args}: rendered"
    return result.stderr


@pytest.mark.parametrize("helm", [HELM, HELM3], ids=["helm4", "helm3"])
@pytest.mark.parametrize(("chart", "name"), each_error(SCHEMA_TABLES))
def test_values_outside_the_schema_are_refused(chart: Chart, name: str, helm: Path) -> None:
    args, helm4_message, helm3_message = SCHEMA_TABLES[chart][name]
    stderr = refusal(chart, args, helm)
    assert (helm4_message if helm == HELM else helm3_message) in stderr, stderr


@pytest.mark.parametrize("helm", [HELM, HELM3], ids=["helm4", "helm3"])
@pytest.mark.parametrize(("chart", "name"), each_error(CHECK_TABLES))
def test_values_that_cannot_work_together_are_refused(chart: Chart, name: str, helm: Path) -> None:
    args, message = CHECK_TABLES[chart][name]
    stderr = refusal(chart, args, helm)
    assert message in stderr, stderr


def test_the_defaults_need_only_a_database() -> None:
    """`helm install` with the defaults needs one value, the database's Secret, and says so without it."""
    default_case = yaml.safe_load((CHART / "ci" / "default-values.yaml").read_text())
    assert default_case == {"database": {"external": {"existingSecret": "auth-service-database"}}}
    result = run(tool(HELM), "template", "x", str(CHART), check=False)
    assert result.returncode != 0
    assert "set database.external.existingSecret" in result.stderr


def notes_and_secrets(case: str) -> tuple[str, set[str]]:
    """NOTES.txt as `helm install` prints it, and every secret value the same install would create."""
    result = run(
        tool(HELM), "install", "auth", str(CHART), "--namespace", "auth-service", "--dry-run=client",
        *case_named(case).args(),
    )  # fmt: skip
    manifests, _, notes = result.stdout.partition("\nNOTES:\n")
    values = set()
    for doc in objects(manifests.split("\nMANIFEST:\n", 1)[-1]):
        if doc["kind"] == "Secret":
            values |= {base64.b64decode(value).decode() for value in doc.get("data", {}).values()}
    return notes, values


@pytest.mark.parametrize("case", ["default", "dev", "prod"])
def test_notes_say_what_to_do_next_and_print_no_secret(case: str) -> None:
    notes, secret_values = notes_and_secrets(case)
    for step in (
        "rollout status deployment/auth-auth-service",
        "helm test auth",
        "port-forward service/auth-auth-service 8000:80",
        "/v1/auth/verify",
        "port-forward deployment/auth-auth-service 9000:9000",
    ):
        assert step in notes, step
    if case == "dev":
        assert "port-forward service/auth-auth-service-jaeger 16686:16686" in notes
        assert len(secret_values) >= 4  # the generated ones and the bundled database's
    leaked = [value for value in secret_values if value and (value in notes or value.split("@")[0] in notes)]
    assert leaked == []
