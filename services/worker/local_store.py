"""The worker's local storage paths: attach/detach, finding a sector's local files, choosing a
path for new files, space reservations, honest fs stats, removal and moves.

Reservations: a task that will write files reserves the space they will take (by the overhead
table) on the chosen path before it starts, and releases it when it ends. While reserved, the
part not yet on disk is subtracted from the path's available space, so two tasks never both
count on the same free bytes. With max_storage the cap is applied to used + reserved (the
reference subtracted reservations from the file-system free space only, so a capped path on a
big disk could be overcommitted).

Files a stopped task half-wrote are discarded (`discard`): renamed to a trash name at once and
deleted by a background thread. Their reservation is released at once; until the deletion is
done the file system still counts their bytes as used (so `available` is briefly lower, never
higher, than it will be), and they never count as a reserved file's progress on disk.

Every method that touches the disk is blocking; async callers run them in a thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat as stat_mod
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import rust_core
from services.common import errors
from services.worker.fsutil import allocated_bytes, fsync_dir, statfs
from services.worker.paths import (
    FETCHING,
    TRASH_PREFIX,
    PathMeta,
    SkippedEntry,
    StorageList,
    ensure_layout,
    fetching_path,
    init_path,
    read_meta,
    scan_path,
    sector_path,
    trash_entries,
)
from services.worker.sectors import FileType, PathType, SectorId, space_needed

log = logging.getLogger(__name__)


class StoreError(Exception):
    """Base of the local store's errors; the message says what to fix."""


class PathNotFound(StoreError, errors.NotFound):
    pass


class PathExists(StoreError, errors.AlreadyExists):
    pass


class PathBusy(StoreError, errors.FailedPrecondition):
    pass


class NoSpace(StoreError):
    """No local path can take the files (reference error code 102, ALLOCATE_SPACE)."""


@dataclass(frozen=True)
class FsStat:
    capacity: int
    available: int
    fs_available: int
    reserved: int
    max: int
    used: int


@dataclass
class LocalPath:
    root: Path
    meta: PathMeta

    @property
    def id(self) -> str:
        return self.meta.id

    def file(self, file_type: FileType, sector: SectorId) -> Path:
        return sector_path(self.root, file_type, sector)

    def can(self, path_type: PathType) -> bool:
        return self.meta.can_seal if path_type == PathType.SEALING else self.meta.can_store


@dataclass
class _Held:
    """One reserved file: `need` bytes for (sector, type) on a path."""

    path_id: str
    sector: SectorId
    file_type: FileType
    need: int


@dataclass
class Reservation:
    """Space held for some files until release(); releasing twice is harmless."""

    store: LocalStore
    held: list[_Held] = field(default_factory=list)

    def release(self) -> None:
        if self.held:
            self.store._release(self.held)
            self.held = []


@dataclass(frozen=True)
class LocalCopy:
    path: LocalPath
    file: Path


