"""The byte streams the worker serves (ReadSectorFile, ReadSectorDir, ReadPiece), as async
iterators of `Chunk`s: which local file the bytes come from (serving.py's checks), reading in
threads so the event loop keeps serving other calls, and the serve-fault hook counted after each
chunk is handed on. File and cache streams carry the CRC32C of all their bytes on their last
chunk, computed in the reading threads from what was read (the fetching worker recomputes it over
what it received: peers.py). The servicer only encodes the chunks; close an iterator with
`contextlib.aclosing` so its file and lock are released when the client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass

import rust_core
from services.common import errors
from services.worker import serving
from services.worker.faults import ServeFault
from services.worker.local_store import LocalStore
from services.worker.sealer import PAD_BLOCK
from services.worker.sectors import FileType, SectorId
from services.worker.tarstream import TarError, stream_tar
from services.worker.tasks import SectorRef, TaskEnv

# How many chunks one thread hop reads: a hop costs a GIL hand-over, so few large reads beat many
# small ones, while the next batch is read as this one is sent.
BATCH_CHUNKS = 8


@dataclass(frozen=True)
class Chunk:
    """Bytes at `offset` of the stream; `total` (the stream's length) on the first chunk of a
    file or directory stream only, `crc32c` (of the whole stream) on its last chunk only."""

    offset: int
    data: bytes
    total: int | None = None
    crc32c: int | None = None


def _flipped(data: bytes, at: int | None, offset: int) -> bytes:
    """`data` (at `offset` of its stream) with the byte at stream offset `at` inverted, if it
    holds it: the in-flight corruption of the test fault hook (ServeFault.flip_at)."""
    if at is None or not offset <= at < offset + len(data):
        return data
    out = bytearray(data)
    out[at - offset] ^= 0xFF
    return bytes(out)


def _read_batch(fd: int, offset: int, length: int, chunk: int, crc: int) -> tuple[list[bytes], int]:
    """A batch of chunks and the stream's CRC32C through them (continued from `crc`)."""
    datas = serving.read_all_chunks(fd, offset, length, chunk)
    for data in datas:
        crc = rust_core.crc32c(data, crc)
    return datas, crc


def _next_with_crc(chunks: Iterator[bytes], crc: int) -> tuple[bytes | None, int]:
    data = next(chunks, None)
    return data, crc if data is None else rust_core.crc32c(data, crc)


def _not_a_directory(file_type: FileType) -> None:
    if file_type == FileType.CACHE:
        raise errors.FailedPrecondition("the cache is a directory: use ReadSectorDir")


async def open_range(
    local: LocalStore, sector: SectorId, file_type: FileType, storage_id: str, offset: int, length: int
) -> tuple[int, int, int]:
    """(fd, file size, length) of [offset, offset + length) of a local sector file (length 0:
    to the end); the fd is the caller's to close. A directory (the cache) is refused."""
    _not_a_directory(file_type)
    copy = await asyncio.to_thread(serving.locate, local, sector, file_type, storage_id)
    return await asyncio.to_thread(serving.open_range, copy, offset, length)


async def file_chunks(
    local: LocalStore,
    sector: SectorId,
    file_type: FileType,
    storage_id: str,
    offset: int,
    length: int,
    chunk: int,
    fault: ServeFault,
) -> AsyncGenerator[Chunk, None]:
    """A range of a sector file, double-buffered: the next batch of chunks is read in a thread
    while this one is sent. An empty range is one empty chunk (it still carries the size, and
    the checksum of nothing)."""
    fd, size, length = await open_range(local, sector, file_type, storage_id, offset, length)
    pending: asyncio.Future[tuple[list[bytes], int]] | None = None
    flip = fault.flip_at(length)
    try:
        if length == 0:
            yield Chunk(0, b"", size, 0)
        batch = chunk * BATCH_CHUNKS

        def read(start: int, crc: int) -> asyncio.Future[tuple[list[bytes], int]]:
            # A batch is read (and checksummed, continuing the last one's CRC) once the one
            # before it is in: the chain needs no combining.
            want = min(length - start, batch)
            return asyncio.ensure_future(asyncio.to_thread(_read_batch, fd, offset + start, want, chunk, crc))

        pending = read(0, 0) if length else None
        sent = 0
        while pending is not None:
            datas, crc = await pending
            queued = sent + sum(len(d) for d in datas)
            pending = read(queued, crc) if queued < length else None
            for data in datas:
                last = sent + len(data) == length
                yield Chunk(sent, _flipped(data, flip, sent), size if sent == 0 else None, crc if last else None)
                sent += len(data)
                fault.count(len(data))
    finally:
        # A read may still be running in its thread: it must not see the fd closed.
        if pending is not None:
            with contextlib.suppress(BaseException):
                await pending
        os.close(fd)


async def dir_chunks(
    local: LocalStore, sector: SectorId, names: list[str], storage_id: str, chunk: int, fault: ServeFault
) -> AsyncGenerator[Chunk, None]:
    """The sector's cache directory (or the named files of it) as a tar stream."""
    copy = await asyncio.to_thread(serving.locate, local, sector, FileType.CACHE, storage_id)
    try:
        entries, total = await asyncio.to_thread(serving.plan_dir, copy, names)
    except (FileNotFoundError, TarError) as exc:
        raise serving.NotServed(str(exc)) from None
    chunks = stream_tar(entries, chunk)
    flip = fault.flip_at(total)
    sent = crc = 0
    while True:
        data, crc = await asyncio.to_thread(_next_with_crc, chunks, crc)
        if data is None:
            break
        last = sent + len(data) >= total
        yield Chunk(sent, _flipped(data, flip, sent), total if sent == 0 else None, crc if last else None)
        sent += len(data)
        fault.count(len(data))


async def piece_chunks(
    env: TaskEnv, sector: SectorRef, offset: int, size: int, storage_id: str
) -> AsyncGenerator[Chunk, None]:
    """The unpadded bytes of [offset, offset + size) of the sector's unsealed file, fr32-unpadded
    one block at a time, under a read lock on the file (so it is not rewritten or removed
    meanwhile). A local unsealed file that does not hold the whole range is FAILED_PRECONDITION:
    the caller unseals it first."""
    async with env.index.lock(sector.id, FileType.UNSEALED, FileType(0), "read-piece", env.lock_ttl_s):
        try:
            path = await asyncio.to_thread(
                serving.unsealed_with_range, env.local, sector.id, sector.size, offset, size, storage_id
            )
        except serving.WrongKind as exc:
            raise errors.FailedPrecondition(str(exc)) from None
        sent = 0
        while sent < size:
            n = min(PAD_BLOCK, size - sent)
            data = await asyncio.to_thread(rust_core.fr32_unpad_range, path, offset + sent, n)
            yield Chunk(sent, data)
            sent += n
