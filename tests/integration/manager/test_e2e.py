"""The manager end to end with real processes: one index, one manager, four workers with
different resources and task types (one without PC1, one small, one disabled), sealing real
2 KiB / 8 MiB sectors through the whole pipeline (proofs checked by VerifySeal).

- a batch of 20 sectors: every task ran exactly once (the manager's task history and the
  workers' own logs agree), where each ran follows the selectors (PC1 never on the worker
  without it, C1 and FIN where PC2 left the files, nothing on the disabled worker), and no
  worker ever ran more threads than it has, nor more AddPieces than its cap;
- kill -9 of the manager while PC2s run, restart on the same database: every sector completes,
  each PC2 ran once, and the clients that come back get their results;
- kill -9 of a worker in the middle of a task: the task reruns on another worker;
- a PC1 for a sector without its pieces is refused at once (the sector lifecycle);
- ReadPiece on a finalized sector without unsealed data unseals first and returns the piece.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.manager.post import tree_r_last_part_bytes
from tests.support.fleet import FAST_WORKER_ENV, Fleet, WorkerSpec, fleet, log_time, retrying, summary  # noqa: F401
from tests.support.sealing import check_no_overcommit, commit, precommit, seal_sector
from tests.support.sectors import MINER, P2K, P8M, SEED, TICKET, piece_data, sector

JobState = manager_pb2.JobState


def test_batch_of_20_sectors(fleet: Fleet) -> None:
    specs = [
        WorkerSpec("big", cpus=8, resources={"AP_MAX_CONCURRENT": 2}),
        WorkerSpec("nopc1", cpus=4, task_types=["AP", "PC2", "C1", "C2", "FIN", "GET", "UNS"]),
        WorkerSpec("small", cpus=2),
        WorkerSpec("off", cpus=8),
    ]
    for spec in specs:
        fleet.add_worker(spec)
    fleet.wait_registered()
    fleet.stub().DisableWorker(manager_pb2.DisableWorkerRequest(worker_id=fleet.worker_ids["off"]), timeout=10)

    refs = [sector(n) for n in range(1, 21)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda r: seal_sector(fleet, r), refs))

    runs = fleet.history()
    by_task: dict[tuple[int, int], list[manager_pb2.TaskRun]] = defaultdict(list)
    for run in runs:
        by_task[(run.sector.id.number, run.task_type)].append(run)
    where: dict[tuple[int, int], str] = {}
    expected_tasks = [
        common_pb2.TASK_TYPE_ADD_PIECE,
        common_pb2.TASK_TYPE_PRE_COMMIT_1,
        common_pb2.TASK_TYPE_PRE_COMMIT_2,
        common_pb2.TASK_TYPE_COMMIT_1,
        common_pb2.TASK_TYPE_COMMIT_2,
        common_pb2.TASK_TYPE_FINALIZE,
        common_pb2.TASK_TYPE_FETCH,
    ]
    for ref in refs:
        for task in expected_tasks:
            found = by_task[(ref.id.number, task)]
            assert [r.outcome for r in found] == [manager_pb2.TASK_OUTCOME_SUCCEEDED], (ref.id.number, task, found)
            where[(ref.id.number, task)] = fleet.name_of(found[0].worker_id)
    assert len(runs) == len(refs) * len(expected_tasks)
    for ref in refs:
        n = ref.id.number
        assert where[(n, common_pb2.TASK_TYPE_PRE_COMMIT_1)] != "nopc1"
        assert where[(n, common_pb2.TASK_TYPE_COMMIT_1)] == where[(n, common_pb2.TASK_TYPE_PRE_COMMIT_2)]
        assert where[(n, common_pb2.TASK_TYPE_FINALIZE)] == where[(n, common_pb2.TASK_TYPE_COMMIT_1)]
    assert "off" not in where.values()
    check_no_overcommit(fleet, runs, {("big", common_pb2.TASK_TYPE_ADD_PIECE): 2})

    # The workers' own records: each computed task (everything but AddPiece, which the worker
    # runs inside its dispatch RPC) finished exactly once, and only the calls the manager knows.
    done = Counter(entry["call"] for _, entry in fleet.worker_log_events("task done"))
    known = {f"{r.call_id.sector.miner}-{r.call_id.sector.number}-{r.call_id.id}" for r in runs}
    assert set(done) <= known
    assert all(n == 1 for n in done.values())
    assert len(done) == len(refs) * (len(expected_tasks) - 1)
    assert not fleet.worker_log_events("task failed")

    # A PC1 for a sector that never got its pieces (here a 64 GiB one, which no worker could run
    # either) is refused at once by the sector lifecycle instead of waiting in the queue. A
    # request that no worker can ever run is reported by SchedDiag: tests/unit/
    # test_manager_service.py::test_disabled_worker_gets_nothing_and_unsatisfiable_is_reported.
    huge = sector(99, common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_64GIB_V1_1)
    whole = common_pb2.PieceInfo(size=64 << 30, commp=bytes(32))
    with pytest.raises(grpc.RpcError) as err:
        fleet.stub().SealPreCommit1(
            manager_pb2.SealPreCommit1Request(sector=huge, ticket=TICKET, pieces=[whole]), timeout=4
        )
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    assert not [
        r
        for r in fleet.stub().SchedDiag(manager_pb2.SchedDiagRequest(force_sched=True), timeout=10).requests
        if r.sector.id.number == 99
    ]


def test_manager_killed_mid_pc2_restarts_and_every_sector_completes(fleet: Fleet) -> None:
    for spec in (WorkerSpec("a", cpus=2), WorkerSpec("b", cpus=2)):
        fleet.add_worker(spec)
    fleet.wait_registered()
    refs = [sector(n, P8M) for n in range(1, 5)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        prepared = list(pool.map(lambda r: precommit(fleet, r), refs))

    results: dict[int, common_pb2.SectorCommitments] = {}

    def pc2(ref: common_pb2.SectorRef, p1o: bytes) -> None:
        stub = fleet.stub()
        reply = retrying(
            lambda: stub.SealPreCommit2(
                manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120
            )
        )
        results[ref.id.number] = reply.commitments

    threads = [threading.Thread(target=pc2, args=(ref, p1o)) for ref, (_, p1o) in zip(refs, prepared, strict=True)]
    for t in threads:
        t.start()
    # The moment a PC2 runs on a worker: freeze the workers (so it cannot finish unseen), kill
    # the manager, start it again on the same database and port, let the workers go on.
    deadline = time.monotonic() + 60
    while True:
        jobs = fleet.stub().SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs
        if any(
            j.task_type == common_pb2.TASK_TYPE_PRE_COMMIT_2 and j.state == JobState.JOB_STATE_RUNNING for j in jobs
        ):
            break
        assert time.monotonic() < deadline, "no PC2 started"
        time.sleep(0.01)
    for proc in fleet.workers.values():
        assert proc.proc is not None
        os.kill(proc.proc.pid, signal.SIGSTOP)
    killed_at = time.time()
    fleet.manager.kill()
    fleet.start_manager()
    for proc in fleet.workers.values():
        assert proc.proc is not None
        os.kill(proc.proc.pid, signal.SIGCONT)
    for t in threads:
        t.join(180)
    assert sorted(results) == [1, 2, 3, 4]
    for ref, (piece, _) in zip(refs, prepared, strict=True):
        commit(fleet, ref, piece, results[ref.id.number])

    # Each PC2 was computed once, and at least one of them was in flight across the crash. A
    # call that was still being dispatched when the manager died never reached the (frozen)
    # worker: the restarted manager sees the worker not running it and holding no result, and
    # queues it again (REQUEUED, never started); that is not a second run.
    runs = fleet.history(task_type=common_pb2.TASK_TYPE_PRE_COMMIT_2)
    succeeded = Counter(r.sector.id.number for r in runs if r.outcome == manager_pb2.TASK_OUTCOME_SUCCEEDED)
    assert succeeded == {1: 1, 2: 1, 3: 1, 4: 1}, summary(fleet, runs)
    assert all(r.outcome in (manager_pb2.TASK_OUTCOME_SUCCEEDED, manager_pb2.TASK_OUTCOME_REQUEUED) for r in runs), (
        summary(fleet, runs)
    )
    sector_of = {f"{r.call_id.sector.miner}-{r.call_id.sector.number}-{r.call_id.id}": r.sector.id.number for r in runs}
    done = [(name, e) for name, e in fleet.worker_log_events("task done") if e["call"] in sector_of]
    assert Counter(sector_of[e["call"]] for _, e in done) == {1: 1, 2: 1, 3: 1, 4: 1}, summary(fleet, runs)
    finished_after_kill = [e for _, e in done if log_time(e["ts"]) > killed_at]
    assert finished_after_kill, "no PC2 was still running when the manager was killed"


def test_worker_killed_mid_task_reruns_elsewhere(fleet: Fleet) -> None:
    # The first C2 attempt hangs (test fault hook), wherever it lands: an 8 MiB C2 is quick
    # enough to finish between being seen running and the SIGSTOP on a loaded machine.
    hang = {"SECTORSTORAGE_TEST_FAULT_TASK_HANG": "C2=1"}
    for spec in (WorkerSpec("a", cpus=2, env=hang), WorkerSpec("b", cpus=2, env=hang)):
        fleet.add_worker(spec)
    fleet.wait_registered()
    ref = sector(1, P8M)
    piece, p1o = precommit(fleet, ref)
    p2 = fleet.stub().SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120)
    c1 = fleet.stub().SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref,
            ticket=TICKET,
            seed=SEED,
            pieces=[piece],
            comm_r=p2.commitments.comm_r,
            comm_d=p2.commitments.comm_d,
        ),
        timeout=120,
    )
    future = fleet.stub().SealCommit2.future(
        manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=120
    )
    deadline = time.monotonic() + 60
    while True:
        jobs = fleet.stub().SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs
        running = [
            j for j in jobs if j.task_type == common_pb2.TASK_TYPE_COMMIT_2 and j.state == JobState.JOB_STATE_RUNNING
        ]
        if running:
            break
        assert time.monotonic() < deadline and not future.done(), "C2 never seen running"
        time.sleep(0.01)
    victim = fleet.name_of(running[0].worker_id)
    proc = fleet.workers[victim].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGSTOP)  # it cannot finish now; then it dies
    fleet.workers[victim].kill()
    proof = future.result()
    verdict = fleet.stub().VerifySeal(
        manager_pb2.VerifySealRequest(
            sector=ref,
            comm_r=p2.commitments.comm_r,
            comm_d=p2.commitments.comm_d,
            ticket=TICKET,
            seed=SEED,
            proof=proof.proof,
        ),
        timeout=30,
    )
    assert verdict.valid
    runs = fleet.history(task_type=common_pb2.TASK_TYPE_COMMIT_2)
    assert [(fleet.name_of(r.worker_id), r.outcome) for r in sorted(runs, key=lambda r: r.attempt)] == [
        (victim, manager_pb2.TASK_OUTCOME_REQUEUED),
        ("b" if victim == "a" else "a", manager_pb2.TASK_OUTCOME_SUCCEEDED),
    ]
    stats = fleet.stub().WorkerStats(manager_pb2.WorkerStatsRequest(worker_id=fleet.worker_ids[victim]), timeout=5)
    assert not stats.workers[0].state.connected


def test_pc2_fetches_to_another_worker_when_the_holder_cannot_run_it(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("pc1", cpus=2, task_types=["AP", "PC1"]))
    fleet.add_worker(WorkerSpec("pc2", cpus=2, task_types=["PC2", "C1", "C2", "FIN", "GET"]))
    fleet.wait_registered()
    ref = sector(3)
    piece, p1o = precommit(fleet, ref)
    p2 = fleet.stub().SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=60)
    commit(fleet, ref, piece, p2.commitments)
    runs = fleet.history(task_type=common_pb2.TASK_TYPE_PRE_COMMIT_2)
    assert [(fleet.name_of(r.worker_id), r.outcome) for r in runs] == [("pc2", manager_pb2.TASK_OUTCOME_SUCCEEDED)]
    # The cache came over as a FETCH task of its own on the PC2 worker, finished before PC2 began:
    # PC2 held its threads only while it computed, its input already local.
    fetches = fleet.history(sector=ref.id, task_type=common_pb2.TASK_TYPE_FETCH)
    assert [(fleet.name_of(r.worker_id), r.outcome) for r in fetches] == [("pc2", manager_pb2.TASK_OUTCOME_SUCCEEDED)]
    assert fetches[0].finished_at.ToNanoseconds() <= runs[0].started_at.ToNanoseconds()
    fetched = [e for name, e in fleet.worker_log_events("fetched") if name == "pc2" and e["sector"] == f"{MINER}-3"]
    assert [e["type"] for e in fetched] == ["cache"]
    assert log_time(fetched[0]["ts"]) <= runs[0].started_at.ToNanoseconds() / 1e9 + 0.001


def test_fetch_stage_obeys_the_get_cap(fleet: Fleet) -> None:
    """Two sectors' PC2 on a worker that holds neither cache, with a GET cap of 1: the two
    FETCH tasks run one after the other."""
    fleet.add_worker(WorkerSpec("pc1", cpus=2, task_types=["AP", "PC1"]))
    fleet.add_worker(
        WorkerSpec(
            "pc2",
            cpus=4,
            task_types=["PC2", "C1", "C2", "FIN", "GET"],
            resources={"GET_MAX_CONCURRENT": 1},
            env={"SECTORSTORAGE_TEST_FAULT_TASK_DELAY": "GET=1"},
        )
    )
    fleet.wait_registered()
    outputs = {n: precommit(fleet, sector(n))[1] for n in (4, 5)}
    with ThreadPoolExecutor(2) as pool:
        list(
            pool.map(
                lambda n: fleet.stub().SealPreCommit2(
                    manager_pb2.SealPreCommit2Request(sector=sector(n), pre_commit1_output=outputs[n]), timeout=120
                ),
                (4, 5),
            )
        )
    fetches = sorted(
        (r for n in (4, 5) for r in fleet.history(sector=sector(n).id, task_type=common_pb2.TASK_TYPE_FETCH)),
        key=lambda r: r.started_at.ToNanoseconds(),
    )
    assert len(fetches) == 2 and all(fleet.name_of(r.worker_id) == "pc2" for r in fetches)
    assert fetches[0].finished_at.ToNanoseconds() <= fetches[1].started_at.ToNanoseconds()  # never two at once


def test_read_piece_unseals_finalized_sector(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4))
    fleet.wait_registered()
    ref = sector(7)
    piece, p1o = precommit(fleet, ref)
    p2 = fleet.stub().SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120)
    commit(fleet, ref, piece, p2.commitments)  # the lifecycle finalizes only committed sectors
    fleet.stub().FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=120)
    whole = common_pb2.UnpaddedByteRange(offset=0, size=2032)
    assert not fleet.stub().IsUnsealed(manager_pb2.IsUnsealedRequest(sector=ref, range=whole), timeout=30).unsealed
    stream = fleet.stub().ReadPiece(
        manager_pb2.ReadPieceRequest(sector=ref, range=whole, ticket=TICKET, unsealed_cid=p2.commitments.unsealed_cid),
        timeout=120,
    )
    header = next(stream).header
    data = b"".join(m.chunk.data for m in stream)
    assert header.did_unseal and header.size == 2032
    assert data == piece_data(7, P2K)
    assert fleet.stub().IsUnsealed(manager_pb2.IsUnsealedRequest(sector=ref, range=whole), timeout=30).unsealed
    # Read again: no unseal needed now.
    again = fleet.stub().ReadPiece(manager_pb2.ReadPieceRequest(sector=ref, range=whole), timeout=60)
    assert not next(again).header.did_unseal


def test_post_and_check_provable(fleet: Fleet) -> None:
    """Window and Winning PoSt fanned out to the worker holding the sectors, assembled by the
    manager and verified; CheckProvable and PoSt report a sector whose replica was truncated."""
    fleet.add_worker(WorkerSpec("a", cpus=4))
    fleet.wait_registered()
    stub = fleet.stub()
    proving: list[common_pb2.ProvingSector] = []
    for n in (1, 2):
        ref = sector(n)
        piece, p1o = precommit(fleet, ref)
        p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=60)
        commit(fleet, ref, piece, p2.commitments)
        stub.FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=60)
        proving.append(common_pb2.ProvingSector(sector=ref, comm_r=p2.commitments.comm_r))
    randomness = bytes(range(32))
    window = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_2KIB_V1
    winning = common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINNING_2KIB_V1

    post = stub.GenerateWindowPoSt(
        manager_pb2.GenerateWindowPoStRequest(proof_type=window, randomness=randomness, sectors=proving), timeout=60
    )
    assert len(post.proofs) == 1 and not post.skipped
    check = stub.VerifyWindowPoSt(
        manager_pb2.VerifyWindowPoStRequest(randomness=randomness, sectors=proving, proofs=post.proofs), timeout=30
    )
    assert check.valid, check.reason
    other = stub.VerifyWindowPoSt(
        manager_pb2.VerifyWindowPoStRequest(randomness=bytes(32), sectors=proving, proofs=post.proofs), timeout=30
    )
    assert not other.valid

    challenge = stub.GenerateWinningPoStSectorChallenge(
        manager_pb2.GenerateWinningPoStSectorChallengeRequest(
            proof_type=winning, miner=MINER, randomness=randomness, eligible_sector_count=2
        ),
        timeout=30,
    )
    chosen = [proving[i] for i in challenge.indices]
    won = stub.GenerateWinningPoSt(
        manager_pb2.GenerateWinningPoStRequest(proof_type=winning, randomness=randomness, sectors=chosen), timeout=60
    )
    assert stub.VerifyWinningPoSt(
        manager_pb2.VerifyWinningPoStRequest(randomness=randomness, sectors=chosen, proofs=won.proofs), timeout=30
    ).valid

    assert not stub.CheckProvable(
        manager_pb2.CheckProvableRequest(proof_type=window, sectors=proving, expensive=True), timeout=60
    ).bad_sectors
    sealed = fleet.tmp / "store-a" / "sealed" / "s-t01000-2"
    with open(sealed, "r+b") as f:
        f.truncate(1024)
    bad = stub.CheckProvable(
        manager_pb2.CheckProvableRequest(proof_type=window, sectors=proving), timeout=60
    ).bad_sectors
    assert [(b.sector.number, b.reason) for b in bad] == [
        (2, "sealed/s-t01000-2 is wrong size (got 1024, expect 2048)")
    ]
    # Another challenge: with the same randomness the manager would use the vanilla proofs it
    # stored for the first PoSt (docs/manager.md, "PoSt").
    randomness = bytes(range(1, 33))
    post = stub.GenerateWindowPoSt(
        manager_pb2.GenerateWindowPoStRequest(proof_type=window, randomness=randomness, sectors=proving), timeout=60
    )
    # The proof covers the sector that could be proven; the other is skipped with its reason.
    assert [s.sector.number for s in post.skipped] == [2] and len(post.proofs) == 1
    rest = [p for p in proving if p.sector.id.number != 2]
    assert stub.VerifyWindowPoSt(
        manager_pb2.VerifyWindowPoStRequest(randomness=randomness, sectors=rest, proofs=post.proofs), timeout=30
    ).valid
    assert not stub.VerifyWindowPoSt(
        manager_pb2.VerifyWindowPoStRequest(randomness=randomness, sectors=proving, proofs=post.proofs), timeout=30
    ).valid
    jobs = stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=10).jobs
    assert not jobs  # PoSt jobs end with their calls

    # A truncated tree-r-last is reported by the cheap check too (its size is known).
    tree = fleet.tmp / "store-a" / "cache" / "s-t01000-1" / "sc-02-data-tree-r-last.dat"
    want = tree_r_last_part_bytes(rust_core.sector_params(2048))
    assert tree.stat().st_size == want
    with open(tree, "r+b") as f:
        f.truncate(want - 32)
    bad = stub.CheckProvable(
        manager_pb2.CheckProvableRequest(proof_type=window, sectors=proving[:1]), timeout=60
    ).bad_sectors
    assert [(b.sector.number, b.reason) for b in bad] == [
        (1, f"cache/s-t01000-1/sc-02-data-tree-r-last.dat is wrong size (got {want - 32}, expect {want})")
    ]


def test_unseal_release_and_remove(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4))
    fleet.wait_registered()
    stub = fleet.stub()
    ref = sector(11)
    piece, p1o = precommit(fleet, ref)
    p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=60)
    whole = common_pb2.UnpaddedByteRange(offset=0, size=2032)

    def unsealed() -> bool:
        return bool(stub.IsUnsealed(manager_pb2.IsUnsealedRequest(sector=ref, range=whole), timeout=30).unsealed)

    assert unsealed()
    stub.ReleaseUnsealed(manager_pb2.ReleaseUnsealedRequest(sector=ref, all=True), timeout=60)
    assert not unsealed()
    stub.UnsealPiece(
        manager_pb2.UnsealPieceRequest(
            sector=ref, range=whole, ticket=TICKET, unsealed_cid=p2.commitments.unsealed_cid
        ),
        timeout=60,
    )
    assert unsealed()
    removed = stub.Remove(manager_pb2.RemoveRequest(sector=ref.id), timeout=60).removed
    assert {r.type for r in removed} == {
        common_pb2.SECTOR_FILE_TYPE_UNSEALED,
        common_pb2.SECTOR_FILE_TYPE_SEALED,
        common_pb2.SECTOR_FILE_TYPE_CACHE,
    }
    assert not unsealed()
    assert not stub.Remove(manager_pb2.RemoveRequest(sector=ref.id), timeout=60).removed  # nothing left: not an error
    with pytest.raises(grpc.RpcError) as err:
        next(
            iter(
                stub.ReadPiece(
                    manager_pb2.ReadPieceRequest(
                        sector=ref, range=whole, ticket=TICKET, unsealed_cid=p2.commitments.unsealed_cid
                    ),
                    timeout=30,
                )
            )
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as err:
        stub.ReleaseUnsealed(manager_pb2.ReleaseUnsealedRequest(sector=ref), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]


def test_worker_restart_mid_task_is_retried(fleet: Fleet) -> None:
    """A worker process dies mid-C2 and starts again with the same identity (new session): the
    call it lost is failed as WORKER_RESTARTED and run again; the client gets its proof."""
    fleet.add_worker(WorkerSpec("a", cpus=2))
    fleet.wait_registered()
    stub = fleet.stub()
    ref = sector(1, P8M)
    piece, p1o = precommit(fleet, ref)
    p2 = stub.SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120)
    c1 = stub.SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref,
            ticket=TICKET,
            seed=SEED,
            pieces=[piece],
            comm_r=p2.commitments.comm_r,
            comm_d=p2.commitments.comm_d,
        ),
        timeout=120,
    )
    future = stub.SealCommit2.future(
        manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=120
    )
    deadline = time.monotonic() + 60
    while not any(
        j.task_type == common_pb2.TASK_TYPE_COMMIT_2 and j.state == JobState.JOB_STATE_RUNNING
        for j in stub.SealingJobs(manager_pb2.SealingJobsRequest(), timeout=5).jobs
    ):
        assert time.monotonic() < deadline and not future.done(), "C2 never seen running"
        time.sleep(0.01)
    old = fleet.workers["a"]
    assert old.proc is not None
    os.kill(old.proc.pid, signal.SIGSTOP)
    old.kill()
    env = {**FAST_WORKER_ENV, "SECTORSTORAGE_WORKER_CPUS": "2"}
    fleet.workers["a"] = fleet.start_service(
        "worker", "--index", fleet.index.address, "--manager", fleet.address, env=env, data_dir=fleet.tmp / "w-a"
    )
    proof = future.result().proof
    verdict = stub.VerifySeal(
        manager_pb2.VerifySealRequest(
            sector=ref,
            comm_r=p2.commitments.comm_r,
            comm_d=p2.commitments.comm_d,
            ticket=TICKET,
            seed=SEED,
            proof=proof,
        ),
        timeout=30,
    )
    assert verdict.valid
    runs = sorted(fleet.history(task_type=common_pb2.TASK_TYPE_COMMIT_2), key=lambda r: r.attempt)
    assert [r.outcome for r in runs] == [manager_pb2.TASK_OUTCOME_REQUEUED, manager_pb2.TASK_OUTCOME_SUCCEEDED]
    # WORKER_RESTARTED when the new process registers first; TEMPORARY ("gone") when its start
    # took longer than the heartbeat timeout: either way the call went back to the queue.
    assert runs[0].error.code in (common_pb2.TASK_ERROR_CODE_WORKER_RESTARTED, common_pb2.TASK_ERROR_CODE_TEMPORARY)
    assert {r.worker_id for r in runs} == {fleet.worker_ids["a"]}
