"""Readings of a server process: CPU time and memory from /proc, GC pauses from the service's /metrics."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.servers import child_pids

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
GC_PAUSE = "python_gc_pause_seconds"


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command: state (field 3) first, then ppid (4) ... utime (14), stime (15),
    cutime (16) and cstime (17)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User plus system time of every thread of the process so far."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """User plus system time of a process, of its children that have exited (cutime and cstime, once it
    has reaped them) and of those still running: PostgreSQL's postmaster and every process it forked."""
    total = sum(int(ticks) for ticks in stat_fields(pid)[11:15]) / CLOCK_TICKS
    for child in child_pids(pid):
        # A child that exits between the listing and the reading reaches the parent's cutime once reaped.
        with contextlib.suppress(OSError):
            total += cpu_seconds(child)
    return total


def postgres_parent(pid: int) -> int | None:
    """The postmaster of a PostgreSQL backend of this machine, or None when the pid is not one here."""
    try:
        parent = int(stat_fields(pid)[1])
        commands = [Path(f"/proc/{found}/comm").read_text().strip() for found in (pid, parent)]
    except (OSError, ValueError, IndexError):
        return None
    return parent if commands == ["postgres", "postgres"] else None


def main_thread_schedstat(pid: int) -> tuple[float, float]:
    """(seconds on its CPU, seconds ready to run but waiting for it) of the main thread: the event loop."""
    try:
        on_cpu, waiting = Path(f"/proc/{pid}/schedstat").read_text().split()[:2]
    except (OSError, ValueError):
        return 0.0, 0.0  # a kernel without scheduler statistics
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory now (VmRSS) and at its highest (VmHWM), in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return {"rss_mb": round(found.get("VmRSS", 0.0), 1), "rss_peak_mb": round(found.get("VmHWM", 0.0), 1)}


def gc_pauses(admin_url: str) -> dict[str, tuple[float, float]]:
    """Per generation, (collections, seconds paused) so far, from the service's admin /metrics."""
    text = httpx.get(f"{admin_url}/metrics", timeout=5.0).text
    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != GC_PAUSE:
            continue
        for sample in family.samples:
            totals = found.setdefault(sample.labels.get("generation", "?"), [0.0, 0.0])
            if sample.name.endswith("_count"):
                totals[0] = sample.value
            elif sample.name.endswith("_sum"):
                totals[1] = sample.value
    return {generation: (count, seconds) for generation, (count, seconds) in sorted(found.items())}


@dataclass
class Snapshot:
    cpu_s: float  # the process: all its threads
    main_cpu_s: float  # the main thread
    main_waiting_s: float  # the main thread, ready to run but not running
    gc: dict[str, tuple[float, float]] = field(default_factory=dict)


def snapshot(pid: int, admin_url: str | None) -> Snapshot:
    main_cpu_s, main_waiting_s = main_thread_schedstat(pid)
    return Snapshot(cpu_seconds(pid), main_cpu_s, main_waiting_s, gc_pauses(admin_url) if admin_url else {})


def stolen_seconds(before: Snapshot, after: Snapshot) -> float:
    """How long other processes held the server's CPU while its event loop was ready to run (a lower bound).

    The main thread's run-queue wait, less the CPU time of the process's own other threads (on one core,
    an argon2 thread running is the loop waiting too). On a shared machine: the time a run lost to others.
    """
    own_threads = (after.cpu_s - before.cpu_s) - (after.main_cpu_s - before.main_cpu_s)
    return max(0.0, after.main_waiting_s - before.main_waiting_s - max(0.0, own_threads))


def gc_delta(before: Snapshot, after: Snapshot) -> dict[str, tuple[float, float]]:
    """Collections and seconds paused between two snapshots, per generation."""
    return {
        generation: (
            count - before.gc.get(generation, (0.0, 0.0))[0],
            seconds - before.gc.get(generation, (0.0, 0.0))[1],
        )
        for generation, (count, seconds) in after.gc.items()
    }
