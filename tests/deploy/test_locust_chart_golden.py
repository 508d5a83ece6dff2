"""The mask of charts/locust's golden renders hides the scenarios and nothing else (test_golden.py diffs
each case against its golden file; refresh: `make chart-locust-golden`)."""

from __future__ import annotations

import yaml

from tests.deploy.locust_chart import chart_modules, rendered
from tests.deploy.locust_golden import CHECKSUM, MODULE, masked


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
