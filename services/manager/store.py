"""The manager's durable state on the shared data-access layer (`services/common/db`): works,
calls, and the operator state of workers. SQLite by default, PostgreSQL as an option.

Every change is one transaction that upserts whole rows; the tracker decides what the rows say.
A work's params and result are kept as the worker messages' serialized bytes (calls.py); what the
store reads in them (a finished step's inputs, PC2's commitments) the edge decodes for it: the
`WorkCodec` it is given (worker_link.CODEC).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.common.db import Database, Migration, Mode, Tx, apply_migrations
from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.manager import lifecycle
from services.manager.records import CallRecord, CallStatus, OutcomeKind, WorkRecord, WorkStatus

COMPONENT = "manager"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "works, calls, worker operator state",
        (
            """CREATE TABLE manager_works (
                work_id TEXT NOT NULL PRIMARY KEY,
                method TEXT NOT NULL,
                task_type INTEGER NOT NULL,
                miner BIGINT NOT NULL,
                number BIGINT NOT NULL,
                seal_proof INTEGER NOT NULL,
                priority INTEGER NOT NULL,
                params BYTEA NOT NULL,
                status TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                call_id TEXT NOT NULL,
                outcome TEXT NOT NULL,
                result BYTEA NOT NULL,
                error_code INTEGER NOT NULL,
                error_message TEXT NOT NULL,
                dedup BOOLEAN NOT NULL,
                selector TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                not_before DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX manager_works_by_status ON manager_works (status, updated_at)",
            """CREATE TABLE manager_calls (
                call_id TEXT NOT NULL PRIMARY KEY,
                work_id TEXT NOT NULL,
                method TEXT NOT NULL,
                task_type INTEGER NOT NULL,
                miner BIGINT NOT NULL,
                number BIGINT NOT NULL,
                seal_proof INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                status TEXT NOT NULL,
                priority INTEGER NOT NULL,
                worker_id TEXT NOT NULL,
                hostname TEXT NOT NULL,
                session_id TEXT NOT NULL,
                gpu_ordinals TEXT NOT NULL,
                threads INTEGER NOT NULL,
                queued_at DOUBLE PRECISION NOT NULL,
                dispatched_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION NOT NULL,
                finished_at DOUBLE PRECISION NOT NULL,
                error_code INTEGER NOT NULL,
                error_message TEXT NOT NULL
            )""",
            "CREATE INDEX manager_calls_by_work ON manager_calls (work_id)",
            "CREATE INDEX manager_calls_by_status ON manager_calls (status)",
            "CREATE INDEX manager_calls_by_sector ON manager_calls (miner, number, queued_at)",
            """CREATE TABLE manager_worker_state (
                worker_id TEXT NOT NULL PRIMARY KEY,
                enabled BOOLEAN NOT NULL,
                cordoned BOOLEAN NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "sector commitments (SealPreCommit2 results)",
        (
            """CREATE TABLE manager_sector_commitments (
                miner BIGINT NOT NULL,
                number BIGINT NOT NULL,
                proof_type INTEGER NOT NULL,
                comm_r BYTEA NOT NULL,
                comm_d BYTEA NOT NULL,
                recorded_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (miner, number)
            )""",
        ),
    ),
    Migration(
        3,
        "sector lifecycle: one record per sector, its steps, the generation of each work",
        (
            "ALTER TABLE manager_works ADD COLUMN generation BIGINT NOT NULL DEFAULT 0",
            """CREATE TABLE manager_sectors (
                miner BIGINT NOT NULL,
                number BIGINT NOT NULL,
                proof_type INTEGER NOT NULL,
                generation BIGINT NOT NULL,
                removed BOOLEAN NOT NULL,
                pieces BYTEA NOT NULL,
                last_error TEXT NOT NULL,
                last_error_step TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (miner, number)
            )""",
            """CREATE TABLE manager_sector_steps (
                miner BIGINT NOT NULL,
                number BIGINT NOT NULL,
                generation BIGINT NOT NULL,
                step TEXT NOT NULL,
                input_digest BYTEA NOT NULL,
                output BYTEA NOT NULL,
                done_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (miner, number, generation, step)
            )""",
        ),
    ),
    Migration(
        4,
        "leadership: the lease one manager holds to schedule and write (services/manager/leadership.py)",
        (
            """CREATE TABLE manager_leadership (
                id INTEGER NOT NULL PRIMARY KEY,
                holder TEXT NOT NULL,
                address TEXT NOT NULL,
                epoch BIGINT NOT NULL,
                acquired_at DOUBLE PRECISION NOT NULL,
                renewed_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                failovers BIGINT NOT NULL
            )""",
            # The one row exists from the start, so candidates only ever UPDATE it under a row
            # lock (two first INSERTs would race on the key instead).
            "INSERT INTO manager_leadership VALUES (1, '', '', 0, 0, 0, 0, 0)",
        ),
    ),
    Migration(
        5,
        "PoSt vanilla proofs as they arrive, so a retried PoSt asks workers only for the rest (post.py)",
        (
            # comm_r is in the key: a sector removed and sealed again is a new sector to prove.
            """CREATE TABLE manager_vanilla_proofs (
                proof_type INTEGER NOT NULL,
                randomness BYTEA NOT NULL,
                miner BIGINT NOT NULL,
                number BIGINT NOT NULL,
                comm_r BYTEA NOT NULL,
                proof BYTEA NOT NULL,
                stored_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (proof_type, randomness, miner, number, comm_r)
            )""",
            "CREATE INDEX manager_vanilla_proofs_by_age ON manager_vanilla_proofs (stored_at)",
        ),
    ),
)

_WORK_COLUMNS = (
    "work_id",
    "method",
    "task_type",
    "miner",
    "number",
    "seal_proof",
    "priority",
    "params",
    "status",
    "attempt",
    "call_id",
    "outcome",
    "result",
    "error_code",
    "error_message",
    "dedup",
    "selector",
    "created_at",
    "updated_at",
    "not_before",
    "generation",
)
_CALL_COLUMNS = (
    "call_id",
    "work_id",
    "method",
    "task_type",
    "miner",
    "number",
    "seal_proof",
    "attempt",
    "status",
    "priority",
    "worker_id",
    "hostname",
    "session_id",
    "gpu_ordinals",
    "threads",
    "queued_at",
    "dispatched_at",
    "started_at",
    "finished_at",
    "error_code",
    "error_message",
)


def _upsert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[1:])
    return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT ({columns[0]}) DO UPDATE SET {updates}"


_UPSERT_WORK = _upsert_sql("manager_works", _WORK_COLUMNS)
_UPSERT_CALL = _upsert_sql("manager_calls", _CALL_COLUMNS)
_SELECT_WORK = f"SELECT {', '.join(_WORK_COLUMNS)} FROM manager_works"
_SELECT_CALL = f"SELECT {', '.join(_CALL_COLUMNS)} FROM manager_calls"
_UPSERT_COMMITMENTS = (
    "INSERT INTO manager_sector_commitments (miner, number, proof_type, comm_r, comm_d, recorded_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (miner, number) DO UPDATE SET proof_type = excluded.proof_type,"
    " comm_r = excluded.comm_r, comm_d = excluded.comm_d, recorded_at = excluded.recorded_at"
)
PRE_COMMIT_2 = "SealPreCommit2"


class WorkCodec(Protocol):
    """Reads what the store needs from a work's stored params and result (the worker messages'
    serialized form, which only the edge knows: worker_link.CODEC). Each raises ValueError for
    bytes it cannot read."""

    def added_piece(self, params: bytes, result: bytes) -> tuple[tuple[int, ...], lifecycle.PieceRef]:
        """An AddPiece's existing piece sizes and the piece it added."""
        ...

    def pre_commit1(self, params: bytes) -> tuple[bytes, tuple[lifecycle.PieceRef, ...]]:
        """A PC1's ticket and pieces."""
        ...

    def pre_commit2(self, params: bytes) -> bytes:
        """A PC2's input: the PC1 output."""
        ...

    def commit1(self, params: bytes) -> tuple[bytes, bytes, tuple[lifecycle.PieceRef, ...], bytes, bytes]:
        """A C1's ticket, seed, pieces, CommR and CommD."""
        ...

    def commit2(self, params: bytes) -> bytes:
        """A C2's input: the C1 output."""
        ...

    def finalize(self, params: bytes) -> tuple[tuple[int, int], ...]:
        """A FinalizeSector's unsealed ranges to keep, as (offset, size)."""
        ...

    def commitments(self, result: bytes) -> tuple[bytes, bytes]:
        """A PC2 result's (CommR, CommD)."""
        ...


