"""The capacity model's arithmetic: small functions of measured figures, each refusing what cannot be met."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from loadtests.capacity_costs import Cost, Point
from loadtests.capacity_inputs import Refusal


def share_of(mix: Mapping[str, float], kinds: tuple[str, ...]) -> float:
    """The share of the mix's requests that are of these kinds."""
    return sum(mix.get(kind, 0.0) for kind in kinds) / sum(mix.values())


def us_per_request(mix: Mapping[str, float], costs: Mapping[str, Cost]) -> float:
    """CPU per request of the whole mix spent on these kinds: sum of weight x cost over the mix's weights."""
    return sum(mix.get(kind, 0.0) * cost.us for kind, cost in costs.items()) / sum(mix.values())


def cores(rate: float, us: float) -> float:
    """Cores busy at this rate of requests that cost `us` microseconds each."""
    return rate * us / 1e6


def p99_point(points: list[Point], budget_ms: float, endpoint: str) -> Point:
    """The highest measured rate whose p99 is within the budget; refused when none is."""
    within = [point for point in points if point.p99_ms <= budget_ms]
    if within:
        return max(within, key=lambda point: point.share)
    measured = "; ".join(f"{p.p99_ms:g} ms at {p.rps:,.0f} req/s ({p.label}, {p.share:.0%})" for p in points)
    raise Refusal(
        f"p99 budget {budget_ms:g} ms is below the measured p99 of {endpoint} at every measured rate: {measured}"
    )


def pod_rps_target(us: float, share: float) -> int:
    """Requests per second a one-core pod is held at: that share of what one core serves at `us` each."""
    return math.floor(share * 1e6 / us + 1e-9)


def replicas_for(rate: float, per_pod: float) -> int:
    return math.ceil(rate / per_pod - 1e-9)


def surge_pods(replicas: int, max_surge: str | int) -> int:
    """The extra pods of a rolling update: a count, or a share rounded up (as the Deployment controller does)."""
    text = str(max_surge)
    if text.endswith("%"):
        return math.ceil(replicas * float(text.removesuffix("%")) / 100)
    return int(text)


def scale_up_periods(start: int, end: int, percent: int, pods: int) -> int:
    """HPA periods from `start` to `end` replicas, each adding the larger of `percent` and `pods` (selectPolicy Max)."""
    periods, replicas = 0, start
    while replicas < end:
        replicas = min(end, max(math.ceil(replicas * (1 + percent / 100)), replicas + pods))
        periods += 1
    return periods


@dataclass(frozen=True)
class Connections:
    """Database connections: each pod's pools and listener, at the most pods a rollout runs, against the budget."""

    per_pod: int
    replicas: int
    surge: int
    migration: int
    max_connections: int
    reserved: int

    @property
    def steady(self) -> int:
        return self.per_pod * self.replicas

    @property
    def needed(self) -> int:
        return self.per_pod * (self.replicas + self.surge) + self.migration

    @property
    def budget(self) -> int:
        return self.max_connections - self.reserved


def check_connections(connections: Connections, explain: str) -> Connections:
    """Refused, with by how much and what to change, when the pods could open more than the budget."""
    c = connections
    if c.needed <= c.budget:
        return c
    raise Refusal(
        f"database connections: {c.per_pod} a pod ({explain}) x {c.replicas + c.surge} pods at most ({c.replicas} "
        f"replicas + {c.surge} surging in a rollout) + {c.migration} migration = {c.needed}, over max_connections "
        f"{c.max_connections} - {c.reserved} reserved = {c.budget} by {c.needed - c.budget}. Raise max_connections "
        f"to {c.needed + c.reserved} or more (--max-connections), lower the pools, or put PgBouncer in front of the "
        "pools (charts/auth-service/README.md: PgBouncer) and give its max_client_conn as --max-connections"
    )


def notify_deliveries(rate: float, mix: Mapping[str, float], replicas: int, kinds: tuple[str, ...]) -> float:
    """NOTIFYs delivered a second: each update (and delete) of a user reaches every replica's listener."""
    return rate * share_of(mix, kinds) * replicas


def worker_cores(rate: float, rps_per_core: float, utilisation: float) -> int:
    """Locust worker cores (one worker process each) to offer `rate`, each run at `utilisation` of its core."""
    return replicas_for(rate, rps_per_core * utilisation)
