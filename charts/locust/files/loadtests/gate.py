"""The gate: when Locust quits, the run's verdict (budgets.py) becomes its exit code and one log line.

On the master, or a standalone runner (a worker's statistics are only its share). The verdict is
also written as JSON beside the CSV reports (`<--csv prefix>_gate.json`) when there are some.
"""

from __future__ import annotations

import json
import logging
from argparse import Namespace
from pathlib import Path
from typing import Any

from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import RequestStats

from loadtests.budgets import Budgets, Latency, Row, Verdict, judge
from loadtests.endpoints import TIERS

log = logging.getLogger(__name__)


def budgets_from(options: Namespace) -> Budgets:
    latency = {tier: Latency(getattr(options, f"{tier}_p99_ms"), getattr(options, f"{tier}_p999_ms")) for tier in TIERS}
    return Budgets(options.max_fail_ratio, options.max_shed_ratio, latency)


def rows_from(stats: RequestStats) -> list[Row]:
    return [
        Row(
            entry.method,
            entry.name,
            entry.num_requests,
            entry.num_failures,
            entry.get_response_time_percentile(0.99),
            entry.get_response_time_percentile(0.999),
        )
        for entry in stats.entries.values()
    ]


class Gate:
    """Judges at `quitting`, before Locust picks its exit code; prints the line at `quit`, after its tables."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.verdict: Verdict | None = None

    def on_quitting(self, **_: Any) -> None:
        environment = self.environment
        assert environment.runner is not None and environment.parsed_options is not None
        stats = environment.runner.stats
        self.verdict = judge(
            rows_from(stats),
            budgets_from(environment.parsed_options),
            stats.total.total_rps,
            len(environment.runner.exceptions),
        )
        environment.process_exit_code = 0 if self.verdict.passed else 1
        if environment.parsed_options.csv_prefix:
            path = Path(f"{environment.parsed_options.csv_prefix}_gate.json")
            path.write_text(json.dumps(self.verdict.to_json(), indent=2) + "\n")

    def on_quit(self, **_: Any) -> None:
        if self.verdict is not None:
            (log.info if self.verdict.passed else log.error)(self.verdict.summary())


def on_init(environment: Environment, **_: Any) -> None:
    """Locust's init listener: the gate on the master or a standalone runner."""
    if isinstance(environment.runner, WorkerRunner):
        return
    gate = Gate(environment)
    environment.events.quitting.add_listener(gate.on_quitting)
    environment.events.quit.add_listener(gate.on_quit)
