"""Fetched sealed files and caches are checked against the sector's commitments before they are
declared (issue 19): a holder whose copy was corrupted at rest is passed over for a good one,
and when every copy is bad the fetch fails naming the check, with nothing left on disk and
nothing declared in the index."""

from __future__ import annotations

import os
from pathlib import Path

from services.common.proto.sectorstorage.v1 import common_pb2
from tests.support.fleet import StartService, start_worker
from tests.support.sectors import sector_ref
from tests.support.worker import (
    ManagerEndpoint,
    WorkerHandle,
    find,
    log_entries,
    precommit_on,
    prove_on,
    tree,
)
from tests.support.worker import fetch_files as fetch

ST = common_pb2.SectorFileType
SIZE, NUMBER = 2048, 1
COMM_R_LAST = 32  # offset of comm_r_last in p_aux (comm_c, then comm_r_last)


def flip_bit(path: Path, offset: int) -> None:
    """Rot at rest: one bit of a file changes, its size does not."""
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def content_failures(w: WorkerHandle) -> list[tuple[str, str]]:
    """(source path id, file type) of each copy the worker refused after its content check."""
    return [
        (str(e["storage_id"]), str(e["type"]))
        for e in log_entries(w, "fetch from a source failed; trying the next")
        if "content check failed" in str(e["error"])
    ]


def test_a_rotten_copy_is_passed_over_and_never_declared(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    a, c, b, d = (start_worker(start_service, index, manager) for _ in range(4))
    # A's path weighs most, so fetchers try its copies first.
    a.attach("seal", tmp_path / "a", seal=True, store=False, weight=100)
    for label, w in (("c", c), ("b", b), ("d", d)):
        w.attach("seal", tmp_path / label, seal=True, store=False)
    pieces, cids = precommit_on(a, NUMBER, SIZE, os.urandom(2032))
    name = f"s-t0{sector_ref(NUMBER, SIZE).id.miner}-{NUMBER}"
    sealed, cache = ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE

    # C takes a good copy (its two halves checked against each other); then A's sealed file rots.
    assert fetch(c, NUMBER, SIZE, [sealed, cache])[0] == "done" and content_failures(c) == []
    good_sealed = (tmp_path / "c" / "sealed" / name).read_bytes()
    flip_bit(tmp_path / "a" / "sealed" / name, 1000)

    # B takes the cache (A's is fine), then the sealed file: A's is refused against B's cache, C's
    # is taken, and B can prove from what it holds.
    assert fetch(b, NUMBER, SIZE, [cache])[0] == "done"
    assert fetch(b, NUMBER, SIZE, [sealed])[0] == "done"
    assert content_failures(b) == [(a.ids["seal"], "sealed")]
    assert (tmp_path / "b" / "sealed" / name).read_bytes() == good_sealed
    prove_on(b, sector_ref(NUMBER, SIZE), pieces, cids, SIZE)

    # D fetches both: the sealed file comes first, from A (it cannot be checked yet: no cache
    # here), and then no cache agrees with it. The fetch fails naming the check, and D keeps
    # nothing: no cache, no partial download, and not the sealed file, taken back (removed and
    # undeclared) since it may be the rotten half.
    kind, error = fetch(d, NUMBER, SIZE, [sealed, cache])
    assert kind == "error" and "content check failed" in str(error)
    assert sorted(content_failures(d)) == sorted((w.ids["seal"], "cache") for w in (a, b, c))
    assert not (tmp_path / "d" / "cache" / name).exists()
    assert not (tmp_path / "d" / "sealed" / name).exists()
    assert os.listdir(tmp_path / "d" / "cache" / "fetching") == []
    for file_type in (sealed, cache):
        assert d.ids["seal"] not in {loc.id for loc in find(index, NUMBER, file_type)}

    # A cache that rots (its comm_r_last in p_aux) is refused the same way.
    flip_bit(tmp_path / "a" / "cache" / name / "p_aux", COMM_R_LAST)
    (tmp_path / "a" / "sealed" / name).write_bytes(good_sealed)  # A's sealed file repaired
    assert fetch(d, NUMBER, SIZE, [sealed, cache])[0] == "done"
    assert content_failures(d)[3:] == [(a.ids["seal"], "cache")]
    assert tree(tmp_path / "d" / "cache" / name) == tree(tmp_path / "c" / "cache" / name)
