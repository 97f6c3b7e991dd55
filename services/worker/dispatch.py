"""Admitting and starting the calls the manager assigns: the one shape every task RPC has.

An asynchronous task call goes through the same steps whatever its type: the GPUs granted exist
here; a call this worker already knows (a retried RPC) is answered with its id and not run
twice; the task type is enabled and the worker is not shutting down; the index is configured;
the runner admits one more task of this type; the call starts in the background and its outcome
is stored for the manager. AddPiece takes the same steps but runs inside its RPC (its bytes come
with it), and PoSt's vanilla proofs are answered on the RPC's own stream.

convert.py turns each request into the values here; nothing here reads a message or knows gRPC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.common.errors import FailedPrecondition
from services.common.vocabulary import TaskType
from services.worker import tasks
from services.worker.calls import CallId, CallType, Outcome, TaskFailure, task_type_name
from services.worker.callstore import call_key
from services.worker.parts import Disabled, Parts
from services.worker.resources import SHORT_NAME_OF
from services.worker.sectors import PostKind, SectorId
from services.worker.validation import Invalid

log = logging.getLogger(__name__)
Work = Callable[[tasks.TaskEnv, tasks.TaskContext], Awaitable[Outcome]]


@dataclass(frozen=True)
class Assignment:
    """The manager's assignment of one call: its id, the GPUs granted, which attempt this is,
    and how long it may run (None: no limit)."""

    call_id: CallId
    gpu_ordinals: tuple[int, ...]
    attempt: int
    timeout_s: float | None
    # The dispatching manager's lease epoch (0: not given).
    leader_epoch: int = 0
    # The worker session the manager placed the call on ("": not given).
    worker_session: str = ""


@dataclass(frozen=True)
class TaskCall:
    """An asynchronous task to start: its call and task types, the sector's seal proof (for the
    per-size caps), the assignment, and the work itself (checked arguments bound)."""

    call_type: int
    task_type: int
    seal_proof: int
    assignment: Assignment
    work: Work


@dataclass(frozen=True)
class AddPieceCall:
    """The header of an AddPiece stream: the call, the sector, the pieces already in it and the
    new piece's unpadded size."""

    call_id: CallId
    sector: tasks.SectorRef
    seal_proof: int
    existing: list[int]
    piece_size: int
    attempt: int
    # The dispatching manager's lease epoch (0: not given).
    leader_epoch: int = 0
    # The worker session the manager placed the call on ("": not given).
    worker_session: str = ""


@dataclass(frozen=True)
class ProofsCall:
    """A request for PoSt vanilla proofs: one miner's sectors (with their comm_r), all of the
    proof type's size."""

    call: str
    task_type: int
    kind: PostKind
    sector_size: int
    randomness: bytes
    sectors: list[tuple[SectorId, bytes]]
    gpu_ordinals: list[int]


class StaleManager(FailedPrecondition):
    """An assignment from a manager whose lease epoch is below one this worker has seen."""


class StaleSession(FailedPrecondition):
    """An assignment placed on an earlier run of this worker process (another session)."""


class EpochFence:
    """The highest manager lease epoch this worker has been dispatched with. A manager that was
    deposed (its lease taken over, a higher epoch since) and wakes up must not start work here;
    the manager side refuses its writes too (docs/manager.md, "Failover"). Kept in memory: a
    restarted worker learns the current epoch from the first dispatch it gets."""

    def __init__(self) -> None:
        self.highest = 0

    def admit(self, epoch: int) -> None:
        if not epoch:
            return  # not given (a manager from before leadership): nothing to check
        if epoch < self.highest:
            raise StaleManager(
                f"assignment from a deposed manager (lease epoch {epoch}; a manager with epoch {self.highest} "
                "leads now): refused"
            )
        self.highest = epoch


