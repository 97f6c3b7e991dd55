"""Fetching sector files between real worker processes through the real index: a sealed file
(over the bulk side channel, or the gRPC stream when the channel is off or unreachable) and a
cache directory (as tar), reads by range, a move that removes the source, the side channel's
tickets, and a source that dies in the middle of a stream on either path (the fetch fails
cleanly or goes on from another source, and never leaves a partial file)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import struct
import tarfile
import time
from pathlib import Path

import grpc
import pytest

import rust_core
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.worker.faults import ENV_SERVE_EXIT
from tests.support.fleet import StartService, start_worker
from tests.support.sectors import MINER, sector_ref
from tests.support.worker import (
    ManagerEndpoint,
    WorkerHandle,
    find,
    log_entries,
    precommit_on,
    prove_on,
    routes,
    tree,
)
from tests.support.worker import fetch_files as fetch

ST = common_pb2.SectorFileType


def test_fetch_sealed_and_cache_between_workers(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    a = start_worker(start_service, index, manager)
    b = start_worker(start_service, index, manager)
    a.attach("seal", tmp_path / "a", seal=True, store=False)
    b.attach("seal", tmp_path / "b", seal=True, store=False)
    size, number = 2048, 1
    name = f"s-t0{MINER}-{number}"
    ref = sector_ref(number, size)
    pieces, cids = precommit_on(a, number, size, os.urandom(2032))

    # Reads by range, straight from A.
    sealed_a = (tmp_path / "a" / "sealed" / name).read_bytes()
    stream = a.stub.ReadSectorFile(
        worker_pb2.ReadSectorFileRequest(sector=ref.id, type=ST.SECTOR_FILE_TYPE_SEALED, offset=100, length=1000),
        timeout=10,
    )
    messages = list(stream)
    assert messages[0].file_size == size and b"".join(m.chunk.data for m in messages) == sealed_a[100:1100]
    with pytest.raises(grpc.RpcError) as err:
        list(
            a.stub.ReadSectorFile(
                worker_pb2.ReadSectorFileRequest(
                    sector=ref.id, type=ST.SECTOR_FILE_TYPE_SEALED, offset=2000, length=100
                ),
                timeout=10,
            )
        )
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE

    # The cache as a tar stream: flat, sorted, of exactly the announced size.
    msgs = list(
        a.stub.ReadSectorDir(worker_pb2.ReadSectorDirRequest(sector=ref.id, type=ST.SECTOR_FILE_TYPE_CACHE), timeout=10)
    )
    archive = b"".join(m.chunk.data for m in msgs)
    assert len(archive) == msgs[0].tar_size and len(archive) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == sorted(os.listdir(tmp_path / "a" / "cache" / name))
        assert all(m.isreg() for m in members)
    subset = list(
        a.stub.ReadSectorDir(
            worker_pb2.ReadSectorDirRequest(sector=ref.id, type=ST.SECTOR_FILE_TYPE_CACHE, names=["p_aux"]), timeout=10
        )
    )
    assert subset[0].tar_size == 512 + 512 + 1024  # p_aux is 64 bytes

    # B fetches sealed + cache (copy): identical files, declared (not primary) in B's path.
    kind, _ = fetch(b, number, size, [ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE])
    assert kind == "done"
    assert (tmp_path / "b" / "sealed" / name).read_bytes() == sealed_a
    assert tree(tmp_path / "b" / "cache" / name) == tree(tmp_path / "a" / "cache" / name)
    nothing_left(tmp_path / "b" / "sealed" / "fetching")
    holders = {loc.id: loc for loc in find(index, number, ST.SECTOR_FILE_TYPE_SEALED)}
    assert set(holders) == {a.ids["seal"], b.ids["seal"]} and not holders[b.ids["seal"]].primary
    assert routes(b) == [("sealed", "bulk"), ("cache", "tar")]

    # B proves the sector from its copies.
    prove_on(b, ref, pieces, cids, size)

    # A move of the unsealed file: B gets the primary copy, A's copy is removed and dropped.
    unsealed_a = (tmp_path / "a" / "unsealed" / name).read_bytes()
    kind, _ = fetch(b, number, size, [ST.SECTOR_FILE_TYPE_UNSEALED], mode=worker_pb2.FETCH_MODE_MOVE)
    assert kind == "done"
    assert (tmp_path / "b" / "unsealed" / name).read_bytes() == unsealed_a
    assert not (tmp_path / "a" / "unsealed" / name).exists()
    assert [(loc.id, loc.primary) for loc in find(index, number, ST.SECTOR_FILE_TYPE_UNSEALED)] == [
        (b.ids["seal"], True)
    ]


def test_pc2_on_another_worker_than_pc1(start_service: StartService, manager: ManagerEndpoint, tmp_path: Path) -> None:
    """PC1 on A, then PC2, C1 and C2 on B: B moves the cache over (A keeps no stale copy without
    trees), writes the sealed file itself, and the proof verifies."""
    index = start_service("index")
    a = start_worker(start_service, index, manager)
    b = start_worker(start_service, index, manager)
    a.attach("seal", tmp_path / "a", seal=True, store=False)
    b.attach("seal", tmp_path / "b", seal=True, store=False)
    size, number = 2048, 2
    name = f"s-t0{MINER}-{number}"
    ref = sector_ref(number, size)
    pieces, cids = precommit_on(a, number, size, os.urandom(2032), pc2_worker=b)
    assert not (tmp_path / "a" / "cache" / name).exists() and not (tmp_path / "a" / "sealed" / name).exists()
    assert (tmp_path / "b" / "sealed" / name).stat().st_size == size
    assert [(loc.id, loc.primary) for loc in find(index, number, ST.SECTOR_FILE_TYPE_CACHE)] == [(b.ids["seal"], True)]
    assert [loc.id for loc in find(index, number, ST.SECTOR_FILE_TYPE_SEALED)] == [b.ids["seal"]]

    prove_on(b, ref, pieces, cids, size)


def plant(w: WorkerHandle, label: str, number: int, sealed: bytes, cache: dict[str, bytes]) -> None:
    """Puts sector files into a worker's path by hand and has it declare them."""
    root = w.paths[label]
    name = f"s-t0{MINER}-{number}"
    (root / "sealed" / name).write_bytes(sealed)
    (root / "cache" / name).mkdir()
    for n, content in cache.items():
        (root / "cache" / name / n).write_bytes(content)
    w.stub.StorageRedeclareLocal(worker_pb2.StorageRedeclareLocalRequest(storage_id=w.ids[label]), timeout=30)


