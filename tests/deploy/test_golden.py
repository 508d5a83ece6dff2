"""Each case of each chart renders exactly its committed golden file (refresh with `make chart-golden`,
or `make chart-locust-golden` for charts/locust, whose own mask test_locust_chart_golden.py checks)."""

from __future__ import annotations

import pytest

from tests.deploy import golden, locust_golden
from tests.deploy.charts import Chart, each_case, rendered
from tests.deploy.golden import GENERATED, Golden, masked

GOLDENS = {golden.GOLDEN.chart: golden.GOLDEN, locust_golden.GOLDEN.chart: locust_golden.GOLDEN}


@pytest.mark.parametrize(("chart", "case"), each_case(*GOLDENS))
def test_render_matches_the_golden_file(chart: Chart, case: str) -> None:
    renders = GOLDENS[chart]
    diff = renders.diff(case)
    assert not diff, f"the chart's render changed; review it and run `{renders.refresh}`:\n{diff[:6000]}"


@pytest.mark.parametrize("renders", GOLDENS.values(), ids=lambda renders: renders.chart.name)
def test_there_is_a_golden_file_for_each_case_and_no_other(renders: Golden) -> None:
    assert renders.cases() == sorted(renders.chart.case_names)


def test_only_generated_values_are_masked() -> None:
    """The mask hides the random secrets and nothing a reviewer should see."""
    text = rendered("default")
    assert masked(text).count(GENERATED) == 4  # three generated secrets and their checksum
    assert masked(rendered("external-db")).count(GENERATED) == 1  # every secret external: only the checksum
