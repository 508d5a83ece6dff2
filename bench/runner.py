"""Measuring one endpoint on one running server: a warm-up, measured runs at saturation, a run at a fixed rate.

bench/rounds.py calls these for the servers of an endpoint in turn, round by round.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bench import measure, stats, wrk
from bench.config import DATABASE_ENDPOINTS, DISTURBED_PCT, MIXED_NO_HASHING, Config, without_hashing
from bench.seed import Dataset
from bench.servers import Server, check_alive


@dataclass
class Runner:
    config: Config
    wrk_path: str
    dataset: Dataset
    postmaster: int | None = None  # PostgreSQL's, when it runs here: its CPU is read around every run
    started: float = field(default_factory=time.monotonic)

    def load(self, endpoint: str, rate: float | None = None) -> wrk.Load:
        weights = self.config.mix
        if endpoint == MIXED_NO_HASHING:
            endpoint, weights = "mixed", without_hashing(weights)
        mix = ",".join(f"{kind}:{weight:g}" for kind, weight in weights.items())
        data = self.dataset.wrk_args() | {"mix": mix}
        return wrk.Load(endpoint, self.config.connections_for(endpoint), data, rate)

    def run(self, server: Server, endpoint: str, seconds: int, rate: float | None = None) -> stats.Rep:
        """One wrk run, with the server's CPU time and GC pauses, and the database's CPU, read before and after."""
        before = measure.snapshot(server.pid, server.admin_url)
        started_s = time.monotonic() - self.started
        db_before = self.database_cpu_s()
        result = wrk.run(self.wrk_path, self.config.client_cpu, server.url, self.load(endpoint, rate), seconds)
        db_after = self.database_cpu_s()
        after = measure.snapshot(server.pid, server.admin_url)
        check_alive(server)
        cpu_s, stolen_s = after.cpu_s - before.cpu_s, measure.stolen_seconds(before, after)
        db_cpu_s = db_after - db_before if db_before is not None and db_after is not None else None
        return stats.Rep(result, cpu_s, stolen_s, measure.gc_delta(before, after), db_cpu_s, started_s)

    def database_cpu_s(self) -> float | None:
        return measure.tree_cpu_seconds(self.postmaster) if self.postmaster is not None else None

    def measured_run(self, server: Server, endpoint: str, rate: float | None = None) -> tuple[stats.Rep, int]:
        """A run that other processes did not disturb much: retried while they took more than
        DISTURBED_PCT of the server's CPU, at most `retries` times; the least disturbed attempt, and the retries."""
        best = self.run(server, endpoint, self.config.duration, rate)
        retries = 0
        while best.stolen_pct > DISTURBED_PCT and retries < self.config.retries:
            retries += 1
            attempt = self.run(server, endpoint, self.config.duration, rate)
            best = min(best, attempt, key=lambda rep: rep.stolen_pct)
        return best, retries

    def warm_up(self, server: Server, endpoint: str) -> None:
        if self.config.warmup > 0:
            self.run(server, endpoint, self.config.warmup)

    def summary(self, server: Server, endpoint: str, runs: list[tuple[stats.Rep, int]]) -> dict[str, object]:
        """What the saturation runs (one a round, in order) show, and the server's memory after them."""
        reps = [rep for rep, _ in runs]
        entry = stats.saturation(reps) | {"retried_runs": sum(retries for _, retries in runs)}
        if server.admin_url:
            entry["gc"] = stats.gc_pauses(reps)
        if endpoint in DATABASE_ENDPOINTS:
            entry |= stats.database_cpu(reps)
        return entry | measure.memory_mb(server.pid)

    def paced(self, server: Server, endpoint: str, saturated_rps: float) -> dict[str, object]:
        """One run at `fixed_rate_share` of the saturation rate: its latencies."""
        target = saturated_rps * self.config.fixed_rate_share
        if target <= 0:
            return {}
        rep, retries = self.measured_run(server, endpoint, rate=target)
        return stats.fixed_rate(target, rep) | {"fixed_retried_runs": retries}
