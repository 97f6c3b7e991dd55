"""Cache directories as ustar streams, in both directions, without holding a file in memory.

The writer knows the archive's exact size before the first byte (512-byte header + data padded
to 512 per file, then two zero blocks; no record padding), so the receiver can check it got
everything. The reader accepts only what the writer produces: flat regular files with plain
names, so an archive from a hostile peer cannot write outside the target directory.
"""

from __future__ import annotations

import os
import stat as stat_mod
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 512
END = b"\0" * (2 * BLOCK)


class TarError(ValueError):
    pass


def check_name(name: str) -> str:
    """A plain file name: no directory part, not `.`/`..`, no NUL, at most 100 bytes."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or len(name.encode()) > 100
    ):
        raise TarError(f"{name!r} is not a plain file name")
    return name


@dataclass(frozen=True)
class TarEntry:
    name: str
    path: Path
    size: int
    mtime: int


def _padding(size: int) -> int:
    return -size % BLOCK


def plan_directory(directory: Path, names: list[str] | None = None) -> list[TarEntry]:
    """The regular files of a directory (or the named subset), sorted by name. Symlinks and
    subdirectories are never included; a requested name that is not a regular file there is
    FileNotFoundError."""
    entries = []
    wanted = None if not names else {check_name(n) for n in names}
    with os.scandir(directory) as it:
        for e in it:
            if wanted is not None and e.name not in wanted:
                continue
            st = e.stat(follow_symlinks=False)
            if not stat_mod.S_ISREG(st.st_mode):
                continue
            check_name(e.name)
            entries.append(TarEntry(e.name, Path(e.path), st.st_size, int(st.st_mtime)))
    if wanted is not None:
        missing = wanted - {e.name for e in entries}
        if missing:
            raise FileNotFoundError(f"not in {directory.name}: {', '.join(sorted(missing))}")
    return sorted(entries, key=lambda e: e.name)


def tar_size(entries: list[TarEntry]) -> int:
    return sum(BLOCK + e.size + _padding(e.size) for e in entries) + len(END)


def header(entry: TarEntry) -> bytes:
    info = tarfile.TarInfo(entry.name)
    info.size = entry.size
    info.mtime = entry.mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def stream_tar(entries: list[TarEntry], chunk_size: int) -> Iterator[bytes]:
    """The archive as byte strings of at most chunk_size (blocking reads: run in a thread).
    A file whose size changed since planning fails the stream instead of corrupting it."""
    buf = bytearray()
    for entry in entries:
        buf += header(entry)
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            remaining = entry.size
            while remaining:
                if len(buf) >= chunk_size:
                    yield bytes(buf[:chunk_size])
                    del buf[:chunk_size]
                data = os.read(fd, min(remaining, chunk_size))
                if not data:
                    raise TarError(f"{entry.name} shrank while being sent")
                buf += data
                remaining -= len(data)
        finally:
            os.close(fd)
        buf += b"\0" * _padding(entry.size)
        while len(buf) >= chunk_size:
            yield bytes(buf[:chunk_size])
            del buf[:chunk_size]
    buf += END
    while buf:
        yield bytes(buf[:chunk_size])
        del buf[:chunk_size]


class TarExtractor:
    """Writes a streamed archive's files into `directory` (which must exist and be empty)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._buf = bytearray()
        self._fd = -1
        self._remaining = 0
        self._pad = 0
        self._ended = False
        self._zero_blocks = 0
        self.files: list[str] = []

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._ended:
                if any(view):
                    raise TarError("data after the end of the archive")
                return
            if self._fd >= 0:
                take = min(self._remaining, len(view))
                part = view[:take]
                while part:
                    part = part[os.write(self._fd, part) :]
                view = view[take:]
                self._remaining -= take
                if self._remaining == 0:
                    os.fsync(self._fd)
                    os.close(self._fd)
                    self._fd = -1
                continue
            if self._pad:
                take = min(self._pad, len(view))
                view = view[take:]
                self._pad -= take
                continue
            need = BLOCK - len(self._buf)
            self._buf += view[:need]
            view = view[need:]
            if len(self._buf) < BLOCK:
                return
            block = bytes(self._buf)
            self._buf.clear()
            if not any(block):
                self._zero_blocks += 1
                if self._zero_blocks == 2:
                    self._ended = True
                continue
            if self._zero_blocks:
                raise TarError("a zero block inside the archive")
            self._start_file(block)

    def _start_file(self, block: bytes) -> None:
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except tarfile.TarError as exc:
            raise TarError(f"bad tar header: {exc}") from None
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise TarError(f"{info.name!r}: only regular files are accepted")
        name = check_name(info.name)
        if name in self.files:
            raise TarError(f"{name!r} appears twice")
        self.files.append(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(self.directory / name, flags, 0o644)
        self._remaining = info.size
        self._pad = _padding(info.size)
        if info.size == 0:
            os.close(self._fd)
            self._fd = -1

    def finish(self) -> None:
        if self._fd >= 0 or self._remaining or not self._ended:
            raise TarError("the archive ended early")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
