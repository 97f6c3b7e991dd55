"""A network cut between a worker and the manager, made by freezing the worker process
(SIGSTOP) in the middle of a task for longer than the manager's heartbeat timeout, then letting
it go on (SIGCONT): the manager re-queues the task on another worker, the caller gets that
result, and the frozen worker's late result is taken as a duplicate, not applied a second time.

The task is a C2 made slow with the worker's test fault hook (SECTORSTORAGE_TEST_FAULT_TASK_DELAY)
so that the freeze always lands inside it.
"""

from __future__ import annotations

import os
import signal
import time

from services.cli.sealing import add_piece
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from tests.faults.helpers import lapsed_locks, outcome_counts, wait_no_locks
from tests.support.fleet import MANAGER_ENV, Fleet, WorkerSpec
from tests.support.sectors import P2K, SEED, TICKET, piece_data, sector

HEARTBEAT_TIMEOUT_S = float(MANAGER_ENV["SECTORSTORAGE_MANAGER_HEARTBEAT_TIMEOUT_S"])


def wait_for(what: str, check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_frozen_worker_is_replaced_and_its_late_result_is_not_applied_twice(fleet: Fleet) -> None:
    # "slow" takes only C2 (so it is preferred for C2: fewest task types), and its C2 waits 4 s.
    fleet.add_worker(WorkerSpec("slow", cpus=2, task_types=["C2"], env={"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "C2=4"}))
    fleet.add_worker(WorkerSpec("b", cpus=2))
    fleet.wait_registered()
    stub = fleet.stub()
    ref = sector(1, P2K)
    data = piece_data(1, P2K)

    # Up to C1 on "b" (the only worker with those types), then C2, which goes to "slow".
    piece = add_piece(stub, ref, data)
    p1 = stub.SealPreCommit1(manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=60)
    p2 = stub.SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=60
    )
    comm = p2.commitments
    c1 = stub.SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref, ticket=TICKET, seed=SEED, pieces=[piece], comm_r=comm.comm_r, comm_d=comm.comm_d
        ),
        timeout=60,
    )
    future = stub.SealCommit2.future(
        manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=60
    )

    def c2_running_on_slow() -> bool:
        jobs = stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs
        return any(
            j.task_type == common_pb2.TASK_TYPE_COMMIT_2
            and j.state == manager_pb2.JOB_STATE_RUNNING
            and j.worker_id == fleet.worker_ids["slow"]
            for j in jobs
        )

    wait_for("C2 running on the slow worker", c2_running_on_slow)
    slow = fleet.workers["slow"].proc
    assert slow is not None
    os.kill(slow.pid, signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        # The manager gives up on it after the heartbeat timeout and runs C2 on "b".
        proof = future.result(timeout=60).proof
        # (counted from its last heartbeat, up to one interval before the freeze)
        assert time.monotonic() - frozen_at >= HEARTBEAT_TIMEOUT_S - 1.0
    finally:
        os.kill(slow.pid, signal.SIGCONT)
    verdict = stub.VerifySeal(
        manager_pb2.VerifySealRequest(
            sector=ref, comm_r=comm.comm_r, comm_d=comm.comm_d, ticket=TICKET, seed=SEED, proof=proof
        ),
        timeout=30,
    )
    assert verdict.valid

    # The resumed worker finishes its stale C2 (or is told to stop it) and returns the late
    # result to the manager, which takes it as a duplicate; the worker is back.
    def slow_returned_its_call() -> bool:
        return any(
            name == "slow" and e.get("method") == "ReturnSealCommit2"
            for name, e in fleet.worker_log_events("result delivered")
        )

    wait_for("the resumed worker to return its late C2 result", slow_returned_its_call)
    wait_for(
        "the resumed worker to reconnect",
        lambda: (
            fleet.stub()
            .WorkerStats(manager_pb2.WorkerStatsRequest(worker_id=fleet.worker_ids["slow"]), timeout=5)
            .workers[0]
            .state.connected
        ),
    )
    time.sleep(1.5)  # a few heartbeats and a result collection: time for a second application

    runs = fleet.history(task_type=common_pb2.TASK_TYPE_COMMIT_2)
    assert [
        (fleet.name_of(r.worker_id), manager_pb2.TaskOutcome.Name(r.outcome))
        for r in sorted(runs, key=lambda r: r.attempt)
    ] == [
        ("slow", "TASK_OUTCOME_REQUEUED"),
        ("b", "TASK_OUTCOME_SUCCEEDED"),
    ]
    # No other call of the sector ran twice, and the manager holds nothing for it any more.
    others = fleet.history(sector=ref.id)
    assert all(
        r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED for r in others if r.task_type != common_pb2.TASK_TYPE_COMMIT_2
    )
    assert not [
        j for j in stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs if j.sector.id.number == 1
    ]
    assert not lapsed_locks(fleet) and not wait_no_locks(fleet, 10)
    print("freeze:", outcome_counts(runs))
