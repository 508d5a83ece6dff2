"""The chart and the binary agree: what the chart renders (command, args, env, ports, probes, grace
period, the migration Job, the schema wait, the helm test pod), run as processes of the real service
against the real PostgreSQL. How a rendered container becomes a process: tests/deploy/pod.py."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from auth_service.db import migrate
from auth_service.db.engine import driver_dsn
from bench.ports import free_ports
from tests.deploy.charts import REPO, case_named, helm_template, named, objects, of_kind, pod_labels, pod_spec, rendered
from tests.deploy.pod import (
    PodContext,
    argv,
    config_files,
    container_env,
    declared_ports,
    remap_paths,
    service_image,
)
from tests.deploy.test_policy import alert_rules, metric_names_of
from tests.utils.sql import sql_connection, users_table_locked, wait_for_lock_waiters

SERVER = "auth-auth-service"
PASSWORD = "a-long-test-passphrase"
# The process's environment outside what the image and the pod give it: a PATH to run it with.
BASE_ENV = {"PATH": f"{REPO / '.venv/bin'}:/usr/bin:/bin"}


@contextmanager
def database_dsn(server_url: str, revision: str | None) -> Iterator[str]:
    """A new database at `revision` (None: empty, as a new cluster's); its DSN as a Secret holds it."""
    with migrate.temporary_database(server_url, "auth_chart", revision) as url:
        yield driver_dsn(url)


def login(user: dict[str, str]) -> dict[str, str]:
    return {"email": user["email"], "password": user["password"]}


def ci_secrets(dsn: str) -> dict[str, dict[str, str]]:
    """The Secrets the external-db case names, as an operator would create them."""
    return {
        "auth-service-database": {"dsn": dsn},
        "auth-service-token-keys": {"token-keys": json.dumps({"ci-1": secrets.token_urlsafe(48)})},
        "auth-service-batch-token": {"batch-token": secrets.token_urlsafe(32)},
        "auth-service-admin-token": {"admin-token": secrets.token_urlsafe(32)},
    }


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    ports: dict[str, int]
    log: Path

    def url(self, port: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def workload_process(
    docs: list[dict[str, Any]], kind: str, name: str, container_name: str, context: PodContext, tmp: Path
) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """(argv, env, container) for one container of a rendered workload, ports not yet moved."""
    pod = pod_spec(named(docs, kind, name))
    assert pod is not None
    container = next(c for c in [*pod.get("initContainers", []), *pod["containers"]] if c["name"] == container_name)
    configmaps = {cm["metadata"]["name"]: cm["data"] for cm in of_kind(docs, "ConfigMap")}
    mounts = config_files(pod, configmaps, tmp)
    env = remap_paths(container_env(container, service_image(), context), mounts)
    return argv(container, service_image()), env, container


def move_ports(env: dict[str, str], container: dict[str, Any]) -> tuple[dict[str, str], dict[str, int]]:
    """The env's AUTH_*PORT variables must name the container's declared ports; both move to free ones."""
    declared = declared_ports(container)
    assert env["AUTH_PORT"] == str(declared["http"]) and env["AUTH_ADMIN_PORT"] == str(declared["admin"])
    ports = dict(zip(("http", "admin"), free_ports(2), strict=True))
    return {**env, "AUTH_PORT": str(ports["http"]), "AUTH_ADMIN_PORT": str(ports["admin"])}, ports


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, env={**BASE_ENV, **env}, stdout=out, stderr=subprocess.STDOUT)


def probe_window(probe: dict[str, Any]) -> float:
    return float(probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3))


def wait_for_probe(started: Started, probe: dict[str, Any]) -> float:
    """Seconds until the probe's path answers 200 on its port; fails after the probe's own window."""
    action = probe["httpGet"]
    deadline = time.monotonic() + probe_window(probe) + probe.get("initialDelaySeconds", 0)
    began = time.monotonic()
    while time.monotonic() < deadline:
        assert started.process.poll() is None, f"the server exited:\n{started.output()}"
        try:
            if httpx.get(started.url(action["port"], action["path"]), timeout=1).status_code == 200:
                return time.monotonic() - began
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{action['path']} did not answer 200 within the probe's window:\n{started.output()}")


@contextmanager
def served(docs: list[dict[str, Any]], context: PodContext, tmp: Path) -> Iterator[tuple[Started, dict[str, Any]]]:
    command, env, container = workload_process(docs, "Deployment", SERVER, "auth-service", context, tmp)
    env, ports = move_ports(env, container)
    started = Started(spawn(command, env, tmp / "server.log"), ports, tmp / "server.log")
    try:
        wait_for_probe(started, container["startupProbe"])
        yield started, container
    finally:
        if started.process.poll() is None:
            started.process.kill()
            started.process.wait(10)


