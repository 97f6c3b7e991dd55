"""Sector file locks as leases in the database.

Per sector and file type: any number of readers or one writer (the reference's rule); different
types are independent. A lock is a row with an owner and an expiry: the holder renews it, and a
holder that dies simply stops renewing, so its locks lapse after their ttl instead of staying
stuck forever (the reference ties a lock to a JSON-RPC context; a gRPC fleet needs leases).

Granting is one transaction that first takes an advisory lock on the sector (PostgreSQL) or the
write lock (SQLite), then reads the live leases of the sector and inserts the new one only if
none conflicts: with several index processes on one database, two writers can never both see
"free". Expired rows are ignored by every query, so expiry needs no sweeper to take effect; the
sweeper only deletes them and wakes waiters.

Waiting (StorageLock): each try registers a wake-up for the sector first, then tries; an unlock
or sweep in this process wakes local waiters directly, one in another process arrives by
PostgreSQL NOTIFY, and a waiter also looks again when the earliest blocking lease expires and at
least every `retry_max` seconds, so a missed notification costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import Counter, Gauge

from services.common.db import Database, Mode, Tx
from services.index.domain import (
    AlreadyExists,
    DeadlineExceeded,
    FileType,
    InvalidArgument,
    Lease,
    LockAttempt,
    LockRequest,
    NotFound,
    SectorId,
    Unavailable,
    check_uuid,
    conflicts,
)

log = logging.getLogger(__name__)

LEASES_GRANTED = Counter("sectorstorage_index_leases_granted_total", "Sector lock leases granted")
LEASES_EXPIRED = Counter(
    "sectorstorage_index_leases_expired_total", "Sector lock leases deleted by the sweeper after they lapsed"
)
LOCK_WAITERS = Gauge("sectorstorage_index_lock_waiters", "StorageLock calls of this process waiting for a lock")

NOTIFY_CHANNEL = "sectorstorage_index_locks"
_SECTOR_LOCK_NAMESPACE = 0x5353_4C4B  # "SSLK"
_LEASE_COLUMNS = "lease_id, miner, number, read_types, write_types, owner, ttl, acquired_at, expires_at"


@dataclass(frozen=True)
class LockSettings:
    ttl_default: float = 60.0
    ttl_min: float = 5.0
    ttl_max: float = 600.0
    # Longest a blocked StorageLock sleeps before trying again without being woken.
    retry_max: float = 1.0
    # How often a blocked StorageLock repeats its `waiting` message.
    waiting_repeat: float = 10.0


@dataclass(frozen=True)
class Waiting:
    """A blocked StorageLock's progress report: the leases in the way."""

    blocking: list[Lease]


def _lease(row: Sequence[Any]) -> Lease:
    return Lease(
        lease_id=str(row[0]),
        sector=SectorId(int(row[1]), int(row[2])),
        read_types=FileType(int(row[3])),
        write_types=FileType(int(row[4])),
        owner=str(row[5]),
        ttl=float(row[6]),
        acquired_at=float(row[7]),
        expires_at=float(row[8]),
    )


def _sector_key(sector: SectorId) -> int:
    return sector.miner * 1_000_003 + sector.number


