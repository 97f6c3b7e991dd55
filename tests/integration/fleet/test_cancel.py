"""Stopping work through the real manager (issue 15): an index, the manager and a worker as real
processes, 512 MiB sectors sealed through ManagerService (AddPiece first: PC1 needs the recorded
pieces).

One worker that runs one PC1 at a time (PC1_512M_MAX_CONCURRENT = 1), two sectors' PC1 sent to
the manager: the first runs, the second waits in the manager's queue behind it.
- ManagerService.Abort of the running PC1, a second or so into it: within 1 s the index holds no
  lock on its sector and the manager has placed the queued PC1 on the worker (its accounting saw
  the worker free); the aborted run is ABORTED in TaskHistory and the caller gets the error.
- The second PC1 then runs into the manager's per-task timeout (`task_timeouts`, PC1 = 6 s):
  within 1 s of the limit the worker process is idle (CPU from /proc), the index holds no lock
  on that sector, and WorkerStats shows nothing running and no CPU or memory in use; the run is
  TIMED_OUT (its retry waits out a long back-off, so the worker stays idle meanwhile).
- Neither stopped PC1 leaves a layer or tree file under its name (a background thread deletes
  the renamed files; they are gone within seconds).

The same for PC2 (cap 1): a real 512 MiB PC1 takes a minute or more here, so the two sectors'
PC1 outputs are fabricated (a cache with tree_d's root and sparse layers, as in
tests/integration/worker/test_cancel.py) and recorded in the stopped manager's database as finished AddPiece and PC1
steps (as tests/support/fake_worker.py `seed` does), then the manager is started again. Abort of the
running PC2: within 1 s no lock and the queued PC2 placed; Abort of that one: within 1 s the worker
idle, no lock, WorkerStats free; both caches keep PC1's tree_d and layers, no sealed file is left.

About 45 s in all on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import rust_core
from services.cli.sealing import add_piece_stream
from services.common.cid import unsealed_cid
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, manager_pb2, worker_pb2
from services.manager.app import open_manager_database
from services.manager.config import ManagerConfig
from tests.support import fleet as fleet_helpers
from tests.support.fleet import Fleet, StartService, WorkerSpec
from tests.support.inputs import fabricated_pc1_output
from tests.support.procstat import cpu_cores
from tests.support.records import record_steps
from tests.support.sectors import MINER, TICKET, sector
from tests.support.worker import index_stub

pytestmark = pytest.mark.slow

P512 = common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_512MIB_V1_1
SIZE = 512 << 20
PC1 = common_pb2.TASK_TYPE_PRE_COMMIT_1
PC2 = common_pb2.TASK_TYPE_PRE_COMMIT_2
JobState = manager_pb2.JobState
TIMEOUT_S = 6.0


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(step)


def idle_window(pid: int, until: float) -> float:
    """The CPU use (cores) of the first 250 ms window under 0.1 cores, trying windows back to
    back until `until` (wall clock); the last window's use when none was."""
    while True:
        used = cpu_cores(pid)
        if used < 0.1 or time.time() + 0.25 > until:
            return used


def add_zero_piece(fleet: Fleet, number: int) -> common_pb2.PieceInfo:
    """The sector's one piece: 508 MiB of zeros streamed through the manager."""
    chunk = bytes(1 << 20)
    return add_piece_stream(
        fleet.stub(), sector(number, P512), [], SIZE // 128 * 127, (chunk for _ in range(SIZE // 128 * 127 >> 20))
    )


def jobs(fleet: Fleet, number: int, task_type: int = PC1) -> list[manager_pb2.SealingJob]:
    reply = fleet.stub().SealingJobs(
        manager_pb2.SealingJobsRequest(sector=common_pb2.SectorId(miner=MINER, number=number)), timeout=10
    )
    return [j for j in reply.jobs if j.task_type == task_type]


def running(fleet: Fleet, number: int, task_type: int = PC1) -> manager_pb2.SealingJob | None:
    return next((j for j in jobs(fleet, number, task_type) if j.state == JobState.JOB_STATE_RUNNING), None)


