"""charts/locust's README table and values.schema.json agree with the `## @param` comments of its
values.yaml (Bitnami's readme generator makes the table and a schema skeleton from them), and the
README's sizing and values-100k.yaml follow the measured worker rate. (That its schema refuses unknown
keys is checked with the service chart's, in test_chart_docs.py.)"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from loadtests.capacity_inputs import read_worker_rate  # standard library only
from tests.deploy.locust_chart import CHART, LOADTESTS
from tests.deploy.test_chart_docs import compatible, generate, shape

WORKER_RATE = LOADTESTS / "results" / "worker_rate.json"


def test_the_readme_table_is_generated_from_the_values_comments(tmp_path: Path) -> None:
    regenerated, _ = generate(tmp_path, CHART)
    assert regenerated == (CHART / "README.md").read_text(), "run `make chart-locust-readme` and commit the README"


def object_params() -> dict[str, str]:
    """Keys documented as a whole map (`## @param key [object]`): the skeleton leaves them out."""
    text = (CHART / "values.yaml").read_text()
    return {key: "object" for key in re.findall(r"^\s*## @param (\S+) \[object\]", text, re.MULTILINE)}


def test_the_strict_schema_has_every_documented_key_with_its_type(tmp_path: Path) -> None:
    _, skeleton = generate(tmp_path, CHART)
    strict = json.loads((CHART / "values.schema.json").read_text())
    documented, enforced = shape(skeleton) | object_params(), shape(strict)
    assert object_params() == {"target.podLabels": "object"}
    assert sorted(documented) == sorted(enforced)
    mismatched = {key: (enforced[key], kind) for key, kind in documented.items() if not compatible(enforced[key], kind)}
    assert mismatched == {}


def test_the_schema_describes_each_key_as_values_yaml_does() -> None:
    """One description per key, written once in values.yaml: the schema's repeat it word for word."""
    text = (CHART / "values.yaml").read_text()
    documented = dict(re.findall(r"^\s*## @param (\S+) (?:\[\w+\] )?(.+)$", text, re.MULTILINE))
    strict = json.loads((CHART / "values.schema.json").read_text())

    def described(schema: dict[str, Any], path: str = "") -> dict[str, str]:
        found: dict[str, str] = {}
        for key, sub in schema.get("properties", {}).items():
            here = f"{path}.{key}" if path else key
            if here in documented:
                found[here] = sub.get("description", "")
            found |= described(sub, here)
        return found

    assert described(strict) == documented


def test_the_sizing_states_the_measured_worker_rate() -> None:
    """loadtests/results/worker_rate.json's rate, machine and date (read as the capacity model reads
    them), and the worker cores of 100k req/s from it: the README's figures are the measurement's."""
    readme = (CHART / "README.md").read_text()
    sizing = " ".join(readme.split("## Sizing", 1)[1].split("\n## ", 1)[0].split())
    measured = read_worker_rate(WORKER_RATE)
    rate = measured.rps_per_worker_core
    assert f"{rate:,.0f} requests per second" in sizing and f"{rate:,}" in sizing
    assert measured.date in sizing and measured.machine in sizing
    assert f"{worker_cores(rate):,} worker cores" in sizing


UTILISATION = 0.7  # workers.autoscaling.targetCPUUtilizationPercentage's default, the capacity model's headroom


def worker_cores(rate: float, target: float = 100_000) -> int:
    """loadtests/capacity_model.py's worker_cores: the target over a core's rate at UTILISATION, rounded up."""
    return math.ceil(target / (rate * UTILISATION) - 1e-9)


def test_the_100k_values_have_the_workers_the_measured_rate_needs() -> None:
    values = yaml.safe_load((CHART / "values-100k.yaml").read_text())
    rate = read_worker_rate(WORKER_RATE).rps_per_worker_core
    assert values["mode"] == "headless" and values["scenario"]["targetRps"] == 100_000
    assert values["workers"]["replicas"] == worker_cores(rate)
    assert yaml.safe_load((CHART / "values.yaml").read_text())["workers"]["autoscaling"][
        "targetCPUUtilizationPercentage"
    ] == round(UTILISATION * 100)
