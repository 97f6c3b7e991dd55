"""The worker's domain modules on their own: local store reservations and stats, the tar stream
both ways, the call store across reopen, resource overrides, sector names and prover ids."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

import rust_core
from services.common.vocabulary import SealProof, TaskType
from services.worker.calls import CallId, CallResult, CallType
from services.worker.callstore import CallStore, call_key
from services.worker.cleanup import _on_disk
from services.worker.local_store import LocalStore, NoSpace, PathExists
from services.worker.messages import RESULT_CODEC
from services.worker.paths import TRASH_PREFIX, PathMeta, ScannedFile, StorageList, scan_path, trash_entries
from services.worker.resources import concurrency_caps, parse_overrides, parse_task_type
from services.worker.sectors import FileType, PathType, SectorId, prover_id, space_needed
from services.worker.tarstream import TarError, TarExtractor, plan_directory, stream_tar, tar_size

ID = "0c6f3b1c-5d4e-4a57-9b8e-111111111111"


def store_with_path(tmp_path: Path, **meta: object) -> tuple[LocalStore, str]:
    store = LocalStore(StorageList(tmp_path / "storage.json"))
    init = PathMeta(id=ID, can_seal=True, **meta)  # type: ignore[arg-type]
    path = store.attach(tmp_path / "p", init)
    return store, path.id


def test_reservations_never_overcommit_a_capped_path(tmp_path: Path) -> None:
    size = 8 << 20
    need = space_needed(FileType.SEALED | FileType.CACHE, size, PathType.SEALING)
    store, pid = store_with_path(tmp_path, max_storage=need + need // 2)
    s1, s2 = SectorId(1000, 1), SectorId(1000, 2)
    _, r1 = store.allocate(s1, FileType.SEALED | FileType.CACHE, size, PathType.SEALING)
    assert store.stat(pid).reserved == need
    with pytest.raises(NoSpace, match="available"):
        store.allocate(s2, FileType.SEALED | FileType.CACHE, size, PathType.SEALING)
    # Bytes written into a reserved file count once: used goes up, reserved goes down.
    sealed = tmp_path / "p" / "sealed" / s1.name
    sealed.write_bytes(os.urandom(size))
    st = store.stat(pid)
    assert st.used >= size and st.reserved <= need - size + 4096
    r1.release()
    assert store.stat(pid).reserved == 0
    _, r2 = store.allocate(s2, FileType.SEALED, size, PathType.SEALING)
    r2.release()


def test_stat_counts_sparse_files_by_blocks(tmp_path: Path) -> None:
    store, pid = store_with_path(tmp_path, max_storage=1 << 40)
    sparse = tmp_path / "p" / "unsealed" / "s-t01000-1"
    with open(sparse, "wb") as f:
        f.truncate(512 << 20)
        f.write(b"x" * 4096)
    assert store.stat(pid).used < 1 << 20


def test_allocation_respects_purpose_filters_and_weight(tmp_path: Path) -> None:
    store = LocalStore(StorageList(tmp_path / "storage.json"))
    a = store.attach(tmp_path / "a", PathMeta(id=ID, can_seal=True, weight=10))
    b = store.attach(tmp_path / "b", PathMeta(id=ID, can_seal=True, weight=20, deny_types=FileType.CACHE))
    store.attach(tmp_path / "c", PathMeta(id=ID, can_store=True, weight=100))
    sector = SectorId(1000, 1)
    chosen, res = store.allocate(sector, FileType.SEALED | FileType.CACHE, 2048, PathType.SEALING)
    assert chosen[FileType.SEALED].id == b.id and chosen[FileType.CACHE].id == a.id
    res.release()
    with pytest.raises(PathExists):
        store.attach(tmp_path / "a", None)
    assert StorageList.load(tmp_path / "storage.json").paths == [str(tmp_path / n) for n in "abc"]


def test_scan_skips_and_reports_what_is_not_a_sector_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, pid = store_with_path(tmp_path)
    root = tmp_path / "p"
    (root / "sealed" / "s-t01000-7").write_bytes(b"")
    (root / "sealed" / "fetching").mkdir()
    (root / "cache" / "s-t01000-7").mkdir()
    assert scan_path(root).files == [
        ScannedFile(SectorId(1000, 7), FileType.SEALED),
        ScannedFile(SectorId(1000, 7), FileType.CACHE),
    ]
    # Stray entries of every kind: none of them hides sector 7 or raises.
    (root / "sealed" / "README.txt").write_bytes(b"notes")
    (root / "sealed" / ("s-t01000-" + "9" * 200)).write_bytes(b"")  # number past 2^63
    (root / "sealed" / ("x" * 255)).write_bytes(b"")
    (root / "sealed" / "s-t01000-8").mkdir()  # a directory where a file belongs
    (root / "cache" / "s-t01000-9").write_bytes(b"")  # a file where a directory belongs
    (root / "unsealed" / "s-t01000-10").symlink_to(root / "sealed" / "s-t01000-7")
    os.mkdir(os.path.join(os.fsencode(root / "cache"), b"s-t01000-\xff"))  # not UTF-8
    scan = scan_path(root)
    assert scan.complete
    assert scan.files == [
        ScannedFile(SectorId(1000, 7), FileType.SEALED),
        ScannedFile(SectorId(1000, 7), FileType.CACHE),
    ]
    reasons = {e.path.name: e.reason for e in scan.skipped}
    assert len(reasons) == 7, reasons
    assert "not a sector file name" in reasons["README.txt"] and "not a sector file name" in reasons["x" * 255]
    assert "directory where a sealed file is expected" in reasons["s-t01000-8"]
    assert "not a directory" in reasons["s-t01000-9"] and "symlink" in reasons["s-t01000-10"]

    # The store logs each skipped entry once, however often the path is rescanned.
    with caplog.at_level("WARNING"):
        for _ in range(3):
            found, complete = store.scan(pid)
            assert found == [(SectorId(1000, 7), FileType.SEALED), (SectorId(1000, 7), FileType.CACHE)] and complete
    skipped = [r for r in caplog.records if r.getMessage().startswith("storage scan skipped")]
    assert len(skipped) == 7
    # A sector folder that is not a folder is no error either; one that cannot be read makes
    # the scan incomplete (its files are unknown, not gone).
    (root / "unsealed" / "s-t01000-10").unlink()
    (root / "unsealed").rmdir()
    (root / "unsealed").write_bytes(b"")
    scan = scan_path(root)
    assert not scan.complete and any(e.path.name == "unsealed" for e in scan.skipped)
    assert ScannedFile(SectorId(1000, 7), FileType.SEALED) in scan.files


def test_trash_is_never_declared_never_counted_as_progress_and_swept_at_start(tmp_path: Path) -> None:
    """What a stopped task half-wrote is renamed to a trash name and deleted in the background:
    no scan declares it, no tar of a cache carries it, a reserved file's progress leaves it out,
    and a leftover (a killed process's) is removed when the path is opened."""
    assert rust_core.TRASH_PREFIX == TRASH_PREFIX
    size = 8 << 20
    store, pid = store_with_path(tmp_path)
    root = tmp_path / "p"
    s1 = SectorId(1000, 1)
    cache = root / "cache" / s1.name
    cache.mkdir()
    (cache / "p_aux").write_bytes(b"x" * 64)
    _, reservation = store.allocate(s1, FileType.CACHE, size, PathType.SEALING)
    reserved = store.stat(pid).reserved
    (cache / f"{TRASH_PREFIX}sc-02-data-tree-c.dat.1.1").write_bytes(os.urandom(size))
    assert store.stat(pid).reserved == reserved, "trash counted as the reserved file's progress"
    reservation.release()
    leftovers = [
        root / "sealed" / f"{TRASH_PREFIX}{s1.name}.7.1",
        root / "unsealed" / "fetching" / f"{TRASH_PREFIX}{s1.name}.7.2",
        root / "cache" / f"{TRASH_PREFIX}s-t01000-2.7.3",
        cache / f"{TRASH_PREFIX}sc-02-data-tree-c.dat.1.1",
    ]
    (root / "unsealed" / "fetching").mkdir()
    for f in leftovers[:2]:
        f.write_bytes(b"x")
    leftovers[2].mkdir()
    (leftovers[2] / "sc-02-data-tree-d.dat").write_bytes(b"x")
    assert trash_entries(root) == sorted(leftovers)
    assert scan_path(root).files == [ScannedFile(s1, FileType.CACHE)] and not scan_path(root).skipped
    assert [e.name for e in plan_directory(cache)] == ["p_aux"]
    # Storage cleanup never takes trash for an orphan (nor a download in fetching/).
    assert [o.path for o in _on_disk(store.get(pid))] == [cache]
    # A worker start (opening storage.json's paths) removes them, in the background.
    again = LocalStore(StorageList.load(tmp_path / "storage.json"))
    again.open_configured()
    assert rust_core.wait_trash(30)
    assert trash_entries(root) == [] and not any(f.exists() for f in leftovers)
    assert (cache / "p_aux").exists()


def test_tar_round_trip_exact_size(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = {"p_aux": os.urandom(64), "t_aux": b"", "sc-02-data-tree-r-last.dat": os.urandom(5000)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    entries = plan_directory(src)
    archive = b"".join(stream_tar(entries, 1000))
    assert len(archive) == tar_size(entries)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert [m.name for m in tar.getmembers()] == sorted(files)
    dest = tmp_path / "dest"
    dest.mkdir()
    ex = TarExtractor(dest)
    for i in range(0, len(archive), 777):
        ex.feed(archive[i : i + 777])
    ex.finish()
    assert {n: (dest / n).read_bytes() for n in os.listdir(dest)} == files


def test_tar_extractor_refuses_escapes(tmp_path: Path) -> None:
    for name, kind in (
        ("../evil", tarfile.REGTYPE),
        ("/abs", tarfile.REGTYPE),
        ("d/x", tarfile.REGTYPE),
        ("link", tarfile.SYMTYPE),
    ):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(info, io.BytesIO(b""))
        dest = tmp_path / f"d{abs(hash(name))}"
        dest.mkdir()
        with pytest.raises(TarError):
            TarExtractor(dest).feed(buf.getvalue())
        assert os.listdir(dest) == []
    truncated = TarExtractor(tmp_path)
    with pytest.raises(TarError):
        truncated.finish()


def test_tar_carries_long_names_in_pax_headers_and_leaves_out_untravelable_ones(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = {"p_aux": os.urandom(64), "n" * 101: os.urandom(700), "é" * 127: b"", "L" * 255: os.urandom(3)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    # Not UTF-8: no tar name can carry it; left out, the rest still travels.
    (src / os.fsdecode(b"bad-\xff")).write_bytes(b"x")
    entries = plan_directory(src)
    assert sorted(e.name for e in entries) == sorted(files)
    archive = b"".join(stream_tar(entries, 1000))
    assert len(archive) == tar_size(entries)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # any tar reader sees the full names
        assert sorted(m.name for m in tar.getmembers()) == sorted(files)
    dest = tmp_path / "dest"
    dest.mkdir()
    ex = TarExtractor(dest)
    for i in range(0, len(archive), 300):
        ex.feed(archive[i : i + 300])
    ex.finish()
    assert {n: (dest / n).read_bytes() for n in os.listdir(dest)} == files
    # A short name is still a plain ustar header, byte for byte as before.
    short = [e for e in entries if e.name == "p_aux"]
    assert tar_size(short) == 512 + 512 + 1024

    def pax_archive(records: bytes, name: str = "x") -> bytes:
        pax = tarfile.TarInfo("././@PaxHeader")
        pax.type, pax.size = tarfile.XHDTYPE, len(records)
        body = pax.tobuf(format=tarfile.USTAR_FORMAT) + records + b"\0" * (-len(records) % 512)
        return body + tarfile.TarInfo(name).tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 1024

    def record(field: str) -> bytes:
        body = f" {field}\n".encode()
        return f"{len(body) + 2}".encode() + body  # two-digit lengths here

    bad = [
        record("path=../evil"),
        record("path=a/b"),
        record("path=.."),
        record("linkpath=/etc/x"),
        record("size=-1"),
        b"99 path=x\n",
        b"x path=y\n",
    ]
    for records in bad:
        target = tmp_path / f"h{abs(hash(records))}"
        target.mkdir()
        with pytest.raises(TarError):
            TarExtractor(target).feed(pax_archive(records))
        assert os.listdir(target) == []
    ok = tmp_path / "ok"
    ok.mkdir()
    ex = TarExtractor(ok)
    ex.feed(pax_archive(record("path=abc")))
    ex.finish()
    assert os.listdir(ok) == ["abc"]


def test_call_store_survives_reopen(tmp_path: Path) -> None:
    call = CallId(miner=1000, number=3, id="7f6d1c2e-0000-4000-8000-000000000001")
    key = call_key(call)
    assert key == "1000-3-7f6d1c2e-0000-4000-8000-000000000001"
    store = CallStore(tmp_path / "calls.db", RESULT_CODEC)
    assert store.start(key, CallType.SEAL_COMMIT_2, 1.0)
    assert not store.start(key, CallType.SEAL_COMMIT_2, 1.0)
    store.close()
    store = CallStore(tmp_path / "calls.db", RESULT_CODEC)
    assert store.running_keys() == [key]
    store.finish(key, CallResult(call, CallType.SEAL_COMMIT_2, ("proof", b"p")))
    store.close()
    store = CallStore(tmp_path / "calls.db", RESULT_CODEC)
    assert [r.outcome for r in store.pending()] == [("proof", b"p")]
    assert store.ack(key) and not store.ack(key)
    assert store.pending() == [] and store.get(key) is not None  # tombstone: a repeat is recognised


def test_resource_overrides() -> None:
    rows = parse_overrides(
        {
            "PC1_32G_MAX_CONCURRENT": "4",
            "PC2_GPU_UTILIZATION": "0.5",
            "C2_MIN_MEMORY": "2GiB",
            "PATH": "/usr/bin",
            "AP_MAX_PARALLELISM": -1,
        }
    )
    by = {(r.task_type, r.proof): r for r in rows}
    assert by[(TaskType.PRE_COMMIT_1, SealProof.STACKED_DRG_32GIB_V1_1)].max_concurrent == 4
    assert by[(TaskType.PRE_COMMIT_2, None)].gpu_utilization == 0.5
    assert by[(TaskType.COMMIT_2, None)].min_memory == 2 << 30
    assert by[(TaskType.ADD_PIECE, None)].max_parallelism == -1
    assert concurrency_caps(rows) == {(TaskType.PRE_COMMIT_1, SealProof.STACKED_DRG_32GIB_V1_1): 4}
    with pytest.raises(ValueError, match="C2_MIN_MEMORY"):
        parse_overrides({"C2_MIN_MEMORY": "lots"})
    assert parse_task_type("pc1") == parse_task_type("PRE_COMMIT_1") == TaskType.PRE_COMMIT_1
    with pytest.raises(ValueError):
        parse_task_type("PC3")


def test_sector_names_and_prover_id() -> None:
    assert SectorId(1000, 5).name == "s-t01000-5"
    assert SectorId.parse_name("s-t01000-5") == SectorId(1000, 5)
    for bad in ("s-t01000-05", "s-t0-1", "s-t01000-1/..", "../s-t01000-1", "s-t01000-1 "):
        with pytest.raises(ValueError):
            SectorId.parse_name(bad)
    # Filecoin's prover id: the ID address payload (LEB128 actor id) zero-padded to 32 bytes.
    assert prover_id(1000) == bytes([0xE8, 0x07]) + bytes(30)
    assert prover_id(1) == b"\x01" + bytes(31)


def test_gpus_follow_cuda_visible_devices() -> None:
    from services.worker.resources import detect_gpus

    assert detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == ()
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == ()
    # Otherwise the driver's own list (empty on a machine without CUDA).
    import rust_core

    assert len(detect_gpus({})) == len(rust_core.gpu_devices())


def test_runner_admission_caps(tmp_path: Path) -> None:
    import asyncio

    from services.worker.runner import CallRunner, Exhausted
    from services.worker.tasks import TaskContext

    p32 = SealProof.STACKED_DRG_32GIB_V1_1
    p2k = SealProof.STACKED_DRG_2KIB_V1_1
    caps = {(TaskType.PRE_COMMIT_1, p32): 1, (TaskType.COMMIT_2, 0): 0}

    async def scenario() -> None:
        runner = CallRunner(
            CallStore(tmp_path / "calls.db", RESULT_CODEC), lambda: None, "w", max_tasks=3, type_caps=caps
        )
        gate = asyncio.Event()

        async def work(ctx: TaskContext) -> tuple[str, object]:
            await gate.wait()
            return ("proof", b"x")

        def start(n: int, task: int, proof: int) -> None:
            call = CallId(miner=1000, number=n, id=f"00000000-0000-4000-8000-{n:012d}")
            runner.admit(task, proof)
            runner.start(call, CallType.SEAL_PRE_COMMIT_1, task, proof, None, TaskContext(owner="t"), work)

        with pytest.raises(Exhausted, match="cap is 0"):
            runner.admit(TaskType.COMMIT_2, p2k)  # MAX_CONCURRENT = 0 for every size
        start(1, TaskType.PRE_COMMIT_1, p32)
        with pytest.raises(Exhausted, match="of this sector size"):
            runner.admit(TaskType.PRE_COMMIT_1, p32)
        start(2, TaskType.PRE_COMMIT_1, p2k)  # the cap is for 32 GiB only
        start(3, TaskType.PRE_COMMIT_1, p2k)
        with pytest.raises(Exhausted, match="limit is 3"):
            runner.admit(TaskType.PRE_COMMIT_1, p2k)
        gate.set()
        while runner.running:
            await asyncio.sleep(0.01)
        assert len(runner.store.pending()) == 3

    asyncio.run(scenario())


def test_index_reservations_mirror_release_and_tolerate_an_older_index(tmp_path: Path) -> None:
    """The worker mirrors a local reservation in the index per path and releases it with the
    path's fresh stat; when the index answers that a shared path is full, the local reservation
    is given back and NoSpace raised; an index without reservations (UNIMPLEMENTED, a rolling
    upgrade) leaves the local reservation alone."""
    import asyncio

    import grpc

    from services.worker.edge import call_failed
    from services.worker.failures import CallFailed
    from services.worker.remote_store import RemoteStore

    def rpc_error(code: grpc.StatusCode) -> CallFailed:
        # What the real IndexClient raises for that status (its edge translates gRPC errors).
        error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "from the fake index")
        return call_failed(error, "index")

    class FakeIndex:
        def __init__(self, answer: grpc.StatusCode | None) -> None:
            self.answer = answer
            self.reserved: list[tuple[str, int]] = []
            self.released: list[tuple[str, object]] = []

        async def reserve(self, storage_id: str, size: int, owner: str, ttl_s: float) -> str:
            if self.answer is not None:
                raise rpc_error(self.answer)
            self.reserved.append((storage_id, size))
            return f"r{len(self.reserved)}"

        async def release_reservation(self, reservation_id: str, stat: object = None) -> None:
            self.released.append((reservation_id, stat))

    store, pid = store_with_path(tmp_path)
    sector, size = SectorId(1000, 9), 2048
    need = space_needed(FileType.SEALED | FileType.CACHE, size, PathType.SEALING)

    async def run() -> None:
        ok = FakeIndex(None)
        remote = RemoteStore(store, ok, None, 1, owner="w1")  # type: ignore[arg-type]
        _, res = store.allocate(sector, FileType.SEALED | FileType.CACHE, size, PathType.SEALING)
        made = await remote._reserve_in_index(sector, res)
        assert ok.reserved == [(pid, need)] and made == [("r1", pid)]
        res.release()
        await remote._release_in_index(made)
        assert [r for r, _ in ok.released] == ["r1"] and ok.released[0][1] is not None  # with the fresh stat

        full = FakeIndex(grpc.StatusCode.RESOURCE_EXHAUSTED)
        remote = RemoteStore(store, full, None, 1, owner="w1")  # type: ignore[arg-type]
        _, res = store.allocate(sector, FileType.SEALED | FileType.CACHE, size, PathType.SEALING)
        with pytest.raises(NoSpace, match="shared path has no room"):
            await remote._reserve_in_index(sector, res)
        assert store.stat(pid).reserved == 0  # the local reservation was given back

        older = FakeIndex(grpc.StatusCode.UNIMPLEMENTED)
        remote = RemoteStore(store, older, None, 1, owner="w1")  # type: ignore[arg-type]
        _, res = store.allocate(sector, FileType.SEALED | FileType.CACHE, size, PathType.SEALING)
        assert await remote._reserve_in_index(sector, res) == []
        assert store.stat(pid).reserved == need  # kept: the local reservation alone
        res.release()

    asyncio.run(run())
