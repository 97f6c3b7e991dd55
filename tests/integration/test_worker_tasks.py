"""The worker's tasks on real processes: an index, one worker with real storage directories in
tmp, and the test's ManagerEndpoint receiving the Return calls. Each task is checked by its
effect on disk, in the index, and in the returned result (proofs verified with rust_core)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.worker.partialfile import PartialFile
from services.worker.sectors import prover_id
from tests.integration.worker_helpers import (
    MINER,
    SEED,
    TICKET,
    ManagerEndpoint,
    StartService,
    WorkerHandle,
    add_piece,
    assignment,
    find,
    sector_ref,
    start_worker,
)

PROVER = prover_id(MINER)
TT = common_pb2.TaskType
ST = common_pb2.SectorFileType


@pytest.fixture
def manager() -> Iterator[ManagerEndpoint]:
    endpoint = ManagerEndpoint()
    yield endpoint
    endpoint.stop()


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
    w.stub.SealPreCommit1(worker_pb2.WorkerServiceSealPreCommit1Request(assignment=a, sector=ref, ticket=TICKET, pieces=pieces), timeout=10)
    p1 = w.ok(a.call_id)
    assert (tmp_path / "seal" / "sealed" / name).exists() and (tmp_path / "seal" / "cache" / name).is_dir()
    a = assignment(number)
    w.stub.SealPreCommit2(worker_pb2.WorkerServiceSealPreCommit2Request(assignment=a, sector=ref, pre_commit1_output=p1), timeout=10)
    cids = w.ok(a.call_id)
    assert cids.comm_d == rust_core.unsealed_commitment(size, [(size, piece.commp)])
    assert cids.sealed_cid == rust_core.sealed_cid(cids.comm_r)
    assert (tmp_path / "seal" / "sealed" / name).stat().st_size == size

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
    w.stub.SealCommit2(worker_pb2.WorkerServiceSealCommit2Request(assignment=a, sector=ref, commit1_output=c1), timeout=10)
    proof = w.ok(a.call_id)
    assert rust_core.verify_seal(size, cids.comm_r, cids.comm_d, PROVER, number, TICKET, SEED, proof)  # type: ignore[attr-defined]

    # Finalize keeping the whole piece unsealed: the cache loses its layers.
    cache = tmp_path / "seal" / "cache" / name
    assert any(n.startswith("sc-02-data-layer") for n in names(cache))
    a = assignment(number)
    keep = [common_pb2.UnpaddedByteRange(offset=0, size=len(data))]
    w.stub.FinalizeSector(worker_pb2.WorkerServiceFinalizeSectorRequest(assignment=a, sector=ref, keep_unsealed=keep), timeout=10)
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
            worker_pb2.WorkerServiceReadPieceRequest(sector=ref, range=common_pb2.UnpaddedByteRange(offset=0, size=len(data))),
            timeout=30,
        )
        return b"".join(m.chunk.data for m in stream)

    assert read_piece() == data

    # ReleaseUnsealed (all): the unsealed copy goes; ReadPiece is then NOT_FOUND.
    a = assignment(number)
    w.stub.ReleaseUnsealed(worker_pb2.WorkerServiceReleaseUnsealedRequest(assignment=a, sector=ref, all=True), timeout=10)
    assert w.result(a.call_id)[0] == "done"
    assert not (tmp_path / "store" / "unsealed" / name).exists()
    with pytest.raises(grpc.RpcError) as err:
        read_piece()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # UnsealPiece regenerates it from the replica.
    a = assignment(number)
    w.stub.UnsealPiece(
        worker_pb2.WorkerServiceUnsealPieceRequest(
            assignment=a, sector=ref, range=common_pb2.UnpaddedByteRange(offset=0, size=len(data)), ticket=TICKET, comm_d=cids.comm_d
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
                sectors=[common_pb2.ProvingSector(sector=ref, comm_r=cids.comm_r)],
            ),
            timeout=60,
        )
    )
    assert len(replies) == 1 and replies[0].WhichOneof("outcome") == "vanilla_proof"
    assert rust_core.verify_single_vanilla_proof(  # type: ignore[attr-defined]
        size, randomness, PROVER, (number, cids.comm_r), replies[0].vanilla_proof, "window"
    )

    # Remove: every file goes, and the index forgets them.
    reply = w.stub.Remove(worker_pb2.WorkerServiceRemoveRequest(sector=ref.id), timeout=30)
    assert sorted(r.type for r in reply.removed) == sorted(types)
    for t in ("unsealed", "sealed", "cache"):
        assert not (tmp_path / "store" / t / name).exists()
    assert find(index, number, *types) == []
