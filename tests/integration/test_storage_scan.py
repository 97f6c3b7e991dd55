"""Storage paths holding things that are not sector files (a stray README, a name that is not a
sector's, a directory where a file belongs, a cache file whose name is over 100 bytes or not
UTF-8), with real index and worker processes: when the index must learn the path again (an
operator's StorageDetach, an index started on an empty database) every sector is declared again
within two heartbeats, each stray entry is logged once, and the cache with the long name is
still served and fetched by another worker."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, worker_pb2
from tests.integration.fleet import free_port
from tests.integration.worker_helpers import (
    MINER,
    ManagerEndpoint,
    StartService,
    WorkerHandle,
    assignment,
    find,
    index_stub,
    sector_ref,
    start_worker,
)

ST = common_pb2.SectorFileType
HEARTBEAT_S = 1.0
SECTORS = (1, 2, 3)
LONG_NAME = "sc-02-data-" + "l" * 140 + ".dat"  # 151 bytes: over ustar's 100
SKIPPED_MSG = "storage scan skipped an entry that is not a sector file; move it out of the sector folders"


@pytest.fixture
def manager() -> Iterator[ManagerEndpoint]:
    endpoint = ManagerEndpoint()
    yield endpoint
    endpoint.stop()


def log_entries(w: WorkerHandle) -> list[dict[str, object]]:
    return [json.loads(line) for line in w.proc.log().splitlines() if line.startswith("{")]


def declared(index_proc: object, number: int) -> set[int]:
    """The file types the index has for a sector on any path."""
    return {t for t in (ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE) if find(index_proc, number, t)}  # type: ignore[arg-type]


def wait_all_declared(index_proc: object, timeout: float) -> float:
    """Seconds until every sector's sealed file and cache are declared again."""
    start = time.monotonic()
    want = {ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE}
    while True:
        try:
            if all(declared(index_proc, n) == want for n in SECTORS):
                return time.monotonic() - start
        except grpc.RpcError:
            pass
        if time.monotonic() - start > timeout:
            missing = {n: sorted(want - declared(index_proc, n)) for n in SECTORS}
            raise AssertionError(f"sectors not declared again within {timeout} s: {missing}")
        time.sleep(0.05)


def populate(root: Path) -> dict[str, str]:
    """Three sectors (sealed file + cache dir each) and stray entries of every kind; returns
    the stray entries' paths (relative to root) and what makes them stray."""
    for n in SECTORS:
        name = f"s-t0{MINER}-{n}"
        (root / "sealed" / name).write_bytes(bytes([n]) * 2048)
        (root / "cache" / name).mkdir()
        # t_aux, not p_aux: planted bytes are no sealed sector, and a fetched cache with a p_aux is
        # checked against its commitments (remote_store's content check).
        (root / "cache" / name / "t_aux").write_bytes(bytes([n]) * 64)
    cache1 = root / "cache" / f"s-t0{MINER}-1"
    (cache1 / LONG_NAME).write_bytes(b"long name" * 100)
    (cache1 / os.fsdecode(b"not-utf8-\xff")).write_bytes(b"x")
    stray = {
        "sealed/README.txt": "not a sector file name",
        f"sealed/s-t0{MINER}-{'9' * 200}": "not a sector file name",
        "sealed/" + "x" * 255: "not a sector file name",
        f"sealed/s-t0{MINER}-50": "directory where a sealed file is expected",
        f"cache/s-t0{MINER}-51": "not a directory",
    }
    (root / "sealed" / "README.txt").write_text("notes\n")
    (root / "sealed" / f"s-t0{MINER}-{'9' * 200}").write_bytes(b"")
    (root / "sealed" / ("x" * 255)).write_bytes(b"")
    (root / "sealed" / f"s-t0{MINER}-50").mkdir()
    (root / "cache" / f"s-t0{MINER}-51").write_bytes(b"")
    return stray