@dataclass(frozen=True)
class SectorCommitmentsRecord:
    """A sector's commitments, as its last successful SealPreCommit2 returned them."""

    miner: int
    number: int
    proof_type: int
    comm_r: bytes
    comm_d: bytes
    recorded_at: float


def _commitments_row(w: WorkRecord, codec: WorkCodec) -> tuple[Any, ...] | None:
    """The commitments row a work's outcome records: only a SealPreCommit2 that just succeeded
    (status DONE with a result; the later DELIVERED save writes nothing again)."""
    if w.method != PRE_COMMIT_2 or w.status is not WorkStatus.DONE or w.outcome is not OutcomeKind.RESULT:
        return None
    try:
        comm_r, comm_d = codec.commitments(w.result)
    except ValueError:
        return None
    if len(comm_r) != 32 or len(comm_d) != 32:
        return None
    return (w.miner, w.number, w.seal_proof, comm_r, comm_d, w.updated_at or time.time())


# --- the sector lifecycle ------------------------------------------------------------------------

_FINAL_ERRORS_NOT_RECORDED = (int(ErrorCode.ABORTED),)


def lifecycle_effect(w: WorkRecord, codec: WorkCodec) -> lifecycle.Effect | None:
    """What a work that just finished records in its sector's lifecycle (lifecycle.apply), from
    its parameters and result alone; None for works that record nothing."""
    if w.status is not WorkStatus.DONE:
        return None
    step = lifecycle.STEP_OF_METHOD.get(w.method)
    if w.method != "AddPiece" and step is None:
        return None
    if w.outcome is OutcomeKind.ERROR:
        if w.error_code in _FINAL_ERRORS_NOT_RECORDED:
            return None
        return lifecycle.StepFailed(step.value if step is not None else "add_piece", w.error_message)
    if w.outcome is not OutcomeKind.RESULT:
        return None
    try:
        return _step_effect(w, step, codec)
    except ValueError:
        return None


