"""A read whose unseal runs on a worker that holds none of the sector's files (the holders cannot
unseal): the sealed replica and cache it unseals from are copied there for the task and not kept
afterwards; the holder's replica is not touched; the unsealed copy stays where it was made. And
a copy is removed only when another one is really there, not on the word of a stale
declaration."""

from __future__ import annotations

import hashlib
from pathlib import Path

from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, index_pb2_grpc, manager_pb2, worker_pb2
from tests.support.auth import token
from tests.support.fleet import Fleet, WorkerSpec, fleet  # noqa: F401
from tests.support.sealing import commit, precommit
from tests.support.sectors import P2K, TICKET, piece_data, sector

ST = common_pb2.SectorFileType


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


def seal_on_a(fleet: Fleet, number: int) -> tuple[common_pb2.SectorRef, bytes]:
    """A sector sealed and finalized by worker a (the only one with those task types); its
    unsealed CID."""
    ref = sector(number)
    piece, p1o = precommit(fleet, ref)
    p2 = fleet.stub().SealPreCommit2(manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=120)
    commit(fleet, ref, piece, p2.commitments)
    fleet.stub().FinalizeSector(manager_pb2.FinalizeSectorRequest(sector=ref), timeout=120)
    return ref, p2.commitments.unsealed_cid


def read(fleet: Fleet, ref: common_pb2.SectorRef, unsealed_cid: bytes) -> tuple[bool, bytes]:
    whole = common_pb2.UnpaddedByteRange(offset=0, size=2032)
    stream = fleet.stub().ReadPiece(
        manager_pb2.ReadPieceRequest(sector=ref, range=whole, ticket=TICKET, unsealed_cid=unsealed_cid), timeout=120
    )
    did_unseal = next(stream).header.did_unseal
    return did_unseal, b"".join(m.chunk.data for m in stream)


def test_a_read_unsealed_on_another_worker_keeps_no_working_copy_and_leaves_the_replica(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=4, task_types=["AP", "PC1", "PC2", "C1", "C2", "FIN", "GET"]))
    fleet.add_worker(WorkerSpec("r", cpus=4, task_types=["UNS", "GET"]))
    fleet.wait_registered()
    ref, cid = seal_on_a(fleet, 3)
    store_a, store_r = fleet.tmp / "store-a", fleet.tmp / "store-r"
    before = digests(store_a)
    assert before and digests(store_r) == {}

    assert read(fleet, ref, cid) == (True, piece_data(3, P2K))

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
    assert read(fleet, ref, cid) == (False, piece_data(3, P2K))


def test_a_copy_is_kept_when_the_primary_it_would_rely_on_is_gone(fleet: Fleet) -> None:
    """The reader holds a non-primary copy of the sealed file and cache; the holder's primary
    sealed file was lost (removed by hand: its declaration is stale), its cache is there. After
    the unseal the reader keeps its sealed copy (the last real one) and drops only its cache."""
    fleet.add_worker(WorkerSpec("a", cpus=4, task_types=["AP", "PC1", "PC2", "C1", "C2", "FIN", "GET"]))
    fleet.add_worker(WorkerSpec("r", cpus=4, task_types=["UNS", "GET"]))
    fleet.wait_registered()
    ref, cid = seal_on_a(fleet, 4)
    store_a, store_r = fleet.tmp / "store-a", fleet.tmp / "store-r"
    name = "s-t01000-4"
    # A copy on r, as a fetch would have left it (declared, not primary).
    (store_r / "sealed" / name).write_bytes((store_a / "sealed" / name).read_bytes())
    (store_r / "cache" / name).mkdir()
    for f in (store_a / "cache" / name).iterdir():
        (store_r / "cache" / name / f.name).write_bytes(f.read_bytes())
    [r_path] = fleet.worker_stub("r").Paths(worker_pb2.PathsRequest(), timeout=10).paths
    index = index_pb2_grpc.IndexServiceStub(sync_channel(fleet.index.address, token()))
    index.StorageDeclareSector(
        index_pb2.StorageDeclareSectorRequest(
            storage_id=r_path.info.id, sector=ref.id, types=[ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE]
        ),
        timeout=10,
    )
    sealed = (store_a / "sealed" / name).read_bytes()
    (store_a / "sealed" / name).unlink()  # lost; the index still says a holds it, as primary

    assert read(fleet, ref, cid) == (True, piece_data(4, P2K))
    assert (store_r / "sealed" / name).read_bytes() == sealed
    assert r_path.info.id in holders(fleet, ref, ST.SECTOR_FILE_TYPE_SEALED)
    assert not (store_r / "cache" / name).exists()  # a's cache is really there
    assert (store_a / "cache" / name).is_dir()
