"""A rendered container started as a process, the way a kubelet would start it, on this machine.

What the kubelet would do and this does: the image's ENTRYPOINT and ENV (read from the Dockerfile),
the container's command, args and env (values, Secret keys, downward-API fields, `$(VAR)` expansion),
and its ConfigMap volumes as files. What differs, and why: a ConfigMap's mount path is a temporary
folder (not /etc of this machine), and the listening ports are free ones of this machine: the test
first checks that the variables naming the ports equal the container's declared ports, then moves both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockerfile_parse import DockerfileParser

from tests.deploy.charts import REPO

DOCKERFILE = REPO / "services" / "auth-service" / "Dockerfile"
VENV_BIN = REPO / ".venv" / "bin"
_VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class Image:
    """What the runtime stage of the Dockerfile gives a container: its entrypoint, command and env."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]


def service_image() -> Image:
    parser = DockerfileParser(str(DOCKERFILE))
    runtime = parser.structure  # every instruction; the last stage's win, as in a build
    stage_start = max(i for i, instruction in enumerate(runtime) if instruction["instruction"] == "FROM")
    entrypoint: list[str] = []
    cmd: list[str] = []
    for instruction in runtime[stage_start:]:
        if instruction["instruction"] == "ENTRYPOINT":
            entrypoint = _exec_form(instruction["value"])
        elif instruction["instruction"] == "CMD":
            cmd = _exec_form(instruction["value"])
    return Image(entrypoint, cmd, dict(parser.envs))


def _exec_form(value: str) -> list[str]:
    parsed = json.loads(value)
    assert isinstance(parsed, list), f"{value}: not the exec form (a shell would be PID 1)"
    return [str(part) for part in parsed]


def expand(value: str, defined: Mapping[str, str]) -> str:
    """Kubernetes' dependent variables: $(NAME) of a variable defined before, $$ for a literal $."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return defined.get(name, match.group(0))

    return _VARIABLE.sub(replace, value)


@dataclass
class PodContext:
    """What the cluster would supply: the Secrets' contents and the pod's downward-API fields."""

    secrets: dict[str, dict[str, str]]
    pod_labels: dict[str, str]
    fields: dict[str, str] = field(
        default_factory=lambda: {
            "metadata.name": "auth-auth-service-7d9c-x2x4z",
            "metadata.uid": "0d9e4f5c-1b2a-4c3d-9e8f-7a6b5c4d3e2f",
            "metadata.namespace": "auth-service",
            "spec.nodeName": "node-a",
        }
    )

    def field_value(self, path: str) -> str:
        label = re.fullmatch(r"metadata\.labels\['(.+)'\]", path)
        if label:
            return self.pod_labels[label.group(1)]
        return self.fields[path]

    def env_value(self, entry: dict[str, Any]) -> str:
        if "value" in entry:
            return str(entry["value"])
        source = entry["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            return self.secrets[ref["name"]][ref["key"]]
        if "fieldRef" in source:
            return self.field_value(source["fieldRef"]["fieldPath"])
        raise AssertionError(f"{entry['name']}: a source this test does not resolve: {source}")


def container_env(container: dict[str, Any], image: Image, context: PodContext) -> dict[str, str]:
    """The process's environment: the image's ENV, then the container's env in order, expanded."""
    env = dict(image.env)
    for entry in container.get("env", []):
        env[entry["name"]] = expand(context.env_value(entry), env)
    return env


def config_files(pod: dict[str, Any], configmaps: dict[str, dict[str, str]], root: Path) -> dict[str, Path]:
    """Each ConfigMap volume written out under root; mount path -> the folder standing in for it."""
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for container in pod["containers"]:
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "configMap" not in volume:
                continue
            folder = root / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            for key, text in configmaps[volume["configMap"]["name"]].items():
                (folder / key).write_text(text)
            mounts[mount["mountPath"]] = folder
    return mounts


def remap_paths(env: dict[str, str], mounts: dict[str, Path]) -> dict[str, str]:
    """Variables naming a file under a mount path name the stand-in folder's file instead."""
    remapped = dict(env)
    for name, value in env.items():
        for mount_path, folder in mounts.items():
            if value.startswith(mount_path.rstrip("/") + "/"):
                remapped[name] = str(folder / value[len(mount_path.rstrip("/")) + 1 :])
    return remapped


def argv(container: dict[str, Any], image: Image) -> list[str]:
    """command replaces ENTRYPOINT, args replace CMD; the executable is the venv's (the image's PATH)."""
    command = container.get("command", image.entrypoint)
    args = container.get("args", image.cmd if "command" not in container else [])
    executable = VENV_BIN / command[0]
    assert executable.exists(), f"{command[0]}: not installed by the project ({executable})"
    return [str(executable), *command[1:], *args]


def declared_ports(container: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container.get("ports", [])}
