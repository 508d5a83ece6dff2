"""k8s/: the kustomize base and overlays build and validate strictly (checkov: test_policy.py), pass Pod Security
`restricted`, and agree with the chart they mirror (every deliberate difference listed with its
reason); the prometheus-adapter rule, the kind cluster and the namespace's quota fit the chart."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from auth_service.observability.metrics import RequestLatencies
from auth_service.settings import PLACEHOLDER_SECRETS, Settings
from tests.deploy.charts import (
    CHART,
    KUBERNETES_VERSIONS,
    REPO,
    containers,
    named,
    objects,
    of_kind,
    pod_labels,
    pod_spec,
    rendered,
    run,
    selects,
    write_manifests,
)
from tests.deploy.kustomize import (
    BUILDS,
    K8S,
    built,
    built_objects,
    container_resources,
    most_used,
    of_component,
    quantity,
    restricted_violations,
    surge_pods,
    workloads,
)

CHART_VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
PROD_VALUES = yaml.safe_load((CHART / "values-prod.yaml").read_text())
NAMESPACES = {"base": "auth-service", "prod": "auth-service", "dev": "auth-service-dev"}
ADAPTER = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
KIND = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
REGISTRY_CONFIGMAP = K8S / "kind" / "local-registry-hosting.yaml"


# ---- Builds, schemas, policy ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILDS))
def test_every_kustomization_builds_into_its_namespace(name: str) -> None:
    docs = built_objects(name)
    assert docs, f"{name} builds nothing"
    expected = NAMESPACES.get(name, "auth-service")
    for doc in docs:
        where = doc["metadata"]["name"] if doc["kind"] == "Namespace" else doc["metadata"].get("namespace")
        assert where == expected, f"{name}: {doc['kind']}/{doc['metadata']['name']} in {where}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly(version: str, tmp_path: Path) -> None:
    paths = [write_manifests(tmp_path, name, built(name)) for name in BUILDS] + [REGISTRY_CONFIGMAP]
    result = run(str(REPO / ".venv/bin/kubernetes-validate"), "--strict", "-k", version, *map(str, paths), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    total = sum(len(built_objects(name)) for name in BUILDS) + len(objects(REGISTRY_CONFIGMAP.read_text()))
    assert result.stdout.count(" passed for resource ") == total, result.stdout


def port_names_and_numbers(pods: list[dict[str, Any]]) -> set[str | int]:
    return {
        p.get(k) for pod in pods for c in containers(pod) for p in c.get("ports", []) for k in ("name", "containerPort")
    }


@pytest.mark.parametrize("name", ["base", "dev", "prod"])
def test_every_selector_selects_pods_with_the_ports_it_names(name: str) -> None:
    docs = built_objects(name)
    pods = workloads(docs)
    for doc in [*of_kind(docs, "Deployment"), *of_kind(docs, "StatefulSet")]:
        assert selects(doc["spec"]["selector"], pod_labels(doc)), doc["metadata"]["name"]
    for doc in [*of_kind(docs, "Service"), *of_kind(docs, "PodDisruptionBudget"), *of_kind(docs, "NetworkPolicy")]:
        chosen = [
            pod for pod in pods if selects(doc["spec"].get("selector") or doc["spec"]["podSelector"], pod_labels(pod))
        ]
        assert chosen, f"{doc['kind']}/{doc['metadata']['name']} selects no pods"
        targets = [p["targetPort"] for p in doc["spec"].get("ports", [])]
        targets += [p["port"] for rule in doc["spec"].get("ingress", []) for p in rule.get("ports", [])]
        assert set(targets) <= port_names_and_numbers(chosen), f"{doc['kind']}/{doc['metadata']['name']}: {targets}"


@pytest.mark.parametrize("name", ["base", "dev", "prod"])
def test_every_network_policy_peer_of_the_namespace_selects_pods(name: str) -> None:
    docs = built_objects(name)
    for policy in of_kind(docs, "NetworkPolicy"):
        rules = [*policy["spec"].get("ingress", []), *policy["spec"].get("egress", [])]
        peers = [peer for rule in rules for peer in rule.get("from", []) + rule.get("to", [])]
        for peer in [p for p in peers if "podSelector" in p and "namespaceSelector" not in p]:
            assert any(selects(peer["podSelector"], pod_labels(pod)) for pod in workloads(docs)), peer


@pytest.mark.parametrize("name", ["base", "dev", "prod"])
def test_every_reference_finds_its_object(name: str) -> None:
    """The HPA's target, the pods' ServiceAccount and ConfigMap, and in dev (which generates them) the
    Secrets; the base and prod reference Secrets created outside k8s/."""
    docs = built_objects(name)
    present = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        assert (hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"]) in present
    for doc in workloads(docs):
        spec = pod_spec(doc)
        assert spec is not None
        if "serviceAccountName" in spec:
            assert ("ServiceAccount", spec["serviceAccountName"]) in present
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in present, volume
        refs = [
            e["valueFrom"]["secretKeyRef"]
            for c in containers(doc)
            for e in c.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        ]
        assert refs
        if name == "dev":
            assert all(("Secret", ref["name"]) in present for ref in refs), refs


def test_only_the_dev_overlay_holds_secrets_and_they_say_so() -> None:
    for name in ("base", "prod", "namespace", "namespace-prod"):
        assert of_kind(built_objects(name), "Secret") == [], f"{name} creates a Secret"
    secrets = of_kind(built_objects("dev"), "Secret")
    assert len(secrets) == 4
    for secret in secrets:
        for key, value in secret["data"].items():
            assert "dev-only" in base64.b64decode(value).decode(), f"{secret['metadata']['name']}/{key}"


# ---- Pod Security `restricted` ----------------------------------------------------------------------

POD_SOURCES = {
    "chart default": lambda: objects(rendered("default")),
    "chart prod": lambda: objects(rendered("prod")),
    "chart dev": lambda: objects(rendered("dev")),
    **{f"k8s {name}": (lambda name=name: built_objects(name)) for name in ("base", "dev", "prod")},
}


@pytest.mark.parametrize("source", list(POD_SOURCES))
def test_every_pod_passes_pod_security_restricted(source: str) -> None:
    docs = POD_SOURCES[source]()
    assert workloads(docs)
    for doc in workloads(docs):
        spec = pod_spec(doc)
        assert spec is not None
        assert restricted_violations(spec) == [], f"{doc['kind']}/{doc['metadata']['name']}"


MUTATIONS = {
    "privilege escalation": lambda s: s["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
    "a capability kept": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
    "a capability added": lambda s: s["containers"][0]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    "root": lambda s: s["securityContext"].update(runAsUser=0),
    "non-root not required": lambda s: s["securityContext"].pop("runAsNonRoot"),
    "no seccomp": lambda s: s["securityContext"].pop("seccompProfile"),
    "unconfined in a container": lambda s: s["containers"][0]["securityContext"].update(
        seccompProfile={"type": "Unconfined"}
    ),
    "host network": lambda s: s.update(hostNetwork=True),
    "host PID": lambda s: s.update(hostPID=True),
    "host port": lambda s: s["containers"][0]["ports"][0].update(hostPort=8000),
    "host path": lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
    "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_restricted_check_refuses_what_psa_refuses(mutation: str) -> None:
    """The check above can fail: the chart's server pod, with one thing PSA `restricted` refuses."""
    spec = copy.deepcopy(pod_spec(of_component(objects(rendered("default")), "Deployment", "server")))
    assert spec is not None and restricted_violations(spec) == []
    MUTATIONS[mutation](spec)
    assert restricted_violations(spec), mutation


