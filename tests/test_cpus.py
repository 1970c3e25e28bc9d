"""The default number of server processes: the CPUs this process may use (affinity), or fewer
when a cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`) allows
less; at least 1. The cgroup file systems here are directories in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.config import ServerSettings, available_cpus, cgroup_cpu_quota

AFFINITY = len(os.sched_getaffinity(0))


def v2(root: Path, quotas: dict[str, str], own: str = "/") -> Path:
    """A cgroup v2 mount at `root` with these cgroups (path: cpu.max), the process in `own`;
    returns the /proc/self/cgroup to go with it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    for path, cpu_max in quotas.items():
        directory = root / path.strip("/")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cpu.max").write_text(cpu_max + "\n")
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(f"0::{own}\n")
    return proc


def v1(root: Path, quota: str, period: str = "100000", *, controller: str = "cpu,cpuacct") -> Path:
    directory = root / controller
    directory.mkdir(parents=True)
    (directory / "cpu.cfs_quota_us").write_text(quota + "\n")
    (directory / "cpu.cfs_period_us").write_text(period + "\n")
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(f"12:memory:/\n4:{controller}:/\n0::/\n")
    return proc


@pytest.mark.parametrize(
    ("cpu_max", "quota"),
    [("max 100000", None), ("200000 100000", 2.0), ("150000 100000", 1.5), ("50000 100000", 0.5)],
)
def test_cgroup_v2_quota(tmp_path: Path, cpu_max: str, quota: float | None) -> None:
    root = tmp_path / "cgroup"
    proc = v2(root, {"/": cpu_max})
    assert cgroup_cpu_quota(root, proc) == quota


def test_a_fractional_quota_counts_up_and_never_below_one(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = v2(root, {"/": "150000 100000"})
    assert available_cpus(root, proc) == min(AFFINITY, 2)
    (root / "cpu.max").write_text("10000 100000\n")  # a tenth of a CPU
    assert available_cpus(root, proc) == 1


def test_the_quota_only_lowers_the_affinity(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = v2(root, {"/": f"{(AFFINITY + 8) * 100000} 100000"})
    assert available_cpus(root, proc) == AFFINITY


def test_cgroup_v2_takes_the_smallest_quota_on_the_way_up(tmp_path: Path) -> None:
    """Outside a container the process's cgroup (from /proc/self/cgroup) sits deeper, and a
    parent's quota (a systemd slice's) limits it too."""
    root = tmp_path / "cgroup"
    proc = v2(
        root,
        {"/system.slice": "300000 100000", "/system.slice/glint.service": "max 100000"},
        own="/system.slice/glint.service",
    )
    assert cgroup_cpu_quota(root, proc) == 3.0
    (root / "system.slice" / "glint.service" / "cpu.max").write_text("100000 100000\n")
    assert cgroup_cpu_quota(root, proc) == 1.0


def test_cgroup_v2_path_missing_from_the_mount_falls_back_to_the_root(tmp_path: Path) -> None:
    # A container without its own cgroup namespace sees the host's path in /proc/self/cgroup,
    # but only its own cgroup, as the root, under /sys/fs/cgroup.
    root = tmp_path / "cgroup"
    proc = v2(root, {"/": "400000 100000"}, own="/docker/0123abcd")
    assert cgroup_cpu_quota(root, proc) == 4.0


@pytest.mark.parametrize(
    ("quota", "period", "expected"), [("-1", "100000", None), ("250000", "100000", 2.5)]
)
def test_cgroup_v1_quota(tmp_path: Path, quota: str, period: str, expected: float | None) -> None:
    root = tmp_path / "cgroup"
    proc = v1(root, quota, period)
    assert cgroup_cpu_quota(root, proc) == expected


def test_cgroup_v1_under_the_plain_cpu_controller(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = v1(root, "100000", controller="cpu")
    assert cgroup_cpu_quota(root, proc) == 1.0
    assert available_cpus(root, proc) == 1


@pytest.mark.parametrize(
    "broken", ["", "garbage", "max", "100000 0", "-5 100000", "100000 abc", "0 100000"]
)
def test_unreadable_quotas_are_no_quota(tmp_path: Path, broken: str) -> None:
    root = tmp_path / "cgroup"
    proc = v2(root, {"/": broken})
    assert cgroup_cpu_quota(root, proc) is None
    assert available_cpus(root, proc) == AFFINITY


def test_no_cgroup_file_system(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    assert cgroup_cpu_quota(missing, missing / "cgroup") is None
    assert available_cpus(missing, missing / "cgroup") == AFFINITY


def test_the_server_workers_default_is_the_available_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    monkeypatch.setattr("app.config.cgroup_cpu_quota", lambda *_: 2.0)
    assert ServerSettings().workers == 2
    monkeypatch.setattr("app.config.cgroup_cpu_quota", lambda *_: None)
    assert ServerSettings().workers == 3
