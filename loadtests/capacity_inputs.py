"""The capacity model's inputs, read as measured: the bench's results and the Locust worker rate.

Nothing here fills a gap: a figure the file lacks is None, or a Refusal that names the file and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"
WORKER_RATE = REPO_ROOT / "loadtests" / "results" / "worker_rate.json"


class Refusal(Exception):
    """The model cannot use an input, or cannot meet what it was asked: the message is the reason."""


def shown(path: Path) -> str:
    """A path as the report names it: relative to the repository when inside it."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def load_json(path: Path, how_to_make: str) -> dict[str, Any]:
    if not path.exists():
        raise Refusal(f"{shown(path)} is missing; {how_to_make}")
    try:
        found = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise Refusal(f"{shown(path)} is not JSON ({error}); {how_to_make}") from error
    if not isinstance(found, dict):
        raise Refusal(f"{shown(path)}: expected a JSON object; {how_to_make}")
    return found


def number(found: Any) -> float | None:
    """A JSON number as a float; None for anything else (true and false included)."""
    return float(found) if isinstance(found, int | float) and not isinstance(found, bool) else None


@dataclass(frozen=True)
class Run:
    """A measured run's JSON: where it is, what it holds, and when and where it ran."""

    path: Path
    results: dict[str, Any]

    @property
    def date(self) -> str:
        return str(self.results.get("date", "an unknown date"))

    @property
    def machine(self) -> str:
        return describe_machine(self.results.get("machine"))


@dataclass(frozen=True)
class Bench(Run):
    """One bench run: its per-endpoint figures for the service, where and when it ran, its mix."""

    def value(self, endpoint: str, key: str) -> float | None:
        """The service's figure for an endpoint, or None when the run did not record it."""
        return number(self.results.get("endpoints", {}).get(endpoint, {}).get("service", {}).get(key))

    def require(self, endpoint: str, key: str) -> float:
        found = self.value(endpoint, key)
        if found is None:
            raise Refusal(f"{shown(self.path)}: no endpoints.{endpoint}.service.{key}; run `make bench` to measure it")
        return found

    def breakdown(self, key: str) -> float | None:
        found = self.results.get("mixed_breakdown", {}) or {}
        value = found.get(key)
        return float(value) if isinstance(value, int | float) else None

    @property
    def mix(self) -> dict[str, float]:
        """The mix the bench ran (its settings), which its mixed figures are of."""
        found = self.results.get("settings", {}).get("mix_pct")
        if not isinstance(found, dict) or not found:
            raise Refusal(f"{shown(self.path)}: no settings.mix_pct, so its mixed figures cannot be split by kind")
        return {kind: float(weight) for kind, weight in found.items()}

    @property
    def notes(self) -> list[str]:
        return [str(note) for note in self.results.get("notes", [])]


def describe_machine(machine: Any) -> str:
    if isinstance(machine, str):
        return machine
    if not isinstance(machine, dict):
        return "an unknown machine"
    cores = machine.get("cores")
    return f"{machine.get('cpu_model', 'unknown CPU')}, {cores} cores" if cores else str(machine.get("cpu_model"))


def read_bench(path: Path = BENCH_RESULTS) -> Bench:
    return Bench(path, load_json(path, "run `make bench` to write it"))


@dataclass(frozen=True)
class WorkerRate:
    """Requests per second one Locust worker core generates against the service."""

    rps_per_worker_core: float
    date: str
    machine: str
    path: Path


def read_worker_rate(path: Path = WORKER_RATE) -> WorkerRate:
    found = load_json(path, "the Locust worker rate is measured by the load tests (loadtests/)")
    rate = number(found.get("rps_per_worker_core"))
    if rate is None or rate <= 0:
        raise Refusal(
            f"{shown(path)}: rps_per_worker_core is {found.get('rps_per_worker_core')!r}, not a positive number"
        )
    return WorkerRate(rate, str(found.get("date", "an unknown date")), describe_machine(found.get("machine")), path)


TOPOLOGY_RESULTS = REPO_ROOT / "bench" / "results" / "topology-latest.json"
TOPOLOGY_HOW = "run `make bench-topology` to write it"


@dataclass(frozen=True)
class Topology(Run):
    """bench.topology's run: one replica against two on one address, the hashing beside the hot loop or apart."""

    def figure(self, block: str, key: str) -> float:
        found = self.optional(block, key)
        if found is None:
            raise Refusal(f"{shown(self.path)}: no {block}.{key}; {TOPOLOGY_HOW}")
        return found

    def optional(self, block: str, key: str) -> float | None:
        return number(self.results.get(block, {}).get(key))


def read_topology(path: Path = TOPOLOGY_RESULTS) -> Topology | None:
    """The run, or None when there is none (the report then says what is not measured)."""
    if not path.exists():
        return None
    topology = Topology(path, load_json(path, TOPOLOGY_HOW))
    topology.figure("replicas", "two_vs_one_cpu_per_request")  # refused here, not halfway through the report
    topology.figure("placement", "tier_vs_same_hot_p99")
    topology.figure("settings", "core_share")
    return topology