def leftovers(root: Path) -> list[str]:
    return sorted(os.listdir(root / "sealed" / "fetching")) + sorted(os.listdir(root / "cache" / "fetching"))


def test_source_dying_mid_stream(start_service: StartService, manager: ManagerEndpoint, tmp_path: Path) -> None:
    size = 8 << 20
    sealed = os.urandom(size)
    # Planted bytes, no real sector: without a p_aux there is no commitment to check them against,
    # so the fetch's content check (tests/integration/worker/test_fetch_content.py) lets them through on size alone.
    cache = {
        "sc-02-data-layer-1.dat": os.urandom(1 << 20),
        "sc-02-data-tree-r-last.dat": os.urandom(3 << 20),
        "t_aux": os.urandom(1000),
    }
    index = start_service("index")
    # A serves first (higher weight) and crashes after 2 MiB of any stream; B is healthy.
    dying = start_worker(start_service, index, manager, env={ENV_SERVE_EXIT: str(2 << 20)})
    healthy = start_worker(start_service, index, manager)
    dest = start_worker(start_service, index, manager)
    dying.attach("p", tmp_path / "dying", seal=True, store=True, weight=20)
    healthy.attach("p", tmp_path / "healthy", seal=True, store=True, weight=10)
    dest.attach("p", tmp_path / "dest", seal=True, store=False)
    plant(dying, "p", 10, sealed, cache)
    plant(healthy, "p", 10, sealed, cache)

    # The cache first: A dies in the middle of the tar stream, B's copy is fetched instead.
    kind, _ = fetch(dest, 10, size, [ST.SECTOR_FILE_TYPE_CACHE])
    assert kind == "done"
    assert dying.proc.proc is not None and dying.proc.proc.wait(10) == 17  # it really died mid-stream
    kind, _ = fetch(dest, 10, size, [ST.SECTOR_FILE_TYPE_SEALED])
    assert kind == "done"
    name = f"s-t0{MINER}-10"
    assert (tmp_path / "dest" / "sealed" / name).read_bytes() == sealed
    assert tree(tmp_path / "dest" / "cache" / name) == cache
    assert leftovers(tmp_path / "dest") == []
    assert "fetch from a source failed; trying the next" in dest.proc.log()
    assert routes(dest) == [("cache", "tar"), ("sealed", "bulk")]

    # Only a source that dies in the middle of the sealed file: the fetch fails (temporary), and
    # nothing is left behind.
    lone = start_worker(start_service, index, manager, env={ENV_SERVE_EXIT: str(2 << 20)})
    lone.attach("p", tmp_path / "lone", seal=True, store=True)
    plant(lone, "p", 11, sealed, cache)
    kind, error = fetch(dest, 11, size, [ST.SECTOR_FILE_TYPE_SEALED])
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_TEMPORARY, error
    assert lone.proc.proc is not None and lone.proc.proc.wait(10) == 17
    # It died on the side channel, in the middle of the file.
    failures = [
        str(e["error"])
        for e in log_entries(dest, "fetch from a source failed; trying the next")
        if e["sector"] == f"{MINER}-11"
    ]
    assert failures and "side channel closed after" in failures[-1], failures
    assert not (tmp_path / "dest" / "sealed" / f"s-t0{MINER}-11").exists()
    assert leftovers(tmp_path / "dest") == []
    assert dest.ids["p"] not in {loc.id for loc in find(index, 11, ST.SECTOR_FILE_TYPE_SEALED)}

    # A sector nobody has: SECTOR_NOT_FOUND.
    kind, error = fetch(dest, 12, size, [ST.SECTOR_FILE_TYPE_SEALED])
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_SECTOR_NOT_FOUND


