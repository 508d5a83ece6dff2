"""The chart: throughput and p99 at saturation, per server, per endpoint (matplotlib, Agg: no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend is chosen before pyplot is imported

from bench.config import ENDPOINTS, SERVERS

COLOURS = {"service": "#1f77b4", "baseline": "#ff7f0e", "ceiling": "#2ca02c"}
WIDTH = 0.27


def series(results: dict[str, Any], server: str, key: str) -> list[float]:
    """One value per endpoint (0 where this server was not measured)."""
    values = []
    for endpoint in ENDPOINTS:
        value = results["endpoints"].get(endpoint, {}).get(server, {}).get(key)
        values.append(float(value) if isinstance(value, int | float) else 0.0)
    return values


def spread(results: dict[str, Any], server: str) -> list[list[float]]:
    """Error bars from the median down to the min and up to the max."""
    rps, low, high = (series(results, server, key) for key in ("rps", "rps_min", "rps_max"))
    return [[r - lo for r, lo in zip(rps, low, strict=True)], [hi - r for r, hi in zip(rps, high, strict=True)]]


def bars(axis: Any, results: dict[str, Any], key: str, with_spread: bool) -> None:
    for offset, server in enumerate(SERVERS):
        values = series(results, server, key)
        if not any(values):
            continue
        positions = [index + (offset - 1) * WIDTH for index in range(len(ENDPOINTS))]
        errors = spread(results, server) if with_spread else None
        axis.bar(positions, values, WIDTH, yerr=errors, capsize=2, label=server, color=COLOURS[server])
    axis.set_xticks(range(len(ENDPOINTS)), ENDPOINTS)
    axis.set_yscale("log")
    axis.grid(axis="y", which="both", alpha=0.3)


def write(results: dict[str, Any], path: Path) -> Path:
    figure, (throughput, p99) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    bars(throughput, results, "rps", with_spread=True)
    throughput.set_ylabel("requests per second (median; bars: min-max)")
    throughput.set_title(f"auth-service on one core, {results['date']}")
    throughput.legend()
    bars(p99, results, "p99_ms", with_spread=False)
    p99.set_ylabel("p99 latency at saturation (ms)")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
