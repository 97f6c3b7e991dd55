"""With the index down, the manager places nothing that needs to know where a sector's files are
(C1 would land on a worker without them and fail, retry after retry): the request waits,
SchedDiag says the index is why, and it runs on the holder as soon as the index is back."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from services.cli.sealing import add_piece
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from tests.support.fleet import Fleet, WorkerSpec, fleet  # noqa: F401
from tests.support.sectors import P2K, SEED, TICKET, piece_data, sector


def test_no_c1_is_placed_by_guess_while_the_index_is_down(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4))
    fleet.add_worker(WorkerSpec("b", cpus=4))
    fleet.wait_registered()
    stub = fleet.stub()
    ref = sector(1)
    piece = add_piece(stub, ref, piece_data(1, P2K))
    p1 = stub.SealPreCommit1(manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=60)
    p2 = stub.SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=60
    )
    holder = fleet.name_of(
        next(r.worker_id for r in fleet.history(sector=ref.id) if r.task_type == common_pb2.TASK_TYPE_PRE_COMMIT_2)
    )

    fleet.index.kill()
    request = manager_pb2.SealCommit1Request(
        sector=ref, ticket=TICKET, seed=SEED, pieces=[piece], comm_r=p2.commitments.comm_r, comm_d=p2.commitments.comm_d
    )
    with ThreadPoolExecutor(1) as pool:
        c1 = pool.submit(stub.SealCommit1, request, timeout=120)
        deadline = time.monotonic() + 30
        while True:
            waiting = [
                r
                for r in stub.SchedDiag(manager_pb2.SchedDiagRequest(force_sched=True), timeout=10).requests
                if r.sector.id.number == 1
            ]
            if waiting and waiting[0].reason == manager_pb2.WAIT_REASON_INDEX_UNAVAILABLE:
                break
            assert time.monotonic() < deadline, waiting
            time.sleep(0.2)
        time.sleep(3)  # several scheduling passes: still nothing placed anywhere
        placed = [
            r for r in fleet.history(sector=ref.id) if r.task_type == common_pb2.TASK_TYPE_COMMIT_1 and r.worker_id
        ]
        assert not placed, placed
        assert not c1.done()
        fleet.start_index()
        assert c1.result(timeout=60).commit1_output
    runs = [r for r in fleet.history(sector=ref.id) if r.task_type == common_pb2.TASK_TYPE_COMMIT_1 and r.worker_id]
    # Only on the holder (a first try may meet the index still starting up, and is retried there).
    assert {fleet.name_of(r.worker_id) for r in runs} == {holder}, [(r.outcome, r.error.message) for r in runs]
    assert runs[0].outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED
    assert all(r.error.code == common_pb2.TASK_ERROR_CODE_TEMPORARY for r in runs[1:]), [r.error for r in runs]
