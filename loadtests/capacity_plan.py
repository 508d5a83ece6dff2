"""The capacity plan: every figure of the model for a target rate and mix, from the bench and the chart.

A missing input refuses the whole plan when values-100k.yaml depends on it (the service's costs, the
p99, the connection budget), and only its own part otherwise (PostgreSQL's CPU, the Locust workers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.targets import TARGETS
from loadtests import capacity_model as model
from loadtests.capacity_chart import ChartValues
from loadtests.capacity_costs import (
    CPU,
    DB_CPU,
    DB_KINDS,
    DB_KINDS_IF_MEASURED,
    KIND_ENDPOINTS,
    MIXED_NO_HASHING,
    Cost,
    Point,
    hashing_cost,
    hashing_cost_alone,
    kind_costs,
    measured,
    p99_points,
)
from loadtests.capacity_inputs import WORKER_RATE, Bench, Refusal, WorkerRate, read_worker_rate
from loadtests.mix import DEFAULT_MIX, HASHING_KINDS

MIX_SOURCE = "loadtests/mix.py"
# The budget of the requests of the mix that reach PostgreSQL, at 70% of saturation: the bench's own target.
DEFAULT_P99_BUDGET_MS = next(t.goal for t in TARGETS if t.name == "user_miss_p99_at_70pct")
# Each UPDATE or DELETE of a user NOTIFYs every replica's listener (the users table's trigger).
NOTIFY_KINDS = ("update", "delete")


@dataclass(frozen=True)
class Request:
    """What is asked of the model; None takes the chart's value."""

    target_rps: float = 100_000
    p99_budget_ms: float = DEFAULT_P99_BUDGET_MS
    p99_of: str = MIXED_NO_HASHING
    headroom_pct: float = 30
    max_connections: int | None = None
    reserved_connections: int | None = None
    min_replicas: int | None = None
    db_cpu_given: dict[str, float] = field(default_factory=dict)
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    hashing_kinds: tuple[str, ...] = HASHING_KINDS
    worker_rate_path: Path = WORKER_RATE

    @property
    def utilisation(self) -> float:
        return 1 - self.headroom_pct / 100

    @property
    def rest_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, weight in self.mix.items() if kind not in self.hashing_kinds and weight > 0)


@dataclass(frozen=True)
class Refused:
    """A part of the plan the inputs cannot support, and why."""

    reason: str


@dataclass(frozen=True)
class PostgresCpu:
    costs: dict[str, Cost]
    us_per_request: float
    cores: float


@dataclass(frozen=True)
class Workers:
    rate: WorkerRate
    cores: int


@dataclass(frozen=True)
class Sizing:
    """The service's side: what the mix costs, the p99's limit, the pods."""

    request: Request
    bench: Bench
    chart: ChartValues
    costs: dict[str, Cost]
    hash_cost: Cost
    points: list[Point]
    p99: Point
    min_replicas: int

    @property
    def rest_us(self) -> float:
        return model.us_per_request(self.request.mix, self.costs)

    @property
    def hashing_share(self) -> float:
        return model.share_of(self.request.mix, self.request.hashing_kinds)

    @property
    def hashing_us(self) -> float:
        return self.hashing_share * self.hash_cost.us

    @property
    def total_us(self) -> float:
        return self.rest_us + self.hashing_us

    def cores_at_target(self, us: float) -> float:
        return model.cores(self.request.target_rps, us)

    @property
    def hash_rate(self) -> float:
        return self.request.target_rps * self.hashing_share

    @property
    def pod_capacity_rps(self) -> float:
        return 1e6 / self.total_us

    @property
    def utilisation(self) -> float:
        """The share of its core a pod is held at: the headroom's, or the p99's if lower."""
        return min(self.request.utilisation, self.p99.share)

    @property
    def pod_rps(self) -> int:
        return model.pod_rps_target(self.total_us, self.utilisation)

    @property
    def replicas(self) -> int:
        return max(self.min_replicas, model.replicas_for(self.request.target_rps, self.pod_rps))

    def pods_for(self, us: float, utilisation: float) -> int:
        return model.replicas_for(self.cores_at_target(us), utilisation)

    @property
    def notify_per_s(self) -> float:
        return model.notify_deliveries(self.request.target_rps, self.request.mix, self.replicas, NOTIFY_KINDS)


