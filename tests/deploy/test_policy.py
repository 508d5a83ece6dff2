"""Policy on what the chart renders: checkov with zero unexplained failures (for charts/locust too), and
the checks no scanner does (selectors, ports, the grace period, pinned images in production)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.deploy.charts import (
    CASE_NAMES,
    SERVICE,
    Chart,
    containers,
    named,
    objects,
    of_kind,
    pod_labels,
    pod_spec,
    rendered,
    selects,
    write_manifests,
)
from tests.deploy.kustomize import BUILDS, built
from tests.deploy.locust_chart import LOCUST
from tests.deploy.policy import Failure, checkov_failures, excepted, exceptions

CheckovRun = tuple[Chart, list[Failure], int]  # the chart, checkov's failures on it, how many checks passed


def shipped(chart: Chart) -> dict[str, str]:
    """What checkov reads for a chart: each case, and beside the service chart's the kustomize builds."""
    manifests = {f"{chart.name}-{case}": chart.rendered(case) for case in chart.case_names}
    return manifests | ({f"k8s-{name}": built(name) for name in BUILDS} if chart == SERVICE else {})


@pytest.fixture(scope="module", params=[SERVICE, LOCUST], ids=lambda chart: chart.name)
def checkov_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CheckovRun:
    """One run over every manifest of a chart (the project ships both)."""
    chart: Chart = request.param
    directory = tmp_path_factory.mktemp(f"{chart.name}-manifests")
    for name, manifests in shipped(chart).items():
        write_manifests(directory, name, manifests)
    return chart, *checkov_failures(directory)


def test_checkov_finds_nothing_unexplained(checkov_run: CheckovRun) -> None:
    chart, failures, passed = checkov_run
    assert passed > 500, "checkov ran no checks"
    unexplained = [str(failure) for failure in failures if not excepted(failure, exceptions(chart.policy_exceptions))]
    assert unexplained == []


def test_every_exception_is_still_needed(checkov_run: CheckovRun) -> None:
    chart, failures, _ = checkov_run
    for entry in exceptions(chart.policy_exceptions):
        assert any(excepted(failure, [entry]) for failure in failures), f"{entry['check']} no longer fails: remove it"


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if pod_spec(doc) is not None]


def selected_workloads(docs: list[dict[str, Any]], selector: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for doc in workloads(docs) if selects(selector, pod_labels(doc))]


