"""The markdown report's new sections on fixed results (bench/report.py): rounds, wrk's limit, PostgreSQL's CPU."""

from __future__ import annotations

from typing import Any

from bench import ratios, report, targets


def entry(rps_runs: list[float], client_cpu_pct: float, bound: bool, **more: Any) -> dict[str, Any]:
    return {
        "rps": sorted(rps_runs)[1],
        "rps_runs": rps_runs,
        "capacity_rps_runs": [value * 2 for value in rps_runs],
        "client_cpu_pct": client_cpu_pct,
        "load_generator_bound": bound,
        **more,
    }


def results() -> dict[str, Any]:
    found: dict[str, Any] = {
        "settings": {"repetitions": 3, "load_generator_bound_pct": 90.0, "database": "an embedded PostgreSQL"},
        "endpoints": {
            "verify": {
                "service": entry([40_000.0, 30_000.0, 45_000.0], 60.0, False),
                "ceiling": entry([100_000.0, 100_000.0, 90_000.0], 96.0, True),
            },
            "update": {
                "service": entry([1_000.0, 1_100.0, 900.0], 10.0, False, db_cpu_us_per_request=210.0, db_cpu_pct=21.0),
            },
        },
    }
    found["ratios"] = ratios.summary(found)
    found["targets"] = targets.evaluate(found)
    return found


def test_the_saturation_table_marks_what_wrk_bounded_and_says_what_it_means() -> None:
    text = report.saturation_table(results())
    assert "in 3 interleaved rounds (service, baseline, ceiling, service, ...)" in text
    assert "| 96 (wrk-bound) |" in text and "| 60 |" in text
    assert "(wrk-bound): verify ceiling. wrk used 90% or more of its core" in text


def test_the_ratios_table_gives_each_round_and_their_median() -> None:
    text = report.ratios_table(results())
    # 40k/100k, 30k/100k, 45k/90k: 0.4, 0.3, 0.5; the median 0.4; the medians' ratio 40k/100k.
    assert "| verify | ceiling (wrk-bound) | 0.400 | 0.400 / 0.300 / 0.500 | 0.400 |" in text


def test_the_targets_table_lists_each_rounds_ratio() -> None:
    text = report.targets_table(results())
    assert "| verify >= 0.2 x ceiling | 0.40 x (wrk-bound) | yes | 100.0 % |" in text
    assert "| 0.40 / 0.30 / 0.50 |" in text


def test_the_database_table_has_the_entries_that_use_the_database() -> None:
    text = report.database_table(results())
    assert "| update | service | 210 | 21 | 10 |" in text
    assert "| verify |" not in text
