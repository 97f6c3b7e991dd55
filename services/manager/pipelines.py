"""The manager's side of the sector lifecycle (lifecycle.py): one lock per sector so that the
check of its record and the queuing of its work happen as one step, the sector's work in
flight, and the guard that drops work of a generation that is no longer current."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from services.manager import lifecycle
from services.manager.calltracker import CallTracker, LiveWork
from services.manager.records import WorkRecord, WorkStatus
from services.manager.store import ManagerStore

_LIVE = (WorkStatus.QUEUED, WorkStatus.RUNNING)


class Pipelines:
    def __init__(self, store: ManagerStore, tracker: CallTracker) -> None:
        self.store = store
        self.tracker = tracker
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}
        self._users: dict[tuple[int, int], int] = {}

    @contextlib.asynccontextmanager
    async def locked(self, miner: int, number: int) -> AsyncIterator[None]:
        """Serializes the calls of one sector while they check its record and queue work
        (not while they wait for the work)."""
        key = (miner, number)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key]
                del self._locks[key]

    def live_works(self, miner: int, number: int) -> list[LiveWork]:
        """The sector's works not finished yet (any generation); O(the sector's live works)."""
        return [w for w in self.tracker.live_of(miner, number) if w.record.status in _LIVE]

    def in_flight(self, record: lifecycle.SectorRecord | None, miner: int, number: int) -> list[lifecycle.InFlight]:
        """The work of the sector's current generation still queued or running."""
        generation = record.generation if record is not None else 0
        return [
            lifecycle.InFlight(w.record.method, w.work_id)
            for w in self.live_works(miner, number)
            if w.record.generation == generation
        ]

    async def unwanted(self, work: WorkRecord) -> str | None:
        """Why a work must not run any more (the job runner's work guard), or None."""
        record = await self.store.sector(work.miner, work.number)
        if record is None:
            return None
        if record.removed:
            return f"{record.name} was removed: its work of generation {work.generation} is dropped"
        if work.generation and work.generation != record.generation:
            return (
                f"{record.name} is at generation {record.generation} (a new pipeline started after a Remove): "
                f"this work of generation {work.generation} is dropped"
            )
        return None
