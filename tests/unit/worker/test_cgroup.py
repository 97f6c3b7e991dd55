"""cgroup v2 limit detection against fake cgroup trees in tmp: a pod's limits are advertised when
lower than the host's, ancestors' limits count, and a missing or unlimited cgroup changes
nothing."""

from __future__ import annotations

import os
from pathlib import Path

from services.worker.cgroup import CgroupLimits, parse_cpu_max, parse_cpuset, read_limits
from services.worker.resources import _meminfo, detect_resources

GiB = 1 << 30


def fake_cgroup(root: Path, cgroup: str, files: dict[str, dict[str, str]]) -> Path:
    """A cgroup v2 mount at `root` with the process in `cgroup`; `files` maps a cgroup path
    relative to the root ("" = the root) to its control files."""
    (root / "cgroup.controllers").parent.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / cgroup.strip("/")).mkdir(parents=True, exist_ok=True)
    for rel, controls in files.items():
        directory = root / rel
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in controls.items():
            (directory / name).write_text(text + "\n")
    proc = root.parent / "proc-self-cgroup"
    proc.write_text(f"0::{cgroup}\n")
    return proc


def test_pod_limits_from_own_and_ancestor_cgroups(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    pod, ctr = "kubepods/burstable/pod1", "kubepods/burstable/pod1/ctr"
    proc = fake_cgroup(
        root,
        "/" + ctr,
        {
            "kubepods": {"memory.max": str(64 * GiB), "cpu.max": "max 100000"},
            pod: {"memory.max": str(8 * GiB), "cpu.max": "350000 100000"},
            ctr: {
                "memory.max": "max",
                "cpu.max": "max 100000",
                "cpuset.cpus.effective": "0-7,12",
                "memory.current": str(3 * GiB),
                "memory.stat": f"anon {GiB}\ninactive_file {2 * GiB}\n",
            },
        },
    )
    limits = read_limits(root, proc)
    # The pod's 8 GiB (tighter than kubepods', the container has none); 3.5 CPUs round up to 4,
    # fewer than the 9 of the cpuset; used = current minus reclaimable page cache.
    assert limits == CgroupLimits(memory=8 * GiB, cpus=4, memory_used=GiB)


def test_cpuset_alone_limits_cpus(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = fake_cgroup(root, "/", {"": {"cpuset.cpus.effective": "2-3", "cpu.max": "max 100000", "memory.max": "max"}})
    assert read_limits(root, proc) == CgroupLimits(memory=None, cpus=2, memory_used=None)


def test_no_cgroup_v2_means_no_limits(tmp_path: Path) -> None:
    assert read_limits(tmp_path / "absent", tmp_path / "absent-proc") == CgroupLimits()
    (tmp_path / "v1").mkdir()  # a directory without cgroup.controllers: a v1 or hybrid mount
    assert read_limits(tmp_path / "v1", tmp_path / "absent-proc") == CgroupLimits()


def test_parsers_reject_garbage() -> None:
    assert parse_cpu_max("150000 100000") == 2 and parse_cpu_max("50000 100000") == 1
    assert parse_cpu_max("max 100000") is None and parse_cpu_max("1 0") is None and parse_cpu_max("x") is None
    assert parse_cpuset("0-3,8,10-11") == 7 and parse_cpuset("") is None and parse_cpuset("a-b") is None


def test_detect_resources_advertises_lower_limits_only() -> None:
    host_memory = _meminfo()["MemTotal"]
    host_cpus = len(os.sched_getaffinity(0))
    limited = detect_resources(limits=CgroupLimits(memory=GiB, cpus=1, memory_used=GiB // 4))
    assert (limited.mem_physical, limited.cpus, limited.mem_reserved) == (GiB, 1, GiB // 4)
    # Limits above the host's are ignored (a pod limit bigger than the node).
    loose = detect_resources(limits=CgroupLimits(memory=host_memory * 2, cpus=host_cpus + 8, memory_used=1))
    assert (loose.mem_physical, loose.cpus) == (host_memory, host_cpus)
    assert loose.mem_reserved != 1
    # Operator overrides still win.
    assert detect_resources(cpus=3, memory=5 * GiB, limits=CgroupLimits(memory=GiB, cpus=1)).cpus == 3