class LocalStore:
    def __init__(self, storage_list: StorageList) -> None:
        self.storage_list = storage_list
        self.paths: dict[str, LocalPath] = {}
        self._lock = threading.RLock()
        self._held: list[_Held] = []
        # Paths in use by running tasks: id -> count (detach refuses busy paths unless forced).
        self._users: dict[str, int] = {}
        # Per path: the entries its last scan skipped (each is logged when first seen).
        self._skipped_seen: dict[str, set[tuple[str, str]]] = {}

    # --- paths -------------------------------------------------------------------------------

    def open_configured(self) -> list[LocalPath]:
        """Opens every path in storage.json. A path that cannot be opened is logged and skipped
        (a missing disk must not stop the worker serving the others)."""
        opened = []
        for entry in self.storage_list.paths:
            root = Path(entry)
            try:
                meta = read_meta(root)
                ensure_layout(root)
            except (OSError, ValueError) as exc:
                log.error("cannot open storage path; skipping it", extra={"path": entry, "error": str(exc)})
                continue
            if meta.id in self.paths:
                log.error("storage path id used twice; skipping", extra={"path": entry, "storage_id": meta.id})
                continue
            self.paths[meta.id] = LocalPath(root, meta)
            opened.append(self.paths[meta.id])
            sweep_trash(self.paths[meta.id])
        return opened

    def attach(self, root: Path, init: PathMeta | None) -> LocalPath:
        """Opens (with `init`: creates) a path and adds it to storage.json. The id in `init` is
        replaced by a fresh one."""
        if not root.is_absolute():
            raise ValueError(f"storage path {root} is not absolute")
        with self._lock:
            for p in self.paths.values():
                if p.root == root:
                    raise PathExists(f"{root} is already attached (id {p.id})")
            if init is not None:
                meta = PathMeta(**{**init.__dict__, "id": str(uuid.uuid4())})
                try:
                    init_path(root, meta)
                except FileExistsError:
                    raise PathExists(f"{root} already holds a sectorstore.json; attach it without init") from None
            else:
                try:
                    meta = read_meta(root)
                except FileNotFoundError:
                    raise PathNotFound(f"{root} has no sectorstore.json; initialise it (init) first") from None
                ensure_layout(root)
            if meta.id in self.paths:
                raise PathExists(f"a path with id {meta.id} is already attached ({self.paths[meta.id].root})")
            local = LocalPath(root, meta)
            sweep_trash(local)
            self.paths[meta.id] = local
            self.storage_list.add(str(root))
            return local

    def detach(self, storage_id: str, force: bool) -> LocalPath:
        with self._lock:
            path = self.get(storage_id)
            if not force and (self._users.get(storage_id) or any(h.path_id == storage_id for h in self._held)):
                raise PathBusy(f"running tasks use path {storage_id}; detach with force to do it anyway")
            del self.paths[storage_id]
            self._skipped_seen.pop(storage_id, None)
            self.storage_list.remove(str(path.root))
            return path

    def get(self, storage_id: str) -> LocalPath:
        try:
            return self.paths[storage_id]
        except KeyError:
            raise PathNotFound(f"{storage_id!r} is not a local storage path of this worker") from None

    def by_root(self, root: str) -> LocalPath:
        for p in self.paths.values():
            if str(p.root) == root:
                return p
        raise PathNotFound(f"{root!r} is not a local storage path of this worker")

    @contextmanager
    def using(self, path_ids: list[str]) -> Iterator[None]:
        with self._lock:
            for pid in path_ids:
                self._users[pid] = self._users.get(pid, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                for pid in path_ids:
                    self._users[pid] -= 1
                    if not self._users[pid]:
                        del self._users[pid]

    # --- stat and reservations ---------------------------------------------------------------

    def stat(self, storage_id: str) -> FsStat:
        with self._lock:
            path = self.get(storage_id)
            return self._stat(path)

    def _stat(self, path: LocalPath) -> FsStat:
        disk = statfs(path.root)
        reserved = 0
        for h in self._held:
            if h.path_id != path.id:
                continue
            # Trash in a cache directory (a stopped PC2's files, being deleted) is no progress.
            on_disk = allocated_bytes(path.file(h.file_type, h.sector), skip_prefix=TRASH_PREFIX)
            if not on_disk:
                on_disk = allocated_bytes(fetching_path(path.root, h.file_type, h.sector), skip_prefix=TRASH_PREFIX)
            reserved += max(0, h.need - on_disk)
        available = max(0, disk.fs_available - reserved)
        used = 0
        if path.meta.max_storage > 0:
            used = allocated_bytes(path.root)
            available = min(available, max(0, path.meta.max_storage - used - reserved))
        return FsStat(
            capacity=disk.capacity,
            available=available,
            fs_available=disk.fs_available,
            reserved=reserved,
            max=path.meta.max_storage,
            used=used,
        )

    def reserve(
        self, sector: SectorId, sector_size: int, path_type: PathType, targets: dict[FileType, LocalPath]
    ) -> Reservation:
        """Reserves the space each file will take on its chosen path, all or nothing."""
        with self._lock:
            need_by_path: dict[str, int] = {}
            held = []
            for t, path in targets.items():
                need = space_needed(t, sector_size, path_type)
                held.append(_Held(path.id, sector, t, need))
                need_by_path[path.id] = need_by_path.get(path.id, 0) + need
            for pid, need in need_by_path.items():
                st = self._stat(self.get(pid))
                if st.available < need:
                    raise NoSpace(
                        f"can't reserve {need} bytes in {self.get(pid).root} (id {pid}): only {st.available} available"
                    )
            self._held.extend(held)
            return Reservation(self, held)

    def _release(self, held: list[_Held]) -> None:
        with self._lock:
            for h in held:
                self._held.remove(h)

    def allocate(
        self, sector: SectorId, types: FileType, sector_size: int, path_type: PathType
    ) -> tuple[dict[FileType, LocalPath], Reservation]:
        """Chooses a local path for each new file and reserves its space, atomically: the best
        path (available x weight, as the index's BestAlloc orders) among those that can take the
        file for this purpose, have room, and whose filters allow the type and miner."""
        with self._lock:
            chosen: dict[FileType, LocalPath] = {}
            reasons: list[str] = []
            pending: dict[str, int] = {}
            for t in types.singles():
                need = space_needed(t, sector_size, path_type)
                best: tuple[int, str, LocalPath] | None = None
                for path in self.paths.values():
                    why = None
                    if not path.can(path_type):
                        why = f"not can_{'seal' if path_type == PathType.SEALING else 'store'}"
                    elif path.meta.weight == 0:
                        why = "weight 0 (read-only)"
                    else:
                        why = path.meta.accepts(t, sector.miner)
                    if why is None:
                        available = self._stat(path).available - pending.get(path.id, 0)
                        if available < need:
                            why = f"needs {need} bytes, {available} available"
                        else:
                            key = (available * path.meta.weight, path.id, path)
                            if best is None or key[:2] > best[:2]:
                                best = key
                    if why:
                        reasons.append(f"{path.root}: {why}")
                if best is None:
                    detail = "; ".join(reasons) or "no local storage paths attached"
                    raise NoSpace(f"no local path can take the {t.dirname} file of sector {sector} ({detail})")
                chosen[t] = best[2]
                pending[best[2].id] = pending.get(best[2].id, 0) + need
            return chosen, self.reserve(sector, sector_size, path_type, chosen)

    # --- finding, removing, moving ----------------------------------------------------------

    def find(self, sector: SectorId, file_type: FileType, storage_id: str = "") -> list[LocalCopy]:
        """Local copies of one file, best first (can_store paths, then higher weight). Only
        real files/directories count: a symlink in a sector folder is never served or used."""
        paths = [self.get(storage_id)] if storage_id else list(self.paths.values())
        copies = []
        for path in paths:
            f = path.file(file_type, sector)
            try:
                st = os.lstat(f)
            except FileNotFoundError:
                continue
            want_dir = file_type == FileType.CACHE
            if not (stat_mod.S_ISDIR(st.st_mode) if want_dir else stat_mod.S_ISREG(st.st_mode)):
                log.warning("ignoring a sector file of the wrong kind (symlink?)", extra={"file": str(f)})
            elif not resolves_inside(path.root, f):
                # The type folder (or the root's own layout) leads elsewhere: a copy found there
                # would be served, used or deleted outside the attached path.
                log.warning("ignoring a sector file outside its storage path (linked folder?)", extra={"file": str(f)})
            else:
                copies.append(LocalCopy(path, f))
        copies.sort(key=lambda c: (not c.path.meta.can_store, -c.path.meta.weight, c.path.id))
        return copies

    def remove(self, sector: SectorId, file_type: FileType, storage_id: str = "") -> list[LocalPath]:
        """Deletes local copies; returns the paths they were in."""
        removed = []
        for copy in self.find(sector, file_type, storage_id):
            remove_file_or_dir(copy.file)
            removed.append(copy.path)
        return removed

    def writing(self, storage_id: str) -> set[tuple[SectorId, FileType]]:
        """Files running tasks reserved space for in a path (they are being written)."""
        with self._lock:
            return {(h.sector, h.file_type) for h in self._held if h.path_id == storage_id}

    def scan(self, storage_id: str) -> tuple[list[tuple[SectorId, FileType]], bool]:
        """The finished sector files in a path, and whether the scan could read every type
        folder. Files a running task is still writing (those it reserved space for) are left
        out, so a rescan never declares half-written files. What is not a sector file is
        skipped and logged once (not on every heartbeat's rescan) until it goes away."""
        path = self.get(storage_id)
        writing = self.writing(storage_id)
        scan = scan_path(path.root)
        self._report_skipped(path, scan.skipped)
        return [(f.sector, f.file_type) for f in scan.files if (f.sector, f.file_type) not in writing], scan.complete

    def _report_skipped(self, path: LocalPath, skipped: list[SkippedEntry]) -> None:
        current = {(str(e.path), e.reason) for e in skipped}
        with self._lock:
            seen = self._skipped_seen.get(path.id, set())
            self._skipped_seen[path.id] = current
        for entry in skipped:
            if (str(entry.path), entry.reason) not in seen:
                log.warning(
                    "storage scan skipped an entry that is not a sector file; move it out of the sector folders",
                    extra={"storage_id": path.id, "file": str(entry.path), "reason": entry.reason},
                )


def resolves_inside(root: Path, file: Path) -> bool:
    """Whether `file` (ROOT/<type folder>/<name>) really is in that folder of `root` once every
    link is resolved: false when the type folder is a link out of the storage path."""
    real_root = os.path.realpath(root)
    return os.path.dirname(os.path.realpath(file)) == os.path.join(real_root, file.parent.name)


def discard(target: Path) -> bool:
    """Removes a file or directory without waiting for the deletion: rust_core renames it to a
    trash name in its folder (TRASH_PREFIX; atomic, metadata only) and a background thread
    deletes it. For the stop path of a task: unlinking files the kernel is still writing back
    waits for that writeback (seconds for a just-written 1 GiB tree on a slow disk). Not
    fsync'd: a crash can bring the half-written file back under its name, as a crash while it
    was being written would have left it. False when there was nothing there."""
    return rust_core.discard(target)


def sweep_trash(path: LocalPath) -> int:
    """Hands the trash a killed process left in a path to the background deletion (at start-up
    and attach); returns how many entries."""
    found = trash_entries(path.root)
    for entry in found:
        try:
            rust_core.discard(entry)
        except OSError as exc:
            log.warning("cannot remove a leftover trash entry", extra={"file": str(entry), "error": str(exc)})
    if found:
        log.info("removing leftover trash in the background", extra={"storage_id": path.id, "entries": len(found)})
    return len(found)


def remove_file_or_dir(target: Path) -> None:
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat_mod.S_ISDIR(st.st_mode):
        shutil.rmtree(target)
    else:
        target.unlink()
    fsync_dir(target.parent)


def move_into_place(src: Path, dst: Path) -> None:
    """Moves a file or directory to dst (whose parent exists): a rename on the same file system,
    else a copy to a temporary name in the destination's `fetching/` and a rename, so dst appears
    complete or not at all; the source is removed last."""
    if dst.exists():
        remove_file_or_dir(dst)
    try:
        os.rename(src, dst)
        fsync_dir(dst.parent)
        return
    except OSError as exc:
        if exc.errno != 18:  # EXDEV: another file system
            raise
    tmp = dst.parent / FETCHING / dst.name
    tmp.parent.mkdir(exist_ok=True)
    remove_file_or_dir(tmp)
    if src.is_dir():
        shutil.copytree(src, tmp, symlinks=True)
    else:
        shutil.copy2(src, tmp)
    os.rename(tmp, dst)
    fsync_dir(dst.parent)
    remove_file_or_dir(src)
