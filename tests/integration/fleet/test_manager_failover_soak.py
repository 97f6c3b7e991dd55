"""Issue 17's soak: three managers, one index, three workers on one PostgreSQL database, a batch
of 30 sectors sealed by clients that know every manager address; meanwhile the leader is killed
(kill -9) during a PC1 and again during a C2, frozen (SIGSTOP) for longer than its lease during a
C2 and woken up after the takeover, and then every manager is restarted one by one (SIGTERM,
start again), each while sectors are still being sealed. Afterwards every sector is proven and
verified, each task ran exactly once by the workers' own records and the manager's history,
every failover took under 10 s (printed), and no client call failed for good: a call cut by a
dead manager was sent again, to another manager, and got its result.

The leader's network cut is tests/faults/test_manager_partition.py (it needs network
namespaces); a frozen leader's fencing in detail is tests/integration/manager/test_failover.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from services.cli.sealing import add_piece
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, manager_pb2_grpc
from services.devfleet import ServiceProcess
from tests.support.auth import token
from tests.support.fleet import Fleet, StartService, WorkerSpec, make_fleet
from tests.support.sectors import SEED, TICKET, piece_data, sector

JobState = manager_pb2.JobState
T = TypeVar("T")
LEASE_S = 2.0
SECTORS = 30
FAILOVER_BUDGET_S = 10.0
# What a client sends again: the call was cut (UNAVAILABLE, CANCELLED), outlived (DEADLINE_EXCEEDED)
# or met the work it started itself still being cleared up after a failover (ABORTED).
RETRIED = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.ABORTED,
)


class Managers:
    """The fleet's three managers: their processes by port, and clients that try each in turn."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        fleet.add_manager()
        fleet.add_manager()
        self.ports = [fleet.port] + [p for p, _ in fleet.standbys]
        self.procs: dict[int, ServiceProcess] = {fleet.port: fleet.manager, **dict(fleet.standbys)}
        self.stubs = {
            p: manager_pb2_grpc.ManagerServiceStub(sync_channel(f"127.0.0.1:{p}", token())) for p in self.ports
        }
        self.retries = 0
        self.lock = threading.Lock()

    def call(self, fn: Callable[[manager_pb2_grpc.ManagerServiceStub], T], timeout: float = 180) -> T:
        """`fn` through one manager after another until one answers (a cut call is sent again:
        same request, same work)."""
        deadline = time.monotonic() + timeout
        i = 0
        while True:
            port = self.ports[i % len(self.ports)]
            try:
                return fn(self.stubs[port])
            except grpc.RpcError as exc:
                if exc.code() not in RETRIED or time.monotonic() > deadline:  # type: ignore[attr-defined]
                    raise
                with self.lock:
                    self.retries += 1
                i += 1
                time.sleep(0.1)

    def leader_port(self) -> int:
        for port in self.ports:
            proc = self.procs[port].proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                if self.stubs[port].Managers(manager_pb2.ManagersRequest(), timeout=2).answered_by_leader:
                    return port
            except grpc.RpcError:
                continue
        raise LookupError("no manager leads")

    def wait_leader(self, other_than: int | None = None, timeout: float = 30) -> tuple[int, float]:
        start = time.monotonic()
        while True:
            try:
                port = self.leader_port()
                if port != other_than:
                    return port, time.monotonic() - start
            except LookupError:
                pass
            assert time.monotonic() - start < timeout, "no manager took the lead"
            time.sleep(0.05)

    def restart(self, port: int) -> None:
        """Starts the manager of `port` again, on its port and data dir."""
        before = self.procs[port]
        self.procs[port] = self.fleet.start_service(
            "manager", *before.args, env=self.fleet.manager_env, data_dir=before.data_dir
        )

    def wait_job(self, task: int, timeout: float = 120) -> None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                jobs = self.call(lambda s: s.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs)
                if any(j.task_type == task and j.state == JobState.JOB_STATE_RUNNING for j in jobs):
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.02)
        raise AssertionError(f"no {common_pb2.TaskType.Name(task)} seen running")  # type: ignore[arg-type]


