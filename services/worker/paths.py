"""On-disk layout of storage paths, as the reference keeps it so operators can move disks between
the two systems: each path has `sectorstore.json` (its id and settings) and the folders
`unsealed/`, `sealed/`, `cache/` holding `s-t0<miner>-<number>` (a file, a file, a directory);
downloads land in `<type>/fetching/` first. The worker's `storage.json` lists its paths.
"""

from __future__ import annotations

import json
import os
import stat as stat_mod
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common import errors
from services.worker.sectors import FILE_TYPES, TYPE_BY_NAME, FileType, SectorId

META_FILE = "sectorstore.json"
STORAGE_FILE = "storage.json"
FETCHING = "fetching"
DEFAULT_WEIGHT = 10
# The id of a path to initialise until LocalStore.attach gives it a fresh one.
PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"
# Files and folders being deleted in the background are first renamed to
# `<folder>/.trash.<name>.<pid>.<seq>` (rust_core.discard; rust_core.TRASH_PREFIX is the same).
# Dot-names: no scan declares them, no cleanup lists them, and a worker start removes leftovers.
TRASH_PREFIX = ".trash."


def is_trash(name: str) -> bool:
    return name.startswith(TRASH_PREFIX)


class MetaError(errors.FailedPrecondition, ValueError):
    """FAILED_PRECONDITION: a sectorstore.json or storage.json that cannot be used; the message
    names the file."""


