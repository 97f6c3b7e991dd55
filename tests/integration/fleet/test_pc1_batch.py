"""PC1 batches through the whole fleet (issue 20): an index, a manager and a worker with
`pc1_batch_size = 2`, two 8 MiB sectors sealed at once by clients of the manager. The manager
places and tracks each PC1 as usual; the worker runs the two as ONE rust_core batch (its log
names both calls, which are the manager's PC1 calls of the two sectors), each call's result
comes back through its own Return, and both sectors go on through PC2, C1, C2 (VerifySeal) and
Finalize.

A client's ManagerService.Abort of one sector's PC1 while the batch labels: that caller gets
ABORTED, the stopped sector's cache is empty, and the SAME rust_core call finishes the other
sector (one batch started, its `stopped` naming the aborted call), which then seals and verifies."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

import rust_core
from services.cli.sealing import add_piece
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from tests.support.fleet import Fleet, WorkerSpec, fleet  # noqa: F401
from tests.support.sealing import commit, seal_sector
from tests.support.sectors import MINER, P8M, TICKET, piece_data, sector

pytestmark = pytest.mark.slow


def add_batcher(fleet: Fleet) -> None:  # noqa: F811
    """The fleet's one worker: PC1 batches of 2, a window long enough for both calls."""
    fleet.add_worker(
        WorkerSpec(
            "batcher",
            cpus=4,
            env={"SECTORSTORAGE_WORKER_PC1_BATCH_SIZE": "2", "SECTORSTORAGE_WORKER_PC1_BATCH_WAIT_MS": "60000"},
        )
    )
    fleet.wait_registered()


def test_two_sectors_sealed_through_the_manager_share_one_pc1_batch(fleet: Fleet) -> None:  # noqa: F811
    add_batcher(fleet)
    refs = [sector(n, P8M) for n in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda r: seal_sector(fleet, r), refs))

    pc1_runs = fleet.history(task_type=common_pb2.TASK_TYPE_PRE_COMMIT_1)
    assert sorted(r.sector.id.number for r in pc1_runs) == [1, 2]
    assert all(r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED for r in pc1_runs)
    pc1_calls = sorted(f"call:{r.call_id.sector.miner}-{r.call_id.sector.number}-{r.call_id.id}" for r in pc1_runs)
    batches = [entry for _, entry in fleet.worker_log_events("pc1 batch done")]
    assert len(batches) == 1, batches
    assert batches[0]["sectors"] == 2 and sorted(batches[0]["calls"]) == pc1_calls
    assert not fleet.worker_log_events("task failed")


def test_a_client_aborting_one_sectors_pc1_mid_batch_leaves_the_other_sealing(fleet: Fleet, tmp_path: Path) -> None:  # noqa: F811
    add_batcher(fleet)
    refs = {n: sector(n, P8M) for n in (1, 2)}
    stub = fleet.stub()
    pieces = {n: add_piece(stub, ref, piece_data(n, P8M)) for n, ref in refs.items()}
    futures = {
        n: stub.SealPreCommit1.future(
            manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[pieces[n]]), timeout=120
        )
        for n, ref in refs.items()
    }
    deadline = time.monotonic() + 60
    while not fleet.worker_log_events("pc1 batch started"):
        assert time.monotonic() < deadline, "the batch never started"
        time.sleep(0.005)
    [job] = [
        j
        for j in stub.SealingJobs(
            manager_pb2.SealingJobsRequest(sector=common_pb2.SectorId(miner=MINER, number=1)), timeout=10
        ).jobs
        if j.task_type == common_pb2.TASK_TYPE_PRE_COMMIT_1
    ]
    stub.Abort(manager_pb2.AbortRequest(call_id=job.call_id, reason="client changed its mind"), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        futures[1].result(timeout=30)
    assert "client changed its mind" in str(caught.value.details())
    p1 = futures[2].result(timeout=120).pre_commit1_output

    [(_, done)] = fleet.worker_log_events("pc1 batch done")
    assert len(fleet.worker_log_events("pc1 batch started")) == 1, "the batch was restarted"
    key1 = f"call:{MINER}-1-{job.call_id.id}"
    assert done["sectors"] == 2 and done["stopped"] == [key1], done
    cache1 = tmp_path / "store-batcher" / "cache" / f"s-t0{MINER}-1"
    assert not cache1.exists() or all(p.name.startswith(rust_core.TRASH_PREFIX) for p in cache1.iterdir())
    runs = {r.sector.id.number: r.outcome for r in fleet.history(task_type=common_pb2.TASK_TYPE_PRE_COMMIT_1)}
    assert runs == {1: manager_pb2.TASK_OUTCOME_ABORTED, 2: manager_pb2.TASK_OUTCOME_SUCCEEDED}, runs

    p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=refs[2], pre_commit1_output=p1), timeout=120)
    commit(fleet, refs[2], pieces[2], p2.commitments)
