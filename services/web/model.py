"""The plain values the dashboard shows, as the gRPC edge (clients.py) converts them from the
manager's and the index's replies: enums become short lower-case words (`pc1`, `finalized`),
timestamps Unix seconds (None when unset), so the view modules need no protobuf."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SectorKey:
    miner: int
    number: int

    def __str__(self) -> str:
        return f"{self.miner}/{self.number}"


@dataclass(frozen=True)
class WorkerState:
    enabled: bool
    cordoned: bool
    draining: bool
    connected: bool


@dataclass(frozen=True)
class Gpu:
    ordinal: int
    name: str
    # Fraction of the GPU running tasks take (0..1).
    used: float


@dataclass(frozen=True)
class CapUsage:
    task: str
    # '' when the cap covers every sector size.
    size: str
    running: int
    cap: int | None


@dataclass(frozen=True)
class Worker:
    worker_id: str
    name: str
    hostname: str
    address: str
    state: WorkerState
    last_heartbeat: float | None
    cpus: int
    cpu_used: int
    mem_physical: int
    mem_swap: int
    mem_reserved: int
    mem_used_min: int
    mem_used_max: int
    gpus: tuple[Gpu, ...]
    caps: tuple[CapUsage, ...]
    tasks_running: int
    tasks_preparing: int
    tasks_assigned: int
    task_types: tuple[str, ...]
    # (storage id, local path) of the worker's paths.
    paths: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Job:
    call_id: str
    sector: SectorKey
    task: str
    state: str
    worker_id: str
    hostname: str
    queued_at: float | None
    started_at: float | None
    attempt: int


@dataclass(frozen=True)
class Rejection:
    worker_id: str
    reason: str
    detail: str


@dataclass(frozen=True)
class QueuedRequest:
    call_id: str
    sector: SectorKey
    task: str
    priority: int
    queued_at: float | None
    reason: str
    unsatisfiable: bool
    rejections: tuple[Rejection, ...]


@dataclass(frozen=True)
class SchedWorker:
    worker_id: str
    hostname: str
    state: WorkerState
    assigned: int
    running: int


@dataclass(frozen=True)
class SchedDiag:
    requests: tuple[QueuedRequest, ...]
    workers: tuple[SchedWorker, ...]
    awaiting_return: tuple[str, ...]
    returned_work: int


@dataclass(frozen=True)
class StoragePath:
    storage_id: str
    urls: tuple[str, ...]
    weight: int
    can_seal: bool
    can_store: bool
    groups: tuple[str, ...]
    capacity: int
    available: int
    fs_available: int
    reserved: int
    max_storage: int
    used: int
    healthy: bool
    health_error: str
    last_heartbeat: float | None
    # (file type, count) for the types with files.
    file_counts: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Piece:
    size: int
    cid: str


@dataclass(frozen=True)
class Step:
    step: str
    done_at: float | None


@dataclass(frozen=True)
class SectorStatus:
    sector: SectorKey
    proof: str
    # The seal proof's number, for the provability check.
    proof_value: int
    state: str
    generation: int
    pieces: tuple[Piece, ...]
    steps: tuple[Step, ...]
    last_error: str
    jobs: tuple[Job, ...]
    created_at: float | None
    updated_at: float | None


@dataclass(frozen=True)
class FileLocation:
    storage_id: str
    urls: tuple[str, ...]
    # File types found on that path.
    types: tuple[str, ...]
    primary: bool
    can_seal: bool
    can_store: bool


@dataclass(frozen=True)
class TaskRun:
    call_id: str
    sector: SectorKey
    task: str
    attempt: int
    worker_id: str
    hostname: str
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    outcome: str
    error_code: str
    error: str


@dataclass(frozen=True)
class HistoryFilter:
    """TaskHistory's filters as the history page's query string gives them."""

    sector: SectorKey | None = None
    failed_only: bool = False
    # A task type's short name (`PC1`), or None for any.
    task: str | None = None
    worker_id: str = ""
    since: float | None = None
