"""The hardware a worker offers the scheduler: CPUs, memory and GPUs, as the reference's
worker reports them (reserved memory = what other processes already use)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


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


def detect_gpus() -> tuple[Gpu, ...]:
    """GPUs from rust_core's device list (empty on a machine without a usable driver)."""
    try:
        import rust_core
    except ImportError:
        return ()
    lister = getattr(rust_core, "gpu_devices", None)
    if lister is None:
        return ()
    gpus = []
    for ordinal, device in enumerate(lister()):
        name = device.get("name", f"gpu{ordinal}") if isinstance(device, dict) else str(device)
        memory = int(device.get("memory", 0)) if isinstance(device, dict) else 0
        gpus.append(Gpu(name=name, ordinal=ordinal, memory=memory))
    return tuple(gpus)


def detect_resources() -> Resources:
    info = _meminfo()
    physical = info.get("MemTotal", 0)
    available = info.get("MemAvailable", physical)
    swap_total = info.get("SwapTotal", 0)
    swap_used = swap_total - info.get("SwapFree", swap_total)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Resources(
        mem_physical=physical,
        mem_swap=swap_total,
        mem_reserved=max(0, physical - available) + swap_used,
        cpus=cpus,
        gpus=detect_gpus(),
    )