class Dispatcher:
    """Starts the calls the servicer decodes; see the module docstring for the steps."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.epochs = EpochFence()

    def check_enabled(self, task_type: int) -> None:
        if self.parts.runner.shutting_down:
            raise Disabled("the worker is shutting down")
        if task_type not in self.parts.task_types:
            raise Disabled(f"task type {task_type_name(task_type)} is disabled on this worker")

    def check_session(self, placed_on: str) -> None:
        """Refuses a call the manager placed on another run of this worker process: the manager
        fails such calls as WORKER_RESTARTED and retries them as new calls, so a late dispatch of
        one (a resend, or one held in a reconnecting channel) must start nothing."""
        own = self.parts.identity.session_id
        if placed_on and placed_on != own:
            raise StaleSession(
                f"assignment for worker session {placed_on}, but this worker process is session {own} "
                "(it restarted after the manager placed the call, which the manager retries as a new call): refused"
            )

    def check_gpus(self, ordinals: Sequence[int]) -> None:
        have = {g.ordinal for g in self.parts.resources.gpus}
        for o in ordinals:
            if o not in have:
                raise Invalid(f"GPU ordinal {o} does not exist on this worker (it has {sorted(have) or 'none'})")

    def start(self, call: TaskCall) -> CallId:
        """Starts `call` in the background (or finds it already known) and returns its id."""
        assigned = call.assignment
        runner = self.parts.runner
        self.check_gpus(assigned.gpu_ordinals)
        self.epochs.admit(assigned.leader_epoch)
        self.check_session(assigned.worker_session)
        if runner.known(assigned.call_id):
            return assigned.call_id
        self.check_enabled(call.task_type)
        env = self.parts.env()
        runner.admit(call.task_type, call.seal_proof)
        ctx = runner.context_for(assigned.call_id, list(assigned.gpu_ordinals))
        ctx.link_session = self.parts.link.session_no if self.parts.link is not None else 0
        fault, short = self.parts.task_fault, SHORT_NAME_OF.get(call.task_type, "")

        async def run(c: tasks.TaskContext) -> Outcome:
            await fault.before(short, assigned.attempt)
            return await call.work(env, c)

        runner.start(assigned.call_id, call.call_type, call.task_type, call.seal_proof, assigned.timeout_s, ctx, run)
        log.info(
            "task started",
            extra={"call": call_key(assigned.call_id), "task": task_type_name(call.task_type)},
        )
        return assigned.call_id

    async def add_piece(self, call: AddPieceCall, chunks: AsyncIterator[tuple[int, bytes]]) -> CallId:
        """Writes the piece the stream carries (`chunks`: offset and bytes) into the sector's
        unsealed file while the RPC lasts, and stores the outcome like any call's. A malformed
        stream (tasks.BadStream) fails the RPC and records nothing; any other failure is the
        task's outcome, and the RPC still answers with the call id."""
        runner = self.parts.runner
        self.epochs.admit(call.leader_epoch)
        self.check_session(call.worker_session)
        if runner.known(call.call_id):
            return call.call_id
        task_type = TaskType.ADD_PIECE
        self.check_enabled(task_type)
        env = self.parts.env()
        runner.admit(task_type, call.seal_proof)
        ctx = runner.context_for(call.call_id, [])
        with runner.inline(call.call_id, CallType.ADD_PIECE, task_type, call.seal_proof, ctx) as running:
            try:
                await self.parts.task_fault.before(SHORT_NAME_OF[task_type], call.attempt)
                async with tasks.add_piece(env, ctx, call.sector, call.existing, call.piece_size) as sink:
                    async for offset, data in chunks:
                        if offset != sink.received:
                            raise tasks.BadStream(f"chunk at offset {offset}, expected {sink.received}")
                        await sink.feed(data)
                    piece = await sink.finish()
            except (tasks.BadStream, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - the task failed: its outcome is returned
                runner.record(running, tasks.classify(exc))
                return call.call_id
            runner.record(running, ("piece", piece))
        return call.call_id

    async def vanilla_proofs(self, call: ProofsCall) -> AsyncGenerator[tuple[SectorId, bytes | TaskFailure], None]:
        """One vanilla proof (or the failure) per sector, in order, from local files only."""
        self.check_enabled(call.task_type)
        env = self.parts.env()
        log.info(
            "vanilla proofs",
            extra={"call": call.call, "kind": call.kind.name, "sectors": len(call.sectors)},
        )
        ctx = tasks.TaskContext(owner=f"post:{call.call}", gpu_ordinals=list(call.gpu_ordinals))
        async for sector, outcome in tasks.vanilla_proofs(
            env, ctx, call.kind, call.sector_size, call.randomness, call.sectors
        ):
            await self.parts.task_fault.vanilla_proof(sector.number)
            yield sector, outcome
