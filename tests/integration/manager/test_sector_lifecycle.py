"""The sector lifecycle with real processes (index, manager, workers over real sockets): no
valid-looking call of a WRITE token can destroy a sealed sector.

- every step re-sent on a finalized sector returns its recorded result, runs no task and leaves
  the files byte for byte; wrong or truncated inputs are refused with the files intact;
- impossible requests are refused within a second and nothing stays queued;
- two clients sealing the same sector number at once: never two successes, the winner provable
  and its data read back byte-exact;
- Remove while AddPiece is queued or running, during PC1 and during PC2: the pipeline ends (its
  callers get ABORTED, its later steps are refused) and no file of the sector is left;
- kill -9 of the manager between steps and during a step keeps the lifecycle right.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.cli.sealing import add_piece, add_piece_stream, read_piece, seal_sector
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from tests.support.fleet import Fleet, WorkerSpec, fleet, retrying  # noqa: F401
from tests.support.sectors import P2K, P8M, SEED, TICKET, piece_data, sector

S = manager_pb2.SectorLifecycleState
WINDOW_2K = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_2KIB_V1


def code_of(call: Callable[[], Any]) -> tuple[grpc.StatusCode, str, float]:
    """Calls, expecting a refusal: (status code, details, seconds it took)."""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or "", time.monotonic() - started  # type: ignore[attr-defined]


def sector_files(root: Path, number: int) -> dict[str, str]:
    """Every file of the sector under a storage root: relative path -> SHA-256."""
    out = {}
    for path in sorted(root.rglob(f"*-{number}*")):
        for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def status(fleet: Fleet, number: int) -> manager_pb2.SectorStatusResponse:
    reply: manager_pb2.SectorStatusResponse = fleet.stub().SectorStatus(
        manager_pb2.SectorStatusRequest(sector=sector(number).id), timeout=10
    )
    return reply


def task_count(fleet: Fleet, number: int) -> int:
    return len(fleet.history(sector=sector(number).id))


def provable(fleet: Fleet, number: int, comm_r: bytes) -> bool:
    proving = [common_pb2.ProvingSector(sector=sector(number), comm_r=comm_r)]
    reply = fleet.stub().CheckProvable(
        manager_pb2.CheckProvableRequest(proof_type=WINDOW_2K, sectors=proving, expensive=True), timeout=60
    )
    return not reply.bad_sectors


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_resent_and_wrong_steps_leave_a_finalized_sector_intact(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4))
    fleet.wait_registered()
    stub = fleet.stub()
    ref = sector(1)
    data = piece_data(1, P2K)
    piece = add_piece(stub, ref, data)
    p1 = stub.SealPreCommit1(manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=60)
    p2 = stub.SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=60
    )
    comm = p2.commitments
    c1_req = manager_pb2.SealCommit1Request(
        sector=ref, ticket=TICKET, seed=SEED, pieces=[piece], comm_r=comm.comm_r, comm_d=comm.comm_d
    )
    c1 = stub.SealCommit1(c1_req, timeout=60)
    c2 = stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=60)
    stub.FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=60)
    assert status(fleet, 1).state == S.SECTOR_LIFECYCLE_STATE_FINALIZED
    root = fleet.tmp / "store-a"
    files = sector_files(root, 1)
    assert any(name.startswith("sealed/") for name in files) and any(name.startswith("cache/") for name in files)
    tasks = task_count(fleet, 1)

    # Every step re-sent as a client retry would: the recorded result, at once, no task run.
    assert (
        stub.SealPreCommit1(manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=10)
        == p1
    )
    assert (
        stub.SealPreCommit2(
            manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output), timeout=10
        )
        == p2
    )
    assert stub.SealCommit1(c1_req, timeout=10) == c1
    assert (
        stub.SealCommit2(manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=10) == c2
    )
    stub.FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=10)

    # Wrong or truncated inputs: refused at once, naming the state.
    refusals = [
        lambda: stub.SealPreCommit2(
            manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output[:-7]), timeout=10
        ),
        lambda: stub.SealPreCommit1(
            manager_pb2.SealPreCommit1Request(sector=ref, ticket=bytes(32), pieces=[piece]), timeout=10
        ),
        lambda: stub.SealCommit1(
            manager_pb2.SealCommit1Request(
                sector=ref, ticket=TICKET, seed=bytes(32), pieces=[piece], comm_r=comm.comm_r, comm_d=comm.comm_d
            ),
            timeout=10,
        ),
        lambda: stub.SealCommit1(
            manager_pb2.SealCommit1Request(
                sector=ref, ticket=TICKET, seed=SEED, pieces=[piece], comm_r=comm.comm_d, comm_d=comm.comm_d
            ),
            timeout=10,
        ),
        lambda: stub.SealCommit2(
            manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output[:100]), timeout=10
        ),
        lambda: stub.FinalizeSector(
            manager_pb2.FinalizeSectorRequest(
                sector=ref, keep_unsealed=[common_pb2.UnpaddedByteRange(offset=0, size=2032)]
            ),
            timeout=10,
        ),
        # Other bytes as the sector's first piece: another pipeline's.
        lambda: add_piece_stream(stub, ref, [], 2032, iter([bytes(2032)])),
    ]
    for call in refusals:
        code, details, took = code_of(call)
        assert code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS), details
        assert "FINALIZED" in details and took < 2, details
    # The same AddPiece sent again (its reply lost) is answered with the recorded piece, and
    # nothing runs (checked with the files and task count below).
    assert add_piece_stream(stub, ref, [], 2032, iter([data])) == piece

    assert sector_files(root, 1) == files
    assert task_count(fleet, 1) == tasks
    assert not stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=10).jobs
    assert provable(fleet, 1, comm.comm_r)
    got, unsealed = read_piece(stub, ref, 0, len(data), TICKET, comm.unsealed_cid)
    assert got == data and unsealed


def test_impossible_requests_are_refused_at_once(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4))
    fleet.wait_registered()
    stub = fleet.stub()
    # Sector 2 reaches PC1; sector 3 is never started.
    piece = add_piece(stub, sector(2), piece_data(2, P2K))
    p1 = stub.SealPreCommit1(
        manager_pb2.SealPreCommit1Request(sector=sector(2), ticket=TICKET, pieces=[piece]), timeout=60
    )
    calls = {
        "AddPiece with existing pieces on a sector never started": lambda: add_piece_stream(
            stub, sector(3, P8M), [130048], 130048, iter([b""])
        ),
        "PC2 of an unknown sector": lambda: stub.SealPreCommit2(
            manager_pb2.SealPreCommit2Request(sector=sector(3), pre_commit1_output=p1.pre_commit1_output), timeout=30
        ),
        "PC1 of an unknown sector": lambda: stub.SealPreCommit1(
            manager_pb2.SealPreCommit1Request(sector=sector(3), ticket=TICKET, pieces=[piece]), timeout=30
        ),
        "C1 before PC2": lambda: stub.SealCommit1(
            manager_pb2.SealCommit1Request(
                sector=sector(2), ticket=TICKET, seed=SEED, pieces=[piece], comm_r=bytes(32), comm_d=bytes(32)
            ),
            timeout=30,
        ),
        "C2 before C1": lambda: stub.SealCommit2(
            manager_pb2.SealCommit2Request(sector=sector(2), commit1_output=b"x" * 64), timeout=30
        ),
        "Finalize before commit": lambda: stub.FinalizeSector(
            manager_pb2.FinalizeSectorRequest(sector=sector(2)), timeout=30
        ),
        "ReleaseUnsealed before PC2": lambda: stub.ReleaseUnsealed(
            manager_pb2.ReleaseUnsealedRequest(sector=sector(2), all=True), timeout=30
        ),
        "PC2 with another sector's phase-1 output": lambda: stub.SealPreCommit2(
            manager_pb2.SealPreCommit2Request(sector=sector(3), pre_commit1_output=p1.pre_commit1_output), timeout=30
        ),
        "PC1 with another proof type": lambda: stub.SealPreCommit1(
            manager_pb2.SealPreCommit1Request(
                sector=sector(2, common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_8MIB_V1_1),
                ticket=TICKET,
                pieces=[common_pb2.PieceInfo(size=8 << 20, commp=piece.commp)],
            ),
            timeout=30,
        ),
    }
    for what, call in calls.items():
        code, details, took = code_of(call)
        assert code == grpc.StatusCode.FAILED_PRECONDITION, (what, details)
        assert took < 1.0, (what, took)
    assert not stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=10).jobs
    assert not fleet.stub().SchedDiag(manager_pb2.SchedDiagRequest(), timeout=10).requests
    # The real pipeline of sector 2 goes on unharmed.
    p2 = stub.SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=sector(2), pre_commit1_output=p1.pre_commit1_output), timeout=60
    )
    assert status(fleet, 2).state == S.SECTOR_LIFECYCLE_STATE_PRE_COMMIT_2_DONE
    assert p2.commitments.comm_r
    code, details, _ = code_of(
        lambda: fleet.stub().SectorStatus(manager_pb2.SectorStatusRequest(sector=sector(3).id), timeout=10)
    )
    assert code == grpc.StatusCode.NOT_FOUND


def test_two_pipelines_on_one_sector_number_never_both_succeed(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4))
    fleet.add_worker(WorkerSpec("b", cpus=4))
    fleet.wait_registered()
    stub = fleet.stub()
    winners = 0
    for round_ in range(10):
        number = 100 + round_
        datas = [bytes([(round_ * 2 + k) % 251 + 1]) * 2032 for k in (0, 1)]
        barrier = threading.Barrier(2)

        def client(k: int) -> Any:
            barrier.wait()
            try:
                return seal_sector(stub, sector(number), datas[k], TICKET, SEED)
            except grpc.RpcError as exc:
                return exc

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(client, (0, 1)))
        succeeded = [(k, o) for k, o in enumerate(outcomes) if not isinstance(o, grpc.RpcError) and o.verified]
        assert len(succeeded) <= 1, f"round {round_}: both clients were told their sector is sealed"
        for o in outcomes:
            if isinstance(o, grpc.RpcError):
                assert o.code() in (
                    grpc.StatusCode.ALREADY_EXISTS,
                    grpc.StatusCode.ABORTED,
                    grpc.StatusCode.FAILED_PRECONDITION,
                ), o
        if succeeded:
            winners += 1
            k, sealed = succeeded[0]
            assert provable(fleet, number, sealed.commitments.comm_r)
            got, _ = read_piece(stub, sector(number), 0, 2032, TICKET, sealed.commitments.unsealed_cid)
            assert got == datas[k]
    assert winners >= 5  # the first claim usually wins outright


def _slow_fleet(fleet: Fleet, delays: str) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4, env={"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": delays}))
    fleet.wait_registered()


def _no_files_left(fleet: Fleet, number: int) -> None:
    wait_for(lambda: not sector_files(fleet.tmp / "store-a", number), f"no file of sector {number} left", timeout=30)


def _running(fleet: Fleet, number: int, task: int) -> bool:
    JobState = manager_pb2.JobState
    try:
        jobs = status(fleet, number).jobs
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
            return False  # not claimed yet
        raise
    # AddPiece stays ASSIGNED while its data streams to the worker.
    return any(
        j.task_type == task and j.state in (JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_ASSIGNED) and j.worker_id
        for j in jobs
    )


def test_remove_during_add_piece_pc1_and_pc2_ends_the_pipeline(fleet: Fleet) -> None:
    _slow_fleet(fleet, "AP=2,PC1=2,PC2=2")
    stub = fleet.stub()
    admin = stub
    pool = ThreadPoolExecutor(4)

    def remove(number: int) -> None:
        admin.Remove(manager_pb2.RemoveRequest(sector=sector(number).id), timeout=30)

    def refused_later(number: int, piece: common_pb2.PieceInfo) -> None:
        code, details, _ = code_of(
            lambda: stub.SealPreCommit1(
                manager_pb2.SealPreCommit1Request(sector=sector(number), ticket=TICKET, pieces=[piece]), timeout=10
            )
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "REMOVED" in details, details

    # AddPiece queued (the only worker disabled), then running.
    worker_id = fleet.worker_ids["a"]
    stub.DisableWorker(manager_pb2.DisableWorkerRequest(worker_id=worker_id), timeout=10)
    queued = pool.submit(add_piece, stub, sector(10), piece_data(10, P2K))
    wait_for(
        lambda: bool(fleet.stub().SchedDiag(manager_pb2.SchedDiagRequest(), timeout=10).requests), "AddPiece queued"
    )
    remove(10)
    with pytest.raises(grpc.RpcError) as err:
        queued.result(timeout=30)
    assert err.value.code() == grpc.StatusCode.ABORTED  # type: ignore[attr-defined]
    stub.EnableWorker(manager_pb2.EnableWorkerRequest(worker_id=worker_id), timeout=10)

    running = pool.submit(add_piece, stub, sector(11), piece_data(11, P2K))
    wait_for(lambda: _running(fleet, 11, common_pb2.TASK_TYPE_ADD_PIECE), "AddPiece running")
    remove(11)
    with pytest.raises(grpc.RpcError) as err:
        running.result(timeout=30)
    assert err.value.code() == grpc.StatusCode.ABORTED  # type: ignore[attr-defined]

    # PC1 and PC2 running.
    pieces = {n: add_piece(stub, sector(n), piece_data(n, P2K)) for n in (12, 13)}
    pc1 = pool.submit(
        stub.SealPreCommit1,
        manager_pb2.SealPreCommit1Request(sector=sector(12), ticket=TICKET, pieces=[pieces[12]]),
        timeout=60,
    )
    wait_for(lambda: _running(fleet, 12, common_pb2.TASK_TYPE_PRE_COMMIT_1), "PC1 running")
    remove(12)
    with pytest.raises(grpc.RpcError) as err:
        pc1.result(timeout=30)
    assert err.value.code() == grpc.StatusCode.ABORTED  # type: ignore[attr-defined]

    p1 = stub.SealPreCommit1(
        manager_pb2.SealPreCommit1Request(sector=sector(13), ticket=TICKET, pieces=[pieces[13]]), timeout=60
    )
    pc2 = pool.submit(
        stub.SealPreCommit2,
        manager_pb2.SealPreCommit2Request(sector=sector(13), pre_commit1_output=p1.pre_commit1_output),
        timeout=60,
    )
    wait_for(lambda: _running(fleet, 13, common_pb2.TASK_TYPE_PRE_COMMIT_2), "PC2 running")
    remove(13)
    with pytest.raises(grpc.RpcError) as err:
        pc2.result(timeout=30)
    assert err.value.code() == grpc.StatusCode.ABORTED  # type: ignore[attr-defined]

    for number in (10, 11, 12, 13):
        assert status(fleet, number).state == S.SECTOR_LIFECYCLE_STATE_REMOVED
        refused_later(number, pieces.get(number) or pieces[12])
        _no_files_left(fleet, number)
    # Once the stopped tasks ended, nothing of these sectors is declared in the index either,
    # and nothing of theirs is queued or running.
    wait_for(lambda: not stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=10).jobs, "no job left")
    for number in (10, 11, 12, 13):
        assert not [
            r
            for r in fleet.history(sector=sector(number).id)
            if r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED and r.task_type in (common_pb2.TASK_TYPE_PRE_COMMIT_2,)
        ]
    # The number can be sealed again: a new generation, provable.
    sealed = seal_sector(stub, sector(12), piece_data(99, P2K), TICKET, SEED)
    assert sealed.verified and status(fleet, 12).generation == 2
    assert provable(fleet, 12, sealed.commitments.comm_r)
    pool.shutdown()


def test_manager_kill9_between_and_during_steps_keeps_the_lifecycle(fleet: Fleet) -> None:
    _slow_fleet(fleet, "PC2=2")
    stub = fleet.stub()
    ref = sector(20)
    piece = add_piece(stub, ref, piece_data(20, P2K))
    p1 = stub.SealPreCommit1(manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=60)
    # Between steps.
    fleet.manager.kill()
    fleet.start_manager()
    fleet.wait_registered()
    again = retrying(
        lambda: fleet.stub().SealPreCommit1(
            manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=10
        )
    )
    assert again == p1
    # During PC2: the client comes back with the same request and gets the one result.
    pool = ThreadPoolExecutor(1)
    pc2_req = manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1.pre_commit1_output)
    first = pool.submit(fleet.stub().SealPreCommit2, pc2_req, timeout=60)
    wait_for(lambda: _running(fleet, 20, common_pb2.TASK_TYPE_PRE_COMMIT_2), "PC2 running")
    fleet.manager.kill()
    with pytest.raises(grpc.RpcError):
        first.result(timeout=30)
    fleet.start_manager()
    fleet._channel = None
    p2 = retrying(lambda: fleet.stub().SealPreCommit2(pc2_req, timeout=60))
    assert status(fleet, 20).state == S.SECTOR_LIFECYCLE_STATE_PRE_COMMIT_2_DONE
    pc2_runs = [
        r
        for r in fleet.history(sector=ref.id)
        if r.task_type == common_pb2.TASK_TYPE_PRE_COMMIT_2 and r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED
    ]
    assert len(pc2_runs) == 1
    assert fleet.stub().SealPreCommit2(pc2_req, timeout=10) == p2
    c1 = fleet.stub().SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref,
            ticket=TICKET,
            seed=SEED,
            pieces=[piece],
            comm_r=p2.commitments.comm_r,
            comm_d=p2.commitments.comm_d,
        ),
        timeout=60,
    )
    fleet.stub().SealCommit2(manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=60)
    fleet.stub().FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=60)
    done = status(fleet, 20)
    assert done.state == S.SECTOR_LIFECYCLE_STATE_FINALIZED
    assert [manager_pb2.SectorStep.Name(s.step) for s in done.steps] == [
        "SECTOR_STEP_PRE_COMMIT_1",
        "SECTOR_STEP_PRE_COMMIT_2",
        "SECTOR_STEP_COMMIT_1",
        "SECTOR_STEP_COMMIT_2",
        "SECTOR_STEP_FINALIZE",
        "SECTOR_STEP_MOVE_STORAGE",
    ]
    assert provable(fleet, 20, p2.commitments.comm_r)
    pool.shutdown()


CALLS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "add",
                "add_other",
                "pc1",
                "pc1",
                "pc1_other_ticket",
                "pc2",
                "pc2",
                "pc2_truncated",
                "c1",
                "c1",
                "c1_other_seed",
                "c2",
                "c2",
                "c2_truncated",
                "finalize",
                "finalize",
                "release",
                "remove",
            ]
        ),
        st.booleans(),
    ),
    min_size=1,
    max_size=16,
)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(calls=CALLS)
def test_random_api_sequences_never_lose_a_sealed_sector(fleet: Fleet, calls: list[tuple[str, bool]]) -> None:
    """Random sequences of sealing calls (right and wrong inputs, repeats, Remove) against one
    sector each: afterwards a sector the API reported sealed is provable, a finalized one still
    has its replica, and the data reads back byte-exact."""
    if not fleet.workers:
        fleet.add_worker(WorkerSpec("a", cpus=4))
        fleet.wait_registered()
    stub = fleet.stub()
    number = 1000 + len(fleet.history(task_type=common_pb2.TASK_TYPE_ADD_PIECE))
    ref = sector(number)
    data = piece_data(number, P2K)
    seen: dict[str, Any] = {}
    sealed = finalized = False
    # Every sequence starts a pipeline, then the random calls (the happy path among them).
    for name, once_more in [("add", False), *calls]:
        for _ in range(2 if once_more else 1):
            try:
                if name in ("add", "add_other"):
                    seen["piece"] = add_piece(stub, ref, data if name == "add" else data[::-1])
                    seen["data"] = data if name == "add" else data[::-1]
                elif name.startswith("pc1") and "piece" in seen:
                    ticket = TICKET if name == "pc1" else bytes(32)
                    seen["p1"] = stub.SealPreCommit1(
                        manager_pb2.SealPreCommit1Request(sector=ref, ticket=ticket, pieces=[seen["piece"]]), timeout=60
                    )
                elif name.startswith("pc2") and "p1" in seen:
                    out = seen["p1"].pre_commit1_output
                    seen["p2"] = stub.SealPreCommit2(
                        manager_pb2.SealPreCommit2Request(
                            sector=ref, pre_commit1_output=out if name == "pc2" else out[:-3]
                        ),
                        timeout=60,
                    )
                elif name.startswith("c1") and "p2" in seen:
                    comm = seen["p2"].commitments
                    seen["c1"] = stub.SealCommit1(
                        manager_pb2.SealCommit1Request(
                            sector=ref,
                            ticket=TICKET,
                            seed=SEED if name == "c1" else bytes(32),
                            pieces=[seen["piece"]],
                            comm_r=comm.comm_r,
                            comm_d=comm.comm_d,
                        ),
                        timeout=60,
                    )
                elif name.startswith("c2") and "c1" in seen:
                    out = seen["c1"].commit1_output
                    proof = stub.SealCommit2(
                        manager_pb2.SealCommit2Request(sector=ref, commit1_output=out if name == "c2" else out[:50]),
                        timeout=60,
                    ).proof
                    comm = seen["p2"].commitments
                    verdict = stub.VerifySeal(
                        manager_pb2.VerifySealRequest(
                            sector=ref, comm_r=comm.comm_r, comm_d=comm.comm_d, ticket=TICKET, seed=SEED, proof=proof
                        ),
                        timeout=30,
                    )
                    sealed = sealed or verdict.valid
                elif name == "finalize":
                    stub.FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=60)
                    finalized = True
                elif name == "release":
                    stub.ReleaseUnsealed(manager_pb2.ReleaseUnsealedRequest(sector=ref, all=True), timeout=60)
                elif name == "remove":
                    stub.Remove(manager_pb2.RemoveRequest(sector=ref.id), timeout=60)
                    seen.clear()
                    sealed = finalized = False
            except grpc.RpcError as exc:
                assert exc.code() in (  # type: ignore[attr-defined]
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.ALREADY_EXISTS,
                    grpc.StatusCode.ABORTED,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ), exc
    if sealed or finalized:
        comm = seen["p2"].commitments
        assert provable(fleet, number, comm.comm_r), f"sector {number} was reported sealed but is not provable"
        got, _ = read_piece(stub, ref, 0, 2032, TICKET, comm.unsealed_cid)
        assert got == seen["data"]
    assert not stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=10).jobs


def test_cleanup_removed_finds_and_removes_what_an_unreachable_holder_kept(fleet: Fleet) -> None:
    """A Remove while the holder is down records the sector REMOVED but cannot delete its files;
    `sectorctl storage cleanup --removed` lists them once the holder is back, and --apply removes
    them."""
    import json
    import os
    import subprocess

    from services.devfleet import console_script
    from tests.support.auth import token

    fleet.add_worker(WorkerSpec("a", cpus=4))
    fleet.wait_registered()
    stub = fleet.stub()
    sealed = seal_sector(stub, sector(30), piece_data(30, P2K), TICKET, SEED)
    assert sealed.verified

    def session() -> str:
        stats = fleet.stub().WorkerStats(manager_pb2.WorkerStatsRequest(worker_id=fleet.worker_ids["a"]), timeout=10)
        return str(stats.workers[0].session_id) if stats.workers and stats.workers[0].state.connected else ""

    before = session()
    fleet.workers["a"].kill()
    code, details, _ = code_of(lambda: stub.Remove(manager_pb2.RemoveRequest(sector=sector(30).id), timeout=60))
    assert code == grpc.StatusCode.UNAVAILABLE and "still declared" in details
    assert status(fleet, 30).state == S.SECTOR_LIFECYCLE_STATE_REMOVED
    fleet.start_worker("a")
    wait_for(lambda: session() not in ("", before), "the restarted worker registered")
    env = {
        **os.environ,
        "SECTORSTORAGE_TOKEN": token(),
        "SECTORSTORAGE_MANAGER": fleet.address,
        "SECTORSTORAGE_INDEX": fleet.index.address,
    }

    def ctl(*args: str) -> dict[str, Any]:
        proc = subprocess.run(
            [console_script("sectorctl"), "--json", *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    dry = ctl("storage", "cleanup", "--removed")
    assert [(s["number"], s["state"]) for s in dry["sectors"]] == [(30, "left over")]
    assert sector_files(fleet.tmp / "store-a", 30)
    applied = ctl("storage", "cleanup", "--removed", "--apply")
    assert [s["number"] for s in applied["sectors"]] == [30] and applied["sectors"][0]["state"].startswith("removed")
    assert not sector_files(fleet.tmp / "store-a", 30)
    assert ctl("storage", "cleanup", "--removed")["sectors"] == []
