"""Storage paths of a real worker: attach errors, reservations that keep concurrent tasks from
overcommitting a path near its max_storage, and file serving that refuses anything but a real
sector file inside an attached path (traversal, planted symlinks, unknown types)."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from tests.support.fleet import StartService, start_worker
from tests.support.sectors import MINER, TICKET, sector_ref
from tests.support.worker import ManagerEndpoint, WorkerHandle, add_piece, assignment

ST = common_pb2.SectorFileType


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        result = call()  # type: ignore[operator]
        if hasattr(result, "__iter__"):
            list(result)
    return err.value.code()


def test_attach_errors_and_stat(start_service: StartService, manager: ManagerEndpoint, tmp_path: Path) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager)
    attach = w.stub.StorageAttachLocal
    init = worker_pb2.StoragePathConfig(can_seal=True)
    assert (
        code_of(lambda: attach(worker_pb2.StorageAttachLocalRequest(path="relative/dir", init=init), timeout=10))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(
            lambda: attach(
                worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "x" / ".." / "y"), init=init), timeout=10
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    neither = worker_pb2.StoragePathConfig()
    assert (
        code_of(
            lambda: attach(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "n"), init=neither), timeout=10)
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    both = worker_pb2.StoragePathConfig(
        can_seal=True, allow_types=[ST.SECTOR_FILE_TYPE_SEALED], deny_types=[ST.SECTOR_FILE_TYPE_SEALED]
    )
    assert (
        code_of(lambda: attach(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "b"), init=both), timeout=10))
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (
        code_of(lambda: attach(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "missing")), timeout=10))
        == grpc.StatusCode.NOT_FOUND
    )

    storage_id = w.attach("p", tmp_path / "p", seal=True, store=False, max_storage=1 << 30)
    meta = (tmp_path / "p" / "sectorstore.json").read_text()
    assert storage_id in meta and '"CanSeal": true' in meta
    assert sorted(os.listdir(tmp_path / "p")) == ["cache", "sealed", "sectorstore.json", "unsealed"]
    assert (
        code_of(lambda: attach(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "p"), init=init), timeout=10))
        == grpc.StatusCode.ALREADY_EXISTS
    )
    assert (
        code_of(lambda: attach(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "p")), timeout=10))
        == grpc.StatusCode.ALREADY_EXISTS
    )
    stat = w.stub.StatPath(worker_pb2.StatPathRequest(storage_id=storage_id), timeout=10).stat
    assert stat.max == 1 << 30 and stat.available <= 1 << 30 and stat.capacity > 0
    assert (
        code_of(lambda: w.stub.StatPath(worker_pb2.StatPathRequest(storage_id="nope"), timeout=10))
        == grpc.StatusCode.NOT_FOUND
    )

    # storage.json lists the path; a detached path leaves it (files stay).
    storage_json = w.proc.data_dir / "storage.json"
    assert str(tmp_path / "p") in storage_json.read_text()
    w.stub.StorageDetachLocal(worker_pb2.StorageDetachLocalRequest(storage_id=storage_id), timeout=10)
    assert str(tmp_path / "p") not in storage_json.read_text()
    assert (tmp_path / "p" / "sectorstore.json").exists()
    # Re-attach without init: same id.
    again = attach(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "p")), timeout=10)
    assert again.path.info.id == storage_id


def test_reservations_prevent_overcommit_near_max_storage(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager)
    size = 8 << 20
    pc1_reservation = 151 * size // 10  # sealed 1x + cache 14.1x while sealing
    storage_id = w.attach("p", tmp_path / "p", seal=True, store=False)
    datas = {n: os.urandom(size // 128 * 127) for n in (1, 2)}
    pieces = {n: w.ok(add_piece(w, n, size, d)) for n, d in datas.items()}
    # Cap the path so that one PC1's reservation fits and two do not.
    on_disk = sum(f.stat().st_blocks * 512 for f in (tmp_path / "p").rglob("*") if f.is_file())
    cap = on_disk + pc1_reservation * 3 // 2
    meta_file = tmp_path / "p" / "sectorstore.json"
    meta_file.write_text(meta_file.read_text().replace('"MaxStorage": 0', f'"MaxStorage": {cap}'))
    w.stub.StorageDetachLocal(worker_pb2.StorageDetachLocalRequest(storage_id=storage_id), timeout=10)
    w.stub.StorageAttachLocal(worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "p")), timeout=10)

    calls = {}
    for n in (1, 2):
        a = assignment(n)
        req = worker_pb2.WorkerServiceSealPreCommit1Request(
            assignment=a,
            sector=sector_ref(n, size),
            ticket=TICKET,
            pieces=[common_pb2.PieceInfo(size=size, commp=pieces[n].commp)],
        )
        w.stub.SealPreCommit1(req, timeout=10)
        calls[n] = a.call_id
    outcomes = {n: w.result(c) for n, c in calls.items()}
    kinds = sorted(kind for kind, _ in outcomes.values())
    assert kinds == ["error", "pre_commit1_output"], outcomes
    failed = next(n for n, (kind, _) in outcomes.items() if kind == "error")
    error = outcomes[failed][1]
    assert error.code == common_pb2.TASK_ERROR_CODE_ALLOCATE_SPACE and "available" in error.message
    stat = w.stub.StatPath(worker_pb2.StatPathRequest(storage_id=storage_id), timeout=10).stat
    assert stat.reserved == 0 and stat.used <= cap

    # Once the first PC1 is done its reservation is gone and the space it did not use is free
    # again: the second one now fits.
    a = assignment(failed)
    w.stub.SealPreCommit1(
        worker_pb2.WorkerServiceSealPreCommit1Request(
            assignment=a,
            sector=sector_ref(failed, size),
            ticket=TICKET,
            pieces=[common_pb2.PieceInfo(size=size, commp=pieces[failed].commp)],
        ),
        timeout=10,
    )
    assert w.result(a.call_id)[0] == "pre_commit1_output"


def test_serving_refuses_traversal_and_symlinks(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    index = start_service("index")
    w = start_worker(start_service, index, manager)
    root = tmp_path / "p"
    storage_id = w.attach("p", root, seal=True, store=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"top secret")
    name1 = f"s-t0{MINER}-1"
    (root / "sealed" / name1).write_bytes(b"\1" * 2048)
    (root / "cache" / name1).mkdir()
    (root / "cache" / name1 / "p_aux").write_bytes(b"\2" * 64)
    (root / "cache" / name1 / "evil").symlink_to(outside / "secret")
    (root / "cache" / name1 / "subdir").mkdir()
    # Sector 2: the sealed "file" is a symlink out; sector 3: the cache "dir" is a symlink out.
    (root / "sealed" / f"s-t0{MINER}-2").symlink_to(outside / "secret")
    (root / "cache" / f"s-t0{MINER}-3").symlink_to(outside)
    sid = lambda n: common_pb2.SectorId(miner=MINER, number=n)  # noqa: E731
    read_dir = lambda n, names=(), storage="": list(  # noqa: E731
        w.stub.ReadSectorDir(
            worker_pb2.ReadSectorDirRequest(
                sector=sid(n), type=ST.SECTOR_FILE_TYPE_CACHE, names=list(names), storage_id=storage
            ),
            timeout=10,
        )
    )
    read_file = lambda n, t=ST.SECTOR_FILE_TYPE_SEALED, storage="": list(  # noqa: E731
        w.stub.ReadSectorFile(worker_pb2.ReadSectorFileRequest(sector=sid(n), type=t, storage_id=storage), timeout=10)
    )

    # The good file and dir are served; the symlink and subdirectory inside the cache are not.
    assert b"".join(m.chunk.data for m in read_file(1)) == b"\1" * 2048
    archive = b"".join(m.chunk.data for m in read_dir(1))
    assert b"top secret" not in archive and b"evil" not in archive and b"subdir" not in archive and b"p_aux" in archive
    stat = w.stub.StatSectorFile(
        worker_pb2.StatSectorFileRequest(sector=sid(1), type=ST.SECTOR_FILE_TYPE_CACHE), timeout=10
    )
    assert [e.name for e in stat.entries] == ["p_aux"] and stat.is_dir

    for names in (["../../outside/secret"], ["/etc/passwd"], ["subdir/x"], ["evil"], [".."], ["subdir"]):
        assert code_of(lambda: read_dir(1, names)) == grpc.StatusCode.NOT_FOUND, names
    assert code_of(lambda: read_file(2)) == grpc.StatusCode.NOT_FOUND
    assert (
        code_of(
            lambda: w.stub.StatSectorFile(
                worker_pb2.StatSectorFileRequest(sector=sid(2), type=ST.SECTOR_FILE_TYPE_SEALED), timeout=10
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert code_of(lambda: read_dir(3)) == grpc.StatusCode.NOT_FOUND
    for bad_id in ("../../outside", str(outside), "nope"):
        assert code_of(lambda: read_file(1, storage=bad_id)) == grpc.StatusCode.NOT_FOUND
    assert b"".join(m.chunk.data for m in read_file(1, storage=storage_id)) == b"\1" * 2048
    # Unknown or wrong types.
    assert code_of(lambda: read_file(1, t=8)) == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[arg-type]
    assert code_of(lambda: read_file(1, t=0)) == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[arg-type]
    assert code_of(lambda: read_file(1, t=ST.SECTOR_FILE_TYPE_CACHE)) == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        code_of(
            lambda: w.stub.ReadSectorDir(
                worker_pb2.ReadSectorDirRequest(sector=sid(1), type=ST.SECTOR_FILE_TYPE_SEALED), timeout=10
            )
        )
        == grpc.StatusCode.INVALID_ARGUMENT
    )
    # Out-of-range sector numbers and miner 0.
    big = common_pb2.SectorId(miner=MINER, number=2**63)
    assert code_of(lambda: read_file_raw(w, big)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: read_file_raw(w, common_pb2.SectorId(miner=0, number=1))) == grpc.StatusCode.INVALID_ARGUMENT

    # A sector folder that is itself a link out of the path: nothing in it is served.
    (root / "unsealed").rmdir()
    (outside / f"s-t0{MINER}-1").write_bytes(b"\3" * 2100)
    (root / "unsealed").symlink_to(outside)
    assert code_of(lambda: read_file(1, t=ST.SECTOR_FILE_TYPE_UNSEALED)) == grpc.StatusCode.NOT_FOUND


def read_file_raw(w: WorkerHandle, sector: common_pb2.SectorId) -> list[worker_pb2.ReadSectorFileResponse]:
    return list(
        w.stub.ReadSectorFile(
            worker_pb2.ReadSectorFileRequest(sector=sector, type=ST.SECTOR_FILE_TYPE_SEALED), timeout=10
        )
    )


def test_two_workers_sharing_a_path_never_over_commit_it(
    start_service: StartService, manager: ManagerEndpoint, tmp_path: Path
) -> None:
    """Two workers attach one directory (network storage); four PC1s race for it, two on each,
    with room for two. Their reservations meet in the index: at most two start, the others fail
    with ALLOCATE_SPACE, and the disk never holds more than the cap."""
    index = start_service("index")
    a = start_worker(start_service, index, manager)
    b = start_worker(start_service, index, manager)
    size = 8 << 20
    pc1_reservation = 151 * size // 10  # sealed 1x + cache 14.1x while sealing
    shared = tmp_path / "shared"
    storage_id = a.attach("p", shared, seal=True, store=False)
    pieces = {n: a.ok(add_piece(a, n, size, os.urandom(size // 128 * 127))) for n in (1, 2, 3, 4)}
    on_disk = sum(f.stat().st_blocks * 512 for f in shared.rglob("*") if f.is_file())
    cap = on_disk + pc1_reservation * 5 // 2
    meta_file = shared / "sectorstore.json"
    meta_file.write_text(meta_file.read_text().replace('"MaxStorage": 0', f'"MaxStorage": {cap}'))
    a.stub.StorageDetachLocal(worker_pb2.StorageDetachLocalRequest(storage_id=storage_id), timeout=10)
    for w in (a, b):
        w.stub.StorageAttachLocal(worker_pb2.StorageAttachLocalRequest(path=str(shared)), timeout=10)

    calls = {}
    for n, w in ((1, a), (2, a), (3, b), (4, b)):
        call = assignment(n)
        w.stub.SealPreCommit1(
            worker_pb2.WorkerServiceSealPreCommit1Request(
                assignment=call,
                sector=sector_ref(n, size),
                ticket=TICKET,
                pieces=[common_pb2.PieceInfo(size=size, commp=pieces[n].commp)],
            ),
            timeout=10,
        )
        calls[n] = (w, call.call_id)
    outcomes = {n: w.result(c) for n, (w, c) in calls.items()}
    done = [n for n, (kind, _) in outcomes.items() if kind == "pre_commit1_output"]
    failed = {n: v for n, (kind, v) in outcomes.items() if kind == "error"}
    assert 1 <= len(done) <= 2, outcomes
    assert all(e.code == common_pb2.TASK_ERROR_CODE_ALLOCATE_SPACE for e in failed.values()), failed
    on_disk_after = sum(f.stat().st_blocks * 512 for f in shared.rglob("*") if f.is_file())
    assert on_disk_after <= cap, (on_disk_after, cap)
