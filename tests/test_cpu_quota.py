"""The CPUs the hashing threads are sized by: affinity capped by the cgroup quota, read from fake cgroup trees."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from auth_service.cpu_quota import affinity_cpus, cgroup_cpu_limit, usable_cpus
from auth_service.settings import Settings

V1_CPU = "/sys/fs/cgroup/cpu,cpuacct"
V2 = "/sys/fs/cgroup"
OTHER_MOUNTS = [
    "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw",
    "25 22 0:5 / /proc rw,nosuid - proc proc rw",
    "35 31 0:32 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory",
]


class FakeCgroups:
    """/proc/self/cgroup, /proc/self/mountinfo and cgroup files under a test's root directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "proc/self").mkdir(parents=True)

    def v2(self, cgroup: str, mount_root: str = "/") -> FakeCgroups:
        self._write("proc/self/cgroup", f"0::{cgroup}\n")
        mount = f"30 22 0:26 {mount_root} {V2} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw"
        self._write("proc/self/mountinfo", "\n".join([*OTHER_MOUNTS, mount]) + "\n")
        return self

    def v1(self, cgroup: str, mount_root: str = "/") -> FakeCgroups:
        self._write("proc/self/cgroup", f"5:memory:{cgroup}\n4:cpu,cpuacct:{cgroup}\n1:name=systemd:{cgroup}\n")
        mount = f"32 31 0:29 {mount_root} {V1_CPU} rw,nosuid,nodev - cgroup cgroup rw,cpu,cpuacct"
        self._write("proc/self/mountinfo", "\n".join([*OTHER_MOUNTS, mount]) + "\n")
        return self

    def cpu_max(self, level: str, text: str) -> FakeCgroups:
        self._write(f"{V2}{level}/cpu.max", text + "\n")
        return self

    def cfs(self, level: str, quota_us: int, period_us: int = 100_000) -> FakeCgroups:
        self._write(f"{V1_CPU}{level}/cpu.cfs_quota_us", f"{quota_us}\n")
        self._write(f"{V1_CPU}{level}/cpu.cfs_period_us", f"{period_us}\n")
        return self

    def _write(self, path: str, text: str) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


@pytest.fixture
def fake(tmp_path: Path) -> FakeCgroups:
    return FakeCgroups(tmp_path)


def test_a_v2_quota_is_the_limit(fake: FakeCgroups) -> None:
    fake.v2("/").cpu_max("", "200000 100000")
    assert cgroup_cpu_limit(fake.root) == 2


def test_v2_max_is_no_limit(fake: FakeCgroups) -> None:
    fake.v2("/").cpu_max("", "max 100000")
    assert cgroup_cpu_limit(fake.root) is None
    assert usable_cpus(fake.root) == affinity_cpus()


def test_a_v1_quota_is_the_limit(fake: FakeCgroups) -> None:
    fake.v1("/").cfs("", 300_000, 100_000)
    assert cgroup_cpu_limit(fake.root) == 3


def test_a_v1_quota_of_minus_one_is_no_limit(fake: FakeCgroups) -> None:
    fake.v1("/").cfs("", -1)
    assert cgroup_cpu_limit(fake.root) is None
    assert usable_cpus(fake.root) == affinity_cpus()


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [(150_000, 100_000, 2), (250_001, 100_000, 3), (50_000, 100_000, 1), (1_000, 100_000, 1), (100_000, 100_000, 1)],
)
def test_fractional_quotas_round_up(fake: FakeCgroups, quota: int, period: int, cpus: int) -> None:
    fake.v2("/").cpu_max("", f"{quota} {period}")
    assert cgroup_cpu_limit(fake.root) == cpus


def test_the_quota_caps_the_affinity(fake: FakeCgroups) -> None:
    """Half a CPU on this machine (affinity 2 here): one thread, not the affinity's count."""
    fake.v2("/").cpu_max("", "50000 100000")
    assert usable_cpus(fake.root) == min(affinity_cpus(), 1) == 1


def test_on_a_host_the_tighter_ancestor_wins(fake: FakeCgroups) -> None:
    fake.v2("/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope")
    fake.cpu_max("/kubepods.slice", "800000 100000")
    fake.cpu_max("/kubepods.slice/kubepods-pod1.slice", "150000 100000")
    fake.cpu_max("/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope", "max 100000")
    assert cgroup_cpu_limit(fake.root) == 2


def test_the_tighter_level_wins_in_v1_too(fake: FakeCgroups) -> None:
    fake.v1("/kubepods/burstable/pod1/abc").cfs("/kubepods/burstable/pod1", 400_000).cfs(
        "/kubepods/burstable/pod1/abc", 100_000
    )
    assert cgroup_cpu_limit(fake.root) == 1


def test_a_cgroup_mounted_at_its_own_root_reads_its_limit_at_the_mount_point(fake: FakeCgroups) -> None:
    """Docker without a cgroup namespace: /proc/self/cgroup names /docker/abc, which is mounted as the root."""
    fake.v1("/docker/abc", mount_root="/docker/abc").cfs("", 200_000)
    assert cgroup_cpu_limit(fake.root) == 2


def test_a_cgroup_outside_its_mount_has_no_readable_limit(fake: FakeCgroups) -> None:
    fake.v2("/elsewhere", mount_root="/docker/abc").cpu_max("", "100000 100000")
    assert cgroup_cpu_limit(fake.root) is None


def test_a_level_without_the_file_is_skipped_for_its_ancestors(fake: FakeCgroups) -> None:
    fake.v2("/a/b").cpu_max("/a", "100000 100000")
    assert cgroup_cpu_limit(fake.root) == 1


def test_without_proc_files_it_falls_back_to_the_affinity(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path) is None
    assert usable_cpus(tmp_path) == affinity_cpus()


def test_without_a_cgroup_mount_it_falls_back_to_the_affinity(fake: FakeCgroups) -> None:
    fake.v2("/").cpu_max("", "50000 100000")
    (fake.root / "proc/self/mountinfo").write_text("\n".join(OTHER_MOUNTS) + "\n")
    assert cgroup_cpu_limit(fake.root) is None
    assert usable_cpus(fake.root) == affinity_cpus()


@pytest.mark.parametrize("content", ["garbage", "100000", "50000 0", ""])
def test_a_malformed_file_is_no_limit(fake: FakeCgroups, content: str) -> None:
    fake.v2("/").cpu_max("", content)
    assert cgroup_cpu_limit(fake.root) is None


def test_an_unreadable_file_is_no_limit(fake: FakeCgroups) -> None:
    # Tests run as root, for whom no mode bit forbids reading: a directory in its place cannot be read.
    fake.v2("/")
    (fake.root / V2.lstrip("/") / "cpu.max").mkdir(parents=True)
    assert cgroup_cpu_limit(fake.root) is None
    assert usable_cpus(fake.root) == affinity_cpus()


def test_on_this_machine_it_is_between_one_and_the_cpu_count() -> None:
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_hash_workers_follow_the_usable_cpus_not_the_cpu_count() -> None:
    """A process pinned to one CPU sizes one argon2 thread, however many the machine has."""
    script = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from auth_service.settings import Settings; print(Settings().hash_workers, os.cpu_count())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    workers, cpu_count = map(int, run.stdout.split())
    assert workers == 1, (workers, cpu_count)


def test_an_explicit_auth_hash_workers_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    # The environment variable is what is under test here, so it is set, not given as a value.
    monkeypatch.setenv("AUTH_HASH_WORKERS", "7")
    assert Settings().hash_workers == 7
