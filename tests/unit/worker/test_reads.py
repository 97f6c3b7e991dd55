"""The worker's file streams (services/worker/reads.py), without a server: a range comes back
whole and in order across several double-buffered batches, the size rides on the first chunk
only, an empty range is one empty chunk, the serve hook counts every byte, the cache is refused,
and the file is closed when the consumer stops early."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from services.common import errors
from services.worker import reads
from services.worker.faults import ServeFault
from services.worker.local_store import LocalStore
from services.worker.paths import PathMeta, StorageList
from services.worker.sectors import FileType, SectorId

SECTOR = SectorId(1000, 3)
CHUNK = 4096


class Counting(ServeFault):
    def __init__(self) -> None:
        self.counted = 0

    def count(self, n: int) -> None:
        self.counted += n


def store_with_sealed(tmp_path: Path, data: bytes) -> LocalStore:
    store = LocalStore(StorageList(tmp_path / "storage.json"))
    path = store.attach(tmp_path / "p", PathMeta.for_new_path(can_seal=True))
    path.file(FileType.SEALED, SECTOR).write_bytes(data)
    return store


def collect(store: LocalStore, offset: int, length: int, fault: ServeFault) -> list[reads.Chunk]:
    async def run() -> list[reads.Chunk]:
        chunks = reads.file_chunks(store, SECTOR, FileType.SEALED, "", offset, length, CHUNK, fault)
        async with contextlib.aclosing(chunks):
            return [c async for c in chunks]

    return asyncio.run(run())


def test_a_range_comes_back_whole_over_several_batches(tmp_path: Path) -> None:
    data = os.urandom(CHUNK * reads.BATCH_CHUNKS * 3 + 123)
    store = store_with_sealed(tmp_path, data)
    fault = Counting()
    chunks = collect(store, 0, 0, fault)
    assert b"".join(c.data for c in chunks) == data
    assert [c.offset for c in chunks] == [i * CHUNK for i in range(len(chunks))]
    assert chunks[0].total == len(data) and all(c.total is None for c in chunks[1:])
    assert fault.counted == len(data)
    part = collect(store, 1000, 3 * CHUNK, Counting())
    assert b"".join(c.data for c in part) == data[1000 : 1000 + 3 * CHUNK] and part[0].offset == 0


def test_an_empty_range_is_one_empty_chunk_with_the_size(tmp_path: Path) -> None:
    store = store_with_sealed(tmp_path, b"")
    assert collect(store, 0, 0, Counting()) == [reads.Chunk(0, b"", 0, crc32c=0)]  # the CRC32C of nothing


def test_the_cache_is_refused_and_a_short_file_is_out_of_range(tmp_path: Path) -> None:
    store = store_with_sealed(tmp_path, b"x" * 100)

    async def first(file_type: FileType, offset: int, length: int) -> None:
        chunks = reads.file_chunks(store, SECTOR, file_type, "", offset, length, CHUNK, Counting())
        async with contextlib.aclosing(chunks):
            await anext(chunks)

    with pytest.raises(errors.FailedPrecondition, match="the cache is a directory"):
        asyncio.run(first(FileType.CACHE, 0, 0))
    with pytest.raises(errors.OutOfRange, match="beyond the file's 100 bytes"):
        asyncio.run(first(FileType.SEALED, 50, 100))


def test_the_file_is_closed_when_the_consumer_stops_early(tmp_path: Path) -> None:
    store = store_with_sealed(tmp_path, os.urandom(CHUNK * reads.BATCH_CHUNKS * 2))

    async def run() -> None:
        before = set(os.listdir("/proc/self/fd"))
        chunks = reads.file_chunks(store, SECTOR, FileType.SEALED, "", 0, 0, CHUNK, Counting())
        async with contextlib.aclosing(chunks):
            await anext(chunks)
            assert set(os.listdir("/proc/self/fd")) > before  # open while it streams
        assert set(os.listdir("/proc/self/fd")) <= before  # closed at once, not at loop shutdown

    asyncio.run(run())
