"""The order of the interleaved rounds (bench/rounds.py), and a server that fails in them, on a recording runner."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from bench import rounds
from bench.config import Config
from bench.servers import Server, ServerFailed
from bench.stats import Rep
from bench.wrk import WrkResult

RESULT = WrkResult(1000, 1.0, 0, 0, 0, 1.0, 2.0, 3.0, 4.0)


def server(name: str) -> Server:
    return Server(name, cast("subprocess.Popen[bytes]", None), "http://127.0.0.1:1", Path("log"))


@dataclass
class Recorder:
    """Records each step; the measured runs listed in `failing` (server, round) raise ServerFailed."""

    config: Config
    failing: set[tuple[str, int]] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def warm_up(self, server: Server, endpoint: str) -> None:
        self.calls.append(f"warm {server.name}")

    def measured_run(self, server: Server, endpoint: str) -> tuple[Rep, int]:
        round_number = sum(call == f"run {server.name}" for call in self.calls) + 1
        self.calls.append(f"run {server.name}")
        if (server.name, round_number) in self.failing:
            raise ServerFailed(f"{server.name} died")
        return Rep(RESULT, 0.5, 0.0, {}, started_s=float(len(self.calls))), 0

    def summary(self, server: Server, endpoint: str, runs: list[tuple[Rep, int]]) -> dict[str, object]:
        return {"rps": 1000.0, "runs_started_s": [rep.started_s for rep, _ in runs]}

    def paced(self, server: Server, endpoint: str, saturated_rps: float) -> dict[str, object]:
        self.calls.append(f"paced {server.name}")
        return {"paced_at": saturated_rps}


SERVICE, BASELINE, CEILING = server("service"), server("baseline"), server("ceiling")


def subjects() -> list[rounds.Subject]:
    return [rounds.Subject(SERVICE, "verify"), rounds.Subject(BASELINE, "verify"), rounds.Subject(CEILING, "verify")]


def test_the_servers_take_turns_round_by_round() -> None:
    recorder = Recorder(Config(repetitions=3))
    entries = rounds.measure(recorder, subjects(), failed=lambda subject, exc: None)
    assert recorder.calls == [
        *["warm service", "warm baseline", "warm ceiling"],
        *["run service", "run baseline", "run ceiling"] * 3,
        *["paced service", "paced baseline", "paced ceiling"],
    ]
    assert list(entries) == [("verify", "service"), ("verify", "baseline"), ("verify", "ceiling")]
    # Each entry's runs are its own, one a round (a run's started_s is its place in the calls here).
    assert entries[("verify", "baseline")]["runs_started_s"] == [5.0, 8.0, 11.0]
    assert entries[("verify", "ceiling")]["paced_at"] == 1000.0


def test_the_same_server_on_two_endpoints_takes_two_turns() -> None:
    recorder = Recorder(Config(repetitions=2))
    both = [rounds.Subject(SERVICE, "mixed"), rounds.Subject(BASELINE, "mixed"), rounds.Subject(SERVICE, "other")]
    entries = rounds.measure(recorder, both, failed=lambda subject, exc: None)
    assert recorder.calls[3:9] == ["run service", "run baseline", "run service"] * 2
    assert set(entries) == {("mixed", "service"), ("mixed", "baseline"), ("other", "service")}


def test_a_server_that_fails_is_reported_and_left_out_while_the_others_go_on() -> None:
    recorder = Recorder(Config(repetitions=3), failing={("baseline", 2)})
    reported: list[tuple[str, str]] = []

    def failed(subject: rounds.Subject, exc: Exception) -> None:
        reported.append((subject.server.name, str(exc)))

    entries = rounds.measure(recorder, subjects(), failed)
    assert reported == [("baseline", "baseline died")]
    assert recorder.calls == [
        *["warm service", "warm baseline", "warm ceiling"],
        *["run service", "run baseline", "run ceiling"] * 2,
        *["run service", "run ceiling"],
        *["paced service", "paced ceiling"],
    ]
    assert list(entries) == [("verify", "service"), ("verify", "ceiling")]
    assert len(entries[("verify", "service")]["runs_started_s"]) == 3  # type: ignore[arg-type]
