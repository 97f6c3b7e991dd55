"""The manager service in-process with TEST-ONLY fake workers (tests/support/fake_worker.py):
sealing calls through the scheduler to workers and back through Return<Method>, WorkID dedup,
restart recovery, lost workers, disabled workers, retries, abort, observability.

The same behaviours with real worker processes are in tests/integration/manager/test_e2e.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

import rust_core
from services.common.cid import unsealed_cid
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.manager.config import ManagerSection
from services.manager.records import WorkStatus
from services.manager.tasks import TaskType
from tests.support.fake_worker import FakeIndex, FakeWorker, InProcessManager

T = TaskType
P2K = common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1
MINER = 1000
TICKET = bytes([0x11] * 32)
SEED = bytes([0x22] * 32)


def ref(number: int, proof: int = P2K) -> common_pb2.SectorRef:
    return common_pb2.SectorRef(id=common_pb2.SectorId(miner=MINER, number=number), proof_type=proof)  # type: ignore[arg-type]


def full_piece(number: int) -> common_pb2.PieceInfo:
    commp = hashlib.sha256(f"piece-{number}".encode()).digest()
    return common_pb2.PieceInfo(size=2048, piece_cid=unsealed_cid(commp))


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def add_piece(
    stub: Any, number: int, data: bytes, existing: list[int] | None = None, chunk: int = 300
) -> common_pb2.PieceInfo:
    async def messages() -> Any:
        yield manager_pb2.AddPieceRequest(
            header=manager_pb2.AddPieceHeader(
                sector=ref(number), existing_piece_sizes=existing or [], piece_size=len(data)
            )
        )
        for start in range(0, len(data), chunk):
            yield manager_pb2.AddPieceRequest(chunk=common_pb2.Chunk(offset=start, data=data[start : start + chunk]))

    reply = await stub.AddPiece(messages(), timeout=20)
    return reply.piece


async def seal(stub: Any, number: int) -> bytes:
    """The whole pipeline for one 2 KiB sector; returns the proof."""
    pieces = [await add_piece(stub, number, bytes([number % 251]) * 2032)]
    p1 = await stub.SealPreCommit1(
        manager_pb2.SealPreCommit1Request(sector=ref(number), ticket=TICKET, pieces=pieces), timeout=20
    )
    p2 = await stub.SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref(number), pre_commit1_output=p1.pre_commit1_output), timeout=20
    )
    c1 = await stub.SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref(number),
            ticket=TICKET,
            seed=SEED,
            pieces=pieces,
            comm_r=p2.commitments.comm_r,
            comm_d=p2.commitments.comm_d,
        ),
        timeout=20,
    )
    c2 = await stub.SealCommit2(
        manager_pb2.SealCommit2Request(sector=ref(number), commit1_output=c1.commit1_output), timeout=20
    )
    await stub.FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref(number)), timeout=20)
    return bytes(c2.proof)


def test_pipeline_places_by_selectors_and_table(tmp_path: Path) -> None:
    """Three workers: a GPU one, one without PC1, a small one. Every task runs once, PC2/C1/FIN
    where the sector's files are, C2 on the GPU worker (fewest task types), no PC1 on the
    worker without it."""

    async def test() -> None:
        index = FakeIndex()
        manager = await InProcessManager(tmp_path).start(index)
        workers = [
            await FakeWorker(
                "gpu",
                manager.address,
                index,
                cpus=32,
                gpus=1,
                task_types=[T.COMMIT_2, T.PRE_COMMIT_2, T.COMMIT_1, T.FINALIZE, T.FETCH],
            ).start(),
            await FakeWorker(
                "nopc1", manager.address, index, cpus=16, task_types=[t for t in T if t is not T.PRE_COMMIT_1]
            ).start(),
            await FakeWorker("small", manager.address, index, cpus=4).start(),
        ]
        try:
            assert manager.stub is not None
            proofs = await asyncio.gather(*[seal(manager.stub, n) for n in range(1, 7)])
            assert all(len(p) == 192 for p in proofs)
            by_worker = {w.name: w for w in workers}
            ran = {(m, n): w.name for w in workers for (m, _, n) in w.ran}
            for n in range(1, 7):
                assert ran[("SealPreCommit1", n)] != "nopc1"
                if ran[("AddPiece", n)] != "nopc1":  # the holder of the unsealed file first, if it can
                    assert ran[("SealPreCommit1", n)] == ran[("AddPiece", n)]
                assert ran[("SealCommit1", n)] == ran[("SealPreCommit2", n)]  # C1 never fetches
                assert ran[("FinalizeSector", n)] == ran[("SealCommit1", n)]
            assert all(count == 1 for w in by_worker.values() for count in w.executed.values())
            # C2 prefers the specialized GPU worker and gets its GPU slot there; GPU-less workers
            # take C2 without a GPU limit when the GPU is busy.
            gpu = by_worker["gpu"]
            c2_on_gpu = [cid for (m, cid, _) in gpu.ran if m == "SealCommit2"]
            assert c2_on_gpu and all(list(gpu.assignments[cid].gpu_ordinals) == [0] for cid in c2_on_gpu)
            assert all(not w.assignments[cid].gpu_ordinals for w in workers if w.name != "gpu" for cid in w.assignments)
            stats = await manager.stub.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=5)
            assert [s.info.worker_id for s in stats.workers] == sorted(w.worker_id for w in workers)
            assert all(s.cpu_used == 0 and s.state.connected for s in stats.workers)
        finally:
            for w in workers:
                await w.stop()
            await manager.stop()

    run(test)


def test_identical_requests_run_once(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address).start()
        worker.gate.methods.add("SealPreCommit1")
        try:
            assert manager.stub is not None
            await manager.seed(ref(5), "pieces")
            request = manager_pb2.SealPreCommit1Request(sector=ref(5), ticket=TICKET, pieces=[full_piece(5)])
            calls = [asyncio.ensure_future(manager.stub.SealPreCommit1(request, timeout=20)) for _ in range(3)]
            # Another client names the same piece by commp instead of CID, with another priority:
            # the same work.
            same = manager_pb2.SealPreCommit1Request(
                sector=ref(5),
                ticket=TICKET,
                priority=7,
                pieces=[common_pb2.PieceInfo(size=2048, commp=hashlib.sha256(b"piece-5").digest())],
            )
            calls.append(asyncio.ensure_future(manager.stub.SealPreCommit1(same, timeout=20)))
            await asyncio.wait_for(worker.gate.reached.wait(), 5)
            worker.gate.event.set()
            results = await asyncio.gather(*calls)
            assert len({r.pre_commit1_output for r in results}) == 1
            assert sum(n for (m, _), n in worker.executed.items() if m == "SealPreCommit1") == 1
            # Delivered: a later identical request gets the sector's recorded output, and runs nothing.
            again = await manager.stub.SealPreCommit1(request, timeout=20)
            assert again.pre_commit1_output == results[0].pre_commit1_output
            assert sum(n for (m, _), n in worker.executed.items() if m == "SealPreCommit1") == 1
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_manager_crash_mid_pc2_then_restart(tmp_path: Path) -> None:
    """kill -9 the manager while PC2 runs on a worker; a new manager on the same database
    recovers: the worker's Return lands there, the client that comes back gets the result, and
    the worker ran PC2 once. Queued work (never dispatched) is dispatched by the new manager."""

    async def test() -> None:
        first = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", first.address, cpus=1).start()
        worker.gate.methods.add("SealPreCommit2")
        assert first.stub is not None
        await first.seed(ref(9), "pc1", pc1_output=b"p1o")
        await first.seed(ref(10), "pc1", pc1_output=b"x")
        pc2 = manager_pb2.SealPreCommit2Request(sector=ref(9), pre_commit1_output=b"p1o")
        caller = asyncio.ensure_future(first.stub.SealPreCommit2(pc2, timeout=30))
        await asyncio.wait_for(worker.gate.reached.wait(), 5)
        # Dispatches carry the manager's lease epoch (the first manager on this file: 1) and the
        # worker session they were placed on.
        assert {a.leader_epoch for a in worker.assignments.values()} == {1}
        assert {a.worker_session_id for a in worker.assignments.values()} == {worker.session_id}
        # A second PC2 that cannot fit (PC2 takes all threads) waits in the queue.
        queued = asyncio.ensure_future(
            first.stub.SealPreCommit2(
                manager_pb2.SealPreCommit2Request(sector=ref(10), pre_commit1_output=b"x"), timeout=30
            )
        )
        await until(lambda: len(first.runner.scheduler.queue) == 1, what="second PC2 queued")
        await first.crash()
        for task in (caller, queued):
            with pytest.raises(grpc.aio.AioRpcError):
                await task
        await first.close_client()
        # The worker finishes while no manager is up: its Return retries.
        worker.gate.event.set()
        await asyncio.sleep(0.3)
        second = await InProcessManager(tmp_path).start()
        try:
            await worker.point_to(second.address)
            assert second.stub is not None
            again = await second.stub.SealPreCommit2(pc2, timeout=30)
            assert again.commitments.comm_r
            other = await second.stub.SealPreCommit2(
                manager_pb2.SealPreCommit2Request(sector=ref(10), pre_commit1_output=b"x"), timeout=30
            )
            assert other.commitments.comm_r
            counts = Counter_of(worker)
            assert counts["SealPreCommit2"] == 2  # sector 9 once, sector 10 once
            assert sorted(n for (m, _, n) in worker.ran if m == "SealPreCommit2") == [9, 10]
            # The restarted manager took the lease over with the next epoch.
            epochs = {a.call_id.sector.number: a.leader_epoch for a in worker.assignments.values()}
            assert epochs == {9: 1, 10: 2}
            jobs = await second.stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5)
            assert not jobs.jobs
        finally:
            await worker.stop()
            await second.stop()

    run(test)


def Counter_of(worker: FakeWorker) -> dict[str, int]:
    out: dict[str, int] = {}
    for (method, _), n in worker.executed.items():
        out[method] = out.get(method, 0) + n
    return out


def test_result_returned_while_manager_down_is_collected(tmp_path: Path) -> None:
    """The worker finished while the manager was down and holds the result; the restarted
    manager pulls it (ListCallResults) when the worker registers, before the client asks."""

    async def test() -> None:
        first = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", first.address).start()
        worker.gate.methods.add("SealCommit2")
        assert first.stub is not None
        await first.seed(ref(3), "c1", c1_output=b"c1o")
        request = manager_pb2.SealCommit2Request(sector=ref(3), commit1_output=b"c1o")
        caller = asyncio.ensure_future(first.stub.SealCommit2(request, timeout=30))
        await asyncio.wait_for(worker.gate.reached.wait(), 5)
        await first.crash()
        with pytest.raises(grpc.aio.AioRpcError):
            await caller
        await first.close_client()
        worker.return_enabled = False  # its Return retries give up: only the call store has it
        worker.gate.event.set()
        await until(lambda: bool(worker.results), what="result stored on the worker")
        second = await InProcessManager(tmp_path).start()
        try:
            await worker.point_to(second.address)
            await until(lambda: not worker.results, what="result collected and acknowledged")
            assert second.stub is not None
            reply = await second.stub.SealCommit2(request, timeout=10)
            assert len(reply.proof) == 192
            assert Counter_of(worker)["SealCommit2"] == 1
        finally:
            await worker.stop()
            await second.stop()

    run(test)


def test_lost_worker_task_reruns_elsewhere(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        doomed = await FakeWorker("doomed", manager.address, cpus=64).start()
        doomed.gate.methods.add("SealCommit2")
        try:
            assert manager.stub is not None
            await manager.seed(ref(4), "c1", c1_output=b"c")
            caller = asyncio.ensure_future(
                manager.stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref(4), commit1_output=b"c"), timeout=30)
            )
            await asyncio.wait_for(doomed.gate.reached.wait(), 5)
            await doomed.stop()  # dies: no more heartbeats, no Return
            rescuer = await FakeWorker("rescuer", manager.address).start()
            reply = await caller
            assert len(reply.proof) == 192
            assert Counter_of(rescuer)["SealCommit2"] == 1
            stats = await manager.stub.WorkerStats(
                manager_pb2.WorkerStatsRequest(worker_id=doomed.worker_id), timeout=5
            )
            assert not stats.workers[0].state.connected
            history = await manager.stub.TaskHistory(manager_pb2.TaskHistoryRequest(sector=ref(4).id), timeout=5)
            outcomes = [r.outcome for r in history.runs]
            assert outcomes == [manager_pb2.TASK_OUTCOME_SUCCEEDED, manager_pb2.TASK_OUTCOME_REQUEUED]
            assert history.runs[1].worker_id == doomed.worker_id and history.runs[0].worker_id == rescuer.worker_id
            await rescuer.stop()
        finally:
            await manager.stop()

    run(test)


def test_disabled_worker_gets_nothing_and_unsatisfiable_is_reported(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        off = await FakeWorker("off", manager.address, cpus=8).start()
        on = await FakeWorker("on", manager.address, cpus=8, task_types=[T.COMMIT_1, T.COMMIT_2]).start()
        try:
            assert manager.stub is not None
            await manager.stub.DisableWorker(manager_pb2.DisableWorkerRequest(worker_id=off.worker_id), timeout=5)
            for n in range(8):
                await manager.seed(ref(n), "c1", c1_output=b"c")
            await manager.seed(ref(20), "pieces")
            big = ref(21, common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_64GIB_V1_1)
            whole = (await manager.seed(big, "pieces")).pieces[0]
            outs = await asyncio.gather(
                *[
                    manager.stub.SealCommit2(
                        manager_pb2.SealCommit2Request(sector=ref(n), commit1_output=b"c"), timeout=20
                    )
                    for n in range(8)
                ]
            )
            assert len(outs) == 8 and not off.ran and len(on.ran) == 8
            # PC1: only the disabled worker enables it -> waits, WORKER_UNAVAILABLE; a 64 GiB PC1
            # fits nowhere -> unsatisfiable.
            pc1 = asyncio.ensure_future(
                manager.stub.SealPreCommit1(
                    manager_pb2.SealPreCommit1Request(sector=ref(20), ticket=TICKET, pieces=[full_piece(20)]),
                    timeout=30,
                )
            )
            huge = asyncio.ensure_future(
                manager.stub.SealPreCommit1(
                    manager_pb2.SealPreCommit1Request(sector=big, ticket=TICKET, pieces=[whole]), timeout=30
                )
            )
            await until(lambda: len(manager.runner.scheduler.queue) == 2, what="two queued")
            diag = await manager.stub.SchedDiag(manager_pb2.SchedDiagRequest(force_sched=True), timeout=5)
            by_sector = {r.sector.id.number: r for r in diag.requests}
            waiting = by_sector[20]
            assert waiting.reason == manager_pb2.WAIT_REASON_WORKER_UNAVAILABLE and not waiting.unsatisfiable
            never = by_sector[21]
            assert never.unsatisfiable and never.reason == manager_pb2.WAIT_REASON_INSUFFICIENT_RESOURCES
            assert {r.worker_id: r.reason for r in never.rejections} == {
                off.worker_id: manager_pb2.WAIT_REASON_INSUFFICIENT_RESOURCES,
                on.worker_id: manager_pb2.WAIT_REASON_TASK_TYPE_NOT_ENABLED,
            }
            # Disabled is kept across the worker's restart; enabling releases the PC1.
            await off.restart()
            stats = await manager.stub.WorkerStats(manager_pb2.WorkerStatsRequest(worker_id=off.worker_id), timeout=5)
            assert not stats.workers[0].state.enabled
            await manager.stub.EnableWorker(manager_pb2.EnableWorkerRequest(worker_id=off.worker_id), timeout=5)
            assert (await pc1).pre_commit1_output
            await manager.stub.Abort(manager_pb2.AbortRequest(call_id=never.call_id, reason="too big"), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await huge
            assert err.value.code() == grpc.StatusCode.ABORTED and "too big" in (err.value.details() or "")
        finally:
            await off.stop()
            await on.stop()
            await manager.stop()

    run(test)


def test_temporary_failures_retry_permanent_do_not(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(
            tmp_path,
            ManagerSection(
                heartbeat_interval_s=0.2,
                heartbeat_timeout_s=2,
                max_attempts=3,
                retry_backoff_initial_s=0.05,
                retry_backoff_max_s=0.1,
            ),
        ).start()
        worker = await FakeWorker("w", manager.address).start()
        try:
            assert manager.stub is not None
            await manager.seed(ref(1), "c1", c1_output=b"c")
            await manager.seed(ref(2), "pc2")
            await manager.seed(ref(3), "pc1", pc1_output=b"p")
            worker.fail_next["SealCommit2"] = common_pb2.TaskError(
                code=common_pb2.TASK_ERROR_CODE_TEMPORARY, message="gpu hiccup"
            )
            reply = await manager.stub.SealCommit2(
                manager_pb2.SealCommit2Request(sector=ref(1), commit1_output=b"c"), timeout=20
            )
            assert len(reply.proof) == 192 and Counter_of(worker)["SealCommit2"] == 2
            worker.fail_next["SealCommit1"] = common_pb2.TaskError(
                code=common_pb2.TASK_ERROR_CODE_SECTOR_NOT_FOUND, message="no sealed file"
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await manager.stub.SealCommit1(
                    manager_pb2.SealCommit1Request(
                        sector=ref(2),
                        ticket=TICKET,
                        seed=SEED,
                        pieces=[full_piece(2)],
                        comm_r=bytes(32),
                        comm_d=bytes(32),
                    ),
                    timeout=20,
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert (err.value.details() or "").startswith("TASK_ERROR_CODE_SECTOR_NOT_FOUND: no sealed file")
            assert Counter_of(worker)["SealCommit1"] == 1
            # Out of attempts: the temporary error is final (3 runs).
            worker.fail_next.clear()
            flaky = common_pb2.TaskError(code=common_pb2.TASK_ERROR_CODE_ALLOCATE_SPACE, message="disk full")
            original = worker._run

            async def always_fail(method: str, request: Any, assignment: Any) -> None:
                worker.fail_next[method] = flaky
                await original(method, request, assignment)

            worker._run = always_fail  # type: ignore[method-assign]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await manager.stub.SealPreCommit2(
                    manager_pb2.SealPreCommit2Request(sector=ref(3), pre_commit1_output=b"p"), timeout=20
                )
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert Counter_of(worker)["SealPreCommit2"] == 3
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_add_piece_relays_stream_and_checks_sizes(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address).start()
        try:
            assert manager.stub is not None
            data = (bytes(range(254)) * 8)[:2032]
            piece = await add_piece(manager.stub, 1, data, chunk=100)
            assert piece.size == 2048 and piece.commp == rust_core.piece_commitment(data, 2048)
            assert worker.piece_bytes == data
            # Too few bytes: INVALID_ARGUMENT, nothing dispatched as a task on the worker.
            before = Counter_of(worker).get("AddPiece", 0)

            async def short() -> Any:
                yield manager_pb2.AddPieceRequest(header=manager_pb2.AddPieceHeader(sector=ref(2), piece_size=1016))
                yield manager_pb2.AddPieceRequest(chunk=common_pb2.Chunk(offset=0, data=bytes(1000)))

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await manager.stub.AddPiece(short(), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "1000 of piece_size 1016" in (
                err.value.details() or ""
            )
            assert Counter_of(worker).get("AddPiece", 0) == before
            for header, needle in [
                (manager_pb2.AddPieceHeader(sector=ref(3), piece_size=1000), "not an unpadded piece size"),
                (
                    manager_pb2.AddPieceHeader(sector=ref(3), existing_piece_sizes=[1016], piece_size=2032),
                    "does not fit",
                ),
                (manager_pb2.AddPieceHeader(piece_size=127), "sector is required"),
            ]:

                async def one(h: manager_pb2.AddPieceHeader = header) -> Any:
                    yield manager_pb2.AddPieceRequest(header=h)

                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await manager.stub.AddPiece(one(), timeout=10)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in (err.value.details() or "")
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_return_rpc_codes_and_heartbeat_protocol(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address).start()
        try:
            stub = worker.stub
            assert stub is not None and manager.stub is not None
            unknown = common_pb2.CallId(sector=ref(1).id, id="5d6f7a3e-0000-4000-8000-000000000000")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ReturnSealCommit2(
                    manager_pb2.ReturnSealCommit2Request(call_id=unknown, proof=b"x"), timeout=5
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ReturnSealCommit2(manager_pb2.ReturnSealCommit2Request(call_id=unknown), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            await manager.seed(ref(1), "c1", c1_output=b"c")
            await manager.stub.SealCommit2(
                manager_pb2.SealCommit2Request(sector=ref(1), commit1_output=b"c"), timeout=10
            )
            call = worker.assignments[worker.ran[0][1]].call_id
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ReturnSealCommit1(
                    manager_pb2.ReturnSealCommit1Request(call_id=call, commit1_output=b"x"), timeout=5
                )
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            # A repeated Return of a stored call is OK and changes nothing.
            await stub.ReturnSealCommit2(manager_pb2.ReturnSealCommit2Request(call_id=call, proof=b"other"), timeout=5)
            # Heartbeats: an unknown session is NOT_FOUND; a running call the manager does not
            # know is reported back to stop.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.WorkerHeartbeat(
                    manager_pb2.WorkerHeartbeatRequest(worker_id=worker.worker_id, session_id="other"), timeout=5
                )
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            reply = await stub.WorkerHeartbeat(
                manager_pb2.WorkerHeartbeatRequest(
                    worker_id=worker.worker_id, session_id=worker.session_id, running_calls=[unknown]
                ),
                timeout=5,
            )
            assert [c.id for c in reply.unknown_calls] == [unknown.id]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RegisterWorker(
                    manager_pb2.RegisterWorkerRequest(info=worker.info(), address="not a target", session_id="s"),
                    timeout=5,
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_cordon_drain_and_uncordon(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address).start()
        worker.gate.methods.add("SealCommit2")
        try:
            assert manager.stub is not None
            for n in (1, 2):
                await manager.seed(ref(n), "c1", c1_output=b"c")
            busy = asyncio.ensure_future(
                manager.stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref(1), commit1_output=b"c"), timeout=30)
            )
            await asyncio.wait_for(worker.gate.reached.wait(), 5)
            reply = await manager.stub.DrainWorker(
                manager_pb2.DrainWorkerRequest(worker_id=worker.worker_id, timeout={"nanos": 300_000_000}), timeout=10
            )
            assert not reply.drained and [j.sector.id.number for j in reply.remaining] == [1] and reply.state.cordoned
            # Cordoned: new work waits; the running task finishes.
            waiting = asyncio.ensure_future(
                manager.stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref(2), commit1_output=b"c"), timeout=30)
            )
            await until(lambda: len(manager.runner.scheduler.queue) == 1, what="queued while cordoned")
            worker.gate.event.set()
            await busy
            drained = await manager.stub.DrainWorker(
                manager_pb2.DrainWorkerRequest(worker_id=worker.worker_id), timeout=10
            )
            assert drained.drained and not drained.remaining
            assert not waiting.done()
            await manager.stub.UncordonWorker(manager_pb2.UncordonWorkerRequest(worker_id=worker.worker_id), timeout=5)
            await waiting
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await manager.stub.CordonWorker(manager_pb2.CordonWorkerRequest(worker_id="nobody"), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_overdue_task_is_stopped_and_retried(tmp_path: Path) -> None:
    async def test() -> None:
        settings = ManagerSection(
            heartbeat_interval_s=0.2,
            heartbeat_timeout_s=5,
            task_timeouts={"C2": 0.3},
            timeout_grace_s=0.2,
            retry_backoff_initial_s=0.05,
            retry_backoff_max_s=0.1,
        )
        manager = await InProcessManager(tmp_path, settings).start()
        worker = await FakeWorker("w", manager.address).start()
        worker.gate.methods.add("SealCommit2")  # hangs until released
        try:
            assert manager.stub is not None
            await manager.seed(ref(1), "c1", c1_output=b"c")
            call = asyncio.ensure_future(
                manager.stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref(1), commit1_output=b"c"), timeout=30)
            )
            await asyncio.wait_for(worker.gate.reached.wait(), 5)
            first = worker.ran[0][1]
            assert worker.assignments[first].timeout.ToNanoseconds() == 300_000_000
            await until(lambda: first in worker.aborted, what="overdue call stopped on the worker")
            worker.gate.methods.clear()
            worker.gate.event.set()  # the stopped call returns ABORTED; the retry runs normally
            reply = await call
            assert len(reply.proof) == 192
            history = await manager.stub.TaskHistory(manager_pb2.TaskHistoryRequest(), timeout=5)
            assert [r.outcome for r in history.runs] == [
                manager_pb2.TASK_OUTCOME_SUCCEEDED,
                manager_pb2.TASK_OUTCOME_TIMED_OUT,
            ]
            await until(lambda: not manager.runner.scheduler.assigned, what="resources of the stopped call released")
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_history_pages_and_jobs_views(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address).start()
        try:
            stub = manager.stub
            assert stub is not None
            for n in range(25):
                await manager.seed(ref(n), "c1", c1_output=b"c")
            await asyncio.gather(
                *[
                    stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref(n), commit1_output=b"c"), timeout=20)
                    for n in range(25)
                ]
            )
            seen: list[str] = []
            token = ""
            while True:
                page = await stub.TaskHistory(manager_pb2.TaskHistoryRequest(page_size=10, page_token=token), timeout=5)
                seen.extend(r.call_id.id for r in page.runs)
                if not page.next_page_token:
                    break
                token = page.next_page_token
            assert len(seen) == len(set(seen)) == 25
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.TaskHistory(
                    manager_pb2.TaskHistoryRequest(page_size=10, page_token=token or "x", failed_only=True), timeout=5
                )
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            only = await stub.TaskHistory(manager_pb2.TaskHistoryRequest(sector=ref(3).id), timeout=5)
            assert [r.sector.id.number for r in only.runs] == [3]
            delivered = await stub.SealingJobs(manager_pb2.SealingJobsRequest(include_delivered=True), timeout=5)
            assert len(delivered.jobs) == 25 and all(j.state == manager_pb2.JOB_STATE_DELIVERED for j in delivered.jobs)
            assert not (await stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5)).jobs
            stats = await stub.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=5)
            assert stats.workers[0].tasks_running == 0 and stats.workers[0].info.hostname == "host-w"
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_metrics_gauges(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY, generate_latest

    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address, task_types=[T.COMMIT_1]).start()
        try:
            assert manager.stub is not None
            await manager.seed(ref(1), "c1", c1_output=b"c")
            waiting = asyncio.ensure_future(
                manager.stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref(1), commit1_output=b"c"), timeout=30)
            )
            await until(lambda: len(manager.runner.scheduler.queue) == 1, what="queued")
            text = generate_latest(REGISTRY).decode()
            assert 'sectorstorage_manager_queue_length{task="C2"} 1.0' in text
            assert 'sectorstorage_manager_unsatisfiable_requests{task="C2"} 1.0' in text
            assert 'sectorstorage_manager_jobs{state="queued",task="C2"} 1.0' in text
            assert 'sectorstorage_manager_workers{state="enabled"} 1.0' in text
            assert f'sectorstorage_manager_worker_cpu_used{{hostname="host-w",worker="{worker.worker_id}"}} 0.0' in text
            waiting.cancel()
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_add_piece_back_pressure_no_buffering_before_placement(tmp_path: Path) -> None:
    """The manager reads the piece from the client only as fast as the chosen worker takes it:
    while no worker can take the AddPiece, the client's stream stalls once the HTTP/2 flow
    control window is full (a few MiB held by the transport), however large the piece; nothing
    is read into the manager."""

    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        try:
            assert manager.stub is not None
            size = 512 * 1024 * 1024 // 128 * 127  # a 512 MiB sector's whole piece: 508 MiB
            chunk = 64 * 1024
            pulled = 0

            async def messages() -> Any:
                nonlocal pulled
                yield manager_pb2.AddPieceRequest(
                    header=manager_pb2.AddPieceHeader(
                        sector=ref(1, common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_512MIB_V1_1), piece_size=size
                    )
                )
                for start in range(0, size, chunk):
                    pulled += 1
                    yield manager_pb2.AddPieceRequest(chunk=common_pb2.Chunk(offset=start, data=bytes(chunk)))

            call = asyncio.ensure_future(manager.stub.AddPiece(messages(), timeout=30))
            await asyncio.sleep(1.5)
            first = pulled
            await asyncio.sleep(1.0)
            assert pulled == first, "the client kept sending with nobody reading"
            assert pulled * chunk <= 16 * 1024 * 1024, f"{pulled * chunk} bytes let through before placement"
            call.cancel()
        finally:
            await manager.stop()

    run(test)


def test_sector_commitments_rpc_from_pc2_until_remove(tmp_path: Path) -> None:
    """SectorCommitments answers what the sector's SealPreCommit2 returned (also after a manager
    restart), NOT_FOUND before PC2 and after a successful Remove, INVALID_ARGUMENT for no sector."""

    async def test() -> None:
        index = FakeIndex()
        manager = await InProcessManager(tmp_path).start(index)
        worker = await FakeWorker("w", manager.address, index, cpus=16).start()
        restarted: InProcessManager | None = None
        try:
            assert manager.stub is not None
            stub = manager.stub
            sid = common_pb2.SectorId(miner=MINER, number=4)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SectorCommitments(manager_pb2.SectorCommitmentsRequest(sector=sid), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND and "no SealPreCommit2 result" in (
                err.value.details() or ""
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SectorCommitments(manager_pb2.SectorCommitmentsRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

            for n in (4, 5):
                piece = await add_piece(stub, n, bytes([n]) * 2032)
                p1 = await stub.SealPreCommit1(
                    manager_pb2.SealPreCommit1Request(sector=ref(n), ticket=TICKET, pieces=[piece]), timeout=20
                )
                p2 = await stub.SealPreCommit2(
                    manager_pb2.SealPreCommit2Request(sector=ref(n), pre_commit1_output=p1.pre_commit1_output),
                    timeout=20,
                )
                got = await stub.SectorCommitments(manager_pb2.SectorCommitmentsRequest(sector=ref(n).id), timeout=5)
                assert got.sector == ref(n)
                assert (got.comm_r, got.comm_d) == (p2.commitments.comm_r, p2.commitments.comm_d)
                assert got.recorded_at.seconds > 0
            kept = await stub.SectorCommitments(manager_pb2.SectorCommitmentsRequest(sector=sid), timeout=5)

            removed = common_pb2.SectorId(miner=MINER, number=5)
            assert (await stub.Remove(manager_pb2.RemoveRequest(sector=removed), timeout=10)).removed
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.SectorCommitments(manager_pb2.SectorCommitmentsRequest(sector=removed), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND

            await manager.stop()
            restarted = await InProcessManager(tmp_path).start(index)
            assert restarted.stub is not None
            assert (
                await restarted.stub.SectorCommitments(manager_pb2.SectorCommitmentsRequest(sector=sid), timeout=5)
                == kept
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await restarted.stub.SectorCommitments(manager_pb2.SectorCommitmentsRequest(sector=removed), timeout=5)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            await worker.stop()
            if restarted is not None:
                await restarted.stop()
            else:
                await manager.stop()

    run(test)


def test_work_of_a_removed_or_older_generation_is_dropped_not_run(tmp_path: Path) -> None:
    """The sector's record changes under queued work (a Remove seen only in the database, as from
    another manager): before dispatch the work guard drops it; the caller gets ABORTED with the
    reason, TaskHistory records it, and no worker ran it."""

    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address).start()
        try:
            stub = manager.stub
            assert stub is not None and manager.app is not None
            await manager.seed(ref(1), "c1", c1_output=b"c")
            await stub.DisableWorker(manager_pb2.DisableWorkerRequest(worker_id=worker.worker_id), timeout=5)
            waiting = asyncio.ensure_future(
                stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref(1), commit1_output=b"c"), timeout=20)
            )
            await until(lambda: len(manager.runner.scheduler.queue) == 1, what="C2 queued")
            await manager.app.store.mark_removed(MINER, 1)
            # A new pipeline on the number (generation 2) does not revive the old work either.
            record = await manager.app.store.claim_sector(MINER, 1, P2K, 1)
            assert record.generation == 2
            await stub.EnableWorker(manager_pb2.EnableWorkerRequest(worker_id=worker.worker_id), timeout=5)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await waiting
            assert err.value.code() == grpc.StatusCode.ABORTED
            assert "generation 2" in (err.value.details() or "")
            assert not [m for (m, _, _) in worker.ran if m == "SealCommit2"]
            history = await stub.TaskHistory(manager_pb2.TaskHistoryRequest(sector=ref(1).id), timeout=5)
            [run] = [r for r in history.runs if r.task_type == common_pb2.TASK_TYPE_COMMIT_2]
            assert run.outcome == manager_pb2.TASK_OUTCOME_ABORTED and "dropped" in run.error.message
        finally:
            await worker.stop()
            await manager.stop()

    run(test)


def test_list_sectors_pages_and_filters_by_state(tmp_path: Path) -> None:
    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        try:
            stub = manager.stub
            assert stub is not None and manager.app is not None
            for n in range(1, 6):
                await manager.seed(ref(n), "pc1" if n % 2 else "pieces")
            await manager.app.store.mark_removed(MINER, 4)
            seen: list[int] = []
            token = ""
            while True:
                page = await stub.ListSectors(manager_pb2.ListSectorsRequest(page_size=2, page_token=token), timeout=5)
                assert len(page.sectors) <= 2
                seen += [s.sector.id.number for s in page.sectors]
                token = page.next_page_token
                if not token:
                    break
            assert seen == [1, 2, 3, 4, 5]
            S = manager_pb2.SectorLifecycleState
            done = await stub.ListSectors(
                manager_pb2.ListSectorsRequest(states=[S.SECTOR_LIFECYCLE_STATE_PRE_COMMIT_1_DONE]), timeout=5
            )
            assert [s.sector.id.number for s in done.sectors] == [1, 3, 5]
            removed = await stub.ListSectors(
                manager_pb2.ListSectorsRequest(states=[S.SECTOR_LIFECYCLE_STATE_REMOVED]), timeout=5
            )
            assert [s.sector.id.number for s in removed.sectors] == [4]
            for bad in (manager_pb2.ListSectorsRequest(page_token="x"), manager_pb2.ListSectorsRequest(page_size=5000)):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.ListSectors(bad, timeout=5)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await manager.stop()

    run(test)


def test_a_retry_reading_the_record_while_the_return_finishes_delivers_the_work(tmp_path: Path) -> None:
    """The Return of a work whose caller gave up writes the sector's record, then marks the work
    done. A retry that reads the record in between is answered from it; the work must still be
    delivered, not left live in SealingJobs forever (seen as a flaky restart test in CI)."""

    async def test() -> None:
        manager = await InProcessManager(tmp_path).start()
        worker = await FakeWorker("w", manager.address, cpus=1).start()
        worker.gate.methods.add("SealPreCommit2")
        try:
            assert manager.stub is not None
            await manager.seed(ref(9), "pc1", pc1_output=b"p1o")
            pc2 = manager_pb2.SealPreCommit2Request(sector=ref(9), pre_commit1_output=b"p1o")
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                await manager.stub.SealPreCommit2(pc2, timeout=0.5)  # the caller gives up; PC2 goes on
            assert cut.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            store = manager.runner.tracker.store
            save = store.save
            saved_done = asyncio.Event()

            async def slow_save(record: Any, calls: Any = ()) -> None:
                await save(record, calls)
                if record.method == "SealPreCommit2" and record.status is WorkStatus.DONE:
                    saved_done.set()
                    await asyncio.sleep(1.0)  # the record is written; the work not yet done

            store.save = slow_save  # type: ignore[method-assign]
            worker.gate.event.set()
            await asyncio.wait_for(saved_done.wait(), 10)
            again = await manager.stub.SealPreCommit2(pc2, timeout=30)  # answered from the record
            assert again.commitments.comm_r
            jobs = await manager.stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5)
            assert not jobs.jobs, jobs
            assert sum(1 for (m, _, n) in worker.ran if m == "SealPreCommit2") == 1
        finally:
            await worker.stop()
            await manager.stop()

    run(test)
