"""What the worker serves to peers: only sector files of known types, named by sector id, in its
attached paths. The file name is built here from the sector id (never taken from a request),
and a file is served only if it is a regular file (or, for the cache, a real directory of
regular files) whose resolved location is inside its storage path: a symlink planted in a
sector folder, or a sector folder that is itself a link elsewhere, is refused.

Blocking functions; the servicer runs them in threads.
"""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.common import errors
from services.worker.fsutil import allocated_bytes
from services.worker.local_store import LocalCopy, LocalStore, PathNotFound, resolves_inside
from services.worker.partialfile import PartialFile
from services.worker.sectors import FileType, SectorId
from services.worker.tarstream import TarEntry, plan_directory, tar_size


class NotServed(errors.NotFound):
    """NOT_FOUND: no such local file (or one that may not be served)."""


class WrongKind(Exception):
    """A file asked for as the wrong kind (a directory through ReadSectorFile, ...)."""


def _inside(copy: LocalCopy) -> bool:
    # LocalStore.find checks this already; checked again where bytes leave the worker.
    return resolves_inside(copy.path.root, copy.file)


def locate(local: LocalStore, sector: SectorId, file_type: FileType, storage_id: str) -> LocalCopy:
    try:
        copies = local.find(sector, file_type, storage_id)
    except PathNotFound as exc:
        raise NotServed(str(exc)) from None
    for copy in copies:
        if _inside(copy):
            return copy
    raise NotServed(
        f"no local {file_type.dirname} file of sector {sector}" + (f" in {storage_id}" if storage_id else "")
    )


def open_file(copy: LocalCopy) -> tuple[int, int]:
    """(fd, size) of a regular sector file, opened without following links."""
    fd = os.open(copy.file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat_mod.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotServed(f"{copy.file.name} is not a regular file")
    return fd, st.st_size


class OutOfRange(errors.OutOfRange):
    """OUT_OF_RANGE: a requested byte range reaches past the end of the file."""


def open_range(copy: LocalCopy, offset: int, length: int) -> tuple[int, int, int]:
    """(fd, file size, length) for reading [offset, offset + length) of a sector file; length 0
    means to the end. The fd is the caller's to close; nothing is left open on an error."""
    fd, size = open_file(copy)
    length = length or max(0, size - offset)
    if offset > size or offset + length > size:
        os.close(fd)
        raise OutOfRange(f"range [{offset}, {offset + length}) is beyond the file's {size} bytes")
    return fd, size, length


def read_chunks(fd: int, offset: int, length: int, chunk: int) -> Iterator[bytes]:
    end = offset + length
    while offset < end:
        data = os.pread(fd, min(chunk, end - offset), offset)
        if not data:
            raise OSError(f"file ended at {offset}, {end - offset} bytes early")
        yield data
        offset += len(data)


def read_all_chunks(fd: int, offset: int, length: int, chunk: int) -> list[bytes]:
    return list(read_chunks(fd, offset, length, chunk))


@dataclass(frozen=True)
class FileStat:
    storage_id: str
    is_dir: bool
    size: int
    allocated: int
    mtime: float
    entries: list[TarEntry]


def stat_file(copy: LocalCopy) -> FileStat:
    st = os.lstat(copy.file)
    if stat_mod.S_ISDIR(st.st_mode):
        entries = plan_directory(copy.file)
        return FileStat(
            copy.path.id, True, sum(e.size for e in entries), allocated_bytes(copy.file), st.st_mtime, entries
        )
    return FileStat(copy.path.id, False, st.st_size, st.st_blocks * 512, st.st_mtime, [])


def plan_dir(copy: LocalCopy, names: list[str]) -> tuple[list[TarEntry], int]:
    entries = plan_directory(copy.file, names or None)
    return entries, tar_size(entries)


def is_allocated(copy: LocalCopy, sector_size: int, offset: int, size: int) -> bool:
    with PartialFile.open(copy.file, sector_size, writable=False) as pf:
        return pf.has_allocated(offset, size)


def unsealed_with_range(
    local: LocalStore, sector: SectorId, sector_size: int, offset: int, size: int, storage_id: str
) -> Path:
    """The local unsealed file holding the whole unpadded range; NotServed if there is no local
    file, WrongKind if none holds the range."""
    try:
        copies = [c for c in local.find(sector, FileType.UNSEALED, storage_id) if _inside(c)]
    except PathNotFound as exc:
        raise NotServed(str(exc)) from None
    if not copies:
        raise NotServed(f"no local unsealed file of sector {sector}")
    for copy in copies:
        if is_allocated(copy, sector_size, offset, size):
            return copy.file
    raise WrongKind(f"the unsealed file of sector {sector} does not hold all of [{offset}, {offset + size})")