def seal(managers: Managers, number: int) -> None:
    """One sector from AddPiece to a verified proof and Finalize, every call retried elsewhere."""
    ref = sector(number)
    piece = managers.call(lambda s: add_piece(s, ref, piece_data(number, ref.proof_type)))
    p1 = managers.call(
        lambda s: s.SealPreCommit1(
            manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=120
        )
    )
    p2 = managers.call(
        lambda s: s.SealPreCommit2(
            manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=120
        )
    )
    cm = p2.commitments
    c1 = managers.call(
        lambda s: s.SealCommit1(
            manager_pb2.SealCommit1Request(
                sector=ref, ticket=TICKET, seed=SEED, pieces=[piece], comm_r=cm.comm_r, comm_d=cm.comm_d
            ),
            timeout=120,
        )
    )
    c2 = managers.call(
        lambda s: s.SealCommit2(
            manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=120
        )
    )
    verdict = managers.call(
        lambda s: s.VerifySeal(
            manager_pb2.VerifySealRequest(
                sector=ref, comm_r=cm.comm_r, comm_d=cm.comm_d, ticket=TICKET, seed=SEED, proof=c2.proof
            ),
            timeout=30,
        )
    )
    assert verdict.valid, verdict.reason
    managers.call(lambda s: s.FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=120))