@pytest.fixture
def external_db(pg_server: str) -> Iterator[tuple[list[dict[str, Any]], PodContext, str]]:
    """The external-db case's objects, a migrated database, and the Secrets it names."""
    with database_dsn(pg_server, "head") as dsn:
        docs = objects(rendered("external-db"))
        yield docs, PodContext(ci_secrets(dsn), pod_labels(named(docs, "Deployment", SERVER))), dsn


def test_the_migration_job_brings_an_empty_database_to_head(pg_server: str, tmp_path: Path) -> None:
    docs = objects(rendered("default"))
    job = named(docs, "Job", "auth-auth-service-migrate")
    with database_dsn(pg_server, None) as dsn:
        context = PodContext({"auth-service-database": {"dsn": dsn}}, {})
        command, env, _ = workload_process(docs, "Job", job["metadata"]["name"], "migrate", context, tmp_path)
        assert set(env) - set(service_image().env) == {"AUTH_DATABASE_URL"}, "the Job gets the DSN and no other secret"
        result = subprocess.run(
            command, env={**BASE_ENV, **env}, capture_output=True, timeout=job["spec"]["activeDeadlineSeconds"]
        )
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        checked = subprocess.run([*command, "--check"], env={**BASE_ENV, **env}, capture_output=True, timeout=60)
        assert checked.returncode == 0, checked.stderr.decode()  # the schema is at the image's head
        again = subprocess.run(command, env={**BASE_ENV, **env}, capture_output=True, timeout=60)
        assert again.returncode == 0, "a second run (a retried or repeated hook) is harmless"


def test_the_schema_wait_blocks_until_the_migration_has_run(pg_server: str, tmp_path: Path) -> None:
    """The dev case: the Job runs beside the pods, whose initContainer waits for the schema."""
    docs = objects(rendered("dev"))
    (job,) = of_kind(docs, "Job")
    with database_dsn(pg_server, None) as dsn:
        context = PodContext(
            {"auth-auth-service-postgresql": {"dsn": dsn}}, pod_labels(named(docs, "Deployment", SERVER))
        )
        wait_cmd, wait_env, _ = workload_process(docs, "Deployment", SERVER, "wait-for-schema", context, tmp_path)
        waiting = spawn(wait_cmd, wait_env, tmp_path / "wait.log")
        try:
            time.sleep(3)
            assert waiting.poll() is None, f"returned before the schema existed:\n{(tmp_path / 'wait.log').read_text()}"
            job_cmd, job_env, _ = workload_process(docs, "Job", job["metadata"]["name"], "migrate", context, tmp_path)
            subprocess.run(job_cmd, env={**BASE_ENV, **job_env}, check=True, capture_output=True, timeout=120)
            migrated_at = time.monotonic()
            assert waiting.wait(timeout=15) == 0, (tmp_path / "wait.log").read_text()
            assert time.monotonic() - migrated_at < 10
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()


