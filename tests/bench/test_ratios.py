"""Ratios between servers from interleaved rounds (bench/ratios.py), and the targets that check them."""

from __future__ import annotations

from typing import Any

from bench import ratios, targets


def entry(rps_runs: list[float], capacity_runs: list[float], rps: float, bound: bool = False) -> dict[str, Any]:
    return {"rps": rps, "rps_runs": rps_runs, "capacity_rps_runs": capacity_runs, "load_generator_bound": bound}


def results(**verify: dict[str, Any]) -> dict[str, Any]:
    return {"endpoints": {"verify": verify}, "settings": {"fixed_rate_share": 0.7}}


# Three rounds. Round by round the service did 0.5, 0.25 and 0.4 times the ceiling: the median is 0.4.
# The per-server medians (100 and 200) would give 0.5.
SERVICE = entry([100.0, 50.0, 100.0], [1000.0, 1000.0, 900.0], rps=100.0)
CEILING = entry([200.0, 200.0, 250.0], [4000.0, 2000.0, 3000.0], rps=200.0, bound=True)
BASELINE = entry([10.0, 20.0, 40.0], [100.0, 100.0, 100.0], rps=20.0)


def test_a_ratio_is_the_median_of_the_rounds_ratios_not_the_ratio_of_the_medians() -> None:
    found = ratios.summary(results(service=SERVICE, ceiling=CEILING))["verify"]["vs_ceiling"]
    assert found["runs"] == [0.5, 0.25, 0.4]
    assert found["median"] == 0.4
    assert found["of_medians"] == 0.5
    # rps/core round by round: 1000/4000, 1000/2000, 900/3000.
    assert found["by_cpu_runs"] == [0.25, 0.5, 0.3]
    assert found["by_cpu"] == 0.3


def test_the_targets_take_the_median_of_the_rounds_and_list_each_round() -> None:
    checked = targets.evaluate(results(service=SERVICE, ceiling=CEILING, baseline=BASELINE))
    vs_ceiling, vs_baseline = checked["verify_vs_ceiling"], checked["verify_vs_baseline"]
    assert (vs_ceiling["measured"], vs_ceiling["ratio_runs"], vs_ceiling["met"]) == (0.4, [0.5, 0.25, 0.4], True)
    assert (vs_ceiling["by_cpu"], vs_ceiling["by_cpu_runs"]) == (0.3, [0.25, 0.5, 0.3])
    # 100/10, 50/20, 100/40: 10, 2.5 and 2.5; the ratio of the medians would be 100/20 = 5 and meet 4x.
    assert (vs_baseline["measured"], vs_baseline["ratio_runs"], vs_baseline["met"]) == (2.5, [10.0, 2.5, 2.5], False)
    assert vs_baseline["margin_pct"] == -37.5


def test_rounds_that_do_not_pair_up_give_no_ratio() -> None:
    two_rounds = entry([200.0, 200.0], [4000.0, 2000.0], rps=200.0)
    found = results(service=SERVICE, ceiling=two_rounds)
    assert ratios.summary(found) == {}
    checked = targets.evaluate(found)["verify_vs_ceiling"]
    assert (checked["measured"], checked["met"], checked["ratio_runs"]) == (None, False, [])


def test_a_round_whose_reference_answered_nothing_is_left_out() -> None:
    silent = entry([200.0, 0.0, 250.0], [4000.0, 0.0, 3000.0], rps=200.0)
    found = ratios.summary(results(service=SERVICE, ceiling=silent))["verify"]["vs_ceiling"]
    assert found["runs"] == [0.5, 0.4]
    assert found["median"] == 0.45


def test_a_figure_set_by_wrk_is_flagged_in_its_ratios_and_targets() -> None:
    found = results(service=SERVICE, ceiling=CEILING, baseline=BASELINE)
    assert ratios.summary(found)["verify"]["vs_ceiling"]["load_generator_bound"] is True
    assert ratios.summary(found)["verify"]["vs_baseline"]["load_generator_bound"] is False
    checked = targets.evaluate(found)
    assert checked["verify_vs_ceiling"]["load_generator_bound"] is True
    assert checked["verify_vs_baseline"]["load_generator_bound"] is False
    # The service bound too: every target reading it is flagged, rates as well as ratios.
    bound_service = SERVICE | {"load_generator_bound": True}
    mixed = {"endpoints": {"mixed": {"service": bound_service}}}
    assert targets.evaluate(mixed)["mixed_rps"]["load_generator_bound"] is True
    assert "load_generator_bound" not in targets.evaluate(mixed)["verify_allocation"]
