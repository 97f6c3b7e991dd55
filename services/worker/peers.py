"""Client side of file serving: download one sector file (or a range) or a cache directory from
a peer worker into a local temporary name, checking offsets and sizes as the bytes arrive.

Files go over the peer's bulk side channel when it offers one (OpenTransfer, bulk_client.py),
else (channel off, not reachable) over the ReadSectorFile gRPC stream; cache directories go
as tar over ReadSectorDir.

A download either returns having written exactly the bytes the peer announced, with the CRC32C
the peer sent for them (checksum.py; a peer from before it sends none and gets the size check
only), or raises (a failed call as failures.CallFailed, a corrupted transfer as
ChecksumMismatch, never a gRPC error); the caller owns the temporary name and deletes it on
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

import rust_core
from services.common.client import aio_channel
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.worker import bulk_client
from services.worker.checksum import Unchecked, verify
from services.worker.edge import translated
from services.worker.fsutil import start_writeback
from services.worker.messages import file_type_msg, sector_id_msg
from services.worker.sectors import FileType, SectorId
from services.worker.tarstream import TarExtractor
from services.worker.wire import ChunkResponse, WireError, decode_chunk_response

log = logging.getLogger(__name__)
# Every call's gRPC error becomes CallFailed here, naming the peer called (the target argument).
_translated = translated("peer", lambda peers, target, *args, **kwargs: str(target))
SERVICE_NAME = "sectorstorage.v1.WorkerService"
# Dirty bytes after which a download asks the kernel to start writing them out.
WRITEBACK_BYTES = 32 << 20
# How long a peer whose side channel could not be connected is fetched from over gRPC only.
UNREACHABLE_RETRY_S = 300.0
# A file of known size at least this large comes over the side channel in `bulk_streams` ranges
# (worker.bulk_streams), one connection (and ticket) each, received by one thread each: the
# receiver's TCP work and page-cache copy, which bound a single connection, can then use more
# than one core (docs/benchmarks.md, issue 20).
BULK_SPLIT_BYTES = 64 << 20


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


class FileWriter:
    """Writes a download's chunks from a thread, so the event loop keeps receiving while a
    write waits on the page cache (the kernel throttles writers once enough pages are dirty),
    and asks the kernel to start writeback every WRITEBACK_BYTES so the final fsync is short.
    It also keeps the CRC32C of every byte given to it, in order (`crc32c`, final after
    close()): the chunks arrive in order, so the thread that writes them sums them too."""

    def __init__(self, fd: int, sparse: bool, depth: int = 32) -> None:
        self.fd = fd
        self.sparse = sparse
        self.crc32c = 0
        self._queue: queue.Queue[tuple[int, memoryview] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="download-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        flushed = 0
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            offset, data = item
            end = offset + len(data)
            try:
                self.crc32c = rust_core.crc32c(data, self.crc32c)
                if not (self.sparse and _is_zero(data)):
                    view = data
                    while view:
                        n = os.pwrite(self.fd, view, offset)
                        view, offset = view[n:], offset + n
                if end - flushed >= WRITEBACK_BYTES:
                    start_writeback(self.fd, flushed, end - flushed)
                    flushed = end
            except BaseException as exc:  # noqa: BLE001 - reported to the coroutine
                self._error = exc

    async def write(self, offset: int, data: memoryview) -> None:
        if self._error is not None:
            raise self._error
        try:
            self._queue.put_nowait((offset, data))
        except queue.Full:
            await asyncio.to_thread(self._queue.put, (offset, data))

    async def close(self) -> None:
        """Waits for every queued write; raises the first write error."""
        await self.stop()
        if self._error is not None:
            raise self._error

    async def stop(self) -> None:
        if self._thread.is_alive():
            await asyncio.to_thread(self._queue.put, None)
            await asyncio.to_thread(self._thread.join)


class Peers:
    """gRPC channels to peer workers, one per target, with the fleet token. The two file streams
    are read as raw bytes and parsed by wire.py (one copy less per chunk than the generated
    classes; the bytes on the wire are the same)."""

    def __init__(self, token: str, bulk: bool = True, bulk_streams: int = 1) -> None:
        self.token = token
        # Try the peers' bulk side channel before the gRPC stream.
        self.bulk = bulk
        # Connections a large file is split over on the side channel.
        self.bulk_streams = bulk_streams
        # Peer -> until when its side channel is not tried again (it could not be connected:
        # each try would cost the connect timeout).
        self._unreachable: dict[str, float] = {}
        # Peers that sent no checksum (older versions), logged once each.
        self._unchecked = Unchecked()
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

    @_translated
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
    ) -> str:
        """Brings a whole file into `dest` (created); returns how: "bulk" (the side channel) or
        "grpc" (the stream). With `sparse`, chunks of zeros are skipped (the file keeps its
        holes, as partial files have)."""
        if (
            self.bulk
            and self._unreachable.get(target, 0.0) < time.monotonic()
            and await self._download_bulk(target, sector, file_type, storage_id, dest, expect_size, sparse)
        ):
            return "bulk"
        await self._download_stream(target, sector, file_type, storage_id, dest, expect_size, sparse, timeout)
        return "grpc"

    async def _download_bulk(
        self,
        target: str,
        sector: SectorId,
        file_type: FileType,
        storage_id: str,
        dest: Path,
        expect_size: int | None,
        sparse: bool,
    ) -> bool:
        """The side channel; False (nothing left at `dest`) when the peer has none, it cannot be
        reached or it refuses the ticket, so the caller uses the gRPC stream."""
        # The file's ranges, one connection each: the whole file (length 0: to its end) unless
        # its size is known and large.
        ranges = [(0, 0)]
        if expect_size is not None and not sparse and expect_size >= BULK_SPLIT_BYTES and self.bulk_streams > 1:
            n = self.bulk_streams
            bounds = [expect_size * i // n for i in range(n + 1)]
            ranges = [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(n)]
        grants: list[worker_pb2.OpenTransferResponse] = []
        for offset, length in ranges:
            request = worker_pb2.OpenTransferRequest(
                sector=sector_id_msg(sector),
                type=file_type_msg(file_type),
                storage_id=storage_id,
                offset=offset,
                length=length,
                checksum=True,
            )
            try:
                grant = await self.stub(target).OpenTransfer(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.UNIMPLEMENTED,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                ):
                    # (Tickets granted already expire unused at the source.)
                    log.info(
                        "no side channel; using the gRPC stream",
                        extra={"source": target, "reason": f"{exc.code().name}: {exc.details()}"},
                    )
                    return False
                raise
            if expect_size is not None and grant.file_size != expect_size:
                raise TransferError(
                    f"{target}: {file_type.dirname} file is {grant.file_size} bytes, expected {expect_size}"
                )
            if grant.offset != offset or (length and grant.length != length):
                raise TransferError(
                    f"{target}: OpenTransfer granted {grant.length} bytes from {grant.offset}, "
                    f"asked {length} from {offset}"
                )
            grants.append(grant)
        socks: list[socket.socket] = []
        try:
            for grant in grants:
                try:
                    socks.append(await asyncio.to_thread(bulk_client.connect, grant.address))
                except bulk_client.ChannelUnreachable as exc:
                    self._unreachable[target] = time.monotonic() + UNREACHABLE_RETRY_S
                    log.warning(
                        "side channel unreachable; using the gRPC stream",
                        extra={"source": target, "error": str(exc), "retry_in_s": UNREACHABLE_RETRY_S},
                    )
                    return False
            parts = [
                bulk_client.Part(sock, g.ticket, g.offset, g.length, g.checksum)
                for sock, g in zip(socks, grants, strict=True)
            ]
            if not all(g.checksum for g in grants):
                self._unchecked.note(target, "side channel")
            total = sum(g.length for g in grants)
            job = asyncio.ensure_future(asyncio.to_thread(bulk_client.receive_parts, parts, dest, total, sparse))
            try:
                await asyncio.shield(job)
            except asyncio.CancelledError:
                # The threads are blocked in recv or write: break the connections and wait.
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(BaseException):
                    await job
                raise
            log.info(
                "received over the side channel",
                extra={"source": target, "type": file_type.dirname, "bytes": total, "connections": len(parts)},
            )
        except bulk_client.ChannelRefused as exc:
            # Refused before the first byte (full, flooded, the ticket too late): the gRPC
            # stream from the same source is the fallback.
            log.warning(
                "side channel refused the transfer; using the gRPC stream", extra={"source": target, "error": str(exc)}
            )
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            return False
        except bulk_client.TransferError as exc:
            # Broken off in the middle: the source may be gone; the caller tries the next one.
            raise TransferError(f"{target}: {exc}") from None
        finally:
            for sock in socks:
                sock.close()
        return True

    async def _download_stream(
        self,
        target: str,
        sector: SectorId,
        file_type: FileType,
        storage_id: str,
        dest: Path,
        expect_size: int | None,
        sparse: bool,
        timeout: float | None,
    ) -> int:
        request = worker_pb2.ReadSectorFileRequest(
            sector=sector_id_msg(sector), type=file_type_msg(file_type), storage_id=storage_id
        )
        call = self._raw_stream(target, "ReadSectorFile", request, timeout)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        writer = FileWriter(fd, sparse)
        started = time.monotonic()
        received = 0
        size: int | None = None
        sent_crc: int | None = None
        try:
            async for raw in call:
                msg = _decode(target, raw)
                if msg.crc32c is not None:
                    sent_crc = msg.crc32c
                if size is None:
                    if msg.size is None:
                        raise TransferError(f"{target}: first message carries no file_size")
                    size = msg.size
                    if expect_size is not None and size != expect_size:
                        raise TransferError(
                            f"{target}: {file_type.dirname} file is {size} bytes, expected {expect_size}"
                        )
                if msg.offset != received:
                    raise TransferError(f"{target}: chunk at offset {msg.offset}, expected {received}")
                if received + len(msg.data) > size:
                    raise TransferError(f"{target}: sent more than the announced {size} bytes")
                if msg.data:
                    await writer.write(received, msg.data)
                received += len(msg.data)
            if size is None or received != size:
                raise TransferError(f"{target}: stream ended after {received} of {size} bytes")
            await writer.close()
            if not verify(writer.crc32c, sent_crc, f"{target}: the {file_type.dirname} file's stream"):
                self._unchecked.note(target, "ReadSectorFile")
            os.ftruncate(fd, size)
            streamed = time.monotonic()
            await asyncio.to_thread(os.fsync, fd)
            log.debug(
                "downloaded",
                extra={
                    "bytes": size,
                    "stream_s": round(streamed - started, 3),
                    "fsync_s": round(time.monotonic() - streamed, 3),
                },
            )
            return size
        finally:
            call.cancel()
            await asyncio.shield(writer.stop())
            os.close(fd)

    @_translated
    async def download_dir(
        self, target: str, sector: SectorId, storage_id: str, dest: Path, timeout: float | None = None
    ) -> int:
        """Streams a cache directory as tar into the (new, empty) directory `dest`; returns the
        archive size after checking it matches the announced one and its CRC32C the one the
        peer sent (ChecksumMismatch)."""
        request = worker_pb2.ReadSectorDirRequest(
            sector=sector_id_msg(sector), type=common_pb2.SECTOR_FILE_TYPE_CACHE, storage_id=storage_id
        )
        call = self._raw_stream(target, "ReadSectorDir", request, timeout)
        extractor = TarExtractor(dest)
        received = crc = 0
        size: int | None = None
        sent_crc: int | None = None
        try:
            async for raw in call:
                msg = _decode(target, raw)
                if msg.crc32c is not None:
                    sent_crc = msg.crc32c
                if size is None:
                    if msg.size is None:
                        raise TransferError(f"{target}: first message carries no tar_size")
                    size = msg.size
                if msg.offset != received:
                    raise TransferError(f"{target}: chunk at offset {msg.offset}, expected {received}")
                received += len(msg.data)
                if received > size:
                    raise TransferError(f"{target}: sent more than the announced {size} bytes")
                crc = rust_core.crc32c(msg.data, crc)
                extractor.feed(msg.data)
            if size is None or received != size:
                raise TransferError(f"{target}: archive ended after {received} of {size} bytes")
            if not verify(crc, sent_crc, f"{target}: the cache's archive"):
                self._unchecked.note(target, "ReadSectorDir")
            extractor.finish()
            return size
        finally:
            extractor.close()
            call.cancel()

    @_translated
    async def stat(self, target: str, sector: SectorId, file_type: FileType, storage_id: str) -> tuple[bool, int]:
        """(is a directory, apparent size) of a peer's copy; CallFailed (NOT_FOUND) when it has none."""
        reply = await self.stub(target).StatSectorFile(
            worker_pb2.StatSectorFileRequest(
                sector=sector_id_msg(sector), type=file_type_msg(file_type), storage_id=storage_id
            ),
            timeout=30,
        )
        return reply.is_dir, reply.size

    @_translated
    async def remove(self, target: str, sector: SectorId, file_type: FileType, storage_id: str) -> None:
        await self.stub(target).RemoveSectorFile(
            worker_pb2.RemoveSectorFileRequest(
                sector=sector_id_msg(sector),
                type=file_type_msg(file_type),
                storage_id=storage_id,
            ),
            timeout=30,
        )
