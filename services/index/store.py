"""The storage map: paths, their health, and which sector file is in which path.

Every public method is one database transaction (`Database.run`), so an RPC either happens
completely or not at all. Decisions that depend on what was read take the locks that make them
safe with several index processes on one PostgreSQL database:
- attach/report health lock the path row against other writers of that row (a URL merge can
  not lose a concurrent merge), without blocking declarations into the path;
- declare locks the path row in share mode (the path cannot be detached under it);
- detach and redeclare lock the path row exclusively (no declaration slips in between reading
  the path's declarations and rewriting them).
On SQLite every write transaction is exclusive anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from services.common.db import Database, Mode, Tx
from services.index.domain import (
    FILE_TYPES,
    AllocResult,
    Declaration,
    FileType,
    FsStat,
    Health,
    InvalidArgument,
    NotFound,
    PathInfo,
    PathState,
    PathType,
    RedeclareResult,
    RejectedPath,
    ResourceExhausted,
    SectorId,
    SectorLocation,
    check_uuid,
    dedupe,
    file_types_of,
)
from services.index.policy import (
    alloc_rank,
    fetch_groups,
    group_problem,
    health_problem,
    miner_problem,
    purpose_problem,
    space_needed,
    space_problem,
    type_problem,
)

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000

_PATH_COLUMNS = (
    "pk, id, urls, weight, max_storage, can_seal, can_store, path_groups, allow_to, allow_types, deny_types, "
    "allow_miners, deny_miners, capacity, available, fs_available, reserved, max_bytes, used, last_heartbeat, heartbeat_error"
)


@dataclass(frozen=True)
class _PathRow:
    pk: int
    info: PathInfo
    stat: FsStat
    last_heartbeat: float
    error: str


@lru_cache(maxsize=8192)
def _json_list(text: str) -> tuple[Any, ...]:
    """A stored JSON list; cached because the same few path rows are read over and over."""
    return tuple(json.loads(text))


_RESERVE_LOCK_NAMESPACE = 0x52455356  # "RESV"
# A reservation nobody releases cannot hold a path longer than this (a caller with a WRITE token
# cannot fence a path off for good; workers ask for 48 hours).
MAX_RESERVATION_TTL_S = 7 * 86400.0

# A released reservation stops counting at the first health report that arrives this long after
# the release (a report generated before the file was written may still be in flight).
RELEASE_SETTLE_S = 2.0


# Bytes reserved on the row's path (a correlated subquery; its one parameter is `now`).
_RESERVED_SUBQUERY = (
    "(SELECT COALESCE(SUM(r.bytes), 0) FROM storage_reservations r WHERE r.storage_id = storage_paths.id"
    " AND r.expires_at >= ?)"
)


def _free_after_reservations(stat: FsStat, held: int) -> int:
    """What a path can still take: its reported free space (net of the reporting worker's own
    reservations), and the file system's free space and the max_storage cap net of every
    reservation in the fleet, whichever is least."""
    # A client that reports no file-system figure (0) is taken at its `available`.
    fs_free = stat.fs_available if stat.fs_available > 0 else stat.available
    free = min(stat.available, fs_free - held)
    if stat.max > 0:
        free = min(free, stat.max - stat.used - held)
    return max(0, free)


def _path_row(row: Sequence[Any]) -> _PathRow:
    info = PathInfo(
        id=row[1],
        urls=_json_list(row[2]),
        weight=int(row[3]),
        max_storage=int(row[4]),
        can_seal=bool(row[5]),
        can_store=bool(row[6]),
        groups=_json_list(row[7]),
        allow_to=_json_list(row[8]),
        allow_types=FileType(int(row[9])),
        deny_types=FileType(int(row[10])),
        allow_miners=_json_list(row[11]),
        deny_miners=_json_list(row[12]),
    )
    stat = FsStat(int(row[13]), int(row[14]), int(row[15]), int(row[16]), int(row[17]), int(row[18]))
    return _PathRow(int(row[0]), info, stat, float(row[19]), str(row[20]))


def _dump(values: Sequence[Any]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


def _info_columns(info: PathInfo) -> tuple[Any, ...]:
    return (
        _dump(info.urls),
        info.weight,
        info.max_storage,
        info.can_seal,
        info.can_store,
        _dump(info.groups),
        _dump(info.allow_to),
        int(info.allow_types),
        int(info.deny_types),
        _dump(info.allow_miners),
        _dump(info.deny_miners),
    )


def _stat_columns(stat: FsStat) -> tuple[int, ...]:
    return (stat.capacity, stat.available, stat.fs_available, stat.reserved, stat.max, stat.used)


def _not_attached(storage_id: str) -> NotFound:
    return NotFound(f"storage path {storage_id} is not attached (StorageAttach it first)")


_TYPE_LISTS = tuple(", ".join(str(int(t)) for t in file_types_of(m)) for m in range(8))


def _type_list(types: FileType) -> str:
    """`1, 4` for SQL `IN (...)`: only ever one of 7 fixed strings, so statements stay cacheable."""
    return _TYPE_LISTS[int(types) & 7]


# -- page tokens ------------------------------------------------------------------------------


def encode_page_token(decl: Declaration) -> str:
    raw = json.dumps(
        [decl.storage_id, decl.sector.miner, decl.sector.number, int(decl.file_type)], separators=(",", ":")
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[str, int, int, int]:
    bad = InvalidArgument(
        "page_token is not a token this server issued: pass next_page_token unchanged, or empty for the first page"
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if (
        not isinstance(value, list)
        or len(value) != 4
        or not isinstance(value[0], str)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])
    ):
        raise bad
    return value[0], value[1], value[2], value[3]


class IndexStore:
    """Paths, health and sector file declarations over the database."""

    def __init__(self, db: Database, heartbeat_timeout: float, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.heartbeat_timeout = heartbeat_timeout
        self.clock = clock

    def _health(self, last_heartbeat: float, error: str, now: float) -> Health:
        healthy = health_problem(last_heartbeat, error, now, self.heartbeat_timeout) is None
        return Health(healthy=healthy, last_heartbeat=last_heartbeat, error=error)

    # -- paths ----------------------------------------------------------------------------------

    async def attach(self, info: PathInfo, stat: FsStat) -> tuple[bool, PathInfo]:
        """Adds a path (recording stat and a heartbeat) or updates one (merging urls)."""
        info = info.checked()
        stat = stat.checked()

        def run(tx: Tx) -> tuple[bool, PathInfo]:
            now = self.clock()
            select = f"SELECT {_PATH_COLUMNS} FROM storage_paths WHERE id = ?{{for_no_key_update}}"
            row = tx.one(select, (info.id,))
            if row is None:
                created = tx.execute(
                    "INSERT INTO storage_paths (id, urls, weight, max_storage, can_seal, can_store, path_groups, allow_to,"
                    " allow_types, deny_types, allow_miners, deny_miners, capacity, available, fs_available, reserved,"
                    " max_bytes, used, last_heartbeat, heartbeat_error, attached_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?) ON CONFLICT (id) DO NOTHING",
                    (info.id, *_info_columns(info), *_stat_columns(stat), now, now),
                )
                if created == 1:
                    return True, info
                row = tx.one(select, (info.id,))  # another replica attached it meanwhile
                assert row is not None
            existing = _path_row(row)
            merged = replace(info, urls=dedupe((*existing.info.urls, *info.urls)))
            tx.execute(
                "UPDATE storage_paths SET urls = ?, weight = ?, max_storage = ?, can_seal = ?, can_store = ?, path_groups = ?,"
                " allow_to = ?, allow_types = ?, deny_types = ?, allow_miners = ?, deny_miners = ? WHERE pk = ?",
                (*_info_columns(merged), existing.pk),
            )
            return False, merged

        return await self.db.run(run)

    async def detach(self, storage_id: str, url: str = "") -> tuple[bool, int]:
        """Removes one url, or the path with its declarations; returns (path removed, dropped)."""
        storage_id = check_uuid(storage_id, "storage_id")

        def run(tx: Tx) -> tuple[bool, int]:
            row = tx.one("SELECT pk, urls FROM storage_paths WHERE id = ?{for_update}", (storage_id,))
            if row is None:
                raise _not_attached(storage_id)
            pk, urls = int(row[0]), list(json.loads(row[1]))
            if url:
                if url not in urls:
                    raise NotFound(
                        f"storage path {storage_id} is not served from {url!r}; its urls are {', '.join(urls)}"
                    )
                remaining = [u for u in urls if u != url]
                if remaining:
                    tx.execute("UPDATE storage_paths SET urls = ? WHERE pk = ?", (_dump(remaining), pk))
                    return False, 0
            dropped = int(tx.scalar("SELECT COUNT(*) FROM sector_files WHERE path_pk = ?", (pk,)))
            tx.execute("DELETE FROM sector_files WHERE path_pk = ?", (pk,))
            tx.execute("DELETE FROM storage_paths WHERE pk = ?", (pk,))
            return True, dropped

        return await self.db.run(run)

    async def get_info(self, storage_id: str) -> PathState:
        storage_id = check_uuid(storage_id, "storage_id")

        rows = await self.db.query(f"SELECT {_PATH_COLUMNS} FROM storage_paths WHERE id = ?", (storage_id,))
        if not rows:
            raise _not_attached(storage_id)
        path = _path_row(rows[0])
        return PathState(path.info, path.stat, self._health(path.last_heartbeat, path.error, self.clock()))

    async def list_paths(self) -> list[PathState]:
        """Every path with stat, health and file counts; largest capacity first, then id."""

        def run(tx: Tx) -> list[PathState]:
            now = self.clock()
            counts: dict[int, dict[FileType, int]] = {}
            for pk, file_type, count in tx.query(
                "SELECT path_pk, file_type, COUNT(*) FROM sector_files GROUP BY path_pk, file_type"
            ):
                counts.setdefault(int(pk), {})[FileType(int(file_type))] = int(count)
            states = []
            for row in tx.query(f"SELECT {_PATH_COLUMNS} FROM storage_paths"):
                path = _path_row(row)
                per_type = counts.get(path.pk, {})
                ordered = {t: per_type[t] for t in FILE_TYPES if per_type.get(t)}
                states.append(
                    PathState(path.info, path.stat, self._health(path.last_heartbeat, path.error, now), ordered)
                )
            states.sort(key=lambda s: (-s.stat.capacity, s.info.id))
            return states

        return await self.db.run(run, Mode.READ)

    async def list_sectors(
        self, storage_id: str = "", sector: SectorId | None = None, page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Declaration], str]:
        """One page of declarations ordered by (storage id, miner, number, type)."""
        storage_id = check_uuid(storage_id, "storage_id") if storage_id else ""
        limit = DEFAULT_PAGE_SIZE if page_size == 0 else min(page_size, MAX_PAGE_SIZE)
        after = decode_page_token(page_token) if page_token else None

        def run(tx: Tx) -> tuple[list[Declaration], str]:
            if storage_id:
                paths = tx.query("SELECT pk, id FROM storage_paths WHERE id = ?", (storage_id,))
                if not paths:
                    raise _not_attached(storage_id)
            else:
                paths = tx.query("SELECT pk, id FROM storage_paths ORDER BY id")
            out: list[Declaration] = []
            for pk, sid in paths:
                if after is not None and sid < after[0]:
                    continue
                where, params = ["path_pk = ?"], [pk]
                if sector is not None:
                    where.append("miner = ? AND number = ?")
                    params += [sector.miner, sector.number]
                if after is not None and sid == after[0]:
                    where.append("(miner, number, file_type) > (?, ?, ?)")
                    params += [after[1], after[2], after[3]]
                rows = tx.query(
                    f"SELECT miner, number, file_type, is_primary FROM sector_files WHERE {' AND '.join(where)}"
                    " ORDER BY miner, number, file_type LIMIT ?",
                    (*params, limit + 1 - len(out)),
                )
                out += [Declaration(sid, SectorId(int(m), int(n)), FileType(int(t)), bool(p)) for m, n, t, p in rows]
                if len(out) > limit:
                    break
            if len(out) > limit:
                return out[:limit], encode_page_token(out[limit - 1])
            return out, ""

        return await self.db.run(run, Mode.READ)

    async def report_health(self, storage_id: str, stat: FsStat, error: str) -> Health:
        storage_id = check_uuid(storage_id, "storage_id")
        stat = stat.checked("report.stat")

        def run(tx: Tx) -> Health:
            now = self.clock()
            changed = tx.execute(
                "UPDATE storage_paths SET capacity = ?, available = ?, fs_available = ?, reserved = ?, max_bytes = ?, used = ?,"
                " last_heartbeat = ?, heartbeat_error = ? WHERE id = ?",
                (*_stat_columns(stat), now, error, storage_id),
            )
            if changed == 0:
                raise NotFound(
                    f"storage path {storage_id} is not attached: StorageAttach it again (it may have been detached)"
                )
            # This report's free space shows what released reservations wrote: they stop counting.
            tx.execute(
                "DELETE FROM storage_reservations WHERE storage_id = ? AND ((released_at > 0 AND released_at <= ?)"
                " OR expires_at < ?)",
                (storage_id, now - RELEASE_SETTLE_S, now),
            )
            return self._health(now, error, now)

        return await self.db.run(run)

    # -- declarations ---------------------------------------------------------------------------

    async def declare(self, storage_id: str, sector: SectorId, types: FileType, primary: bool) -> None:
        storage_id = check_uuid(storage_id, "storage_id")
        if not types:
            raise InvalidArgument("types is empty: name the file types present (UNSEALED, SEALED, CACHE)")

        def run(tx: Tx) -> None:
            pk = tx.scalar(DECLARE_PATH_SQL, (storage_id,))
            if pk is None:
                raise _not_attached(storage_id)
            rows = [(sector.miner, sector.number, int(t), pk, primary) for t in file_types_of(types)]
            tx.executemany(upsert_sql(primary), rows)

        await self.db.run(run)

    async def drop(self, storage_id: str, sector: SectorId, types: FileType) -> None:
        storage_id = check_uuid(storage_id, "storage_id")
        if not types:
            raise InvalidArgument("types is empty: name the file types to forget (UNSEALED, SEALED, CACHE)")

        def run(tx: Tx) -> None:
            tx.execute(
                "DELETE FROM sector_files WHERE path_pk = (SELECT pk FROM storage_paths WHERE id = ?)"
                f" AND miner = ? AND number = ? AND file_type IN ({_type_list(types)})",
                (storage_id, sector.miner, sector.number),
            )

        await self.db.run(run)

    async def require_path(self, storage_id: str) -> str:
        """The normalized id of an attached path, else NotFound (checked early by redeclare)."""
        storage_id = check_uuid(storage_id, "storage_id")

        if not await self.db.query("SELECT pk FROM storage_paths WHERE id = ?", (storage_id,)):
            raise _not_attached(storage_id)
        return storage_id

    async def redeclare(
        self, storage_id: str, declarations: dict[tuple[int, int, int], bool], drop_missing: bool
    ) -> RedeclareResult:
        """Makes the path's declarations match `declarations` ((miner, number, type) -> primary),
        adding and upgrading, and with drop_missing removing the rest, in one transaction."""
        storage_id = check_uuid(storage_id, "storage_id")

        def run(tx: Tx) -> RedeclareResult:
            pk = tx.scalar("SELECT pk FROM storage_paths WHERE id = ?{for_update}", (storage_id,))
            if pk is None:
                raise _not_attached(storage_id)
            existing = {
                (int(m), int(n), int(t)): bool(p)
                for m, n, t, p in tx.query(
                    "SELECT miner, number, file_type, is_primary FROM sector_files WHERE path_pk = ?", (pk,)
                )
            }
            new = [(m, n, t, pk, p) for (m, n, t), p in declarations.items() if (m, n, t) not in existing]
            upgrade = [(m, n, t, pk) for (m, n, t), p in declarations.items() if p and existing.get((m, n, t)) is False]
            missing = [(m, n, t, pk) for (m, n, t) in existing if (m, n, t) not in declarations] if drop_missing else []
            tx.executemany(upsert_sql(True), new)
            tx.executemany(
                "UPDATE sector_files SET is_primary = TRUE WHERE miner = ? AND number = ? AND file_type = ? AND path_pk = ?",
                upgrade,
            )
            tx.executemany(
                "DELETE FROM sector_files WHERE miner = ? AND number = ? AND file_type = ? AND path_pk = ?", missing
            )
            declared = len(new) + len(upgrade)
            return RedeclareResult(declared=declared, unchanged=len(declarations) - declared, dropped=len(missing))

        return await self.db.run(run)

    # -- queries for placement ------------------------------------------------------------------

    async def find(
        self, sector: SectorId, types: FileType, sector_size: int, allow_fetch: bool
    ) -> list[SectorLocation]:
        """Holders of any of `types` (by weight), then, with allow_fetch, paths to fetch into."""
        if not types:
            raise InvalidArgument("types is empty: name the file types looked for (UNSEALED, SEALED, CACHE)")

        if not allow_fetch:  # one indexed query: no transaction, no thread hop
            holders, _, _ = self._holders(await self.db.query(find_holders_sql(types), (sector.miner, sector.number)))
            return holders

        def run(tx: Tx) -> list[SectorLocation]:
            now = self.clock()
            holders, pks, holder_allow_to = self._holders(
                tx.query(find_holders_sql(types), (sector.miner, sector.number))
            )
            if not holders:
                return holders
            return holders + self._fetch_candidates(
                tx, now, sector, types, sector_size, pks, fetch_groups(holder_allow_to)
            )

        return await self.db.run(run, Mode.READ)  # reads every path: on the pool

    def _holders(self, rows: list[tuple[Any, ...]]) -> tuple[list[SectorLocation], set[int], list[tuple[str, ...]]]:
        """FindSector's holders from find_holders_sql rows: (locations by weight, their path keys,
        their allow_to lists)."""
        now = self.clock()
        grouped: dict[int, list[Any]] = {}
        for row in rows:
            entry = grouped.get(row[0])
            if entry is None:
                grouped[row[0]] = [row, int(row[9]), bool(row[10])]
            else:
                entry[1] |= int(row[9])
                entry[2] = entry[2] or bool(row[10])
        holders = []
        holder_allow_to = []
        for row, found, primary in grouped.values():
            holders.append(
                SectorLocation(
                    id=row[1],
                    urls=_json_list(row[2]),
                    weight=int(row[3]) * int(found).bit_count(),
                    can_seal=bool(row[4]),
                    can_store=bool(row[5]),
                    primary=primary,
                    types=FileType(found),
                    fetch_candidate=False,
                    healthy=health_problem(float(row[7]), str(row[8]), now, self.heartbeat_timeout) is None,
                )
            )
            holder_allow_to.append(_json_list(row[6]))
        holders.sort(key=lambda loc: (-loc.weight, loc.id))
        return holders, set(grouped), holder_allow_to

    def _fetch_candidates(
        self,
        tx: Tx,
        now: float,
        sector: SectorId,
        types: FileType,
        sector_size: int,
        holders: set[int],
        allowed: frozenset[str] | None,
    ) -> list[SectorLocation]:
        need = space_needed(types, sector_size, PathType.SEALING)
        rows = tx.query(
            f"SELECT {_PATH_COLUMNS} FROM storage_paths WHERE can_seal AND weight > 0 AND heartbeat_error = ''"
            " AND last_heartbeat >= ? AND available >= ?",
            (now - self.heartbeat_timeout, need),
        )
        ranked = []
        for row in rows:
            path = _path_row(row)
            if path.pk in holders:
                continue
            info = path.info
            if group_problem(allowed, info.groups) or type_problem(info, types) or miner_problem(info, sector.miner):
                continue
            ranked.append((alloc_rank(info.weight, path.stat.available, info.id), info))
        ranked.sort(key=lambda item: item[0])
        return [
            SectorLocation(
                id=info.id,
                urls=info.urls,
                weight=0,
                can_seal=info.can_seal,
                can_store=info.can_store,
                primary=False,
                types=FileType(0),
                fetch_candidate=True,
                healthy=True,
            )
            for _, info in ranked
        ]

    async def reserve(self, storage_id: str, size: int, owner: str, ttl_s: float) -> tuple[str, int]:
        """Reserves `size` bytes on a path against every worker's reservations there; returns
        (reservation id, bytes free after it). ResourceExhausted when they do not fit."""
        storage_id = check_uuid(storage_id, "storage_id")
        if not 0 < size < 2**63:
            raise InvalidArgument(f"bytes must be > 0 and below 2^63, got {size}")
        if not 0 < ttl_s <= MAX_RESERVATION_TTL_S:
            raise InvalidArgument(
                f"ttl must be a positive duration of at most {MAX_RESERVATION_TTL_S / 86400:g} days, got {ttl_s:g} s"
            )

        def run(tx: Tx) -> tuple[str, int]:
            now = self.clock()
            pk = tx.scalar(DECLARE_PATH_SQL, (storage_id,))
            if pk is None:
                raise _not_attached(storage_id)
            # One reservation of a path at a time across every index replica: the check below
            # and the insert must see each other (SQLite write transactions already do).
            tx.advisory_lock(_RESERVE_LOCK_NAMESPACE, int(pk))
            row = tx.one(
                f"SELECT {_PATH_COLUMNS}, {_RESERVED_SUBQUERY} FROM storage_paths WHERE id = ?", (now, storage_id)
            )
            if row is None:
                raise _not_attached(storage_id)
            path, held = _path_row(row[:-1]), int(row[-1] or 0)
            free = _free_after_reservations(path.stat, held)
            if size > free:
                raise ResourceExhausted(
                    f"storage path {storage_id} has {free} bytes free with {held} reserved by the fleet; "
                    f"{size} were asked: choose another path or wait for space"
                )
            reservation_id = str(uuid.uuid4())
            tx.execute(
                "INSERT INTO storage_reservations (reservation_id, storage_id, owner, bytes, created_at, expires_at,"
                " released_at) VALUES (?, ?, ?, ?, ?, ?, 0)",
                (reservation_id, storage_id, owner, size, now, now + ttl_s),
            )
            return reservation_id, free - size

        return await self.db.run(run)

    async def release_reservation(self, reservation_id: str, stat: FsStat | None = None) -> bool:
        """Ends a reservation. With `stat` (the path measured after the files were written) it
        stops counting at once and the stat becomes the path's latest; without, its bytes count
        until the path's next health report."""
        reservation_id = check_uuid(reservation_id, "reservation_id")
        checked = stat.checked("stat") if stat is not None else None

        def run(tx: Tx) -> bool:
            row = tx.one(
                "SELECT storage_id FROM storage_reservations WHERE reservation_id = ? AND released_at = 0",
                (reservation_id,),
            )
            if row is None:
                return False
            if checked is None:
                tx.execute(
                    "UPDATE storage_reservations SET released_at = ? WHERE reservation_id = ?",
                    (self.clock(), reservation_id),
                )
                return True
            tx.execute(
                "UPDATE storage_paths SET capacity = ?, available = ?, fs_available = ?, reserved = ?, max_bytes = ?,"
                " used = ? WHERE id = ?",
                (*_stat_columns(checked), row[0]),
            )
            tx.execute("DELETE FROM storage_reservations WHERE reservation_id = ?", (reservation_id,))
            return True

        return await self.db.run(run)

    async def best_alloc(
        self,
        types: FileType,
        sector_size: int,
        path_type: PathType,
        miner: int | None = None,
        storage_ids: Sequence[str] = (),
        include_rejected: bool = False,
    ) -> AllocResult:
        """Paths that can take new files of `types`, best first (available x weight)."""
        if not types:
            raise InvalidArgument("types is empty: name the file types to allocate (UNSEALED, SEALED, CACHE)")
        wanted = dedupe(check_uuid(s, "storage_ids") for s in storage_ids)
        need = space_needed(types, sector_size, path_type)

        def run(tx: Tx) -> AllocResult:
            now = self.clock()
            # One statement (this runs on the read pool): each path with the bytes reserved on it.
            select = f"SELECT {_PATH_COLUMNS}, {_RESERVED_SUBQUERY} FROM storage_paths"
            if wanted:
                marks = ", ".join("?" for _ in wanted)
                rows = tx.query(f"{select} WHERE id IN ({marks})", [now, *wanted])
            else:
                rows = tx.query(select, [now])
            ranked = []
            rejected = []
            seen = set()
            for row in rows:
                path = _path_row(row[:-1])
                info = path.info
                seen.add(info.id)
                free = _free_after_reservations(path.stat, int(row[-1] or 0))
                problem = (
                    purpose_problem(info, path_type)
                    or health_problem(path.last_heartbeat, path.error, now, self.heartbeat_timeout)
                    or type_problem(info, types)
                    or miner_problem(info, miner)
                    or space_problem(need, free)
                )
                if problem:
                    rejected.append(RejectedPath(info.id, problem))
                else:
                    ranked.append((alloc_rank(info.weight, free, info.id), info))
            rejected += [RejectedPath(s, "not attached") for s in wanted if s not in seen]
            ranked.sort(key=lambda item: item[0])
            rejected.sort(key=lambda r: r.storage_id)
            return AllocResult([info for _, info in ranked], rejected if include_rejected else [])

        return await self.db.run(run, Mode.READ_ONE)  # reads every path: on the pool


