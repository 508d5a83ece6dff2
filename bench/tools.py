"""The load generator: wrk from PATH, else the copy `make bench-tools` puts in .tools/bin."""

from __future__ import annotations

import os
import shutil
import subprocess

from bench.config import REPO_ROOT

TOOLS_BIN = REPO_ROOT / ".tools" / "bin"


def find_wrk() -> str | None:
    """The path of wrk, or None when neither PATH nor .tools/bin has it."""
    found = shutil.which("wrk")
    if found:
        return found
    local = TOOLS_BIN / "wrk"
    return str(local) if local.is_file() and os.access(local, os.X_OK) else None


def wrk_version(wrk: str) -> str:
    """wrk's own version, e.g. `debian/4.1.0-3+b2 [epoll]`."""
    completed = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10, check=False)
    first_line = (completed.stdout or completed.stderr).splitlines()[:1]
    return first_line[0].split(" Copyright")[0].removeprefix("wrk ").strip() if first_line else "unknown"


def pinned(cpu: int, command: list[str]) -> list[str]:
    """The command run on that one CPU only."""
    return ["taskset", "-c", str(cpu), *command]


def pick_cpus() -> tuple[int, int, tuple[int, ...]]:
    """(server CPU, client CPU, every CPU allowed): two distinct CPUs this process may use, or one when it has one."""
    allowed = tuple(sorted(os.sched_getaffinity(0)))
    return allowed[0], allowed[1] if len(allowed) > 1 else allowed[0], allowed
