"""The Tiltfile, run in starlark_go against recording stubs of Tilt's built-ins (tests/deploy/tilt_stubs.py),
checked against the repository, the chart's dev render and the parts of Tilt's behaviour that decide
whether `tilt up` works: resource assembly, port forwards, image and command injection."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from typing import Any

import pytest
import yaml
from starlark_go import EvalError

from tests.deploy import locust_chart
from tests.deploy.charts import NAMESPACE, RELEASE, REPO, case_named, helm_template, objects, rendered
from tests.deploy.tilt_stubs import (
    RESTART_EXT_DIR,
    TRIGGER_MODE_MANUAL,
    Resource,
    TiltError,
    TiltRun,
    assemble,
    containers,
    deployed,
    desugar,
    helm_objects,
    ignored,
    pod_spec,
    repository,
    resource_names,
)

CHART = "charts/auth-service"
DEV_VALUES = f"{CHART}/values-dev.yaml"
LOCUST_CHART = "charts/locust"
LOCUST_DEV_VALUES = f"{LOCUST_CHART}/values-dev.yaml"
# The Tiltfile's development Secret, which holds the batch token the Locust master seeds with.
DEV_SECRET = "auth-dev-secrets"
KIND_CONFIG = REPO / "k8s" / "kind" / "cluster.yaml"
COMPONENT = "app.kubernetes.io/component"


def kind_context() -> str:
    """kind's context for the project's cluster: kind-<the name in k8s/kind/cluster.yaml>, kind's default until then."""
    config = yaml.safe_load(KIND_CONFIG.read_text()) if KIND_CONFIG.exists() else None
    return "kind-" + ((config or {}).get("name") or "kind")


@pytest.fixture(scope="module")
def tilt() -> TiltRun:
    return TiltRun(context=kind_context()).execute()


@pytest.fixture(scope="module")
def resources(tilt: TiltRun) -> dict[str, Resource]:
    return assemble(tilt.objects, tilt.called("k8s_resource"))[0]


def dev_objects() -> list[dict[str, Any]]:
    """The chart's dev render as Tilt's helm() keeps it (without the `helm test` Pod)."""
    return helm_objects(rendered("dev"))


def locust_dev_objects() -> list[dict[str, Any]]:
    """The Locust chart's dev render, as the Tiltfile asks for it (values-dev.yaml, the dev batch token)."""
    case = locust_chart.case_named("dev")
    setting = f"target.batchToken.existingSecret={DEV_SECRET}"
    return helm_objects(locust_chart.helm_template(case, "--set", setting).stdout)


def dev_workload(component: str) -> dict[str, Any]:
    [found] = [o for o in dev_objects() if pod_spec(o) is not None and o["metadata"]["labels"][COMPONENT] == component]
    return found


def server_container(obj: dict[str, Any]) -> dict[str, Any]:
    [found] = [c for c in containers(obj, init=False) if c["name"] == "auth-service"]
    return found


def the_image_build(tilt: TiltRun) -> dict[str, Any]:
    [call] = tilt.called("docker_build_with_restart")
    return call


def live_update(tilt: TiltRun) -> list[dict[str, Any]]:
    return tilt.images[the_image_build(tilt)["ref"]]["live_update"]


def steps(tilt: TiltRun, kind: str) -> list[dict[str, Any]]:
    return [step for step in live_update(tilt) if step["step"] == kind]


def relative(path: str) -> str:
    return os.path.relpath((REPO / path).resolve(), REPO)


# ---- It runs ---------------------------------------------------------------------------------------


def test_it_parses_and_runs_and_builds_deploys_and_groups(tilt: TiltRun) -> None:
    assert tilt.called("docker_build_with_restart") and tilt.called("helm") and tilt.called("k8s_resource")
    assert {obj["kind"] for obj in tilt.objects} >= {"Namespace", "Deployment", "StatefulSet", "Job"}


def test_the_loader_binds_only_stubbed_extensions() -> None:
    code, loads = desugar("load('ext://restart_process', 'docker_build_with_restart')\nx = os.path.exists('a')\n")
    assert [(spec.module, spec.symbols) for spec in loads] == [
        ("ext://restart_process", {"docker_build_with_restart": "docker_build_with_restart"})
    ]
    assert code.splitlines() == ["None", "x = os__path__exists('a')"]
    with pytest.raises(TiltError, match="no stub"):
        TiltRun().extension("ext://helm_resource")


