"""The manager service in-process with TEST-ONLY fake workers (tests/unit/manager_fakes.py):
sealing calls through the scheduler to workers and back through Return<Method>, WorkID dedup,
restart recovery, lost workers, disabled workers, retries, abort, observability.

The same behaviours with real worker processes are in tests/integration/test_manager_e2e.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.manager.cid import unsealed_cid
from services.manager.config import ManagerSection
from services.manager.tasks import TaskType
from tests.unit.manager_fakes import FakeIndex, FakeWorker, InProcessManager

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


async def add_piece(stub: Any, number: int, data: bytes, existing: list[int] | None = None, chunk: int = 300) -> common_pb2.PieceInfo:
    async def messages() -> Any:
        yield manager_pb2.AddPieceRequest(
            header=manager_pb2.AddPieceHeader(sector=ref(number), existing_piece_sizes=existing or [], piece_size=len(data))
        )
        for start in range(0, len(data), chunk):
            yield manager_pb2.AddPieceRequest(chunk=common_pb2.Chunk(offset=start, data=data[start : start + chunk]))

    reply = await stub.AddPiece(messages(), timeout=20)
    return reply.piece


async def seal(stub: Any, number: int) -> bytes:
    """The whole pipeline for one 2 KiB sector; returns the proof."""
    await add_piece(stub, number, bytes([number % 251]) * 2032)
    pieces = [full_piece(number)]
    p1 = await stub.SealPreCommit1(manager_pb2.SealPreCommit1Request(sector=ref(number), ticket=TICKET, pieces=pieces), timeout=20)
    p2 = await stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref(number), pre_commit1_output=p1.pre_commit1_output), timeout=20)
    c1 = await stub.SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref(number), ticket=TICKET, seed=SEED, pieces=pieces, comm_r=p2.commitments.comm_r, comm_d=p2.commitments.comm_d
        ),
        timeout=20,
    )
    c2 = await stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref(number), commit1_output=c1.commit1_output), timeout=20)
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
            await FakeWorker("gpu", manager.address, index, cpus=32, gpus=1, task_types=[T.COMMIT_2, T.PRE_COMMIT_2, T.COMMIT_1, T.FINALIZE, T.FETCH]).start(),
            await FakeWorker("nopc1", manager.address, index, cpus=16, task_types=[t for t in T if t is not T.PRE_COMMIT_1]).start(),
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
