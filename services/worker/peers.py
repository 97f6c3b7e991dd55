"""Client side of file serving: download one sector file (or a range) or a cache directory from
a peer worker into a local temporary name, checking offsets and sizes as the bytes arrive.

A download either returns having written exactly the bytes the peer announced, or raises; the
caller owns the temporary name and deletes it on failure.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from typing import Any

import grpc
from google.protobuf.message import Message

from services.common.client import aio_channel
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.worker.fsutil import start_writeback
from services.worker.sectors import FileType, SectorId
from services.worker.tarstream import TarExtractor
from services.worker.wire import ChunkResponse, WireError, decode_chunk_response


SERVICE_NAME = "sectorstorage.v1.WorkerService"
# Dirty bytes after which a download asks the kernel to start writing them out.
WRITEBACK_BYTES = 32 << 20


class TransferError(Exception):
    """A peer sent something other than what it announced (bad offsets, short or long data)."""


def _decode(target: str, raw: bytes) -> ChunkResponse:
    try:
        return decode_chunk_response(raw)
    except WireError as exc:
        raise TransferError(f"{target}: malformed message: {exc}") from None


_ZEROS: dict[int, bytes] = {}


def _is_zero(data: memoryview) -> bool:
    zeros = _ZEROS.get(len(data))
    if zeros is None:
        zeros = bytes(len(data))
        if len(_ZEROS) < 8:
            _ZEROS[len(data)] = zeros
    return data.tobytes() == zeros


class Peers:
    """gRPC channels to peer workers, one per target, with the fleet token. The two file streams
    are read as raw bytes and parsed by wire.py (one copy less per chunk than the generated
    classes; the bytes on the wire are the same)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, target: str) -> grpc.aio.Channel:
        channel = self._channels.get(target)
        if channel is None:
            channel = self._channels[target] = aio_channel(target, self.token)
        return channel

    def stub(self, target: str) -> worker_pb2_grpc.WorkerServiceAsyncStub:
        return worker_pb2_grpc.WorkerServiceStub(self._channel(target))

    def _raw_stream(self, target: str, method: str, request: Message, timeout: float | None) -> Any:
        call: Any = self._channel(target).unary_stream(
            f"/{SERVICE_NAME}/{method}", request_serializer=type(request).SerializeToString, response_deserializer=None
        )
        return call(request, timeout=timeout)

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
        request = worker_pb2.ReadSectorFileRequest(
            sector=sector.to_proto(), type=common_pb2.SectorFileType.ValueType(int(file_type)), storage_id=storage_id
        )
        call = self._raw_stream(target, "ReadSectorFile", request, timeout)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        received = flushed = 0
        size: int | None = None
        try:
            async for raw in call:
                msg = _decode(target, raw)
                if size is None:
                    if msg.size is None:
                        raise TransferError(f"{target}: first message carries no file_size")
                    size = msg.size
                    if expect_size is not None and size != expect_size:
                        raise TransferError(f"{target}: {file_type.dirname} file is {size} bytes, expected {expect_size}")
                data = msg.data
                if msg.offset != received:
                    raise TransferError(f"{target}: chunk at offset {msg.offset}, expected {received}")
                if received + len(data) > size:
                    raise TransferError(f"{target}: sent more than the announced {size} bytes")
                if data and not (sparse and _is_zero(data)):
                    view, offset = data, received
                    while view:
                        n = os.pwrite(fd, view, offset)
                        view, offset = view[n:], offset + n
                received += len(data)
                if received - flushed >= WRITEBACK_BYTES:
                    start_writeback(fd, flushed, received - flushed)
                    flushed = received
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
        request = worker_pb2.ReadSectorDirRequest(sector=sector.to_proto(), type=common_pb2.SECTOR_FILE_TYPE_CACHE, storage_id=storage_id)
        call = self._raw_stream(target, "ReadSectorDir", request, timeout)
        extractor = TarExtractor(dest)
        received = 0
        size: int | None = None
        try:
            async for raw in call:
                msg = _decode(target, raw)
                if size is None:
                    if msg.size is None:
                        raise TransferError(f"{target}: first message carries no tar_size")
                    size = msg.size
                if msg.offset != received:
                    raise TransferError(f"{target}: chunk at offset {msg.offset}, expected {received}")
                received += len(msg.data)
                if received > size:
                    raise TransferError(f"{target}: sent more than the announced {size} bytes")
                extractor.feed(msg.data)
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
