"""The bulk transfer side channel, client side: receive the bytes an OpenTransfer ticket grants
into a new file (see bulk.py for the wire format). Blocking functions; callers run them in a
thread.

A receive either returns having written exactly the announced bytes (and fsynced them), or
raises TransferError (or ChecksumMismatch: a part whose server sent a CRC32C trailer is checked
against the bytes it wrote, read back from the page cache with rust_core.crc32c_file, so the
bytes still never pass through this process on the way in); the caller owns the destination
name and deletes it on failure. Only
ChannelUnreachable (the connection could not be made: channel behind a firewall, wrong
advertised address) means "use the gRPC stream instead": once bytes flow, a broken connection
is the source's failure, as it would be on the gRPC stream.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import rust_core
from services.common.config import parse_host_port
from services.worker.bulk import HEADER, IDLE_TIMEOUT_S, TRAILER
from services.worker.checksum import verify
from services.worker.fsutil import start_writeback

# Bytes received before each write: large writes, few system calls.
BUFFER_BYTES = 8 << 20
# Dirty bytes after which the kernel is asked to start writing them out (the final fsync is short).
WRITEBACK_BYTES = 32 << 20
CONNECT_TIMEOUT_S = 5.0
# The pipe between socket and file when splicing (1 MiB: the unprivileged maximum by default).
PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class ChannelUnreachable(Exception):
    """No connection to the side channel: fall back to the gRPC stream."""


class TransferError(Exception):
    """The side channel delivered something other than what OpenTransfer announced."""


class ChannelRefused(TransferError):
    """The side channel closed the connection before the first byte (the ticket was refused:
    expired or used, or the channel was full or flooded): nothing was written, and the gRPC
    stream is the fallback."""


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket:
    try:
        host, port = parse_host_port(address)
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, ValueError) as exc:
        raise ChannelUnreachable(f"side channel {address} unreachable: {exc}") from None
    sock.settimeout(IDLE_TIMEOUT_S)
    return sock


def _fill(sock: socket.socket, view: memoryview, want: int, received: int, length: int) -> int:
    filled = 0
    while filled < want:
        n = sock.recv_into(view[filled:want])
        if n == 0:
            raise TransferError(f"the side channel closed after {received + filled} of {length} bytes")
        filled += n
    return filled


def _handshake(sock: socket.socket, ticket: bytes, length: int) -> None:
    header = bytearray(HEADER.size)
    try:
        sock.sendall(ticket)
        _fill(sock, memoryview(header), HEADER.size, 0, HEADER.size)
    except (TransferError, ConnectionResetError, BrokenPipeError) as exc:
        # A close before the header, seen as an end of stream or (when the ticket reached a
        # socket already closed) as a reset: the same refusal either way.
        how = "" if isinstance(exc, TransferError) else f" ({exc.strerror or exc})"
        raise ChannelRefused(
            f"the side channel closed the connection unserved{how} (the ticket was refused: expired or used, "
            "or the channel was full)"
        ) from None
    except OSError as exc:
        raise ChannelRefused(f"side channel refused the connection: {exc}") from None
    (announced,) = HEADER.unpack(header)
    if announced != length:
        raise TransferError(f"the side channel announced {announced} bytes, OpenTransfer {length}")


class _Progress:
    """Bytes received so far, and the kernel asked to write them out every WRITEBACK_BYTES."""

    def __init__(self, fd: int, start: int = 0) -> None:
        self.fd = fd
        self.received = self.flushed = start

    def add(self, n: int) -> None:
        self.received += n
        if self.received - self.flushed >= WRITEBACK_BYTES:
            start_writeback(self.fd, self.flushed, self.received - self.flushed)
            self.flushed = self.received


def _splice(sock: socket.socket, fd: int, length: int, progress: _Progress) -> None:
    """Socket -> pipe -> file inside the kernel (no copy through this process). The socket is
    made blocking with a receive timeout, which splice honours."""
    sock.settimeout(None)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", int(IDLE_TIMEOUT_S), 0))
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_BYTES)
        while progress.received < length:
            try:
                n = os.splice(
                    sock.fileno(),
                    w,
                    min(PIPE_BYTES, length - progress.received),
                    flags=os.SPLICE_F_MOVE | os.SPLICE_F_MORE,
                )
            except OSError as exc:
                if exc.errno in NO_SPLICE:
                    raise _NoSplice from None
                raise
            if n == 0:
                raise TransferError(f"the side channel closed after {progress.received} of {length} bytes")
            left = n
            while left:
                at = progress.received + n - left
                try:
                    left -= os.splice(r, fd, left, offset_dst=at, flags=os.SPLICE_F_MOVE)
                except OSError as exc:
                    if exc.errno not in NO_SPLICE:
                        raise
                    # The file takes no splice: what the pipe holds goes in by write (those bytes
                    # have left the socket), the rest of the stream by _copy.
                    while left:
                        chunk = os.read(r, left)
                        _pwrite_all(fd, chunk, at)
                        at, left = at + len(chunk), left - len(chunk)
                    progress.add(n)
                    raise _NoSplice from None
            progress.add(n)
    finally:
        os.close(r)
        os.close(w)


class _NoSplice(Exception):
    """The socket or the file system cannot splice; the bytes so far are in the file."""


NO_SPLICE = (errno.EINVAL, errno.ENOSYS)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    part = memoryview(data)
    while part:
        written = os.pwrite(fd, part, offset)
        part, offset = part[written:], offset + written


def _copy(sock: socket.socket, fd: int, length: int, sparse: bool, progress: _Progress) -> None:
    """recv into a buffer, pwrite it; with `sparse`, all-zero blocks are not written."""
    buf = bytearray(min(BUFFER_BYTES, max(length, 1)))
    view = memoryview(buf)
    zeros = bytes(len(buf)) if sparse else b""
    while progress.received < length:
        n = _fill(sock, view, min(len(buf), length - progress.received), progress.received, length)
        if not (sparse and buf[:n] == zeros[:n]):
            _pwrite_all(fd, view[:n], progress.received)
        progress.add(n)


def receive(
    sock: socket.socket, ticket: bytes, dest: Path, length: int, sparse: bool = False, checksum: bool = False
) -> int:
    """Sends the ticket, receives `length` bytes into the new file `dest`, fsyncs it; returns
    the byte count. With `sparse`, all-zero blocks are not written (the file keeps its holes, as
    partial files have); otherwise the bytes are spliced (a file system that cannot take a
    splice gets them copied)."""
    return receive_parts([Part(sock, ticket, 0, length, checksum)], dest, length, sparse)


@dataclass
class Part:
    """One connection of a transfer: its socket, its ticket, the range of the file it carries,
    and whether the server ends it with a CRC32C trailer (OpenTransfer granted `checksum`)."""

    sock: socket.socket
    ticket: bytes
    offset: int
    length: int
    checksum: bool = False
    # The trailer's CRC32C, once received.
    sent_crc32c: int | None = None


def receive_parts(parts: list[Part], dest: Path, length: int, sparse: bool = False) -> int:
    """As receive, with the file's bytes split over several connections (each its own ticket
    and range; together they cover [0, length) exactly), received by one thread each into the
    one file: the receiving side's TCP work and page-cache copy are then spread over cores
    (docs/benchmarks.md, issue 20). Every ticket is sent and its header read before the file is
    created, so a refusal (ChannelRefused) leaves nothing. Once bytes flow, the first part that
    fails breaks every other connection and its error is raised; the file is then the caller's
    to delete, as with one connection."""
    if sorted((p.offset, p.offset + p.length) for p in parts) != _tiling(parts, length):
        raise ValueError(f"the parts do not cover the {length} bytes exactly once")
    for part in parts:
        _handshake(part.sock, part.ticket, part.length)
    # Read-write: each range is read back for its checksum.
    fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        if sparse:
            # Its full length at once (the holes read as zeros): each part's range can be read
            # back for its checksum as soon as it is in.
            os.ftruncate(fd, length)
        else:
            # All the file's extents at once rather than 1 MiB at a time as the pipe drains
            # (measured: 0.31 -> 0.28 s for 512 MiB); a full disk fails here, before any
            # byte moves. File systems without fallocate just skip it.
            try:
                os.posix_fallocate(fd, 0, length)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
        if len(parts) == 1:
            _receive_part(parts[0], fd, sparse)
        else:
            _receive_in_threads(parts, fd, sparse)
        os.ftruncate(fd, length)
        checked = [p for p in parts if p.checksum]
        if not checked:
            os.fsync(fd)
            return length
        # The read-back runs while fsync waits on the disk: it costs the fetch little more
        # than the fsync alone (docs/benchmarks.md, "Fetch checksum").
        syncing = _Background(os.fsync, fd)
        try:
            for part in checked:
                verify(
                    rust_core.crc32c_file(fd, part.offset, part.length),
                    part.sent_crc32c,
                    f"the side channel's range from {part.offset}",
                )
        finally:
            syncing.join()
        return length
    finally:
        os.close(fd)


class _Background:
    """A call in a thread, its exception re-raised by join()."""

    def __init__(self, fn: Callable[[int], None], arg: int) -> None:
        self._error: BaseException | None = None

        def run() -> None:
            try:
                fn(arg)
            except BaseException as exc:  # noqa: BLE001 - re-raised by join
                self._error = exc

        self._thread = threading.Thread(target=run, name="bulk-fsync", daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _tiling(parts: list[Part], length: int) -> list[tuple[int, int]]:
    """The ranges parts must have, sorted, to cover [0, length) exactly once."""
    ranges, at = [], 0
    for part in sorted(parts, key=lambda p: p.offset):
        ranges.append((at, at + part.length))
        at += part.length
    return ranges if at == length else []


def _receive_part(part: Part, fd: int, sparse: bool) -> None:
    end = part.offset + part.length
    progress = _Progress(fd, part.offset)
    try:
        if not sparse:
            with contextlib.suppress(_NoSplice):
                _splice(part.sock, fd, end, progress)
        if progress.received < end:
            _copy(part.sock, fd, end, sparse, progress)
        if part.checksum:
            _read_trailer(part)
    except OSError as exc:
        raise TransferError(
            f"side channel broken after {progress.received - part.offset} of {part.length} bytes"
            f" (range from {part.offset}): {exc}"
        ) from None


def _read_trailer(part: Part) -> None:
    """Reads the part's CRC32C trailer into `part.sent_crc32c` (compared by receive_parts with
    the range as written, read back from the page cache)."""
    trailer = bytearray(TRAILER.size)
    view = memoryview(trailer)
    filled = 0
    while filled < TRAILER.size:
        n = part.sock.recv_into(view[filled:])
        if n == 0:
            raise TransferError(
                f"the side channel closed before the checksum trailer (range from {part.offset}, {part.length} bytes)"
            )
        filled += n
    (part.sent_crc32c,) = TRAILER.unpack(trailer)


def _receive_in_threads(parts: list[Part], fd: int, sparse: bool) -> None:
    failures: list[BaseException] = []
    lock = threading.Lock()

    def run(part: Part) -> None:
        try:
            _receive_part(part, fd, sparse)
        except BaseException as exc:
            with lock:
                first = not failures
                failures.append(exc)
            if first:
                # The other connections would go on to their end (or their idle timeout):
                # break them, so the failure is over at once.
                for other in parts:
                    if other is not part:
                        with contextlib.suppress(OSError):
                            other.sock.shutdown(socket.SHUT_RDWR)

    threads = [threading.Thread(target=run, args=(part,), name="bulk-receive", daemon=True) for part in parts[1:]]
    for thread in threads:
        thread.start()
    run(parts[0])
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
