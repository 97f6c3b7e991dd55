"""What the manager asks the index: where a sector's files are, and where new files should go.

`StorageIndex` is the small interface the selectors and the sealing calls use; `GrpcStorageIndex`
implements it over `IndexService`. Tests plug in an in-memory index. A failed call raises the
fleet's domain error of its status (services/common/errors.py): this module is the manager's
edge to the index, so the code that uses it never sees a gRPC error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.client import aio_channel
from services.common.dependency import UNAVAILABLE_CODES
from services.common.errors import (
    DeadlineExceeded,
    DomainError,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
    from_rpc_error,
)
from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2, index_pb2_grpc

INDEX_RPC_TIMEOUT_S = 10.0


class FileType(IntEnum):
    """Mirrors `sectorstorage.v1.SectorFileType` (the reference's bitmask bits)."""

    UNSEALED = 1
    SEALED = 2
    CACHE = 4


class PathType(IntEnum):
    """Mirrors `sectorstorage.v1.PathType`."""

    SEALING = 1
    STORAGE = 2


@dataclass(frozen=True)
class SectorLocation:
    """A path holding some of a sector's files (or able to receive them: fetch candidate)."""

    storage_id: str
    urls: tuple[str, ...]
    weight: int
    can_seal: bool
    can_store: bool
    primary: bool
    types: frozenset[FileType]
    fetch_candidate: bool = False
    healthy: bool = True


class StorageIndex(Protocol):
    """What the manager asks the index. Failures raise domain errors (Unavailable, ...)."""

    async def find_sector(
        self, miner: int, number: int, types: Iterable[FileType], sector_size: int, allow_fetch: bool
    ) -> list[SectorLocation]:
        """Holders first (highest weight first), then fetch candidates when allow_fetch."""
        ...

    async def best_alloc(
        self, types: Iterable[FileType], sector_size: int, path_type: PathType, miner: int | None
    ) -> list[str]:
        """Storage ids that can take new files of these types, best first."""
        ...

    async def try_read_lock(self, miner: int, number: int, types: Iterable[FileType], owner: str) -> str | None:
        """A short read lease on the files, or None when a writer holds them."""
        ...

    async def unlock(self, lease_id: str) -> None: ...

    async def close(self) -> None: ...


class GrpcStorageIndex:
    """StorageIndex over the IndexService RPCs."""

    def __init__(self, target: str, token: str) -> None:
        # HOST:PORT of the index, for log lines about failed calls.
        self.address = target
        self._channel = aio_channel(target, token)
        self._stub = index_pb2_grpc.IndexServiceStub(self._channel)

    async def problem(self) -> str | None:
        """None when the index serves; else what is wrong (for the manager's readiness)."""
        try:
            reply = await health_pb2_grpc.HealthStub(self._channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.aio.AioRpcError as exc:
            return f"the index at {self.address} does not answer ({exc.code().name})"
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            return f"the index at {self.address} is {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
        return None

    async def find_sector(
        self, miner: int, number: int, types: Iterable[FileType], sector_size: int, allow_fetch: bool
    ) -> list[SectorLocation]:
        try:
            reply = await self._stub.StorageFindSector(
                index_pb2.StorageFindSectorRequest(
                    sector=common_pb2.SectorId(miner=miner, number=number),
                    types=[common_pb2.SectorFileType.ValueType(t) for t in types],
                    sector_size=sector_size,
                    allow_fetch=allow_fetch,
                ),
                timeout=INDEX_RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        return [
            SectorLocation(
                storage_id=loc.id,
                urls=tuple(loc.urls),
                weight=loc.weight,
                can_seal=loc.can_seal,
                can_store=loc.can_store,
                primary=loc.primary,
                types=frozenset(FileType(t) for t in loc.types if t in FileType._value2member_map_),
                fetch_candidate=loc.fetch_candidate,
                healthy=loc.healthy,
            )
            for loc in reply.locations
        ]

    async def best_alloc(
        self, types: Iterable[FileType], sector_size: int, path_type: PathType, miner: int | None
    ) -> list[str]:
        request = index_pb2.StorageBestAllocRequest(
            types=[common_pb2.SectorFileType.ValueType(t) for t in types],
            sector_size=sector_size,
            path_type=common_pb2.PathType.ValueType(path_type),
        )
        if miner is not None:
            request.miner = miner
        try:
            reply = await self._stub.StorageBestAlloc(request, timeout=INDEX_RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        return [p.id for p in reply.paths]

    async def try_read_lock(self, miner: int, number: int, types: Iterable[FileType], owner: str) -> str | None:
        """A read lease on the sector's files, or None when they are write-locked. A failed call
        raises the domain error of its status (services/common/errors.py)."""
        try:
            reply = await self._stub.StorageTryLock(
                index_pb2.StorageTryLockRequest(
                    sector=common_pb2.SectorId(miner=miner, number=number),
                    read_types=[common_pb2.SectorFileType.ValueType(t) for t in types],
                    owner=owner,
                ),
                timeout=INDEX_RPC_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        return reply.lease.lease_id if reply.acquired else None

    async def unlock(self, lease_id: str) -> None:
        """Releases a lease; a failed call raises the domain error of its status."""
        try:
            await self._stub.StorageUnlock(
                index_pb2.StorageUnlockRequest(lease_id=lease_id), timeout=INDEX_RPC_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def close(self) -> None:
        await self._channel.close()


def is_unavailable(exc: BaseException) -> bool:
    """An index error worth retrying later (down, overloaded, not implemented yet)."""
    return isinstance(exc, (Unavailable, DeadlineExceeded, Unimplemented, ResourceExhausted))


def file_types(values: Sequence[int]) -> frozenset[FileType]:
    return frozenset(FileType(v) for v in values)


def describe_index_failure(address: str, exc: Exception, action: str) -> tuple[str, dict[str, Any]]:
    """(message, extra) for a log line about a failed index call, as services/common/dependency.py
    words them: a status names its code; anything else (an in-process index) its text."""
    if isinstance(exc, DomainError) and type(exc) is not DomainError:
        code = exc.code
        state = "unavailable" if code in UNAVAILABLE_CODES else "answered"
        message = f"index {address or '(no address)'} {state} ({code.name}): {action}"
        return message, {"dependency": "index", "address": address, "code": code.name, "error": str(exc)}
    return (
        f"index {address or '(in process)'} unavailable: {action}",
        {"dependency": "index", "address": address, "error": str(exc)},
    )
