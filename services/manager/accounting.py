"""Resource accounting of one worker: what its tasks hold, whether one more fits, and which GPUs
it gets.

The checks are the reference's `canHandleRequest` (§3.4 of lotus-detail.md) with two of its
quirks fixed: BaseMinMemory is held once per task type while tasks of that type run (the
reference adds it to the need but never accounts it, so two types with large bases could
overcommit RAM), and GPUs are counted per device with fractional use (the reference lets a worker
with N GPUs run only one GPU task at a time).

PoSt first: Window/Winning PoSt work is checked only against the worker's hardware and the other
PoSt tasks it runs, never against what sealing tasks hold, so a worker full of sealing work still
takes a PoSt at once (its vanilla-proof step is short and light; missing its deadline costs the
miner far more than a moment of overcommit). Sealing tasks do see the PoSt's use.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum

from services.manager.resources import ResourceRow, Shape
from services.manager.tasks import TaskType

_GPU_EPS = 1e-9
POST_TASKS = frozenset({TaskType.GENERATE_WINDOW_POST, TaskType.GENERATE_WINNING_POST})


class WaitReason(IntEnum):
    """Mirrors `sectorstorage.v1.WaitReason`: why a request is not placed (on a worker)."""

    NOT_CONSIDERED = 1
    TASK_TYPE_NOT_ENABLED = 2
    INSUFFICIENT_RESOURCES = 3
    RESOURCES_BUSY = 4
    CAP_REACHED = 5
    NO_STORAGE = 6
    SECTOR_FILES_ELSEWHERE = 7
    WORKER_UNAVAILABLE = 8
    NO_WORKERS = 9
    INDEX_UNAVAILABLE = 10


Rejection = tuple[WaitReason, str]


@dataclass(frozen=True)
class Hardware:
    """What a worker offers (WorkerResources after its own overrides)."""

    mem_physical: int
    mem_swap: int
    mem_reserved: int
    cpus: int
    gpu_ordinals: tuple[int, ...] = ()
    ignore_resources: bool = False


@dataclass(frozen=True)
class Grant:
    """What one placed task holds on its worker; released exactly as granted."""

    shape: Shape
    row: ResourceRow
    threads: int
    gpu_ordinals: tuple[int, ...] = ()
    gpu_shares: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Need:
    """A resource row as it applies on one worker (threads and GPU use depend on its hardware),
    precomputed because the scheduler checks it many times."""

    shape: Shape
    row: ResourceRow
    min_memory: int
    max_memory: int
    threads: int
    # GPUs wanted on this worker: 0 when the task does not use one or the worker has none.
    gpu: float
    base: int
    cap: int | None


@dataclass
class WorkerCapacity:
    hardware: Hardware
    used_min: int = 0
    used_max: int = 0
    cpu_used: int = 0
    # Shared base memory held: per task type, the base of every running task of that type; the
    # type holds the largest of them.
    used_base: int = 0
    gpu_used: list[float] = field(default_factory=list)
    running: Counter[Shape] = field(default_factory=Counter)
    _bases: dict[TaskType, Counter[int]] = field(default_factory=dict)
    _held: dict[TaskType, int] = field(default_factory=dict)
    # What PoSt tasks hold (also counted above): the only use a PoSt is checked against.
    post_min: int = 0
    post_max: int = 0
    post_cpu: int = 0

    def __post_init__(self) -> None:
        if not self.gpu_used:
            self.gpu_used = [0.0] * len(self.hardware.gpu_ordinals)

    # --- checks --------------------------------------------------------------------------------

    def need(self, shape: Shape, row: ResourceRow) -> Need:
        hw = self.hardware
        on_gpu = row.gpu_utilization > 0 and bool(hw.gpu_ordinals)
        return Need(
            shape,
            row,
            row.min_memory,
            row.max_memory,
            row.threads(hw.cpus, on_gpu),
            row.gpu_utilization if on_gpu else 0.0,
            row.base_min_memory,
            row.max_concurrent,
        )

    def check(self, shape: Shape, row: ResourceRow) -> Rejection | None:
        """None when one more task of `shape` fits now; else why not (busy or capped)."""
        return self.check_need(self.need(shape, row))

    def check_need(self, need: Need) -> Rejection | None:
        if need.cap is not None and self.running[need.shape] >= need.cap:
            return WaitReason.CAP_REACHED, f"{self.running[need.shape]} running, cap {need.cap}"
        hw = self.hardware
        if hw.ignore_resources:
            return None
        if need.shape[0] in POST_TASKS:
            return self._post_check(need)
        extra_base = need.base - self._held.get(need.shape[0], 0)
        if extra_base < 0:
            extra_base = 0
        held = hw.mem_reserved + self.used_base + extra_base
        free_min = hw.mem_physical - held - self.used_min
        if need.min_memory > free_min:
            return WaitReason.RESOURCES_BUSY, f"needs {need.min_memory} bytes min memory, {max(0, free_min)} free"
        free_max = hw.mem_physical + hw.mem_swap - held - self.used_max
        if need.max_memory > free_max:
            return (
                WaitReason.RESOURCES_BUSY,
                f"needs {need.max_memory} bytes max memory (RAM+swap), {max(0, free_max)} free",
            )
        if self.cpu_used + need.threads > hw.cpus:
            return WaitReason.RESOURCES_BUSY, f"needs {need.threads} threads, {max(0, hw.cpus - self.cpu_used)} free"
        if need.gpu and self._pick_gpus(need.gpu) is None:
            return WaitReason.RESOURCES_BUSY, f"needs {need.gpu:g} GPU, none free enough"
        return None

    def fits(self, need: Need) -> bool:
        """check_need without the explanation (the scheduler's hot path)."""
        if need.cap is not None and self.running[need.shape] >= need.cap:
            return False
        hw = self.hardware
        if hw.ignore_resources:
            return True
        if need.shape[0] in POST_TASKS:
            return self._post_check(need) is None
        extra_base = need.base - self._held.get(need.shape[0], 0)
        held = hw.mem_reserved + self.used_base + (extra_base if extra_base > 0 else 0)
        if need.min_memory > hw.mem_physical - held - self.used_min:
            return False
        if need.max_memory > hw.mem_physical + hw.mem_swap - held - self.used_max:
            return False
        if self.cpu_used + need.threads > hw.cpus:
            return False
        return not need.gpu or self._pick_gpus(need.gpu) is not None

    def _post_check(self, need: Need) -> Rejection | None:
        """A PoSt task against the hardware less what other PoSt tasks hold (module docstring)."""
        hw = self.hardware
        free_min = hw.mem_physical - hw.mem_reserved - self.post_min
        if need.min_memory > free_min:
            return (
                WaitReason.RESOURCES_BUSY,
                f"needs {need.min_memory} bytes min memory, {max(0, free_min)} free for PoSt",
            )
        free_max = hw.mem_physical + hw.mem_swap - hw.mem_reserved - self.post_max
        if need.max_memory > free_max:
            return (
                WaitReason.RESOURCES_BUSY,
                f"needs {need.max_memory} bytes max memory, {max(0, free_max)} free for PoSt",
            )
        if self.post_cpu + need.threads > hw.cpus:
            return (
                WaitReason.RESOURCES_BUSY,
                f"needs {need.threads} threads, {max(0, hw.cpus - self.post_cpu)} free for PoSt",
            )
        return None

    def check_idle(self, shape: Shape, row: ResourceRow) -> Rejection | None:
        """None when the task would fit on this worker with nothing running; else why never."""
        if row.max_concurrent == 0:
            return WaitReason.CAP_REACHED, "cap 0: this task type and size is off on this worker"
        hw = self.hardware
        if hw.ignore_resources:
            return None
        need = self.need(shape, row)
        if hw.mem_reserved + row.min_memory + row.base_min_memory > hw.mem_physical:
            return (
                WaitReason.INSUFFICIENT_RESOURCES,
                f"needs {row.min_memory + row.base_min_memory} bytes RAM, worker has {max(0, hw.mem_physical - hw.mem_reserved)}",
            )
        if hw.mem_reserved + row.max_memory + row.base_min_memory > hw.mem_physical + hw.mem_swap:
            return (
                WaitReason.INSUFFICIENT_RESOURCES,
                f"needs {row.max_memory + row.base_min_memory} bytes RAM+swap, worker has {max(0, hw.mem_physical + hw.mem_swap - hw.mem_reserved)}",
            )
        if need.threads > hw.cpus:
            return WaitReason.INSUFFICIENT_RESOURCES, f"needs {need.threads} threads, worker has {hw.cpus}"
        if need.gpu and math.ceil(need.gpu - _GPU_EPS) > len(hw.gpu_ordinals):
            return WaitReason.INSUFFICIENT_RESOURCES, f"needs {need.gpu:g} GPUs, worker has {len(hw.gpu_ordinals)}"
        return None

    # --- GPU slots -------------------------------------------------------------------------------

    def _pick_gpus(self, need: float) -> tuple[tuple[int, ...], tuple[float, ...]] | None:
        """Which GPU indices (into the worker's list) a task needing `need` GPUs gets, and how much
        of each; None when they are not free. A fraction goes to the fullest GPU that still has
        room (best fit, so halves pair up); more than one GPU takes whole idle devices."""
        used = self.gpu_used
        if need <= 1.0 + _GPU_EPS:
            best = -1
            for i, u in enumerate(used):
                if u + need <= 1.0 + _GPU_EPS and (best < 0 or u > used[best]):
                    best = i
            return None if best < 0 else ((best,), (need,))
        whole = math.ceil(need - _GPU_EPS)
        idle = [i for i, u in enumerate(used) if u <= _GPU_EPS]
        if len(idle) < whole:
            return None
        chosen = tuple(idle[:whole])
        shares = tuple([1.0] * (whole - 1) + [need - (whole - 1)])
        return chosen, shares

    # --- changes -------------------------------------------------------------------------------

    def allocate(self, shape: Shape, row: ResourceRow, need: Need | None = None) -> Grant:
        """Takes the resources (the caller checked first; recovery after a restart may not, and
        then the worker shows as over-committed until its tasks end)."""
        hw = self.hardware
        if need is None:
            need = self.need(shape, row)
        threads = need.threads
        indices: tuple[int, ...] = ()
        shares: tuple[float, ...] = ()
        if need.gpu:
            picked = self._pick_gpus(need.gpu)
            if picked is None:  # forced (recovery): take the least used device
                least = min(range(len(self.gpu_used)), key=lambda i: self.gpu_used[i])
                picked = ((least,), (min(1.0, need.gpu),))
            indices, shares = picked
            for i, share in zip(indices, shares, strict=True):
                self.gpu_used[i] += share
        self.used_min += row.min_memory
        self.used_max += row.max_memory
        self.cpu_used += threads
        if shape[0] in POST_TASKS:
            self.post_min += row.min_memory
            self.post_max += row.max_memory
            self.post_cpu += threads
        self.running[shape] += 1
        self._bases.setdefault(shape[0], Counter())[row.base_min_memory] += 1
        self._recount_base(shape[0])
        ordinals = tuple(hw.gpu_ordinals[i] for i in indices)
        return Grant(shape, row, threads, ordinals, shares)

    def release(self, grant: Grant) -> None:
        row = grant.row
        self.used_min -= row.min_memory
        self.used_max -= row.max_memory
        self.cpu_used -= grant.threads
        if grant.shape[0] in POST_TASKS:
            self.post_min -= row.min_memory
            self.post_max -= row.max_memory
            self.post_cpu -= grant.threads
        self.running[grant.shape] -= 1
        if self.running[grant.shape] <= 0:
            del self.running[grant.shape]
        bases = self._bases.get(grant.shape[0])
        if bases is not None:
            bases[row.base_min_memory] -= 1
            if bases[row.base_min_memory] <= 0:
                del bases[row.base_min_memory]
            if not bases:
                del self._bases[grant.shape[0]]
        self._recount_base(grant.shape[0])
        for ordinal, share in zip(grant.gpu_ordinals, grant.gpu_shares, strict=True):
            i = self.hardware.gpu_ordinals.index(ordinal)
            self.gpu_used[i] = max(0.0, self.gpu_used[i] - share)

    def _recount_base(self, task_type: TaskType) -> None:
        """The base a task type holds changed (only that type's entry needs recomputing)."""
        bases = self._bases.get(task_type)
        held = max(bases) if bases else 0
        self.used_base += held - self._held.get(task_type, 0)
        if held:
            self._held[task_type] = held
        else:
            self._held.pop(task_type, None)

    # --- views ---------------------------------------------------------------------------------

    def utilization(self) -> float:
        """The busiest of CPU, RAM, RAM+swap and GPU, 0..1 (more when over-committed): the
        reference's measure plus GPUs, so that GPU work spreads over GPU workers."""
        hw = self.hardware
        cpu = self.cpu_used / hw.cpus if hw.cpus else 0.0
        held = hw.mem_reserved + self.used_base
        mem = (held + self.used_min) / hw.mem_physical if hw.mem_physical else 0.0
        vmem_total = hw.mem_physical + hw.mem_swap
        vmem = (held + self.used_max) / vmem_total if vmem_total else 0.0
        gpu = sum(self.gpu_used) / len(self.gpu_used) if self.gpu_used else 0.0
        return max(cpu, mem, vmem, gpu)

    def tasks(self) -> int:
        return sum(self.running.values())