def _step_effect(w: WorkRecord, step: lifecycle.Step | None, codec: WorkCodec) -> lifecycle.Effect | None:
    if step is None:
        existing, piece = codec.added_piece(w.params, w.result)
        return lifecycle.PieceAdded(existing, piece)
    if step is lifecycle.Step.PRE_COMMIT_1:
        ticket, pieces = codec.pre_commit1(w.params)
        digest = lifecycle.digest_pc1(ticket, pieces)
    elif step is lifecycle.Step.PRE_COMMIT_2:
        digest = lifecycle.digest_blob(step, codec.pre_commit2(w.params))
    elif step is lifecycle.Step.COMMIT_1:
        ticket, seed, pieces, comm_r, comm_d = codec.commit1(w.params)
        digest = lifecycle.digest_c1(ticket, seed, pieces, comm_r, comm_d)
    elif step is lifecycle.Step.COMMIT_2:
        digest = lifecycle.digest_blob(step, codec.commit2(w.params))
    elif step is lifecycle.Step.FINALIZE:
        digest = lifecycle.digest_finalize(codec.finalize(w.params))
    else:
        digest = lifecycle.digest_blob(step, w.params)
    return lifecycle.StepDone(step, digest, w.result)


def _pieces_of(blob: bytes) -> tuple[lifecycle.PieceRef, ...]:
    return tuple(
        lifecycle.PieceRef(int.from_bytes(blob[i : i + 8], "big"), bytes(blob[i + 8 : i + 40]))
        for i in range(0, len(blob), 40)
    )


_SELECT_SECTOR = (
    "SELECT miner, number, proof_type, generation, removed, pieces, last_error, last_error_step, created_at, updated_at"
    " FROM manager_sectors WHERE miner = ? AND number = ?"
)
_UPSERT_SECTOR = (
    "INSERT INTO manager_sectors (miner, number, proof_type, generation, removed, pieces, last_error, last_error_step,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (miner, number) DO UPDATE SET"
    " proof_type = excluded.proof_type, generation = excluded.generation, removed = excluded.removed,"
    " pieces = excluded.pieces, last_error = excluded.last_error, last_error_step = excluded.last_error_step,"
    " updated_at = excluded.updated_at"
)


