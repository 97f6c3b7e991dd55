"""The worker requests worker_link.py builds from domain values are byte-for-byte the ones the
manager built from a client's request before the domain/edge split: a work's params (its worker
request without the assignment, serialized deterministically) are its identity and what a
restarted manager dispatches again, so works stored by an older manager must still match."""

from __future__ import annotations

import hashlib

from services.common.cid import unsealed_cid
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, worker_pb2
from services.manager import convert, worker_link
from services.manager.calls import BY_METHOD, SPECS, CallType
from services.manager.domain import ByteRange, SectorId
from services.manager.index_client import FileType

P2K = common_pb2.RegisteredSealProof.ValueType(5)
REF = common_pb2.SectorRef(id=common_pb2.SectorId(miner=1000, number=7), proof_type=P2K)
TICKET = bytes([0x11] * 32)
SEED = bytes([0x22] * 32)
COMMP = hashlib.sha256(b"piece").digest()
# What the manager normalized a client's pieces to: size, the CID and the commP it wraps.
NORMALIZED = common_pb2.PieceInfo(size=2048, piece_cid=unsealed_cid(COMMP), commp=COMMP)


def params(method: str, request: worker_link.WorkerRequest) -> bytes:
    return worker_link.params(BY_METHOD[method], request)


def test_sealing_step_params_are_the_ones_built_from_the_client_request() -> None:
    # The client may send a piece by CID or by commP: both normalize to the same params.
    for piece in (
        common_pb2.PieceInfo(size=2048, piece_cid=unsealed_cid(COMMP)),
        common_pb2.PieceInfo(size=2048, commp=COMMP),
    ):
        pc1 = manager_pb2.SealPreCommit1Request(sector=REF, ticket=TICKET, pieces=[piece], priority=3)
        before = worker_pb2.WorkerServiceSealPreCommit1Request(sector=REF, ticket=TICKET, pieces=[NORMALIZED])
        assert params("SealPreCommit1", worker_link.pre_commit1(convert.pre_commit1(pc1))) == params(
            "SealPreCommit1", before
        )
        c1 = manager_pb2.SealCommit1Request(
            sector=REF, ticket=TICKET, seed=SEED, pieces=[piece], comm_r=bytes(32), comm_d=bytes(range(32))
        )
        before_c1 = worker_pb2.WorkerServiceSealCommit1Request(
            sector=REF, ticket=TICKET, seed=SEED, pieces=[NORMALIZED], comm_r=bytes(32), comm_d=bytes(range(32))
        )
        assert params("SealCommit1", worker_link.commit1(convert.commit1(c1))) == params("SealCommit1", before_c1)
    pc2 = manager_pb2.SealPreCommit2Request(sector=REF, pre_commit1_output=b"p1o")
    assert params("SealPreCommit2", worker_link.pre_commit2(convert.pre_commit2(pc2))) == params(
        "SealPreCommit2", worker_pb2.WorkerServiceSealPreCommit2Request(sector=REF, pre_commit1_output=b"p1o")
    )
    c2 = manager_pb2.SealCommit2Request(sector=REF, commit1_output=b"c1o")
    assert params("SealCommit2", worker_link.commit2(convert.commit2(c2))) == params(
        "SealCommit2", worker_pb2.WorkerServiceSealCommit2Request(sector=REF, commit1_output=b"c1o")
    )
    keep = [common_pb2.UnpaddedByteRange(offset=0, size=1016)]
    fin = manager_pb2.FinalizeSectorRequest(sector=REF, keep_unsealed=keep)
    assert params("FinalizeSector", worker_link.finalize(convert.finalize(fin))) == params(
        "FinalizeSector", worker_pb2.WorkerServiceFinalizeSectorRequest(sector=REF, keep_unsealed=keep)
    )
    header = manager_pb2.AddPieceHeader(sector=REF, existing_piece_sizes=[1016], piece_size=1016, priority=2)
    assert params("AddPiece", worker_link.add_piece_header(convert.add_piece(header))) == params(
        "AddPiece",
        worker_pb2.WorkerServiceAddPieceHeader(sector=REF, existing_piece_sizes=[1016], piece_size=1016),
    )


def test_the_manager_s_own_tasks_params_are_unchanged() -> None:
    sector = convert.sector_ref(REF, True)
    types = [FileType.UNSEALED, FileType.SEALED, FileType.CACHE]
    assert params("MoveStorage", worker_link.move_storage(sector, types)) == params(
        "MoveStorage",
        worker_pb2.MoveStorageRequest(sector=REF, types=[common_pb2.SectorFileType.ValueType(int(t)) for t in types]),
    )
    fetched = frozenset({FileType.CACHE, FileType.SEALED})
    assert params("Fetch", worker_link.fetch(sector, fetched, worker_link.FetchMode.COPY)) == params(
        "Fetch",
        worker_pb2.FetchRequest(
            sector=REF,
            types=[common_pb2.SECTOR_FILE_TYPE_SEALED, common_pb2.SECTOR_FILE_TYPE_CACHE],
            path_type=common_pb2.PATH_TYPE_SEALING,
            mode=worker_pb2.FETCH_MODE_COPY,
        ),
    )
    whole = common_pb2.UnpaddedByteRange(offset=0, size=2032)
    assert params("UnsealPiece", worker_link.unseal(sector, ByteRange(0, 2032), TICKET, COMMP)) == params(
        "UnsealPiece", worker_pb2.WorkerServiceUnsealPieceRequest(sector=REF, range=whole, ticket=TICKET, comm_d=COMMP)
    )
    release = manager_pb2.ReleaseUnsealedRequest(sector=REF, all=True)
    assert params("ReleaseUnsealed", worker_link.release_unsealed(convert.release_unsealed(release))) == params(
        "ReleaseUnsealed", worker_pb2.WorkerServiceReleaseUnsealedRequest(sector=REF, all=True)
    )
    assert worker_link.sector_name(REF) == SectorId(1000, 7).name == "s-t01000-7"


def test_call_types_are_the_wire_enum() -> None:
    # calls.CallType mirrors worker.proto's CallType value for value (StoredCallResult.call_type).
    wire = dict(worker_pb2.CallType.items())
    assert {f"CALL_TYPE_{t.name}": int(t) for t in CallType} == wire
    assert {s.call_type for s in SPECS} == set(CallType) - {CallType.UNSPECIFIED}  # every call type has a spec
    assert set(worker_link.REQUEST_TYPES) == set(worker_link.RESULT_TYPES) == {s.method for s in SPECS}
