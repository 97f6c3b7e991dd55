"""Storage cleanup: files under a worker's paths that no sector declaration in the index owns.

Crashes between writing a file and declaring it, moves interrupted half way, copies made by hand
leave sector files the index does not know: nothing reads them and nothing frees their space.
This lists them (a dry run) or removes them (apply), with these guards:
- only entries of the sector file layout (`<type>/s-t0<miner>-<number>`) are candidates; any
  other name or a symlink is never touched (other names are listed, left alone);
- downloads a killed worker left in `<type>/fetching/` are candidates too (never declared by
  design), once nothing has written them for FETCH_STALE_S: a live fetch writes continuously,
  and it also holds the sector's lock in the index;
- files a running task is writing here (reserved space) and sectors holding a lease in the
  index are skipped;
- removing takes a write lock on the file in the index and asks the index again under it, so a
  task that declared the file in the meantime keeps it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat as stat_mod
import time
from dataclasses import dataclass
from pathlib import Path

from services.worker.index_client import IndexClient
from services.worker.local_store import LocalPath, LocalStore, remove_file_or_dir
from services.worker.paths import FETCHING, sector_folder_entries
from services.worker.sectors import FILE_TYPES, FileType, SectorId

log = logging.getLogger(__name__)
LOCK_OWNER = "storage-cleanup"
# A temporary download untouched this long is a leftover, not a fetch in progress.
FETCH_STALE_S = 600.0


@dataclass
class Orphan:
    storage_id: str
    path: Path
    sector: SectorId | None
    file_type: FileType
    size: int
    removed: bool = False
    skipped: str = ""
    # Under `<type>/fetching/`: a download's temporary name, never a declared copy.
    temporary: bool = False


def _size(target: Path) -> int:
    st = os.lstat(target)
    if not stat_mod.S_ISDIR(st.st_mode):
        return st.st_size
    total = 0
    for entry in os.scandir(target):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
    return total


def _candidate(
    path: LocalPath, t: FileType, target: Path, temporary: bool, now: float, real_root: str
) -> Orphan | None:
    """The entry as a cleanup candidate; None when it vanished meanwhile (a fetch renamed it into
    place, a task removed it). `real_root` is the path's root with every link resolved."""
    try:
        sector: SectorId | None = SectorId.parse_name(target.name)
    except ValueError:
        sector = None
    try:
        st = os.lstat(target)
        entry = Orphan(path.id, target, sector, t, _size(target), temporary=temporary)
    except FileNotFoundError:
        return None
    want_dir = t == FileType.CACHE
    # The folder the entry must really be in: a type folder (or its fetching/) that is a link
    # out of the storage path must never make cleanup delete files elsewhere.
    folder = os.path.join(real_root, t.dirname, *([FETCHING] if temporary else []))
    if os.path.dirname(os.path.realpath(target)) != folder:
        entry.skipped = "resolves outside its storage path (a linked folder?); left alone"
    elif sector is None:
        entry.skipped = "not a sector file name; left alone"
    elif not (stat_mod.S_ISDIR(st.st_mode) if want_dir else stat_mod.S_ISREG(st.st_mode)):
        entry.skipped = "not a regular " + ("directory" if want_dir else "file") + " (symlink?); left alone"
    elif temporary and now - st.st_mtime < FETCH_STALE_S:
        entry.skipped = f"a download written in the last {FETCH_STALE_S:.0f} s: a fetch may be running"
    return entry


def _on_disk(path: LocalPath) -> list[Orphan]:
    """Every entry of the path's sector folders and of their `fetching/` folders, as a candidate
    (sector None: not a sector name)."""
    now, real_root = time.time(), os.path.realpath(path.root)
    found = [
        _candidate(path, t, path.root / t.dirname / name, False, now, real_root)
        for t, name in sector_folder_entries(path.root)
    ]
    for t in FILE_TYPES:
        folder = path.root / t.dirname / FETCHING
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        # Dot-names there are trash (a discarded download, deleted in the background) or
        # temporaries, never downloads of a sector.
        found.extend(
            _candidate(path, t, folder / name, True, now, real_root) for name in names if not name.startswith(".")
        )
    return [entry for entry in found if entry is not None]


async def cleanup(local: LocalStore, index: IndexClient, storage_id: str, apply: bool) -> list[Orphan]:
    """Finds (and with apply removes) the undeclared entries of one local path or all of them."""
    paths = [local.get(storage_id)] if storage_id else list(local.paths.values())
    locked = await index.locked_sectors()
    found: list[Orphan] = []
    for path in paths:
        declared = await index.declared_on(path.id)
        writing = local.writing(path.id)
        for entry in await asyncio.to_thread(_on_disk, path):
            key = (entry.sector, entry.file_type)
            if entry.sector is not None and key in declared and not entry.temporary:
                continue
            if not entry.skipped and key in writing:
                entry.skipped = "a running task is writing it"
            if not entry.skipped and entry.sector in locked:
                entry.skipped = f"sector locked by {locked[entry.sector]}"
            if apply and not entry.skipped:
                await _remove(local, index, path, entry)
            found.append(entry)
    return found


async def _remove(local: LocalStore, index: IndexClient, path: LocalPath, entry: Orphan) -> None:
    assert entry.sector is not None
    lease = await index.try_lock(entry.sector, FileType(0), entry.file_type, LOCK_OWNER)
    if lease is None:
        entry.skipped = "sector locked"
        return
    try:
        if not entry.temporary and (entry.sector, entry.file_type) in await index.declared_on(path.id, entry.sector):
            entry.skipped = "declared meanwhile"
            return
        if (entry.sector, entry.file_type) in local.writing(path.id):
            entry.skipped = "a running task is writing it"
            return
        await asyncio.to_thread(remove_file_or_dir, entry.path)
        entry.removed = True
        log.info("cleanup removed an undeclared sector file", extra={"file": str(entry.path), "bytes": entry.size})
    finally:
        await index.unlock(lease)