def test_the_namespace_enforces_restricted_at_a_pinned_version() -> None:
    (namespace,) = of_kind(built_objects("namespace"), "Namespace")
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert re.fullmatch(r"v1\.\d+", labels["pod-security.kubernetes.io/enforce-version"])
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
    (dev,) = of_kind(built_objects("dev"), "Namespace")
    psa = {k: v for k, v in labels.items() if k.startswith("pod-security.kubernetes.io/")}
    assert psa.items() <= dev["metadata"]["labels"].items(), "the dev overlay enforces what production does"


# ---- The same service as the chart ---------------------------------------------------------------

HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
_HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def as_kustomize_names(value: Any) -> Any:
    """A chart object named as k8s/ names it: release `auth` -> instance `auth-service`, the full name
    `auth-auth-service` -> `auth-service` (in names, references and values)."""
    text = json.dumps(value).replace("auth-auth-service", "auth-service")
    value = json.loads(text)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: walk(v) for k, v in node.items()}
            if node.get("app.kubernetes.io/instance") == "auth":
                node["app.kubernetes.io/instance"] = "auth-service"
            if node.get("key") == "app.kubernetes.io/instance":
                node["values"] = ["auth-service" if v == "auth" else v for v in node["values"]]
            return node
        return [walk(v) for v in node] if isinstance(node, list) else node

    return walk(value)


