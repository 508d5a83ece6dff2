"""The committed values-100k.yaml and capacity report are what the model makes from the committed inputs,
and values-100k.yaml renders with the chart."""

from __future__ import annotations

import re
import shlex

import yaml

from loadtests import capacity
from loadtests.capacity_chart import VALUES_100K
from tests.deploy.charts import CHART, HELM, Case, helm_template, named, objects, run, tool

CASE = Case("100k", (VALUES_100K,))
# The one thing the chart cannot know (its README's install): the Secret holding the DSN.
DATABASE = ("--set", "database.external.existingSecret=auth-service-database")


def committed_command() -> list[str]:
    """The command values-100k.yaml's header says made it."""
    found = re.search(r"Made by:\n#   `([^`]+)`", VALUES_100K.read_text())
    assert found, "values-100k.yaml names no command; run `make capacity`"
    words = shlex.split(found.group(1))
    assert words[:3] == list(capacity.COMMAND)
    return words[3:]


def test_the_committed_outputs_are_the_models() -> None:
    args = capacity.parser().parse_args(committed_command())
    _, values, report = capacity.outputs(args)
    assert values == VALUES_100K.read_text(), "run `make capacity` and commit its outputs"
    assert report == capacity.REPORT.read_text(), "run `make capacity` and commit its outputs"


def test_values_100k_passes_lint_and_renders() -> None:
    lint = run(tool(HELM), "lint", "--strict", str(CHART), *CASE.args(), check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    values = yaml.safe_load(VALUES_100K.read_text())
    hpa = named(objects(helm_template(CASE, *DATABASE).stdout), "HorizontalPodAutoscaler", "auth-auth-service")
    assert hpa["spec"]["minReplicas"] == values["autoscaling"]["minReplicas"]
    assert hpa["spec"]["maxReplicas"] == values["autoscaling"]["maxReplicas"]
    pods_metric = next(m for m in hpa["spec"]["metrics"] if m["type"] == "Pods")
    assert pods_metric["pods"]["target"]["averageValue"] == values["autoscaling"]["requestsPerSecond"]["averageValue"]


def test_values_100k_renders_on_top_of_values_prod() -> None:
    prod = Case("prod+100k", (CHART / "values-prod.yaml", VALUES_100K))
    deployment = named(objects(helm_template(prod).stdout), "Deployment", "auth-auth-service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] == "1"
