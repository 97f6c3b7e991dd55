"""cgroup v2 limits of this process: what a container (a Kubernetes pod with resource limits)
may really use, which /proc/meminfo and the CPU count do not show (they describe the host).

The worker advertises these to the scheduler when they are lower than the host's, so a pod
limited to 8 GiB is not handed a 64 GiB PC1 and killed by the OOM killer. The limits of every
ancestor cgroup count (the tightest wins), as the kernel enforces them. Anything missing or
unreadable (cgroup v1, no /sys/fs/cgroup) means "no limit": detection never fails the worker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("/sys/fs/cgroup")
DEFAULT_PROC_CGROUP = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class CgroupLimits:
    """None = no limit found for that resource."""

    memory: int | None = None
    cpus: int | None = None
    # Memory the cgroup already uses, page cache the kernel can reclaim left out.
    memory_used: int | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def own_cgroup(proc_cgroup: Path = DEFAULT_PROC_CGROUP) -> str:
    """The v2 cgroup path of this process ("0::/kubepods/..." line), "/" when unknown (inside a
    cgroup namespace it is "/" anyway)."""
    text = _read(proc_cgroup) or ""
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            return path or "/"
    return "/"


def _chain(root: Path, cgroup: str) -> list[Path]:
    """The cgroup's directory and its ancestors up to the root, innermost first; only those that
    exist under `root` (a namespaced mount shows the own cgroup as the root)."""
    parts = [p for p in cgroup.strip("/").split("/") if p and p not in (".", "..")]
    dirs = [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    return [d for d in dirs if d.is_dir()]


def parse_memory_max(text: str | None) -> int | None:
    if text is None or text == "max" or not text.isdigit():
        return None
    return int(text)


def parse_cpu_max(text: str | None) -> int | None:
    """`cpu.max` is "QUOTA PERIOD" or "max PERIOD": whole CPUs, rounded up (a 1.5-CPU quota can
    run two threads part of the time)."""
    if text is None:
        return None
    fields = text.split()
    if len(fields) != 2 or not fields[0].isdigit() or not fields[1].isdigit() or int(fields[1]) == 0:
        return None
    return max(1, math.ceil(int(fields[0]) / int(fields[1])))


def parse_cpuset(text: str | None) -> int | None:
    """Number of CPUs in a cpuset list such as "0-3,8,10-11"; None for an empty or bad list."""
    if not text:
        return None
    count = 0
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            return None
        count += (int(hi) - int(lo) + 1) if sep else 1
    return count or None


def _min(values: list[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _memory_used(directory: Path) -> int | None:
    current = _read(directory / "memory.current")
    if current is None or not current.isdigit():
        return None
    reclaimable = 0
    for line in (_read(directory / "memory.stat") or "").splitlines():
        key, _, value = line.partition(" ")
        if key == "inactive_file" and value.isdigit():
            reclaimable = int(value)
    return max(0, int(current) - reclaimable)


def read_limits(root: Path = DEFAULT_ROOT, proc_cgroup: Path = DEFAULT_PROC_CGROUP) -> CgroupLimits:
    """The tightest memory and CPU limits over this process's cgroup and its ancestors."""
    if not (root / "cgroup.controllers").exists():
        return CgroupLimits()  # not a cgroup v2 mount
    chain = _chain(root, own_cgroup(proc_cgroup))
    if not chain:
        return CgroupLimits()
    memory = _min([parse_memory_max(_read(d / "memory.max")) for d in chain])
    cpus = _min(
        [parse_cpu_max(_read(d / "cpu.max")) for d in chain] + [parse_cpuset(_read(chain[0] / "cpuset.cpus.effective"))]
    )
    return CgroupLimits(memory=memory, cpus=cpus, memory_used=_memory_used(chain[0]) if memory is not None else None)