def test_the_telemetry_names_the_pod_from_the_downward_api(external_db: Any, tmp_path: Path) -> None:
    """OTEL_RESOURCE_ATTRIBUTES as the kubelet expands it, and as the service's tracer reads it."""
    docs, context, _ = external_db
    _, env, _ = workload_process(docs, "Deployment", SERVER, "auth-service", context, tmp_path)
    attributes = dict(pair.split("=", 1) for pair in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
    assert attributes == {
        "service.version": context.pod_labels["app.kubernetes.io/version"],
        "service.instance.id": context.fields["metadata.uid"],
        "k8s.pod.name": context.fields["metadata.name"],
        "k8s.pod.uid": context.fields["metadata.uid"],
        "k8s.namespace.name": context.fields["metadata.namespace"],
        "k8s.node.name": context.fields["spec.nodeName"],
        "k8s.deployment.name": SERVER,
    }
    assert env["OTEL_SERVICE_NAME"] == context.pod_labels["app.kubernetes.io/name"]
    probe = [str(REPO / ".venv/bin/python"), "-c", RESOURCE_PROBE]
    printed = subprocess.run(probe, env={**BASE_ENV, **env}, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(printed.stdout) == {**attributes, "service.name": "auth-service"}


# The resource the service's tracer provider is built with, from the settings that environment makes.
RESOURCE_PROBE = """
import json
from auth_service.observability.tracing import resource
from auth_service.settings import load_settings
attributes = dict(resource(load_settings()).attributes)
print(json.dumps({k: v for k, v in attributes.items() if k.startswith(("k8s.", "service."))}))
"""


def test_every_probe_answers_as_the_chart_expects(external_db: Any, tmp_path: Path) -> None:
    docs, context, _ = external_db
    with served(docs, context, tmp_path) as (started, container):
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            wait_for_probe(started, container[probe])
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_a_token_round_trip_and_the_helm_test_pod_pass_against_the_pod(external_db: Any, tmp_path: Path) -> None:
    docs, context, _ = external_db
    with served(docs, context, tmp_path) as (started, _):
        email = f"chart-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "name": "Chart Test", "password": PASSWORD}
        created = httpx.post(started.url("http", "/v1/users"), json=body, timeout=10)
        assert created.status_code == 201, created.text
        token = httpx.post(started.url("http", "/v1/auth/token"), json=login(body), timeout=10).json()["access_token"]
        verified = httpx.get(started.url("http", "/v1/auth/verify"), headers={"Authorization": f"Bearer {token}"})
        assert verified.status_code == 200 and verified.json()["sub"] == created.json()["id"]
        smoke = named(docs, "Pod", "auth-auth-service-smoke-test")["spec"]["containers"][0]
        command = argv(smoke, service_image())
        command[command.index("--url") + 1] = started.url("http", "")
        env = container_env(smoke, service_image(), context)
        result = subprocess.run(command, env={**BASE_ENV, **env}, capture_output=True, timeout=60)
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_the_metrics_the_alerts_and_the_hpa_read_are_exported(external_db: Any, tmp_path: Path) -> None:
    docs, context, _ = external_db
    with served(docs, context, tmp_path) as (started, _):
        httpx.get(started.url("http", "/healthz"))
        exported = httpx.get(started.url("admin", "/metrics"), timeout=5).text
    names = {line.split("{")[0].split(" ")[0] for line in exported.splitlines() if line and not line.startswith("#")}
    wanted = set().union(*(metric_names_of(rule["expr"]) for rule in alert_rules("hpa-rps")))
    assert wanted - names == set()


def test_sigterm_drains_finishes_the_request_in_flight_and_exits_within_the_grace_period(
    external_db: Any, tmp_path: Path
) -> None:
    """readiness fails within its window while requests still succeed; a create held in the database
    past the drain completes; the process exits 0 within terminationGracePeriodSeconds."""
    _, context, dsn = external_db
    # The statement timeout is raised so that the held create outlives the drain (2 s in this case).
    docs = objects(helm_template(case_named("external-db"), "--set", "config.dbStatementTimeoutMs=15000").stdout)
    grace = pod_spec(named(docs, "Deployment", SERVER))["terminationGracePeriodSeconds"]
    settings = yaml.safe_load(named(docs, "ConfigMap", SERVER)["data"]["config.yaml"])
    with served(docs, context, tmp_path) as (started, container):
        asyncio.run(_drain_scenario(started, container, settings, grace, dsn))


async def _drain_scenario(started: Started, container: dict[str, Any], settings: dict, grace: int, dsn: str) -> None:
    readiness_window = probe_window(container["readinessProbe"])
    drain = settings["drain_delay_seconds"]
    user = {"email": f"drain-{uuid.uuid4().hex[:8]}@example.com", "name": "Drain", "password": PASSWORD}
    async with httpx.AsyncClient(timeout=30) as client:
        async with users_table_locked(dsn):
            in_flight = asyncio.create_task(client.post(started.url("http", "/v1/users"), json=user))
            async with sql_connection(dsn) as sql:
                await wait_for_lock_waiters(sql, 1)
            started.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            assert await _until_not_ready(client, started, readiness_window) <= readiness_window
            during_drain = await client.get(started.url("http", "/healthz"))
            assert during_drain.status_code == 200, "requests still succeed during the drain"
            await asyncio.sleep(max(0.0, drain + 0.5 - (time.monotonic() - signalled)))  # accepting has stopped
            assert not in_flight.done()
        response = await in_flight  # the lock is released: the create goes through
    assert response.status_code == 201, response.text
    exit_code = await asyncio.to_thread(started.process.wait, grace)
    elapsed = time.monotonic() - signalled
    assert exit_code == 0, started.output()
    assert elapsed < grace, f"exited {elapsed:.1f}s after SIGTERM; the grace period is {grace}s"


async def _until_not_ready(client: httpx.AsyncClient, started: Started, window: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < window + 1:
        if (await client.get(started.url("http", "/readyz"))).status_code == 503:
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    raise AssertionError("readiness never failed after SIGTERM")
