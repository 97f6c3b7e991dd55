"""Cache directories as tar streams, in both directions, without holding a file in memory.

The writer knows the archive's exact size before the first byte (a 512-byte ustar header, or a
pax header and a ustar header for a name over 100 bytes or a file of 8 GiB or more, then the
data padded to 512 per file, then two zero blocks; no record padding), so the receiver can
check it got everything. The reader accepts only what the writer produces: flat regular files
with plain names (a pax header may carry only `path` and `size`), so an archive from a hostile
peer cannot write outside the target directory.

A file whose name cannot travel (not UTF-8, or a name no receiving file system could hold) is
left out of a directory's listing and logged once, so the rest of the cache stays fetchable.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.worker.paths import is_trash

log = logging.getLogger(__name__)

BLOCK = 512
END = b"\0" * (2 * BLOCK)
# The longest file name (in UTF-8 bytes) sent or accepted: NAME_MAX of common file systems.
NAME_MAX = 255
# What fits in a plain ustar header; longer names and larger files get a pax header first.
USTAR_NAME_MAX = 100
USTAR_SIZE_LIMIT = 8**11
# A pax header holds at most a path and a size: anything bigger is not from our writer.
PAX_MAX = 4096


class TarError(ValueError):
    pass


def check_name(name: str) -> str:
    """A plain file name: no directory part, not `.`/`..`, no NUL, valid UTF-8, at most
    NAME_MAX bytes."""
    try:
        size = len(name.encode("utf-8", "strict"))
    except UnicodeEncodeError:
        raise TarError(f"{name!r} is not a UTF-8 file name") from None
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or size > NAME_MAX:
        raise TarError(f"{name!r} is not a plain file name")
    return name


@dataclass(frozen=True)
class TarEntry:
    name: str
    path: Path
    size: int
    mtime: int


# (directory, name, why) of entries left out of a listing, each logged once.
_reported: set[tuple[str, str, str]] = set()
_reported_lock = threading.Lock()


def _report_left_out(directory: Path, name: str, why: str) -> None:
    key = (str(directory), name, why)
    with _reported_lock:
        if key in _reported:
            return
        if len(_reported) >= 10_000:
            _reported.clear()
        _reported.add(key)
    log.warning(
        "a file in a cache directory cannot be sent and is left out; rename or remove it",
        extra={"directory": str(directory), "file": name, "reason": why},
    )


def _padding(size: int) -> int:
    return -size % BLOCK


def plan_directory(directory: Path, names: list[str] | None = None) -> list[TarEntry]:
    """The regular files of a directory (or the named subset), sorted by name. Symlinks,
    subdirectories and trash names (files being deleted in the background) are never included, nor (logged once) files whose name cannot travel; a
    requested name that is not a regular file there is FileNotFoundError."""
    entries = []
    wanted = None if not names else {check_name(n) for n in names}
    with os.scandir(directory) as it:
        for e in it:
            if wanted is not None and e.name not in wanted:
                continue
            if wanted is None and is_trash(e.name):
                continue  # a stopped step's file, being deleted: not part of the cache
            st = e.stat(follow_symlinks=False)
            if not stat_mod.S_ISREG(st.st_mode):
                continue
            try:
                check_name(e.name)
            except TarError as exc:
                _report_left_out(directory, e.name, str(exc))
                continue
            entries.append(TarEntry(e.name, Path(e.path), st.st_size, int(st.st_mtime)))
    if wanted is not None:
        missing = wanted - {e.name for e in entries}
        if missing:
            raise FileNotFoundError(f"not in {directory.name}: {', '.join(sorted(missing))}")
    return sorted(entries, key=lambda e: e.name)


def tar_size(entries: list[TarEntry]) -> int:
    return sum(len(header(e)) + e.size + _padding(e.size) for e in entries) + len(END)


def header(entry: TarEntry) -> bytes:
    """The entry's header: ustar when the name and size fit, else a pax header (carrying the
    full name and/or the size) and then the ustar header."""
    info = tarfile.TarInfo(entry.name)
    info.size = entry.size
    info.mtime = entry.mtime
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    fits = len(entry.name.encode()) <= USTAR_NAME_MAX and entry.size < USTAR_SIZE_LIMIT
    return info.tobuf(format=tarfile.USTAR_FORMAT if fits else tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def parse_pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header (`LEN key=value\\n` each); only `path` and `size`
    are accepted, as the writer produces nothing else."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise TarError("bad pax header record")
        end = pos + int(digits)
        if end > len(data) or end <= space + 1 or data[end - 1] != 0x0A:
            raise TarError("bad pax header record")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or key not in (b"path", b"size"):
            raise TarError(f"unsupported pax header field {key[:32]!r}")
        try:
            out[key.decode()] = value.decode("utf-8", "strict")
        except UnicodeDecodeError:
            raise TarError("pax header value is not UTF-8") from None
        pos = end
    if "size" in out and not out["size"].isdigit():
        raise TarError(f"bad pax size {out['size'][:32]!r}")
    return out


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
        # A pax header being read (its data, bytes still to come) and, once read, its fields
        # for the next file's header.
        self._pax_buf = bytearray()
        self._pax_remaining = 0
        self._pax: dict[str, str] | None = None
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
            if self._pax_remaining:
                take = min(self._pax_remaining, len(view))
                self._pax_buf += view[:take]
                view = view[take:]
                self._pax_remaining -= take
                if not self._pax_remaining:
                    self._pax = parse_pax(bytes(self._pax_buf))
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
                if self._pax is not None or self._pax_buf:
                    raise TarError("a pax header without a file")
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
        pax, self._pax = self._pax, None
        self._pax_buf.clear()
        if info.type == tarfile.XHDTYPE:
            if pax is not None:
                raise TarError("two pax headers in a row")
            if info.size > PAX_MAX:
                raise TarError(f"a pax header of {info.size} bytes (at most {PAX_MAX})")
            self._pax_remaining = info.size
            self._pad = _padding(info.size)
            if info.size == 0:
                self._pax = {}
            return
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise TarError(f"{info.name!r}: only regular files are accepted")
        name = check_name(pax.get("path", info.name) if pax else info.name)
        size = int(pax["size"]) if pax and "size" in pax else info.size
        if name in self.files:
            raise TarError(f"{name!r} appears twice")
        self.files.append(name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(self.directory / name, flags, 0o644)
        self._remaining = size
        self._pad = _padding(size)
        if size == 0:
            os.close(self._fd)
            self._fd = -1

    def finish(self) -> None:
        if self._fd >= 0 or self._remaining or self._pax_remaining or not self._ended:
            raise TarError("the archive ended early")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