def _read_sector(tx: Tx, miner: int, number: int) -> lifecycle.SectorRecord | None:
    r = tx.one(_SELECT_SECTOR, (miner, number))
    if r is None:
        return None
    record = lifecycle.SectorRecord(
        miner=int(r[0]),
        number=int(r[1]),
        proof_type=int(r[2]),
        generation=int(r[3]),
        removed=bool(r[4]),
        pieces=_pieces_of(bytes(r[5])),
        last_error=r[6],
        last_error_step=r[7],
        created_at=float(r[8]),
        updated_at=float(r[9]),
    )
    rows = tx.query(
        "SELECT step, input_digest, output, done_at FROM manager_sector_steps WHERE miner = ? AND number = ? AND generation = ?",
        (miner, number, record.generation),
    )
    for step, digest, output, done_at in rows:
        if step in lifecycle.Step._value2member_map_:
            s = lifecycle.Step(step)
            record.steps[s] = lifecycle.StepRecord(s, bytes(digest), bytes(output), float(done_at))
    return record


def _write_sector(tx: Tx, record: lifecycle.SectorRecord) -> None:
    tx.execute(
        _UPSERT_SECTOR,
        (
            record.miner,
            record.number,
            record.proof_type,
            record.generation,
            record.removed,
            lifecycle.pieces_bytes(record.pieces),
            record.last_error,
            record.last_error_step,
            record.created_at,
            record.updated_at,
        ),
    )


def _apply_effect(tx: Tx, w: WorkRecord, effect: lifecycle.Effect) -> None:
    record = _read_sector(tx, w.miner, w.number)
    if record is None:
        return  # a sector sealed before the lifecycle existed
    before = set(record.steps)
    if not lifecycle.apply(record, w.generation, effect, w.updated_at or time.time()):
        return
    _write_sector(tx, record)
    for step in set(record.steps) - before:
        done = record.steps[step]
        tx.execute(
            "INSERT INTO manager_sector_steps (miner, number, generation, step, input_digest, output, done_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (miner, number, generation, step) DO NOTHING",
            (record.miner, record.number, record.generation, step.value, done.input_digest, done.output, done.done_at),
        )


def _work_row(w: WorkRecord) -> tuple[Any, ...]:
    return (
        w.work_id,
        w.method,
        w.task_type,
        w.miner,
        w.number,
        w.seal_proof,
        w.priority,
        w.params,
        w.status.value,
        w.attempt,
        w.call_id,
        w.outcome.value,
        w.result,
        w.error_code,
        w.error_message,
        w.dedup,
        w.selector,
        w.created_at,
        w.updated_at,
        w.not_before,
        w.generation,
    )


def _work(row: Sequence[Any]) -> WorkRecord:
    return WorkRecord(
        work_id=row[0],
        method=row[1],
        task_type=int(row[2]),
        miner=int(row[3]),
        number=int(row[4]),
        seal_proof=int(row[5]),
        priority=int(row[6]),
        params=bytes(row[7]),
        status=WorkStatus(row[8]),
        attempt=int(row[9]),
        call_id=row[10],
        outcome=OutcomeKind(row[11]),
        result=bytes(row[12]),
        error_code=int(row[13]),
        error_message=row[14],
        dedup=bool(row[15]),
        selector=row[16],
        created_at=float(row[17]),
        updated_at=float(row[18]),
        not_before=float(row[19]),
        generation=int(row[20]),
    )


def _call_row(c: CallRecord) -> tuple[Any, ...]:
    return (
        c.call_id,
        c.work_id,
        c.method,
        c.task_type,
        c.miner,
        c.number,
        c.seal_proof,
        c.attempt,
        c.status.value,
        c.priority,
        c.worker_id,
        c.hostname,
        c.session_id,
        json.dumps(list(c.gpu_ordinals)),
        c.threads,
        c.queued_at,
        c.dispatched_at,
        c.started_at,
        c.finished_at,
        c.error_code,
        c.error_message,
    )


def _call(row: Sequence[Any]) -> CallRecord:
    return CallRecord(
        call_id=row[0],
        work_id=row[1],
        method=row[2],
        task_type=int(row[3]),
        miner=int(row[4]),
        number=int(row[5]),
        seal_proof=int(row[6]),
        attempt=int(row[7]),
        status=CallStatus(row[8]),
        priority=int(row[9]),
        worker_id=row[10],
        hostname=row[11],
        session_id=row[12],
        gpu_ordinals=tuple(json.loads(row[13])),
        threads=int(row[14]),
        queued_at=float(row[15]),
        dispatched_at=float(row[16]),
        started_at=float(row[17]),
        finished_at=float(row[18]),
        error_code=int(row[19]),
        error_message=row[20],
    )


