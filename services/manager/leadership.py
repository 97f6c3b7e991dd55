"""Which manager leads: a lease in the manager's database, fenced by an epoch.

Several managers may share one PostgreSQL database; exactly one of them (the leader) schedules,
dispatches and writes. The lease is one row (`manager_leadership`): its holder, the address it
serves on, when it expires, and the epoch, a number that rises with every change of holder. The
leader renews the row every few seconds; a standby takes it over once it has expired (or was
released by a leader that stopped), raising the epoch.

Fencing does not rely on timing. Once a manager leads, every write transaction it runs begins by
reading the lease row with a share lock (`fence`, installed as the database's write guard) and
is refused (`Fenced`) unless the row still names this manager with the epoch it took. A takeover
updates that row, so it waits for writes in flight to commit, and every write after it fails: a
deposed leader that wakes up from a pause, or whose network comes back, cannot record anything.
(The lease's expiry uses the candidates' clocks, which must be roughly in sync, as NTP keeps
them; a skewed clock can make a takeover early, never two writers.)

A leader that froze in the middle of sending a statement leaves its session "active" on the
server, holding its share lock on the lease row with no timeout that ends it (PostgreSQL's
idle-in-transaction timeout only ends sessions waiting between statements). So a standby that
finds the lease expired first ends the expired holder's sessions that are inside a transaction
(each manager names its sessions after itself: `db_session_name`), then takes the row.

SQLite is the single-manager default: a second manager pointed at a SQLite file whose lease
another live manager holds is refused at start (`HeldElsewhere`), naming the holder and saying
to use PostgreSQL for several managers.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from services.common.db import Database, DatabaseUnavailable, Dialect, Tx
from services.common.db.engine import Row
from services.common.errors import FailedPrecondition, Unavailable

log = logging.getLogger(__name__)

_ROW = (
    "SELECT holder, address, epoch, acquired_at, renewed_at, expires_at, failovers FROM manager_leadership WHERE id = 1"
)


def holder_name(host: str, address: str, session: str) -> str:
    """A manager's name in the lease: host, serving address and process session (unique)."""
    return f"{host}/{address}/{session}"


def db_session_name(session: str) -> str:
    """The application_name of a manager process's database sessions (fits PostgreSQL's 63)."""
    return f"sectorstorage-manager/{session}"[:63]


def _session_of(holder: str) -> str:
    return holder.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Lease:
    """The lease row as read: who leads (empty before anyone did), and until when."""

    holder: str
    address: str
    epoch: int
    acquired_at: float
    renewed_at: float
    expires_at: float
    # Changes of holder so far (the first leader counts none).
    failovers: int

    def live(self, now: float) -> bool:
        return bool(self.holder) and self.expires_at > now


class NotLeader(Unavailable):
    """This manager does not lead (a standby, or deposed): ask the leader."""


class Fenced(NotLeader):
    """A write refused because another manager took the lease since this one did."""


class HeldElsewhere(FailedPrecondition):
    """A second manager on a SQLite file another manager holds."""


def _lease(row: Row) -> Lease:
    holder, address, epoch, acquired, renewed, expires, failovers = row
    return Lease(str(holder), str(address), int(epoch), float(acquired), float(renewed), float(expires), int(failovers))


