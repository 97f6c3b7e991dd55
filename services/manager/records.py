"""The manager's durable records: one per logical work, one per call (dispatch attempt).

A *work* is what a client asked for (SealPreCommit1 of sector 5 with these inputs), identified
by the work id, a hash of the method and its parameters, so an identical request finds it again.
A *call* is one attempt to run that work on a worker, identified by the CallId the worker
returns its outcome with. A work has one current call; a retry creates the next one. Calls are
never deleted with their work (until retention), so they are also the task history.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class WorkStatus(StrEnum):
    # Waiting for a worker (in the queue, or in a retry back-off).
    QUEUED = "queued"
    # Its current call has been dispatched to a worker (or is being dispatched).
    RUNNING = "running"
    # The outcome (result or final error) is stored; no caller has collected it yet.
    DONE = "done"
    # A caller collected the outcome; kept only for listings until retention.
    DELIVERED = "delivered"


class CallStatus(StrEnum):
    QUEUED = "queued"
    # Written before the dispatch RPC: the worker may or may not have it.
    DISPATCHING = "dispatching"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    TIMED_OUT = "timed_out"
    # Its worker was lost or restarted; the work went back to the queue.
    REQUEUED = "requeued"
    # Never dispatched, and no longer wanted (a late result finished the work first).
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self not in (CallStatus.QUEUED, CallStatus.DISPATCHING, CallStatus.RUNNING)

    @property
    def live(self) -> bool:
        return not self.final


class OutcomeKind(StrEnum):
    NONE = ""
    RESULT = "result"
    ERROR = "error"


@dataclass
class WorkRecord:
    work_id: str
    method: str
    task_type: int
    miner: int
    number: int
    seal_proof: int
    priority: int
    # The request message (deterministically serialized) the work was created from: enough to
    # dispatch it again after a manager restart.
    params: bytes
    status: WorkStatus = WorkStatus.QUEUED
    attempt: int = 1
    call_id: str = ""
    outcome: OutcomeKind = OutcomeKind.NONE
    # The typed result, serialized (the Return message's outcome field, see dispatch.py).
    result: bytes = b""
    error_code: int = 0
    error_message: str = ""
    # False for work that cannot be asked for again (AddPiece: its data was a stream).
    dedup: bool = True
    # Where it may run (selectors.selector_to_json).
    selector: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    # Earliest time the current call may be scheduled (retry back-off).
    not_before: float = 0.0
    # The sector's lifecycle generation the work belongs to (lifecycle.py); 0 for work on a
    # sector the lifecycle has no record of (sealed before it existed).
    generation: int = 0


@dataclass
class CallRecord:
    call_id: str
    work_id: str
    method: str
    task_type: int
    miner: int
    number: int
    seal_proof: int
    attempt: int
    status: CallStatus = CallStatus.QUEUED
    priority: int = 0
    worker_id: str = ""
    hostname: str = ""
    # The worker process session the call was dispatched to.
    session_id: str = ""
    gpu_ordinals: tuple[int, ...] = field(default_factory=tuple)
    threads: int = 0
    queued_at: float = 0.0
    dispatched_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    error_code: int = 0
    error_message: str = ""


def new_call_id() -> str:
    return str(uuid.uuid4())


def work_id_for(method: str, params: bytes) -> str:
    """The work id: method name plus the SHA-256 of the method and the serialized parameters
    (priority excluded by the caller), so the same request maps to the same id across restarts
    and clients."""
    digest = hashlib.sha256(method.encode() + b"\x00" + params).hexdigest()
    return f"{method}:{digest}"


def call_string(miner: int, number: int, call_id: str) -> str:
    """The CallId's string form `<miner>-<number>-<uuid>`."""
    return f"{miner}-{number}-{call_id}"