def stat(fleet: Fleet) -> manager_pb2.WorkerStat:
    [only] = (
        fleet.stub().WorkerStats(manager_pb2.WorkerStatsRequest(worker_id=fleet.worker_ids["a"]), timeout=10).workers
    )
    return only


def free(s: manager_pb2.WorkerStat) -> bool:
    return (
        s.tasks_running == 0
        and s.tasks_assigned == 0
        and s.cpu_used == 0
        and s.mem_used_min == 0
        and s.mem_used_max == 0
    )


def locks(fleet: Fleet, number: int) -> list[Any]:
    reply = index_stub(fleet.index).StorageGetLocks(
        index_pb2.StorageGetLocksRequest(sector=common_pb2.SectorId(miner=MINER, number=number)), timeout=10
    )
    return list(reply.locks)


def pc1_runs(fleet: Fleet, number: int) -> list[manager_pb2.TaskRun]:
    return [r for r in fleet.history(task_type=PC1) if r.sector.id.number == number]


def layer_or_tree_files(store: Path, number: int) -> list[str]:
    cache = store / "cache" / f"s-t0{MINER}-{number}"
    return sorted(p.name for p in cache.glob("*")) if cache.exists() else []


@pytest.fixture
def fleet(start_service: StartService, tmp_path: Path) -> Iterator[Fleet]:
    manager_env = {
        "SECTORSTORAGE_MANAGER_TASK_TIMEOUTS": f"{{PC1 = {TIMEOUT_S:g}}}",
        # The timed-out PC1's retry waits: the worker stays idle while the test looks at it.
        "SECTORSTORAGE_MANAGER_RETRY_BACKOFF_INITIAL_S": "600",
        "SECTORSTORAGE_MANAGER_RETRY_BACKOFF_MAX_S": "600",
    }
    f = fleet_helpers.make_fleet(start_service, tmp_path, manager_env)
    f.add_worker(WorkerSpec("a", cpus=2, env={"PC1_512M_MAX_CONCURRENT": "1"}))
    f.wait_registered()
    yield f


