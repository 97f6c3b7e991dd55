"""Building blocks for the index tests: a running index and stubs to it (started by
tests/support/fleet.py's `start_index`), and requests built without repeating boilerplate."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from services.common.auth import Permission
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2 as cpb
from services.common.proto.sectorstorage.v1 import index_pb2 as ipb
from services.common.proto.sectorstorage.v1 import index_pb2_grpc
from services.devfleet import ServiceProcess
from tests.support.auth import token

UNSEALED, SEALED, CACHE = cpb.SECTOR_FILE_TYPE_UNSEALED, cpb.SECTOR_FILE_TYPE_SEALED, cpb.SECTOR_FILE_TYPE_CACHE
SEALING, STORAGE = cpb.PATH_TYPE_SEALING, cpb.PATH_TYPE_STORAGE
KIB2 = 2048
GIB = 1 << 30
TIB = 1 << 40


@dataclass
class Index:
    """A running index process and a stub to it (admin token unless asked otherwise)."""

    proc: ServiceProcess
    backend: str
    db_url: str
    channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.proc.address

    def stub(self, permission: Permission = Permission.ADMIN) -> index_pb2_grpc.IndexServiceStub:
        channel = sync_channel(self.address, token(permission))
        self.channels.append(channel)
        return index_pb2_grpc.IndexServiceStub(channel)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        self.channels.clear()


def new_id() -> str:
    return str(uuid.uuid4())


def sector(number: int, miner: int = 1000) -> cpb.SectorId:
    return cpb.SectorId(miner=miner, number=number)


def info(
    storage_id: str | None = None,
    urls: Sequence[str] = ("127.0.0.1:7001",),
    weight: int = 10,
    can_seal: bool = True,
    can_store: bool = True,
    **kw: Any,
) -> cpb.StorageInfo:
    return cpb.StorageInfo(
        id=new_id() if storage_id is None else storage_id,
        urls=list(urls),
        weight=weight,
        can_seal=can_seal,
        can_store=can_store,
        **kw,
    )


def stat(available: int = TIB, capacity: int | None = None, **kw: Any) -> cpb.FsStat:
    return cpb.FsStat(
        capacity=capacity if capacity is not None else max(available, TIB),
        available=available,
        fs_available=available,
        **kw,
    )


def attach(stub: index_pb2_grpc.IndexServiceStub, available: int = TIB, **kw: Any) -> str:
    """Attaches a new path (healthy: attach counts as its first heartbeat); returns its id."""
    path = info(**kw)
    stub.StorageAttach(ipb.StorageAttachRequest(info=path, stat=stat(available)), timeout=10)
    return path.id


def declare(
    stub: index_pb2_grpc.IndexServiceStub,
    storage_id: str,
    number: int,
    types: Sequence[int],
    primary: bool = False,
    miner: int = 1000,
) -> None:
    stub.StorageDeclareSector(
        ipb.StorageDeclareSectorRequest(
            storage_id=storage_id,
            sector=sector(number, miner),
            types=[cpb.SectorFileType.ValueType(t) for t in types],
            primary=primary,
        ),
        timeout=10,
    )


def find(
    stub: index_pb2_grpc.IndexServiceStub,
    number: int,
    types: Sequence[int],
    allow_fetch: bool = False,
    sector_size: int = KIB2,
    miner: int = 1000,
) -> list[ipb.SectorStorageInfo]:
    response = stub.StorageFindSector(
        ipb.StorageFindSectorRequest(
            sector=sector(number, miner),
            types=[cpb.SectorFileType.ValueType(t) for t in types],
            allow_fetch=allow_fetch,
            sector_size=sector_size,
        ),
        timeout=10,
    )
    return list(response.locations)


def all_declarations(
    stub: index_pb2_grpc.IndexServiceStub, storage_id: str = "", page_size: int = 10_000
) -> list[tuple[str, int, int, int, bool]]:
    out: list[tuple[str, int, int, int, bool]] = []
    token_ = ""
    while True:
        page = stub.StorageListSectors(
            ipb.StorageListSectorsRequest(storage_id=storage_id, page_size=page_size, page_token=token_), timeout=60
        )
        out += [(d.storage_id, d.sector.miner, d.sector.number, int(d.type), d.primary) for d in page.declarations]
        token_ = page.next_page_token
        if not token_:
            return out


@contextmanager
def rpc_error(code: grpc.StatusCode, *fragments: str) -> Iterator[None]:
    """Asserts the block raises an RpcError with `code` and a message containing each fragment."""
    try:
        yield
    except grpc.RpcError as err:
        assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
        details = err.details() or ""
        for fragment in fragments:
            assert fragment in details, f"{fragment!r} not in {details!r}"
    else:
        raise AssertionError(f"expected {code}, but the call succeeded")


def reset(stub: index_pb2_grpc.IndexServiceStub) -> None:
    """Detaches every path and releases every lock (between tests sharing one index)."""
    for entry in stub.StorageList(ipb.StorageListRequest(), timeout=30).paths:
        stub.StorageDetach(ipb.StorageDetachRequest(storage_id=entry.info.id), timeout=30)
    for lease in stub.StorageGetLocks(ipb.StorageGetLocksRequest(), timeout=30).locks:
        stub.StorageUnlock(ipb.StorageUnlockRequest(lease_id=lease.lease_id), timeout=30)


def declare_many(address: str, items: Sequence[tuple[str, int, Sequence[int], bool]], concurrency: int = 32) -> None:
    """Declares (path, sector number, types, primary) items one StorageDeclareSector RPC each,
    `concurrency` at a time, from an asyncio client (far less client CPU than threads)."""
    import asyncio

    from services.common.client import aio_channel

    async def run() -> None:
        async with aio_channel(address, token()) as channel:
            stub = index_pb2_grpc.IndexServiceStub(channel)
            pending = iter(items)

            async def worker() -> None:
                for storage_id, number, types, primary in pending:
                    await stub.StorageDeclareSector(
                        ipb.StorageDeclareSectorRequest(
                            storage_id=storage_id,
                            sector=sector(number),
                            types=[cpb.SectorFileType.ValueType(t) for t in types],
                            primary=primary,
                        ),
                        timeout=60,
                    )

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    asyncio.run(run())