def unhashed(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """k8s/ objects with the generated ConfigMaps' and Secrets' hash suffixes taken off, everywhere."""
    generated = {d["metadata"]["name"] for d in docs if d["kind"] in ("ConfigMap", "Secret")}
    text = json.dumps(docs)
    for name in generated:
        if _HASH_SUFFIX.search(name):
            text = text.replace(f'"{name}"', f'"{_HASH_SUFFIX.sub("", name)}"')
    return json.loads(text)


def without(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in keys}


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def secret_refs(container: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (n, v["secretKeyRef"]["name"], v["secretKeyRef"]["key"])
        for n, v in env_of(container).items()
        if isinstance(v, dict) and "secretKeyRef" in v
    }


def secrets_masked(value: Any) -> Any:
    """The value with the names of the Secrets it references masked (compared apart, by secret_refs)."""
    if isinstance(value, list):
        return [secrets_masked(v) for v in value]
    if not isinstance(value, dict):
        return value
    masked = {k: secrets_masked(v) for k, v in value.items()}
    if "secretKeyRef" in masked:
        masked["secretKeyRef"] = {**masked["secretKeyRef"], "name": "SECRET"}
    return masked


def view(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the test compares: the service's objects, field by field."""
    deployment = of_component(docs, "Deployment", "server")
    pod = pod_spec(deployment)
    assert pod is not None
    (server,) = [c for c in pod["containers"] if c["name"] == "auth-service"]
    job = of_component(docs, "Job", "migrate")
    job_pod = pod_spec(job)
    assert job_pod is not None
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    pdbs = of_kind(docs, "PodDisruptionBudget")
    settings = yaml.safe_load(named(docs, "ConfigMap", "auth-service")["data"]["config.yaml"])
    return {
        "deployment.strategy": deployment["spec"]["strategy"],
        "deployment.replicas": deployment["spec"].get("replicas"),
        "deployment.revisionHistoryLimit": deployment["spec"]["revisionHistoryLimit"],
        "deployment.selector": deployment["spec"]["selector"],
        "pod.labels": without(pod_labels(deployment), *HELM_LABELS),
        "pod.helmLabels": {k: v for k, v in pod_labels(deployment).items() if k in HELM_LABELS},
        "pod.annotations": deployment["spec"]["template"]["metadata"].get("annotations", {}),
        "pod.spec": without(pod, "containers", "initContainers", "volumes"),
        "pod.volumes": pod["volumes"],
        "pod.initContainers": pod.get("initContainers", []),
        "server": without(server, "env", "startupProbe", "readinessProbe", "livenessProbe"),
        "server.probes": {p: server[p] for p in ("startupProbe", "readinessProbe", "livenessProbe")},
        "server.env.names": sorted(env_of(server)),
        "server.env": secrets_masked(env_of(server)),
        "server.env.secrets": sorted(secret_refs(server)),
        "settings": settings,
        "settings.keys": sorted(settings),
        "serviceaccount": named(docs, "ServiceAccount", "auth-service").get("automountServiceAccountToken"),
        "hpa": [h["spec"] for h in hpas],
        "pdb": [p["spec"] for p in pdbs],
        "job": without(job["spec"], "template"),
        "job.annotations": job["metadata"].get("annotations", {}),
        "job.pod": without(job_pod, "serviceAccountName", "containers"),
        "job.serviceAccountName": job_pod.get("serviceAccountName"),
        "job.container": without(job_pod["containers"][0], "env"),
        "job.env": secrets_masked(env_of(job_pod["containers"][0])),
        "job.env.secrets": sorted(secret_refs(job_pod["containers"][0])),
        **{f"service/{s['metadata']['name']}": s["spec"] for s in of_kind(docs, "Service")},
        **{f"networkpolicy/{p['metadata']['name']}": p["spec"] for p in of_kind(docs, "NetworkPolicy")},
        **{f"statefulset/{s['metadata']['name']}": statefulset_view(s) for s in of_kind(docs, "StatefulSet")},
    }


def statefulset_view(statefulset: dict[str, Any]) -> dict[str, Any]:
    """The bundled PostgreSQL: its spec, Helm's labels off, its Secret's name masked."""
    spec = copy.deepcopy(statefulset["spec"])
    spec["template"]["metadata"]["labels"] = without(spec["template"]["metadata"]["labels"], *HELM_LABELS)
    return secrets_masked(spec)


NO_HOOKS = (
    "kustomize has no hooks: the Job runs beside the pods, which wait for the schema "
    "(the chart's migrations.waitForSchema)"
)
CHECKSUMS = "the chart rolls the pods by checksum annotations; k8s/ by the generated ConfigMap's hashed name"
HELM_ONLY = "Helm's own labels (chart version, managed-by Helm); k8s/ says managed-by kustomize"
JOB_SA = (
    "a hook runs before the release's ServiceAccount exists; the ordinary Job uses the service's, "
    "as the chart's non-hook Job does"
)
# Per comparison, the fields that differ on purpose, each with the reason.
DIFFERENCES: dict[str, dict[str, str]] = {
    "base/default": {
        "pod.initContainers": NO_HOOKS,
        "pod.annotations": CHECKSUMS,
        "pod.helmLabels": HELM_ONLY,
        "job.annotations": "the chart's Job is a pre-install,pre-upgrade hook; " + NO_HOOKS,
        "job.serviceAccountName": JOB_SA,
        "server.env.secrets": (
            "the chart's defaults generate the token keys, batch and admin tokens into a Secret of their "
            "own; the base references the Secrets values-prod.yaml names"
        ),
        "settings": "token_active_kid: the chart generates generated-1; the base's Secret holds values-prod's 2026-12",
    },
    "prod/prod": {
        "pod.initContainers": NO_HOOKS,
        "pod.annotations": CHECKSUMS,
        "pod.helmLabels": HELM_ONLY,
        "job.annotations": "the chart's Job is a pre-install,pre-upgrade hook; " + NO_HOOKS,
        "job.serviceAccountName": JOB_SA,
    },
    "dev/dev": {
        "pod.initContainers": "the chart's dev pods also copy the package for Tilt's live_update (liveCode): Tilt's",
        "pod.volumes": "liveCode's emptyDir (/live)",
        "server": "liveCode's /live mount",
        "server.env.names": "liveCode's PYTHONPATH, and the chart's dev traces to its bundled collector (none here)",
        "server.env": "as server.env.names",
        "server.env.secrets": (
            "the chart keeps the DSN in its PostgreSQL Secret and generates the rest into one Secret; "
            "the overlay generates the Secrets the base names"
        ),
        "networkpolicy/auth-service": "the chart's dev opens egress to its bundled collector; no tracing here",
        "pod.annotations": CHECKSUMS,
        "pod.helmLabels": HELM_ONLY,
        "settings": "token_active_kid: the chart generates generated-1, the overlay's Secret holds dev-1",
        "job.env.secrets": "the DSN's Secret: the chart's PostgreSQL Secret, the overlay's auth-service-database",
    },
}
# Objects one side has and the other has not, each with the reason.
HELM_TEST = "the `helm test` pod: a Helm hook"
CRDS = "needs the Prometheus Operator's CRDs (k8s/README.md says how to render it from the chart)"
GENERATED = "the chart's generated secrets (Helm's lookup keeps them); the base references Secrets"
DEV_SECRETS = "the dev overlay generates the Secrets the base references, the database's password with its DSN"
TRACES = "the dev trace pipeline (collector, Jaeger) is the chart's and Tilt's; the overlay leaves tracing off"
ONLY_IN_CHART: dict[str, dict[str, str]] = {
    "base/default": {"Pod/auth-service-smoke-test": HELM_TEST, "Secret/auth-service": GENERATED},
    "prod/prod": {
        "Pod/auth-service-smoke-test": HELM_TEST,
        "ServiceMonitor/auth-service": CRDS,
        "PrometheusRule/auth-service": CRDS,
        "Service/auth-service-admin": "the ServiceMonitor's headless Service: comes with it",
    },
    "dev/dev": {
        "Pod/auth-service-smoke-test": HELM_TEST,
        "Secret/auth-service": GENERATED,
        "Secret/auth-service-postgresql": DEV_SECRETS,
        "Job/auth-service-migrate-1": (
            "the chart names its ordinary Job per revision (a Job's template cannot change); "
            "k8s/ deletes and re-applies one (README, Migrations)"
        ),
        **{
            f"{kind}/auth-service-{part}": TRACES
            for kind in ("Deployment", "Service")
            for part in ("collector", "jaeger")
        },
        "ConfigMap/auth-service-collector": TRACES,
    },
}
ONLY_IN_K8S: dict[str, dict[str, str]] = {
    "base/default": {},
    "prod/prod": {},
    "dev/dev": {
        "Namespace/auth-service-dev": "the dev overlay is self-contained: its namespace, quota and limits",
        "ResourceQuota/auth-service": "the dev overlay is self-contained",
        "LimitRange/auth-service": "the dev overlay is self-contained",
        "Job/auth-service-migrate": "one Job, deleted before a new image is applied (README, Migrations)",
        **{
            f"Secret/auth-service-{name}": DEV_SECRETS
            for name in ("database", "token-keys", "batch-token", "admin-token")
        },
    },
}
PAIRS = {"base/default": ("base", "default"), "prod/prod": ("prod", "prod"), "dev/dev": ("dev", "dev")}


def sides(pair: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ours, case = PAIRS[pair]
    return unhashed(built_objects(ours)), as_kustomize_names(objects(rendered(case)))


@pytest.mark.parametrize("pair", list(PAIRS))
def test_the_service_is_the_charts(pair: str) -> None:
    """Every compared field equal, but those DIFFERENCES lists; and those do differ (no stale entry)."""
    ours, chart = sides(pair)
    ours_view, chart_view = view(ours), view(chart)
    assert set(DIFFERENCES[pair]) <= set(ours_view)
    # Fields of objects only one side has are test_the_objects_are_the_charts's.
    fields = [f for f in ours_view if f in chart_view]
    differ = [f for f in fields if f not in DIFFERENCES[pair] and ours_view[f] != chart_view[f]]
    assert differ == [], {f: {"k8s": ours_view[f], "chart": chart_view[f]} for f in differ}
    stale = [f for f in DIFFERENCES[pair] if ours_view[f] == chart_view[f]]
    assert stale == [], f"listed as different but equal: {stale}"


@pytest.mark.parametrize("pair", list(PAIRS))
def test_the_objects_are_the_charts(pair: str) -> None:
    ours, chart = sides(pair)
    ours_names = {f"{d['kind']}/{d['metadata']['name']}" for d in ours}
    chart_names = {f"{d['kind']}/{d['metadata']['name']}" for d in chart}
    assert chart_names - ours_names == set(ONLY_IN_CHART[pair])
    assert ours_names - chart_names == set(ONLY_IN_K8S[pair])


def test_the_wait_for_schema_init_container_is_the_charts() -> None:
    """The one initContainer the chart's prod pods lack is the chart's own waitForSchema one."""
    ours = view(unhashed(built_objects("prod")))["pod.initContainers"]
    chart_dev = as_kustomize_names(objects(rendered("dev")))
    (theirs,) = [
        c
        for c in pod_spec(of_component(chart_dev, "Deployment", "server"))["initContainers"]
        if c["name"] == "wait-for-schema"
    ]
    (mine,) = ours
    assert without(mine, "image", "env") == without(theirs, "image", "env")
    assert sorted(env_of(mine)) == sorted(env_of(theirs))
    assert mine["image"] == view(unhashed(built_objects("prod")))["server"]["image"]


def test_the_dev_settings_differ_from_the_bases_as_values_dev_says() -> None:
    def settings(name: str) -> dict[str, Any]:
        return yaml.safe_load(named(unhashed(built_objects(name)), "ConfigMap", "auth-service")["data"]["config.yaml"])

    base, dev = settings("base"), settings("dev")
    assert set(base) == set(dev)
    changed = {key: dev[key] for key in base if base[key] != dev[key]}
    assert changed == {"log_format": "text", "access_log_sample_ratio": 1, "token_active_kid": "dev-1"}
    assert json.loads(dev_secret("auth-service-token-keys")["token-keys"]).keys() == {"dev-1"}


def test_the_dev_dsn_reaches_the_bundled_database() -> None:
    docs = unhashed(built_objects("dev"))
    database = dev_secret("auth-service-database")
    dsn = urlsplit(database["dsn"])
    spec = pod_spec(of_component(docs, "StatefulSet", "postgresql"))
    assert spec is not None
    env = env_of(spec["containers"][0])
    service = of_component(docs, "Service", "postgresql")
    assert (dsn.scheme, dsn.username, dsn.password) == ("postgresql", env["POSTGRES_USER"], database["password"])
    assert (dsn.hostname, dsn.port) == (service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    assert dsn.path == "/" + env["POSTGRES_DB"]
    assert env["POSTGRES_PASSWORD"]["secretKeyRef"] == {"name": "auth-service-database", "key": "password"}


def dev_secret(name: str) -> dict[str, str]:
    """A Secret the dev overlay generates, decoded."""
    secret = named(unhashed(built_objects("dev")), "Secret", name)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# Production-grade stand-ins for the Secrets the base and prod reference (created outside k8s/).
PRODUCTION_SECRETS = {
    "AUTH_DATABASE_URL": "postgresql://auth:pw@db.example.internal:5432/auth",
    "AUTH_TOKEN_KEYS": json.dumps({"2026-12": "k" * 48}),
    "AUTH_BATCH_TOKEN": "b" * 32,
    "AUTH_ADMIN_TOKEN": "a" * 32,
}


def service_settings(name: str, secrets: dict[str, str]) -> Settings:
    """The service's Settings as the server container of a build would build them: its settings file,
    then its AUTH_* and OTEL_* variables (which outrank the file), the Secrets' values from `secrets`."""
    docs = unhashed(built_objects(name))
    spec = pod_spec(of_component(docs, "Deployment", "server"))
    assert spec is not None
    values: dict[str, Any] = yaml.safe_load(named(docs, "ConfigMap", "auth-service")["data"]["config.yaml"])
    for env in spec["containers"][0]["env"]:
        value = secrets[env["name"]] if "secretKeyRef" in env.get("valueFrom", {}) else env.get("value")
        if value is None or "$(" in value or env["name"] == "AUTH_CONFIG_FILE":
            continue  # the downward API's and the expanded ones: the kubelet's, not the settings'
        if env["name"].startswith("AUTH_"):
            field = env["name"].removeprefix("AUTH_").lower()
            values[field] = json.loads(value) if field == "token_keys" else value
        elif env["name"].startswith("OTEL_"):
            values[env["name"]] = value
    return Settings(**values)


def dev_secret_values() -> dict[str, str]:
    """The dev overlay's generated Secrets, by the variable each feeds."""
    spec = pod_spec(of_component(unhashed(built_objects("dev")), "Deployment", "server"))
    assert spec is not None
    refs = [e for e in spec["containers"][0]["env"] if "secretKeyRef" in e.get("valueFrom", {})]
    return {
        e["name"]: dev_secret(e["valueFrom"]["secretKeyRef"]["name"])[e["valueFrom"]["secretKeyRef"]["key"]]
        for e in refs
    }


@pytest.mark.parametrize("name", ["base", "prod"])
def test_the_service_accepts_the_production_settings(name: str) -> None:
    """Every setting of config.yaml is one the service knows (unknown ones stop it), and production's
    checks pass."""
    settings = service_settings(name, PRODUCTION_SECRETS)
    assert settings.environment == "production"
    assert (settings.port, settings.admin_port) == (8000, 9000)


def test_the_service_accepts_the_dev_settings_and_refuses_its_secrets_in_production() -> None:
    settings = service_settings("dev", dev_secret_values())
    assert settings.environment == "development"
    assert settings.token_keys[settings.token_active_kid].get_secret_value() in PLACEHOLDER_SECRETS
    with pytest.raises(ValueError, match="placeholder"):
        Settings(**{**settings.model_dump(), "environment": "production"})


# ---- The chart's render-time checks, which kustomize cannot run -------------------------------------


def database_budget(name: str) -> int:
    """max_connections less the reserve: the bundled PostgreSQL's in dev, values-prod.yaml's in prod."""
    reserved = CHART_VALUES["database"]["reservedConnections"]
    if name == "dev":
        spec = pod_spec(of_component(built_objects("dev"), "StatefulSet", "postgresql"))
        assert spec is not None
        args = spec["containers"][0]["args"]
        return int(next(a.split("=")[1] for a in args if a.startswith("max_connections="))) - reserved
    values = PROD_VALUES["database"] if name == "prod" else CHART_VALUES["database"]
    return values["maxConnections"] - values.get("reservedConnections", reserved)


@pytest.mark.parametrize("name", ["base", "dev", "prod"])
def test_the_charts_cross_value_checks_hold(name: str) -> None:
    docs = built_objects(name)
    deployment = of_component(docs, "Deployment", "server")
    pod = pod_spec(deployment)
    assert pod is not None
    server = pod["containers"][0]
    settings = yaml.safe_load(named(unhashed(docs), "ConfigMap", "auth-service")["data"]["config.yaml"])
    # Connections: both pools and the listener per pod, at the most pods, and the migration.
    replicas = next(
        (h["spec"]["maxReplicas"] for h in of_kind(docs, "HorizontalPodAutoscaler")),
        deployment["spec"].get("replicas", 1),
    )
    pods = replicas + surge_pods(deployment, replicas)
    needed = (settings["db_read_pool_size"] + settings["db_pool_size"] + 1) * pods + len(of_kind(docs, "Job"))
    assert needed <= database_budget(name), f"{needed} connections, budget {database_budget(name)}"
    # Hash workers: the CPU request rounded up (no CPU limit), as the chart derives them.
    requests = server["resources"]["requests"]
    assert "cpu" not in server["resources"].get("limits", {})
    assert settings["hash_workers"] == max(1, math.ceil(quantity(requests["cpu"])))
    # Memory: the baseline, the cache and each hash worker's argon2 memory fit the limit.
    limit_mib = quantity(server["resources"]["limits"]["memory"]) / 2**20
    need_mib = (
        CHART_VALUES["memoryBaselineMiB"]
        + Fraction(settings["cache_max_bytes"], 2**20)
        + Fraction(settings["hash_workers"] * settings["argon2_memory_kib"], 1024)
    )
    assert limit_mib >= need_mib
    # Readiness fails within the drain; the grace period is the chart's sum.
    readiness = server["readinessProbe"]
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= settings["drain_delay_seconds"]
    grace = (
        settings["drain_delay_seconds"]
        + settings["graceful_timeout_seconds"]
        + CHART_VALUES["terminationGraceMarginSeconds"]
    )
    assert pod["terminationGracePeriodSeconds"] == grace


@pytest.mark.parametrize("name", ["base", "dev", "prod"])
def test_the_version_label_is_the_image_tag(name: str) -> None:
    """SERVICE_VERSION (and the spans' service.version) reads the label: it must follow the tag."""
    for doc in workloads(built_objects(name)):
        for container in containers(doc):
            if "auth-service" in container["image"]:
                assert container["image"].rsplit(":", 1)[1] == pod_labels(doc)["app.kubernetes.io/version"]


def test_production_images_are_pinned_to_the_charts() -> None:
    images = {c["image"] for doc in workloads(built_objects("prod")) for c in containers(doc)}
    chart = {c["image"] for doc in workloads(objects(rendered("prod"))) for c in containers(doc)}
    assert images == chart == {f"{PROD_VALUES['image']['repository']}:{PROD_VALUES['image']['tag']}"}


# ---- prometheus-adapter -------------------------------------------------------------------------


def adapter_rule() -> dict[str, Any]:
    (rule,) = ADAPTER["rules"]["custom"]
    return rule


def test_the_adapter_rule_exposes_the_metric_the_hpa_reads() -> None:
    rule = adapter_rule()
    metric_name = CHART_VALUES["autoscaling"]["requestsPerSecond"]["metricName"]
    assert rule["name"]["as"] == metric_name
    (hpa,) = of_kind(objects(rendered("hpa-rps")), "HorizontalPodAutoscaler")
    pods_metrics = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods_metrics == [metric_name]
    assert {o["resource"] for o in rule["resources"]["overrides"].values()} == {"namespace", "pod"}
    assert ADAPTER["rules"]["default"] is False
    assert ADAPTER["prometheus"]["url"].startswith("http")


def test_the_adapter_series_query_selects_what_the_service_exports() -> None:
    """The service's own histogram, rendered as Prometheus scrapes it, has the series the rule discovers."""
    registry = CollectorRegistry()
    latencies = RequestLatencies((0.001, 0.01))
    latencies.observe(("GET", "/v1/auth/verify", "2xx"), 0.0005, None)
    registry.register(latencies)
    exported = {
        line.split("{")[0] for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")
    }
    query = promql_parser.parse(adapter_rule()["seriesQuery"])
    assert isinstance(query, promql_parser.VectorSelector)
    assert query.name == "http_server_request_duration_seconds_count"
    assert query.name in exported
    # The scrape adds namespace and pod; the rule maps them to the resources.
    assert {m.name for m in query.matchers.matchers} == set(adapter_rule()["resources"]["overrides"])
    assert re.fullmatch(adapter_rule()["name"]["matches"], query.name)


def test_the_adapter_metrics_query_is_a_short_per_pod_rate() -> None:
    template = adapter_rule()["metricsQuery"]
    assert {"<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"} <= set(re.findall(r"<<\.\w+>>", template))
    # What the adapter substitutes for `pods/http_server_requests_per_second` of two pods in auth-service.
    concrete = (
        template.replace("<<.Series>>", "http_server_request_duration_seconds_count")
        .replace("<<.LabelMatchers>>", 'namespace="auth-service",pod=~"auth-service-7d4-a|auth-service-7d4-b"')
        .replace("<<.GroupBy>>", "pod")
    )
    expression = promql_parser.parse(concrete)
    # One value per pod (the adapter maps the series back by GroupBy), the largest of its scrape jobs
    # (a pod scraped twice is not counted twice), each the sum over methods, routes and statuses.
    assert isinstance(expression, promql_parser.AggregateExpr)
    assert str(expression.op) == "max" and expression.modifier.labels == ["pod"]
    per_job = expression.expr
    assert isinstance(per_job, promql_parser.AggregateExpr)
    assert str(per_job.op) == "sum" and per_job.modifier.labels == ["pod", "job"]
    call = per_job.expr
    assert isinstance(call, promql_parser.Call) and call.func.name == "rate"
    (selector,) = call.args
    assert selector.vector_selector.name == "http_server_request_duration_seconds_count"
    assert {m.name for m in selector.vector_selector.matchers.matchers} == {"namespace", "pod"}
    # Four scrapes at the chart's ServiceMonitor interval at least (rate needs two samples), two minutes at most.
    interval = int(CHART_VALUES["metrics"]["serviceMonitor"]["interval"].removesuffix("s"))
    assert timedelta(seconds=4 * interval) <= selector.range <= timedelta(minutes=2)


# ---- kind -----------------------------------------------------------------------------------------


def test_the_kind_cluster_spreads_over_the_charts_zone_key() -> None:
    assert (KIND["apiVersion"], KIND["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    assert KIND["name"], "the Tiltfile allows the context kind-<name>"
    roles = [node["role"] for node in KIND["nodes"]]
    assert roles.count("control-plane") == 1 and roles.count("worker") >= 2
    spread = pod_spec(of_component(objects(rendered("default")), "Deployment", "server"))["topologySpreadConstraints"]
    (zone_key,) = {c["topologyKey"] for c in spread} - {"kubernetes.io/hostname"}
    assert zone_key == "topology.kubernetes.io/zone"
    workers = [node for node in KIND["nodes"] if node["role"] == "worker"]
    zones = [node.get("labels", {}).get(zone_key) for node in workers]
    assert None not in zones and 2 <= len(set(zones)) < len(zones), zones  # zones and nodes differ


def test_the_kind_registry_is_the_one_tilt_discovers() -> None:
    (configmap,) = objects(REGISTRY_CONFIGMAP.read_text())
    assert (configmap["metadata"]["namespace"], configmap["metadata"]["name"]) == (
        "kube-public",
        "local-registry-hosting",
    )
    host = yaml.safe_load(configmap["data"]["localRegistryHosting.v1"])["host"]
    script = (K8S / "kind" / "registry.sh").read_text()
    assert f"reg_port={host.split(':')[1]}" in script
    assert any('config_path = "/etc/containerd/certs.d"' in patch for patch in KIND["containerdConfigPatches"])
    result = run("sh", "-n", str(K8S / "kind" / "registry.sh"), check=False)
    assert result.returncode == 0, result.stderr


# ---- Namespace: quota and limits --------------------------------------------------------------------

TRACKED = {"pods", "requests.cpu", "requests.memory", "limits.memory"}
# Each quota, and what it must hold: (its build, the objects it must fit).
QUOTA_CASES = {
    "namespace for the chart's defaults": ("namespace", lambda: objects(rendered("default"))),
    "namespace for the base": ("namespace", lambda: built_objects("base")),
    "prod namespace for values-prod.yaml": ("namespace-prod", lambda: objects(rendered("prod"))),
    "prod namespace for the prod overlay": ("namespace-prod", lambda: built_objects("prod")),
    "dev overlay for itself": ("dev", lambda: built_objects("dev")),
}


def hard(name: str) -> dict[str, Fraction]:
    (quota,) = of_kind(built_objects(name), "ResourceQuota")
    return {key: quantity(value) for key, value in quota["spec"]["hard"].items()}


@pytest.mark.parametrize("case", list(QUOTA_CASES))
def test_the_quota_fits_the_most_the_deployment_runs(case: str) -> None:
    """Computed from the rendered objects: HPA maximum + surge (+ a surge terminating), the Job, the test pod."""
    build, docs = QUOTA_CASES[case]
    limits = hard(build)
    assert set(limits) >= TRACKED and "limits.cpu" not in limits
    peak = most_used(docs() + of_kind(built_objects(build), "LimitRange"), terminating=True)
    over = {k: (str(peak[k]), str(limits[k])) for k in limits if k in peak and peak[k] > limits[k]}
    assert over == {}, f"need, quota: {over}"


@pytest.mark.parametrize("case", ["namespace for the chart's defaults", "prod namespace for values-prod.yaml"])
def test_the_quota_is_sized_for_the_chart_not_unbounded(case: str) -> None:
    build, docs = QUOTA_CASES[case]
    peak = most_used(docs(), terminating=False)
    for key in TRACKED:
        assert hard(build)[key] <= Fraction(3, 2) * peak[key], f"{key}: {hard(build)[key]} for a need of {peak[key]}"


def limit_range(name: str = "namespace") -> dict[str, Any]:
    (limits,) = of_kind(built_objects(name), "LimitRange")
    return limits


def test_the_limit_range_gives_no_cpu_limit() -> None:
    """No CPU `default` or `max` (a max becomes the default limit), no CPU ratio, no Pod-level CPU max."""
    for item in limit_range()["spec"]["limits"]:
        for field in ("default", "max", "maxLimitRequestRatio"):
            assert "cpu" not in item.get(field, {}), (item["type"], field)
    server = pod_spec(of_component(objects(rendered("default")), "Deployment", "server"))["containers"][0]
    assert "limits.cpu" not in container_resources(server, limit_range())
    # And it does give one to a container that states none, so that the quota can count it.
    bare = container_resources({"name": "debug"}, limit_range())
    assert TRACKED - {"pods"} <= set(bare) and "limits.cpu" not in bare


@pytest.mark.parametrize("source", list(POD_SOURCES))
def test_every_container_is_admitted_by_the_quota_and_limits(source: str) -> None:
    """The quota refuses a pod missing a resource it tracks; the LimitRange refuses one over its max."""
    ranges = limit_range()["spec"]["limits"]
    (container_max,) = [item["max"] for item in ranges if item["type"] == "Container"]
    (claim_max,) = [item["max"] for item in ranges if item["type"] == "PersistentVolumeClaim"]
    docs = POD_SOURCES[source]()
    for doc in workloads(docs):
        for container in containers(doc):
            resources = container_resources(container, limit_range())
            assert TRACKED - {"pods"} <= set(resources), f"{doc['metadata']['name']}/{container['name']}"
            assert resources["limits.memory"] <= quantity(container_max["memory"])
        for claim in doc["spec"].get("volumeClaimTemplates", []):
            assert quantity(claim["spec"]["resources"]["requests"]["storage"]) <= quantity(claim_max["storage"])
