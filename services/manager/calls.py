"""The worker task calls, as data: for each, its call type, task type, the worker RPC that
dispatches it, and the Return RPC and outcome field it comes back with.

A work's parameters are the worker request message without its `assignment` (deterministically
serialized): exactly what will run, so hashing them gives the work id, and a manager that
restarted can dispatch the work again from its database row alone. The messages themselves
(which request each call sends, how its result is encoded) are the edge's: worker_link.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.vocabulary import CallType as CallType
from services.manager.tasks import TaskType


@dataclass(frozen=True)
class CallSpec:
    method: str
    call_type: CallType
    task_type: TaskType
    # The worker RPC (None: dispatched by custom code, e.g. AddPiece's stream).
    worker_rpc: str | None
    # The oneof field of Return<method>Request / StoredCallResult carrying a success.
    result_field: str

    @property
    def return_rpc(self) -> str:
        return f"Return{self.method}"


C = CallType
SPECS: tuple[CallSpec, ...] = (
    CallSpec("AddPiece", C.ADD_PIECE, TaskType.ADD_PIECE, None, "piece"),
    CallSpec("SealPreCommit1", C.SEAL_PRE_COMMIT_1, TaskType.PRE_COMMIT_1, "SealPreCommit1", "pre_commit1_output"),
    CallSpec("SealPreCommit2", C.SEAL_PRE_COMMIT_2, TaskType.PRE_COMMIT_2, "SealPreCommit2", "commitments"),
    CallSpec("SealCommit1", C.SEAL_COMMIT_1, TaskType.COMMIT_1, "SealCommit1", "commit1_output"),
    CallSpec("SealCommit2", C.SEAL_COMMIT_2, TaskType.COMMIT_2, "SealCommit2", "proof"),
    CallSpec("FinalizeSector", C.FINALIZE_SECTOR, TaskType.FINALIZE, "FinalizeSector", "done"),
    CallSpec("ReleaseUnsealed", C.RELEASE_UNSEALED, TaskType.FINALIZE, "ReleaseUnsealed", "done"),
    CallSpec("MoveStorage", C.MOVE_STORAGE, TaskType.FETCH, "MoveStorage", "done"),
    CallSpec("UnsealPiece", C.UNSEAL_PIECE, TaskType.UNSEAL, "UnsealPiece", "done"),
    CallSpec("Fetch", C.FETCH, TaskType.FETCH, "Fetch", "done"),
)
BY_METHOD: dict[str, CallSpec] = {s.method: s for s in SPECS}
BY_CALL_TYPE: dict[int, CallSpec] = {s.call_type: s for s in SPECS}
