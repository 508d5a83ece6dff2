"""The chart's side of the model: what values.yaml deploys (pools, surge, scale-up, resources), and values-100k.yaml."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from auth_service.settings import Settings
from loadtests.capacity_inputs import REPO_ROOT, Refusal, shown

CHART = REPO_ROOT / "charts" / "auth-service"
CHART_VALUES = CHART / "values.yaml"
VALUES_100K = CHART / "values-100k.yaml"


@dataclass(frozen=True)
class ChartValues:
    """The chart's defaults the model builds on; values-100k.yaml is layered on them."""

    path: Path
    values: dict[str, Any]

    def get(self, dotted: str) -> Any:
        found: Any = self.values
        for key in dotted.split("."):
            if not isinstance(found, dict) or key not in found:
                raise Refusal(f"{shown(self.path)}: no {dotted}")
            found = found[key]
        return found

    @property
    def max_overflow(self) -> int:
        """config.extra.db_max_overflow, else the service's default (the chart does not set it)."""
        extra = self.get("config.extra") or {}
        return int(extra.get("db_max_overflow", service_default("db_max_overflow")))

    @property
    def connections_per_pod(self) -> int:
        """Both pools, their overflow, and the LISTEN connection of the cache invalidations."""
        return int(self.get("config.dbReadPoolSize")) + int(self.get("config.dbPoolSize")) + self.max_overflow + 1

    def explain_connections(self) -> str:
        read, write = self.get("config.dbReadPoolSize"), self.get("config.dbPoolSize")
        overflow = f" + db_max_overflow {self.max_overflow}" if self.max_overflow else ""
        return f"config.dbReadPoolSize {read} + config.dbPoolSize {write}{overflow} + 1 listener, {shown(self.path)}"


def connections_comment(c: Any) -> str:
    surging = f"({c.replicas} + {c.surge} surging) + {c.migration} migration"
    return f"{c.per_pod} a pod x {surging} = {c.needed}, within {c.max_connections} - {c.reserved}"


def service_default(name: str) -> Any:
    """A setting's default in the service itself (services/auth-service/src/auth_service/settings.py)."""
    return Settings.model_fields[name].default


def read_chart_values(path: Path = CHART_VALUES) -> ChartValues:
    if not path.exists():
        raise Refusal(f"{shown(path)} is missing")
    return ChartValues(path, yaml.safe_load(path.read_text()))


def values_100k(plan: Any, header: list[str]) -> str:
    """The values file: the replica range and HPA targets, one-core pods, the pools and the connection budget."""
    s, c = plan.sizing, plan.connections
    chart, target = s.chart, s.request.target_rps
    requests, limits = chart.get("resources.requests"), chart.get("resources.limits")
    body = f"""\
# {target:,.0f} req/s / {s.pod_rps:,} req/s a pod = {target / s.pod_rps:.2f}, rounded up
replicaCount: {s.replicas}
resources:
  # One core a pod: the unit every figure of the model is per. No CPU limit, as the chart explains (CFS throttling).
  requests:
    cpu: "{requests["cpu"]}"
    memory: {requests["memory"]}
  limits:
    cpu: "{limits["cpu"]}"
    memory: {limits["memory"]}
autoscaling:
  enabled: true
  minReplicas: {s.min_replicas}
  maxReplicas: {s.replicas}
  # {s.utilisation:.0%} of the core: the headroom's, or the highest measured load whose p99 met the budget if lower
  targetCPUUtilizationPercentage: {math.floor(s.utilisation * 100 + 1e-9)}
  requestsPerSecond:
    enabled: true
    # {s.utilisation:.0%} of the {s.pod_capacity_rps:,.0f} req/s one core serves of the mix, hashing included
    averageValue: "{s.pod_rps}"
config:
  dbReadPoolSize: {chart.get("config.dbReadPoolSize")}
  dbPoolSize: {chart.get("config.dbPoolSize")}
database:
  # {connections_comment(c)}
  maxConnections: {c.max_connections}
  reservedConnections: {c.reserved}
"""
    return "\n".join(["# yaml-language-server: $schema=./values.schema.json", *(f"# {line}" for line in header), body])
