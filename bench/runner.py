"""Measuring one endpoint on one running server: warm-up, repeated saturation runs, a run at a fixed rate."""

from __future__ import annotations

from dataclasses import dataclass

from bench import measure, stats, wrk
from bench.config import DISTURBED_PCT, MIXED_NO_HASHING, Config, without_hashing
from bench.seed import Dataset
from bench.servers import Server, check_alive


@dataclass
class Runner:
    config: Config
    wrk_path: str
    dataset: Dataset

    def load(self, endpoint: str, rate: float | None = None) -> wrk.Load:
        weights = self.config.mix
        if endpoint == MIXED_NO_HASHING:
            endpoint, weights = "mixed", without_hashing(weights)
        mix = ",".join(f"{kind}:{weight:g}" for kind, weight in weights.items())
        data = self.dataset.wrk_args() | {"mix": mix}
        return wrk.Load(endpoint, self.config.connections_for(endpoint), data, rate)

    def run(self, server: Server, endpoint: str, seconds: int, rate: float | None = None) -> stats.Rep:
        """One wrk run, with the server's CPU time and GC pauses read before and after."""
        before = measure.snapshot(server.pid, server.admin_url)
        result = wrk.run(self.wrk_path, self.config.client_cpu, server.url, self.load(endpoint, rate), seconds)
        after = measure.snapshot(server.pid, server.admin_url)
        check_alive(server)
        cpu_s, stolen_s = after.cpu_s - before.cpu_s, measure.stolen_seconds(before, after)
        return stats.Rep(result, cpu_s, stolen_s, measure.gc_delta(before, after))

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

    def saturate(self, server: Server, endpoint: str) -> tuple[dict[str, object], list[stats.Rep]]:
        """Warm-up, then the repetitions at full load; their summary."""
        self.warm_up(server, endpoint)
        runs = [self.measured_run(server, endpoint) for _ in range(self.config.repetitions)]
        reps = [rep for rep, _ in runs]
        return stats.saturation(reps) | {"retried_runs": sum(retries for _, retries in runs)}, reps

    def measure(self, server: Server, endpoint: str) -> dict[str, object]:
        """Everything reported for this endpoint on this server."""
        entry, reps = self.saturate(server, endpoint)
        if server.admin_url:
            entry["gc"] = stats.gc_pauses(reps)
        entry |= measure.memory_mb(server.pid)
        target = float(entry["rps"]) * self.config.fixed_rate_share  # type: ignore[arg-type]
        if target > 0:
            paced, retries = self.measured_run(server, endpoint, rate=target)
            entry |= stats.fixed_rate(target, paced) | {"fixed_retried_runs": retries}
        return entry
