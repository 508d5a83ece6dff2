"""Readings from /proc (bench/measure.py): a process tree's CPU, as PostgreSQL's is read, on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from bench import measure

# A parent that, once told to, forks a child that burns 0.4 s of CPU and exits (reaped: its time moves to
# the parent's cutime), forks another that burns 0.3 s and stays, and burns 0.2 s itself: 0.9 s in all.
TREE = """
import os, sys, time

def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass

print("ready", flush=True)
sys.stdin.readline()
first = os.fork()
if first == 0:
    burn(0.4)
    os._exit(0)
os.waitpid(first, 0)
done_reading, done_writing = os.pipe()
second = os.fork()
if second == 0:
    burn(0.3)
    os.write(done_writing, b"x")
    time.sleep(120)
    os._exit(0)
burn(0.2)
os.read(done_reading, 1)
print(second, flush=True)
time.sleep(120)
"""
TICK_S = 1 / measure.CLOCK_TICKS


def test_a_process_trees_cpu_counts_its_running_and_its_reaped_children() -> None:
    command = [sys.executable, "-c", TREE]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdin is not None and parent.stdout is not None
        second = None
        try:
            assert parent.stdout.readline() == "ready\n"
            before, own_before = measure.tree_cpu_seconds(parent.pid), measure.cpu_seconds(parent.pid)
            parent.stdin.write("go\n")
            parent.stdin.flush()
            second = int(parent.stdout.readline())
            after, own_after = measure.tree_cpu_seconds(parent.pid), measure.cpu_seconds(parent.pid)
        finally:
            for pid in (second, parent.pid):
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
    # Six fields read, each to the tick (the parent's utime, stime, cutime and cstime, the child's utime and
    # stime); forking and exiting cost a little more than the burning.
    assert 0.9 - 6 * TICK_S <= after - before <= 0.9 + 0.15
    assert own_after - own_before == pytest.approx(0.2, abs=0.05)  # the parent's own time alone


def test_only_a_postgresql_backend_has_a_postmaster() -> None:
    assert measure.postgres_parent(os.getpid()) is None  # python, not postgres
    assert measure.postgres_parent(2**22 + 1) is None  # above the largest pid Linux gives
