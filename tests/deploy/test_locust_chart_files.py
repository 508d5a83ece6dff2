"""The chart's copy of the scenarios (charts/locust/files/loadtests/) is loadtests/'s runtime modules as
they are now, made by `make chart-locust-files`, and the ConfigMap carries every one of them."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from tests.deploy.charts import REPO, named, objects, run
from tests.deploy.locust_chart import FILES, chart_modules, rendered, runtime_modules

STALE = "the chart's copy of loadtests/ is stale: run `make chart-locust-files` and commit charts/locust/files/"


def test_the_copy_is_the_runtime_modules_of_loadtests() -> None:
    modules = runtime_modules()
    assert "locustfile.py" in modules and "__init__.py" in modules
    assert sorted(chart_modules()) == sorted(modules), STALE
    changed = [name for name, text in modules.items() if chart_modules()[name] != text]
    assert changed == [], f"{STALE} ({', '.join(changed)} changed)"


def test_the_make_target_writes_exactly_that_copy(tmp_path: Path) -> None:
    """`make chart-locust-files` into another chart folder: the same files, stale ones removed."""
    chart = tmp_path / "chart"
    (chart / "files" / "loadtests").mkdir(parents=True)
    (chart / "files" / "loadtests" / "removed_module.py").write_text("")
    run("make", "--no-print-directory", "chart-locust-files", f"LOCUST_CHART_DIR={chart}", cwd=REPO)
    assert chart_modules(chart / "files" / "loadtests") == runtime_modules()


def locust_dependencies() -> set[str]:
    """The top-level modules of the distributions Locust requires (gevent, geventhttpclient, ...), not its extras'."""
    requirements = [r for r in metadata.requires("locust") or [] if "extra ==" not in r]
    required = {re.split(r"[^A-Za-z0-9_.-]", r, maxsplit=1)[0].lower() for r in requirements}
    return {
        module
        for module, distributions in metadata.packages_distributions().items()
        if any(d.lower() in required for d in distributions)
    }


def optional_imports(tree: ast.Module) -> set[int]:
    """The imports inside a `try:` that catches ImportError: the module does without them."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            guarded |= {id(inner) for statement in node.body for inner in ast.walk(statement)}
    return guarded


def test_the_runtime_modules_import_only_the_standard_library_locust_and_each_other() -> None:
    """The official image has Python, Locust and Locust's own dependencies, nothing of this project."""
    allowed = set(sys.stdlib_module_names) | {"locust", "loadtests", "__future__"} | locust_dependencies()
    foreign = {}
    for name, text in chart_modules().items():
        tree = ast.parse(text)
        optional = optional_imports(tree)
        for node in ast.walk(tree):
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            if roots - allowed:
                foreign[name] = sorted(roots - allowed)
    assert foreign == {}


def test_the_import_check_sees_a_foreign_import_and_spares_an_optional_one() -> None:
    tree = ast.parse("try:\n    import argon2\nexcept ImportError:\n    argon2 = None\nimport httpx\n")
    imports = sorted((node for node in ast.walk(tree) if isinstance(node, ast.Import)), key=lambda node: node.lineno)
    assert [id(node) in optional_imports(tree) for node in imports] == [True, False]


def test_the_configmap_holds_every_runtime_module_as_it_is() -> None:
    data = named(objects(rendered("default")), "ConfigMap", "locust")["data"]
    assert data == chart_modules(FILES)
    assert sum(len(text.encode()) for text in data.values()) < 900_000, "a ConfigMap holds 1 MiB at most"
