"""File-system helpers the stores need: free space, the bytes files really occupy (sparse files
count by their allocated blocks, not their length), and punching holes to give blocks back.

Hole punching uses fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): the reference passes
PUNCH_HOLE alone, which Linux rejects with EOPNOTSUPP, and it swallowed that error, so no space
was ever freed. Here a file system that cannot punch holes is reported, not ignored.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


SYNC_FILE_RANGE_WRITE = 0x02
_sync_file_range = getattr(_libc, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    _sync_file_range.restype = ctypes.c_int


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Asks the kernel to start writing a range of dirty pages now (sync_file_range WRITE, which
    does not wait), so the fsync at the end of a large download has little left to do. A no-op
    where unavailable."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


class HolePunchUnsupported(OSError):
    """The file system cannot deallocate a range of a file."""


@dataclass(frozen=True)
class DiskStat:
    capacity: int
    fs_available: int


def statfs(path: Path) -> DiskStat:
    st = os.statvfs(path)
    return DiskStat(capacity=st.f_blocks * st.f_frsize, fs_available=st.f_bavail * st.f_frsize)


def allocated_bytes(path: Path, skip_prefix: str | None = None) -> int:
    """Bytes on disk of a file, or of every non-directory entry below a directory (st_blocks x
    512, so holes count nothing). Symlinks are not followed. A missing path is 0. With
    `skip_prefix`, entries below the directory whose names start with it are not counted."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(st.st_mode):
        return st.st_blocks * 512
    total = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        if skip_prefix:
            dirnames[:] = [d for d in dirnames if not d.startswith(skip_prefix)]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if skip_prefix and name.startswith(skip_prefix):
                continue
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Deallocates [offset, offset + length) of an open file, keeping its size; the range then
    reads as zeros. Raises HolePunchUnsupported where the file system cannot do it."""
    if length <= 0:
        return
    if _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise HolePunchUnsupported(err, "this file system cannot punch holes (fallocate PUNCH_HOLE)")
        raise OSError(err, f"fallocate(PUNCH_HOLE, {offset}, {length}): {os.strerror(err)}")


def preallocate(fd: int, length: int) -> None:
    """Reserves blocks for [0, length) (fallocate mode 0) so the sector's writes cannot run out of
    space half-way; file systems without it are tolerated (the space reservation still holds)."""
    if length <= 0:
        return
    if _fallocate(fd, 0, 0, length) != 0:
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOSYS):
            return
        raise OSError(err, f"fallocate(0, {length}): {os.strerror(err)}")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
