"""Fetches verify a CRC32C the serving worker computes (issue 19): a holder whose transfer is
corrupted in flight (the test fault inverts one byte it sends, after it computed the checksum
from its good file) is passed over for the next, for an UNSEALED file (over the bulk side
channel) and for a cache from before PC2 (no p_aux: the proof cannot check it; over the
ReadSectorDir stream); when no holder sends a good copy the fetch fails naming the checksum,
with nothing left on disk and nothing declared in the index."""

from __future__ import annotations

import os
from pathlib import Path

from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.worker.faults import ENV_SERVE_FLIP
from tests.support.fleet import StartService, start_worker
from tests.support.sectors import TICKET, sector_ref
from tests.support.worker import ManagerEndpoint, WorkerHandle, add_piece, assignment, find, log_entries, routes, tree
from tests.support.worker import fetch_files as fetch

ST = common_pb2.SectorFileType
SIZE = 2048
UNSEALED, CACHE = ST.SECTOR_FILE_TYPE_UNSEALED, ST.SECTOR_FILE_TYPE_CACHE
# Inside the unsealed file's data, and inside the first cache file's data (after its 512-byte
# tar header), so the archive still parses and only the checksum can tell.
FLIP = {"SECTORSTORAGE_TEST_FAULTS": "1", ENV_SERVE_FLIP: "1000"}


def name(number: int) -> str:
    return f"s-t0{sector_ref(number, SIZE).id.miner}-{number}"


def pc1_on(w: WorkerHandle, number: int) -> None:
    """AddPiece and PC1: an unsealed file and a cache of layers, without p_aux (before PC2)."""
    piece = w.ok(add_piece(w, number, SIZE, os.urandom(2032)))
    call = assignment(number)
    w.stub.SealPreCommit1(
        worker_pb2.WorkerServiceSealPreCommit1Request(
            assignment=call,
            sector=sector_ref(number, SIZE),
            ticket=TICKET,
            pieces=[common_pb2.PieceInfo(size=SIZE, commp=piece.commp)],
        ),
        timeout=10,
    )
    w.ok(call.call_id)


def checksum_failures(w: WorkerHandle) -> list[tuple[str, str]]:
    """(source path id, file type) of each transfer the worker refused on its checksum."""
    return [
        (str(e["storage_id"]), str(e["type"]))
        for e in log_entries(w, "fetch from a source failed; trying the next")
        if "checksum mismatch" in str(e["error"])
    ]


def test_a_transfer_corrupted_in_flight_is_refused(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    good = start_worker(start_service, index, manager)
    bad = start_worker(start_service, index, manager, env=FLIP)
    fetcher = start_worker(start_service, index, manager)
    # The corrupting holder's path weighs most: fetchers try it first.
    bad.attach("seal", tmp_path / "bad", seal=True, store=False, weight=100)
    for label, w in (("good", good), ("fetcher", fetcher)):
        w.attach("seal", tmp_path / label, seal=True, store=False)
    pc1_on(good, 1)
    assert not (tmp_path / "good" / "cache" / name(1) / "p_aux").exists()
    # The corrupting holder takes good copies (it corrupts only what it serves).
    assert fetch(bad, 1, SIZE, [UNSEALED, CACHE])[0] == "done" and checksum_failures(bad) == []

    # Its transfers are refused; the good holder's copies are taken.
    assert fetch(fetcher, 1, SIZE, [UNSEALED, CACHE])[0] == "done"
    assert checksum_failures(fetcher) == [(bad.ids["seal"], "unsealed"), (bad.ids["seal"], "cache")]
    assert routes(fetcher) == [("unsealed", "bulk"), ("cache", "tar")]
    got, want = tmp_path / "fetcher", tmp_path / "good"
    assert (got / "unsealed" / name(1)).read_bytes() == (want / "unsealed" / name(1)).read_bytes()
    assert tree(got / "cache" / name(1)) == tree(want / "cache" / name(1))
    for file_type in (UNSEALED, CACHE):
        assert fetcher.ids["seal"] in {loc.id for loc in find(index, 1, file_type)}

    # Sector 2 is held by the corrupting worker alone (the good one's copies removed): the fetch
    # fails naming the checksum, and leaves nothing: no file, no partial download, no declaration.
    pc1_on(good, 2)
    assert fetch(bad, 2, SIZE, [UNSEALED, CACHE])[0] == "done"
    good.stub.Remove(worker_pb2.WorkerServiceRemoveRequest(sector=sector_ref(2, SIZE).id), timeout=30)
    for file_type in (UNSEALED, CACHE):
        assert {loc.id for loc in find(index, 2, file_type)} == {bad.ids["seal"]}
    for file_type, label in ((UNSEALED, "unsealed"), (CACHE, "cache")):
        kind, error = fetch(fetcher, 2, SIZE, [file_type])
        assert kind == "error" and "checksum mismatch" in str(error), error
        assert not (got / label / name(2)).exists()
        assert os.listdir(got / label / "fetching") == []
        assert fetcher.ids["seal"] not in {loc.id for loc in find(index, 2, file_type)}
    # The holder's own files were never changed: only what it sent.
    assert (tmp_path / "bad" / "unsealed" / name(1)).read_bytes() == (want / "unsealed" / name(1)).read_bytes()
