"""Policy on what charts/locust renders, the checks no scanner does: Services and policies select the pods
they mean, and the NetworkPolicies let exactly workers to master, both to the target and DNS. (checkov
runs on it in test_policy.py, with the exceptions of locust_policy_exceptions.yaml.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.charts import named, objects, of_kind, pod_labels, selects
from tests.deploy.locust_chart import CASE_NAMES, rendered
from tests.deploy.test_locust_chart_semantics import container, ports_of, values_of, workload
from tests.deploy.test_policy import container_ports, selected_workloads


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_service_selects_pods_that_have_its_target_ports(case: str) -> None:
    docs = objects(rendered(case))
    for service in of_kind(docs, "Service"):
        pods = selected_workloads(docs, service["spec"]["selector"])
        assert [pod["metadata"]["labels"]["app.kubernetes.io/component"] for pod in pods] == ["master"]
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports(pods[0]), f"{service['metadata']['name']}: {port}"


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_selector_matches_its_pods(case: str) -> None:
    docs = objects(rendered(case))
    for doc in of_kind(docs, "Deployment"):
        assert selects(doc["spec"]["selector"], pod_labels(doc)), doc["metadata"]["name"]
    for autoscaler in of_kind(docs, "HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        named(docs, target["kind"], target["name"])
    for policy in of_kind(docs, "NetworkPolicy"):
        assert len(selected_workloads(docs, policy["spec"]["podSelector"])) == 1, policy["metadata"]["name"]


def policy_for(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    [policy] = [
        p
        for p in of_kind(docs, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], pod_labels(workload(docs, component)))
    ]
    return policy


def egress_to(rule: dict[str, Any], labels: dict[str, str], namespace: str | None = None) -> bool:
    """Whether an egress rule's peers include pods with these labels (in that namespace, when it names one)."""
    for peer in rule.get("to", []):
        if not selects(peer.get("podSelector", {}), labels):
            continue
        names = peer.get("namespaceSelector", {}).get("matchLabels", {})
        if namespace is None or names.get("kubernetes.io/metadata.name") in (None, namespace):
            return True
    return False


NETWORK_CASES = [case for case in CASE_NAMES if values_of(case)["networkPolicy"]["enabled"]]


@pytest.mark.parametrize("case", NETWORK_CASES)
def test_workers_reach_the_master_port_and_nothing_reaches_the_workers(case: str) -> None:
    docs = objects(rendered(case))
    master, worker = workload(docs, "master"), workload(docs, "worker")
    master_port = ports_of(container(master))["master"]
    inbound = policy_for(docs, "master")["spec"]["ingress"]
    [from_workers] = [
        r
        for r in inbound
        if any("podSelector" in p and selects(p["podSelector"], pod_labels(worker)) for p in r["from"])
    ]
    assert [ports_of(container(master))[p["port"]] for p in from_workers["ports"]] == [master_port]
    worker_policy = policy_for(docs, "worker")["spec"]
    assert set(worker_policy["policyTypes"]) == {"Ingress", "Egress"} and "ingress" not in worker_policy
    to_master = [r for r in worker_policy["egress"] if egress_to(r, pod_labels(master))]
    assert [p["port"] for r in to_master for p in r["ports"]] == [master_port]


@pytest.mark.parametrize("case", NETWORK_CASES)
def test_master_and_workers_reach_the_target_pods_and_dns_only(case: str) -> None:
    docs = objects(rendered(case))
    target = values_of(case)["target"]
    namespace = target["namespace"] or "auth-service"
    for component in ("master", "worker"):
        egress = policy_for(docs, component)["spec"]["egress"]
        dns = [r for r in egress if any(p["port"] == 53 for p in r["ports"])]
        assert dns and all(egress_to(r, {"k8s-app": "kube-dns"}, "kube-system") for r in dns)
        to_target = [r for r in egress if r not in dns and egress_to(r, target["podLabels"], namespace)]
        assert [p["port"] for r in to_target for p in r["ports"]] == [target["port"]]
        others = [r for r in egress if r not in dns and r not in to_target]
        assert all(egress_to(r, pod_labels(workload(docs, "master"))) for r in others), (component, others)


@pytest.mark.parametrize("case", NETWORK_CASES)
def test_the_ui_is_reachable_from_the_listed_namespaces_only(case: str) -> None:
    docs = objects(rendered(case))
    inbound = policy_for(docs, "master")["spec"]["ingress"]
    to_ui = [r for r in inbound if any(p["port"] == "ui" for p in r["ports"])]
    namespaces = [
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for r in to_ui for p in r["from"]
    ]
    assert namespaces == (values_of(case)["networkPolicy"]["uiNamespaces"] if values_of(case)["mode"] == "ui" else [])
