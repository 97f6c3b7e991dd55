"""The job runner (services/manager/jobs.py) and the operators' state (operators.py) through their
public API, with the manager in-process and TEST-ONLY fake workers (tests/support/fake_worker.py):
returns for unknown or mis-sent calls, aborts, retries of temporary failures, failures for good,
heartbeats of unknown workers, drains."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.common.errors import Aborted, FailedPrecondition, NotFound
from services.common.proto.sectorstorage.v1 import common_pb2
from services.manager.app import ManagerApp
from services.manager.calltracker import Outcome, ReturnStatus
from services.manager.domain import AddPieceInput, PieceChunk, PieceRef, PreCommit1Input, SectorId, SectorRef
from services.manager.records import CallStatus
from services.manager.resources import SealProof
from services.manager.sealing import Deadline
from services.manager.tasks import TaskType
from tests.support.fake_worker import FakeIndex, FakeWorker, InProcessManager

MINER = 1000
P2K = SealProof.STACKED_DRG_2KIB_V1_1
TICKET = bytes([0x11] * 32)
FULL = 2032


def ref(number: int) -> SectorRef:
    return SectorRef(SectorId(MINER, number), P2K)


def run(test: Callable[[ManagerApp, FakeWorker], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        index = FakeIndex()
        manager = await InProcessManager(tmp_path).start(index)
        worker = await FakeWorker("a", manager.address, index).start()  # type: ignore[abstract]
        try:
            assert manager.app is not None
            await test(manager.app, worker)
        finally:
            await worker.stop()
            await manager.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def piece_of(app: ManagerApp, number: int) -> PieceRef:
    async def chunks() -> AsyncIterator[PieceChunk]:
        yield PieceChunk(0, bytes([number]) * FULL)

    info = await app.sealing.add_piece(AddPieceInput(ref(number), (), FULL), chunks(), Deadline(20))
    return PieceRef(int(info.size), bytes(info.commp))


def live_call(app: ManagerApp, method: str, number: int) -> str:
    for live in app.runner.tracker.live_of(MINER, number):
        if live.record.method == method:
            return live.call.call_id
    raise AssertionError(f"no live {method} of sector {number}")


def test_returns_for_an_unknown_call_or_the_wrong_method_are_refused(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        runner = app.runner
        assert await runner.handle_return("SealPreCommit1", "no-such-call", Outcome.success(b"x")) is (
            ReturnStatus.NOT_FOUND
        )
        piece = await piece_of(app, 1)
        worker.gate.methods.add("SealPreCommit1")
        pc1 = asyncio.create_task(app.sealing.seal_pre_commit1(PreCommit1Input(ref(1), TICKET, (piece,)), Deadline(20)))
        await asyncio.wait_for(worker.gate.reached.wait(), 10)
        call_id = live_call(app, "SealPreCommit1", 1)
        assert await runner.handle_return("SealCommit2", call_id, Outcome.success(b"x")) is (ReturnStatus.WRONG_METHOD)
        worker.gate.event.set()
        assert (await pc1).startswith(b"p1o:")  # the real return still counts

    run(test, tmp_path)


def test_an_aborted_running_call_fails_its_caller_with_aborted_and_tells_the_worker(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        piece = await piece_of(app, 2)
        worker.gate.methods.add("SealPreCommit1")
        pc1 = asyncio.create_task(app.sealing.seal_pre_commit1(PreCommit1Input(ref(2), TICKET, (piece,)), Deadline(20)))
        await asyncio.wait_for(worker.gate.reached.wait(), 10)
        call_id = live_call(app, "SealPreCommit1", 2)
        # The worker has the task; the manager knows it runs once the dispatch was answered.
        live = app.runner.tracker.by_call[call_id]
        await until(lambda: live.call.status is CallStatus.RUNNING, "the call to be running")
        result = await app.runner.abort(call_id, "operator says stop")
        assert result is not None and result[0] == "running"
        with pytest.raises(Aborted, match="TASK_ERROR_CODE_ABORTED: operator says stop"):
            await pc1
        assert call_id in worker.aborted
        assert await app.runner.abort(call_id, "again") is None  # no longer live
        worker.gate.event.set()

    run(test, tmp_path)


def test_a_call_aborted_while_its_dispatch_is_on_the_wire_is_aborted_again_once_it_arrived(tmp_path: Path) -> None:
    """The abort the manager sends at once can reach the worker before the dispatch does (and
    find nothing to stop); once the dispatch has been answered the manager sends it again, so the
    worker never goes on running a call its manager ended."""

    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        piece = await piece_of(app, 5)
        worker.dispatch_gate.methods.add("SealPreCommit1")
        pc1 = asyncio.create_task(app.sealing.seal_pre_commit1(PreCommit1Input(ref(5), TICKET, (piece,)), Deadline(20)))
        await asyncio.wait_for(worker.dispatch_gate.reached.wait(), 10)
        call_id = live_call(app, "SealPreCommit1", 5)
        assert app.runner.tracker.by_call[call_id].call.status is CallStatus.DISPATCHING
        result = await app.runner.abort(call_id, "operator says stop")
        assert result is not None and result[0] == "assigned"
        with pytest.raises(Aborted):
            await pc1
        assert worker.aborted == [call_id] and call_id not in worker.running  # it found nothing
        worker.dispatch_gate.event.set()  # now the dispatch arrives, and the call starts there
        await until(lambda: worker.aborted == [call_id, call_id], "the abort to be sent again")

    run(test, tmp_path)


def test_a_temporary_failure_is_retried_and_a_permanent_one_reaches_the_caller(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        piece = await piece_of(app, 3)
        worker.fail_next["SealPreCommit1"] = common_pb2.TaskError(
            code=common_pb2.TASK_ERROR_CODE_TEMPORARY, message="disk hiccup"
        )
        out = await app.sealing.seal_pre_commit1(PreCommit1Input(ref(3), TICKET, (piece,)), Deadline(20))
        assert out.startswith(b"p1o:")
        assert [m for m, _, n in worker.ran if n == 3].count("SealPreCommit1") == 2

        piece = await piece_of(app, 4)
        worker.fail_next["SealPreCommit1"] = common_pb2.TaskError(
            code=common_pb2.TASK_ERROR_CODE_PERMANENT, message="bad ticket"
        )
        with pytest.raises(FailedPrecondition, match="TASK_ERROR_CODE_PERMANENT: bad ticket"):
            await app.sealing.seal_pre_commit1(PreCommit1Input(ref(4), TICKET, (piece,)), Deadline(20))
        assert [m for m, _, n in worker.ran if n == 4].count("SealPreCommit1") == 1
        record = await app.store.sector(MINER, 4)
        assert record is not None and "bad ticket" in record.last_error

    run(test, tmp_path)


def test_heartbeats_of_unknown_workers_or_sessions_are_not_accepted(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        runner = app.runner
        assert runner.heartbeat("worker-nobody", "s", [], None, False) is None
        assert runner.heartbeat(worker.worker_id, "another-session", [], None, False) is None
        accepted = runner.heartbeat(worker.worker_id, worker.session_id, [], None, False)
        assert accepted is not None and accepted[0].worker_id == worker.worker_id
        assert runner.can_run(worker.worker_id, TaskType.PRE_COMMIT_1)
        assert not runner.can_run("worker-nobody", TaskType.PRE_COMMIT_1)

    run(test, tmp_path)


def test_a_drain_waits_for_the_worker_s_tasks_and_keeps_it_cordoned(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        operators = app.operators
        with pytest.raises(NotFound, match="unknown worker worker-nobody"):
            operators.worker("worker-nobody")
        handle = operators.worker(worker.worker_id)
        piece = await piece_of(app, 5)
        worker.gate.methods.add("SealPreCommit1")
        pc1 = asyncio.create_task(app.sealing.seal_pre_commit1(PreCommit1Input(ref(5), TICKET, (piece,)), Deadline(20)))
        await asyncio.wait_for(worker.gate.reached.wait(), 10)
        assert not await operators.drain(handle, 0.3, abort_remaining=False)
        assert handle.cordoned and not handle.draining and not handle.schedulable
        assert not app.runner.can_run(worker.worker_id, TaskType.PRE_COMMIT_1)
        worker.gate.event.set()
        await pc1
        assert await operators.drain(handle, 5.0, abort_remaining=False)
        # Remembered for the worker's next registration (and a restarted manager).
        assert operators.state_of(worker.worker_id).cordoned
        assert (await app.store.worker_states())[worker.worker_id].cordoned
        await operators.set_state(handle, cordoned=False)
        assert handle.schedulable and app.runner.can_run(worker.worker_id, TaskType.PRE_COMMIT_1)
        await until(lambda: not app.runner.scheduler.workers[worker.worker_id].assigned, "the worker to be idle")

    run(test, tmp_path)