# ---- Paths -----------------------------------------------------------------------------------------


def test_every_path_it_names_exists(tilt: TiltRun) -> None:
    builds = [image for image in tilt.images.values() if image["context"] != RESTART_EXT_DIR]
    directories = [image["context"] for image in builds] + [call["path"] for call in tilt.called("helm")]
    directories += [step["local_path"] for step in steps(tilt, "sync")]
    files = [image["dockerfile"] for image in builds] + [v for call in tilt.called("helm") for v in call["values"]]
    files += [f for step in steps(tilt, "fall_back_on") for f in step["files"]]
    # read_file without a default is a file the Tiltfile needs; with one (and read_yaml's kind config,
    # not written yet), an optional one.
    files += [call["path"] for call in tilt.called("read_file") if call["default"] is None]
    assert directories and files
    for path in directories:
        assert (REPO / path).is_dir() and relative(path) == os.path.normpath(path), path
    for path in files:
        assert (REPO / path).is_file() and relative(path) == os.path.normpath(path), path
    assert [call["path"] for call in tilt.called("helm")] == [CHART, LOCUST_CHART]


def test_the_image_builds_from_the_service_with_its_dockerfile(tilt: TiltRun) -> None:
    build = the_image_build(tilt)
    assert build["context"] == "services/auth-service"
    assert build["dockerfile"] == "services/auth-service/Dockerfile"
    assert steps(tilt, "fall_back_on") == [
        {"step": "fall_back_on", "files": ["services/auth-service/pyproject.toml", "services/auth-service/uv.lock"]}
    ]
    assert [(s["local_path"], s["remote_path"]) for s in steps(tilt, "sync")] == [
        ("services/auth-service/src/auth_service", "/live/auth_service")
    ]


def test_what_live_update_watches_is_in_the_context_and_not_ignored(tilt: TiltRun) -> None:
    """Tilt watches an image's context less its .dockerignore and `ignore`: a synced or fall_back_on
    file outside that set would change without Tilt noticing."""
    build = the_image_build(tilt)
    context = REPO / build["context"]
    patterns = (context / ".dockerignore").read_text().splitlines() + build["ignore"]
    watched = [f for step in steps(tilt, "fall_back_on") for f in step["files"]]
    watched += [str(p.relative_to(REPO)) for s in steps(tilt, "sync") for p in (REPO / s["local_path"]).rglob("*.py")]
    assert len(watched) > 10
    for path in watched:
        inside = os.path.relpath(REPO / path, context)
        assert not inside.startswith(".."), path
        assert not ignored(inside, patterns), path
    assert ignored("src/auth_service/__pycache__/app.cpython-311.pyc", patterns)
    assert ignored(".ruff_cache/x", patterns)


def test_caches_inside_the_context_are_ignored(tilt: TiltRun) -> None:
    """Tests, charts and the repo's .venv are outside the build context; the caches inside it are
    ignored by the Tiltfile itself, whatever the .dockerignore says, so they never rebuild the image."""
    patterns = the_image_build(tilt)["ignore"]
    for cache in (".venv/bin/python", "src/auth_service/__pycache__/app.pyc", ".ruff_cache/x", ".mypy_cache/x"):
        assert ignored(cache, patterns), cache
    context = REPO / the_image_build(tilt)["context"]
    assert all(
        not (REPO / outside).resolve().is_relative_to(context.resolve()) for outside in ("tests", "charts", ".venv")
    )


# ---- Live update under the read-only root ----------------------------------------------------------


