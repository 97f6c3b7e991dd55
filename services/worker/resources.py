"""The hardware a worker offers the scheduler: CPUs, memory and GPUs, as the reference's
worker reports them (reserved memory = what other processes already use; in a container with
cgroup v2 limits lower than the host's, the limits: see cgroup.py), and the per-task
resource overrides an operator sets on the worker.

Overrides use the later Lotus names, `<TASK>[_<SIZE>]_<FIELD>` (PC1_32G_MAX_CONCURRENT,
PC2_GPU_UTILIZATION, C2_MIN_MEMORY, AP_MAX_PARALLELISM, ...), read from the worker config's
`[worker.resources]` table and from the process environment (as lotus-worker reads them), the
environment winning. Task names: AP PC1 PC2 C1 C2 FIN GET UNS WDP WNP; sizes: 2K 8M 512M 32G 64G;
fields: MIN_MEMORY MAX_MEMORY MAX_PARALLELISM MAX_PARALLELISM_GPU GPU_UTILIZATION
BASE_MIN_MEMORY MAX_CONCURRENT. Memory accepts a byte count or a KiB/MiB/GiB/TiB suffix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rust_core
from services.common import vocabulary
from services.common.resource_override import ResourceOverride
from services.common.vocabulary import TASK_BY_SHORT, SealProof, TaskType
from services.worker.cgroup import CgroupLimits, read_limits
from services.worker.sectors import SEAL_PROOF_SIZES, SIZE_LABELS

TASK_SHORT_NAMES: dict[str, int] = {short: int(tt) for short, tt in TASK_BY_SHORT.items()}
ALL_TASK_TYPES = tuple(sorted(TASK_SHORT_NAMES.values()))
SHORT_NAME_OF: dict[int, str] = {value: name for name, value in TASK_SHORT_NAMES.items()}
_PROOF_BY_LABEL = {SIZE_LABELS[size]: proof for proof, size in SEAL_PROOF_SIZES.items()}
_FIELDS = {
    "MIN_MEMORY": "min_memory",
    "MAX_MEMORY": "max_memory",
    "MAX_PARALLELISM": "max_parallelism",
    "MAX_PARALLELISM_GPU": "max_parallelism_gpu",
    "GPU_UTILIZATION": "gpu_utilization",
    "BASE_MIN_MEMORY": "base_min_memory",
    "MAX_CONCURRENT": "max_concurrent",
}
_KEY = re.compile(
    r"^("
    + "|".join(TASK_SHORT_NAMES)
    + r")(?:_("
    + "|".join(_PROOF_BY_LABEL)
    + r"))?_("
    + "|".join(sorted(_FIELDS, key=len, reverse=True))
    + r")$"
)
_UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}


def parse_task_type(name: str) -> int:
    """A task type from its short name (PC1), its proto name (TASK_TYPE_PRE_COMMIT_1 or
    PRE_COMMIT_1), its number or the reference's id: the fleet's one parser."""
    return int(vocabulary.parse_task_type(name))


def _memory(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?I?B?)\s*", text.upper())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"{text!r} is not a byte size (e.g. 1073741824 or 1GiB)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def is_override_key(key: str) -> bool:
    return bool(_KEY.match(key.upper()))


def parse_overrides(values: Mapping[str, Any]) -> list[ResourceOverride]:
    """Resource overrides from `NAME: value` pairs; names that do not match the pattern are
    ignored (the environment has many other variables), bad values are ValueError."""
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for key, raw in values.items():
        match = _KEY.match(key.upper())
        if not match:
            continue
        task = TASK_SHORT_NAMES[match.group(1)]
        proof = _PROOF_BY_LABEL[match.group(2)] if match.group(2) else 0
        attr = _FIELDS[match.group(3)]
        row = rows.setdefault((task, proof), {})
        text = str(raw)
        try:
            if attr in ("min_memory", "max_memory", "base_min_memory"):
                row[attr] = _memory(text)
            elif attr == "gpu_utilization":
                value = float(text)
                if value < 0:
                    raise ValueError("must not be negative")
                row[attr] = value
            elif attr in ("max_parallelism", "max_parallelism_gpu"):
                value_i = int(text)
                if value_i < -1:
                    raise ValueError("must be -1 (all but 8% of the CPUs), 0 or more")
                row[attr] = value_i
            else:
                value_u = int(text)
                if value_u < 0:
                    raise ValueError("must not be negative")
                row["max_concurrent"] = value_u
        except ValueError as exc:
            raise ValueError(f"resource override {key}={raw!r}: {exc}") from None
    return [
        ResourceOverride(TaskType(task), SealProof(proof) if proof else None, **rows[(task, proof)])
        for task, proof in sorted(rows)
    ]


def concurrency_caps(overrides: list[ResourceOverride]) -> dict[tuple[int, int], int]:
    """(task type, seal proof or 0 for every size) -> most tasks at once."""
    return {(int(r.task_type), int(r.proof or 0)): r.max_concurrent for r in overrides if r.max_concurrent is not None}


@dataclass(frozen=True)
class Gpu:
    name: str
    ordinal: int
    memory: int = 0


@dataclass(frozen=True)
class Resources:
    mem_physical: int
    mem_swap: int
    mem_reserved: int
    cpus: int
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)


def _meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    except OSError:
        pass
    return values


def detect_gpus(env: Mapping[str, str] | None = None) -> tuple[Gpu, ...]:
    """GPUs from rust_core's device list. The CUDA driver already hides what CUDA_VISIBLE_DEVICES
    excludes (and renumbers the rest from 0), so ordinals are the ones this process uses; an
    empty or "-1" CUDA_VISIBLE_DEVICES means no GPU at all."""
    env = os.environ if env is None else env
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "NoDevFiles"):
        return ()
    gpus = []
    for device in rust_core.gpu_devices():
        ordinal = int(device["ordinal"])
        name = str(device["name"])
        memory = int(device["memory_bytes"])
        gpus.append(Gpu(name=name, ordinal=ordinal, memory=memory))
    return tuple(gpus)


def detect_resources(
    no_swap: bool = False, cpus: int = 0, memory: int = 0, limits: CgroupLimits | None = None
) -> Resources:
    """What this machine has; `cpus`/`memory` (when non-zero) override the detected values, and
    `no_swap` reports no swap (a worker that must never page its tasks out). Inside a container
    the cgroup v2 limits (`limits`, read from /sys/fs/cgroup when None) replace the host's figures
    where they are lower: then reserved memory is what the cgroup itself already uses."""
    limits = read_limits() if limits is None else limits
    info = _meminfo()
    physical = info.get("MemTotal", 0)
    available = info.get("MemAvailable", physical)
    swap_total = 0 if no_swap else info.get("SwapTotal", 0)
    swap_used = 0 if no_swap else swap_total - info.get("SwapFree", swap_total)
    reserved = max(0, physical - available) + swap_used
    if limits.memory is not None and limits.memory < physical:
        physical = limits.memory
        reserved = min(limits.memory_used if limits.memory_used is not None else reserved, physical)
    detected_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if limits.cpus is not None:
        detected_cpus = min(detected_cpus, limits.cpus)
    return Resources(
        mem_physical=memory or physical,
        mem_swap=swap_total,
        mem_reserved=reserved,
        cpus=cpus or detected_cpus,
        gpus=detect_gpus(),
    )


class EnabledTaskTypes:
    """The task types the worker accepts; changeable at run time. `version` moves on every
    change so the manager link knows to send the new WorkerInfo."""

    def __init__(self, initial: tuple[int, ...] | list[int]) -> None:
        self._types = set(initial)
        self.version = 0

    def __contains__(self, task_type: int) -> bool:
        return task_type in self._types

    def sorted(self) -> list[int]:
        return sorted(self._types)

    def enable(self, types: list[int]) -> None:
        before = set(self._types)
        self._types.update(types)
        if self._types != before:
            self.version += 1

    def disable(self, types: list[int]) -> None:
        before = set(self._types)
        self._types.difference_update(types)
        if self._types != before:
            self.version += 1