_INSERT_VANILLA = (
    "INSERT INTO manager_vanilla_proofs (proof_type, randomness, miner, number, comm_r, proof, stored_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (proof_type, randomness, miner, number, comm_r) DO NOTHING"
)


@dataclass(frozen=True)
class WorkerOperatorState:
    worker_id: str
    enabled: bool = True
    cordoned: bool = False


class ManagerStore:
    """Works, calls and worker operator state in the manager's database."""

    def __init__(self, db: Database, codec: WorkCodec) -> None:
        self.db = db
        self.codec = codec

    def migrate(self) -> int:
        return apply_migrations(self.db, COMPONENT, MIGRATIONS)

    async def save(self, work: WorkRecord | None = None, calls: Sequence[CallRecord] = ()) -> None:
        """Upserts a work and calls in one transaction."""
        work_row = _work_row(work) if work is not None else None
        commitments_row = _commitments_row(work, self.codec) if work is not None else None
        effect = lifecycle_effect(work, self.codec) if work is not None else None
        call_rows = [_call_row(c) for c in calls]

        def run(tx: Tx) -> None:
            if work_row is not None:
                tx.execute(_UPSERT_WORK, work_row)
            if commitments_row is not None:
                tx.execute(_UPSERT_COMMITMENTS, commitments_row)
            if effect is not None and work is not None:
                _apply_effect(tx, work, effect)
            for row in call_rows:
                tx.execute(_UPSERT_CALL, row)

        await self.db.run(run)

    async def load_live(self) -> tuple[list[WorkRecord], list[CallRecord]]:
        """Works not yet delivered, and their current calls (what a restart resumes)."""

        def run(tx: Tx) -> tuple[list[WorkRecord], list[CallRecord]]:
            works = [_work(r) for r in tx.query(_SELECT_WORK + " WHERE status <> ?", (WorkStatus.DELIVERED.value,))]
            calls = [
                _call(r)
                for r in tx.query(
                    _SELECT_CALL + " WHERE call_id IN (SELECT call_id FROM manager_works WHERE status <> ?)",
                    (WorkStatus.DELIVERED.value,),
                )
            ]
            return works, calls

        return await self.db.run(run, Mode.READ)

    async def get_work(self, work_id: str) -> WorkRecord | None:
        def run(tx: Tx) -> WorkRecord | None:
            row = tx.one(_SELECT_WORK + " WHERE work_id = ?", (work_id,))
            return None if row is None else _work(row)

        return await self.db.run(run, Mode.READ)

    async def get_call(self, call_id: str) -> CallRecord | None:
        def run(tx: Tx) -> CallRecord | None:
            row = tx.one(_SELECT_CALL + " WHERE call_id = ?", (call_id,))
            return None if row is None else _call(row)

        return await self.db.run(run, Mode.READ)

    async def calls_of_work(self, work_id: str) -> list[CallRecord]:
        def run(tx: Tx) -> list[CallRecord]:
            return [_call(r) for r in tx.query(_SELECT_CALL + " WHERE work_id = ? ORDER BY attempt", (work_id,))]

        return await self.db.run(run, Mode.READ)

    async def delivered_since(self, since: float) -> list[WorkRecord]:
        """Works delivered at or after `since` (the redelivery window after a restart)."""

        def run(tx: Tx) -> list[WorkRecord]:
            rows = tx.query(_SELECT_WORK + " WHERE status = ? AND updated_at >= ?", (WorkStatus.DELIVERED.value, since))
            return [_work(r) for r in rows]

        return await self.db.run(run, Mode.READ)

    async def delivered_works(self, limit: int = 1000) -> list[WorkRecord]:
        def run(tx: Tx) -> list[WorkRecord]:
            rows = tx.query(
                _SELECT_WORK + " WHERE status = ? ORDER BY updated_at DESC LIMIT ?", (WorkStatus.DELIVERED.value, limit)
            )
            return [_work(r) for r in rows]

        return await self.db.run(run, Mode.READ)

    async def history(
        self,
        limit: int,
        before: tuple[float, str] | None = None,
        miner: int | None = None,
        number: int | None = None,
        failed_only: bool = False,
        task_type: int | None = None,
        worker_id: str | None = None,
        since: float | None = None,
    ) -> list[CallRecord]:
        """Calls newest first (by queued_at, then call id), for the task history."""
        where: list[str] = []
        params: list[Any] = []
        if before is not None:
            where.append("(queued_at < ? OR (queued_at = ? AND call_id < ?))")
            params.extend([before[0], before[0], before[1]])
        if miner is not None and number is not None:
            where.append("miner = ? AND number = ?")
            params.extend([miner, number])
        if failed_only:
            where.append("status IN (?, ?, ?, ?)")
            params.extend(
                [
                    CallStatus.FAILED.value,
                    CallStatus.ABORTED.value,
                    CallStatus.TIMED_OUT.value,
                    CallStatus.REQUEUED.value,
                ]
            )
        if task_type is not None:
            where.append("task_type = ?")
            params.append(task_type)
        if worker_id:
            where.append("worker_id = ?")
            params.append(worker_id)
        if since is not None:
            where.append("queued_at >= ?")
            params.append(since)
        sql = (
            _SELECT_CALL
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY queued_at DESC, call_id DESC LIMIT ?"
        )
        params.append(limit)

        def run(tx: Tx) -> list[CallRecord]:
            return [_call(r) for r in tx.query(sql, params)]

        return await self.db.run(run, Mode.READ)

    async def purge(self, delivered_before: float, calls_before: float) -> tuple[int, int]:
        """Drops delivered works and finished calls older than the retention."""

        def run(tx: Tx) -> tuple[int, int]:
            works = tx.execute(
                "DELETE FROM manager_works WHERE status = ? AND updated_at < ?",
                (WorkStatus.DELIVERED.value, delivered_before),
            )
            calls = tx.execute(
                "DELETE FROM manager_calls WHERE status NOT IN (?, ?, ?) AND queued_at < ?"
                " AND call_id NOT IN (SELECT call_id FROM manager_works)",
                (CallStatus.QUEUED.value, CallStatus.DISPATCHING.value, CallStatus.RUNNING.value, calls_before),
            )
            return works, calls

        return await self.db.run(run)

    # --- PoSt vanilla proofs -----------------------------------------------------------------

    async def put_vanilla_proofs(
        self, proof_type: int, randomness: bytes, proofs: Sequence[tuple[int, int, bytes, bytes]], stored_at: float
    ) -> None:
        """Records (miner, number, comm_r, proof) vanilla proofs of one PoSt challenge in one
        transaction; a proof already recorded (an identical request beside this one) is kept."""
        rows = [
            (proof_type, randomness, miner, number, comm_r, proof, stored_at) for miner, number, comm_r, proof in proofs
        ]

        def run(tx: Tx) -> None:
            tx.executemany(_INSERT_VANILLA, rows)

        if rows:
            await self.db.run(run)

    async def vanilla_proofs(
        self, proof_type: int, randomness: bytes, miner: int, sectors: Sequence[tuple[int, bytes]]
    ) -> dict[int, bytes]:
        """The recorded vanilla proofs of these (number, comm_r) sectors for this challenge, by
        sector number (a proof recorded for another comm_r of the number is not one of them)."""
        wanted = {number: bytes(comm_r) for number, comm_r in sectors}

        def run(tx: Tx) -> dict[int, bytes]:
            rows = tx.query(
                "SELECT number, comm_r, proof FROM manager_vanilla_proofs"
                " WHERE proof_type = ? AND randomness = ? AND miner = ?",
                (proof_type, randomness, miner),
            )
            return {int(r[0]): bytes(r[2]) for r in rows if wanted.get(int(r[0])) == bytes(r[1])}

        if not wanted:
            return {}
        return await self.db.run(run, Mode.READ)

    async def purge_vanilla_proofs(self, stored_before: float) -> int:
        """Drops the vanilla proofs recorded before `stored_before`; how many."""

        def run(tx: Tx) -> int:
            return tx.execute("DELETE FROM manager_vanilla_proofs WHERE stored_at < ?", (stored_before,))

        return await self.db.run(run)

    # --- sector commitments ------------------------------------------------------------------

    async def sector_commitments(self, miner: int, number: int) -> SectorCommitmentsRecord | None:
        """The commitments the last successful SealPreCommit2 of a sector returned; None if none."""

        def run(tx: Tx) -> SectorCommitmentsRecord | None:
            r = tx.one(
                "SELECT miner, number, proof_type, comm_r, comm_d, recorded_at FROM manager_sector_commitments"
                " WHERE miner = ? AND number = ?",
                (miner, number),
            )
            if r is None:
                return None
            return SectorCommitmentsRecord(int(r[0]), int(r[1]), int(r[2]), bytes(r[3]), bytes(r[4]), float(r[5]))

        return await self.db.run(run, Mode.READ)

    async def forget_sector_commitments(self, miner: int, number: int) -> bool:
        """Drops a removed sector's commitments; False when none were recorded (a repeat)."""

        def run(tx: Tx) -> bool:
            return (
                tx.execute("DELETE FROM manager_sector_commitments WHERE miner = ? AND number = ?", (miner, number)) > 0
            )

        return await self.db.run(run)

    # --- the sector lifecycle ------------------------------------------------------------------

    async def sector(self, miner: int, number: int) -> lifecycle.SectorRecord | None:
        """The sector's lifecycle record with the steps of its current generation."""
        return await self.db.run(lambda tx: _read_sector(tx, miner, number), Mode.READ)

    async def claim_sector(self, miner: int, number: int, proof_type: int, generation: int) -> lifecycle.SectorRecord:
        """Starts a pipeline on a sector that has none (never seen, or removed): a new
        generation, one above `generation` (the one the caller saw), with no pieces. Raises
        LifecycleRefused when the row changed since the caller read it (another manager's claim)."""

        def run(tx: Tx) -> lifecycle.SectorRecord:
            current = _read_sector(tx, miner, number)
            seen = current.generation if current is not None else 0
            if current is not None and (seen != generation or not current.removed):
                raise lifecycle.LifecycleRefused(
                    lifecycle.Refusal.CLAIMED,
                    f"AddPiece: {current.name} was claimed by another pipeline meanwhile; seal another sector number",
                )
            now = time.time()
            record = lifecycle.SectorRecord(miner, number, proof_type, seen + 1, created_at=now, updated_at=now)
            _write_sector(tx, record)
            return record

        return await self.db.run(run)

    async def sectors(self, after: tuple[int, int] | None, limit: int) -> list[lifecycle.SectorRecord]:
        """Lifecycle records by (miner, number), after `after`, at most `limit`."""

        def run(tx: Tx) -> list[lifecycle.SectorRecord]:
            if after is None:
                keys = tx.query("SELECT miner, number FROM manager_sectors ORDER BY miner, number LIMIT ?", (limit,))
            else:
                keys = tx.query(
                    "SELECT miner, number FROM manager_sectors WHERE miner > ? OR (miner = ? AND number > ?)"
                    " ORDER BY miner, number LIMIT ?",
                    (after[0], after[0], after[1], limit),
                )
            out = []
            for miner, number in keys:
                record = _read_sector(tx, int(miner), int(number))
                if record is not None:
                    out.append(record)
            return out

        return await self.db.run(run, Mode.READ)

    async def mark_removed(self, miner: int, number: int) -> lifecycle.SectorRecord:
        """Records that the sector is removed (later steps are refused, older work dropped)."""

        def run(tx: Tx) -> lifecycle.SectorRecord:
            now = time.time()
            record = _read_sector(tx, miner, number) or lifecycle.SectorRecord(miner, number, 0, 0, created_at=now)
            record.removed = True
            record.updated_at = now
            _write_sector(tx, record)
            return record

        return await self.db.run(run)

    # --- worker operator state ---------------------------------------------------------------

    async def worker_states(self) -> dict[str, WorkerOperatorState]:
        def run(tx: Tx) -> dict[str, WorkerOperatorState]:
            rows = tx.query("SELECT worker_id, enabled, cordoned FROM manager_worker_state")
            return {r[0]: WorkerOperatorState(r[0], bool(r[1]), bool(r[2])) for r in rows}

        return await self.db.run(run, Mode.READ)

    async def set_worker_state(self, state: WorkerOperatorState) -> None:
        def run(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO manager_worker_state (worker_id, enabled, cordoned, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (worker_id) DO UPDATE SET enabled = excluded.enabled, cordoned = excluded.cordoned,"
                " updated_at = excluded.updated_at",
                (state.worker_id, state.enabled, state.cordoned, time.time()),
            )

        await self.db.run(run)
