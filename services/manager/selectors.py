"""Selectors: which workers may run a request, and which of them to prefer.

A selector is resolved (asking the index) before its request enters the scheduler, into
`Candidates`: a short list of *preferred* workers (they already hold the sector's files, best
first) and a *pool* of other acceptable workers (any worker enabling the task type, or the
workers owning a path the index named). The scheduler itself then never waits on the network.

The three selectors are the reference's (§3.7 of lotus-detail.md):
- task: the worker enables the task type (C2 needs no sector files); prefer workers with fewer
  task types so general-purpose workers stay free;
- existing: a path of the worker holds the sector's files of the given types; with allow_fetch
  also any worker with a sealing path that can receive them (it fetches first). Unlike the
  reference (which ranks holders and fetchers alike by utilization), the fetchers are offered
  only while no holder can run the task at all (task type off, worker disabled or gone): moving
  a 32 GiB sector's cache (14x the sector) costs more than waiting for the holder to be free.
  The periodic selector refresh re-decides when a holder's state changes;
- alloc: a path of the worker can take new files of the given types (the index's BestAlloc).
Beyond the reference, alloc can prefer the workers that already hold some of the sector's
files (PC1 on the worker that has the unsealed data, MoveStorage on the worker that has the
sealed replica), so files move only when they must.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from services.manager.accounting import WaitReason
from services.manager.index_client import FileType, PathType, StorageIndex, describe_index_failure, is_unavailable
from services.manager.tasks import TaskType

log = logging.getLogger(__name__)

# Index answers about where new files can go change slowly; a burst of AddPiece requests shares
# one BestAlloc answer for this long.
ALLOC_CACHE_S = 1.0


@dataclass(frozen=True)
class Candidates:
    """The workers a request accepts."""

    # Workers to try first, best first (they hold the sector's files).
    preferred: tuple[str, ...] = ()
    # Other acceptable workers; None = none besides the preferred ones (unless anywhere).
    pool: frozenset[str] | None = None
    # Every worker that enables the task type is acceptable.
    anywhere: bool = False
    # Rank pool workers by fewest task types first, then utilization (the task selector's rule);
    # otherwise by utilization only.
    specialized_first: bool = False
    # Why a worker outside these candidates is not acceptable (for SchedDiag).
    reason: WaitReason = WaitReason.SECTOR_FILES_ELSEWHERE

    def accepts(self, worker_id: str) -> bool:
        return self.anywhere or worker_id in self.preferred or (self.pool is not None and worker_id in self.pool)

    @property
    def empty(self) -> bool:
        return not self.anywhere and not self.preferred and not self.pool


ANYWHERE = Candidates(anywhere=True, specialized_first=True, reason=WaitReason.TASK_TYPE_NOT_ENABLED)
# The index does not answer: a request that needs locality waits rather than landing on a worker
# that lacks the sector's files (and failing there, retry after retry).
INDEX_DOWN = Candidates(reason=WaitReason.INDEX_UNAVAILABLE)
# Without an index the manager cannot know where files are: any worker enabling the type.
NO_INDEX = Candidates(anywhere=True, reason=WaitReason.TASK_TYPE_NOT_ENABLED)


@dataclass(frozen=True)
class SectorKey:
    miner: int
    number: int
    sector_size: int


def _always(worker_id: str, task_type: TaskType) -> bool:
    return True


@dataclass
class SelectorContext:
    """What resolving a selector needs: the index (None when not configured), which workers
    own a storage path (from their registrations), and whether a worker could run a task type
    at all (connected, enabled, type enabled, big enough)."""

    index: StorageIndex | None
    workers_of_path: Callable[[str], Iterable[str]]
    can_run: Callable[[str, TaskType], bool] = _always
    clock: Callable[[], float] = time.monotonic
    _alloc_cache: dict[tuple[frozenset[FileType], int, PathType, int | None], tuple[float, list[str]]] = field(
        default_factory=dict
    )

    def owners(self, storage_ids: Iterable[str]) -> list[str]:
        """Worker ids owning the paths, in the paths' order, without repeats."""
        seen: dict[str, None] = {}
        for sid in storage_ids:
            for wid in self.workers_of_path(sid):
                seen.setdefault(wid, None)
        return list(seen)

    async def best_alloc(
        self, types: frozenset[FileType], sector_size: int, path_type: PathType, miner: int | None
    ) -> list[str]:
        assert self.index is not None
        key = (types, sector_size, path_type, miner)
        now = self.clock()
        hit = self._alloc_cache.get(key)
        if hit is not None and now - hit[0] < ALLOC_CACHE_S:
            return hit[1]
        paths = await self.index.best_alloc(sorted(types), sector_size, path_type, miner)
        if len(self._alloc_cache) > 1024:
            self._alloc_cache.clear()
        self._alloc_cache[key] = (now, paths)
        return paths


class Selector(Protocol):
    """Resolves to the workers a request accepts."""

    async def resolve(self, ctx: SelectorContext) -> Candidates: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class TaskSelector:
    """Any worker that enables the task type (C2: no sector files needed)."""

    async def resolve(self, ctx: SelectorContext) -> Candidates:
        return ANYWHERE

    def describe(self) -> str:
        return "task"


@dataclass(frozen=True)
class FixedSelector:
    """Exactly these workers (work on a copy a known worker holds: ReleaseUnsealed, PoSt)."""

    workers: tuple[str, ...]

    async def resolve(self, ctx: SelectorContext) -> Candidates:
        return Candidates(preferred=self.workers, reason=WaitReason.SECTOR_FILES_ELSEWHERE)

    def describe(self) -> str:
        return f"fixed({','.join(self.workers)})"


