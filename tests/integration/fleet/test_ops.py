"""Fleet operations (issue 9) with real processes: an index, a manager and workers talking gRPC.

- assigners: a batch of AddPiece on two idle identical workers lands round-robin under
  `spread`, and on the least loaded (the same idle worker each time) under `utilization`;
- SIGTERM drain: a worker told to stop in the middle of a task finishes it, its result reaches
  the manager, nothing new is placed on it meanwhile, and it exits 0;
- per-task timeout: a PC1 that hangs on its first attempt is stopped on the worker at its
  `task_timeouts` limit, its resources are freed, and the retry seals the sector;
- caps under a burst: 50 sectors' AddPiece + PC1 on two workers capped at 2 PC1 each (one cap
  from the worker's config, one from its environment): WorkerStats never shows more, the runs'
  start/end overlaps never exceed it, no worker refused a task, every sector got its PC1;
- PoSt first: with 100 PC1s waiting behind a worker whose CPUs are all held by hung PC1s, a
  Window PoSt on a sector that worker holds is answered within its deadline; once a dedicated
  PoSt worker (only WDP/WNP, same storage) joins, the PoSt work goes to it;
- cordon/drain during a batch: DrainWorker returns once the worker's running tasks ended, nothing
  is placed on it from then on (PC1s of sectors whose piece it holds run elsewhere, fetching
  the piece), every sector of the batch completes, and after UncordonWorker it takes work again.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.cli.sealing import add_piece
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, worker_pb2, worker_pb2_grpc
from tests.support.auth import token
from tests.support.fleet import FAST_WORKER_ENV, Fleet, StartService, WorkerSpec, fleet_with_workers
from tests.support.sealing import check_no_overcommit, precommit, seal_sector
from tests.support.sectors import P2K, TICKET, piece_data, sector

JobState = manager_pb2.JobState
PC1 = common_pb2.TASK_TYPE_PRE_COMMIT_1


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pc1_future(fleet: Fleet, number: int, piece: common_pb2.PieceInfo, timeout: float = 60) -> grpc.Future[Any]:
    request = manager_pb2.SealPreCommit1Request(sector=sector(number), ticket=TICKET, pieces=[piece])
    return fleet.stub().SealPreCommit1.future(request, timeout=timeout)  # type: ignore[no-any-return]


def jobs_on(fleet: Fleet, name: str, state: int) -> list[manager_pb2.SealingJob]:
    jobs = fleet.stub().SealingJobs(manager_pb2.SealingJobsRequest(worker_id=fleet.worker_ids[name]), timeout=10).jobs
    return [j for j in jobs if j.state == state]


def worker_stat(fleet: Fleet, name: str) -> manager_pb2.WorkerStat:
    stats = fleet.stub().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers
    return next(s for s in stats if s.info.worker_id == fleet.worker_ids[name])


@pytest.mark.parametrize("assigner", ["spread", "utilization"])
def test_assigner_placement_of_a_batch(start_service: StartService, tmp_path: Path, assigner: str) -> None:
    fleet = fleet_with_workers(
        start_service,
        tmp_path,
        {"SECTORSTORAGE_MANAGER_ASSIGNER": assigner},
        [WorkerSpec("a", cpus=2), WorkerSpec("b", cpus=2)],
    )
    for n in range(1, 9):  # one after the other: both workers are idle at every placement
        add_piece(fleet.stub(), sector(n), piece_data(n, P2K))
    runs = sorted(fleet.history(task_type=common_pb2.TASK_TYPE_ADD_PIECE), key=lambda r: r.sector.id.number)
    placed = [fleet.name_of(r.worker_id) for r in runs]
    assert len(placed) == 8
    if assigner == "spread":
        # Round-robin: never the same worker twice in a row, four each.
        assert all(x != y for x, y in zip(placed, placed[1:])), placed
        assert placed.count("a") == placed.count("b") == 4
    else:
        # Least loaded first; equal loads (both idle) go to the same worker every time.
        assert len(set(placed)) == 1, placed


def test_sigterm_drains_the_worker_then_exits(start_service: StartService, tmp_path: Path) -> None:
    slow = {"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "PC1=3", "SECTORSTORAGE_WORKER_DRAIN_TIMEOUT_S": "30"}
    fleet = fleet_with_workers(start_service, tmp_path, {}, [WorkerSpec("a", cpus=2, env=slow)])
    piece = add_piece(fleet.stub(), sector(1), piece_data(1, P2K))
    pc1 = pc1_future(fleet, 1, piece)
    wait_for(lambda: jobs_on(fleet, "a", JobState.JOB_STATE_RUNNING), "PC1 running on a")
    fleet.add_worker(WorkerSpec("b", cpus=2))
    fleet.wait_registered()

    proc = fleet.workers["a"].proc
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    sigterm_at = time.time()
    # Its immediate heartbeat makes it unschedulable (shown draining) while still connected.
    wait_for(lambda: worker_stat(fleet, "a").state.draining, "a reported draining", timeout=5)
    assert worker_stat(fleet, "a").state.connected
    # New work goes elsewhere while a finishes its PC1.
    add_piece(fleet.stub(), sector(2), piece_data(2, P2K))
    assert pc1.result().pre_commit1_output
    assert proc.wait(30) == 0

    runs = fleet.history()
    pc1_runs = [r for r in runs if r.task_type == PC1]
    assert [(fleet.name_of(r.worker_id), r.outcome) for r in pc1_runs] == [("a", manager_pb2.TASK_OUTCOME_SUCCEEDED)]
    [ap2] = [r for r in runs if r.sector.id.number == 2]
    assert fleet.name_of(ap2.worker_id) == "b"
    late = [r for r in runs if fleet.name_of(r.worker_id) == "a" and r.started_at.ToNanoseconds() / 1e9 > sigterm_at]
    assert not late
    assert any('"stopping: drained"' in line and '"finished": true' in line for line in fleet.workers["a"].output)


def test_task_timeout_stops_a_hung_task_and_the_retry_seals(start_service: StartService, tmp_path: Path) -> None:
    manager_env = {
        "SECTORSTORAGE_MANAGER_TASK_TIMEOUTS": "{PC1 = 2}",
        "SECTORSTORAGE_MANAGER_RETRY_BACKOFF_INITIAL_S": "1.5",
    }
    hang = {"SECTORSTORAGE_TEST_FAULT_TASK_HANG": "PC1=1"}  # only the first attempt hangs
    fleet = fleet_with_workers(start_service, tmp_path, manager_env, [WorkerSpec("a", cpus=2, env=hang)])
    with ThreadPoolExecutor(1) as pool:
        sealed = pool.submit(seal_sector, fleet, sector(1))
        wait_for(lambda: jobs_on(fleet, "a", JobState.JOB_STATE_RUNNING), "PC1 running")
        started = time.monotonic()
        timed_out = wait_for(
            lambda: [r for r in fleet.history(task_type=PC1) if r.outcome == manager_pb2.TASK_OUTCOME_TIMED_OUT],
            "the timed-out run",
        )
        # The worker stopped it at its limit (2 s), well before the manager's own grace (30 s).
        assert time.monotonic() - started < 10
        # Its resources are freed while the retry waits out its back-off.
        stat = worker_stat(fleet, "a")
        assert stat.tasks_running == 0 and stat.cpu_used == 0 and stat.mem_used_min == 0, stat
        sealed.result(timeout=60)
    [failed] = timed_out
    assert failed.attempt == 1 and failed.error.code == common_pb2.TASK_ERROR_CODE_TIMED_OUT
    runs = sorted(fleet.history(task_type=PC1), key=lambda r: r.attempt)
    assert [(r.attempt, r.outcome) for r in runs] == [
        (1, manager_pb2.TASK_OUTCOME_TIMED_OUT),
        (2, manager_pb2.TASK_OUTCOME_SUCCEEDED),
    ]
    assert worker_stat(fleet, "a").tasks_running == 0


def test_caps_hold_under_a_burst_of_50_sectors(start_service: StartService, tmp_path: Path) -> None:
    slow = {"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "PC1=0.15"}  # PC1s overlap
    fleet = fleet_with_workers(
        start_service,
        tmp_path,
        {},
        [
            WorkerSpec("cfg", cpus=4, resources={"PC1_2K_MAX_CONCURRENT": 2}, env=slow),
            WorkerSpec("env", cpus=4, env={**slow, "PC1_2K_MAX_CONCURRENT": "2"}),
        ],
    )
    seen: dict[str, int] = {}
    caps: set[int] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for stat in fleet.stub().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers:
                for usage in stat.tasks:
                    if usage.task_type == PC1:
                        name = fleet.name_of(stat.info.worker_id)
                        seen[name] = max(seen.get(name, 0), usage.running)
                        caps.add(usage.max_concurrent)
            time.sleep(0.02)

    def pc1(n: int) -> bytes:
        piece = add_piece(fleet.stub(), sector(n), piece_data(n, P2K))
        return bytes(pc1_future(fleet, n, piece, timeout=120).result().pre_commit1_output)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(25) as pool:
            outputs = list(pool.map(pc1, range(1, 51)))
    finally:
        stop.set()
        sampler.join()
    assert all(outputs) and len(outputs) == 50
    assert caps == {2}
    assert seen and max(seen.values()) == 2, seen  # the cap was reached, never passed
    runs = fleet.history()
    assert all(r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED for r in runs)  # no worker refused one
    assert sorted(r.sector.id.number for r in runs if r.task_type == PC1) == list(range(1, 51))
    check_no_overcommit(fleet, runs, {("cfg", PC1): 2, ("env", PC1): 2})


def start_worker(
    fleet: Fleet, name: str, env: dict[str, str], data_dir: Path, task_types: str = ""
) -> worker_pb2_grpc.WorkerServiceStub:
    """A worker process under `name` (a restart when data_dir is an existing worker's)."""
    env = {**FAST_WORKER_ENV, "SECTORSTORAGE_WORKER_CPUS": "2", "SECTORSTORAGE_WORKER_NAME": name, **env}
    if task_types:
        env["SECTORSTORAGE_WORKER_TASK_TYPES"] = task_types
    proc = fleet.start_service(
        "worker", "--index", fleet.index.address, "--manager", fleet.address, env=env, data_dir=data_dir
    )
    stub = worker_pb2_grpc.WorkerServiceStub(sync_channel(proc.address, token()))
    fleet.workers[name] = proc
    fleet.worker_runs.append((name, proc))
    fleet.worker_ids[name] = stub.Info(worker_pb2.InfoRequest(), timeout=10).info.worker_id
    fleet.cpus[fleet.worker_ids[name]] = 2
    return stub


def test_post_is_answered_within_its_deadline_behind_a_sealing_backlog(
    start_service: StartService, tmp_path: Path
) -> None:
    fleet = fleet_with_workers(start_service, tmp_path, {}, [WorkerSpec("seal", cpus=2)])
    stub = fleet.stub()
    ref = sector(1)
    piece, p1o = precommit(fleet, ref)
    p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=60)
    proving = [common_pb2.ProvingSector(sector=ref, comm_r=p2.commitments.comm_r)]
    window = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_2KIB_V1
    randomness = bytes(range(32))

    # 102 sectors get their piece (a PC1 needs it: the sector lifecycle refuses PC1 before).
    backlog_sectors = range(100, 202)
    with ThreadPoolExecutor(8) as pool:
        pieces = dict(
            zip(
                backlog_sectors,
                pool.map(lambda n: add_piece(fleet.stub(), sector(n), piece_data(n, P2K)), backlog_sectors),
            )
        )
    # The holder comes back with every PC1 hanging: its 2 CPUs get held by 2 PC1s, 100 wait.
    assert fleet.workers["seal"].stop(timeout=30) == 0
    hang = {"SECTORSTORAGE_TEST_FAULT_TASK_HANG": "PC1=1", "SECTORSTORAGE_WORKER_DRAIN_TIMEOUT_S": "0"}
    start_worker(fleet, "seal", hang, tmp_path / "w-seal")
    fleet.wait_registered()
    backlog = [pc1_future(fleet, n, pieces[n], timeout=120) for n in backlog_sectors]
    wait_for(lambda: len(jobs_on(fleet, "seal", JobState.JOB_STATE_RUNNING)) == 2, "2 PC1s holding the CPUs")
    wait_for(
        lambda: (
            sum(
                j.state == JobState.JOB_STATE_QUEUED
                for j in stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=10).jobs
            )
            == 100
        ),
        "100 PC1s queued",
    )

    def window_post(deadline_s: float, randomness: bytes = randomness) -> float:
        started = time.monotonic()
        post = stub.GenerateWindowPoSt(
            manager_pb2.GenerateWindowPoStRequest(proof_type=window, randomness=randomness, sectors=proving),
            timeout=deadline_s,
        )
        took = time.monotonic() - started
        assert len(post.proofs) == 1 and not post.skipped
        verdict = stub.VerifyWindowPoSt(
            manager_pb2.VerifyWindowPoStRequest(randomness=randomness, sectors=proving, proofs=post.proofs), timeout=30
        )
        assert verdict.valid, verdict.reason
        return took

    assert window_post(deadline_s=5) < 5
    assert fleet.worker_log_events("vanilla proofs")  # on "seal", beside its sealing work

    # A dedicated PoSt worker on the same (shared) storage takes the PoSt work from now on.
    post_stub = start_worker(fleet, "post", {}, tmp_path / "w-post", task_types='["WDP", "WNP"]')
    post_stub.StorageAttachLocal(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "store-seal")), timeout=30)
    fleet.wait_registered()
    window_post(deadline_s=5, randomness=bytes(range(1, 33)))  # another challenge: nothing stored for it
    assert [name for name, _ in fleet.worker_log_events("vanilla proofs")] == ["seal", "post"]
    assert (
        sum(
            j.state == JobState.JOB_STATE_QUEUED
            for j in stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=10).jobs
        )
        == 100
    )
    for future in backlog:
        future.cancel()
    # SIGTERM with drain_timeout_s = 0: the hung PC1s are stopped and handed back at once.
    assert fleet.workers["seal"].stop(timeout=30) == 0


