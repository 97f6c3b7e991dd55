"""Storage maintenance with real processes (index, manager, worker): redeclare after sector files
were moved by hand between two paths, and StorageCleanup of files no declaration owns.

- redeclare with drop_missing: the index ends up matching the disk (the moved files on their
  new path, nothing left on the old one), and C1 then runs on the files where they now are;
- cleanup: a dry run lists an undeclared copy (removable), a stray non-sector name and an
  undeclared cache of a sector locked in the index (both left alone), and removes nothing;
  apply removes only the removable one; declared files are never touched; once the lock is
  released the cache goes too. Per-path filters show in the path's StorageInfo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, manager_pb2, worker_pb2, worker_pb2_grpc
from services.devfleet import console_script
from tests.support.auth import token
from tests.support.fleet import StartService, WorkerSpec, fleet_with_workers
from tests.support.sealing import precommit
from tests.support.sectors import MINER, SEED, TICKET, sector
from tests.support.worker import index_stub

ST = common_pb2.SectorFileType
UNSEALED, SEALED, CACHE = ST.SECTOR_FILE_TYPE_UNSEALED, ST.SECTOR_FILE_TYPE_SEALED, ST.SECTOR_FILE_TYPE_CACHE
NAME = f"s-t0{MINER}-1"
SECTORCTL = console_script("sectorctl")


def holders(index: object, number: int, file_type: int) -> set[str]:
    reply = index.StorageFindSector(  # type: ignore[attr-defined]
        index_pb2.StorageFindSectorRequest(sector=common_pb2.SectorId(miner=MINER, number=number), types=[file_type]),
        timeout=10,
    )
    return {loc.id for loc in reply.locations}


def test_redeclare_after_a_hand_move_and_cleanup(start_service: StartService, tmp_path: Path) -> None:
    fleet = fleet_with_workers(start_service, tmp_path, {}, [WorkerSpec("a", cpus=2)])
    worker = worker_pb2_grpc.WorkerServiceStub(sync_channel(fleet.workers["a"].address, token()))
    index = index_stub(fleet.index)
    old, new = tmp_path / "store-a", tmp_path / "p2"
    config = worker_pb2.StoragePathConfig(can_store=True, weight=1, deny_miners=[4242], deny_types=[UNSEALED])
    p2 = worker.StorageAttachLocal(
        worker_pb2.StorageAttachLocalRequest(path=str(new), init=config), timeout=30
    ).path.info
    assert list(p2.deny_miners) == [4242] and list(p2.deny_types) == [UNSEALED]  # filters reported in StorageInfo
    old_id = next(p.info.id for p in worker.Paths(worker_pb2.PathsRequest(), timeout=10).paths if p.info.id != p2.id)

    ref = sector(1)
    piece, p1o = precommit(fleet, ref)
    p2out = fleet.stub().SealPreCommit2(
        manager_pb2.SealPreCommit2Request(sector=ref, pre_commit1_output=p1o), timeout=60
    )
    assert holders(index, 1, SEALED) == holders(index, 1, CACHE) == {old_id}

    # An operator moves sealed + cache to the other path by hand, then redeclares.
    for folder in ("sealed", "cache"):
        (new / folder).mkdir(exist_ok=True)
        os.rename(old / folder / NAME, new / folder / NAME)
    reply = worker.StorageRedeclareLocal(worker_pb2.StorageRedeclareLocalRequest(drop_missing=True), timeout=30)
    by_path = {p.storage_id: p for p in reply.paths}
    assert by_path[p2.id].declared == 2 and by_path[old_id].dropped == 2
    assert holders(index, 1, SEALED) == holders(index, 1, CACHE) == {p2.id}
    assert holders(index, 1, UNSEALED) == {old_id}
    c1 = fleet.stub().SealCommit1(
        manager_pb2.SealCommit1Request(
            sector=ref,
            ticket=TICKET,
            seed=SEED,
            pieces=[piece],
            comm_r=p2out.commitments.comm_r,
            comm_d=p2out.commitments.comm_d,
        ),
        timeout=60,
    )
    assert c1.commit1_output

    # Leftovers: a hand-made copy of the unsealed file, a stray file, the cache of a sector the
    # index knows nothing of but that a task holds a lock on.
    (new / "unsealed").mkdir(exist_ok=True)
    shutil.copyfile(old / "unsealed" / NAME, new / "unsealed" / NAME)
    (new / "unsealed" / "notes.txt").write_text("operator notes\n")
    (new / "cache" / f"s-t0{MINER}-7").mkdir()
    (new / "cache" / f"s-t0{MINER}-7" / "p_aux").write_bytes(b"x" * 64)
    lock = index.StorageTryLock(
        index_pb2.StorageTryLockRequest(
            sector=common_pb2.SectorId(miner=MINER, number=7), write_types=[CACHE], owner="test/task"
        ),
        timeout=10,
    )
    assert lock.acquired
    unsealed_size = (new / "unsealed" / NAME).stat().st_size

    def run(apply: bool) -> tuple[dict[str, worker_pb2.CleanupEntry], int]:
        got = worker.StorageCleanup(worker_pb2.StorageCleanupRequest(apply=apply), timeout=30)
        return {Path(e.path).relative_to(new).as_posix(): e for e in got.entries}, got.reclaimable_bytes

    dry, reclaimable = run(apply=False)
    assert sorted(dry) == ["cache/s-t01000-7", "unsealed/notes.txt", f"unsealed/{NAME}"]
    assert all(e.storage_id == p2.id for e in dry.values())
    assert dry[f"unsealed/{NAME}"].skipped == "" and dry[f"unsealed/{NAME}"].sector.number == 1
    assert "not a sector file name" in dry["unsealed/notes.txt"].skipped and not dry["unsealed/notes.txt"].HasField(
        "sector"
    )
    assert "locked by" in dry["cache/s-t01000-7"].skipped and dry["cache/s-t01000-7"].size == 64
    assert reclaimable == unsealed_size and not any(e.removed for e in dry.values())
    assert (new / "unsealed" / NAME).exists()

    applied, removed_bytes = run(apply=True)
    assert [k for k, e in applied.items() if e.removed] == [f"unsealed/{NAME}"] and removed_bytes == unsealed_size
    assert not (new / "unsealed" / NAME).exists()
    assert (new / "unsealed" / "notes.txt").exists() and (new / "cache" / f"s-t0{MINER}-7").exists()
    assert (old / "unsealed" / NAME).exists() and (new / "sealed" / NAME).exists() and (new / "cache" / NAME).is_dir()

    index.StorageUnlock(index_pb2.StorageUnlockRequest(lease_id=lock.lease.lease_id), timeout=10)
    final, _ = run(apply=True)
    assert final["cache/s-t01000-7"].removed and not (new / "cache" / f"s-t0{MINER}-7").exists()
    assert sorted(run(apply=False)[0]) == ["unsealed/notes.txt"]

    # The same through `sectorctl storage cleanup` (a real subprocess), by path and in both outputs.
    cli = [SECTORCTL, "--token", token(), "storage", "cleanup", "--worker", fleet.workers["a"].address]
    dry_json = subprocess.run([*cli, "--json", str(new)], capture_output=True, text=True, timeout=60, check=True)
    out = json.loads(dry_json.stdout)
    assert out["apply"] is False and [Path(e["path"]).name for e in out["entries"]] == ["notes.txt"]
    human = subprocess.run(cli, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "notes.txt" in human and "kept:" in human and "reclaimable with --apply" in human
    assert (new / "unsealed" / "notes.txt").exists()


def test_cleanup_of_leftover_downloads(start_service: StartService, tmp_path: Path) -> None:
    """A download a killed worker left in `fetching/` is removable once it has not been written
    for FETCH_STALE_S; a recent one (a fetch may be running) and one of a locked sector are kept,
    even when the sector's final file is declared on that path."""
    fleet = fleet_with_workers(start_service, tmp_path, {}, [WorkerSpec("a", cpus=2)])
    worker = worker_pb2_grpc.WorkerServiceStub(sync_channel(fleet.workers["a"].address, token()))
    index = index_stub(fleet.index)
    root = tmp_path / "store-a"
    ref = sector(1)
    precommit(fleet, ref)  # the cache of sector 1 is declared on this path
    fetching = root / "cache" / "fetching"
    fetching.mkdir(exist_ok=True)
    stale_cache = fetching / NAME  # a leftover of sector 1's cache, whose real cache is declared
    stale_cache.mkdir()
    (stale_cache / "p_aux").write_bytes(b"a" * 100)
    (root / "sealed" / "fetching").mkdir(exist_ok=True)
    stale_sealed = root / "sealed" / "fetching" / f"s-t0{MINER}-2"
    stale_sealed.write_bytes(b"s" * 2048)
    locked_one = root / "sealed" / "fetching" / f"s-t0{MINER}-3"
    locked_one.write_bytes(b"l" * 2048)
    fresh = root / "sealed" / "fetching" / f"s-t0{MINER}-4"
    fresh.write_bytes(b"f" * 2048)
    old = time.time() - 3600
    for p in (stale_cache, stale_sealed, locked_one):
        os.utime(p, (old, old))
    lock = index.StorageTryLock(
        index_pb2.StorageTryLockRequest(
            sector=common_pb2.SectorId(miner=MINER, number=3), write_types=[SEALED], owner="test/fetch"
        ),
        timeout=10,
    )
    assert lock.acquired

    got = worker.StorageCleanup(worker_pb2.StorageCleanupRequest(apply=True), timeout=30)
    entries = {Path(e.path).relative_to(root).as_posix(): e for e in got.entries}
    assert sorted(entries) == [
        f"cache/fetching/{NAME}",
        f"sealed/fetching/s-t0{MINER}-2",
        f"sealed/fetching/s-t0{MINER}-3",
        f"sealed/fetching/s-t0{MINER}-4",
    ]
    assert entries[f"cache/fetching/{NAME}"].removed and entries[f"sealed/fetching/s-t0{MINER}-2"].removed
    assert "locked by" in entries[f"sealed/fetching/s-t0{MINER}-3"].skipped
    assert "a fetch may be running" in entries[f"sealed/fetching/s-t0{MINER}-4"].skipped
    assert got.reclaimable_bytes == 100 + 2048
    assert not stale_cache.exists() and not stale_sealed.exists() and locked_one.exists() and fresh.exists()
    assert (root / "cache" / NAME).is_dir()  # the declared cache itself is untouched

    # A path whose sealed/ folder links out of it: what the link reaches is never removed.
    linked, outside = tmp_path / "linked", tmp_path / "outside"
    worker.StorageAttachLocal(
        worker_pb2.StorageAttachLocalRequest(path=str(linked), init=worker_pb2.StoragePathConfig(can_store=True)),
        timeout=30,
    )
    outside.mkdir()
    victim = outside / f"s-t0{MINER}-9"
    victim.write_bytes(b"v" * 2048)
    os.rmdir(linked / "sealed")
    os.symlink(outside, linked / "sealed")
    got = worker.StorageCleanup(worker_pb2.StorageCleanupRequest(apply=True), timeout=30)
    through_link = [e for e in got.entries if Path(e.path).name == victim.name]
    assert (
        len(through_link) == 1 and not through_link[0].removed and "outside its storage path" in through_link[0].skipped
    )
    assert victim.read_bytes() == b"v" * 2048