def container_ports(doc: dict[str, Any]) -> set[str | int]:
    ports: set[str | int] = set()
    for container in containers(doc):
        for port in container.get("ports", []):
            ports |= {port["containerPort"], port.get("name", port["containerPort"])}
    return ports


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_service_selects_pods_that_have_its_target_ports(case: str) -> None:
    docs = objects(rendered(case))
    for service in of_kind(docs, "Service"):
        pods = selected_workloads(docs, service["spec"]["selector"])
        assert pods, f"Service/{service['metadata']['name']} selects no pods"
        for port in service["spec"]["ports"]:
            for pod in pods:
                assert port["targetPort"] in container_ports(pod), f"{service['metadata']['name']}: {port}"


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_selector_of_a_controller_matches_its_pods(case: str) -> None:
    docs = objects(rendered(case))
    for doc in [*of_kind(docs, "Deployment"), *of_kind(docs, "StatefulSet")]:
        assert selects(doc["spec"]["selector"], pod_labels(doc)), doc["metadata"]["name"]
    for budget in of_kind(docs, "PodDisruptionBudget"):
        assert selected_workloads(docs, budget["spec"]["selector"]), budget["metadata"]["name"]
    for policy in of_kind(docs, "NetworkPolicy"):
        pods = selected_workloads(docs, policy["spec"]["podSelector"])
        assert pods, f"NetworkPolicy/{policy['metadata']['name']} selects no pods"
    for autoscaler in of_kind(docs, "HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        named(docs, target["kind"], target["name"])


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_port_a_probe_or_policy_names_exists(case: str) -> None:
    docs = objects(rendered(case))
    for doc in workloads(docs):
        for container in containers(doc):
            ports = {p["containerPort"] for p in container.get("ports", [])} | {
                p["name"] for p in container.get("ports", []) if "name" in p
            }
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = container.get(probe, {}).get("httpGet") or container.get(probe, {}).get("tcpSocket")
                if action:
                    assert action["port"] in ports, f"{doc['metadata']['name']}/{container['name']} {probe}"
    for policy in of_kind(docs, "NetworkPolicy"):
        pods = selected_workloads(docs, policy["spec"]["podSelector"])
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                assert all(port["port"] in container_ports(pod) for pod in pods), (policy["metadata"]["name"], port)


@pytest.mark.parametrize("case", ["hpa-rps", "prod"])
def test_the_service_monitor_scrapes_a_port_that_exists(case: str) -> None:
    docs = objects(rendered(case))
    (monitor,) = of_kind(docs, "ServiceMonitor")
    services = [s for s in of_kind(docs, "Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
    assert len(services) == 1, [s["metadata"]["name"] for s in services]
    service_ports = {port["name"]: port for port in services[0]["spec"]["ports"]}
    pods = selected_workloads(docs, services[0]["spec"]["selector"])
    for endpoint in monitor["spec"]["endpoints"]:
        port = service_ports[endpoint["port"]]
        assert all(port["targetPort"] in container_ports(pod) for pod in pods), endpoint
    public = named(docs, "Service", "auth-auth-service")
    assert [port["name"] for port in public["spec"]["ports"]] == ["http"], "the admin port is not public"


def server_settings(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(named(docs, "ConfigMap", "auth-auth-service")["data"]["config.yaml"])


@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_grace_period_covers_the_drain_and_the_graceful_timeout(case: str) -> None:
    docs = objects(rendered(case))
    settings = server_settings(docs)
    pod = pod_spec(named(docs, "Deployment", "auth-auth-service"))
    assert pod is not None
    drain, graceful = settings["drain_delay_seconds"], settings["graceful_timeout_seconds"]
    assert pod["terminationGracePeriodSeconds"] > drain + graceful
    readiness = pod["containers"][0]["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= drain


@pytest.mark.parametrize("case", ["prod"])
def test_production_images_are_pinned(case: str) -> None:
    for doc in workloads(objects(rendered(case))):
        for container in containers(doc):
            image = container["image"]
            reference = image.rsplit("/", 1)[-1]
            assert ":" in reference or "@sha256:" in image, f"{image}: untagged"
            assert not reference.split("@")[0].endswith(":latest"), f"{image}: latest"


def alert_rules(case: str) -> list[dict[str, Any]]:
    (rule,) = of_kind(objects(rendered(case)), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_every_alert_expression_parses() -> None:
    rules = alert_rules("hpa-rps")
    assert len(rules) == 8
    for rule in rules:
        promql_parser.parse(rule["expr"])  # raises on a syntax error


def metric_names_of(expression: str) -> set[str]:
    """The metric names an expression selects (identifiers followed by a label matcher)."""
    return set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expression))


def test_the_alerts_cover_what_the_issue_names() -> None:
    metrics = set().union(*(metric_names_of(rule["expr"]) for rule in alert_rules("hpa-rps")))
    assert metrics == {
        "http_server_request_duration_seconds_bucket",  # p99 over budget
        "http_server_request_duration_seconds_count",  # 5xx ratio
        "db_pool_connections_in_use", "db_pool_size", "db_read_pool_connections_in_use", "db_read_pool_size",
        "db_pool_exhausted_total",  # pool refusals (503 db_pool_exhausted)
        "password_hash_rejected_total",  # hashing queue rejections
        "login_limit_refusals_total",  # guessing and signup floods held by the limits (429)
        "tracing_spans_dropped_total",  # dropped spans
        "cache_listener_connected",  # replicas disagreeing on invalidation
    }  # fmt: skip


def test_policy_exceptions_file_is_the_only_place_for_skips() -> None:
    """No checkov skip annotation hides in a template."""
    chart = Path(__file__).resolve().parents[2] / "charts"
    hidden = [str(p) for p in chart.rglob("*") if p.is_file() and "checkov.io/skip" in p.read_text(errors="ignore")]
    assert hidden == []
