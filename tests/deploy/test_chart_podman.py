"""The chart runs: its rendered Deployment and ConfigMap, played by `podman kube play` with the real
image, against the real PostgreSQL, under the chart's own securityContext and volumes.

What podman 4.3 does not do, and what covers it instead:
- a `kind: Secret` in the played YAML is not read: each Secret the pod names is created first with
  `podman secret create` (a JSON map of key to base64 value), and left out of the YAML;
- `httpGet` probes become `curl -f` healthchecks inside the container, and the image has no curl:
  podman shows them unhealthy, so the probe paths are asked from the host here, and
  test_chart_runs.py checks them within each probe's own window;
- the downward API's `metadata.namespace` and `spec.nodeName` are refused ("fieldPath ... is either
  not valid or not supported"): the played copy gives those variables the values the kubelet would
  (FIELDS_PODMAN_LACKS), and test_chart_runs.py resolves the chart's own fieldRefs;
- dependent variables (`$(K8S_POD_NAME)` in OTEL_RESOURCE_ATTRIBUTES) are passed on unexpanded:
  test_chart_runs.py expands them as the kubelet does and checks the attributes the service gets;
- `podman kube down` stops the pod's infra container first, with SIGKILL, and the service dies with it
  (exit 137, seen here): it is no kubelet. What a kubelet does on deletion, SIGTERM and then the grace
  period, is `podman pod stop --time <terminationGracePeriodSeconds>`: the stop test does that, then
  `kube down` removes what is left;
- the pod's network: slirp4netns with allow_host_loopback, whose gateway 10.0.2.2 is this host's
  loopback, where PostgreSQL listens; the declared container ports are published on the host.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from auth_service.db import migrate
from auth_service.db.engine import driver_dsn
from bench.ports import free_ports
from tests.deploy.charts import NAMESPACE, REPO, case_named, helm_template, named, objects, pod_labels, pod_spec

CONTAINERS_CONF = REPO / "podman" / "containers.conf"
NETWORK = "slirp4netns:allow_host_loopback=true"
HOST_FROM_POD = "10.0.2.2"
SERVER = "auth-auth-service"
PLAY_TIMEOUT = 120
# What the kubelet would put in the downward-API variables podman 4.3 cannot fill.
FIELDS_PODMAN_LACKS = {"metadata.namespace": NAMESPACE, "spec.nodeName": "podman-host"}
CONTAINER_TMP = "/tmp"  # noqa: S108 (the container's emptyDir, not this host's /tmp)
PASSWORD = "a-long-test-passphrase"


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {result.returncode}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def image() -> str:
    """The image the chart names by default (appVersion), built by `make image` if it is not there."""
    if shutil.which("podman") is None:
        if os.environ.get("CI"):
            pytest.fail("podman is missing on CI: `make image-engine` installs it")
        pytest.skip("no podman here (`make image-engine` installs it): the container checks do not run")
    app_version = yaml.safe_load((REPO / "charts/auth-service/Chart.yaml").read_text())["appVersion"]
    reference = f"localhost/auth-service:{app_version}"
    if podman("image", "exists", reference, check=False).returncode != 0:
        subprocess.run(["make", "--no-print-directory", "image"], cwd=REPO, check=True, timeout=900)
    return reference


def secret_names(run_id: str) -> dict[str, str]:
    """Names of this run's Secrets (podman's secrets are global to the host: no clash with another run)."""
    return {kind: f"auth-service-{kind}-{run_id}" for kind in ("database", "token-keys", "batch-token", "admin-token")}


def render(run_id: str, ports: dict[str, int]) -> list[dict[str, Any]]:
    names = secret_names(run_id)
    sets = {
        "database.external.existingSecret": names["database"],
        "tokenKeys.existingSecret": names["token-keys"],
        "batchToken.existingSecret": names["batch-token"],
        "adminToken.existingSecret": names["admin-token"],
        # The pod's ports are published as they are declared: free ones of this host.
        "containerPorts.http": ports["http"],
        "containerPorts.admin": ports["admin"],
    }
    args = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    return objects(helm_template(case_named("external-db"), *args).stdout)


def as_podman_plays(deployment: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy with FIELDS_PODMAN_LACKS given as values, and which variables that changed."""
    copy = json.loads(json.dumps(deployment))
    changed = []
    for container in copy["spec"]["template"]["spec"]["containers"]:
        for entry in container.get("env", []):
            path = entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if path in FIELDS_PODMAN_LACKS:
                entry.pop("valueFrom")
                entry["value"] = FIELDS_PODMAN_LACKS[path]
                changed.append(entry["name"])
    return copy, changed