def test_stray_entries_never_hide_a_paths_sectors(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index_port = free_port()
    index = start_service("index", "--listen", f"127.0.0.1:{index_port}", data_dir=tmp_path / "index-1")
    env = {"SECTORSTORAGE_WORKER_STORAGE_HEARTBEAT_S": str(HEARTBEAT_S)}
    w = start_worker(start_service, index, manager, env=env)
    root = tmp_path / "p"
    storage_id = w.attach("p", root, seal=True, store=True)
    stray = populate(root)

    # The operator detaches the path in the index: the next heartbeat learns it is forgotten and
    # attaches it again, declaring every sector despite the stray entries.
    index_stub(index).StorageDetach(index_pb2.StorageDetachRequest(storage_id=storage_id), timeout=10)
    assert all(not declared(index, n) for n in SECTORS)
    took = wait_all_declared(index, timeout=2 * HEARTBEAT_S + 1.0)  # two beats, and a second for a loaded machine
    assert took <= 2 * HEARTBEAT_S + 1.0

    # An index that lost its database (a new one, empty, on the same address): the same.
    index.stop()
    index = start_service("index", "--listen", f"127.0.0.1:{index_port}", data_dir=tmp_path / "index-2")
    wait_all_declared(index, timeout=15)  # includes the worker's reconnect back-off
    time.sleep(3 * HEARTBEAT_S)  # more beats: nothing more is logged

    entries = log_entries(w)
    skipped = [e for e in entries if e.get("msg") == SKIPPED_MSG]
    by_file = {str(e["file"])[len(str(root)) + 1 :]: str(e["reason"]) for e in skipped}
    assert len(skipped) == len(stray), [e["file"] for e in skipped]  # each once, not every beat
    for rel, why in stray.items():
        assert why in by_file[rel], (rel, by_file.get(rel))
    assert not [e for e in entries if e.get("level") == "error" or "exc" in e]
    assert "Traceback" not in w.proc.log()
    # The stray entries were left alone.
    assert (root / "sealed" / "README.txt").read_text() == "notes\n"


def test_cache_with_long_names_is_served_and_fetched(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    a = start_worker(start_service, index, manager)
    b = start_worker(start_service, index, manager)
    root = tmp_path / "a"
    a.attach("p", root, seal=True, store=True)
    b.attach("p", tmp_path / "b", seal=True, store=False)
    populate(root)
    a.stub.StorageRedeclareLocal(worker_pb2.StorageRedeclareLocalRequest(), timeout=30)
    ref = sector_ref(1, 2048)
    cache_a = root / "cache" / f"s-t0{MINER}-1"

    stat = a.stub.StatSectorFile(
        worker_pb2.StatSectorFileRequest(sector=ref.id, type=ST.SECTOR_FILE_TYPE_CACHE), timeout=10
    )
    assert stat.is_dir and sorted(e.name for e in stat.entries) == sorted(["t_aux", LONG_NAME])
    msgs = list(
        a.stub.ReadSectorDir(worker_pb2.ReadSectorDirRequest(sector=ref.id, type=ST.SECTOR_FILE_TYPE_CACHE), timeout=10)
    )
    assert len(b"".join(m.chunk.data for m in msgs)) == msgs[0].tar_size
    only_long = list(
        a.stub.ReadSectorDir(
            worker_pb2.ReadSectorDirRequest(sector=ref.id, type=ST.SECTOR_FILE_TYPE_CACHE, names=[LONG_NAME]),
            timeout=10,
        )
    )
    assert LONG_NAME.encode() in b"".join(m.chunk.data for m in only_long)

    # Another worker fetches sealed + cache: the long name arrives whole; the name no tar
    # stream can carry (not UTF-8) stays behind, logged once by the serving worker.
    call = assignment(1)
    b.stub.Fetch(
        worker_pb2.FetchRequest(
            assignment=call,
            sector=ref,
            types=[ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE],
            path_type=common_pb2.PATH_TYPE_SEALING,
            mode=worker_pb2.FETCH_MODE_COPY,
        ),
        timeout=10,
    )
    kind, value = b.result(call.call_id)
    assert kind == "done", value
    cache_b = tmp_path / "b" / "cache" / f"s-t0{MINER}-1"
    assert sorted(os.listdir(cache_b)) == sorted(["t_aux", LONG_NAME])
    for name in ("t_aux", LONG_NAME):
        assert (cache_b / name).read_bytes() == (cache_a / name).read_bytes()
    left_out = [
        e for e in log_entries(a) if str(e.get("msg", "")).startswith("a file in a cache directory cannot be sent")
    ]
    assert len(left_out) == 1 and "UTF-8" in str(left_out[0]["reason"])