def test_abort_and_timeout_through_the_manager_free_the_worker_for_the_queued_pc1(fleet: Fleet, tmp_path: Path) -> None:
    store = tmp_path / "store-a"
    proc = fleet.workers["a"].proc
    assert proc is not None
    pid = proc.pid
    pieces = {n: add_zero_piece(fleet, n) for n in (1, 2)}
    assert pieces[1].commp == rust_core.zero_piece_commitment(SIZE)

    def pc1(number: int) -> Any:
        request = manager_pb2.SealPreCommit1Request(sector=sector(number, P512), ticket=TICKET, pieces=[pieces[number]])
        return fleet.stub().SealPreCommit1.future(request, timeout=120)

    first = pc1(1)
    job1 = wait_for(lambda: running(fleet, 1), "the first PC1 running")
    second = pc1(2)
    wait_for(lambda: jobs(fleet, 2), "the second PC1 queued")
    wait_for(lambda: cpu_cores(pid) > 0.5, "the first PC1 using a core", step=0)
    time.sleep(1.0)
    # Behind the first, on the only worker (its PC1 cap is 1).
    assert [j.state for j in jobs(fleet, 2)] in ([JobState.JOB_STATE_QUEUED], [JobState.JOB_STATE_ASSIGNED]), jobs(
        fleet, 2
    )
    assert stat(fleet).tasks_running == 1

    # --- Abort through the manager ------------------------------------------------------------
    aborted_at = time.monotonic()
    fleet.stub().Abort(manager_pb2.AbortRequest(call_id=job1.call_id, reason="fleet test"), timeout=10)
    job2 = wait_for(lambda: running(fleet, 2), "the queued PC1 placed on the worker", timeout=5, step=0.01)
    placed_s = time.monotonic() - aborted_at
    assert locks(fleet, 1) == []
    freed_s = time.monotonic() - aborted_at
    assert placed_s < 1.0 and freed_s < 1.0, (placed_s, freed_s)
    assert job2.worker_id == fleet.worker_ids["a"]
    with pytest.raises(grpc.RpcError) as caught:
        first.result(timeout=10)
    assert "fleet test" in str(caught.value.details())
    [run1] = wait_for(lambda: pc1_runs(fleet, 1), "the aborted run in the history")
    assert run1.outcome == manager_pb2.TASK_OUTCOME_ABORTED, run1
    assert layer_or_tree_files(store, 1) == [] or all(
        n.startswith(rust_core.TRASH_PREFIX) for n in layer_or_tree_files(store, 1)
    )

    # --- The per-task timeout ----------------------------------------------------------------
    # From a little before the limit, the first moment the index and the manager show it free.
    near = job2.started_at.ToNanoseconds() / 1e9 + TIMEOUT_S - 0.5
    wait_for(lambda: time.time() > near, "the second PC1 near its limit", timeout=TIMEOUT_S + 5, step=0.05)
    wait_for(
        lambda: not locks(fleet, 2) and free(stat(fleet)), "the worker free after the timeout", timeout=10, step=0.01
    )
    free_at = time.time()
    # CPU idle: the first 250 ms window under 0.1 cores from then (the stopped PC1 took a whole
    # core; the check ends within the 1 s budget asserted below).
    idle = idle_window(pid, until=free_at + 1.0)
    idle_at = time.time()
    assert idle < 0.1, f"{idle:.2f} cores in use after the timeout"
    runs = wait_for(
        lambda: [r for r in pc1_runs(fleet, 2) if r.outcome == manager_pb2.TASK_OUTCOME_TIMED_OUT], "the timed-out run"
    )
    assert runs[0].error.code == common_pb2.TASK_ERROR_CODE_TIMED_OUT, runs[0]
    # The limit counts from the worker's start of the call (the run's started_at).
    limit_at = runs[0].started_at.ToNanoseconds() / 1e9 + TIMEOUT_S
    assert free_at - limit_at < 1.0 and idle_at - limit_at < 1.0, (free_at - limit_at, idle_at - limit_at)
    print(
        f"abort: queued PC1 placed {placed_s:.3f} s, lock gone {freed_s:.3f} s; "
        f"timeout: free {free_at - limit_at:.3f} s, idle window ended {idle_at - limit_at:.3f} s after the limit"
    )
    # Its retry waits out the back-off: nothing runs meanwhile.
    assert not running(fleet, 2) and free(stat(fleet))
    second.cancel()
    for number in (1, 2):
        wait_for(
            lambda: (
                not any(n.startswith(rust_core.TRASH_PREFIX) for n in layer_or_tree_files(store, number))
                and not list(store.glob(f"cache/{rust_core.TRASH_PREFIX}*"))
            ),
            "the stopped PC1s' files deleted",
            timeout=30,
            step=0.1,
        )
        assert layer_or_tree_files(store, number) == []


# --- PC2 -------------------------------------------------------------------------------------------


def seed_through_pc1(data_dir: Path, number: int, pc1_output: bytes) -> None:
    """Records a finished AddPiece (one zero piece filling the sector) and PC1 (`pc1_output`) for
    a sector in a stopped manager's database, as its tracker records real ones."""

    async def seed() -> None:
        db, store = open_manager_database(ManagerConfig(data_dir=data_dir))
        try:
            record = await store.sector(MINER, number)
            record = await store.claim_sector(MINER, number, P512, record.generation if record else 0)
            commp = rust_core.zero_piece_commitment(SIZE)
            piece = common_pb2.PieceInfo(size=SIZE, commp=commp, piece_cid=unsealed_cid(commp))
            ref = sector(number, P512)
            steps = [
                (
                    "AddPiece",
                    worker_pb2.WorkerServiceAddPieceHeader(sector=ref, piece_size=SIZE // 128 * 127),
                    piece.SerializeToString(),
                ),
                (
                    "SealPreCommit1",
                    worker_pb2.WorkerServiceSealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]),
                    pc1_output,
                ),
            ]
            await record_steps(store, MINER, number, P512, record.generation, steps)
        finally:
            db.close()

    asyncio.run(seed())


