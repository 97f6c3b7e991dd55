"""Where files may go: the reference's space overheads, path health, the allow/deny filters and
the allocation order, as pure functions (the store feeds them rows; tests feed them values).

Space a sector's files need (tenths of the sector size, the reference's FSOverheadSeal and
FsOverheadFinalized): while sealing unsealed 1x, sealed 1x, cache 14.1x; once finalized
(storage) unsealed 1x, sealed 1x, cache 0.2x. Integer arithmetic as in the reference.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.index.domain import FILE_TYPES, FileType, InvalidArgument, PathInfo, PathType

SECTOR_SIZES: tuple[int, ...] = (2 << 10, 8 << 20, 512 << 20, 32 << 30, 64 << 30)
_SIZE_NAMES = "2048 (2 KiB), 8388608 (8 MiB), 536870912 (512 MiB), 34359738368 (32 GiB), 68719476736 (64 GiB)"

OVERHEAD_DEN = 10
SEAL_OVERHEAD: dict[FileType, int] = {FileType.UNSEALED: 10, FileType.SEALED: 10, FileType.CACHE: 141}
STORE_OVERHEAD: dict[FileType, int] = {FileType.UNSEALED: 10, FileType.SEALED: 10, FileType.CACHE: 2}


def check_sector_size(size: int, what: str = "sector_size") -> int:
    if size not in SECTOR_SIZES:
        raise InvalidArgument(f"{what} {size} is not a supported sector size; use one of {_SIZE_NAMES}")
    return size


def space_needed(types: FileType, sector_size: int, path_type: PathType) -> int:
    """Bytes the given file types of one sector take in a path of that purpose."""
    table = SEAL_OVERHEAD if path_type is PathType.SEALING else STORE_OVERHEAD
    return sum(table[t] * sector_size // OVERHEAD_DEN for t in FILE_TYPES if types & t)


def health_problem(last_heartbeat: float, error: str, now: float, timeout: float) -> str | None:
    """Why a path is unhealthy, or None when it is healthy."""
    if error:
        return f"unhealthy: last report has an error: {error}"
    age = now - last_heartbeat
    if age > timeout:
        return f"unhealthy: last heartbeat {age:.0f}s ago (timeout {timeout:g}s)"
    return None


def type_problem(info: PathInfo, types: FileType) -> str | None:
    """Why the path may not take every one of `types` (its allow_types/deny_types)."""
    for t in FILE_TYPES:
        if not types & t:
            continue
        if info.allow_types and not info.allow_types & t:
            return f"{t.label} not in allow_types ({info.allow_types.label})"
        if info.deny_types & t:
            return f"{t.label} denied by deny_types"
    return None


def miner_problem(info: PathInfo, miner: int | None) -> str | None:
    """Why the path may not take a sector of `miner` (its allow_miners/deny_miners)."""
    if miner is None:
        return None
    if info.allow_miners and miner not in info.allow_miners:
        return f"miner {miner} not in allow_miners"
    if miner in info.deny_miners:
        return f"miner {miner} denied by deny_miners"
    return None


def purpose_problem(info: PathInfo, path_type: PathType) -> str | None:
    if path_type is PathType.SEALING and not info.can_seal:
        return "not can_seal"
    if path_type is PathType.STORAGE and not info.can_store:
        return "not can_store"
    if info.weight == 0:
        return "weight 0 (read-only)"
    return None


def space_problem(need: int, available: int) -> str | None:
    return f"needs {need} bytes, {available} available" if available < need else None


def fetch_groups(holders_allow_to: Iterable[tuple[str, ...]]) -> frozenset[str] | None:
    """The groups a sector's files may be fetched into, given each holder's allow_to: None means
    anywhere (some holder has no allow_to restriction), else the union of the holders' lists."""
    groups: set[str] = set()
    for allow_to in holders_allow_to:
        if not allow_to:
            return None
        groups.update(allow_to)
    return frozenset(groups)


def group_problem(allowed: frozenset[str] | None, candidate_groups: tuple[str, ...]) -> str | None:
    if allowed is None or allowed.intersection(candidate_groups):
        return None
    return f"in none of the holders' allow_to groups ({', '.join(sorted(allowed))})"


def alloc_rank(weight: int, available: int, storage_id: str) -> tuple[int, str]:
    """Sort key, best first: available x weight (the reference's rule), then id for stability."""
    return (-(available * weight), storage_id)
