"""Sealing steps written straight into a manager's database, as its call tracker records finished
ones: for tests that start a sector mid-pipeline without running the steps before it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from google.protobuf.message import Message

from services.common.db import Tx
from services.manager.records import OutcomeKind, WorkRecord, WorkStatus
from services.manager.store import ManagerStore


async def record_steps(
    store: ManagerStore,
    miner: int,
    number: int,
    seal_proof: int,
    generation: int,
    steps: Sequence[tuple[str, Message, bytes]],
) -> None:
    """Stores each (method, worker request, result) as a finished work, so the sector's
    lifecycle records the step, then drops the work row: the step stays recorded, but the
    stand-in work is no job to list."""
    now = time.time()
    for method, params, result in steps:
        work = WorkRecord(
            work_id=f"seed:{method}:{uuid.uuid4()}",
            method=method,
            task_type=0,
            miner=miner,
            number=number,
            seal_proof=seal_proof,
            priority=0,
            params=params.SerializeToString(deterministic=True),
            status=WorkStatus.DONE,
            outcome=OutcomeKind.RESULT,
            result=result,
            generation=generation,
            created_at=now,
            updated_at=now,
        )
        await store.save(work)

        def forget(tx: Tx, work_id: str = work.work_id) -> None:
            tx.execute("DELETE FROM manager_works WHERE work_id = ?", (work_id,))

        await store.db.run(forget)
