"""What a benchmark run measures and how long: endpoints, servers, durations, data sizes, the mixed weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loadtests import mix as request_mix

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"

# update: PATCH of the name alone (the mix's `update` kind), so that its CPU per request is a figure of its own.
ENDPOINTS = ("verify", "user_hit", "user_miss", "login", "create", "update", "mixed")
# The mix less its argon2 requests, measured beside it (service only): what the rest of the mix costs.
MIXED_NO_HASHING = "mixed_no_hashing"
REPORTED_ENDPOINTS = (*ENDPOINTS, MIXED_NO_HASHING)
SERVERS = ("service", "baseline", "ceiling")
# The ceiling answers fixed bytes: only the two reads it can imitate exactly.
CEILING_ENDPOINTS = ("verify", "user_hit")
# Each request costs an argon2id hash (~20 ms): a few connections saturate the one hashing thread.
HASHING_ENDPOINTS = ("login", "create")
# They query or write PostgreSQL on (nearly) every request: their entries give its CPU per request.
DATABASE_ENDPOINTS = ("user_miss", "login", "create", "update", "mixed", MIXED_NO_HASHING)

# The production mix, shared with the Locust scenarios (loadtests/mix.py).
MIX_ENV = request_mix.BENCH_MIX_ENV
DEFAULT_MIX = request_mix.DEFAULT_MIX
HASHING_KINDS = request_mix.HASHING_KINDS


def without_hashing(mix: dict[str, float]) -> dict[str, float]:
    return {kind: 0.0 if kind in HASHING_KINDS else weight for kind, weight in mix.items()}


def hashing_share(mix: dict[str, float]) -> float:
    """The share of the mix's requests that cost an argon2 hash."""
    return sum(mix.get(kind, 0.0) for kind in HASHING_KINDS) / sum(mix.values())


def mix_from_env(environ: dict[str, str] | None = None) -> dict[str, float]:
    """The mixed weights: AUTH_BENCH_MIX="verify=70,user_hit=20,..." replaces the named ones."""
    return request_mix.mix_from_env(MIX_ENV, environ)


@dataclass(frozen=True)
class Config:
    """One run's parameters; seconds are whole because wrk takes whole seconds."""

    duration: int = 10
    warmup: int = 3
    repetitions: int = 3
    endpoints: tuple[str, ...] = ENDPOINTS
    servers: tuple[str, ...] = SERVERS
    output_dir: Path = RESULTS_DIR
    users: int = 10_000
    hot_set: int = 1_000
    logins: int = 50
    connections: int = 64
    hashing_connections: int = 8
    fixed_rate_share: float = 0.7
    tracing_ratios: tuple[float, ...] = (0.0, 0.01, 1.0)
    tracing_repetitions: int | None = None  # rounds of the tracing block; None: `repetitions`
    allocation_requests: int = 2_000
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    # AUTH_* settings the service runs with beyond its shipped defaults (an experiment, named in the report).
    service_settings: dict[str, str] = field(default_factory=dict)
    server_cpu: int = 0
    client_cpu: int = 1
    cpus_allowed: tuple[int, ...] = (0, 1)
    # Runs in which other processes held the server's CPU more than DISTURBED_PCT are run again, this often.
    retries: int = 2

    @property
    def work_dir(self) -> Path:
        """Data files, logs and server configuration of this run (ignored by git)."""
        return self.output_dir / "tmp"

    def measures(self, server: str, endpoint: str) -> bool:
        if endpoint == MIXED_NO_HASHING:
            return server == "service" and self.measures(server, "mixed") and hashing_share(self.mix) > 0
        if server not in self.servers or endpoint not in self.endpoints:
            return False
        return server != "ceiling" or endpoint in CEILING_ENDPOINTS

    def connections_for(self, endpoint: str) -> int:
        return self.hashing_connections if endpoint in HASHING_ENDPOINTS else self.connections


# Share of a run's duration that other processes may hold the server's CPU before the run is repeated.
DISTURBED_PCT = 10.0

QUICK = {
    "duration": 1,
    "warmup": 1,
    "repetitions": 1,
    "retries": 0,
    "users": 2_000,
    "logins": 10,
    "allocation_requests": 300,
}
