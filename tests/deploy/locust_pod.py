"""A rendered Locust container started as a process on this machine, as the official image would run it.

What the image gives (locustio/locust's Dockerfile): ENTRYPOINT ["locust"] and PYTHONUNBUFFERED=1; here
`locust` is the project's, the same version (the chart's appVersion is the lock's). What the pod gives:
the container's command, args and env (tests/deploy/pod.py resolves the Secret references), and its
ConfigMap volume as files. What differs, and why: the container's paths under the chart's code root
(/opt/loadtests: the scenarios' package and the reports) live under a temporary folder, and the ports
and the master's address are this machine's: each is first checked against what the chart declares
(the container's ports, the Service the workers name), then moved.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ports import free_ports
from tests.deploy.charts import REPO, named, of_kind, pod_spec, selects
from tests.deploy.pod import Image, PodContext, container_env

IMAGE = Image(entrypoint=["locust"], cmd=[], env={"PYTHONUNBUFFERED": "1"})
CODE_ROOT = "/opt/loadtests"
CONTAINER_TMP = "/tmp"  # noqa: S108 (the container's emptyDir, not this host's /tmp)
# The PATH the process finds `locust` and `sh` on: the venv's Locust for the image's.
PATH = f"{REPO / '.venv/bin'}:/usr/bin:/bin"


@dataclass
class Process:
    """One container's argv and environment, with its paths and ports moved to this machine's."""

    argv: list[str]
    env: dict[str, str]
    root: Path  # stands in for the container's CODE_ROOT

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(self.argv, env={"PATH": PATH, **self.env}, stdout=out, stderr=subprocess.STDOUT)


def flag_value(args: list[str], name: str) -> str:
    [value] = [arg.split("=", 1)[1] for arg in args if arg.startswith(f"{name}=")]
    return value


def replace_flag(args: list[str], name: str, value: str) -> list[str]:
    return [f"{name}={value}" if arg.startswith(f"{name}=") else arg for arg in args]


def locust_process(docs: list[dict[str, Any]], component: str, context: PodContext, tmp: Path) -> tuple[Process, dict]:
    """The process of a component's container (master or worker) and the container, ports not moved yet."""
    [workload] = [
        d
        for d in docs
        if pod_spec(d) is not None and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    spec = pod_spec(workload)
    assert spec is not None
    [container] = spec["containers"]
    root = tmp / component / "root"
    configmaps = {cm["metadata"]["name"]: cm["data"] for cm in of_kind(docs, "ConfigMap")}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["mountPath"] == CONTAINER_TMP or mount["mountPath"].startswith(CODE_ROOT + "/"), mount
        if mount["mountPath"] == CONTAINER_TMP:
            continue  # Python's tempfile finds this machine's
        folder = root / mount["mountPath"].removeprefix(CODE_ROOT + "/")
        folder.mkdir(parents=True)
        for key, text in configmaps.get(volumes[mount["name"]].get("configMap", {}).get("name"), {}).items():
            (folder / key).write_text(text)

    def moved(value: str) -> str:
        return value.replace(CODE_ROOT, str(root))

    command = container.get("command", IMAGE.entrypoint)
    argv = [moved(part) for part in [*command, *container.get("args", [])]]
    env = {name: moved(value) for name, value in container_env(container, IMAGE, context).items()}
    return Process(argv, env, root), container


def with_master_ports(process: Process, container: dict[str, Any]) -> tuple[Process, dict[str, int]]:
    """The master's --master-bind-port and --web-port (when it has the UI) must be its declared ports;
    both move to free ports of this machine's loopback."""
    declared = {port["name"]: port["containerPort"] for port in container["ports"]}
    args = process.argv
    assert int(flag_value(args, "--master-bind-port")) == declared["master"]
    master_port, ui_port = free_ports(2)
    ports = {"master": master_port}
    args = [*replace_flag(args, "--master-bind-port", str(ports["master"])), "--master-bind-host=127.0.0.1"]
    if "ui" in declared:
        assert int(flag_value(args, "--web-port")) == declared["ui"]
        ports["ui"] = ui_port
        args = [*replace_flag(args, "--web-port", str(ports["ui"])), "--web-host=127.0.0.1"]
    return Process(args, process.env, process.root), ports


def with_master_address(process: Process, docs: list[dict[str, Any]], master: dict[str, Any], port: int) -> Process:
    """A worker's --master-host must be the Service that selects the master, on its master port: the
    cluster's DNS and kube-proxy would take it there. Here, the master's process."""
    args = process.argv
    service = named(docs, "Service", flag_value(args, "--master-host"))
    assert selects(service["spec"]["selector"], master["spec"]["template"]["metadata"]["labels"])
    [service_port] = [p for p in service["spec"]["ports"] if p["name"] == "master"]
    assert int(flag_value(args, "--master-port")) == service_port["port"]
    args = replace_flag(replace_flag(args, "--master-host", "127.0.0.1"), "--master-port", str(port))
    return Process(args, process.env, process.root)
