"""Each case renders exactly its committed golden file (refresh with `make chart-golden`)."""

from __future__ import annotations

import difflib

import pytest

from tests.deploy.charts import CASE_NAMES, rendered
from tests.deploy.golden import GENERATED, GOLDEN, golden_path, masked


@pytest.mark.parametrize("case", CASE_NAMES)
def test_render_matches_the_golden_file(case: str) -> None:
    expected = golden_path(case).read_text()
    actual = masked(rendered(case))
    diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "golden", "rendered"))
    assert not diff, f"the chart's render changed; review it and run `make chart-golden`:\n{diff[:6000]}"


def test_there_is_a_golden_file_for_each_case_and_no_other() -> None:
    assert sorted(p.stem for p in GOLDEN.glob("*.yaml")) == sorted(CASE_NAMES)


def test_only_generated_values_are_masked() -> None:
    """The mask hides the random secrets and nothing a reviewer should see."""
    text = rendered("default")
    assert masked(text).count(GENERATED) == 4  # three generated secrets and their checksum
    assert masked(rendered("external-db")).count(GENERATED) == 1  # every secret external: only the checksum
