"""What charts/locust's objects mean, beyond their schema: the workers find the master, the headless Job
runs to the end and keeps its reports, the scenarios come from the checksummed ConfigMap, every pod is
locked down, and the defaults point at what the service chart deploys."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtests.mix import DEFAULT_MIX  # standard library only: no locust in the test process
from tests.deploy import charts as service_chart
from tests.deploy.charts import REPO, containers, named, objects, of_kind, pod_labels, pod_spec, run, selects, tool
from tests.deploy.locust_chart import (
    CASE_NAMES,
    CHART,
    NAMESPACE,
    RELEASE,
    case_named,
    chart_modules,
    helm_template,
    rendered,
)

COMPONENT = "app.kubernetes.io/component"


def docs_of(case: str) -> list[dict[str, Any]]:
    return objects(rendered(case))


def values_of(case: str) -> dict[str, Any]:
    """The case's values as Helm merges them onto values.yaml (maps merged, the rest replaced; null removes)."""

    def merge(base: Any, override: Any) -> Any:
        if isinstance(base, dict) and isinstance(override, dict):
            merged = dict(base)
            for key, value in override.items():
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = merge(base.get(key), value)
            return merged
        return override

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in case_named(case).files:
        values = merge(values, yaml.safe_load(path.read_text()) or {})
    return values


HEADLESS_CASES = [case for case in CASE_NAMES if values_of(case)["mode"] == "headless"]
UI_CASES = [case for case in CASE_NAMES if case not in HEADLESS_CASES]