def write_json_atomic(path: Path, value: Any) -> None:
    """Writes JSON so that a crash leaves either the old or the new file, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class PathMeta:
    """The contents of a path's `sectorstore.json` (the reference's keys, plus the later
    Lotus/Curio filters)."""

    id: str
    weight: int = DEFAULT_WEIGHT
    can_seal: bool = False
    can_store: bool = False
    max_storage: int = 0
    groups: tuple[str, ...] = ()
    allow_to: tuple[str, ...] = ()
    allow_types: FileType = FileType(0)
    deny_types: FileType = FileType(0)
    allow_miners: tuple[int, ...] = ()
    deny_miners: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        try:
            uuid.UUID(self.id)
        except ValueError:
            raise MetaError(f"path id {self.id!r} is not a UUID") from None
        if self.allow_types & self.deny_types:
            both = ", ".join(t.dirname for t in (self.allow_types & self.deny_types).singles())
            raise MetaError(f"file types both allowed and denied: {both}")
        if self.weight < 0 or self.max_storage < 0:
            raise MetaError("weight and max_storage must not be negative")

    @classmethod
    def for_new_path(cls, weight: int | None = None, **fields: Any) -> PathMeta:
        """The meta of a path an admin initialises: a placeholder id (LocalStore.attach replaces
        it with a fresh one) and the default weight unless the admin gave one."""
        return cls(id=PLACEHOLDER_ID, weight=DEFAULT_WEIGHT if weight is None else weight, **fields)

    def accepts(self, types: FileType, miner: int | None) -> str | None:
        """Why new files of `types` for `miner` may not go here, or None when they may."""
        for t in types.singles():
            if self.allow_types and not t & self.allow_types:
                return f"{t.dirname} not in allow_types"
            if t & self.deny_types:
                return f"{t.dirname} denied by deny_types"
        if miner is not None:
            if self.allow_miners and miner not in self.allow_miners:
                return f"miner {miner} not in allow_miners"
            if miner in self.deny_miners:
                return f"miner {miner} denied by deny_miners"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Weight": self.weight,
            "CanSeal": self.can_seal,
            "CanStore": self.can_store,
            "MaxStorage": self.max_storage,
            "Groups": list(self.groups),
            "AllowTo": list(self.allow_to),
            "AllowTypes": [t.dirname for t in self.allow_types.singles()],
            "DenyTypes": [t.dirname for t in self.deny_types.singles()],
            "AllowMiners": list(self.allow_miners),
            "DenyMiners": list(self.deny_miners),
        }

    @classmethod
    def from_json(cls, value: Any, source: Path) -> PathMeta:
        if not isinstance(value, dict) or "ID" not in value:
            raise MetaError(f"{source}: expected an object with at least an ID")

        def types(key: str) -> FileType:
            out = FileType(0)
            for name in value.get(key) or []:
                if name not in TYPE_BY_NAME:
                    raise MetaError(f"{source}: {key} has unknown file type {name!r}")
                out |= TYPE_BY_NAME[name]
            return out

        try:
            return cls(
                id=str(value["ID"]),
                weight=int(value.get("Weight", DEFAULT_WEIGHT)),
                can_seal=bool(value.get("CanSeal", False)),
                can_store=bool(value.get("CanStore", False)),
                max_storage=int(value.get("MaxStorage", 0)),
                groups=tuple(str(g) for g in value.get("Groups") or []),
                allow_to=tuple(str(g) for g in value.get("AllowTo") or []),
                allow_types=types("AllowTypes"),
                deny_types=types("DenyTypes"),
                allow_miners=tuple(int(m) for m in value.get("AllowMiners") or []),
                deny_miners=tuple(int(m) for m in value.get("DenyMiners") or []),
            )
        except (TypeError, ValueError) as exc:
            if isinstance(exc, MetaError):
                raise MetaError(f"{source}: {exc}") from None
            raise MetaError(f"{source}: {exc}") from None


def read_meta(root: Path) -> PathMeta:
    path = root / META_FILE
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as exc:
        raise MetaError(f"{path}: {exc}") from None
    return PathMeta.from_json(value, path)


def init_path(root: Path, meta: PathMeta) -> None:
    """Creates the directory, its type folders and `sectorstore.json`; FileExistsError when
    the path is already initialised (its id must never change under a running fleet)."""
    root.mkdir(parents=True, exist_ok=True)
    if (root / META_FILE).exists():
        raise FileExistsError(f"{root / META_FILE} already exists")
    ensure_layout(root)
    write_json_atomic(root / META_FILE, meta.to_json())


def ensure_layout(root: Path) -> None:
    for t in FILE_TYPES:
        (root / t.dirname).mkdir(mode=0o755, exist_ok=True)


def sector_path(root: Path, file_type: FileType, sector: SectorId) -> Path:
    return root / file_type.dirname / sector.name


def fetching_path(root: Path, file_type: FileType, sector: SectorId) -> Path:
    return root / file_type.dirname / FETCHING / sector.name


@dataclass(frozen=True)
class ScannedFile:
    sector: SectorId
    file_type: FileType


@dataclass(frozen=True)
class SkippedEntry:
    """Something in a sector folder that is not a sector file (or a type folder that could not
    be read): left alone, never declared."""

    path: Path
    reason: str


@dataclass
class PathScan:
    """What a scan found: the sector files, what it skipped, and whether every type folder
    could be read (when one could not, its files are unknown rather than gone)."""

    files: list[ScannedFile] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    complete: bool = True


def sector_folder_entries(root: Path) -> Iterator[tuple[FileType, str]]:
    """(file type, name) of every entry in a path's sector folders, in name order; `fetching/`
    and dot-files (temporaries, and the trash names of files being deleted) are not entries. A folder that is missing or not a folder has
    no entries."""
    for t in FILE_TYPES:
        try:
            names = sorted(os.listdir(root / t.dirname))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            if name != FETCHING and not name.startswith("."):
                yield t, name


def _entry_problem(folder: Path, file_type: FileType, name: str) -> str | None:
    """Why an entry of a sector folder is not a sector file of that folder's type, or None when
    it is one. Raises FileNotFoundError when it vanished meanwhile."""
    try:
        SectorId.parse_name(name)
    except ValueError:
        return "not a sector file name (s-t0<miner>-<number>, numbers below 2^63)"
    st = os.lstat(folder / name)
    if stat_mod.S_ISLNK(st.st_mode):
        return "a symlink, not a sector file"
    if file_type == FileType.CACHE:
        return None if stat_mod.S_ISDIR(st.st_mode) else "not a directory (a cache must be a directory)"
    if stat_mod.S_ISDIR(st.st_mode):
        return f"a directory where a {file_type.dirname} file is expected"
    return None if stat_mod.S_ISREG(st.st_mode) else "not a regular file"


def scan_path(root: Path) -> PathScan:
    """The sector files in a path. Anything else in a sector folder (a stray file someone put
    there, a name that is not a sector's, a directory where a file belongs, a symlink) is
    skipped and reported in `skipped`, never an error: one stray entry must not hide the
    path's real sectors from the index. A type folder that cannot be read is reported too
    and makes the scan incomplete; a missing one is simply empty."""
    scan = PathScan()
    real_root = os.path.realpath(root)
    for t in FILE_TYPES:
        folder = root / t.dirname
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            continue
        except OSError as exc:
            scan.skipped.append(SkippedEntry(folder, f"cannot list the {t.dirname} folder: {exc.strerror or exc}"))
            scan.complete = False
            continue
        if os.path.realpath(folder) != os.path.join(real_root, t.dirname):
            # The type folder is a link out of the path: its files are never served or used.
            scan.skipped.append(
                SkippedEntry(folder, "the folder is a link out of the storage path; its files are ignored")
            )
            continue
        for name in names:
            if name == FETCHING or name.startswith("."):
                continue
            try:
                problem = _entry_problem(folder, t, name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                problem = f"cannot stat it: {exc.strerror or exc}"
            if problem is None:
                scan.files.append(ScannedFile(SectorId.parse_name(name), t))
            else:
                scan.skipped.append(SkippedEntry(folder / name, problem))
    return scan


def trash_entries(root: Path) -> list[Path]:
    """The trash names (TRASH_PREFIX) in a path: in its type folders, their `fetching/` folders
    and its sector cache directories; what a process killed while deleting in the background
    left. A type folder that is a link out of the path is not looked into."""
    found: list[Path] = []
    real_root = os.path.realpath(root)

    def look(folder: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            return []
        found.extend(Path(e.path) for e in entries if is_trash(e.name))
        return entries

    for t in FILE_TYPES:
        folder = root / t.dirname
        if os.path.realpath(folder) != os.path.join(real_root, t.dirname):
            continue
        entries = look(folder)
        look(folder / FETCHING)
        if t == FileType.CACHE:
            for e in entries:
                if not e.name.startswith(".") and e.name != FETCHING and e.is_dir(follow_symlinks=False):
                    look(Path(e.path))
    return sorted(found)


@dataclass
class StorageList:
    """The worker's `storage.json`: `{"StoragePaths": [{"Path": ...}]}`."""

    file: Path
    paths: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, file: Path) -> StorageList:
        try:
            value = json.loads(file.read_text())
        except FileNotFoundError:
            return cls(file)
        except (OSError, json.JSONDecodeError) as exc:
            raise MetaError(f"{file}: {exc}") from None
        entries = value.get("StoragePaths") if isinstance(value, dict) else None
        if not isinstance(entries, list):
            raise MetaError(f'{file}: expected {{"StoragePaths": [{{"Path": ...}}]}}')
        return cls(file, [str(e["Path"]) for e in entries if isinstance(e, dict) and "Path" in e])

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.file, {"StoragePaths": [{"Path": p} for p in self.paths]})

    def add(self, path: str) -> None:
        if path not in self.paths:
            self.paths.append(path)
            self.save()

    def remove(self, path: str) -> None:
        if path in self.paths:
            self.paths.remove(path)
            self.save()
