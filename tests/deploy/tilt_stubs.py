"""Tilt's Tiltfile built-ins as recording stubs, to run the real Tiltfile in starlark_go, and the parts
of Tilt's behaviour the tests check it against (resource assembly, image and command injection).

starlark_go has neither load() nor modules with attributes, so `desugar` rewrites exactly those two
things before the file runs: each top-level `load()` becomes a blank statement whose names are bound
as globals from the stubbed extensions, and `os.path.exists` becomes `os__path__exists`. The rest runs
as written, in Tilt's dialect (top-level if/for, reassigned globals, recursion, sets).

The stubs take Tilt's parameter names (a wrong keyword fails as it would in Tilt), read files, render
charts with the pinned helm as Tilt's helm() does, and emulate the two extensions the Tiltfile loads
as their source does (tilt-dev/tilt-extensions restart_process and namespace).
"""

from __future__ import annotations

import ast
import copy
import functools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlark_go import Starlark, configure_starlark

from tests.deploy.charts import HELM, REPO, run, tool

TILTFILE = REPO / "Tiltfile"
MODULES = ("os", "config", "sys", "shlex", "v1alpha1")
# The child build of docker_build_with_restart has the extension's own directory as its context.
RESTART_EXT_DIR = "<ext://restart_process>"
TRIGGER_MODE_AUTO = "TRIGGER_MODE_AUTO"
TRIGGER_MODE_MANUAL = "TRIGGER_MODE_MANUAL"
# Tilt's helm() drops the chart's `helm test` objects (internal/tiltfile/helm.go, filterHelmTestYAML).
HELM_TEST_SOURCE = re.compile(r"^# Source: .*/tests/", re.MULTILINE)

# libyaml when present: the Tiltfile's objects go through YAML several times a run.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_all(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc is not None]


def load(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 (a safe loader, C or Python)


def dump_all(docs: list[Any]) -> str:
    return yaml.dump_all(docs, Dumper=_DUMPER, sort_keys=False)


# Tilt's dialect (internal/tiltfile/starkit/environment.go): in starlark-go, global reassignment also
# allows top-level control flow, and recursion allows `while`.
configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)


class TiltError(Exception):
    """What Tilt itself would refuse (an unknown resource, an object fragment that matches nothing)."""


@dataclass(frozen=True)
class Load:
    module: str
    symbols: dict[str, str]  # the name bound in the Tiltfile -> the name the module exports


