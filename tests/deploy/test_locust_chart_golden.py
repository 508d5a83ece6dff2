"""Each case of charts/locust renders exactly its committed golden file (refresh: `make chart-locust-golden`)."""

from __future__ import annotations

import difflib

import pytest
import yaml

from tests.deploy.locust_chart import CASE_NAMES, GOLDEN, chart_modules, rendered
from tests.deploy.locust_golden import CHECKSUM, MODULE, golden_path, masked


@pytest.mark.parametrize("case", CASE_NAMES)
def test_render_matches_the_golden_file(case: str) -> None:
    expected = golden_path(case).read_text()
    actual = masked(rendered(case))
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "golden", "rendered"))
    assert not diff, f"the chart's render changed; review it and run `make chart-locust-golden`:\n{diff[:6000]}"


def test_there_is_a_golden_file_for_each_case_and_no_other() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(CASE_NAMES)


def test_only_the_modules_and_their_checksum_are_masked() -> None:
    """Every other object is as rendered; the ConfigMap keeps one key per module."""
    raw, hidden = list(yaml.safe_load_all(rendered("default"))), list(yaml.safe_load_all(masked(rendered("default"))))
    assert len(raw) == len(hidden)
    for before, after in zip(raw, hidden, strict=True):
        if before["kind"] == "ConfigMap":
            assert after["data"] == dict.fromkeys(chart_modules(), MODULE)
            assert {**before, "data": None} == {**after, "data": None}
        elif "template" in before.get("spec", {}):
            assert after["spec"]["template"]["metadata"]["annotations"] == {"checksum/loadtests": CHECKSUM}
            after["spec"]["template"]["metadata"]["annotations"] = before["spec"]["template"]["metadata"]["annotations"]
            assert before == after
        else:
            assert before == after