def test_abort_during_pc2_through_the_manager_frees_the_worker_and_keeps_pc1_output(
    start_service: StartService, tmp_path: Path
) -> None:
    f = fleet_helpers.make_fleet(start_service, tmp_path)
    f.add_worker(WorkerSpec("a", cpus=2, env={"PC2_512M_MAX_CONCURRENT": "1"}))
    f.wait_registered()
    store = tmp_path / "store-a"
    outputs = {n: fabricated_pc1_output(store, n) for n in (3, 4)}
    before = {n: layer_or_tree_files(store, n) for n in (3, 4)}
    worker = f.worker_stub("a")
    worker.StorageRedeclareLocal(worker_pb2.StorageRedeclareLocalRequest(), timeout=30)
    f.manager.stop()
    for n, out in outputs.items():
        seed_through_pc1(tmp_path / "manager", n, out)
    f.start_manager()
    f.wait_registered()
    proc = f.workers["a"].proc
    assert proc is not None
    pid = proc.pid

    def pc2(number: int) -> Any:
        request = manager_pb2.SealPreCommit2Request(sector=sector(number, P512), pre_commit1_output=outputs[number])
        return f.stub().SealPreCommit2.future(request, timeout=120)

    first = pc2(3)
    job3 = wait_for(lambda: running(f, 3, PC2), "the first PC2 running")
    second = pc2(4)
    wait_for(lambda: jobs(f, 4, PC2), "the second PC2 queued")
    wait_for(lambda: cpu_cores(pid) > 0.5, "the first PC2 using a core", step=0)
    time.sleep(1.0)
    assert [j.state for j in jobs(f, 4, PC2)] in ([JobState.JOB_STATE_QUEUED], [JobState.JOB_STATE_ASSIGNED]), jobs(
        f, 4, PC2
    )

    aborted_at = time.monotonic()
    f.stub().Abort(manager_pb2.AbortRequest(call_id=job3.call_id, reason="fleet test pc2"), timeout=10)
    job4 = wait_for(lambda: running(f, 4, PC2), "the queued PC2 placed on the worker", timeout=5, step=0.01)
    placed_s = time.monotonic() - aborted_at
    assert locks(f, 3) == []
    assert placed_s < 1.0 and time.monotonic() - aborted_at < 1.0, placed_s
    with pytest.raises(grpc.RpcError):
        first.result(timeout=10)

    wait_for(lambda: cpu_cores(pid) > 0.5, "the second PC2 using a core", step=0)
    aborted_at = time.monotonic()
    f.stub().Abort(manager_pb2.AbortRequest(call_id=job4.call_id, reason="fleet test pc2"), timeout=10)
    wait_for(lambda: not locks(f, 4) and free(stat(f)), "the worker free after the second abort", timeout=5, step=0.01)
    free_s = time.monotonic() - aborted_at
    idle = idle_window(pid, until=time.time() + 1.0 - free_s)
    idle_s = time.monotonic() - aborted_at
    assert idle < 0.1 and free_s < 1.0 and idle_s < 1.0, (idle, free_s, idle_s)
    with pytest.raises(grpc.RpcError):
        second.result(timeout=10)
    print(
        f"PC2 abort: queued PC2 placed {placed_s:.3f} s; second abort: free {free_s:.3f} s, idle window ended {idle_s:.3f} s"
    )
    # PC1's output is as it was (PC2 can run again); no tree_c, tree_r_last, p_aux or sealed file.
    for n in (3, 4):
        assert [x for x in layer_or_tree_files(store, n) if not x.startswith(rust_core.TRASH_PREFIX)] == before[n]
        assert not (store / "sealed" / f"s-t0{MINER}-{n}").exists()
    assert [r.outcome for r in f.history(task_type=PC2)] == [manager_pb2.TASK_OUTCOME_ABORTED] * 2
