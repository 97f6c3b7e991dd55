"""A sector driven through the manager of a test Fleet, step by step (AddPiece, PC1, PC2, C1,
C2 with the proof verified, FinalizeSector), and the check that no worker was overcommitted
while it happened: shared by the manager end-to-end, fleet, PoSt failover and storage
maintenance tests."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

from services.cli.sealing import add_piece
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from tests.support.fleet import Fleet, retrying
from tests.support.sectors import SEED, TICKET, piece_data

# Threads one 2 KiB / 8 MiB task takes (the resource table) on a worker with `cpus` CPUs.
THREADS: dict[int, Callable[[int], int]] = {
    common_pb2.TASK_TYPE_ADD_PIECE: lambda cpus: 1,
    common_pb2.TASK_TYPE_PRE_COMMIT_1: lambda cpus: 1,
    common_pb2.TASK_TYPE_PRE_COMMIT_2: lambda cpus: max(1, cpus * 92 // 100),
    common_pb2.TASK_TYPE_COMMIT_1: lambda cpus: 0,
    common_pb2.TASK_TYPE_COMMIT_2: lambda cpus: 1,
    common_pb2.TASK_TYPE_FINALIZE: lambda cpus: 0,
    common_pb2.TASK_TYPE_FETCH: lambda cpus: 0,
    common_pb2.TASK_TYPE_UNSEAL: lambda cpus: 1,
}


def precommit(fleet: Fleet, ref: common_pb2.SectorRef) -> tuple[common_pb2.PieceInfo, bytes]:
    piece = add_piece(fleet.stub(), ref, piece_data(ref.id.number, ref.proof_type))
    p1 = fleet.stub().SealPreCommit1(
        manager_pb2.SealPreCommit1Request(sector=ref, ticket=TICKET, pieces=[piece]), timeout=120
    )
    return piece, p1.pre_commit1_output


def commit(
    fleet: Fleet, ref: common_pb2.SectorRef, piece: common_pb2.PieceInfo, commitments: common_pb2.SectorCommitments
) -> bytes:
    stub = fleet.stub()
    c1 = retrying(
        lambda: stub.SealCommit1(
            manager_pb2.SealCommit1Request(
                sector=ref,
                ticket=TICKET,
                seed=SEED,
                pieces=[piece],
                comm_r=commitments.comm_r,
                comm_d=commitments.comm_d,
            ),
            timeout=120,
        )
    )
    c2 = retrying(
        lambda: stub.SealCommit2(
            manager_pb2.SealCommit2Request(sector=ref, commit1_output=c1.commit1_output), timeout=120
        )
    )
    verdict = stub.VerifySeal(
        manager_pb2.VerifySealRequest(
            sector=ref, comm_r=commitments.comm_r, comm_d=commitments.comm_d, ticket=TICKET, seed=SEED, proof=c2.proof
        ),
        timeout=30,
    )
    assert verdict.valid, verdict.reason
    return bytes(c2.proof)


def seal_sector(fleet: Fleet, ref: common_pb2.SectorRef) -> None:
    piece, p1o = precommit(fleet, ref)
    p2 = fleet.stub().SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120)
    commit(fleet, ref, piece, p2.commitments)
    fleet.stub().FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=120)


def check_no_overcommit(fleet: Fleet, runs: list[manager_pb2.TaskRun], caps: dict[tuple[str, int], int]) -> None:
    """Replays the runs per worker by their start/end times: threads in use never exceed the
    worker's CPUs, and tasks of a capped type never exceed the cap."""
    events: dict[str, list[tuple[float, int, manager_pb2.TaskRun]]] = defaultdict(list)
    for run in runs:
        if run.outcome != manager_pb2.TASK_OUTCOME_SUCCEEDED:
            continue
        start = run.started_at.ToNanoseconds() / 1e9
        end = run.finished_at.ToNanoseconds() / 1e9
        events[run.worker_id].append((start, 1, run))
        events[run.worker_id].append((end, -1, run))
    for worker_id, items in events.items():
        cpus = fleet.cpus[worker_id]
        threads = 0
        per_type: Counter[int] = Counter()
        for _, delta, run in sorted(items, key=lambda e: (e[0], e[1])):  # ends before starts at a tie
            threads += delta * THREADS[run.task_type](cpus)
            per_type[run.task_type] += delta
            assert threads <= cpus, f"{fleet.name_of(worker_id)} ran {threads} threads with {cpus} CPUs"
            for (name, task_type), cap in caps.items():
                if fleet.worker_ids[name] == worker_id:
                    assert per_type[task_type] <= cap, (
                        f"{name} ran {per_type[task_type]} of task {task_type}, cap {cap}"
                    )
