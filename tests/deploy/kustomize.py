"""k8s/ as the tests check it: its kustomize builds, Kubernetes quantities, what a set of objects runs
at its most, and Pod Security Admission's `restricted` rules."""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from fractions import Fraction
from typing import Any

from tests.deploy.charts import KUBECTL, REPO, objects, of_kind, pod_spec, run, tool

K8S = REPO / "k8s"
# Every kustomization of k8s/, by a short name.
BUILDS = {
    "base": K8S / "base",
    "dev": K8S / "overlays" / "dev",
    "prod": K8S / "overlays" / "prod",
    "namespace": K8S / "namespace",
    "namespace-prod": K8S / "overlays" / "prod" / "namespace",
}
COMPONENT = "app.kubernetes.io/component"


@functools.cache
def built(name: str) -> str:
    """`kubectl kustomize` of one of BUILDS (cached: each test reads it, none changes it)."""
    return run(tool(KUBECTL), "kustomize", str(BUILDS[name])).stdout


def built_objects(name: str) -> list[dict[str, Any]]:
    return objects(built(name))


def of_component(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"].get("labels", {}).get(COMPONENT) == component]
    assert len(found) == 1, f"{kind} of component {component}: {len(found)} objects"
    return found[0]


# ---- Quantities ---------------------------------------------------------------------------------

_SUFFIXES = {
    "m": Fraction(1, 1000), "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
}  # fmt: skip
_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def quantity(value: str | int | float) -> Fraction:
    """A Kubernetes quantity ("250m", "1", "512Mi", "8Gi") as an exact number (cores, bytes, counts)."""
    match = _QUANTITY.match(str(value))
    assert match, f"not a quantity: {value!r}"
    number, suffix = match.groups()
    return Fraction(number) * (_SUFFIXES[suffix] if suffix else 1)


# ---- What objects run at their most ---------------------------------------------------------------

COMPUTE = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory")


def container_resources(container: dict[str, Any], limit_range: dict[str, Any] | None) -> dict[str, Fraction]:
    """A container's requests and limits as admitted: the LimitRange's defaults for what it leaves out,
    then the API's own default of a missing request to its limit."""
    resources = container.get("resources", {})
    requests = dict(resources.get("requests", {}))
    limits = dict(resources.get("limits", {}))
    for item in (limit_range or {}).get("spec", {}).get("limits", []):
        if item["type"] == "Container":
            limits = {**item.get("default", {}), **limits}
            requests = {**item.get("defaultRequest", {}), **requests}
    requests = {**limits, **requests}
    out = {f"requests.{k}": quantity(v) for k, v in requests.items() if k in ("cpu", "memory")}
    out |= {f"limits.{k}": quantity(v) for k, v in limits.items() if k in ("cpu", "memory")}
    return out


def pod_resources(spec: dict[str, Any], limit_range: dict[str, Any] | None = None) -> dict[str, Fraction]:
    """A pod's effective requests and limits, as the scheduler and the quota count them: the larger of
    the sum of its containers and its largest initContainer, per resource."""
    total: Counter[str] = Counter()
    for container in spec["containers"]:
        total.update(container_resources(container, limit_range))
    for init in spec.get("initContainers", []):
        for key, amount in container_resources(init, limit_range).items():
            total[key] = max(total[key], amount)
    return dict(total)


def surge_pods(deployment: dict[str, Any], replicas: int) -> int:
    """maxSurge as a count at `replicas` (a share is rounded up, as the Deployment controller does)."""
    surge = str(deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%"))
    return math.ceil(replicas * int(surge[:-1]) / 100) if surge.endswith("%") else int(surge)


def most_replicas(docs: list[dict[str, Any]], workload: dict[str, Any]) -> int:
    """The HPA's maximum when one scales the workload, else its replicas."""
    for hpa in of_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) == (workload["kind"], workload["metadata"]["name"]):
            return hpa["spec"]["maxReplicas"]
    return workload["spec"].get("replicas", 1)


def most_used(docs: list[dict[str, Any]], *, terminating: bool) -> dict[str, Fraction]:
    """What the objects run at their most, in the quota's terms: every Deployment at its most replicas
    plus its surge (plus, with `terminating`, a surge's worth still terminating from the previous step
    of a rollout), every StatefulSet, Job and Pod once, and the claims of the StatefulSets."""
    limit_range = next(iter(of_kind(docs, "LimitRange")), None)
    used: Counter[str] = Counter()
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        if doc["kind"] == "Deployment":
            most = most_replicas(docs, doc)
            surge = surge_pods(doc, most)
            pods = most + surge + (surge if terminating else 0)
        elif doc["kind"] == "StatefulSet":
            pods = doc["spec"].get("replicas", 1)  # replaced one at a time: no surge
            for claim in doc["spec"].get("volumeClaimTemplates", []):
                used["persistentvolumeclaims"] += pods
                used["requests.storage"] += pods * quantity(claim["spec"]["resources"]["requests"]["storage"])
        else:
            pods = doc["spec"].get("parallelism", 1) if doc["kind"] == "Job" else 1
        used["pods"] += pods
        for key, amount in pod_resources(spec, limit_range).items():
            used[key] += pods * amount
    return dict(used)


# ---- Pod Security Admission, level restricted (kubernetes.io/docs/concepts/security/pod-security-standards)

RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def all_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"], *spec.get("ephemeralContainers", [])]


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """What in a pod spec the `restricted` Pod Security Standard (baseline included) refuses."""
    found = []
    pod_context = spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"{field}: true")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']}: {sorted(kinds)}")
    for sysctl in pod_context.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    found += _context_violations("pod", pod_context)
    for container in all_containers(spec):
        name = container["name"]
        context = container.get("securityContext", {})
        found += _context_violations(name, context)
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities.drop lacks ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities.add {capabilities['add']}")
        if context.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount {context['procMount']}")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot is not true (pod or container)")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile {seccomp} (RuntimeDefault or Localhost, pod or container)")
    return found


def _context_violations(where: str, context: dict[str, Any]) -> list[str]:
    """The rules a pod's and a container's securityContext share."""
    found = []
    if context.get("runAsUser") == 0:
        found.append(f"{where}: runAsUser 0")
    if context.get("seccompProfile", {}).get("type") == "Unconfined":
        found.append(f"{where}: seccompProfile Unconfined")
    if context.get("appArmorProfile", {}).get("type", "RuntimeDefault") not in ("RuntimeDefault", "Localhost"):
        found.append(f"{where}: appArmorProfile {context['appArmorProfile']['type']}")
    selinux = context.get("seLinuxOptions", {})
    if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        found.append(f"{where}: seLinuxOptions {selinux}")
    if context.get("windowsOptions", {}).get("hostProcess"):
        found.append(f"{where}: windowsOptions.hostProcess")
    return found


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if pod_spec(doc) is not None]
