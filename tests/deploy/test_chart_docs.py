"""The chart's README table and values.schema.json agree with the `## @param` comments of values.yaml:
Bitnami's readme generator makes the table and a schema skeleton from them, and neither may drift.
Both charts' schemas refuse unknown keys here; test_locust_chart_docs.py checks the rest of charts/locust's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.charts import CHART, NPM_TOOLS, run, tool
from tests.deploy.locust_chart import CHART as LOCUST_CHART

README_GENERATOR = NPM_TOOLS / ".bin" / "readme-generator"


def generate(tmp_path: Path, chart: Path = CHART) -> tuple[str, dict[str, Any]]:
    """The chart's README as the generator rewrites it, and the schema skeleton it derives."""
    readme = tmp_path / "README.md"
    shutil.copy(chart / "README.md", readme)
    skeleton = tmp_path / "schema.json"
    values = str(chart / "values.yaml")
    run(tool(README_GENERATOR), "--values", values, "--readme", str(readme), "--schema", str(skeleton))
    return readme.read_text(), json.loads(skeleton.read_text())


def test_the_readme_table_is_generated_from_the_values_comments(tmp_path: Path) -> None:
    regenerated, _ = generate(tmp_path)
    assert regenerated == (CHART / "README.md").read_text(), "run `make chart-readme` and commit the README"


def shape(schema: dict[str, Any], path: str = "") -> dict[str, str]:
    """Each documented key's path and JSON type (objects that list their properties are walked)."""
    if schema.get("type") == "object" and "properties" in schema:
        result: dict[str, str] = {}
        for key, sub in schema["properties"].items():
            result |= shape(sub, f"{path}.{key}" if path else key)
        return result
    kind = schema.get("type", "any")
    return {path: kind if isinstance(kind, str) else "|".join(sorted(kind))}


def compatible(strict: str, generated: str) -> bool:
    """The strict schema may allow more types than the default's (a quantity: string or number)."""
    return generated in strict.split("|") or (generated == "number" and "integer" in strict.split("|"))


def test_the_strict_schema_has_every_documented_key_with_its_type(tmp_path: Path) -> None:
    _, skeleton = generate(tmp_path)
    strict = json.loads((CHART / "values.schema.json").read_text())
    documented, enforced = shape(skeleton), shape(strict)
    assert sorted(documented) == sorted(enforced)
    mismatched = {key: (enforced[key], kind) for key, kind in documented.items() if not compatible(enforced[key], kind)}
    assert mismatched == {}


def walk_objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path or "(root)", schema)] if "properties" in schema else []
    for key, sub in schema.get("properties", {}).items():
        found += walk_objects(sub, f"{path}.{key}" if path else key)
    return found


@pytest.mark.parametrize("chart", [CHART, LOCUST_CHART], ids=lambda chart: chart.name)
def test_the_schema_refuses_unknown_keys_everywhere(chart: Path) -> None:
    strict = json.loads((chart / "values.schema.json").read_text())
    open_objects = [path for path, obj in walk_objects(strict) if obj.get("additionalProperties") is not False]
    assert open_objects == []
