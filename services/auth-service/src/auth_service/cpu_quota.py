"""How many CPUs this process may use: its affinity, capped by its cgroup's CPU quota.

A container sees every CPU of its node in os.cpu_count(); its limit is a cgroup quota instead.
Read as Go 1.25's runtime (container-aware GOMAXPROCS) and the JVM read it: the process's cgroup
from /proc/self/cgroup, where that hierarchy is mounted from /proc/self/mountinfo, then the quota at
the cgroup and at each ancestor up to the mount's root, the smallest winning. Inside a container the
cgroup namespace makes the cgroup the root; on a host it is nested in its slice's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

UNIFIED = ""  # the controller field of cgroup v2's line in /proc/self/cgroup ("0::/path")
CPU_CONTROLLER = "cpu"


@dataclass(frozen=True)
class CgroupMount:
    """Where a cgroup hierarchy is: its mount point, and which cgroup appears there."""

    version: int
    mount_point: PurePosixPath
    root: PurePosixPath


def usable_cpus(root: Path = Path("/")) -> int:
    """The CPUs this process may use: the affinity count, capped by the cgroup quota rounded up; at least 1."""
    quota = cgroup_cpu_limit(root)
    cpus = affinity_cpus() if quota is None else min(affinity_cpus(), quota)
    return max(1, cpus)


def affinity_cpus() -> int:
    """The CPUs the scheduler may run this process on (taskset, cpuset), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cgroup_cpu_limit(root: Path = Path("/")) -> int | None:
    """The tightest CPU quota on this process's cgroup and its ancestors, rounded up; None when unlimited or unknown.

    `root` is the filesystem root where /proc and the cgroup mounts are looked up (a test's tmp_path).
    """
    found = _cpu_cgroup(root)
    if found is None:
        return None
    mount, cgroup = found
    quotas = [quota for level in _levels(root, mount, cgroup) if (quota := _quota(level, mount.version)) is not None]
    return math.ceil(min(quotas)) if quotas else None


def _cpu_cgroup(root: Path) -> tuple[CgroupMount, PurePosixPath] | None:
    """The hierarchy holding the cpu controller and this process's cgroup in it: v1's if any, else v2's."""
    memberships = _read_memberships(root)
    mounts = _read_cgroup_mounts(root)
    for version, controllers in ((1, CPU_CONTROLLER), (2, UNIFIED)):
        cgroup = memberships.get(controllers)
        mount = mounts.get(version)
        if cgroup is not None and mount is not None:
            return mount, cgroup
    return None


def _read_memberships(root: Path) -> dict[str, PurePosixPath]:
    """/proc/self/cgroup as {"cpu": path} for v1's cpu controller and {"": path} for v2's hierarchy."""
    memberships: dict[str, PurePosixPath] = {}
    for line in _read_lines(root / "proc/self/cgroup"):
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == UNIFIED or CPU_CONTROLLER in controllers.split(","):
            memberships[controllers if controllers == UNIFIED else CPU_CONTROLLER] = PurePosixPath(path)
    return memberships


def _read_cgroup_mounts(root: Path) -> dict[int, CgroupMount]:
    """The cgroup2 mount and the v1 mount carrying the cpu controller, by version, from mountinfo."""
    mounts: dict[int, CgroupMount] = {}
    for line in _read_lines(root / "proc/self/mountinfo"):
        # "36 25 0:31 <root> <mount point> <options> [optional fields] - <fstype> <source> <super options>"
        fields, _, tail = line.partition(" - ")
        mount_fields, fs_fields = fields.split(), tail.split()
        if len(mount_fields) < 5 or len(fs_fields) < 3:
            continue
        version = _hierarchy_version(fs_fields[0], fs_fields[2].split(","))
        if version is not None and version not in mounts:
            mount_root, mount_point = (PurePosixPath(_unescape(field)) for field in mount_fields[3:5])
            mounts[version] = CgroupMount(version, mount_point, mount_root)
    return mounts


def _hierarchy_version(fstype: str, super_options: list[str]) -> int | None:
    """2 for the unified hierarchy, 1 for a v1 hierarchy with the cpu controller, else None."""
    if fstype == "cgroup2":
        return 2
    if fstype == "cgroup" and CPU_CONTROLLER in super_options:
        return 1
    return None


def _levels(root: Path, mount: CgroupMount, cgroup: PurePosixPath) -> list[Path]:
    """The directories of the cgroup and of each ancestor up to the mount's root, innermost first."""
    try:
        relative = cgroup.relative_to(mount.root)
    except ValueError:
        return []  # the cgroup lies outside what is mounted here: its limits cannot be read
    top = root / mount.mount_point.relative_to("/")
    parts = relative.parts
    return [top.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _quota(level: Path, version: int) -> float | None:
    """The CPUs this cgroup level allows, or None when it sets no limit (or its files cannot be read)."""
    try:
        if version == 2:
            quota, period = (level / "cpu.max").read_text().split()
            return None if quota == "max" else int(quota) / int(period)
        quota_us = int((level / "cpu.cfs_quota_us").read_text())
        return None if quota_us < 0 else quota_us / int((level / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040 ...)."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field