def test_drain_during_a_batch_loses_nothing(start_service: StartService, tmp_path: Path) -> None:
    slow = {"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "PC1=0.6"}
    fleet = fleet_with_workers(
        start_service,
        tmp_path,
        {"SECTORSTORAGE_MANAGER_ASSIGNER": "spread"},
        [
            WorkerSpec("a", cpus=2, env=slow),
            WorkerSpec("b", cpus=2, env=slow),
        ],
    )
    stub = fleet.stub()

    def pc1(n: int) -> bytes:
        piece = add_piece(fleet.stub(), sector(n), piece_data(n, P2K))
        return bytes(pc1_future(fleet, n, piece, timeout=120).result().pre_commit1_output)

    with ThreadPoolExecutor(12) as pool:
        batch = [pool.submit(pc1, n) for n in range(1, 13)]
        wait_for(lambda: jobs_on(fleet, "a", JobState.JOB_STATE_RUNNING), "a busy with the batch")
        reply = stub.DrainWorker(manager_pb2.DrainWorkerRequest(worker_id=fleet.worker_ids["a"]), timeout=60)
        drained_at = time.time()
        assert reply.drained and not reply.remaining and reply.state.cordoned
        assert not jobs_on(fleet, "a", JobState.JOB_STATE_RUNNING) and not jobs_on(
            fleet, "a", JobState.JOB_STATE_ASSIGNED
        )
        outputs = [f.result() for f in batch]
    assert all(outputs)
    runs = fleet.history()
    assert all(r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED for r in runs)
    assert sorted(r.sector.id.number for r in runs if r.task_type == PC1) == list(range(1, 13))
    on_a = [r for r in runs if fleet.name_of(r.worker_id) == "a"]
    assert on_a and all(r.finished_at.ToNanoseconds() / 1e9 <= drained_at for r in on_a)
    after = [r for r in runs if r.started_at.ToNanoseconds() / 1e9 > drained_at]
    assert after and {fleet.name_of(r.worker_id) for r in after} == {"b"}

    stub.UncordonWorker(manager_pb2.UncordonWorkerRequest(worker_id=fleet.worker_ids["a"]), timeout=10)
    for n in (20, 21):  # spread: b was placed on last, so a gets the next one
        add_piece(stub, sector(n), piece_data(n, P2K))
    assert "a" in {fleet.name_of(r.worker_id) for r in fleet.history() if r.sector.id.number in (20, 21)}
