"""A worker's change to one row of the scheduler's resource table (`PC1_32G_MAX_CONCURRENT=4`
and the like): parsed by the worker from its environment (services/worker/resources.py), sent
in `WorkerInfo.resource_overrides`, applied by the manager to its table
(services/manager/resources.py). One type on both sides of the wire, so a field added here is
added everywhere."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from services.common.vocabulary import SealProof, TaskType


@dataclass(frozen=True)
class ResourceOverride:
    """For one task type and one sector size (`proof`; None: every size), the fields the
    operator set; None leaves the table's value."""

    task_type: TaskType
    proof: SealProof | None = None
    min_memory: int | None = None
    max_memory: int | None = None
    max_parallelism: int | None = None
    max_parallelism_gpu: int | None = None
    gpu_utilization: float | None = None
    base_min_memory: int | None = None
    max_concurrent: int | None = None

    def set_fields(self) -> dict[str, Any]:
        """The fields the operator set, by name (the names are ResourceRow's too, so the
        manager passes them to `dataclasses.replace`)."""
        return {name: value for name in OVERRIDE_FIELDS if (value := getattr(self, name)) is not None}


OVERRIDE_FIELDS = tuple(f.name for f in fields(ResourceOverride) if f.name not in ("task_type", "proof"))
