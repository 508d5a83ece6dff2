"""Where and with what a run was measured: the machine and the versions of everything on the path."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("fastapi", "starlette", "uvicorn", "uvloop", "httptools", "sqlalchemy", "asyncpg", "orjson", "pyjwt")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine(server_cpu: int, client_cpu: int, cpus_allowed: tuple[int, ...]) -> dict[str, object]:
    """CPU model, cores, kernel, memory, the load when the run started and the CPUs each side used."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "cpus_allowed": list(cpus_allowed),
        "kernel": platform.release(),
        "os": platform.platform(),
        "memory_gib": memory_gib(),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


def versions(wrk: str, postgres: str) -> dict[str, str]:
    """python, the web and database stack, wrk and the PostgreSQL server."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["wrk"] = wrk
    found["postgresql"] = postgres
    return found
