"""The worker's tasks on real processes: an index, one worker with real storage directories in
tmp, and the test's ManagerEndpoint receiving the Return calls. Each task is checked by its
effect on disk, in the index, and in the returned result (proofs verified with rust_core)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, worker_pb2
from services.worker.partialfile import PartialFile
from services.worker.sectors import prover_id
from tests.support.fleet import StartService, start_worker
from tests.support.sectors import MINER, SEED, TICKET, sector_ref
from tests.support.worker import (
    ManagerEndpoint,
    WorkerHandle,
    add_piece,
    assignment,
    find,
    index_stub,
    log_entries,
    precommit_on,
)

PROVER = prover_id(MINER)
TaskType = common_pb2.TaskType
ST = common_pb2.SectorFileType


@pytest.fixture
def fleet(start_service: StartService, manager: ManagerEndpoint, tmp_path: Path) -> tuple[object, WorkerHandle]:
    index = start_service("index")
    worker = start_worker(start_service, index, manager)
    worker.attach("seal", tmp_path / "seal", seal=True, store=False)
    worker.attach("store", tmp_path / "store", seal=False, store=True)
    return index, worker


def names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("size", [2048, 8 << 20], ids=["2KiB", "8MiB"])
def test_sealing_sequence(fleet: tuple[object, WorkerHandle], tmp_path: Path, size: int) -> None:
    index, w = fleet
    number = 1
    ref = sector_ref(number, size)
    name = f"s-t0{MINER}-{number}"
    data = os.urandom(size // 128 * 127)

    # AddPiece: one piece filling the sector; commP is the real piece commitment.
    piece = w.ok(add_piece(w, number, size, data))
    assert piece.size == size and piece.commp == rust_core.piece_commitment(data)
    assert piece.piece_cid == rust_core.piece_cid(piece.commp)
    unsealed = tmp_path / "seal" / "unsealed" / name
    with PartialFile.open(unsealed, size) as pf:
        assert pf.allocated() == [(0, size)]
    assert [loc.id for loc in find(index, number, ST.SECTOR_FILE_TYPE_UNSEALED)] == [w.ids["seal"]]

    # PC1, PC2.
    pieces = [common_pb2.PieceInfo(size=size, piece_cid=piece.piece_cid)]
    a = assignment(number)
    w.stub.SealPreCommit1(
        worker_pb2.WorkerServiceSealPreCommit1Request(assignment=a, sector=ref, ticket=TICKET, pieces=pieces),
        timeout=10,
    )
    p1 = w.ok(a.call_id)
    # PC1 makes the cache only; the sealed file is PC2's output (no empty placeholder to fetch).
    assert not (tmp_path / "seal" / "sealed" / name).exists() and (tmp_path / "seal" / "cache" / name).is_dir()
    assert find(index, number, ST.SECTOR_FILE_TYPE_SEALED) == []
    a = assignment(number)
    w.stub.SealPreCommit2(
        worker_pb2.WorkerServiceSealPreCommit2Request(assignment=a, sector=ref, pre_commit1_output=p1), timeout=10
    )
    cids = w.ok(a.call_id)
    assert cids.comm_d == rust_core.unsealed_commitment(size, [(size, piece.commp)])
    assert cids.sealed_cid == rust_core.sealed_cid(cids.comm_r)
    assert (tmp_path / "seal" / "sealed" / name).stat().st_size == size
    assert [loc.id for loc in find(index, number, ST.SECTOR_FILE_TYPE_SEALED)] == [w.ids["seal"]]

    # C1, C2: the proof verifies.
    a = assignment(number)
    w.stub.SealCommit1(
        worker_pb2.WorkerServiceSealCommit1Request(
            assignment=a, sector=ref, ticket=TICKET, seed=SEED, pieces=pieces, comm_r=cids.comm_r, comm_d=cids.comm_d
        ),
        timeout=10,
    )
    c1 = w.ok(a.call_id)
    a = assignment(number)
    w.stub.SealCommit2(
        worker_pb2.WorkerServiceSealCommit2Request(assignment=a, sector=ref, commit1_output=c1), timeout=10
    )
    proof = w.ok(a.call_id)
    assert rust_core.verify_seal(size, cids.comm_r, cids.comm_d, PROVER, number, TICKET, SEED, proof)

    # Finalize keeping the whole piece unsealed: the cache loses its layers.
    cache = tmp_path / "seal" / "cache" / name
    assert any(n.startswith("sc-02-data-layer") for n in names(cache))
    a = assignment(number)
    keep = [common_pb2.UnpaddedByteRange(offset=0, size=len(data))]
    w.stub.FinalizeSector(
        worker_pb2.WorkerServiceFinalizeSectorRequest(assignment=a, sector=ref, keep_unsealed=keep), timeout=10
    )
    assert w.result(a.call_id)[0] == "done"
    assert names(cache) == ["p_aux", "sc-02-data-tree-r-last.dat"]

    # MoveStorage: everything to the store path, declared primary there, gone from the seal path.
    a = assignment(number)
    types = [ST.SECTOR_FILE_TYPE_UNSEALED, ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE]
    w.stub.MoveStorage(worker_pb2.MoveStorageRequest(assignment=a, sector=ref, types=types), timeout=10)
    assert w.result(a.call_id)[0] == "done"
    for t in ("unsealed", "sealed", "cache"):
        assert not (tmp_path / "seal" / t / name).exists()
        assert (tmp_path / "store" / t / name).exists()
    locations = find(index, number, *types)
    assert [(loc.id, loc.primary, len(loc.types)) for loc in locations] == [(w.ids["store"], True, 3)]

    # ReadPiece streams the original bytes.
    def read_piece() -> bytes:
        stream = w.stub.ReadPiece(
            worker_pb2.WorkerServiceReadPieceRequest(
                sector=ref, range=common_pb2.UnpaddedByteRange(offset=0, size=len(data))
            ),
            timeout=30,
        )
        return b"".join(m.chunk.data for m in stream)

    assert read_piece() == data

    # ReleaseUnsealed (all): the unsealed copy goes; ReadPiece is then NOT_FOUND.
    a = assignment(number)
    w.stub.ReleaseUnsealed(
        worker_pb2.WorkerServiceReleaseUnsealedRequest(assignment=a, sector=ref, all=True), timeout=10
    )
    assert w.result(a.call_id)[0] == "done"
    assert not (tmp_path / "store" / "unsealed" / name).exists()
    with pytest.raises(grpc.RpcError) as err:
        read_piece()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # UnsealPiece regenerates it from the replica.
    a = assignment(number)
    w.stub.UnsealPiece(
        worker_pb2.WorkerServiceUnsealPieceRequest(
            assignment=a,
            sector=ref,
            range=common_pb2.UnpaddedByteRange(offset=0, size=len(data)),
            ticket=TICKET,
            comm_d=cids.comm_d,
        ),
        timeout=10,
    )
    assert w.result(a.call_id)[0] == "done"
    assert read_piece() == data

    # Window PoSt vanilla proof of the sector verifies.
    randomness = bytes(range(32))
    replies = list(
        w.stub.GenerateVanillaProofs(
            worker_pb2.GenerateVanillaProofsRequest(
                assignment=assignment(number),
                proof_type=ref.proof_type,  # window ids equal the seal proof ids (5..9)
                randomness=randomness,
                sectors=[
                    common_pb2.ProvingSector(sector=ref, comm_r=cids.comm_r),
                    common_pb2.ProvingSector(sector=sector_ref(99, size), comm_r=cids.comm_r),
                ],
            ),
            timeout=60,
        )
    )
    # One message per sector in order; the missing sector's error does not stop the others.
    assert [r.sector.number for r in replies] == [number, 99]
    assert replies[0].WhichOneof("outcome") == "vanilla_proof"
    assert (
        replies[1].WhichOneof("outcome") == "error"
        and replies[1].error.code == common_pb2.TASK_ERROR_CODE_SECTOR_NOT_FOUND
    )
    assert rust_core.verify_single_vanilla_proof(
        size, randomness, PROVER, (number, cids.comm_r), replies[0].vanilla_proof, "window"
    )

    # Remove: every file goes, and the index forgets them.
    reply = w.stub.Remove(worker_pb2.WorkerServiceRemoveRequest(sector=ref.id), timeout=30)
    assert sorted(r.type for r in reply.removed) == sorted(types)
    for t in ("unsealed", "sealed", "cache"):
        assert not (tmp_path / "store" / t / name).exists()
    assert find(index, number, *types) == []


def test_add_piece_aligns_pieces_and_rejects_bad_streams(fleet: tuple[object, WorkerHandle], tmp_path: Path) -> None:
    _, w = fleet
    number, size = 2, 2048
    unsealed = tmp_path / "seal" / "unsealed" / f"s-t0{MINER}-{number}"
    small, big = os.urandom(127), os.urandom(254)
    p1 = w.ok(add_piece(w, number, size, small))
    assert (p1.size, p1.commp) == (128, rust_core.piece_commitment(small))
    # The 256-byte piece goes to padded offset 256; the gap 128..256 is a zero piece.
    p2 = w.ok(add_piece(w, number, size, big, existing=[127]))
    assert p2.commp == rust_core.piece_commitment(big)
    with PartialFile.open(unsealed, size) as pf:
        assert pf.allocated() == [(0, 512)]
        assert pf.read_at(128, 128) == bytes(128)
        assert pf.read_at(256, 256) == rust_core.fr32_pad(big)

    # A stream with too few bytes fails the RPC and marks nothing; no Return is sent.
    a = assignment(number)
    header = worker_pb2.WorkerServiceAddPieceHeader(
        assignment=a, sector=sector_ref(number, size), existing_piece_sizes=[127, 254, 127], piece_size=508
    )
    short = [
        worker_pb2.WorkerServiceAddPieceRequest(header=header),
        worker_pb2.WorkerServiceAddPieceRequest(chunk=common_pb2.Chunk(offset=0, data=b"x" * 100)),
    ]
    with pytest.raises(grpc.RpcError) as err:
        w.stub.AddPiece(iter(short), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    long = [*short, worker_pb2.WorkerServiceAddPieceRequest(chunk=common_pb2.Chunk(offset=100, data=b"x" * 500))]
    with pytest.raises(grpc.RpcError) as err:
        w.stub.AddPiece(iter(long), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with PartialFile.open(unsealed, size) as pf:
        assert pf.allocated() == [(0, 512)]
    assert a.call_id.id not in w.manager.results  # type: ignore[union-attr]

    # Header errors: not 127*2^k, does not fit.
    for existing, piece in (([], 100), ([1016], 2032)):
        h = worker_pb2.WorkerServiceAddPieceHeader(
            assignment=assignment(number),
            sector=sector_ref(number, size),
            existing_piece_sizes=existing,
            piece_size=piece,
        )
        with pytest.raises(grpc.RpcError) as err:
            w.stub.AddPiece(iter([worker_pb2.WorkerServiceAddPieceRequest(header=h)]), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()


def test_task_failures_come_back_as_task_errors(fleet: tuple[object, WorkerHandle]) -> None:
    _, w = fleet
    size = 2048
    data = os.urandom(2032)
    w.ok(add_piece(w, 3, size, data))
    # PC1 with a commP that does not match the unsealed data: permanent.
    a = assignment(3)
    wrong = [common_pb2.PieceInfo(size=size, commp=bytes(32))]
    w.stub.SealPreCommit1(
        worker_pb2.WorkerServiceSealPreCommit1Request(
            assignment=a, sector=sector_ref(3, size), ticket=TICKET, pieces=wrong
        ),
        timeout=10,
    )
    kind, error = w.result(a.call_id)
    assert (
        kind == "error"
        and error.code == common_pb2.TASK_ERROR_CODE_PERMANENT
        and "does not match the unsealed file" in error.message
    )
    # PC2 of a sector that has no files anywhere: sector not found.
    a = assignment(4)
    w.stub.SealPreCommit2(
        worker_pb2.WorkerServiceSealPreCommit2Request(
            assignment=a, sector=sector_ref(4, size), pre_commit1_output=b"x"
        ),
        timeout=10,
    )
    kind, error = w.result(a.call_id)
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_SECTOR_NOT_FOUND
    # C2 of garbage: permanent.
    a = assignment(4)
    w.stub.SealCommit2(
        worker_pb2.WorkerServiceSealCommit2Request(assignment=a, sector=sector_ref(4, size), commit1_output=b"garbage"),
        timeout=10,
    )
    kind, error = w.result(a.call_id)
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_PERMANENT


def test_dispatch_contract(fleet: tuple[object, WorkerHandle]) -> None:
    _, w = fleet
    ref = sector_ref(5, 2048)
    req = worker_pb2.WorkerServiceSealCommit2Request(sector=ref, commit1_output=b"c1")

    def code(request: worker_pb2.WorkerServiceSealCommit2Request) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as err:
            w.stub.SealCommit2(request, timeout=10)
        return err.value.code()

    assert code(req) == grpc.StatusCode.INVALID_ARGUMENT  # no call id
    other = worker_pb2.WorkerServiceSealCommit2Request(assignment=assignment(6), sector=ref, commit1_output=b"c1")
    assert code(other) == grpc.StatusCode.INVALID_ARGUMENT  # call id of another sector
    gpu = worker_pb2.WorkerServiceSealCommit2Request(assignment=assignment(5), sector=ref, commit1_output=b"c1")
    gpu.assignment.gpu_ordinals.append(7)
    assert code(gpu) == grpc.StatusCode.INVALID_ARGUMENT  # no such GPU here

    # Disabled task type: FAILED_PRECONDITION, and visible in TaskTypes/Info.
    w.stub.DisableTaskType(worker_pb2.DisableTaskTypeRequest(task_types=[TaskType.TASK_TYPE_COMMIT_2]), timeout=10)
    assert TaskType.TASK_TYPE_COMMIT_2 not in w.stub.TaskTypes(worker_pb2.TaskTypesRequest(), timeout=10).task_types
    ok = worker_pb2.WorkerServiceSealCommit2Request(assignment=assignment(5), sector=ref, commit1_output=b"c1")
    assert code(ok) == grpc.StatusCode.FAILED_PRECONDITION
    info = w.stub.Info(worker_pb2.InfoRequest(), timeout=10).info
    assert TaskType.TASK_TYPE_COMMIT_2 not in info.task_types and len(info.paths) == 2
    assert all(p.stat.capacity > 0 for p in info.paths)
    enabled = w.stub.EnableTaskType(
        worker_pb2.EnableTaskTypeRequest(task_types=[TaskType.TASK_TYPE_COMMIT_2]), timeout=10
    )
    assert TaskType.TASK_TYPE_COMMIT_2 in enabled.task_types

    # Idempotent per CallId: the same dispatch twice starts one task and returns once.
    first = w.stub.SealCommit2(ok, timeout=10).call_id
    again = w.stub.SealCommit2(ok, timeout=10).call_id
    assert first == again == ok.assignment.call_id
    w.result(first)
    assert w.manager is not None
    time.sleep(0.5)
    assert w.manager.returns.count(first.id) == 1


# Timeouts and AbortCall are tested in tests/integration/worker/test_cancel.py, from outside the worker: the call
# really stops (CPU, RSS, locks, files), not only its status code.


def test_a_call_aborted_before_its_dispatch_arrives_never_runs(
    fleet: tuple[object, WorkerHandle], tmp_path: Path
) -> None:
    """The manager aborts a call while its dispatch is still on the wire, and the abort arrives
    first (a PC1 superseded by the late result of an earlier attempt, say). The dispatch that
    follows must start nothing: a stale PC1 begins by removing the sector's sealed file and cache
    everywhere, which would wipe a sector sealed since."""
    _, w = fleet
    number = 9
    pieces, _ = precommit_on(w, number, 2048, bytes(2032))
    name = f"s-t0{MINER}-{number}"
    files = {p: p.read_bytes() for p in (tmp_path / "seal").rglob("*") if name in str(p) and p.is_file()}
    assert any("sealed" in str(p) for p in files) and any("cache" in str(p) for p in files)

    stale = assignment(number)
    aborted = w.stub.AbortCall(worker_pb2.AbortCallRequest(call_id=stale.call_id, reason="superseded"), timeout=10)
    assert not aborted.found  # nothing was running under that id
    request = worker_pb2.WorkerServiceSealPreCommit1Request(
        assignment=stale, sector=sector_ref(number, 2048), ticket=TICKET, pieces=pieces
    )
    for _ in range(2):  # the dispatch, and its retry
        assert w.stub.SealPreCommit1(request, timeout=10).call_id.id == stale.call_id.id
    with pytest.raises(TimeoutError):
        w.result(stale.call_id, timeout=2.0)
    started = [e for e in log_entries(w, "task started") if stale.call_id.id in str(e.get("call"))]
    assert not started
    assert {p: p.read_bytes() for p in files if p.exists()} == files
    assert [loc.id for loc in find(fleet[0], number, ST.SECTOR_FILE_TYPE_SEALED)] == [w.ids["seal"]]  # type: ignore[arg-type]


def test_a_dispatch_placed_on_an_earlier_run_of_the_worker_starts_nothing(
    fleet: tuple[object, WorkerHandle], tmp_path: Path
) -> None:
    """A PC2 and a PC1 dispatch naming a worker session that is not this process's (the manager
    placed them before the worker restarted, and the dispatch was held in the reconnecting
    channel while the manager failed and retried that call) are refused with
    FAILED_PRECONDITION: nothing starts and the sector's sealed file and cache stay byte for byte
    (a stale PC2 would begin by removing the sealed file; docs/reliability.md, fix 9)."""
    _, w = fleet
    number = 11
    pieces, _ = precommit_on(w, number, 2048, bytes(2032))
    name = f"s-t0{MINER}-{number}"
    files = {p: p.read_bytes() for p in (tmp_path / "seal").rglob("*") if name in str(p) and p.is_file()}
    assert any("sealed" in str(p) for p in files) and any("cache" in str(p) for p in files)

    stale_pc2 = assignment(number)
    stale_pc2.worker_session_id = "the-run-before-the-restart"
    with pytest.raises(grpc.RpcError) as refused:
        w.stub.SealPreCommit2(
            worker_pb2.WorkerServiceSealPreCommit2Request(
                assignment=stale_pc2, sector=sector_ref(number, 2048), pre_commit1_output=b"p1"
            ),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "assignment for worker session the-run-before-the-restart" in (refused.value.details() or "")
    stale_pc1 = assignment(number)
    stale_pc1.worker_session_id = "the-run-before-the-restart"
    with pytest.raises(grpc.RpcError) as refused:
        w.stub.SealPreCommit1(
            worker_pb2.WorkerServiceSealPreCommit1Request(
                assignment=stale_pc1, sector=sector_ref(number, 2048), ticket=TICKET, pieces=pieces
            ),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    time.sleep(0.5)
    started = [
        e
        for e in log_entries(w, "task started")
        if stale_pc2.call_id.id in str(e.get("call")) or stale_pc1.call_id.id in str(e.get("call"))
    ]
    assert not started
    assert {p: p.read_bytes() for p in files if p.exists()} == files


def test_a_call_from_before_a_break_in_contact_waits_for_the_manager_before_removing_files(
    fleet: tuple[object, WorkerHandle], manager: ManagerEndpoint, tmp_path: Path
) -> None:
    """The manager declared the worker gone (a heartbeat answered NOT_FOUND) and gave its calls
    to another worker; a PC1 the worker had received before is still waiting for the sector's
    lock. The worker registers again; the PC1 must not remove the sector's files before the
    manager has seen it again, and the manager, which ended it, has it aborted then."""
    _, w = fleet
    number = 10
    pieces, _ = precommit_on(w, number, 2048, bytes(2032))
    name = f"s-t0{MINER}-{number}"
    files = {p: p.read_bytes() for p in (tmp_path / "seal").rglob("*") if name in str(p) and p.is_file()}
    assert any("sealed" in str(p) for p in files)
    index = fleet[0]

    # The sector's lock is held elsewhere, so the stale PC1 waits for it.
    held = index_stub(index).StorageTryLock(  # type: ignore[arg-type]
        index_pb2.StorageTryLockRequest(
            sector=common_pb2.SectorId(miner=MINER, number=number),
            write_types=[ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE],
            owner="test:holder",
            ttl=Duration(seconds=60),
        ),
        timeout=10,
    )
    assert held.acquired
    stale = assignment(number)
    request = worker_pb2.WorkerServiceSealPreCommit1Request(
        assignment=stale, sector=sector_ref(number, 2048), ticket=TICKET, pieces=pieces
    )
    assert w.stub.SealPreCommit1(request, timeout=10).call_id.id == stale.call_id.id
    # The manager forgets the worker: the next heartbeat says so, the worker registers again,
    # and from then on the heartbeats name the PC1 unknown.
    registered = len(manager.registrations)
    manager.unknown.add(stale.call_id.id)
    manager.forget_worker = True
    with manager.cond:
        assert manager.cond.wait_for(lambda: len(manager.registrations) > registered, 15)
    index_stub(index).StorageUnlock(index_pb2.StorageUnlockRequest(lease_id=held.lease.lease_id), timeout=10)  # type: ignore[arg-type]

    field_name, error = w.result(stale.call_id, timeout=30)
    assert field_name == "error" and error.code == common_pb2.TASK_ERROR_CODE_ABORTED, (field_name, error)
    assert {p: p.read_bytes() for p in files if p.exists()} == files
