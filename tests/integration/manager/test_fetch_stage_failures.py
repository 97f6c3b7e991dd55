"""The FETCH stage when its worker dies after the fetch (issue 19): the PC2 that the fetch
prepared is requeued, not lost, and not run from a worker that lacks its input. The fetched
cache lives only on the worker it was moved to, so the PC2 waits for it (SchedDiag says why)
and runs there once it is back, without fetching again; the client's call returns commitments
that prove."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from tests.support.fleet import Fleet, WorkerSpec, fleet  # noqa: F401
from tests.support.sealing import commit, precommit
from tests.support.sectors import sector

JobState = manager_pb2.JobState


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def test_pc2_survives_its_fetched_to_worker_dying_after_the_fetch(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("pc1", cpus=2, task_types=["AP", "PC1"]))
    # PC2 waits 30 s before it computes on its first run: the window in which the worker dies.
    fleet.add_worker(
        WorkerSpec(
            "pc2",
            cpus=2,
            task_types=["PC2", "C1", "C2", "FIN", "GET"],
            env={"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "PC2=30"},
        )
    )
    fleet.wait_registered()
    ref = sector(11)
    piece, p1o = precommit(fleet, ref)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            fleet.stub().SealPreCommit2,
            manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o),
            timeout=180,
        )

        def pc2_running() -> bool:
            jobs = fleet.stub().SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs
            return any(
                j.task_type == common_pb2.TASK_TYPE_PRE_COMMIT_2 and j.state == JobState.JOB_STATE_RUNNING for j in jobs
            )

        _wait_for("PC2 runs on the fetched-to worker", pc2_running)
        fetches = fleet.history(sector=ref.id, task_type=common_pb2.TASK_TYPE_FETCH)
        assert [(fleet.name_of(r.worker_id), r.outcome) for r in fetches] == [
            ("pc2", manager_pb2.TASK_OUTCOME_SUCCEEDED)
        ]
        # The cache was moved: it is on the dead worker's disk only.
        name = f"s-t0{ref.id.miner}-{ref.id.number}"
        assert any((fleet.tmp / "store-pc2" / "cache" / name).glob("sc-02-data-layer-*.dat"))
        assert not (fleet.tmp / "store-pc1" / "cache" / name).exists()
        proc = fleet.workers["pc2"].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        fleet.workers["pc2"].kill()

        # The only copy of the cache is on the dead worker: the PC2 is requeued and waits; it is
        # not placed on pc1, which no longer holds the cache and cannot run PC2 anyway.
        def requeued() -> bool:
            runs = sorted(
                fleet.history(sector=ref.id, task_type=common_pb2.TASK_TYPE_PRE_COMMIT_2), key=lambda r: r.attempt
            )
            return [(r.outcome, r.worker_id) for r in runs] == [
                (manager_pb2.TASK_OUTCOME_REQUEUED, fleet.worker_ids["pc2"]),
                (manager_pb2.TASK_OUTCOME_RUNNING, ""),  # the second attempt, not placed
            ]

        _wait_for("the PC2 on the dead worker is requeued", requeued)
        time.sleep(1)
        assert not future.done(), "the client's PC2 must wait for its input, not fail"
        queue = fleet.stub().SchedDiag(manager_pb2.SchedDiagRequest(force_sched=True), timeout=5).requests
        waiting = [q for q in queue if q.task_type == common_pb2.TASK_TYPE_PRE_COMMIT_2]
        assert len(waiting) == 1 and waiting[0].sector.id == ref.id
        assert [r.worker_id for r in waiting[0].rejections] == [fleet.worker_ids["pc1"]]

        # The worker comes back (same id and paths), now without the delay: PC2 runs there.
        fleet.specs["pc2"].env = {}
        fleet.start_worker("pc2")
        p2 = future.result()
    runs = sorted(fleet.history(sector=ref.id, task_type=common_pb2.TASK_TYPE_PRE_COMMIT_2), key=lambda r: r.attempt)
    assert [(fleet.name_of(r.worker_id), r.outcome) for r in runs] == [
        ("pc2", manager_pb2.TASK_OUTCOME_REQUEUED),
        ("pc2", manager_pb2.TASK_OUTCOME_SUCCEEDED),
    ]
    # The restarted worker holds the cache: no second fetch.
    fetches = fleet.history(sector=ref.id, task_type=common_pb2.TASK_TYPE_FETCH)
    assert len(fetches) == 1
    commit(fleet, ref, piece, p2.commitments)  # C1, C2 and VerifySeal on the result
