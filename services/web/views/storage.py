"""The storage page: every path the index knows with a capacity bar (against max_storage when
set, else the file system, as `sectorctl storage list`), what is reserved and free, its health,
weight, roles, sector file counts and the workers that serve it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.web.model import StoragePath
from services.web.views.format import Bar, age, size

LEVEL_WORDS = {"ok": "", "busy": "filling up", "nearly-full": "nearly full", "full": "full"}


@dataclass(frozen=True)
class PathCard:
    storage_id: str
    bar: Bar
    fullness: str
    limit: str
    available: str
    reserved: str
    fs_free: str
    healthy: bool
    health: str
    weight: int
    roles: str
    groups: str
    counts: str
    workers: tuple[str, ...]
    urls: tuple[str, ...]


@dataclass(frozen=True)
class StoragePage:
    paths: tuple[PathCard, ...]
    summary: str
    # The worker list could not be read (the manager is down): paths show without it.
    workers_known: bool


def used_and_limit(p: StoragePath) -> tuple[int, int]:
    """(used, limit) for the bar: against max_storage when set, else the file system."""
    if p.max_storage:
        return p.used, p.max_storage
    return p.capacity - p.fs_available, p.capacity


def build(paths: Sequence[StoragePath], workers: Mapping[str, list[str]] | None, now: float) -> StoragePage:
    cards = []
    total_used = total_limit = 0
    for p in sorted(paths, key=lambda p: p.storage_id):
        used, limit = used_and_limit(p)
        total_used += used
        total_limit += limit
        bar = Bar("used", used, limit, f"{size(used)} / {size(limit)}")
        roles = "/".join(r for r, on in (("seal", p.can_seal), ("store", p.can_store)) if on) or "none"
        if p.healthy:
            health = f"healthy (report {age(p.last_heartbeat, now)})"
        else:
            health = "UNHEALTHY" + (
                f": {p.health_error}" if p.health_error else f" (last report {age(p.last_heartbeat, now)})"
            )
        cards.append(
            PathCard(
                storage_id=p.storage_id,
                bar=bar,
                fullness=LEVEL_WORDS[bar.level],
                limit="max-storage" if p.max_storage else "file system",
                available=size(p.available),
                reserved=size(p.reserved),
                fs_free=size(p.fs_available),
                healthy=p.healthy,
                health=health,
                weight=p.weight,
                roles=roles,
                groups=", ".join(p.groups),
                counts=", ".join(f"{n} {t}" for t, n in p.file_counts) or "no sector files",
                workers=tuple((workers or {}).get(p.storage_id, [])),
                urls=p.urls,
            )
        )
    summary = f"{len(cards)} path(s), {size(total_used)} used of {size(total_limit)}"
    return StoragePage(tuple(cards), summary, workers is not None)
