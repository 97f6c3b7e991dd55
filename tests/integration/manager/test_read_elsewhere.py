"""A read whose unseal runs on a worker that holds none of the sector's files (the holders cannot
unseal): the sealed replica and cache it unseals from are copied there for the task and not kept
afterwards; the holder's replica is not touched; the unsealed copy stays where it was made."""

from __future__ import annotations

import hashlib
from pathlib import Path

from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, index_pb2_grpc, manager_pb2, worker_pb2
from tests.support.auth import token
from tests.support.fleet import Fleet, WorkerSpec, fleet  # noqa: F401
from tests.support.sealing import commit, precommit
from tests.support.sectors import P2K, TICKET, piece_data, sector


def digests(root: Path) -> dict[str, str]:
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.parts[len(root.parts)] in ("sealed", "cache")
    }


def holders(fleet: Fleet, ref: common_pb2.SectorRef, *types: common_pb2.SectorFileType.ValueType) -> set[str]:
    index = index_pb2_grpc.IndexServiceStub(sync_channel(fleet.index.address, token()))
    found = index.StorageFindSector(index_pb2.StorageFindSectorRequest(sector=ref.id, types=list(types)), timeout=10)
    return {loc.id for loc in found.locations}


def test_a_read_unsealed_on_another_worker_keeps_no_working_copy_and_leaves_the_replica(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4, task_types=["AP", "PC1", "PC2", "C1", "C2", "FIN", "GET"]))
    fleet.add_worker(WorkerSpec("r", cpus=4, task_types=["UNS", "GET"]))
    fleet.wait_registered()
    ref = sector(3)
    piece, p1o = precommit(fleet, ref)
    p2 = fleet.stub().SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120)
    commit(fleet, ref, piece, p2.commitments)
    fleet.stub().FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=120)
    store_a, store_r = fleet.tmp / "store-a", fleet.tmp / "store-r"
    before = digests(store_a)
    assert before and digests(store_r) == {}

    whole = common_pb2.UnpaddedByteRange(offset=0, size=2032)
    stream = fleet.stub().ReadPiece(
        manager_pb2.ReadPieceRequest(sector=ref, range=whole, ticket=TICKET, unsealed_cid=p2.commitments.unsealed_cid),
        timeout=120,
    )
    assert next(stream).header.did_unseal
    assert b"".join(m.chunk.data for m in stream) == piece_data(3, P2K)

    # The holder's replica and cache are as they were; the reader made the unsealed copy and
    # kept nothing else, on disk or in the index.
    assert digests(store_a) == before
    assert digests(store_r) == {}
    assert (store_r / "unsealed" / "s-t01000-3").is_file()
    [r_path] = fleet.worker_stub("r").Paths(worker_pb2.PathsRequest(), timeout=10).paths
    assert r_path.info.id not in holders(
        fleet, ref, common_pb2.SECTOR_FILE_TYPE_SEALED, common_pb2.SECTOR_FILE_TYPE_CACHE
    )
    assert r_path.info.id in holders(fleet, ref, common_pb2.SECTOR_FILE_TYPE_UNSEALED)
    # A second read is served from that unsealed copy, without unsealing again.
    again = fleet.stub().ReadPiece(manager_pb2.ReadPieceRequest(sector=ref, range=whole), timeout=60)
    assert not next(again).header.did_unseal
