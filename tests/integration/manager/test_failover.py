"""Several managers on one PostgreSQL database (issue 17), with real processes: one leads, the
other stands by and serves the API by forwarding it; kill -9 of the leader in the middle of a
task, and the standby leads within the failover budget, the worker follows it, the running task
is neither lost nor started again, and the client's retried call gets the one result. A second
manager on a SQLite file another manager holds is refused at start, naming PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from services.cli.sealing import add_piece
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, manager_pb2_grpc
from services.devfleet import console_script
from tests.support.auth import TEST_SECRET, token
from tests.support.fleet import StartService, WorkerSpec, make_fleet, retrying
from tests.support.sealing import commit
from tests.support.sectors import TICKET, piece_data, sector

JobState = manager_pb2.JobState
LEASE_S = 2.0
FAILOVER_BUDGET_S = 10.0


def gauges(metrics_address: str) -> dict[str, float]:
    """The unlabelled samples of a service's /metrics page."""
    body = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def _until(what: str, check: object, timeout: float) -> float:
    """Polls `check` until it is true; returns the seconds it took."""
    start = time.monotonic()
    while True:
        try:
            if check():  # type: ignore[operator]
                return time.monotonic() - start
        except grpc.RpcError:
            pass
        assert time.monotonic() - start < timeout, f"timed out after {timeout} s waiting until {what}"
        time.sleep(0.05)


def pc1_running(stub: manager_pb2_grpc.ManagerServiceStub) -> bool:
    """A PC1 runs on a worker, as the manager behind `stub` sees its jobs."""
    jobs = stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs
    return any(j.task_type == common_pb2.TASK_TYPE_PRE_COMMIT_1 and j.state == JobState.JOB_STATE_RUNNING for j in jobs)


