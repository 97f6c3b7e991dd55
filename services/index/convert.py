"""Protobuf messages <-> index domain values. Reading a request validates it (InvalidArgument
names the field and what to send instead); writing a response cannot fail."""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.proto.sectorstorage.v1 import common_pb2, index_pb2
from services.index.domain import (
    FILE_TYPES,
    MAX_INT63,
    Declaration,
    FileType,
    FsStat,
    Health,
    InvalidArgument,
    Lease,
    LockRequest,
    PathInfo,
    PathState,
    PathType,
    SectorId,
    SectorLocation,
    check_sector,
    file_types_of,
    parse_file_types,
)

# -- requests -> domain ---------------------------------------------------------------------------


def sector(msg: common_pb2.SectorId, present: bool, what: str = "sector") -> SectorId:
    if not present:
        raise InvalidArgument(f"{what} is required (miner actor id and sector number)")
    return check_sector(msg.miner, msg.number, what)


def types(values: Iterable[int], what: str = "types", required: bool = True) -> FileType:
    mask = parse_file_types(values, what)
    if required and not mask:
        raise InvalidArgument(f"{what} is empty: name at least one file type (UNSEALED, SEALED, CACHE)")
    return mask


def single_type(value: int, what: str) -> FileType:
    if value not in (1, 2, 4):
        raise InvalidArgument(f"{what} must be one file type (UNSEALED, SEALED or CACHE), got {value}")
    return FileType(value)


def path_type(value: int) -> PathType:
    if value == common_pb2.PATH_TYPE_SEALING:
        return PathType.SEALING
    if value == common_pb2.PATH_TYPE_STORAGE:
        return PathType.STORAGE
    raise InvalidArgument(f"path_type must be SEALING or STORAGE, got {value}")


def path_info(msg: common_pb2.StorageInfo) -> PathInfo:
    return PathInfo(
        id=msg.id,
        urls=tuple(msg.urls),
        weight=msg.weight,
        max_storage=msg.max_storage,
        can_seal=msg.can_seal,
        can_store=msg.can_store,
        groups=tuple(msg.groups),
        allow_to=tuple(msg.allow_to),
        allow_types=types(msg.allow_types, "info.allow_types", required=False),
        deny_types=types(msg.deny_types, "info.deny_types", required=False),
        allow_miners=tuple(msg.allow_miners),
        deny_miners=tuple(msg.deny_miners),
    )


def fs_stat(msg: common_pb2.FsStat) -> FsStat:
    return FsStat(msg.capacity, msg.available, msg.fs_available, msg.reserved, msg.max, msg.used)


def duration_seconds(msg: Duration) -> float:
    return msg.seconds + msg.nanos / 1e9


def lock_request(msg: index_pb2.StorageLockRequest | index_pb2.StorageTryLockRequest) -> LockRequest:
    return LockRequest(
        sector=sector(msg.sector, msg.HasField("sector")),
        read_types=types(msg.read_types, "read_types", required=False),
        write_types=types(msg.write_types, "write_types", required=False),
        owner=msg.owner,
        ttl=duration_seconds(msg.ttl) if msg.HasField("ttl") else None,
        lease_id=msg.lease_id,
    ).checked()


def miner(value: int) -> int:
    if not 0 < value <= MAX_INT63:
        raise InvalidArgument(f"miner must be 1..{MAX_INT63} (the miner actor id), got {value}")
    return value


# -- domain -> responses --------------------------------------------------------------------------


def timestamp(unix: float) -> Timestamp:
    ts = Timestamp()
    seconds = int(unix)
    ts.seconds, ts.nanos = seconds, int((unix - seconds) * 1e9)
    return ts


def duration(seconds: float) -> Duration:
    d = Duration()
    whole = int(seconds)
    d.seconds, d.nanos = whole, int(round((seconds - whole) * 1e9))
    return d


_TYPE_VALUES = tuple([common_pb2.SectorFileType.ValueType(int(t)) for t in file_types_of(m)] for m in range(8))


def type_values(mask: FileType) -> list[common_pb2.SectorFileType.ValueType]:
    return list(_TYPE_VALUES[int(mask) & 7])


def sector_msg(value: SectorId) -> common_pb2.SectorId:
    return common_pb2.SectorId(miner=value.miner, number=value.number)


def info_msg(info: PathInfo) -> common_pb2.StorageInfo:
    return common_pb2.StorageInfo(
        id=info.id,
        urls=info.urls,
        weight=info.weight,
        max_storage=info.max_storage,
        can_seal=info.can_seal,
        can_store=info.can_store,
        groups=info.groups,
        allow_to=info.allow_to,
        allow_types=type_values(info.allow_types),
        deny_types=type_values(info.deny_types),
        allow_miners=info.allow_miners,
        deny_miners=info.deny_miners,
    )


def stat_msg(stat: FsStat) -> common_pb2.FsStat:
    return common_pb2.FsStat(
        capacity=stat.capacity,
        available=stat.available,
        fs_available=stat.fs_available,
        reserved=stat.reserved,
        max=stat.max,
        used=stat.used,
    )


def health_msg(health: Health) -> index_pb2.StorageHealth:
    return index_pb2.StorageHealth(
        healthy=health.healthy, last_heartbeat=timestamp(health.last_heartbeat), error=health.error
    )


def list_entry(state: PathState) -> index_pb2.StorageListEntry:
    return index_pb2.StorageListEntry(
        info=info_msg(state.info),
        stat=stat_msg(state.stat),
        health=health_msg(state.health),
        file_counts=[
            index_pb2.FileTypeCount(type=common_pb2.SectorFileType.ValueType(int(t)), count=state.file_counts[t])
            for t in FILE_TYPES
            if state.file_counts.get(t)
        ],
    )


def declaration_msg(decl: Declaration) -> index_pb2.SectorDeclaration:
    return index_pb2.SectorDeclaration(
        storage_id=decl.storage_id,
        sector=sector_msg(decl.sector),
        type=common_pb2.SectorFileType.ValueType(int(decl.file_type)),
        primary=decl.primary,
    )


def location_msg(loc: SectorLocation) -> index_pb2.SectorStorageInfo:
    return index_pb2.SectorStorageInfo(
        id=loc.id,
        urls=loc.urls,
        weight=loc.weight,
        can_seal=loc.can_seal,
        can_store=loc.can_store,
        primary=loc.primary,
        types=type_values(loc.types),
        fetch_candidate=loc.fetch_candidate,
        healthy=loc.healthy,
    )


def lease_msg(lease: Lease) -> index_pb2.SectorLockLease:
    return index_pb2.SectorLockLease(
        lease_id=lease.lease_id,
        sector=sector_msg(lease.sector),
        read_types=type_values(lease.read_types),
        write_types=type_values(lease.write_types),
        owner=lease.owner,
        acquired_at=timestamp(lease.acquired_at),
        expires_at=timestamp(lease.expires_at),
    )


def lock_lease_msg(lease: Lease) -> index_pb2.LockLease:
    return index_pb2.LockLease(lease_id=lease.lease_id, expires_at=timestamp(lease.expires_at), ttl=duration(lease.ttl))