@pytest.mark.postgres
@pytest.mark.slow
def test_three_managers_survive_kill_9_and_a_rolling_restart_under_load(
    start_service: StartService, tmp_path: Path, postgres: Any
) -> None:
    fleet = make_fleet(
        start_service,
        tmp_path,
        {"SECTORSTORAGE_DATABASE_URL": postgres.new_database(), "SECTORSTORAGE_MANAGER_LEADER_LEASE_S": str(LEASE_S)},
    )
    managers = Managers(fleet)
    # Slow PC1 and C2 keep tasks running while the managers fail.
    delays = {"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "PC1=1.5,C2=1"}
    for name in ("a", "b", "c"):
        fleet.add_worker(WorkerSpec(name, cpus=4, env=delays))
    fleet.wait_registered()
    failovers: list[tuple[str, float]] = []

    with ThreadPoolExecutor(SECTORS) as pool:
        sealing = [pool.submit(seal, managers, n) for n in range(1, SECTORS + 1)]

        def under_load(what: str) -> None:
            unfinished = sum(not f.done() for f in sealing)
            assert unfinished >= 5, f"only {unfinished} sectors were still being sealed at {what}"

        def kill_leader_during(task: int, what: str) -> None:
            """kill -9 of the leader while a `task` runs; the next leader's time is recorded."""
            managers.wait_job(task)
            under_load(what)
            old = managers.leader_port()
            victim = managers.procs[old].proc
            assert victim is not None
            os.kill(victim.pid, signal.SIGKILL)
            managers.procs[old].kill()
            _, took = managers.wait_leader(other_than=old)
            failovers.append((what, took))
            managers.restart(old)

        # 1. kill -9 of the leader while a PC1 runs; 2. again, while a C2 runs.
        kill_leader_during(common_pb2.TASK_TYPE_PRE_COMMIT_1, "kill -9 during PC1")
        kill_leader_during(common_pb2.TASK_TYPE_COMMIT_2, "kill -9 during C2")

        # 3. The leader frozen (SIGSTOP) during a C2 for longer than its lease, woken up after
        # the takeover: it finds itself deposed and exits, having recorded nothing more.
        managers.wait_job(common_pb2.TASK_TYPE_COMMIT_2)
        under_load("the freeze")
        old = managers.leader_port()
        frozen = managers.procs[old].proc
        assert frozen is not None
        frozen_at = time.monotonic()
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            _, took = managers.wait_leader(other_than=old)
            failovers.append(("SIGSTOP during C2", took))
            time.sleep(max(0.0, 3 * LEASE_S - (time.monotonic() - frozen_at)))
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        assert frozen.wait(timeout=30) is not None, "the woken leader did not stop"
        assert any("this manager no longer leads" in line for line in managers.procs[old].output)
        managers.restart(old)

        # 4. A rolling restart of every manager, one by one, while the batch goes on.
        under_load("the rolling restart")
        for port in list(managers.ports):
            leading = managers.leader_port() == port
            # SIGTERM: the leader hands its lease over at once (it stops placing and cuts its
            # waiting callers, who send again elsewhere), lets its calls in flight end and
            # exits; the failover is the time from the signal to the next leader.
            signalled = time.monotonic()
            managers.procs[port].stop()
            if leading:
                _, waited = managers.wait_leader(other_than=port)
                failovers.append(("rolling restart of the leader", time.monotonic() - signalled))
            managers.restart(port)

        for future in sealing:
            future.result(timeout=300)

    for what, took in failovers:
        print(f"failover ({what}): {took:.2f} s")
        assert took < FAILOVER_BUDGET_S, (what, took)
    print(f"client calls sent again to another manager: {managers.retries}")

    # Each task ran exactly once: the manager's history (from the leader now) ...
    fleet.use_manager(managers.leader_port())
    runs = fleet.history()
    by_task: dict[tuple[int, int], list[manager_pb2.TaskRun]] = defaultdict(list)
    for run in runs:
        by_task[(run.sector.id.number, run.task_type)].append(run)
    pipeline = [
        common_pb2.TASK_TYPE_ADD_PIECE,
        common_pb2.TASK_TYPE_PRE_COMMIT_1,
        common_pb2.TASK_TYPE_PRE_COMMIT_2,
        common_pb2.TASK_TYPE_COMMIT_1,
        common_pb2.TASK_TYPE_COMMIT_2,
        common_pb2.TASK_TYPE_FINALIZE,
    ]
    # A call the manager recorded but never delivered (its manager died first), or an upload cut
    # with its manager (the bytes were in the stream that died), is requeued or failed and sent
    # again: one run per task succeeded, and the extra calls never ran anywhere (below).
    resent = 0
    for n in range(1, SECTORS + 1):
        for task in pipeline:
            found = by_task[(n, task)]
            outcomes = [r.outcome for r in found]
            extra_ok = {manager_pb2.TASK_OUTCOME_REQUEUED}
            if task == common_pb2.TASK_TYPE_ADD_PIECE:
                extra_ok.add(manager_pb2.TASK_OUTCOME_FAILED)
            rest = [r.outcome for r in found if r.outcome != manager_pb2.TASK_OUTCOME_SUCCEEDED]
            detail = (n, common_pb2.TaskType.Name(task), [(r.attempt, r.outcome, r.error.message) for r in found])
            # No run was superseded by a late result either (it would be ABORTED): a call the
            # next leader gave up on while its worker still ran it would have run twice.
            assert outcomes.count(manager_pb2.TASK_OUTCOME_SUCCEEDED) == 1 and set(rest) <= extra_ok, detail
            resent += len(rest)
    print(f"calls cut or undelivered by a failover and sent again: {resent}")
    # The workers' own records: how often each computed task of each sector was started.
    started = Counter(
        (int(str(e["call"]).split("-")[1]), str(e["task"])) for _, e in fleet.worker_log_events("task started")
    )
    twice = {
        (n, common_pb2.TaskType.Name(task)): started[(n, common_pb2.TaskType.Name(task))]
        for n in range(1, SECTORS + 1)
        for task in pipeline[1:]
        if started[(n, common_pb2.TaskType.Name(task))] != 1
    }
    assert not twice, f"tasks not started exactly once on the workers: {twice}"
    # ... and finished once (the calls the manager knows), none failed.
    done = Counter(entry["call"] for _, entry in fleet.worker_log_events("task done"))
    assert done and all(count == 1 for count in done.values()), done  # a call never finishes twice
    known = {f"{r.call_id.sector.miner}-{r.call_id.sector.number}-{r.call_id.id}" for r in runs}
    assert set(done) <= known
    assert not fleet.worker_log_events("task failed")