class FileOwnership:
    """An exclusive lock on `<sqlite file>.manager-lock`, held while the process lives. The kernel
    drops it when the process dies, however it dies, so a second live manager is refused at once
    and a manager restarted after a crash never waits for its predecessor's lease to lapse."""

    def __init__(self, database_file: Path) -> None:
        self.path = database_file.with_name(database_file.name + ".manager-lock")
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise HeldElsewhere(
                f"another manager process holds the SQLite database {database_file} (lock {self.path}): "
                "SQLite is the single-manager default, one manager per database file; run several "
                'managers on PostgreSQL (database url = "postgresql://...") instead'
            ) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Leadership:
    """One manager's side of the lease: take it, keep it, give it back, and fence its writes.

    `exclusive`: this process alone can reach the database (it holds the SQLite file's
    FileOwnership), so a live-looking lease of another holder is a crashed manager's, taken over
    at once."""

    def __init__(
        self,
        db: Database,
        holder: str,
        address: str,
        ttl_s: float,
        clock: Callable[[], float] = time.time,
        *,
        exclusive: bool = False,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"the lease's ttl must be positive (got {ttl_s})")
        self.db = db
        self.holder = holder
        self.address = address
        self.ttl_s = ttl_s
        self.clock = clock
        self.exclusive = exclusive
        # The epoch this manager leads with; None while it does not lead.
        self.epoch: int | None = None

    async def current(self) -> Lease:
        """The lease as the database has it now."""
        row = await self.db.run(lambda tx: tx.one(_ROW), unguarded=True)
        if row is None:
            raise NotLeader("the manager's database has no lease row: run the migrations")
        return _lease(row)

    async def try_acquire(self) -> Lease | None:
        """Takes the lease if it is free or expired (or renews it if this manager holds it);
        returns it when this manager now leads, else None. On SQLite a live lease of another
        manager is refused with HeldElsewhere (one manager per SQLite file)."""
        now = self.clock()
        if self.epoch is None and self.db.dialect is Dialect.POSTGRESQL:
            # Look before locking: a standby polling a live lease must not queue behind the
            # leader's writes (they hold the row's share lock).
            seen = await self.current()
            if seen.live(now):
                return None
            if seen.holder and seen.holder != self.holder:
                await self._end_sessions_of(seen.holder)

        def take(tx: Tx) -> Lease | None:
            row = tx.one(_ROW + "{for_update}")
            if row is None:
                raise NotLeader("the manager's database has no lease row: run the migrations")
            lease = _lease(row)
            if lease.holder == self.holder and lease.epoch == self.epoch:
                tx.execute(
                    "UPDATE manager_leadership SET renewed_at = ?, expires_at = ?, address = ? WHERE id = 1",
                    (now, now + self.ttl_s, self.address),
                )
                return Lease(
                    self.holder, self.address, lease.epoch, lease.acquired_at, now, now + self.ttl_s, lease.failovers
                )
            if lease.live(now) and not self.exclusive:
                if self.db.dialect is Dialect.SQLITE:
                    raise HeldElsewhere(
                        f"another manager ({lease.holder}, serving on {lease.address or 'an unknown address'}) "
                        f"holds this SQLite database (its lease runs {lease.expires_at - now:.1f} s more): "
                        "SQLite is the single-manager default, one manager per database file; "
                        'run several managers on PostgreSQL (database = "postgresql://...") instead'
                    )
                return None
            epoch = lease.epoch + 1
            failovers = lease.failovers + (1 if lease.holder else 0)
            tx.execute(
                "UPDATE manager_leadership SET holder = ?, address = ?, epoch = ?, acquired_at = ?,"
                " renewed_at = ?, expires_at = ?, failovers = ? WHERE id = 1",
                (self.holder, self.address, epoch, now, now, now + self.ttl_s, failovers),
            )
            return Lease(self.holder, self.address, epoch, now, now, now + self.ttl_s, failovers)

        lease = await self.db.run(take, unguarded=True)
        if lease is not None:
            self.epoch = lease.epoch
            self.db.write_guard = self.fence
        return lease

    async def _end_sessions_of(self, holder: str) -> None:
        """Ends the database sessions of a holder whose lease expired that are inside a
        transaction: a frozen process's, which would hold the takeover up indefinitely. Its
        other sessions hold no lock and are left alone."""
        name = db_session_name(_session_of(holder))
        try:
            ended = await self._terminate(name)
        except Exception as exc:  # noqa: BLE001 - e.g. no right to end another role's sessions
            # Ending them only spares the wait; the takeover itself does not need it (it waits
            # for the sessions' own timeouts instead), so it must never stop the takeover.
            log.warning(
                "could not end the database sessions of the manager whose lease expired; taking over anyway",
                extra={"holder": holder, "error": str(exc)},
            )
            return
        if ended:
            log.warning(
                "ended the database sessions of the manager whose lease expired",
                extra={"holder": holder, "sessions": ended},
            )

    async def _terminate(self, name: str) -> list[int]:
        """Ends the sessions named `name` that are inside a transaction; returns their pids."""
        rows = await self.db.run(
            lambda tx: tx.query(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?"
                " AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')"
                " AND pid <> pg_backend_pid()",
                (name,),
            ),
            unguarded=True,
        )
        return [int(r[0]) for r in rows]

    async def renew(self) -> Lease:
        """Extends this manager's lease; NotLeader when it was taken over meanwhile (this
        manager must stop leading at once: its writes are refused from now on anyway)."""
        epoch = self.epoch
        if epoch is None:
            raise NotLeader(f"manager {self.holder} does not lead")
        now = self.clock()

        def extend(tx: Tx) -> Lease | None:
            changed = tx.execute(
                "UPDATE manager_leadership SET renewed_at = ?, expires_at = ? WHERE id = 1 AND holder = ? AND epoch = ?",
                (now, now + self.ttl_s, self.holder, epoch),
            )
            row = tx.one(_ROW)
            return _lease(row) if changed == 1 and row is not None else None

        lease = await self.db.run(extend, unguarded=True)
        if lease is None:
            self.epoch = None
            raise NotLeader(f"manager {self.holder} lost the lease it took with epoch {epoch}")
        return lease

    async def release(self) -> None:
        """Gives the lease up at once (a clean stop), so a standby takes over without waiting
        for it to expire. Nothing when this manager does not lead."""
        epoch = self.epoch
        if epoch is None:
            return
        self.epoch = None
        await self.db.run(
            lambda tx: tx.execute(
                "UPDATE manager_leadership SET expires_at = 0 WHERE id = 1 AND holder = ? AND epoch = ?",
                (self.holder, epoch),
            ),
            unguarded=True,
        )

    def fence(self, tx: Tx) -> None:
        """The write guard: refuses the transaction unless this manager still holds the lease
        with its epoch. The share lock keeps a takeover waiting until this transaction ends."""
        row = tx.one("SELECT holder, epoch FROM manager_leadership WHERE id = 1{for_share}")
        epoch = self.epoch
        if row is None or epoch is None or row[0] != self.holder or int(row[1]) != epoch:
            holder, current = (row[0], row[1]) if row is not None else ("nobody", "?")
            raise Fenced(
                f"manager {self.holder} no longer leads (it took epoch {epoch}; {holder} leads with epoch "
                f"{current}): its write is refused"
            )


