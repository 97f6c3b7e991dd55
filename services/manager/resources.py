"""The resource table: what one task of a type and sector size needs on a worker.

The numbers are the reference's (`extern/sector-storage/resources.go`, Lotus d7076778e2; see
`shared/spec/lotus-detail.md` §2.2), kept as data in one place. The boolean CanGPU of that
version is expressed as the later fractional `gpu_utilization` (1.0 for exactly those rows).
Each worker may override any field of any row (per sector size, or for every size) through
`WorkerInfo.resource_overrides`; `ResourceTable.with_overrides` applies them.

PoSt rows are ours: the reference (2021) ran PoSt inside the miner process. Here a PoSt task is
only the vanilla-proof step (reading the challenged leaves and their tree paths) on a worker that
holds the sector; the manager assembles the proof. That step is light, so its row is small and
never waits for a GPU, and it can run next to sealing work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from services.common.resource_override import ResourceOverride
from services.common.vocabulary import SECTOR_SIZES, SIZE_LABELS, GiB, KiB, MiB, SealProof
from services.manager.tasks import TaskType

__all__ = ["SECTOR_SIZES", "SIZE_LABELS", "GiB", "KiB", "MiB", "SealProof"]


# Share of a worker's CPUs a multithreaded task (max_parallelism -1) takes: the reference keeps
# 8 % free for the system (`ParallelNum/ParallelDenom` = 92/100).
PARALLEL_NUM = 92
PARALLEL_DENOM = 100


@dataclass(frozen=True)
class ResourceRow:
    """One row of the table. Memory in bytes."""

    # Must be in RAM.
    min_memory: int
    # RAM + swap the task may use.
    max_memory: int
    # Threads: >= 1 that many; -1 all but 8 % of the CPUs (at least 1); 0 none.
    max_parallelism: int
    # Base memory shared by every concurrent task of the same type (counted once per worker).
    base_min_memory: int
    # Fraction of one GPU: 0 none, 1.0 one whole GPU, 0.5 two tasks share one; >1 several GPUs.
    gpu_utilization: float = 0.0
    # Threads when the task runs on a GPU; None = max_parallelism.
    max_parallelism_gpu: int | None = None
    # At most this many tasks of the type and size at once on a worker; None = no cap.
    max_concurrent: int | None = None

    def threads(self, cpus: int, on_gpu: bool) -> int:
        """CPU threads the task occupies on a worker with `cpus` logical CPUs."""
        wanted = self.max_parallelism_gpu if on_gpu and self.max_parallelism_gpu is not None else self.max_parallelism
        if wanted >= 0:
            return wanted
        return max(1, cpus * PARALLEL_NUM // PARALLEL_DENOM) if cpus > 0 else 1


Shape = tuple[TaskType, SealProof]
"""A task type and a sector size: the unit the table, the caps and the scheduler's lanes use."""

ZERO = ResourceRow(0, 0, 0, 0)


def _by_size(rows: Mapping[SealProof, ResourceRow]) -> dict[SealProof, ResourceRow]:
    missing = set(SealProof) - set(rows)
    if missing:
        raise ValueError(f"resource rows missing sizes {sorted(missing)}")
    return dict(rows)


def _small(size: int, threads: int, gpu: float = 0.0) -> ResourceRow:
    """The 2 KiB / 8 MiB rows: every memory figure equals the sector size."""
    return ResourceRow(size, size, threads, size, gpu)


