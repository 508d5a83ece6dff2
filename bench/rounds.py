"""The servers of one endpoint measured in interleaved rounds: service, baseline, ceiling, service, ...

The shared hosts this runs on change speed by up to 2x within a run (bench/steadiness.py). Measured
one block after another, each server got its own spell of it and the ratios between them moved with
it (0.29x one day, 0.47x another). In rounds, one round's runs lie seconds apart, so a round's ratio
compares the servers at one speed (bench/ratios.py takes their median); each server's own figures are
still the medians of its runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from bench.config import Config
from bench.servers import Server
from bench.stats import Rep

# What a server that died or a wrk run that gave no result raises (ServerFailed is a RuntimeError).
FAILURES = (RuntimeError, httpx.HTTPError, OSError)


class Measures(Protocol):
    """What bench/runner.py's Runner does for one server and one endpoint."""

    config: Config

    def warm_up(self, server: Server, endpoint: str) -> None: ...

    def measured_run(self, server: Server, endpoint: str) -> tuple[Rep, int]: ...

    def summary(self, server: Server, endpoint: str, runs: list[tuple[Rep, int]]) -> dict[str, object]: ...

    def paced(self, server: Server, endpoint: str, saturated_rps: float) -> dict[str, object]: ...


@dataclass
class Subject:
    """One server and one endpoint measured in the rounds, with its runs so far."""

    server: Server
    endpoint: str
    runs: list[tuple[Rep, int]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return self.endpoint, self.server.name


Failed = Callable[[Subject, Exception], None]


def measure(runner: Measures, subjects: list[Subject], failed: Failed) -> dict[tuple[str, str], dict[str, object]]:
    """Each subject's entry, keyed (endpoint, server): warm-ups in turn, `repetitions` rounds of one
    measured run each in the subjects' order, then a paced run each.

    A subject that fails is reported to `failed` and left out of the rest; the others go on without it.
    """
    live = list(subjects)

    def each(step: Callable[[Subject], object]) -> None:
        for subject in list(live):
            try:
                step(subject)
            except FAILURES as exc:
                live.remove(subject)
                failed(subject, exc)

    entries: dict[tuple[str, str], dict[str, object]] = {}

    def summarise(subject: Subject) -> None:
        entries[subject.key] = runner.summary(subject.server, subject.endpoint, subject.runs)

    def pace(subject: Subject) -> None:
        entry = entries[subject.key]
        entry |= runner.paced(subject.server, subject.endpoint, float(entry["rps"]))  # type: ignore[arg-type]

    each(lambda s: runner.warm_up(s.server, s.endpoint))
    for _ in range(runner.config.repetitions):
        each(lambda s: s.runs.append(runner.measured_run(s.server, s.endpoint)))
    each(summarise)
    each(pace)
    return {subject.key: entries[subject.key] for subject in live}