class Campaign:
    """A manager's side of the election over time: stand by until the lease is free, lead
    (renewing it every `renew_every_s`), and stop leading at once when it is lost, or when the
    database has been unreachable for so long that the lease may have expired (another manager
    may lead by then; its writes would be refused anyway, but neither should this one dispatch).

    `on_elected` runs once this manager leads (start scheduling, answer the API, report ready);
    `on_deposed` once it no longer does, with the reason (the process then exits: it restarts as
    a standby, with no half-led state left in memory).
    """

    def __init__(
        self,
        leadership: Leadership,
        on_elected: Callable[[Lease], Awaitable[None]],
        on_deposed: Callable[[str], Awaitable[None]],
        *,
        renew_every_s: float,
        poll_every_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < renew_every_s < leadership.ttl_s:
            raise ValueError(f"renew_every_s ({renew_every_s}) must be positive and below the ttl ({leadership.ttl_s})")
        self.leadership = leadership
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.renew_every_s = renew_every_s
        self.poll_every_s = poll_every_s
        self.monotonic = monotonic
        self.lease: Lease | None = None

    async def run(self) -> str:
        """Campaigns until deposed; returns why it stopped leading."""
        self.lease = await self._win()
        await self.on_elected(self.lease)
        reason = await self._hold()
        self.lease = None
        await self.on_deposed(reason)
        return reason

    async def _win(self) -> Lease:
        last_holder = None
        while True:
            try:
                lease = await self.leadership.try_acquire()
            except DatabaseUnavailable as exc:
                log.warning("cannot reach the database to campaign for the lease", extra={"error": str(exc)})
                lease = None
            except HeldElsewhere:
                raise
            except Exception:  # a standby that stopped campaigning would never take over
                log.exception("campaigning for the lease failed; trying again")
                lease = None
            if lease is not None:
                log.info(
                    "this manager leads",
                    extra={"epoch": lease.epoch, "holder": lease.holder, "failovers": lease.failovers},
                )
                return lease
            current = await self._current()
            if current is not None and current.holder != last_holder:
                last_holder = current.holder
                log.info("standing by", extra={"leader": current.holder, "leader_address": current.address})
            await asyncio.sleep(self.poll_every_s)

    async def _current(self) -> Lease | None:
        try:
            return await self.leadership.current()
        except (DatabaseUnavailable, NotLeader):
            return None

    async def _hold(self) -> str:
        # Measured on this process's monotonic clock: from the last renewal that reached the
        # database, the lease certainly lasts ttl_s (the database's copy may only be later).
        renewed = self.monotonic()
        while True:
            await asyncio.sleep(self.renew_every_s)
            started = self.monotonic()
            # A renewal that hangs (a partition that drops packets rather than refusing them)
            # counts as failed once waiting longer could outlast the lease.
            budget = max(0.05, self.leadership.ttl_s - (started - renewed) - self.renew_every_s)
            try:
                self.lease = await asyncio.wait_for(self.leadership.renew(), timeout=budget)
                renewed = started  # the database's expiry counts from before this renewal
            except NotLeader as exc:
                log.error("this manager lost the lease", extra={"error": str(exc)})
                return str(exc)
            except (DatabaseUnavailable, TimeoutError) as exc:
                left = self.leadership.ttl_s - (self.monotonic() - renewed)
                log.warning(
                    "cannot renew the lease: the database is unreachable",
                    extra={"error": str(exc) or "no answer in time", "lease_left_s": round(left, 2)},
                )
                if left <= self.renew_every_s:
                    self.leadership.epoch = None
                    return (
                        f"the database was unreachable for {self.monotonic() - renewed:.1f} s: the lease may have "
                        "expired, so this manager stops leading"
                    )