class Wakeups:
    """Per-sector events for waiters of this process (used on the event loop thread only)."""

    def __init__(self) -> None:
        self._events: dict[SectorId, set[asyncio.Event]] = {}

    def register(self, sector: SectorId) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(sector, set()).add(event)
        return event

    def unregister(self, sector: SectorId, event: asyncio.Event) -> None:
        events = self._events.get(sector)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[sector]

    def wake(self, sector: SectorId) -> None:
        for event in self._events.get(sector, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()

    def waiting(self) -> int:
        return sum(len(e) for e in self._events.values())


class LockManager:
    def __init__(self, db: Database, settings: LockSettings, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.wakeups = Wakeups()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False
        self._background: set[asyncio.Task[Any]] = set()
        LOCK_WAITERS.set_function(self.wakeups.waiting)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Call on the event loop: subscribes to other replicas' unlock notifications."""
        self._loop = asyncio.get_running_loop()
        self.db.listen(NOTIFY_CHANNEL, self._on_notify)

    def _on_notify(self, payload: str) -> None:
        miner, _, number = payload.partition(":")
        if self._loop is not None and miner.isdigit() and number.isdigit():
            self._loop.call_soon_threadsafe(self.wakeups.wake, SectorId(int(miner), int(number)))

    def drain(self) -> None:
        """Blocked StorageLock calls end with UNAVAILABLE (the client retries elsewhere)."""
        self._draining = True
        self.wakeups.wake_all()

    async def finish_background(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- requests ---------------------------------------------------------------------------------

    def clamp_ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self.settings.ttl_default
        return min(max(ttl, self.settings.ttl_min), self.settings.ttl_max)

    def prepare(self, request: LockRequest) -> LockRequest:
        """Validates, clamps the ttl, and picks a lease id when the client did not."""
        request = request.checked()
        return replace(request, ttl=self.clamp_ttl(request.ttl), lease_id=request.lease_id or str(uuid.uuid4()))

    def _attempt(self, tx: Tx, req: LockRequest) -> LockAttempt:
        assert req.ttl is not None
        now = self.clock()
        tx.advisory_lock(_SECTOR_LOCK_NAMESPACE, _sector_key(req.sector))
        row = tx.one(f"SELECT {_LEASE_COLUMNS} FROM sector_locks WHERE lease_id = ?", (req.lease_id,))
        if row is not None:
            lease = _lease(row)
            if lease.expires_at > now:
                same = (lease.sector, lease.read_types, lease.write_types, lease.owner) == (
                    req.sector,
                    req.read_types,
                    req.write_types,
                    req.owner,
                )
                if same:
                    return LockAttempt(lease, [])
                raise AlreadyExists(
                    f"lease_id {req.lease_id} is already used by a different lock request ({lease.owner} on {lease.sector}); "
                    "pick a new lease_id for a new request"
                )
            tx.execute("DELETE FROM sector_locks WHERE lease_id = ?", (req.lease_id,))
        live = [
            _lease(r)
            for r in tx.query(
                f"SELECT {_LEASE_COLUMNS} FROM sector_locks WHERE miner = ? AND number = ? AND expires_at > ? ORDER BY acquired_at, lease_id",
                (req.sector.miner, req.sector.number, now),
            )
        ]
        blocking = [
            held for held in live if conflicts(held.read_types, held.write_types, req.read_types, req.write_types)
        ]
        if blocking:
            return LockAttempt(None, blocking, retry_at=min(b.expires_at for b in blocking))
        lease = Lease(req.lease_id, req.sector, req.read_types, req.write_types, req.owner, req.ttl, now, now + req.ttl)
        inserted = tx.execute(
            f"INSERT INTO sector_locks ({_LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (lease_id) DO NOTHING",
            (
                lease.lease_id,
                lease.sector.miner,
                lease.sector.number,
                int(lease.read_types),
                int(lease.write_types),
                lease.owner,
                lease.ttl,
                lease.acquired_at,
                lease.expires_at,
            ),
        )
        if inserted != 1:
            raise AlreadyExists(f"lease_id {req.lease_id} was just used by another lock request; pick a new lease_id")
        return LockAttempt(lease, [])

    async def try_lock(self, request: LockRequest) -> LockAttempt:
        """One try, never waits."""
        req = self.prepare(request)
        attempt = await self.db.run(lambda tx: self._attempt(tx, req))
        if attempt.lease is not None:
            LEASES_GRANTED.inc()
        return attempt

    async def acquire(
        self, request: LockRequest, deadline: float | None = None
    ) -> AsyncGenerator[Waiting | Lease, None]:
        """Yields Waiting (at once when blocked, then every `waiting_repeat`) until the lock is
        granted, then the Lease. `deadline` is in event-loop time. Cancellation-safe: a grant
        that completes after the caller was cancelled is released."""
        req = self.prepare(request)
        loop = asyncio.get_running_loop()
        told_at: float | None = None
        while True:
            if self._draining:
                raise Unavailable("the index is shutting down; retry StorageLock (on another replica if there is one)")
            event = self.wakeups.register(req.sector)
            try:
                attempt = await self._shielded_attempt(req)
                if attempt.lease is not None:
                    yield attempt.lease
                    return
                now = loop.time()
                if deadline is not None and now >= deadline:
                    raise DeadlineExceeded(
                        f"lock on {req.sector} not granted before the deadline; held by {_holders(attempt.blocking)}"
                    )
                if told_at is None or now - told_at >= self.settings.waiting_repeat:
                    yield Waiting(attempt.blocking)
                    told_at = loop.time()
                delay = min(self.settings.retry_max, told_at + self.settings.waiting_repeat - loop.time())
                if attempt.retry_at is not None:
                    delay = min(delay, attempt.retry_at - self.clock() + 0.005)
                if deadline is not None:
                    delay = min(delay, deadline - loop.time())
                if delay > 0:
                    try:
                        await asyncio.wait_for(event.wait(), delay)
                    except TimeoutError:
                        pass
            finally:
                self.wakeups.unregister(req.sector, event)

    async def _shielded_attempt(self, req: LockRequest) -> LockAttempt:
        task = asyncio.ensure_future(self.db.run(lambda tx: self._attempt(tx, req)))
        try:
            attempt = await asyncio.shield(task)
            if attempt.lease is not None:
                LEASES_GRANTED.inc()
            return attempt
        except asyncio.CancelledError:
            self._spawn(self._release_when_done(task, req.lease_id))
            raise

    async def _release_when_done(self, task: asyncio.Future[LockAttempt], lease_id: str) -> None:
        try:
            attempt = await task
        except Exception:  # noqa: BLE001 - nothing was granted
            return
        if attempt.lease is not None:
            await self.unlock(lease_id)
            log.info("released a lease granted after its caller went away", extra={"lease_id": lease_id})

    def release_later(self, lease_id: str) -> None:
        """Releases a lease in the background (its `acquired` message could not be sent)."""
        self._spawn(self.unlock(lease_id))

    async def renew(self, lease_id: str, ttl: float | None) -> Lease:
        lease_id = check_uuid(lease_id, "lease_id")
        if ttl is not None and ttl < 0:
            raise InvalidArgument(f"ttl must not be negative, got {ttl}s")
        new_ttl = None if ttl is None else self.clamp_ttl(ttl)

        def run(tx: Tx) -> Lease:
            now = self.clock()
            if new_ttl is None:
                row = tx.one(
                    f"UPDATE sector_locks SET expires_at = ? + ttl WHERE lease_id = ? AND expires_at > ? RETURNING {_LEASE_COLUMNS}",
                    (now, lease_id, now),
                )
            else:
                row = tx.one(
                    f"UPDATE sector_locks SET ttl = ?, expires_at = ? WHERE lease_id = ? AND expires_at > ? RETURNING {_LEASE_COLUMNS}",
                    (new_ttl, now + new_ttl, lease_id, now),
                )
            if row is None:
                raise NotFound(
                    f"lease {lease_id} expired or was released: the lock is lost, stop using the files and lock again"
                )
            return _lease(row)

        return await self.db.run(run)

    async def unlock(self, lease_id: str) -> bool:
        """Releases a lease; False when it was unknown or had already expired."""
        lease_id = check_uuid(lease_id, "lease_id")

        def run(tx: Tx) -> tuple[bool, SectorId | None]:
            row = tx.one("DELETE FROM sector_locks WHERE lease_id = ? RETURNING miner, number, expires_at", (lease_id,))
            if row is None:
                return False, None
            sector = SectorId(int(row[0]), int(row[1]))
            tx.notify(NOTIFY_CHANNEL, f"{sector.miner}:{sector.number}")
            return float(row[2]) > self.clock(), sector

        released, sector = await self.db.run(run)
        if sector is not None:
            self.wakeups.wake(sector)
        return released

    async def list_locks(self, sector: SectorId | None = None) -> list[Lease]:
        def run(tx: Tx) -> list[Lease]:
            now = self.clock()
            if sector is None:
                rows = tx.query(
                    f"SELECT {_LEASE_COLUMNS} FROM sector_locks WHERE expires_at > ? ORDER BY miner, number, acquired_at, lease_id",
                    (now,),
                )
            else:
                rows = tx.query(
                    f"SELECT {_LEASE_COLUMNS} FROM sector_locks WHERE miner = ? AND number = ? AND expires_at > ?"
                    " ORDER BY acquired_at, lease_id",
                    (sector.miner, sector.number, now),
                )
            return [_lease(r) for r in rows]

        return await self.db.run(run, Mode.READ_ONE)

    async def sweep(self) -> int:
        """Deletes expired leases and wakes their sectors' waiters; returns how many."""

        def run(tx: Tx) -> tuple[list[SectorId], int]:
            rows = tx.query("DELETE FROM sector_locks WHERE expires_at <= ? RETURNING miner, number", (self.clock(),))
            sectors = sorted({SectorId(int(m), int(n)) for m, n in rows})
            for sector in sectors:
                tx.notify(NOTIFY_CHANNEL, f"{sector.miner}:{sector.number}")
            return sectors, len(rows)

        sectors, expired = await self.db.run(run)
        LEASES_EXPIRED.inc(expired)
        for sector in sectors:
            self.wakeups.wake(sector)
        return len(sectors)


def _holders(leases: Sequence[Lease]) -> str:
    return ", ".join(f"{lease.owner} ({lease.lease_id})" for lease in leases) or "nobody"
