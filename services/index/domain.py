"""The index's vocabulary as plain typed values: sectors, file types, paths, their stats and
health, declarations, locations and lock leases, and the errors the index reports.

Everything here is validated on construction through the `parse_*`/`check_*` helpers, so the
store and the gRPC adapter share one set of rules and one wording for what to fix.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, IntFlag
from typing import TypeVar

from services.common.errors import (  # re-exported: the index raises these
    AlreadyExists as AlreadyExists,
)
from services.common.errors import (
    DeadlineExceeded as DeadlineExceeded,
)
from services.common.errors import DomainError
from services.common.errors import (
    FailedPrecondition as FailedPrecondition,
)
from services.common.errors import (
    InvalidArgument as InvalidArgument,
)
from services.common.errors import (
    NotFound as NotFound,
)
from services.common.errors import (
    ResourceExhausted as ResourceExhausted,
)
from services.common.errors import (
    Unavailable as Unavailable,
)

MAX_INT63 = 2**63 - 1
# Weights are multiplied by up to 3 types (FindSector) and by free bytes (BestAlloc ranking);
# anything beyond 32 bits is certainly a mistake.
MAX_WEIGHT = 2**32 - 1
MAX_LABEL = 256  # longest group name / owner string
MAX_URLS = 64

# -- errors -------------------------------------------------------------------------------------


# The index's refusals are the fleet's domain errors (services/common/errors.py maps them to
# statuses); `StoreError` names their base here.
StoreError = DomainError

# -- sectors and file types ---------------------------------------------------------------------


class FileType(IntFlag):
    """Sector file types; the values are the reference's bitmask bits (and the proto's)."""

    UNSEALED = 1
    SEALED = 2
    CACHE = 4

    @property
    def label(self) -> str:
        return "|".join(t.name.lower() for t in FILE_TYPES if t & self) or "none"  # type: ignore[union-attr]


FILE_TYPES: tuple[FileType, ...] = (FileType.UNSEALED, FileType.SEALED, FileType.CACHE)
NO_TYPES = FileType(0)


# Flag arithmetic on IntFlag members is slow in CPython; hot paths use these tables instead.
_MASKS: tuple[FileType, ...] = tuple(FileType(m) for m in range(8))
_SPLIT: tuple[tuple[FileType, ...], ...] = tuple(tuple(t for t in FILE_TYPES if m & t) for m in range(8))


def file_types_of(mask: int) -> tuple[FileType, ...]:
    """The single types in a mask, in the reference's order (unsealed, sealed, cache)."""
    return _SPLIT[mask & 7]


def parse_file_types(values: Iterable[int], what: str = "types") -> FileType:
    """A set of proto SectorFileType values as one mask; duplicates are ignored."""
    mask = 0
    for value in values:
        if value not in (1, 2, 4):
            raise InvalidArgument(f"{what}: {value} is not a sector file type (use UNSEALED, SEALED or CACHE)")
        mask |= value
    return _MASKS[mask]


@dataclass(frozen=True, order=True)
class SectorId:
    miner: int
    number: int

    def __str__(self) -> str:
        return f"s-t0{self.miner}-{self.number}"


def check_sector(miner: int, number: int, what: str = "sector") -> SectorId:
    if not 0 < miner <= MAX_INT63:
        raise InvalidArgument(f"{what}.miner must be 1..{MAX_INT63} (the miner actor id), got {miner}")
    if not 0 <= number <= MAX_INT63:
        raise InvalidArgument(f"{what}.number must be 0..{MAX_INT63} (Filecoin's MaxSectorNumber), got {number}")
    return SectorId(miner, number)


class PathType(Enum):
    SEALING = "sealing"
    STORAGE = "storage"


# -- paths ----------------------------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


def check_uuid(value: str, what: str) -> str:
    """A UUID in 8-4-4-4-12 form, normalized to lowercase."""
    if not value:
        raise InvalidArgument(f"{what} is required (a UUID such as 8f4e0b1c-...)")
    if not _UUID.match(value):
        raise InvalidArgument(f"{what} {value!r} is not a UUID in 8-4-4-4-12 hex form")
    return str(uuid.UUID(value))


def check_url(url: str) -> str:
    """A gRPC target: HOST:PORT, [IPv6]:PORT, or a target with a gRPC name scheme (dns:///h:p)."""
    if not url or url != url.strip() or any(c.isspace() for c in url):
        raise InvalidArgument(f"url {url!r} must be a non-empty gRPC target without spaces, e.g. 10.0.0.5:3456")
    if url.startswith(("http://", "https://")):
        raise InvalidArgument(
            f"url {url!r} is an HTTP URL; give the worker's gRPC target instead, e.g. host:3456 (no path)"
        )
    if url.startswith(_SCHEMES):
        if len(url.split(":", 1)[1].lstrip("/")) == 0:
            raise InvalidArgument(f"url {url!r} names no address after its scheme")
        return url
    match = _HOST_PORT.match(url)
    if not match or not 0 < int(match.group(2)) <= 65535:
        raise InvalidArgument(
            f"url {url!r} is not a gRPC target: use HOST:PORT (port 1..65535) or e.g. dns:///host:port"
        )
    return url


def check_label(value: str, what: str) -> str:
    if not value or len(value) > MAX_LABEL or any(c.isspace() for c in value):
        raise InvalidArgument(f"{what} {value!r} must be 1..{MAX_LABEL} characters without spaces")
    return value


def check_size(value: int, what: str) -> int:
    if not 0 <= value <= MAX_INT63:
        raise InvalidArgument(f"{what} {value} is out of range (0..{MAX_INT63} bytes)")
    return value