def create_secrets(run_id: str, dsn: str) -> Iterator[None]:
    contents = {
        "database": {"dsn": dsn},
        "token-keys": {"token-keys": json.dumps({"ci-1": secrets.token_urlsafe(48)})},
        "batch-token": {"batch-token": secrets.token_urlsafe(32)},
        "admin-token": {"admin-token": secrets.token_urlsafe(32)},
    }
    names = secret_names(run_id)
    for kind, data in contents.items():
        encoded = json.dumps({key: base64.b64encode(value.encode()).decode() for key, value in data.items()})
        subprocess.run(
            ["podman", "secret", "create", names[kind], "-"],
            input=encoded, text=True, check=True, capture_output=True,
            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
        )  # fmt: skip
    try:
        yield
    finally:
        for name in names.values():
            podman("secret", "rm", name, check=False)


@pytest.fixture(scope="module")
def played(image: str, pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The chart's Deployment and ConfigMap playing; taken down by the test that checks the stop."""
    run_id = uuid.uuid4().hex[:8]
    ports = dict(zip(("http", "admin"), free_ports(2), strict=True))
    docs = render(run_id, ports)
    manifest = tmp_path_factory.mktemp("play") / "auth-service.yaml"
    deployment, changed = as_podman_plays(named(docs, "Deployment", SERVER))
    assert changed == ["K8S_NAMESPACE_NAME", "K8S_NODE_NAME"], changed
    manifest.write_text(yaml.safe_dump_all([named(docs, "ConfigMap", SERVER), deployment]))
    with migrate.temporary_database(pg_server, "auth_podman") as url:
        dsn = make_url(driver_dsn(url)).set(host=HOST_FROM_POD).render_as_string(hide_password=False)
        secrets_made = create_secrets(run_id, dsn)
        next(secrets_made)
        try:
            podman("kube", "play", "--network", NETWORK, str(manifest), timeout=PLAY_TIMEOUT)
            state = {"docs": docs, "ports": ports, "manifest": manifest, "container": f"{SERVER}-pod-0-auth-service"}
            wait_ready(state)
            yield state
        finally:
            podman("kube", "down", str(manifest), check=False, timeout=PLAY_TIMEOUT)
            next(secrets_made, None)


def login(user: dict[str, str]) -> dict[str, str]:
    return {"email": user["email"], "password": user["password"]}


def url(state: dict[str, Any], port: str, path: str) -> str:
    return f"http://127.0.0.1:{state['ports'][port]}{path}"


def wait_ready(state: dict[str, Any]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url(state, "http", "/readyz"), timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    logs = podman("logs", state["container"], check=False)
    raise AssertionError(f"the played pod never became ready:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


def in_container(state: dict[str, Any], *command: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", state["container"], *command, check=False)


def proc_status(state: dict[str, Any]) -> dict[str, str]:
    status = in_container(state, "cat", "/proc/1/status").stdout
    return dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)


def test_the_container_runs_under_the_charts_security_context(played: dict[str, Any]) -> None:
    status = proc_status(played)
    assert status["Uid"].split()[:2] == ["10001", "10001"], status["Uid"]
    assert status["Gid"].split()[0] == "10001"
    assert status["CapEff"].strip() == "0000000000000000"
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2", "a seccomp filter (RuntimeDefault)"
    command = in_container(played, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert "auth-service" in command[1] and command[2] == "serve", f"PID 1 is {command}: the server, no shell"


def test_the_pod_is_named_by_the_downward_api_in_its_telemetry(played: dict[str, Any]) -> None:
    environ = in_container(played, "cat", "/proc/1/environ").stdout.split("\0")
    env = dict(entry.split("=", 1) for entry in environ if "=" in entry)
    labels = pod_labels(named(played["docs"], "Deployment", SERVER))
    assert env["OTEL_SERVICE_NAME"] == labels["app.kubernetes.io/name"]
    assert env["SERVICE_VERSION"] == labels["app.kubernetes.io/version"]
    assert env["K8S_POD_NAME"].startswith(SERVER) and len(env["K8S_POD_UID"]) >= 32
    assert env["K8S_NAMESPACE_NAME"] == NAMESPACE
    # Unexpanded here (podman 4.3); test_chart_runs.py checks the expansion.
    container = pod_spec(named(played["docs"], "Deployment", SERVER))["containers"][0]
    declared = next(e["value"] for e in container["env"] if e["name"] == "OTEL_RESOURCE_ATTRIBUTES")
    assert env["OTEL_RESOURCE_ATTRIBUTES"] == declared


def test_the_root_filesystem_is_read_only_and_tmp_is_the_writable_emptydir(played: dict[str, Any]) -> None:
    write = "import sys; open(sys.argv[1], 'w').write('x')"
    refused = in_container(played, "python3", "-c", write, "/app/written")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert in_container(played, "python3", "-c", write, f"{CONTAINER_TMP}/written").returncode == 0
    config = in_container(played, "cat", "/etc/auth-service/config.yaml").stdout
    container = pod_spec(named(played["docs"], "Deployment", SERVER))["containers"][0]
    assert yaml.safe_load(config) == yaml.safe_load(named(played["docs"], "ConfigMap", SERVER)["data"]["config.yaml"])
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/etc/auth-service", CONTAINER_TMP}


def test_the_probe_paths_and_a_token_round_trip_answer_through_the_published_ports(played: dict[str, Any]) -> None:
    container = pod_spec(named(played["docs"], "Deployment", SERVER))["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container[probe]["httpGet"]
        assert httpx.get(url(played, action["port"], action["path"]), timeout=2).status_code == 200, probe
    body = {"email": f"podman-{uuid.uuid4().hex[:8]}@example.com", "name": "Podman", "password": PASSWORD}
    created = httpx.post(url(played, "http", "/v1/users"), json=body, timeout=10)
    assert created.status_code == 201, created.text
    token = httpx.post(url(played, "http", "/v1/auth/token"), json=login(body), timeout=10).json()["access_token"]
    verified = httpx.get(url(played, "http", "/v1/auth/verify"), headers={"Authorization": f"Bearer {token}"})
    assert verified.status_code == 200 and verified.json()["sub"] == created.json()["id"]
    assert "http_server_request_duration_seconds" in httpx.get(url(played, "admin", "/metrics"), timeout=5).text


def test_it_stops_cleanly_within_the_grace_period(played: dict[str, Any]) -> None:
    """Last in the module: it stops the pod. SIGTERM, the drain, then exit 0 before the grace ends."""
    grace = pod_spec(named(played["docs"], "Deployment", SERVER))["terminationGracePeriodSeconds"]
    stop_signal = podman("inspect", played["container"], "--format", "{{.Config.StopSignal}}").stdout.strip()
    assert stop_signal == "15", f"the container stops with signal {stop_signal}, not SIGTERM"
    pod = podman("inspect", played["container"], "--format", "{{.Pod}}").stdout.strip()
    since = time.monotonic()
    podman("pod", "stop", "--time", str(grace), pod, timeout=grace + 30)
    elapsed = time.monotonic() - since
    state = podman("inspect", played["container"], "--format", "{{.State.ExitCode}} {{.State.Status}}").stdout.split()
    assert state == ["0", "exited"], (state, podman("logs", played["container"], check=False).stderr[-2000:])
    assert elapsed < grace, f"the stop took {elapsed:.1f}s; terminationGracePeriodSeconds is {grace}"
    drain = yaml.safe_load(named(played["docs"], "ConfigMap", SERVER)["data"]["config.yaml"])["drain_delay_seconds"]
    assert elapsed >= drain, f"stopped after {elapsed:.1f}s, before the {drain}s drain: was SIGTERM handled?"
    podman("kube", "down", str(played["manifest"]), timeout=PLAY_TIMEOUT)
    assert podman("pod", "exists", pod, check=False).returncode != 0, "kube down left the pod"