def find_holders_sql(types: FileType) -> str:
    """FindSector's one query: the declarations of a sector's requested types, with their paths."""
    return (
        "SELECT p.pk, p.id, p.urls, p.weight, p.can_seal, p.can_store, p.allow_to, p.last_heartbeat,"
        " p.heartbeat_error, f.file_type, f.is_primary"
        " FROM sector_files f JOIN storage_paths p ON p.pk = f.path_pk"
        f" WHERE f.miner = ? AND f.number = ? AND f.file_type IN ({_type_list(types)})"
    )


# DeclareSector: the path, locked against a concurrent detach until commit.
DECLARE_PATH_SQL = "SELECT pk FROM storage_paths WHERE id = ?{for_key_share}"


def upsert_sql(primary: bool) -> str:
    """Insert a declaration; an existing one is left alone, or upgraded to primary."""
    insert = "INSERT INTO sector_files (miner, number, file_type, path_pk, is_primary) VALUES (?, ?, ?, ?, ?)"
    if primary:
        return (
            insert + " ON CONFLICT (miner, number, file_type, path_pk) DO UPDATE SET is_primary = TRUE"
            " WHERE excluded.is_primary AND NOT sector_files.is_primary"
        )
    return insert + " ON CONFLICT (miner, number, file_type, path_pk) DO NOTHING"