@dataclass(frozen=True)
class FsStat:
    capacity: int = 0
    available: int = 0
    fs_available: int = 0
    reserved: int = 0
    max: int = 0
    used: int = 0

    def checked(self, what: str = "stat") -> FsStat:
        for name in ("capacity", "available", "fs_available", "reserved", "max", "used"):
            check_size(getattr(self, name), f"{what}.{name}")
        return self


@dataclass(frozen=True)
class PathInfo:
    """A storage path's metadata (its sectorstore.json plus the urls serving it)."""

    id: str
    urls: tuple[str, ...]
    weight: int = 0
    max_storage: int = 0
    can_seal: bool = False
    can_store: bool = False
    groups: tuple[str, ...] = ()
    allow_to: tuple[str, ...] = ()
    allow_types: FileType = NO_TYPES
    deny_types: FileType = NO_TYPES
    allow_miners: tuple[int, ...] = ()
    deny_miners: tuple[int, ...] = ()

    def checked(self) -> PathInfo:
        """Validates and normalizes (id lowercased, lists deduplicated in order)."""
        storage_id = check_uuid(self.id, "info.id")
        if not self.urls:
            raise InvalidArgument("info.urls needs at least one gRPC target of a worker serving the path")
        if len(self.urls) > MAX_URLS:
            raise InvalidArgument(f"info.urls has {len(self.urls)} entries; at most {MAX_URLS}")
        if self.weight > MAX_WEIGHT:
            raise InvalidArgument(f"info.weight {self.weight} is absurd; use 0..{MAX_WEIGHT} (0 = read-only)")
        check_size(self.max_storage, "info.max_storage")
        both = self.allow_types & self.deny_types
        if both:
            raise InvalidArgument(f"{both.label} is in both allow_types and deny_types; list each type in at most one")
        for miner in (*self.allow_miners, *self.deny_miners):
            if not 0 < miner <= MAX_INT63:
                raise InvalidArgument(f"allow_miners/deny_miners: {miner} is not a miner actor id (1..{MAX_INT63})")
        return PathInfo(
            id=storage_id,
            urls=dedupe(check_url(u) for u in self.urls),
            weight=self.weight,
            max_storage=self.max_storage,
            can_seal=self.can_seal,
            can_store=self.can_store,
            groups=dedupe(check_label(g, "group") for g in self.groups),
            allow_to=dedupe(check_label(g, "allow_to group") for g in self.allow_to),
            allow_types=self.allow_types,
            deny_types=self.deny_types,
            allow_miners=dedupe(self.allow_miners),
            deny_miners=dedupe(self.deny_miners),
        )


H = TypeVar("H", str, int)


def dedupe(values: Iterable[H]) -> tuple[H, ...]:
    """The values without repeats, first occurrence first."""
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Health:
    healthy: bool
    last_heartbeat: float  # unix seconds
    error: str = ""


@dataclass(frozen=True)
class PathState:
    """What GetInfo and List return for one path."""

    info: PathInfo
    stat: FsStat
    health: Health
    file_counts: dict[FileType, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Declaration:
    storage_id: str
    sector: SectorId
    file_type: FileType
    primary: bool = False


@dataclass(frozen=True)
class SectorLocation:
    """A path holding (or able to receive) some of a sector's files, as FindSector returns it."""

    id: str
    urls: tuple[str, ...]
    weight: int
    can_seal: bool
    can_store: bool
    primary: bool
    types: FileType
    fetch_candidate: bool
    healthy: bool


@dataclass(frozen=True)
class RejectedPath:
    storage_id: str
    reason: str


@dataclass(frozen=True)
class AllocResult:
    paths: list[PathInfo]
    rejected: list[RejectedPath]


@dataclass(frozen=True)
class RedeclareResult:
    declared: int
    unchanged: int
    dropped: int


@dataclass(frozen=True)
class Lease:
    lease_id: str
    sector: SectorId
    read_types: FileType
    write_types: FileType
    owner: str
    ttl: float  # seconds
    acquired_at: float  # unix seconds
    expires_at: float


@dataclass(frozen=True)
class LockRequest:
    sector: SectorId
    read_types: FileType
    write_types: FileType
    owner: str
    ttl: float | None = None  # None: the configured default
    lease_id: str = ""  # empty: the server picks one

    def checked(self) -> LockRequest:
        """Validates; a type in both sets is locked for writing only."""
        if not self.read_types and not self.write_types:
            raise InvalidArgument("read_types and write_types are both empty: name at least one file type to lock")
        if not self.owner or len(self.owner) > 1024:
            raise InvalidArgument("owner is required (1..1024 characters), e.g. 'worker:<id>/call:<call id>'")
        if self.ttl is not None and self.ttl < 0:
            raise InvalidArgument(f"ttl must not be negative, got {self.ttl}s")
        lease_id = check_uuid(self.lease_id, "lease_id") if self.lease_id else ""
        return LockRequest(
            sector=self.sector,
            read_types=self.read_types & ~self.write_types,
            write_types=self.write_types,
            owner=self.owner,
            ttl=self.ttl,
            lease_id=lease_id,
        )


@dataclass(frozen=True)
class LockAttempt:
    """The outcome of one try: the lease when granted, else the leases in the way."""

    lease: Lease | None
    blocking: list[Lease]
    # Earliest expiry among the blockers: when a waiter should look again at the latest.
    retry_at: float | None = None


def conflicts(held_read: int, held_write: int, want_read: int, want_write: int) -> bool:
    """The reference's rule, per file type: many readers or one writer."""
    return bool(want_write & (held_read | held_write)) or bool(want_read & held_write)
