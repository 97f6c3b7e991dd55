"""What the kill -9 test found, pinned down: a declaration in the index of a file its holder no
longer has (the file was deleted while the index was down). A reader that fetches from there
gets NOT_FOUND "no local ... file": it drops the stale declaration and goes on without that
copy, so ReadPiece of a finalized sector unseals afresh and returns the piece, instead of every
unseal attempt failing on the missing source forever.
"""

from __future__ import annotations

from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, worker_pb2
from tests.faults.helpers import index_stub, read_back, seal
from tests.support.fleet import Fleet, WorkerSpec
from tests.support.sectors import P2K, piece_data, sector

UNSEALED = common_pb2.SECTOR_FILE_TYPE_UNSEALED


def test_stale_unsealed_declaration_is_dropped_and_the_read_unseals(fleet: Fleet) -> None:
    fleet.add_worker(WorkerSpec("a", cpus=2))
    fleet.add_worker(WorkerSpec("b", cpus=2, task_types=["FIN", "GET"]))
    fleet.wait_registered()
    ref = sector(1, P2K)
    sealed = seal(fleet, ref, piece_data(1, P2K))  # finalized: no unsealed copy is kept
    index = index_stub(fleet)

    def unsealed_holders() -> list[str]:
        found = index.StorageFindSector(index_pb2.StorageFindSectorRequest(sector=ref.id, types=[UNSEALED]), timeout=10)
        return [loc.id for loc in found.locations]

    [b_path] = fleet.worker_stub("b").Paths(worker_pb2.PathsRequest(), timeout=10).paths
    assert b_path.info.id not in unsealed_holders()
    index.StorageDeclareSector(
        index_pb2.StorageDeclareSectorRequest(storage_id=b_path.info.id, sector=ref.id, types=[UNSEALED]), timeout=10
    )
    assert b_path.info.id in unsealed_holders()

    assert read_back(fleet, sealed) == sealed.data
    assert b_path.info.id not in unsealed_holders()