_TABLE: dict[TaskType, dict[SealProof, ResourceRow]] = {
    TaskType.ADD_PIECE: _by_size(
        {
            SealProof.STACKED_DRG_2KIB_V1_1: _small(2 * KiB, 1),
            SealProof.STACKED_DRG_8MIB_V1_1: _small(8 * MiB, 1),
            SealProof.STACKED_DRG_512MIB_V1_1: ResourceRow(1 * GiB, 1 * GiB, 1, 1 * GiB),
            SealProof.STACKED_DRG_32GIB_V1_1: ResourceRow(4 * GiB, 4 * GiB, 1, 1 * GiB),
            SealProof.STACKED_DRG_64GIB_V1_1: ResourceRow(8 * GiB, 8 * GiB, 1, 1 * GiB),
        }
    ),
    TaskType.PRE_COMMIT_1: _by_size(
        {
            SealProof.STACKED_DRG_2KIB_V1_1: _small(2 * KiB, 1),
            SealProof.STACKED_DRG_8MIB_V1_1: _small(8 * MiB, 1),
            SealProof.STACKED_DRG_512MIB_V1_1: ResourceRow(768 * MiB, 1 * GiB, 1, 1 * MiB),
            SealProof.STACKED_DRG_32GIB_V1_1: ResourceRow(56 * GiB, 64 * GiB, 1, 10 * MiB),
            SealProof.STACKED_DRG_64GIB_V1_1: ResourceRow(112 * GiB, 128 * GiB, 1, 10 * MiB),
        }
    ),
    TaskType.PRE_COMMIT_2: _by_size(
        {
            SealProof.STACKED_DRG_2KIB_V1_1: _small(2 * KiB, -1),
            SealProof.STACKED_DRG_8MIB_V1_1: _small(8 * MiB, -1),
            SealProof.STACKED_DRG_512MIB_V1_1: ResourceRow(1 * GiB, 3 << 29, -1, 1 * GiB),
            SealProof.STACKED_DRG_32GIB_V1_1: ResourceRow(15 * GiB, 15 * GiB, -1, 1 * GiB, 1.0),
            SealProof.STACKED_DRG_64GIB_V1_1: ResourceRow(30 * GiB, 30 * GiB, -1, 1 * GiB, 1.0),
        }
    ),
    TaskType.COMMIT_1: _by_size(
        {
            SealProof.STACKED_DRG_2KIB_V1_1: _small(2 * KiB, 0),
            SealProof.STACKED_DRG_8MIB_V1_1: _small(8 * MiB, 0),
            SealProof.STACKED_DRG_512MIB_V1_1: ResourceRow(1 * GiB, 1 * GiB, 0, 1 * GiB),
            SealProof.STACKED_DRG_32GIB_V1_1: ResourceRow(1 * GiB, 1 * GiB, 0, 1 * GiB),
            SealProof.STACKED_DRG_64GIB_V1_1: ResourceRow(1 * GiB, 1 * GiB, 0, 1 * GiB),
        }
    ),
    TaskType.COMMIT_2: _by_size(
        {
            SealProof.STACKED_DRG_2KIB_V1_1: _small(2 * KiB, 1, 1.0),
            SealProof.STACKED_DRG_8MIB_V1_1: _small(8 * MiB, 1, 1.0),
            SealProof.STACKED_DRG_512MIB_V1_1: ResourceRow(1 * GiB, 3 << 29, 1, 10 * GiB, 1.0),
            SealProof.STACKED_DRG_32GIB_V1_1: ResourceRow(30 * GiB, 150 * GiB, -1, 32 * GiB, 1.0),
            SealProof.STACKED_DRG_64GIB_V1_1: ResourceRow(60 * GiB, 190 * GiB, -1, 64 * GiB, 1.0),
        }
    ),
    # FIN is not in the reference table: an all-zero row, so it always fits.
    TaskType.FINALIZE: {p: ZERO for p in SealProof},
    TaskType.FETCH: {p: ResourceRow(1 * MiB, 1 * MiB, 0, 0) for p in SealProof},
    TaskType.GENERATE_WINDOW_POST: _by_size(
        {
            SealProof.STACKED_DRG_2KIB_V1_1: _small(2 * KiB, 1),
            SealProof.STACKED_DRG_8MIB_V1_1: _small(8 * MiB, 1),
            SealProof.STACKED_DRG_512MIB_V1_1: ResourceRow(64 * MiB, 64 * MiB, 1, 0),
            SealProof.STACKED_DRG_32GIB_V1_1: ResourceRow(1 * GiB, 1 * GiB, 1, 0),
            SealProof.STACKED_DRG_64GIB_V1_1: ResourceRow(1 * GiB, 1 * GiB, 1, 0),
        }
    ),
}
# UNS uses the PC1 row; Winning PoSt the Window PoSt row (it proves fewer sectors).
_TABLE[TaskType.UNSEAL] = dict(_TABLE[TaskType.PRE_COMMIT_1])
_TABLE[TaskType.GENERATE_WINNING_POST] = dict(_TABLE[TaskType.GENERATE_WINDOW_POST])

DEFAULT_ROWS: dict[Shape, ResourceRow] = {(tt, p): row for tt, rows in _TABLE.items() for p, row in rows.items()}


class ResourceTable:
    """The rows one worker is scheduled with: the defaults plus that worker's overrides.

    Overrides for every size apply first, then size-specific ones, so `PC1_32G_MAX_CONCURRENT`
    beats `PC1_MAX_CONCURRENT` as in later Lotus.
    """

    __slots__ = ("_rows",)

    def __init__(
        self, rows: Mapping[Shape, ResourceRow] | None = None, overrides: Iterable[ResourceOverride] = ()
    ) -> None:
        table = dict(DEFAULT_ROWS if rows is None else rows)
        ordered = sorted(overrides, key=lambda o: o.proof is not None)
        for override in ordered:
            proofs = list(SealProof) if override.proof is None else [override.proof]
            for proof in proofs:
                key = (override.task_type, proof)
                table[key] = replace(table.get(key, ZERO), **override.set_fields())
        self._rows = table

    def row(self, shape: Shape) -> ResourceRow:
        return self._rows.get(shape, ZERO)

    def items(self) -> Iterable[tuple[Shape, ResourceRow]]:
        return self._rows.items()


DEFAULT_TABLE = ResourceTable()