def _types(types: Iterable[FileType]) -> str:
    return "|".join(t.name.lower() for t in sorted(types))


@dataclass(frozen=True)
class ExistingSelector:
    """Workers holding the sector's files of `types`; with allow_fetch also workers that can
    receive them. Holders come first, by the index's weight (paths holding more of the types)."""

    sector: SectorKey
    types: frozenset[FileType]
    allow_fetch: bool
    # The task it selects for: fetchers are offered only when no holder can run it.
    task_type: TaskType | None = None

    async def resolve(self, ctx: SelectorContext) -> Candidates:
        if ctx.index is None:
            return NO_INDEX
        try:
            locations = await ctx.index.find_sector(
                self.sector.miner, self.sector.number, sorted(self.types), self.sector.sector_size, self.allow_fetch
            )
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            _log_index_failure(ctx, exc, "FindSector failed; the request waits for the index")
            return INDEX_DOWN
        holders = [loc for loc in locations if not loc.fetch_candidate]
        holders.sort(key=lambda loc: (not loc.healthy, -loc.weight))
        preferred = ctx.owners(loc.storage_id for loc in holders)
        pool: frozenset[str] | None = None
        holders_can_run = self.task_type is not None and any(ctx.can_run(w, self.task_type) for w in preferred)
        if self.allow_fetch and not holders_can_run:
            # Not minus the holders: pools are shared between requests (the scheduler keeps one
            # lane per distinct pool), and the holders are tried first anyway.
            pool = frozenset(ctx.owners(loc.storage_id for loc in locations if loc.fetch_candidate)) or None
        return Candidates(preferred=tuple(preferred), pool=pool, reason=WaitReason.SECTOR_FILES_ELSEWHERE)

    def describe(self) -> str:
        return f"existing({_types(self.types)}{', fetch' if self.allow_fetch else ''})"


@dataclass(frozen=True)
class AllocSelector:
    """Workers with a path that can take new files of `types` for this sector size and purpose;
    those that already hold the sector's `prefer_holders_of` files come first."""

    sector: SectorKey
    types: frozenset[FileType]
    path_type: PathType
    prefer_holders_of: frozenset[FileType] = frozenset()

    async def resolve(self, ctx: SelectorContext) -> Candidates:
        if ctx.index is None:
            return NO_INDEX
        try:
            paths = await ctx.best_alloc(self.types, self.sector.sector_size, self.path_type, self.sector.miner)
            holders: list[str] = []
            if self.prefer_holders_of:
                locations = await ctx.index.find_sector(
                    self.sector.miner,
                    self.sector.number,
                    sorted(self.prefer_holders_of),
                    self.sector.sector_size,
                    False,
                )
                holders = ctx.owners(loc.storage_id for loc in sorted(locations, key=lambda loc: -loc.weight))
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            _log_index_failure(ctx, exc, "BestAlloc failed; the request waits for the index")
            return INDEX_DOWN
        pool = frozenset(ctx.owners(paths))
        preferred = tuple(w for w in holders if w in pool)
        return Candidates(preferred=preferred, pool=pool or None, reason=WaitReason.NO_STORAGE)

    def describe(self) -> str:
        return f"alloc({_types(self.types)}, {self.path_type.name.lower()})"


def _log_index_failure(ctx: SelectorContext, exc: Exception, action: str) -> None:
    """One line naming the index and its address (index_client.describe_index_failure)."""
    message, extra = describe_index_failure(str(getattr(ctx.index, "address", "")), exc, action)
    log.warning(message, extra=extra)


def selector_to_json(selector: Selector) -> str:
    """A selector as JSON, stored with its work so that a restarted manager can schedule it."""
    if isinstance(selector, TaskSelector):
        data: dict[str, object] = {"kind": "task"}
    elif isinstance(selector, FixedSelector):
        data = {"kind": "fixed", "workers": list(selector.workers)}
    elif isinstance(selector, ExistingSelector):
        data = {
            "kind": "existing",
            "miner": selector.sector.miner,
            "number": selector.sector.number,
            "size": selector.sector.sector_size,
            "types": sorted(int(t) for t in selector.types),
            "allow_fetch": selector.allow_fetch,
            "task": int(selector.task_type) if selector.task_type else 0,
        }
    elif isinstance(selector, AllocSelector):
        data = {
            "kind": "alloc",
            "miner": selector.sector.miner,
            "number": selector.sector.number,
            "size": selector.sector.sector_size,
            "types": sorted(int(t) for t in selector.types),
            "path_type": int(selector.path_type),
            "prefer": sorted(int(t) for t in selector.prefer_holders_of),
        }
    else:
        raise TypeError(f"cannot store selector {selector!r}")
    return json.dumps(data, sort_keys=True)


def selector_from_json(text: str) -> Selector:
    data = json.loads(text)
    kind = data["kind"]
    if kind == "task":
        return TaskSelector()
    if kind == "fixed":
        return FixedSelector(tuple(data["workers"]))
    sector = SectorKey(int(data["miner"]), int(data["number"]), int(data["size"]))
    types = frozenset(FileType(t) for t in data["types"])
    if kind == "existing":
        task = int(data.get("task", 0))
        return ExistingSelector(sector, types, bool(data["allow_fetch"]), TaskType(task) if task else None)
    if kind == "alloc":
        return AllocSelector(sector, types, PathType(data["path_type"]), frozenset(FileType(t) for t in data["prefer"]))
    raise ValueError(f"unknown selector kind {kind!r}")