def writable_mounts(obj: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """mountPath -> volume, for the container's emptyDir mounts (the only writable paths)."""
    spec = pod_spec(obj)
    assert spec is not None
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    return {m["mountPath"]: m["name"] for m in container.get("volumeMounts", []) if m["name"] in empty_dirs}


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def test_the_chart_runs_the_server_with_a_read_only_root() -> None:
    assert server_container(dev_workload("server"))["securityContext"]["readOnlyRootFilesystem"] is True


def test_every_sync_destination_is_writable_in_the_dev_pod(tilt: TiltRun) -> None:
    server = dev_workload("server")
    mounts = writable_mounts(server, server_container(server))
    assert "/live" in mounts
    for step in steps(tilt, "sync"):
        assert any(under(step["remote_path"], mount) for mount in mounts), (step, mounts)


def test_the_synced_package_is_the_one_python_imports(tilt: TiltRun) -> None:
    """The destination is the package's directory in the first PYTHONPATH entry, so the synced
    sources shadow the installed ones."""
    env = {e["name"]: e.get("value") for e in server_container(dev_workload("server"))["env"]}
    first = env["PYTHONPATH"].split(":")[0]
    for step in steps(tilt, "sync"):
        assert os.path.dirname(step["remote_path"]) == first
        assert os.path.basename(step["remote_path"]) == os.path.basename(step["local_path"]) == "auth_service"


def test_the_restart_file_is_writable_in_the_dev_pod(tilt: TiltRun) -> None:
    restart_file = the_image_build(tilt)["restart_file"]
    server = dev_workload("server")
    assert any(under(restart_file, mount) for mount in writable_mounts(server, server_container(server)))
    assert steps(tilt, "run")[-1]["cmd"] == f"date > {restart_file}"


def test_the_restart_wrapper_finds_its_file_when_the_server_starts(tilt: TiltRun) -> None:
    """entr exits ("No regular files to watch") if the file is missing when the wrapper starts; the
    image's copy is hidden by the emptyDir, so an initContainer must create it on that volume."""
    server = next(
        o for o in deployed(tilt) if o["kind"] == "Deployment" and o["metadata"]["labels"][COMPONENT] == "server"
    )
    main = server_container(server)
    [watch] = [arg.split("=", 1)[1] for arg in main["command"] if arg.startswith("--watch_file=")]
    volume = writable_mounts(server, main)[os.path.dirname(watch)]
    creators = [
        c
        for c in pod_spec(server)["initContainers"]  # type: ignore[index]
        if c.get("command") == ["touch", watch] and writable_mounts(server, c).get(os.path.dirname(watch)) == volume
    ]
    assert len(creators) == 1


# ---- Images and commands -----------------------------------------------------------------------------


def test_the_image_is_the_one_the_dev_render_runs(tilt: TiltRun) -> None:
    ours = {repository(c["image"]) for o in dev_objects() for c in containers(o) if "auth-service" in c["image"]}
    assert ours == {the_image_build(tilt)["ref"]} == {"localhost/auth-service"}


def test_the_entrypoint_is_the_dockerfiles_so_the_pods_args_apply(tilt: TiltRun) -> None:
    dockerfile = (REPO / the_image_build(tilt)["dockerfile"]).read_text()
    [entrypoint] = re.findall(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE)
    assert the_image_build(tilt)["entrypoint"] == json.loads(entrypoint) == ["auth-service"]


def test_every_built_image_is_deployed_or_built_upon(tilt: TiltRun) -> None:
    used = {repository(c["image"]) for o in tilt.objects for c in containers(o)}
    bases = {
        line.split()[1]
        for image in tilt.images.values()
        for line in image["dockerfile_contents"].splitlines()
        if line.startswith("FROM ")
    }
    assert set(tilt.images) <= used | bases


def test_only_the_server_gets_the_restart_wrapper(tilt: TiltRun) -> None:
    """Tilt sets the wrapper as the command of every container of the wrapped image: the other
    containers of the service's image (the live-code copy, wait-for-schema, the migration Job) keep
    the chart's command and args, so they still run once and exit."""
    expected = {(o["metadata"]["name"], c["name"]): c for o in dev_objects() for c in containers(o)}
    wrapped = []
    for obj in deployed(tilt):
        for container in containers(obj):
            if container.get("command", [""])[0] == "/tilt-restart-wrapper":
                wrapped.append((obj["metadata"]["name"], container["name"], container.get("args")))
            elif (obj["metadata"]["name"], container["name"]) in expected:
                chart = expected[obj["metadata"]["name"], container["name"]]
                assert (container.get("command"), container.get("args")) == (chart.get("command"), chart.get("args"))
    assert wrapped == [(dev_workload("server")["metadata"]["name"], "auth-service", ["serve"])]


def test_the_dev_pod_copies_the_installed_package_before_the_server_starts(tilt: TiltRun) -> None:
    server = next(
        o for o in deployed(tilt) if o["kind"] == "Deployment" and o["metadata"]["labels"][COMPONENT] == "server"
    )
    [copy] = [c for c in pod_spec(server)["initContainers"] if c["name"] == "live-code"]  # type: ignore[index]
    assert copy["command"][:2] == ["python3", "-c"] and '"/live/auth_service"' in copy["command"][2]


# ---- The chart -------------------------------------------------------------------------------------


def test_helm_renders_the_dev_case(tilt: TiltRun) -> None:
    """The chart with values-dev.yaml as release RELEASE in NAMESPACE: what rendered("dev") checks."""
    [call] = [c for c in tilt.called("helm") if c["path"] == CHART]
    assert (call["values"], call["name"], call["namespace"]) == ([DEV_VALUES], RELEASE, NAMESPACE)
    assert [c["name"] for c in tilt.called("namespace_create")] == [NAMESPACE]


def test_the_generated_secrets_are_the_same_on_every_load() -> None:
    """helm template sees no cluster, so the chart's lookup-kept secrets come out new on each render;
    what Tilt applies must not, or the database's password changes under it."""
    raw = [objects(rendered("dev")), objects(helm_template(case_named("dev")).stdout)]
    assert [o for o in raw[0] if o["kind"] == "Secret"] != [o for o in raw[1] if o["kind"] == "Secret"]
    runs = [TiltRun(context=kind_context(), helm_cache=False).execute() for _ in range(2)]
    assert runs[0].objects == runs[1].objects


def test_the_database_dsn_carries_the_database_password(tilt: TiltRun) -> None:
    def decoded(name: str) -> dict[str, str]:
        [secret] = [o for o in tilt.objects if o["kind"] == "Secret" and o["metadata"]["name"] == name]
        assert "data" not in secret, "written as stringData, which the API server encodes"
        return secret["stringData"]

    database = dev_workload("postgresql")
    env = {e["name"]: e for e in pod_spec(database)["containers"][0]["env"]}  # type: ignore[index]
    data = decoded(env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"])
    [service] = [
        o for o in dev_objects() if o["kind"] == "Service" and o["metadata"]["labels"][COMPONENT] == "postgresql"
    ]
    assert data["dsn"] == "postgresql://{}:{}@{}:{}/{}".format(
        env["POSTGRES_USER"]["value"],
        data["password"],
        service["metadata"]["name"],
        service["spec"]["ports"][0]["port"],
        env["POSTGRES_DB"]["value"],
    )


def test_every_secret_a_container_reads_is_deployed(tilt: TiltRun) -> None:
    secrets = {
        o["metadata"]["name"]: o.get("data", {}) | o.get("stringData", {})
        for o in tilt.objects
        if o["kind"] == "Secret"
    }
    refs = [
        e["valueFrom"]["secretKeyRef"]
        for o in tilt.objects
        for c in containers(o)
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    ]
    assert refs
    for ref in refs:
        assert ref["key"] in secrets.get(ref["name"], {}), ref


# ---- Resources ---------------------------------------------------------------------------------------


def test_every_k8s_resource_names_a_workload_of_the_dev_render(tilt: TiltRun) -> None:
    workloads = [o for o in dev_objects() + locust_dev_objects() if pod_spec(o) is not None]
    names = set(resource_names(workloads))
    calls = tilt.called("k8s_resource")
    assert calls and all(call["workload"] in names for call in calls)
    # ... and each of them is named and labelled.
    assert sorted(call["workload"] for call in calls) == sorted(names)
    assert all(call["new_name"] and call["labels"] for call in calls)


def test_the_resources(resources: dict[str, Resource]) -> None:
    assert sorted(resources) == ["api", "collector", "jaeger", "locust", "locust-worker", "migrate", "postgresql"]
    components = {name: r.workload["metadata"]["labels"][COMPONENT] for name, r in resources.items()}
    assert components == {
        "api": "server",
        "collector": "collector",
        "jaeger": "jaeger",
        "locust": "master",
        "locust-worker": "worker",
        "migrate": "migrate",
        "postgresql": "postgresql",
    }
    assert resources["api"].option("resource_deps") == ["migrate"]
    assert resources["migrate"].option("resource_deps") == ["postgresql"]
    assert resources["migrate"].workload["kind"] == "Job"
    # After its first run the Job waits for a trigger: each source change would otherwise rebuild and rerun it.
    assert resources["migrate"].option("trigger_mode") == [TRIGGER_MODE_MANUAL]


def container_ports(obj: dict[str, Any]) -> set[int]:
    return {p["containerPort"] for c in containers(obj, init=False) for p in c.get("ports", [])}


def check_port_forwards(resources: dict[str, Resource], render: list[dict[str, Any]]) -> None:
    """Each forward's container port (the local one when none is given) is a port of the workload's
    containers, in the render."""
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in render if pod_spec(o) is not None}
    for resource in resources.values():
        workload = by_name[resource.workload["kind"], resource.workload["metadata"]["name"]]
        for forward in resource.option("port_forwards"):
            port = forward["container_port"] or forward["local_port"]
            assert port in container_ports(workload), (resource.name, forward)


def test_every_port_forward_reaches_a_container_port(resources: dict[str, Resource]) -> None:
    check_port_forwards(resources, dev_objects() + locust_dev_objects())


def test_the_port_check_refuses_a_port_no_container_has(resources: dict[str, Resource]) -> None:
    wrong = Resource(
        "api", resources["api"].workload, [], [{"port_forwards": [{"local_port": 8001, "container_port": 8001}]}]
    )
    with pytest.raises(AssertionError):
        check_port_forwards({"api": wrong}, dev_objects())


def test_the_forwards_and_links(resources: dict[str, Resource]) -> None:
    forwards = {
        name: {(f["local_port"], f["container_port"], f["link_path"]) for f in r.option("port_forwards")}
        for name, r in resources.items()
    }
    assert forwards["api"] == {(8000, 8000, "/docs"), (9000, 9000, "/metrics")}
    assert forwards["jaeger"] == {(16686, 16686, None)}
    assert forwards["locust"] == {(8089, 8089, None)} and forwards["locust-worker"] == set()
    assert [link["url"] for link in resources["api"].option("links")] == [
        "http://localhost:16686/search?service=auth-service"
    ]
    # The service name Jaeger lists: OTEL_SERVICE_NAME comes from the pod's app.kubernetes.io/name.
    assert dev_workload("server")["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == "auth-service"


def test_assembly_refuses_an_unknown_workload(tilt: TiltRun) -> None:
    bogus = {"workload": "auth-service", "new_name": "api", "objects": []}
    with pytest.raises(TiltError, match="unknown resource"):
        assemble(tilt.objects, [bogus])


# ---- Contexts --------------------------------------------------------------------------------------


def test_only_the_kind_clusters_context_is_allowed(tilt: TiltRun) -> None:
    assert [c["contexts"] for c in tilt.called("allow_k8s_contexts")] == [[kind_context()]]


def test_the_context_comes_from_the_kind_config() -> None:
    config = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: auth-dev\n"
    run = TiltRun(context="kind-auth-dev", files={"k8s/kind/cluster.yaml": config}).execute()
    assert [c["contexts"] for c in run.called("allow_k8s_contexts")] == [["kind-auth-dev"]]


def test_any_other_context_stops_it_before_anything_is_built() -> None:
    run = TiltRun(context="gke_acme_europe-west1_production", files={"k8s/kind/cluster.yaml": None})
    with pytest.raises(EvalError, match="deploys only to kind-kind"):
        run.execute()
    assert not run.called("docker_build") and not run.called("helm") and not run.objects


# ---- Local resources -------------------------------------------------------------------------------


def make_database() -> tuple[set[str], dict[str, str]]:
    """The targets `make -pRrq` knows, and each one's recipe."""
    out = subprocess.run(["make", "--no-print-directory", "-pRrq"], capture_output=True, text=True, cwd=REPO).stdout
    targets: set[str] = set()
    recipes: dict[str, str] = {}
    current, skip = None, False
    for line in out.splitlines():
        if line.startswith("\t") and current:
            recipes[current] += line + "\n"
            continue
        if line.startswith("#  "):  # make's notes on the target above
            continue
        match = re.match(r"^([A-Za-z0-9][^\s:=#]*)\s*:(?!=)", line)
        current = match.group(1) if match and not skip else None
        if current:
            targets.add(current)
            recipes.setdefault(current, "")
        skip = line.startswith("# Not a target:")
    return targets, recipes


def check_command(cmd: str, targets: set[str], recipes: dict[str, str]) -> None:
    """Each command of the chain is make with existing targets, a .venv/bin executable that exists, or
    a tool an earlier make target's recipe provides (bench-tools: wrk)."""
    provided: set[str] = set()
    for part in re.split(r"&&|\|\||;", cmd):
        words = [w for w in shlex.split(part) if not re.match(r"^[A-Z_]+=", w)]
        program, args = words[0], words[1:]
        if program == "make":
            named = [a for a in args if not a.startswith("-") and "=" not in a]
            assert named and set(named) <= targets, (part, sorted(targets))
            provided |= {tool for t in named for tool in ("wrk",) if tool in recipes[t]}
        elif program.startswith(".venv/bin/"):
            assert (REPO / program).is_file(), program
        else:
            assert program in provided, f"{program}: not a make target, a .venv/bin executable or made by one"


def local_resource(tilt: TiltRun, name: str) -> dict[str, Any]:
    [call] = [c for c in tilt.called("local_resource") if c["name"] == name]
    return call


def test_the_test_suite_runs_on_demand(tilt: TiltRun) -> None:
    tests = local_resource(tilt, "tests")
    assert (tests["cmd"], tests["trigger_mode"], tests["auto_init"], tests["deps"]) == (
        "make test",
        TRIGGER_MODE_MANUAL,
        False,
        [],
    )
    check_command(tests["cmd"], *make_database())


def test_the_load_run_is_make_load_on_demand(tilt: TiltRun) -> None:
    """`make load` (mk/load.mk): Locust headless against the forwarded API."""
    run = local_resource(tilt, "load")
    assert (run["trigger_mode"], run["auto_init"], run["resource_deps"]) == (TRIGGER_MODE_MANUAL, False, ["api"])
    assert run["cmd"] == "make load"
    check_command(run["cmd"], *make_database())


def test_the_command_check_refuses_what_does_not_exist() -> None:
    targets, recipes = make_database()
    for cmd in ("make no-such-target", ".venv/bin/no-such-tool", "wrk http://localhost:8000"):
        with pytest.raises(AssertionError):
            check_command(cmd, targets, recipes)


def test_without_make_load_the_load_run_is_a_smoke_check_and_wrk() -> None:
    """The Tiltfile's fallback, for a Makefile without the load target (mk/load.mk empty)."""
    run = TiltRun(context=kind_context(), files={"mk/load.mk": ""}).execute()
    cmd = local_resource(run, "load")["cmd"]
    check_command(cmd, *make_database())
    assert "smoke --url http://localhost:8000" in cmd
    assert re.search(r"wrk .*--duration 10s .*http://localhost:8000/healthz", cmd)


# ---- Locust ----------------------------------------------------------------------------------------


def test_locust_is_deployed_beside_the_service_with_the_dev_values_and_token(tilt: TiltRun) -> None:
    [call] = [c for c in tilt.called("helm") if c["path"] == LOCUST_CHART]
    assert (call["name"], call["namespace"], call["values"]) == ("locust", NAMESPACE, [LOCUST_DEV_VALUES])
    assert call["set"] == [f"target.batchToken.existingSecret={DEV_SECRET}"]
    deployed_locust = [
        o for o in tilt.objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "locust"
    ]
    expected = locust_dev_objects()
    for obj in expected:
        obj["metadata"].setdefault("namespace", NAMESPACE)
    assert deployed_locust == expected
    # The master's token is the dev Secret's, which the Tiltfile deploys with the service's.
    [master] = [o for o in deployed_locust if o["kind"] == "Deployment" and o["metadata"]["name"] == "locust-master"]
    [token] = [e for c in containers(master) for e in c["env"] if e["name"] == "LOADTEST_BATCH_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": DEV_SECRET, "key": "batch-token"}


def test_locust_waits_for_the_api_with_its_ui_forwarded(resources: dict[str, Resource]) -> None:
    """The master seeds through the API as it starts: both Locust resources wait for it."""
    assert resources["locust"].workload["metadata"]["name"] == "locust-master"
    assert resources["locust-worker"].workload["metadata"]["name"] == "locust-worker"
    for name in ("locust", "locust-worker"):
        assert resources[name].option("resource_deps") == ["api"] and resources[name].option("labels") == ["load"]
    assert [(f["local_port"], f["container_port"]) for f in resources["locust"].option("port_forwards")] == [
        (8089, 8089)
    ]
    # The Services join their workloads: the master's with the master, none is left over.
    assert [o["kind"] for o in resources["locust"].objects] == ["Deployment", "Service"]


def test_a_locust_chart_without_the_ui_port_is_refused() -> None:
    render = locust_chart.helm_template(locust_chart.case_named("dev")).stdout
    no_ui = render.replace("containerPort: 8089", "containerPort: 8090")
    assert no_ui != render
    run = TiltRun(context=kind_context(), fake_charts={LOCUST_CHART: no_ui})
    with pytest.raises(EvalError, match="Locust UI port 8089"):
        run.execute()
