"""Partial (unsealed) sector files in the reference's format, so files move between the systems.

Layout: `[sector-size bytes of fr32-padded data][RLE+ set of allocated padded bytes][u32 LE
length of that set]`. Bit i set = padded byte i holds data. An empty 2 KiB file is 2048 + 0 + 4
bytes; a full one 2048 + 3 + 4.

Writing a piece marks its padded range allocated; freeing punches a hole (the blocks go back to
the file system) and clears the range. Unlike the reference the handle's view of the set follows
every change (the reference re-read it only at open), and the trailer is fsynced before a range
counts as allocated.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

from services.worker import rleplus
from services.worker.fsutil import preallocate, punch_hole
from services.worker.sectors import padded

log = logging.getLogger(__name__)
_LEN = struct.Struct("<I")
MAX_TRAILER = 1 << 20


class PartialFileError(ValueError):
    """The file is not a valid partial file of this sector size."""


class PartialFile:
    """An open partial file. Offsets and sizes are padded bytes unless a method says otherwise."""

    def __init__(self, path: Path, fd: int, sector_size: int, runs: rleplus.Runs) -> None:
        self.path = path
        self.fd = fd
        self.sector_size = sector_size
        self._runs = runs

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, sector_size: int) -> PartialFile:
        """A new empty partial file; the data area is preallocated, as the reference does, so
        that the pieces written later cannot hit a full disk."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            preallocate(fd, sector_size)
            f = cls(path, fd, sector_size, [])
            f._write_trailer()
            return f
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def open(cls, path: Path, sector_size: int, *, writable: bool = True) -> PartialFile:
        flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags)
        try:
            return cls(path, fd, sector_size, cls._read_trailer(fd, path, sector_size))
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _read_trailer(fd: int, path: Path, sector_size: int) -> rleplus.Runs:
        size = os.fstat(fd).st_size
        if size < sector_size + _LEN.size:
            raise PartialFileError(f"{path}: {size} bytes, shorter than a {sector_size}-byte sector plus its trailer")
        (length,) = _LEN.unpack(os.pread(fd, _LEN.size, size - _LEN.size))
        if size != sector_size + length + _LEN.size:
            raise PartialFileError(
                f"{path}: size {size} does not match sector size {sector_size} + trailer {length} + 4"
            )
        if length > MAX_TRAILER:
            log.warning("large partial-file trailer", extra={"path": str(path), "trailer_bytes": length})
        raw = os.pread(fd, length, sector_size)
        try:
            runs = rleplus.decode(raw, max_bits=sector_size)
        except rleplus.RlePlusError as exc:
            raise PartialFileError(f"{path}: bad trailer: {exc}") from None
        return runs

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PartialFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the allocation set -----------------------------------------------------------------

    def allocated(self) -> rleplus.Runs:
        """The allocated padded ranges [start, end), sorted."""
        return list(self._runs)

    def has_allocated_padded(self, offset: int, size: int) -> bool:
        return rleplus.intersect_len(self._runs, offset, offset + size) == size

    def has_allocated(self, unpadded_offset: int, unpadded_size: int) -> bool:
        """Whether the whole unpadded range (offsets multiples of 127) holds data."""
        return self.has_allocated_padded(padded(unpadded_offset), padded(unpadded_size))

    def _check(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.sector_size:
            raise PartialFileError(f"range [{offset}, {offset + size}) outside the {self.sector_size}-byte sector")

    def mark_allocated(self, offset: int, size: int) -> None:
        """Records [offset, offset+size) as holding data. The data must already be written: the
        data is fsynced before the trailer so a crash never marks unwritten bytes."""
        self._check(offset, size)
        os.fsync(self.fd)
        self._runs = rleplus.normalize(self._runs + [(offset, offset + size)])
        self._write_trailer()

    def free(self, offset: int, size: int) -> None:
        """Deallocates a range: the trailer first (so a crash never claims freed bytes), then
        the hole. Raises HolePunchUnsupported where the file system cannot punch holes."""
        self._check(offset, size)
        self._runs = rleplus.subtract(self._runs, offset, offset + size)
        self._write_trailer()
        punch_hole(self.fd, offset, size)

    def _write_trailer(self) -> None:
        raw = rleplus.encode(self._runs)
        os.pwrite(self.fd, raw + _LEN.pack(len(raw)), self.sector_size)
        os.ftruncate(self.fd, self.sector_size + len(raw) + _LEN.size)
        os.fsync(self.fd)

    # --- data -------------------------------------------------------------------------------

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._check(offset, len(data))
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view = view[written:]
            offset += written

    def read_at(self, offset: int, size: int) -> bytes:
        self._check(offset, size)
        return os.pread(self.fd, size, offset)