def plant_large(w: WorkerHandle, label: str, number: int, size: int) -> bytes:
    """A sealed file of `size` bytes, sparse but for random MiBs at the start, across the middle
    and at the end (where connections' ranges meet and end); returns its SHA-256."""
    path = w.paths[label] / "sealed" / f"s-t0{MINER}-{number}"
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in (0, size // 2 - (1 << 19), size - (1 << 20)):
            f.seek(offset)
            f.write(os.urandom(1 << 20))
    w.stub.StorageRedeclareLocal(worker_pb2.StorageRedeclareLocalRequest(storage_id=w.ids[label]), timeout=30)
    return sha256_of(path)


def sha256_of(path: Path) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return digest.digest()


def test_a_large_sealed_file_comes_over_two_connections(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    """With worker.bulk_streams = 2, a 512 MiB sealed file (64 MiB and more: split) comes in two ranges over two
    side channel connections, byte for byte; a source dying in the middle of such a transfer fails the
    fetch as a whole and leaves nothing."""
    size = 512 << 20
    index = start_service("index")
    source = start_worker(start_service, index, manager)
    dest = start_worker(start_service, index, manager, env={"SECTORSTORAGE_WORKER_BULK_STREAMS": "2"})
    source.attach("p", tmp_path / "source", seal=True, store=True)
    dest.attach("p", tmp_path / "dest", seal=True, store=False)
    digest = plant_large(source, "p", 30, size)
    assert fetch(dest, 30, size, [ST.SECTOR_FILE_TYPE_SEALED])[0] == "done"
    assert sha256_of(tmp_path / "dest" / "sealed" / f"s-t0{MINER}-30") == digest
    assert routes(dest) == [("sealed", "bulk")]
    received = log_entries(dest, "received over the side channel")
    assert [(e["connections"], e["bytes"]) for e in received] == [(2, size)]

    lone = start_worker(start_service, index, manager, env={ENV_SERVE_EXIT: str(300 << 20)})
    lone.attach("p", tmp_path / "lone", seal=True, store=True)
    plant_large(lone, "p", 31, size)
    kind, error = fetch(dest, 31, size, [ST.SECTOR_FILE_TYPE_SEALED])
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_TEMPORARY, error
    assert lone.proc.proc is not None and lone.proc.proc.wait(10) == 17
    assert not (tmp_path / "dest" / "sealed" / f"s-t0{MINER}-31").exists()
    nothing_left(tmp_path / "dest" / "sealed" / "fetching")
    assert dest.ids["p"] not in {loc.id for loc in find(index, 31, ST.SECTOR_FILE_TYPE_SEALED)}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_side_channel_off_or_unreachable_falls_back_to_grpc(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    size = 8 << 20
    sealed = os.urandom(size)
    index = start_service("index")
    dest = start_worker(start_service, index, manager)
    off = start_worker(start_service, index, manager, env={"SECTORSTORAGE_WORKER_BULK_TRANSFER": "false"})
    walled = start_worker(
        start_service, index, manager, env={"SECTORSTORAGE_WORKER_BULK_ADVERTISE": f"127.0.0.1:{closed_port()}"}
    )
    dying = start_worker(
        start_service, index, manager, env={"SECTORSTORAGE_WORKER_BULK_TRANSFER": "false", ENV_SERVE_EXIT: str(2 << 20)}
    )
    dest.attach("p", tmp_path / "dest", seal=True, store=False)
    for number, (label, w) in enumerate([("off", off), ("walled", walled), ("dying", dying)], start=20):
        w.attach("p", tmp_path / label, seal=True, store=True)
        plant(w, "p", number, sealed, {"p_aux": b"x" * 64})
    plant(walled, "p", 23, sealed, {"p_aux": b"x" * 64})

    # Channel off at the source (OpenTransfer: FAILED_PRECONDITION), then advertised where
    # nothing answers (as behind a firewall): the fetches take the gRPC stream, and the
    # unreachable channel is not tried again for the next fetch from that worker.
    for number in (20, 21, 23):
        assert fetch(dest, number, size, [ST.SECTOR_FILE_TYPE_SEALED])[0] == "done"
        assert (tmp_path / "dest" / "sealed" / f"s-t0{MINER}-{number}").read_bytes() == sealed
    assert routes(dest) == [("sealed", "grpc")] * 3
    assert len(log_entries(dest, "side channel unreachable; using the gRPC stream")) == 1

    # A source dying in the middle of the gRPC stream: the fetch fails, nothing is left behind.
    kind, error = fetch(dest, 22, size, [ST.SECTOR_FILE_TYPE_SEALED])
    assert kind == "error" and error.code == common_pb2.TASK_ERROR_CODE_TEMPORARY, error
    assert dying.proc.proc is not None and dying.proc.proc.wait(10) == 17
    assert not (tmp_path / "dest" / "sealed" / f"s-t0{MINER}-22").exists()
    nothing_left(tmp_path / "dest" / "sealed" / "fetching")


def nothing_left(fetching: Path) -> None:
    """A failed fetch leaves nothing: no partial file under its own name at once, and the trash
    name it was discarded under (renamed at once, deleted by a background thread) goes soon
    after; on a loaded machine that deletion can still be running when the task's error is in."""
    assert [n for n in os.listdir(fetching) if not n.startswith(rust_core.TRASH_PREFIX)] == []
    deadline = time.monotonic() + 30
    while os.listdir(fetching) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.listdir(fetching) == []


def bulk_read(address: str, ticket: bytes) -> bytes:
    """One side channel connection: the ticket out, everything the server sends back."""
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(ticket)
        data = bytearray()
        while part := conn.recv(1 << 20):
            data += part
    return bytes(data)


def test_open_transfer_tickets(start_service: StartService, manager: ManagerEndpoint, tmp_path: Path) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager)
    w.attach("p", tmp_path / "p", seal=True, store=True)
    sealed = os.urandom(2048)
    plant(w, "p", 30, sealed, {"p_aux": b"x" * 64})
    sector = sector_ref(30, 2048).id

    def open_transfer(**kw: object) -> worker_pb2.OpenTransferResponse:
        fields = {"sector": sector, "type": ST.SECTOR_FILE_TYPE_SEALED, **kw}
        reply: worker_pb2.OpenTransferResponse = w.stub.OpenTransfer(
            worker_pb2.OpenTransferRequest(**fields), timeout=10
        )
        return reply

    grant = open_transfer(offset=100, length=1000)
    assert (grant.offset, grant.length, grant.file_size, len(grant.ticket)) == (100, 1000, 2048, 32)
    assert grant.address == w.stub.Info(worker_pb2.InfoRequest(), timeout=10).info.transfer_address
    assert bulk_read(grant.address, grant.ticket) == struct.pack(">Q", 1000) + sealed[100:1100]
    # One connection per ticket; a made-up ticket gets nothing either.
    assert bulk_read(grant.address, grant.ticket) == b""
    assert bulk_read(grant.address, os.urandom(32)) == b""
    whole = open_transfer()
    assert whole.length == 2048 and bulk_read(whole.address, whole.ticket) == struct.pack(">Q", 2048) + sealed

    for kw, code in [
        ({"offset": 2000, "length": 100}, grpc.StatusCode.OUT_OF_RANGE),
        ({"type": ST.SECTOR_FILE_TYPE_CACHE}, grpc.StatusCode.FAILED_PRECONDITION),
        ({"sector": sector_ref(31, 2048).id}, grpc.StatusCode.NOT_FOUND),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            open_transfer(**kw)
        assert err.value.code() == code, kw


def test_fetches_go_through_a_flood_of_idle_and_garbage_connections(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    """200 connections to the source's side channel that send nothing or garbage (re-opened as
    they are closed), while 10 fetches run: every fetch completes (over the side channel, or the
    gRPC stream where the channel refused it) within twice the time the same fetches take
    without the flood."""
    import threading
    import time

    size = 8 << 20
    sealed = os.urandom(size)
    index = start_service("index")
    source = start_worker(start_service, index, manager)
    dest = start_worker(start_service, index, manager)
    source.attach("p", tmp_path / "source", seal=True, store=True)
    dest.attach("p", tmp_path / "dest", seal=True, store=False)
    for number in range(40, 60):
        plant(source, "p", number, sealed, {"p_aux": b"x" * 64})
    host, port = source.stub.Info(worker_pb2.InfoRequest(), timeout=10).info.transfer_address.rsplit(":", 1)

    def fetch_all(numbers: range) -> float:
        started = time.monotonic()
        for number in numbers:
            assert fetch(dest, number, size, [ST.SECTOR_FILE_TYPE_SEALED])[0] == "done", number
            assert (tmp_path / "dest" / "sealed" / f"s-t0{MINER}-{number}").read_bytes() == sealed
        return time.monotonic() - started

    quiet = fetch_all(range(40, 50))
    stop = threading.Event()
    opened = [0]

    def flood() -> None:
        held: list[socket.socket] = []
        while not stop.is_set():
            while len(held) < 200 and not stop.is_set():
                try:
                    s = socket.create_connection((host, int(port)), timeout=2)
                except OSError:
                    break
                if len(held) % 2:
                    with contextlib.suppress(OSError):
                        s.sendall(os.urandom(9))
                held.append(s)
                opened[0] += 1
            time.sleep(0.05)
            alive = []
            for s in held:  # drop the ones the server closed, so they get re-opened
                s.setblocking(False)
                try:
                    gone = s.recv(1) == b""
                except BlockingIOError:
                    gone = False
                except OSError:
                    gone = True
                if gone:
                    s.close()
                else:
                    alive.append(s)
            held = alive
        for s in held:
            s.close()

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    time.sleep(1.0)
    try:
        flooded = fetch_all(range(50, 60))
    finally:
        stop.set()
        flooder.join(10)
    print(
        f"10 fetches: {quiet:.2f} s quiet, {flooded:.2f} s under a flood ({opened[0]} connections opened); routes {routes(dest)[10:]}"
    )
    assert opened[0] >= 200
    assert flooded <= 2 * quiet + 1.0, (quiet, flooded)
    nothing_left(tmp_path / "dest" / "sealed" / "fetching")


def test_a_side_channel_that_refuses_falls_back_to_grpc(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    """A side channel that accepts and closes every connection unserved (as a full or flooded
    one does): the fetch takes the gRPC stream from the same source, and says why."""
    import threading

    refuser = socket.socket()
    refuser.bind(("127.0.0.1", 0))
    refuser.listen(16)
    stop = threading.Event()

    def refuse_all() -> None:
        refuser.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = refuser.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=refuse_all, daemon=True)
    thread.start()
    try:
        size = 8 << 20
        sealed = os.urandom(size)
        index = start_service("index")
        dest = start_worker(start_service, index, manager)
        full = start_worker(
            start_service,
            index,
            manager,
            env={"SECTORSTORAGE_WORKER_BULK_ADVERTISE": f"127.0.0.1:{refuser.getsockname()[1]}"},
        )
        dest.attach("p", tmp_path / "dest", seal=True, store=False)
        full.attach("p", tmp_path / "full", seal=True, store=True)
        plant(full, "p", 30, sealed, {"p_aux": b"x" * 64})
        assert fetch(dest, 30, size, [ST.SECTOR_FILE_TYPE_SEALED])[0] == "done"
        assert (tmp_path / "dest" / "sealed" / f"s-t0{MINER}-30").read_bytes() == sealed
        assert routes(dest) == [("sealed", "grpc")]
        [refused] = log_entries(dest, "side channel refused the transfer; using the gRPC stream")
        assert "closed the connection unserved" in str(refused["error"])
    finally:
        stop.set()
        thread.join(5)
        refuser.close()
