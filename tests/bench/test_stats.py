"""From runs to reported figures (bench/stats.py): runs kept in round order, wrk's limit, the database's CPU."""

from __future__ import annotations

from bench import stats
from bench.wrk import WrkResult


def rep(requests: int, client_cpu_s: float, db_cpu_s: float | None = None, started_s: float = 0.0) -> stats.Rep:
    """A one-second run: `requests` answered, the server busy for half of it."""
    result = WrkResult(requests, 1.0, 0, 0, 0, 1.0, 2.0, 3.0, 4.0, client_cpu_s=client_cpu_s)
    return stats.Rep(result, cpu_s=0.5, stolen_s=0.0, gc={}, db_cpu_s=db_cpu_s, started_s=started_s)


def test_each_runs_figures_are_kept_in_their_rounds_order() -> None:
    found = stats.saturation([rep(3000, 0.2, started_s=1.0), rep(1000, 0.2, started_s=5.0), rep(2000, 0.2)])
    assert found["rps_runs"] == [3000.0, 1000.0, 2000.0]
    assert found["capacity_rps_runs"] == [6000.0, 2000.0, 4000.0]  # requests / 0.5 s of the server's CPU
    assert found["runs_started_s"] == [1.0, 5.0, 0.0]
    assert found["rps"] == 2000.0


def test_wrk_at_90_percent_of_its_core_or_more_bounds_the_figure() -> None:
    def bound(*client_cpu_s: float) -> object:
        return stats.saturation([rep(1000, cpu) for cpu in client_cpu_s])["load_generator_bound"]

    assert bound(0.95, 0.97, 0.5) is True  # median 95%
    assert bound(0.90) is True
    assert bound(0.89, 0.99, 0.2) is False  # median 89%
    assert bound(0.66) is False


def test_the_database_cpu_is_per_request_over_all_the_runs() -> None:
    # 0.5 s + 0.3 s of PostgreSQL's CPU for 10,000 + 6,000 requests in two 1 s runs: 50 us each, 40% of a core.
    found = stats.database_cpu([rep(10_000, 0.2, db_cpu_s=0.5), rep(6_000, 0.2, db_cpu_s=0.3)])
    assert found == {"db_cpu_us_per_request": 50.0, "db_cpu_pct": 40.0}


def test_a_run_without_a_database_reading_gives_no_database_figure() -> None:
    found = stats.database_cpu([rep(10_000, 0.2, db_cpu_s=0.5), rep(6_000, 0.2, db_cpu_s=None)])
    assert found == {"db_cpu_us_per_request": None, "db_cpu_pct": None}
