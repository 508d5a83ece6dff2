"""The one request mix, shared by `make bench` and the Locust scenarios, and what the scenarios may import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from bench import config
from loadtests import mix
from tests.loadtests.locust_runs import REPO_ROOT

LOADTESTS = REPO_ROOT / "loadtests"
# The official locustio/locust image has the standard library, locust and what it brings (gevent).
IMAGE_PACKAGES = frozenset({"locust", "gevent", "loadtests"})


def test_the_default_mix_is_the_benchmarks_and_bench_reads_it_from_here() -> None:
    assert mix.DEFAULT_MIX == {
        "verify": 70.0,
        "user_hit": 20.0,
        "not_found": 7.0,
        "update": 2.5,
        "create": 0.4,
        "login": 0.1,
    }
    assert config.DEFAULT_MIX is mix.DEFAULT_MIX and config.HASHING_KINDS is mix.HASHING_KINDS
    assert sum(mix.shares(mix.DEFAULT_MIX)[kind] for kind in mix.HASHING_KINDS) == pytest.approx(0.005)


def test_an_override_replaces_the_named_weights_only() -> None:
    parsed = mix.parse_mix(" verify=50, login = 1 ,", "LOADTEST_MIX")
    assert parsed == mix.DEFAULT_MIX | {"verify": 50.0, "login": 1.0}
    assert mix.mix_from_env("LOADTEST_MIX", {"LOADTEST_MIX": "update=0"})["update"] == 0.0
    assert mix.mix_from_env("LOADTEST_MIX", {}) == mix.DEFAULT_MIX
    assert config.mix_from_env({"AUTH_BENCH_MIX": "create=4"})["create"] == 4.0
    assert config.mix_from_env({"LOADTEST_MIX": "create=4"}) == mix.DEFAULT_MIX


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("verfy=70", "LOADTEST_MIX: unknown request kind 'verfy'; known: verify, user_hit"),
        ("verify=lots", "the weight of verify is 'lots', not a number"),
        ("verify=-1", "must be a finite number >= 0"),
        ("verify=inf", "must be a finite number >= 0"),
        ("verify=0,user_hit=0,not_found=0,update=0,create=0,login=0", "the weights add up to nothing"),
    ],
)
def test_a_wrong_override_is_refused_saying_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        mix.parse_mix(text, "LOADTEST_MIX")


def test_bench_and_the_stdlib_modules_import_neither_locust_nor_gevent() -> None:
    """Importing locust patches the process with gevent: bench and pytest import these modules."""
    stdlib_modules = [
        "mix",
        "endpoints",
        "budgets",
        "pacing",
        "zipf",
        "accounts",
        "service_client",
        "local",
        "worker_rate",
    ]
    imports = "; ".join(f"import loadtests.{name}" for name in stdlib_modules)
    code = f"import bench.config; {imports}; import sys; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert "'locust'" not in loaded.stdout and "'gevent'" not in loaded.stdout


def _required_imports(path: Path) -> set[str]:
    """The top-level packages a module imports, less those it imports in a `try` that survives ImportError."""
    tree = ast.parse(path.read_text())
    optional = {
        id(node)
        for handler_try in ast.walk(tree)
        if isinstance(handler_try, ast.Try)
        and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in handler_try.handlers)
        for statement in handler_try.body
        for node in ast.walk(statement)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in optional:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_modules_the_chart_mounts_need_nothing_beyond_the_official_locust_image() -> None:
    modules = [path for path in LOADTESTS.glob("*.py") if not path.name.startswith("capacity")]
    assert {path.name for path in modules} >= {"locustfile.py", "users.py", "shapes.py", "sharing.py", "gate.py"}
    for path in modules:
        beyond = _required_imports(path) - set(sys.stdlib_module_names) - IMAGE_PACKAGES - {"__future__"}
        assert not beyond, f"{path.name} imports {sorted(beyond)}"