def desugar(source: str) -> tuple[str, list[Load]]:
    """The source with its load() statements blanked and module attributes flattened (see above)."""
    tree = ast.parse(source)
    edits: list[tuple[ast.expr | ast.stmt, str]] = []
    loads = []
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "load":
            module, *names = (ast.literal_eval(arg) for arg in call.args)
            symbols = {name: name for name in names} | {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
            loads.append(Load(module, symbols))
            edits.append((node, "None" + "\n" * ((node.end_lineno or node.lineno) - node.lineno)))
    finder = _ModuleAttributes()
    finder.visit(tree)
    edits += finder.found
    encoded = source.encode()
    starts = [0]
    for line in encoded.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    # ast columns are UTF-8 byte offsets; edits go from the end so that earlier offsets still hold.
    spans = [
        (starts[n.lineno - 1] + n.col_offset, starts[(n.end_lineno or n.lineno) - 1] + (n.end_col_offset or 0), text)
        for n, text in edits
    ]
    for start, end, text in sorted(spans, reverse=True):
        encoded = encoded[:start] + text.encode() + encoded[end:]
    return encoded.decode(), loads


class _ModuleAttributes(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[ast.expr | ast.stmt, str]] = []

    def visit_Attribute(self, node: ast.Attribute) -> None:
        parts: list[str] = []
        value: ast.expr = node
        while isinstance(value, ast.Attribute):
            parts.insert(0, value.attr)
            value = value.value
        if isinstance(value, ast.Name) and value.id in MODULES:
            self.found.append((node, "__".join([value.id, *parts])))
        else:
            self.generic_visit(node)


def as_list(value: Any) -> list[Any]:
    """Tilt's "string or list of strings" arguments."""
    if value is None:
        return []
    return [value] if isinstance(value, str | dict | int) else list(value)


def repository(ref: str) -> str:
    """An image reference without tag or digest (how Tilt matches a built image to a container)."""
    name = ref.split("@")[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj.get("kind") == "Pod":
        return obj["spec"]
    if obj.get("kind") in POD_TEMPLATE_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    meta = obj["metadata"] if obj["kind"] == "Pod" else obj["spec"]["template"].get("metadata", {})
    return meta.get("labels") or {}


def containers(obj: dict[str, Any], *, init: bool = True) -> Iterator[dict[str, Any]]:
    spec = pod_spec(obj)
    if spec is not None:
        if init:
            yield from spec.get("initContainers", [])
        yield from spec["containers"]


def helm_objects(manifests: str) -> list[dict[str, Any]]:
    """What Tilt's helm() keeps of a render: every object but the chart's tests."""
    docs = manifests.split("---\n")
    return [obj for doc in docs if not HELM_TEST_SOURCE.search(doc) for obj in [load(doc)] if obj]


@functools.cache
def _helm_template_cached(args: tuple[str, ...]) -> str:
    return run(tool(HELM), "template", *args).stdout


def helm_template(args: list[str], *, cache: bool = True) -> str:
    """The pinned helm, as Tilt runs it: `helm template NAME PATH --namespace NS --include-crds ...`."""
    return _helm_template_cached(tuple(args)) if cache else run(tool(HELM), "template", *args).stdout


@dataclass
class TiltRun:
    """One execution of the Tiltfile against the stubs, and everything it asked Tilt to do."""

    context: str = "kind-kind"
    # Paths (relative to the repo) whose os.path.exists answer is overridden.
    exists: dict[str, bool] = field(default_factory=dict)
    # Paths whose content read_file/read_yaml see instead of the file's; None: the file is missing.
    files: dict[str, str | None] = field(default_factory=dict)
    # Charts rendered from this text instead of by helm (a chart that is not written yet).
    fake_charts: dict[str, str] = field(default_factory=dict)
    helm_cache: bool = True
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    # ---- running ----------------------------------------------------------------------------------

    def execute(self, path: Path = TILTFILE) -> TiltRun:
        code, loads = desugar(path.read_text())
        globals_ = self.builtins()
        for spec in loads:
            exports = self.extension(spec.module)
            for local_name, exported in spec.symbols.items():
                globals_[local_name] = exports[exported]
        Starlark(globals=globals_, print=self.messages.append).exec(code, filename=str(path.name))
        return self

    def called(self, name: str) -> list[dict[str, Any]]:
        return [args for called, args in self.calls if called == name]

    def record(self, call: str, /, **args: Any) -> None:
        self.calls.append((call, args))

    def path(self, value: str) -> Path:
        """A Tiltfile path: relative to the Tiltfile's directory, as Tilt resolves it."""
        return (REPO / value).resolve()

    def read(self, value: str) -> str | None:
        relative = os.path.relpath(self.path(value), REPO)
        if relative in self.files:
            return self.files[relative]
        target = self.path(value)
        return target.read_text() if target.is_file() else None

    # ---- the built-ins ------------------------------------------------------------------------

    def builtins(self) -> dict[str, Any]:
        names = [name for name in dir(self) if name.startswith("tilt_")]
        found: dict[str, Any] = {name.removeprefix("tilt_"): getattr(self, name) for name in names}
        found |= {"TRIGGER_MODE_AUTO": TRIGGER_MODE_AUTO, "TRIGGER_MODE_MANUAL": TRIGGER_MODE_MANUAL}
        found |= {"config__tilt_subcommand": "up"}
        return found

    def tilt_docker_build(
        self,
        ref: str,
        context: str,
        build_args: dict[str, str] | None = None,
        dockerfile: str | None = None,
        dockerfile_contents: str = "",
        live_update: list[dict[str, Any]] | None = None,
        match_in_env_vars: bool = False,
        ignore: Any = None,
        only: Any = None,
        entrypoint: Any = None,
        target: str = "",
        ssh: Any = "",
        network: str = "",
        secret: Any = "",
        extra_tag: Any = "",
        container_args: list[str] | None = None,
        cache_from: Any = None,
        pull: bool = False,
        platform: str = "",
        extra_hosts: Any = None,
    ) -> None:
        if dockerfile and dockerfile_contents:
            raise TiltError("Cannot specify both dockerfile and dockerfile_contents keyword arguments")
        if ref in self.images:
            raise TiltError(f"Image for ref {ref!r} has already been defined")
        if not dockerfile_contents:
            default = os.path.join(context, "Dockerfile")
            contents = self.read(dockerfile or default)
            if contents is None:
                raise TiltError(f"error reading dockerfile {dockerfile or default}")
            dockerfile_contents = contents
        steps = live_update or []
        _check_step_order(steps)
        command = ["sh", "-c", entrypoint] if isinstance(entrypoint, str) else list(entrypoint or [])
        image = {
            "ref": ref,
            "context": context,
            "dockerfile": dockerfile,
            "dockerfile_contents": dockerfile_contents,
            "build_args": build_args or {},
            "live_update": steps,
            "ignore": as_list(ignore),
            "only": as_list(only),
            "entrypoint": command,
            "container_args": container_args,
            "target": target,
        }
        self.images[ref] = image
        self.record("docker_build", **image)

    def tilt_sync(self, local_path: str, remote_path: str) -> dict[str, Any]:
        if not remote_path.startswith("/"):
            raise TiltError(f"sync destination {remote_path!r} must be absolute")
        return {"step": "sync", "local_path": local_path, "remote_path": remote_path}

    def tilt_run(self, cmd: Any, trigger: Any = None, echo_off: bool = False) -> dict[str, Any]:
        return {"step": "run", "cmd": cmd, "trigger": as_list(trigger)}

    def tilt_fall_back_on(self, files: Any) -> dict[str, Any]:
        return {"step": "fall_back_on", "files": as_list(files)}

    def tilt_restart_container(self) -> dict[str, Any]:
        return {"step": "restart_container"}

    def tilt_initial_sync(self) -> dict[str, Any]:
        return {"step": "initial_sync"}

    def tilt_helm(
        self,
        pathToChartDir: str,  # Tilt's parameter names
        name: str = "",
        namespace: str = "",
        values: Any = None,
        set: Any = None,
        kube_version: str = "",
        skip_crds: bool = False,
    ) -> str:
        chart = self.path(pathToChartDir)
        relative = os.path.relpath(chart, REPO)
        values_files, settings = as_list(values), as_list(set)
        self.record("helm", path=pathToChartDir, name=name, namespace=namespace, values=values_files, set=settings)
        if relative in self.fake_charts:
            manifests = self.fake_charts[relative]
        else:
            if not chart.is_dir():
                raise TiltError(f"Could not read Helm chart directory {pathToChartDir!r}: does not exist")
            args = [name or "chart", str(chart)]
            args += ["--namespace", namespace] if namespace else []
            args += ["--kube-version", kube_version] if kube_version else []
            args += [] if skip_crds else ["--include-crds"]
            args += [arg for path in values_files for arg in ("--values", str(self.path(path)))]
            args += [arg for setting in settings for arg in ("--set", setting)]
            manifests = helm_template(args, cache=self.helm_cache)
        objects = helm_objects(manifests)
        for obj in objects if namespace else []:  # helm template sets none; Tilt's helm() does
            obj["metadata"].setdefault("namespace", namespace)
        return dump_all(objects)

    def tilt_k8s_yaml(self, yaml_: Any = None, allow_duplicates: bool = False, **kwargs: Any) -> None:
        # Tilt's parameter is `yaml`; a Blob is YAML text, a string without a newline a file's path.
        value = kwargs.pop("yaml", yaml_)
        if kwargs:
            raise TiltError(f"k8s_yaml: unexpected arguments {sorted(kwargs)}")
        for item in as_list(value):
            text = item if "\n" in item else self.read(item)
            if text is None:
                raise TiltError(f"k8s_yaml: no file {item!r}")
            self.objects += load_all(text)
        self.record("k8s_yaml", allow_duplicates=allow_duplicates)

    def tilt_k8s_resource(
        self,
        workload: str = "",
        new_name: str = "",
        port_forwards: Any = None,
        extra_pod_selectors: Any = None,
        trigger_mode: str | None = None,
        resource_deps: list[str] | None = None,
        objects: list[str] | None = None,
        auto_init: bool = True,
        pod_readiness: str = "",
        links: Any = None,
        labels: Any = None,
        discovery_strategy: str = "",
    ) -> None:
        self.record(
            "k8s_resource",
            workload=workload,
            new_name=new_name,
            port_forwards=[_port_forward(pf) for pf in as_list(port_forwards)],
            trigger_mode=trigger_mode,
            resource_deps=list(resource_deps or []),
            objects=list(objects or []),
            auto_init=auto_init,
            links=[link if isinstance(link, dict) else {"url": link, "name": None} for link in as_list(links)],
            labels=as_list(labels),
        )

    def tilt_port_forward(
        self,
        local_port: int,
        container_port: int | None = None,
        name: str | None = None,
        link_path: str | None = None,
        host: str | None = None,
    ) -> dict[str, Any]:
        return {"local_port": local_port, "container_port": container_port, "name": name, "link_path": link_path}

    def tilt_link(self, url: str, name: str | None = None) -> dict[str, Any]:
        return {"url": url, "name": name}

    def tilt_local_resource(
        self,
        name: str,
        cmd: Any,
        deps: Any = None,
        trigger_mode: str = TRIGGER_MODE_AUTO,
        resource_deps: list[str] | None = None,
        ignore: Any = None,
        auto_init: bool = True,
        serve_cmd: Any = "",
        cmd_bat: Any = "",
        serve_cmd_bat: Any = "",
        allow_parallel: bool = False,
        links: Any = None,
        labels: Any = None,
        env: dict[str, str] | None = None,
        serve_env: dict[str, str] | None = None,
        readiness_probe: Any = None,
        dir: str = "",
        serve_dir: str = "",
    ) -> None:
        self.record(
            "local_resource",
            name=name,
            cmd=cmd,
            deps=as_list(deps),
            trigger_mode=trigger_mode,
            resource_deps=list(resource_deps or []),
            auto_init=auto_init,
            serve_cmd=serve_cmd,
            labels=as_list(labels),
            env=env or {},
        )

    def tilt_allow_k8s_contexts(self, contexts: Any) -> None:
        self.record("allow_k8s_contexts", contexts=as_list(contexts))

    def tilt_k8s_context(self) -> str:
        return self.context

    def tilt_k8s_namespace(self) -> str:
        return "default"

    def tilt_read_file(self, file_path: str, default: str | None = None) -> str:
        text = self.read(file_path)
        self.record("read_file", path=file_path, default=default)
        if text is None:
            if default is None:
                raise TiltError(f"read_file: {file_path}: no such file")
            return default
        return text

    def tilt_read_yaml(self, path: str, default: Any = None) -> Any:
        text = self.read(path)
        self.record("read_yaml", path=path, default=default)
        if text is None:
            if default is None:
                raise TiltError(f"read_yaml: {path}: no such file")
            return default
        return load(text)

    def tilt_listdir(self, directory: str, recursive: bool = False) -> list[str]:
        self.record("listdir", path=directory)
        root = self.path(directory)
        return sorted(str(p) for p in (root.rglob("*") if recursive else root.iterdir()) if p.is_file())

    def tilt_watch_file(self, file_path: str) -> None:
        self.record("watch_file", path=file_path)

    def tilt_decode_yaml_stream(self, yaml_text: str) -> list[Any]:
        return load_all(yaml_text)

    def tilt_decode_yaml(self, yaml_text: str) -> Any:
        return load(yaml_text)

    def tilt_encode_yaml_stream(self, objs: list[Any]) -> str:
        return dump_all(objs)

    def tilt_encode_yaml(self, obj: Any) -> str:
        return dump_all([obj])

    def tilt_blob(self, contents: str) -> str:
        return contents

    def tilt_local(self, command: Any, quiet: bool = False, **kwargs: Any) -> str:
        self.record("local", command=command, **kwargs)
        return ""

    def tilt_warn(self, msg: str) -> None:
        self.messages.append("WARNING: " + msg)

    def tilt_update_settings(self, **kwargs: Any) -> None:
        self.record("update_settings", **kwargs)

    def tilt_version_settings(self, check_updates: bool = True, constraint: str = "") -> None:
        self.record("version_settings", check_updates=check_updates, constraint=constraint)

    def tilt_watch_settings(self, ignore: Any) -> None:
        self.record("watch_settings", ignore=as_list(ignore))

    def tilt_default_registry(self, host: str, host_from_cluster: str | None = None, single_name: str = "") -> None:
        self.record("default_registry", host=host)

    def tilt_os__path__exists(self, path: str) -> bool:
        relative = os.path.relpath(self.path(path), REPO)
        self.record("os.path.exists", path=path)
        return self.exists.get(relative, self.path(path).exists())

    def tilt_os__path__join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def tilt_os__path__basename(self, path: str) -> str:
        return os.path.basename(path)

    def tilt_os__path__dirname(self, path: str) -> str:
        return os.path.dirname(path)

    def tilt_os__getcwd(self) -> str:
        return str(REPO)

    # ---- extensions: what their Tiltfiles do ------------------------------------------------------

    def extension(self, module: str) -> dict[str, Callable[..., Any]]:
        extensions = {
            "ext://restart_process": {"docker_build_with_restart": self.docker_build_with_restart},
            "ext://namespace": {"namespace_create": self.namespace_create},
        }
        if module not in extensions:
            raise TiltError(f"load({module!r}): no stub for this extension")
        return extensions[module]

    def docker_build_with_restart(
        self,
        ref: str,
        context: str,
        entrypoint: Any,
        live_update: list[dict[str, Any]],
        base_suffix: str = "-tilt_docker_build_with_restart_base",
        restart_file: str = "/tmp/.restart-proc",  # noqa: S108 (the extension's default: a path in the container)
        trigger: Any = None,
        exit_policy: str = "restart",
        **kwargs: Any,
    ) -> None:
        """restart_process/Tiltfile: the image as `ref + base_suffix`, then `ref` on it with the wrapper
        as its entrypoint and, last in the live update, a write to the restart file."""
        self.record(
            "docker_build_with_restart",
            ref=ref,
            context=context,
            entrypoint=entrypoint,
            live_update=live_update,
            base_suffix=base_suffix,
            restart_file=restart_file,
            **kwargs,
        )
        if not live_update:
            raise TiltError("`docker_build_with_restart` requires at least one live_update step")
        if any(step["step"] == "restart_container" for step in live_update):
            raise TiltError(
                "`docker_build_with_restart` is not compatible with live_update step: `restart_container()`"
            )
        wrapper = ["/tilt-restart-wrapper", f"--watch_file={restart_file}"]
        wrapper += ["--entr_flags=-r"] if exit_policy == "continue" else []
        wrapper += ["sh", "-c", entrypoint] if isinstance(entrypoint, str) else list(entrypoint)
        base_ref = ref + base_suffix
        self.tilt_docker_build(base_ref, context, **kwargs)
        child_kwargs = {k: v for k, v in kwargs.items() if k not in ("dockerfile", "dockerfile_contents", "target")}
        dockerfile = f"FROM {base_ref}\nRUN touch {restart_file}\nENTRYPOINT {wrapper}\n"
        restart = self.tilt_run(f"date > {restart_file}", trigger=trigger)
        self.tilt_docker_build(
            ref,
            RESTART_EXT_DIR,
            entrypoint=wrapper,
            dockerfile_contents=dockerfile,
            live_update=[*live_update, restart],
            **child_kwargs,
        )

    def namespace_create(
        self, name: str, allow_duplicates: bool = False, annotations: Any = None, labels: Any = None
    ) -> None:
        self.record("namespace_create", name=name)
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        self.tilt_k8s_yaml(dump_all([namespace]), allow_duplicates=allow_duplicates)


def _check_step_order(steps: list[dict[str, Any]]) -> None:
    """Tilt's rule: fall_back_on steps, then sync steps, then run steps (restart_container last)."""
    order = {"initial_sync": 0, "fall_back_on": 1, "sync": 2, "run": 3, "restart_container": 4}
    ranks = [order[step["step"]] for step in steps]
    if ranks != sorted(ranks):
        raise TiltError(f"live_update steps out of order: {[step['step'] for step in steps]}")


def _port_forward(value: Any) -> dict[str, Any]:
    """port_forwards' three forms: 9000, '9000:8000' (or 'host:9000:8000'), port_forward(...)."""
    if isinstance(value, dict):
        return value
    parts = str(value).split(":")
    local = int(parts[-2] if len(parts) > 1 else parts[-1])
    container = int(parts[-1]) if len(parts) > 1 else None
    return {"local_port": local, "container_port": container, "name": None, "link_path": None}


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out + "$")


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether a context-relative path is excluded by dockerignore patterns (the last matching one
    decides, `!` re-includes; a pattern matching a parent directory matches what is under it), as Tilt
    applies the context's .dockerignore and docker_build's `ignore` to the files it watches."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for raw in patterns:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        regex = _ignore_regex(line.lstrip("!").strip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            result = not negated
    return result


# ---- Tilt's assembly of k8s objects into resources (internal/tiltfile/tiltfile_state.go) ------------


@dataclass
class Resource:
    name: str
    workload: dict[str, Any]
    objects: list[dict[str, Any]]
    options: list[dict[str, Any]] = field(default_factory=list)

    def option(self, key: str) -> list[Any]:
        return [value for options in self.options for value in as_list(options.get(key))]


def potential_names(obj: dict[str, Any]) -> list[str]:
    """name, name:kind, name:kind:namespace, name:kind:namespace:group (lower case), shortest first."""
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "core"
    parts = [obj["metadata"]["name"], obj["kind"], obj["metadata"].get("namespace") or "", group]
    return [":".join(parts[: i + 1]).lower() for i in range(len(parts))]


def resource_names(workloads: list[dict[str, Any]]) -> list[str]:
    """Each workload's resource name: the shortest of its potential names no other workload shares."""
    counts: dict[str, int] = {}
    for obj in workloads:
        for name in potential_names(obj):
            counts[name] = counts.get(name, 0) + 1
    return [next(n for n in potential_names(obj) if counts[n] == 1) for obj in workloads]


def _service_selects(service: dict[str, Any], workload: dict[str, Any]) -> bool:
    selector = service.get("spec", {}).get("selector") or {}
    labels = pod_labels(workload)
    same_namespace = service["metadata"].get("namespace") in (None, workload["metadata"].get("namespace"))
    return bool(selector) and same_namespace and all(labels.get(k) == v for k, v in selector.items())


def assemble(
    objects: list[dict[str, Any]], k8s_resource_calls: list[dict[str, Any]]
) -> tuple[dict[str, Resource], list[dict[str, Any]]]:
    """Tilt's resources (one per workload, its Services by selector, then k8s_resource's renames and
    objects) and what is left in "uncategorized". Raises TiltError where Tilt would refuse."""
    workloads = [obj for obj in objects if pod_spec(obj) is not None]
    unresourced = [obj for obj in objects if pod_spec(obj) is None]
    resources: dict[str, Resource] = {}
    for name, workload in zip(resource_names(workloads), workloads, strict=True):
        services = [obj for obj in unresourced if obj["kind"] == "Service" and _service_selects(obj, workload)]
        unresourced = [obj for obj in unresourced if not any(obj is s for s in services)]
        resources[name] = Resource(name, workload, [workload, *services])
    for call in k8s_resource_calls:
        if call["workload"] not in resources:
            raise TiltError(f"k8s_resource specified unknown resource {call['workload']!r}: known {sorted(resources)}")
        resource = resources.pop(call["workload"])
        if call["new_name"] and call["new_name"] != resource.name:
            if call["new_name"] in resources:
                raise TiltError(f"k8s_resource: {call['new_name']!r} is already a resource")
            resource.name = call["new_name"]
        resources[resource.name] = resource
        resource.options.append(call)
        for fragment in call["objects"]:
            matches = [obj for obj in unresourced if fragment.lower() in _fragments(obj)]
            if len(matches) != 1:
                raise TiltError(f"object fragment {fragment!r} matches {len(matches)} uncategorized objects")
            resource.objects.append(matches[0])
            unresourced = [obj for obj in unresourced if obj is not matches[0]]
    return resources, unresourced


def _fragments(obj: dict[str, Any]) -> list[str]:
    parts = [obj["metadata"]["name"], obj["kind"], obj["metadata"].get("namespace") or ""]
    return [":".join(parts[: i + 1]).lower() for i in range(len(parts))]


def deployed(tilt: TiltRun) -> list[dict[str, Any]]:
    """The objects as Tilt applies them: each container of a built image gets the built tag and, when
    the build has an entrypoint or container_args, that command and those args
    (internal/k8s/image.go, InjectImageDigest and InjectCommandAndArgs)."""
    objects = copy.deepcopy(tilt.objects)
    for obj in objects:
        for container in containers(obj):
            image = tilt.images.get(repository(container["image"]))
            if image is None:
                continue
            container["image"] = image["ref"] + ":tilt-0123456789abcdef"
            container["imagePullPolicy"] = "IfNotPresent"
            if image["entrypoint"]:
                container["command"] = image["entrypoint"]
            if image["container_args"] is not None:
                container["args"] = image["container_args"]
    return objects