@dataclass(frozen=True)
class Plan:
    sizing: Sizing
    connections: model.Connections
    postgres: PostgresCpu | Refused
    workers: Workers | Refused


def build(request: Request, bench: Bench, chart: ChartValues) -> Plan:
    """The plan, or a Refusal naming the input or the figure that cannot be met."""
    sizing = size(request, bench, chart)
    connections = model.check_connections(connections_of(sizing), chart.explain_connections())
    return Plan(sizing, connections, postgres_part(sizing), workers_part(request))


def size(request: Request, bench: Bench, chart: ChartValues) -> Sizing:
    unknown = sorted((set(request.mix) | set(request.db_cpu_given)) - set(KIND_ENDPOINTS))
    if unknown:
        raise Refusal(f"unknown kinds of request: {', '.join(unknown)}; known: {', '.join(KIND_ENDPOINTS)}")
    costs = kind_costs(bench, request.rest_kinds, CPU, request.hashing_kinds)
    points = p99_points(bench, request.p99_of)
    p99 = model.p99_point(points, request.p99_budget_ms, request.p99_of)
    min_replicas = chart_or(request.min_replicas, chart, "autoscaling.minReplicas")
    hash_cost = hashing_cost(bench, request.mix, request.hashing_kinds)
    return Sizing(request, bench, chart, costs, hash_cost, points, p99, min_replicas)


def connections_of(sizing: Sizing) -> model.Connections:
    request, chart = sizing.request, sizing.chart
    return model.Connections(
        per_pod=chart.connections_per_pod,
        replicas=sizing.replicas,
        surge=model.surge_pods(sizing.replicas, chart.get("maxSurge")),
        migration=1 if chart.get("migrations.job.enabled") else 0,
        max_connections=request.max_connections or int(chart.get("database.maxConnections")),
        reserved=chart_or(request.reserved_connections, chart, "database.reservedConnections"),
    )


def chart_or(given: int | None, chart: ChartValues, dotted: str) -> int:
    return int(chart.get(dotted)) if given is None else given


def postgres_part(sizing: Sizing) -> PostgresCpu | Refused:
    """PostgreSQL's CPU for the mix's misses and writes, from db_cpu_us_per_request; refused where unmeasured."""
    request, bench = sizing.request, sizing.bench
    kinds = tuple(kind for kind in DB_KINDS if request.mix.get(kind, 0) > 0)
    try:
        costs = kind_costs(bench, kinds, DB_CPU, request.hashing_kinds, request.db_cpu_given)
    except Refusal as refusal:
        return Refused(
            f"{refusal}: the run does not record PostgreSQL's CPU per request, so the model does not count it. "
            "A bench run that records it, or --db-cpu-us not_found=US --db-cpu-us update=US, lets it"
        )
    for kind in DB_KINDS_IF_MEASURED:
        given = request.db_cpu_given.get(kind)
        cost = Cost(given, f"given (--db-cpu-us {kind}=...)") if given is not None else measured(bench, kind, DB_CPU)
        if cost is not None and request.mix.get(kind, 0) > 0:
            costs[kind] = cost
    us = model.us_per_request(request.mix, costs)
    return PostgresCpu(costs, us, model.cores(request.target_rps, us))


def workers_part(request: Request) -> Workers | Refused:
    try:
        rate = read_worker_rate(request.worker_rate_path)
    except Refusal as refusal:
        return Refused(f"Locust workers: {refusal}")
    return Workers(rate, model.worker_cores(request.target_rps, rate.rps_per_worker_core, request.utilisation))


def hashing_cost_cross_check(sizing: Sizing) -> Cost | None:
    return hashing_cost_alone(sizing.bench, sizing.request.mix, sizing.request.hashing_kinds)