def workload(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    [found] = [d for d in docs if pod_spec(d) is not None and d["metadata"]["labels"][COMPONENT] == component]
    return found


def container(doc: dict[str, Any]) -> dict[str, Any]:
    [only] = pod_spec(doc)["containers"]  # type: ignore[index]
    return only


def flags(args: list[str]) -> dict[str, str]:
    """`--name=value` and bare `--name` arguments, by name."""
    return {arg.split("=", 1)[0]: arg.split("=", 1)[1] if "=" in arg else "" for arg in args if arg.startswith("--")}


def env_of(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in c.get("env", [])}


def ports_of(c: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in c.get("ports", [])}


# ---- The workers find the master ---------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_workers_connect_to_the_masters_service_and_port(case: str) -> None:
    docs = docs_of(case)
    master, worker = workload(docs, "master"), workload(docs, "worker")
    worker_flags, master_flags = flags(container(worker)["args"]), flags(container(master)["args"])
    assert "--worker" in worker_flags and "--master" in master_flags
    service = named(docs, "Service", worker_flags["--master-host"])
    assert selects(service["spec"]["selector"], pod_labels(master))
    assert not selects(service["spec"]["selector"], pod_labels(worker))
    [port] = [p for p in service["spec"]["ports"] if p["port"] == int(worker_flags["--master-port"])]
    assert ports_of(container(master))[port["targetPort"]] == int(master_flags["--master-bind-port"])


@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_master_rebalances_users_over_the_workers_it_gets(case: str) -> None:
    assert "--enable-rebalancing" in container(workload(docs_of(case), "master"))["args"]


@pytest.mark.parametrize("case", UI_CASES)
def test_the_ui_master_is_one_pod_with_the_ui_and_the_workers_port(case: str) -> None:
    docs = docs_of(case)
    master = workload(docs, "master")
    assert master["kind"] == "Deployment" and master["spec"]["replicas"] == 1
    assert master["spec"]["strategy"] == {"type": "Recreate"}  # never two masters splitting the workers
    c = container(master)
    assert ports_of(c) == {"ui": 8089, "master": 5557} and int(flags(c["args"])["--web-port"]) == 8089
    assert "--headless" not in c["args"]
    # The Tiltfile's contract: one workload with the UI's port.
    assert [d["metadata"]["name"] for d in docs if 8089 in ports_of_workload(d)] == [master["metadata"]["name"]]
    ui = [p for p in named(docs, "Service", master["metadata"]["name"])["spec"]["ports"] if p["name"] == "ui"]
    assert ui == [{"name": "ui", "port": 8089, "targetPort": "ui", "protocol": "TCP", "appProtocol": "http"}]


def ports_of_workload(doc: dict[str, Any]) -> set[int]:
    return {p for c in containers(doc) for p in ports_of(c).values()}


@pytest.mark.parametrize("case", UI_CASES)
def test_the_workers_are_a_scalable_deployment(case: str) -> None:
    docs = docs_of(case)
    worker = workload(docs, "worker")
    values = values_of(case)["workers"]
    assert worker["kind"] == "Deployment"
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    if values["autoscaling"]["enabled"]:
        assert "replicas" not in worker["spec"], "the HPA owns the count"
        [hpa] = hpas
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "locust-worker"}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 30)
        [metric] = hpa["spec"]["metrics"]
        assert metric["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    else:
        assert worker["spec"]["replicas"] == values["replicas"] and hpas == []


# ---- The headless run -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", HEADLESS_CASES)
def test_the_headless_master_is_a_job_that_runs_to_the_end(case: str) -> None:
    docs = docs_of(case)
    values = values_of(case)
    master, worker = workload(docs, "master"), workload(docs, "worker")
    assert (master["kind"], worker["kind"]) == ("Job", "Job")
    assert of_kind(docs, "Deployment") == [] and of_kind(docs, "HorizontalPodAutoscaler") == []
    c = container(master)
    args = flags(c["args"])
    replicas = values["workers"]["replicas"]
    assert "--headless" in args and "--master" in args
    assert int(args["--expect-workers"]) == replicas == worker["spec"]["parallelism"] == worker["spec"]["completions"]
    assert int(args["--expect-workers-max-wait"]) == values["headless"]["expectWorkersMaxWaitSeconds"]
    assert args.get("--run-time") == (values["headless"]["runTime"] or None)
    results = values["results"]["mountPath"]
    assert args["--csv"] == f"{results}/locust" and args["--html"] == f"{results}/report.html"
    # One run, one result: a failed gate is not retried, and the pod is not restarted in place.
    assert master["spec"]["backoffLimit"] == 0 and pod_spec(master)["restartPolicy"] == "Never"  # type: ignore[index]
    assert pod_spec(worker)["restartPolicy"] == "OnFailure"  # type: ignore[index]
    assert master["spec"]["activeDeadlineSeconds"] == worker["spec"]["activeDeadlineSeconds"]
    assert "ui" not in ports_of(c) and "--web-port" not in args


def test_the_headless_run_time_is_the_values_and_absent_when_the_shape_decides() -> None:
    assert flags(container(workload(docs_of("headless"), "master"))["args"])["--run-time"] == "20m"
    assert "--run-time" not in flags(container(workload(docs_of("headless-pvc"), "master"))["args"])


@pytest.mark.parametrize("case", HEADLESS_CASES)
def test_the_headless_master_keeps_its_reports_and_exits_with_locusts_code(case: str) -> None:
    """sh -c around locust: the args follow as "$@", the code lands in exit-code, the wait is the values'."""
    c = container(workload(docs_of(case), "master"))
    values = values_of(case)
    shell, dash_c, script, name = c["command"]
    assert (shell, dash_c, name) == ("/bin/sh", "-c", "locust-headless")
    assert 'locust "$@" &' in script and script.rstrip().endswith('exit "$code"')
    assert f'echo "$code" > {values["results"]["mountPath"]}/exit-code' in script
    assert f"sleep {values['headless']['keepResultsSeconds']} &" in script
    assert "$(" not in script, "the kubelet would expand $(...) as a variable"


# ---- The scenarios ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_locust_container_imports_the_scenarios_from_the_configmap(case: str) -> None:
    docs = docs_of(case)
    [configmap] = of_kind(docs, "ConfigMap")
    assert "locustfile.py" in configmap["data"]
    for doc in (workload(docs, "master"), workload(docs, "worker")):
        c, spec = container(doc), pod_spec(doc)
        env = {name: entry["value"] for name, entry in env_of(c).items() if "value" in entry}
        package = os.path.dirname(env["LOCUST_LOCUSTFILE"])
        volumes = {v["name"]: v for v in spec["volumes"]}  # type: ignore[index]
        [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == package]
        assert volumes[mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"] and mount["readOnly"]
        # `import loadtests.<module>`: the package's parent is on PYTHONPATH, under the package's own name.
        assert env["PYTHONPATH"] == os.path.dirname(package) and os.path.basename(package) == "loadtests"
        assert os.path.basename(env["LOCUST_LOCUSTFILE"]) in configmap["data"]


def test_every_scenario_variable_the_chart_sets_is_one_the_scenarios_read() -> None:
    """A misspelt LOADTEST_* would be ignored without a word: each name is in the modules' source."""
    source = "\n".join(chart_modules().values())
    names = {
        name
        for case in CASE_NAMES
        for doc in (workload(docs_of(case), "master"), workload(docs_of(case), "worker"))
        for name in env_of(container(doc))
        if name.startswith("LOADTEST_")
    }
    assert {"LOADTEST_SHAPE", "LOADTEST_RATE", "LOADTEST_DURATION", "LOADTEST_BATCH_TOKEN"} <= names
    assert sorted(name for name in names if f'"{name}"' not in source) == []


def test_the_mix_the_schema_accepts_is_the_scenarios() -> None:
    """Every request kind of loadtests/mix.py passes the schema's pattern; another name does not."""
    mix = ",".join(f"{kind}={weight}" for kind, weight in DEFAULT_MIX.items())
    escaped = mix.replace(",", "\\,")  # --set splits on unescaped commas
    docs = objects(helm_template(case_named("default"), "--set-string", f"scenario.mix={escaped}").stdout)
    assert env_of(container(workload(docs, "worker")))["LOADTEST_MIX"]["value"] == mix
    refused = helm_template(case_named("default"), "--set-string", "scenario.mix=verify=70\\,cached=20", check=False)
    assert refused.returncode != 0 and "at '/scenario/mix': 'verify=70,cached=20' does not match" in refused.stderr


def checksums(docs: list[dict[str, Any]]) -> set[str]:
    return {
        doc["spec"]["template"]["metadata"]["annotations"]["checksum/loadtests"]
        for doc in docs
        if pod_spec(doc) is not None
    }


def test_the_checksum_is_on_every_pod_and_the_same_for_the_same_modules() -> None:
    """Master and workers roll together; ui and headless renders of the same files agree."""
    [checksum] = checksums(docs_of("default"))
    assert re.fullmatch(r"[0-9a-f]{64}", checksum)
    assert all(checksums(docs_of(case)) == {checksum} for case in CASE_NAMES)


def test_a_changed_module_changes_the_checksum_and_a_changed_value_does_not(tmp_path: Path) -> None:
    copy = tmp_path / "locust"
    shutil.copytree(CHART, copy, symlinks=True)
    module = sorted(chart_modules())[-1]
    (copy / "files" / "loadtests" / module).write_text(chart_modules()[module] + "\n# changed\n")
    changed = objects(helm_template(case_named("default"), chart=copy).stdout)
    [before] = checksums(docs_of("default"))
    [after] = checksums(changed)
    assert after != before
    assert named(changed, "ConfigMap", "locust")["data"][module].endswith("# changed\n")
    scaled = objects(helm_template(case_named("default"), "--set", "workers.replicas=7").stdout)
    assert checksums(scaled) == {before}


# ---- Least privilege ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_pod_is_locked_down(case: str) -> None:
    docs = docs_of(case)
    pods = [doc for doc in docs if pod_spec(doc) is not None]
    assert len(pods) == 2
    for doc in pods:
        spec = pod_spec(doc)
        assert spec is not None
        name = doc["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False, name
        security = spec["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] >= 10000, name
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        emptied = {v["name"] for v in spec["volumes"] if "emptyDir" in v or "persistentVolumeClaim" in v}
        for c in containers(doc):
            context = c["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]} and context["privileged"] is False
            for kind in ("requests", "limits"):
                assert set(c["resources"][kind]) == {"cpu", "memory"}, (name, kind)
            # Locust writes only to mounted folders: every writable mount is an emptyDir or the claim.
            writable = [m for m in c["volumeMounts"] if not m.get("readOnly")]
            assert writable and all(m["name"] in emptied for m in writable), (name, writable)
    for account in of_kind(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("case", CASE_NAMES)
def test_only_the_master_gets_the_batch_token(case: str) -> None:
    docs = docs_of(case)
    token = values_of(case)["target"]["batchToken"]
    master_env = env_of(container(workload(docs, "master")))
    assert master_env["LOADTEST_BATCH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": token["existingSecret"],
        "key": token["existingSecretKey"],
    }
    assert "LOADTEST_BATCH_TOKEN" not in env_of(container(workload(docs, "worker")))
    secret_refs = [e for e in master_env.values() if "valueFrom" in e]
    assert len(secret_refs) == 1 and of_kind(docs, "Secret") == []


@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_master_writes_its_reports_to_a_volume_of_its_own(case: str) -> None:
    docs = docs_of(case)
    values = values_of(case)["results"]
    master = workload(docs, "master")
    args = flags(container(master)["args"])
    assert args["--csv"] == f"{values['mountPath']}/{values['csvPrefix']}"
    assert args["--html"] == f"{values['mountPath']}/{values['htmlReport']}"
    [mount] = [m for m in container(master)["volumeMounts"] if m["mountPath"] == values["mountPath"]]
    [volume] = [v for v in pod_spec(master)["volumes"] if v["name"] == mount["name"]]  # type: ignore[index]
    claims = of_kind(docs, "PersistentVolumeClaim")
    if values["persistence"]["enabled"]:
        [claim] = claims
        assert volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
        assert claim["spec"]["resources"]["requests"]["storage"] == values["persistence"]["size"]
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    else:
        assert volume["emptyDir"] == {"sizeLimit": values["sizeLimit"]} and claims == []
    worker = container(workload(docs, "worker"))
    assert values["mountPath"] not in {m["mountPath"] for m in worker["volumeMounts"]}


# ---- Scheduling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_the_workers_spread_over_nodes_and_zones(case: str) -> None:
    docs = docs_of(case)
    values = values_of(case)["workers"]
    worker, master = workload(docs, "worker"), workload(docs, "master")
    constraints = pod_spec(worker).get("topologySpreadConstraints", [])  # type: ignore[union-attr]
    if not values["topologySpread"]["enabled"]:
        assert constraints == []
        return
    assert [c["topologyKey"] for c in constraints] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    expected = "DoNotSchedule" if case == "autoscaling" else "ScheduleAnyway"
    for constraint in constraints:
        assert (constraint["whenUnsatisfiable"], constraint["maxSkew"]) == (expected, 1)
        assert selects(constraint["labelSelector"], pod_labels(worker))
        assert not selects(constraint["labelSelector"], pod_labels(master))


def service_chart_server() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The service chart's default render, and its server Deployment: what the defaults here aim at."""
    docs = objects(service_chart.rendered("default"))
    return docs, named(docs, "Deployment", "auth-auth-service")


@pytest.mark.parametrize("case", ["default", "dev", "autoscaling", "headless"])
def test_the_workers_prefer_nodes_without_the_services_pods(case: str) -> None:
    _, server = service_chart_server()
    [term] = pod_spec(workload(docs_of(case), "worker"))["affinity"]["podAntiAffinity"][  # type: ignore[index]
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"], pod_labels(server))
    assert term["podAffinityTerm"]["namespaces"] == [NAMESPACE]


# ---- The target ------------------------------------------------------------------------------------


def test_the_defaults_aim_at_what_the_service_chart_deploys_as_auth_in_the_same_namespace() -> None:
    """Host, pod port, pod labels and the batch token's Secret, against the service chart's own render."""
    docs, server = service_chart_server()
    values = values_of("default")["target"]
    host = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", values["host"])
    assert host, values["host"]
    service = named(docs, "Service", host.group(1))
    [port] = [p for p in service["spec"]["ports"] if p["port"] == int(host.group(2))]
    assert selects(service["spec"]["selector"], pod_labels(server))
    server_ports = ports_of(next(c for c in containers(server) if c["name"] == "auth-service"))
    assert server_ports[port["targetPort"]] == values["port"]
    assert selects({"matchLabels": values["podLabels"]}, pod_labels(server))
    secret = named(docs, "Secret", values["batchToken"]["existingSecret"])
    assert values["batchToken"]["existingSecretKey"] in secret["data"]
    server_env = {e["name"]: e for e in next(c for c in containers(server) if c["name"] == "auth-service")["env"]}
    assert server_env["AUTH_BATCH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": values["batchToken"]["existingSecret"],
        "key": values["batchToken"]["existingSecretKey"],
    }


@pytest.mark.parametrize("case", CASE_NAMES)
def test_locust_host_is_the_target(case: str) -> None:
    docs = docs_of(case)
    for doc in (workload(docs, "master"), workload(docs, "worker")):
        assert env_of(container(doc))["LOCUST_HOST"]["value"] == values_of(case)["target"]["host"]


# ---- NOTES.txt ------------------------------------------------------------------------------------


def notes(case: str) -> str:
    result = run(
        tool(service_chart.HELM), "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client",
        *case_named(case).args(),
    )  # fmt: skip
    return result.stdout.partition("\nNOTES:\n")[2]


def test_the_ui_notes_say_how_to_open_it() -> None:
    text = notes("default")
    for step in (
        "rollout status deployment/locust-master",
        "port-forward service/locust-master 8089:8089",
        "scale deployment/locust-worker --replicas=3",
    ):
        assert step in text, step


def test_the_headless_notes_say_how_to_get_the_reports_and_the_result() -> None:
    text = notes("headless")
    for step in (
        "get pod -l batch.kubernetes.io/job-name=locust-master",
        'exec "$POD" -- cat /opt/loadtests/results/exit-code',
        'cp "$POD:/opt/loadtests/results" ./results',
        "exec \"$POD\" -- sh -c 'kill 1'",
        "wait --for=condition=complete job/locust-master",
    ):
        assert step in text, step
    assert "results-reader" not in text


def test_the_reader_pod_of_the_notes_mounts_the_claim_and_validates(tmp_path: Path) -> None:
    """With persistence, NOTES.txt prints a pod to `kubectl apply` that mounts the reports' claim."""
    text = notes("headless-pvc")
    manifest = text.split("kubectl apply -f - <<'POD'\n", 1)[1].split("\nPOD\n", 1)[0]
    pod = yaml.safe_load(manifest)
    [claim] = of_kind(docs_of("headless-pvc"), "PersistentVolumeClaim")
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert (
        pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
        == values_of("headless-pvc")["results"]["mountPath"]
    )
    assert f"cp locust-results-reader:{values_of('headless-pvc')['results']['mountPath']} ./results" in text
    path = tmp_path / "reader.yaml"
    path.write_text(manifest)
    result = run(str(REPO / ".venv/bin/kubernetes-validate"), "--strict", "-k", "1.30.0", str(path), check=False)
    assert result.returncode == 0 and "passed for resource" in result.stdout, result.stdout + result.stderr
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