@pytest.mark.postgres
def test_kill_9_of_the_leader_fails_over_without_lost_or_doubled_work(
    start_service: StartService, tmp_path: Path, postgres: object
) -> None:
    url = postgres.new_database()  # type: ignore[attr-defined]
    fleet = make_fleet(
        start_service,
        tmp_path,
        {"SECTORSTORAGE_DATABASE_URL": url, "SECTORSTORAGE_MANAGER_LEADER_LEASE_S": str(LEASE_S)},
    )
    standby = fleet.add_manager()
    first_port, standby_port = fleet.port, fleet.standbys[0][0]
    # PC1 holds the worker for 4 s: the window in which the leader dies.
    fleet.add_worker(WorkerSpec("a", cpus=2, env={"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "PC1=4"}))
    fleet.wait_registered()
    leader_stub = fleet.stub()
    standby_stub = manager_pb2_grpc.ManagerServiceStub(sync_channel(standby.address, token()))

    # The standby answers the API by forwarding it to the leader, streams included: the worker
    # registered with the leader shows up, and a piece uploaded through it is stored.
    stats = standby_stub.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=10).workers
    assert [s.state.connected for s in stats] == [True]
    ref = sector(1)
    piece = add_piece(standby_stub, ref, piece_data(1, ref.proof_type))
    request = manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece])

    with ThreadPoolExecutor(1) as pool:
        cut = pool.submit(leader_stub.SealPreCommit1, request, timeout=60)

        _until("PC1 runs on the worker", lambda: pc1_running(leader_stub), 30)
        leader = fleet.manager.proc
        assert leader is not None
        os.kill(leader.pid, signal.SIGKILL)
        fleet.manager.kill()
        killed = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            cut.result()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # the client's call was cut

    # The standby leads, and the worker (given both addresses) registered with it.
    def worker_with_new_leader() -> bool:
        workers = standby_stub.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=2).workers
        return [s.state.connected for s in workers] == [True]

    _until("the standby leads and the worker is registered with it", worker_with_new_leader, FAILOVER_BUDGET_S)
    failover_s = time.monotonic() - killed
    assert failover_s < FAILOVER_BUDGET_S

    # The client retries the same call through the new leader: it attaches to the task that kept
    # running on the worker and gets its result; PC1 ran once.
    fleet.use_manager(standby_port)
    p1 = retrying(lambda: fleet.stub().SealPreCommit1(request, timeout=60), timeout=60)
    runs = fleet.history(sector=ref.id, task_type=common_pb2.TASK_TYPE_PRE_COMMIT_1)
    assert [(r.attempt, r.outcome) for r in runs] == [(1, manager_pb2.TASK_OUTCOME_SUCCEEDED)]

    # The rest of the pipeline on the new leader; the proof verifies.
    p2 = fleet.stub().SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=60
    )
    commit(fleet, ref, piece, p2.commitments)

    # The old leader comes back as a standby and forwards to the new one.
    fleet.use_manager(first_port)
    fleet.start_manager()
    fleet.use_manager(standby_port)
    back = manager_pb2_grpc.ManagerServiceStub(sync_channel(fleet.manager.address, token()))
    _until(
        "the restarted manager forwards the API",
        lambda: len(back.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs) >= 0,
        30,
    )
    # A server stream through the standby: the piece read back is the piece uploaded.
    stream = back.ReadPiece(
        manager_pb2.ReadPieceRequest(sector=ref, range=common_pb2.UnpaddedByteRange(offset=0, size=2032)), timeout=60
    )
    assert next(stream).header.size == 2032
    assert b"".join(m.chunk.data for m in stream) == piece_data(1, ref.proof_type)
    # Each manager says who leads and in what role it answers; sectorctl shows the same.
    seen = [stub.Managers(manager_pb2.ManagersRequest(), timeout=5) for stub in (standby_stub, back)]
    assert [m.answered_by_leader for m in seen] == [True, False]
    assert all(m.leader.address == standby.address and m.epoch == 2 and m.failovers == 1 and m.live for m in seen)
    assert seen[1].answered_by.address == fleet.manager.address
    env = {**os.environ, "SECTORSTORAGE_MANAGER": fleet.manager.address, "SECTORSTORAGE_TOKEN": token()}
    shown = subprocess.run(
        [console_script("sectorctl"), "sealing", "managers"], capture_output=True, text=True, env=env, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert f"Leader: {seen[0].leader.holder} at {standby.address}" in shown.stdout
    assert "(standby)" in shown.stdout and "epoch 2" in shown.stdout and "Failovers so far: 1" in shown.stdout
    assert standby.metrics_address and fleet.manager.metrics_address
    leading, standing_by = gauges(standby.metrics_address), gauges(fleet.manager.metrics_address)
    assert leading["sectorstorage_manager_leader"] == 1 and leading["sectorstorage_manager_leader_epoch"] == 2
    assert leading["sectorstorage_manager_failovers"] == 1
    assert standing_by["sectorstorage_manager_leader"] == 0


@pytest.mark.postgres
def test_a_frozen_leader_that_wakes_up_after_a_takeover_changes_nothing(
    start_service: StartService, tmp_path: Path, postgres: object
) -> None:
    """The leader is frozen (SIGSTOP: a long pause, or its network cut) while a PC1 runs; the
    standby takes over and the work completes once. When the old leader wakes up it believes
    it still leads for a moment: its writes are refused by the database, it finds its lease
    gone, and it stops, having dispatched and recorded nothing."""
    url = postgres.new_database()  # type: ignore[attr-defined]
    fleet = make_fleet(
        start_service,
        tmp_path,
        {"SECTORSTORAGE_DATABASE_URL": url, "SECTORSTORAGE_MANAGER_LEADER_LEASE_S": str(LEASE_S)},
    )
    standby = fleet.add_manager()
    standby_port = fleet.standbys[0][0]
    fleet.add_worker(WorkerSpec("a", cpus=2, env={"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "PC1=3"}))
    fleet.wait_registered()
    standby_stub = manager_pb2_grpc.ManagerServiceStub(sync_channel(standby.address, token()))
    ref = sector(2)
    piece = add_piece(standby_stub, ref, piece_data(2, ref.proof_type))
    request = manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece])
    leader = fleet.manager.proc
    assert leader is not None
    with ThreadPoolExecutor(1) as pool:
        cut = pool.submit(fleet.stub().SealPreCommit1, request, timeout=60)

        _until("PC1 runs on the worker", lambda: pc1_running(standby_stub), 30)
        os.kill(leader.pid, signal.SIGSTOP)
        try:
            _until(
                "the standby leads",
                lambda: standby_stub.Managers(manager_pb2.ManagersRequest(), timeout=2).answered_by_leader,
                FAILOVER_BUDGET_S,
            )
            fleet.use_manager(standby_port)
            p1 = retrying(lambda: fleet.stub().SealPreCommit1(request, timeout=60), timeout=60)
        finally:
            os.kill(leader.pid, signal.SIGCONT)
        # The client's call to the frozen leader never succeeds with a second result: it fails
        # (the woken leader stops) or returns the one result.
        try:
            first = cut.result(timeout=30)
            assert first.pre_commit1_output == p1.pre_commit1_output
        except grpc.RpcError:
            pass
    # The woken leader notices it was deposed and exits.
    assert leader.wait(timeout=30) is not None
    assert any("this manager no longer leads" in line for line in fleet.manager.output)
    runs = fleet.history(sector=ref.id, task_type=common_pb2.TASK_TYPE_PRE_COMMIT_1)
    assert [(r.attempt, r.outcome) for r in runs] == [(1, manager_pb2.TASK_OUTCOME_SUCCEEDED)]
    answer = fleet.stub().Managers(manager_pb2.ManagersRequest(), timeout=5)
    assert answer.answered_by_leader and answer.epoch == 2


@pytest.mark.postgres
def test_sigterm_of_the_leader_hands_the_lead_over_at_once_and_runs_nothing_twice(
    start_service: StartService, tmp_path: Path, postgres: object
) -> None:
    """A rolling upgrade: SIGTERM of the leader while a PC1 runs and a client waits for it. The
    leader gives its lease up at once (the standby leads well before the old process exits), its
    waiting caller is cut with UNAVAILABLE saying to send the call again, it places and re-queues
    nothing more while it drains (the worker, which cannot reach it any more, is not taken for
    dead), and the same request sent again gets the one PC1 result. The worker heartbeats only
    every 5 s here (the default), yet it is registered with the new leader within moments: it
    notices the connection drop and heartbeats at once."""
    url = postgres.new_database()  # type: ignore[attr-defined]
    fleet = make_fleet(
        start_service,
        tmp_path,
        {
            "SECTORSTORAGE_DATABASE_URL": url,
            "SECTORSTORAGE_MANAGER_LEADER_LEASE_S": str(LEASE_S),
            "SECTORSTORAGE_MANAGER_HEARTBEAT_INTERVAL_S": "5",
            "SECTORSTORAGE_MANAGER_HEARTBEAT_TIMEOUT_S": "30",
        },
    )
    standby = fleet.add_manager()
    standby_port = fleet.standbys[0][0]
    fleet.add_worker(WorkerSpec("a", cpus=2, env={"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "PC1=6"}))
    fleet.wait_registered()
    leader_stub = fleet.stub()
    standby_stub = manager_pb2_grpc.ManagerServiceStub(sync_channel(standby.address, token()))
    ref = sector(3)
    piece = add_piece(leader_stub, ref, piece_data(3, ref.proof_type))
    request = manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece])
    first = fleet.manager
    leader = first.proc
    assert leader is not None
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(leader_stub.SealPreCommit1, request, timeout=60)

        _until("PC1 runs on the worker", lambda: pc1_running(leader_stub), 30)
        leader.send_signal(signal.SIGTERM)
        took = _until(
            "the standby leads",
            lambda: standby_stub.Managers(manager_pb2.ManagersRequest(), timeout=2).answered_by_leader,
            FAILOVER_BUDGET_S,
        )
        assert took < 1.5, f"the standby led {took:.2f} s after the SIGTERM: the lease was not handed over"

        def worker_with_new_leader() -> bool:
            workers = standby_stub.WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=2).workers
            return [w.state.connected for w in workers] == [True]

        followed = took + _until("the worker registered with the new leader", worker_with_new_leader, 10)
        assert followed < 3.0, f"the worker followed the new leader {followed:.2f} s after the SIGTERM"
        with pytest.raises(grpc.RpcError) as info:
            waiting.result(timeout=15)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "send the same request again" in (info.value.details() or "")
    assert leader.wait(timeout=30) == 0
    fleet.use_manager(standby_port)
    p1 = retrying(lambda: fleet.stub().SealPreCommit1(request, timeout=60), timeout=60)
    assert p1.pre_commit1_output
    runs = fleet.history(sector=ref.id, task_type=common_pb2.TASK_TYPE_PRE_COMMIT_1)
    assert [(r.attempt, r.outcome) for r in runs] == [(1, manager_pb2.TASK_OUTCOME_SUCCEEDED)]
    started = [e for _, e in fleet.worker_log_events("task started") if e["task"] == "TASK_TYPE_PRE_COMMIT_1"]
    assert len(started) == 1, started
    drained = first.log()
    assert "stepped down: the lease is handed over" in drained
    assert "worker gone" not in drained and "call failed temporarily" not in drained


def test_a_second_manager_on_a_held_sqlite_file_is_refused(start_service: StartService, tmp_path: Path) -> None:
    start_service("manager", data_dir=tmp_path / "m")
    result = subprocess.run(
        [console_script("sectorstorage-manager"), "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SECTORSTORAGE_AUTH_SECRET": TEST_SECRET},
    )
    assert result.returncode == 2, result.stderr
    # One line says what to do (the JSON log lines before it are the start-up's own).
    last = result.stderr.splitlines()[-1]
    assert last.startswith("sectorstorage-manager: cannot start: another manager process holds the SQLite database")
    assert "single-manager default" in last and "PostgreSQL" in last and "Traceback" not in result.stderr
