"""The fetch transfer checksum (services/worker/checksum.py) on both paths, in one process: a
worker servicer on a local port serves a sealed file, an unsealed (sparse) file and a cache, and
Peers downloads them over the gRPC streams and over the bulk side channel. Untouched transfers
pass; a byte flipped in flight after the server computed its checksum (the test fault hook) is
refused with ChecksumMismatch; a server that sends no checksum (an older peer) is accepted with
the size check alone and logged once. The transfers between worker processes, with the index, are
in tests/integration/worker/test_fetch_checksum.py."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.proto.sectorstorage.v1 import worker_pb2
from services.worker import bulk_client
from services.worker.bulk import BulkServer, TicketBook
from services.worker.checksum import ChecksumMismatch
from services.worker.faults import ENV_ARM, ENV_SERVE_FLIP, ServeFault
from services.worker.parts import Parts
from services.worker.paths import PathMeta
from services.worker.peers import Peers
from services.worker.sectors import FileType, SectorId
from services.worker.servicer import WorkerServicer, add_worker_service
from services.worker.testing.faults import ArmedServeFault
from services.worker.wire import encode_chunk_response
from tests.unit.worker.test_servicer import make_parts

SECTOR = SectorId(1000, 7)
FLIP_AT = 3000
SEALED = os.urandom((2 << 20) + 333)
# An unsealed file is mostly holes: zeros the receiver does not write.
UNSEALED = bytes(1 << 20) + os.urandom(5000) + bytes(70_000)
CACHE = {"sc-02-data-layer-1.dat": os.urandom(8192), "t_aux": os.urandom(100)}


def flipping() -> ServeFault:
    return ArmedServeFault({ENV_ARM: "1", ENV_SERVE_FLIP: str(FLIP_AT)})


def run_worker(
    tmp_path: Path, fault: ServeFault, scenario: Callable[[Peers, str], Awaitable[None]], side_channel: bool
) -> None:
    """Serves the three files (with `fault`) and runs `scenario(peers, target)`."""

    async def main() -> None:
        parts: Parts = make_parts(tmp_path / "server", (), ())
        parts.fault = fault
        path = parts.local.attach(tmp_path / "server" / "p", PathMeta.for_new_path(can_seal=True))
        path.file(FileType.SEALED, SECTOR).write_bytes(SEALED)
        path.file(FileType.UNSEALED, SECTOR).write_bytes(UNSEALED)
        cache = path.file(FileType.CACHE, SECTOR)
        cache.mkdir()
        for name, data in CACHE.items():
            (cache / name).write_bytes(data)
        if side_channel:
            parts.bulk_server = BulkServer(TicketBook(), fault, "127.0.0.1", 0)
            parts.bulk_server.start()
            parts.bulk_address = f"127.0.0.1:{parts.bulk_server.port}"
        server = grpc.aio.server()
        add_worker_service(WorkerServicer(parts), server)  # type: ignore[abstract]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        peers = Peers("", bulk=side_channel, bulk_streams=2)
        try:
            await scenario(peers, f"127.0.0.1:{port}")
        finally:
            await peers.close()
            await server.stop(None)
            if parts.bulk_server is not None:
                parts.bulk_server.stop()
            parts.calls.close()

    asyncio.run(main())


async def fetch_all(peers: Peers, target: str, dest: Path) -> list[str]:
    """Downloads the three files into `dest`; returns how the two files came."""
    dest.mkdir()
    vias = [
        await peers.download_file(target, SECTOR, FileType.SEALED, "", dest / "sealed", expect_size=len(SEALED)),
        await peers.download_file(target, SECTOR, FileType.UNSEALED, "", dest / "unsealed", sparse=True),
    ]
    (dest / "cache").mkdir()
    await peers.download_dir(target, SECTOR, "", dest / "cache")
    return vias


def check_copies(dest: Path) -> None:
    assert (dest / "sealed").read_bytes() == SEALED
    assert (dest / "unsealed").read_bytes() == UNSEALED
    assert {p.name: p.read_bytes() for p in (dest / "cache").iterdir()} == CACHE


@pytest.mark.parametrize("side_channel", [False, True], ids=["grpc", "bulk"])
def test_untouched_transfers_pass(tmp_path: Path, side_channel: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small enough that the sealed file comes in two ranges over two connections.
    monkeypatch.setattr("services.worker.peers.BULK_SPLIT_BYTES", 1 << 20)

    async def scenario(peers: Peers, target: str) -> None:
        vias = await fetch_all(peers, target, tmp_path / "got")
        assert vias == (["bulk", "bulk"] if side_channel else ["grpc", "grpc"])
        check_copies(tmp_path / "got")

    run_worker(tmp_path, ServeFault(), scenario, side_channel)


@pytest.mark.parametrize("side_channel", [False, True], ids=["grpc", "bulk"])
@pytest.mark.parametrize("file_type", [FileType.SEALED, FileType.UNSEALED, FileType.CACHE], ids=lambda t: t.dirname)
def test_a_byte_flipped_in_flight_is_refused(tmp_path: Path, side_channel: bool, file_type: FileType) -> None:
    dest = tmp_path / "got"

    async def scenario(peers: Peers, target: str) -> None:
        with pytest.raises(ChecksumMismatch, match="checksum mismatch, copy not declared"):
            if file_type == FileType.CACHE:
                dest.mkdir()
                await peers.download_dir(target, SECTOR, "", dest)
            else:
                await peers.download_file(target, SECTOR, file_type, "", dest, sparse=file_type == FileType.UNSEALED)

    run_worker(tmp_path, flipping(), scenario, side_channel)
    # The copy is refused, not repaired: the byte is wrong in what was written (the caller
    # discards it), and the server's own file is untouched.
    if file_type == FileType.CACHE:
        got = b"".join((dest / name).read_bytes() for name in sorted(CACHE) if (dest / name).exists())
        assert got != b"".join(CACHE[name] for name in sorted(CACHE))
    else:
        original = SEALED if file_type == FileType.SEALED else UNSEALED
        got = dest.read_bytes()
        assert len(got) == len(original) and got[FLIP_AT] == original[FLIP_AT] ^ 0xFF


def test_a_side_channel_range_without_a_trailer_is_accepted(tmp_path: Path) -> None:
    """A ticket issued without `checksum` (what a server from before it does) sends no trailer:
    the receiver that was not granted one checks the size only."""
    src = tmp_path / "src"
    src.write_bytes(SEALED)
    server = BulkServer(TicketBook(), ServeFault(), "127.0.0.1", 0)
    server.start()
    try:
        ticket, _ = server.book.issue(os.open(src, os.O_RDONLY), 0, len(SEALED))
        sock = bulk_client.connect(f"127.0.0.1:{server.port}")
        with sock:
            assert bulk_client.receive(sock, ticket, tmp_path / "got", len(SEALED)) == len(SEALED)
        assert (tmp_path / "got").read_bytes() == SEALED
        ticket, _ = server.book.issue(os.open(src, os.O_RDONLY), 0, len(SEALED), checksum=True)
        sock = bulk_client.connect(f"127.0.0.1:{server.port}")
        with sock:
            bulk_client.receive(sock, ticket, tmp_path / "checked", len(SEALED), checksum=True)
        assert (tmp_path / "checked").read_bytes() == SEALED
    finally:
        server.stop()


def test_a_peer_without_checksums_is_accepted_and_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An older peer: its streams carry no crc32c, and it ignores OpenTransfer's `checksum` (so
    grants none). Its files and cache are accepted on the size check; that is logged once."""
    monkeypatch.setattr(
        "services.worker.servicer.encode_chunk_response",
        lambda offset, data, size=None, crc32c=None: encode_chunk_response(offset, data, size),
    )
    open_transfer = WorkerServicer.OpenTransfer

    async def old_open_transfer(
        self: WorkerServicer, request: worker_pb2.OpenTransferRequest, context: Any
    ) -> worker_pb2.OpenTransferResponse:
        request.ClearField("checksum")
        return await open_transfer(self, request, context)

    monkeypatch.setattr(WorkerServicer, "OpenTransfer", old_open_transfer)

    async def scenario(peers: Peers, target: str) -> None:
        assert await fetch_all(peers, target, tmp_path / "got") == ["bulk", "bulk"]
        check_copies(tmp_path / "got")

    caplog.set_level(logging.INFO, logger="services.worker.checksum")
    run_worker(tmp_path, ServeFault(), scenario, side_channel=True)
    notes = [r for r in caplog.records if "sends no transfer checksum" in r.getMessage()]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO
