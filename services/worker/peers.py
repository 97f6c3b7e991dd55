"""Client side of file serving: download one sector file (or a range) or a cache directory from
a peer worker into a local temporary name, checking offsets and sizes as the bytes arrive.

A download either returns having written exactly the bytes the peer announced, or raises; the
caller owns the temporary name and deletes it on failure.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc

from services.common.client import aio_channel
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.worker.sectors import FileType, SectorId
from services.worker.tarstream import TarExtractor


class TransferError(Exception):
    """A peer sent something other than what it announced (bad offsets, short or long data)."""


class Peers:
    """gRPC channels to peer workers, one per target, with the fleet token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, target: str) -> worker_pb2_grpc.WorkerServiceAsyncStub:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = aio_channel(target, self.token)
        return worker_pb2_grpc.WorkerServiceStub(channel)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def download_file(
        self,
        target: str,
        sector: SectorId,
        file_type: FileType,
        storage_id: str,
        dest: Path,
        expect_size: int | None = None,
        sparse: bool = False,
        timeout: float | None = None,
    ) -> int:
        """Streams a whole file into `dest` (created); returns its size. With `sparse`, chunks
        of zeros are skipped (the file keeps its holes, as partial files have)."""
        call = self.stub(target).ReadSectorFile(
            worker_pb2.ReadSectorFileRequest(
                sector=sector.to_proto(),
                type=common_pb2.SectorFileType.ValueType(int(file_type)),
                storage_id=storage_id,
            ),
            timeout=timeout,
        )
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        received = 0
        size: int | None = None
        try:
            async for msg in call:
                if size is None:
                    if not msg.HasField("file_size"):
                        raise TransferError(f"{target}: first message carries no file_size")
                    size = msg.file_size
                    if expect_size is not None and size != expect_size:
                        raise TransferError(f"{target}: {file_type.dirname} file is {size} bytes, expected {expect_size}")
                data = msg.chunk.data
                if msg.chunk.offset != received:
                    raise TransferError(f"{target}: chunk at offset {msg.chunk.offset}, expected {received}")
                if received + len(data) > size:
                    raise TransferError(f"{target}: sent more than the announced {size} bytes")
                if data and not (sparse and data.count(0) == len(data)):
                    view = memoryview(data)
                    offset = received
                    while view:
                        n = os.pwrite(fd, view, offset)
                        view, offset = view[n:], offset + n
                received += len(data)
            if size is None or received != size:
                raise TransferError(f"{target}: stream ended after {received} of {size} bytes")
            os.ftruncate(fd, size)
            await asyncio.to_thread(os.fsync, fd)
            return size
        finally:
            os.close(fd)
            call.cancel()

    async def download_dir(
        self, target: str, sector: SectorId, storage_id: str, dest: Path, timeout: float | None = None
    ) -> int:
        """Streams a cache directory as tar into the (new, empty) directory `dest`; returns the
        archive size after checking it matches the announced one."""
        call = self.stub(target).ReadSectorDir(
            worker_pb2.ReadSectorDirRequest(
                sector=sector.to_proto(), type=common_pb2.SECTOR_FILE_TYPE_CACHE, storage_id=storage_id
            ),
            timeout=timeout,
        )
        extractor = TarExtractor(dest)
        received = 0
        size: int | None = None
        try:
            async for msg in call:
                if size is None:
                    if not msg.HasField("tar_size"):
                        raise TransferError(f"{target}: first message carries no tar_size")
                    size = msg.tar_size
                if msg.chunk.offset != received:
                    raise TransferError(f"{target}: chunk at offset {msg.chunk.offset}, expected {received}")
                received += len(msg.chunk.data)
                if received > size:
                    raise TransferError(f"{target}: sent more than the announced {size} bytes")
                extractor.feed(msg.chunk.data)
            if size is None or received != size:
                raise TransferError(f"{target}: archive ended after {received} of {size} bytes")
            extractor.finish()
            return size
        finally:
            extractor.close()
            call.cancel()

    async def remove(self, target: str, sector: SectorId, file_type: FileType, storage_id: str) -> None:
        await self.stub(target).RemoveSectorFile(
            worker_pb2.RemoveSectorFileRequest(
                sector=sector.to_proto(), type=common_pb2.SectorFileType.ValueType(int(file_type)), storage_id=storage_id
            ),
            timeout=30,
        )
