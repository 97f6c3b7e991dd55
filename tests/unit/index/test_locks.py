"""The index's sector file locks (services/index/locks.py) in-process, on a real SQLite file and a
real PostgreSQL database, through LockManager's public API only: many readers or one writer per
sector and file type, types and sectors independent; idempotent lease ids; ttl clamping, expiry
(a fake clock, so a lapse is exact), renewal and unlock; and waiting: a blocked StorageLock
reports what is in its way, is woken by an unlock or the blocker's lapse, gives up at its
deadline and ends when the index drains; release_later frees a lease in the background.

The same rules seen through gRPC, across processes, are in tests/integration/index/test_locks.py;
here each rule is pinned to the module that implements it, fast enough to run on every change."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from services.common.db import apply_migrations, open_database
from services.index.domain import (
    AlreadyExists,
    DeadlineExceeded,
    FileType,
    InvalidArgument,
    Lease,
    LockRequest,
    NotFound,
    SectorId,
    Unavailable,
)
from services.index.locks import LockManager, LockSettings, Waiting
from services.index.schema import COMPONENT, MIGRATIONS

UNSEALED, SEALED, CACHE = FileType.UNSEALED, FileType.SEALED, FileType.CACHE
NONE = FileType(0)
S1, S2 = SectorId(1000, 1), SectorId(1000, 2)
SETTINGS = LockSettings(ttl_default=60.0, ttl_min=5.0, ttl_max=600.0, retry_max=1.0, waiting_repeat=10.0)


class FakeClock:
    """Wall-clock time the test moves by hand, so a lease lapses exactly when the test says."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    return str(request.getfixturevalue("postgres").new_database())


def run_locks(
    db_url: str,
    body: Callable[[LockManager], Awaitable[None]],
    settings: LockSettings = SETTINGS,
    clock: Callable[[], float] = time.time,
) -> None:
    """Runs `body` against a LockManager on a freshly migrated index database, as the index
    service wires it (start() subscribes to other replicas' notifications), then waits for its
    background releases and closes the database."""

    async def main() -> None:
        db = open_database(db_url, Path("/nonexistent"), "index")
        try:
            apply_migrations(db, COMPONENT, MIGRATIONS)
            locks = LockManager(db, settings, clock)
            locks.start()
            await body(locks)
            await locks.finish_background()
        finally:
            await db.aclose()

    asyncio.run(main())


def request(
    sector: SectorId = S1,
    read: FileType = NONE,
    write: FileType = NONE,
    owner: str = "worker:a",
    ttl: float | None = None,
    lease_id: str = "",
) -> LockRequest:
    return LockRequest(sector, read, write, owner, ttl, lease_id)


async def granted(locks: LockManager, req: LockRequest) -> Lease:
    attempt = await locks.try_lock(req)
    assert attempt.lease is not None, f"{req} blocked by {attempt.blocking}"
    assert attempt.blocking == []
    return attempt.lease


async def blocked_by(locks: LockManager, req: LockRequest) -> list[str]:
    attempt = await locks.try_lock(req)
    assert attempt.lease is None, f"{req} was granted"
    return [lease.lease_id for lease in attempt.blocking]


def test_one_writer_excludes_writers_and_readers_of_its_type_only(db_url: str) -> None:
    async def body(locks: LockManager) -> None:
        writer = await granted(locks, request(write=SEALED, owner="worker:a"))
        assert (writer.sector, writer.read_types, writer.write_types, writer.owner) == (S1, NONE, SEALED, "worker:a")
        assert await blocked_by(locks, request(write=SEALED, owner="worker:b")) == [writer.lease_id]
        assert await blocked_by(locks, request(read=SEALED, owner="worker:b")) == [writer.lease_id]
        # A request that wants the sealed file among others is blocked as a whole.
        assert await blocked_by(locks, request(read=CACHE | SEALED, owner="worker:b")) == [writer.lease_id]
        # Other file types of the sector, and the same type of another sector, are independent.
        await granted(locks, request(write=CACHE, owner="worker:b"))
        await granted(locks, request(read=UNSEALED, owner="worker:b"))
        await granted(locks, request(S2, write=SEALED, owner="worker:b"))
        attempt = await locks.try_lock(request(write=SEALED, owner="worker:c"))
        assert attempt.retry_at == writer.expires_at  # a waiter looks again when the writer's lease lapses

    run_locks(db_url, body)


def test_readers_share_and_a_writer_waits_for_all_of_them(db_url: str) -> None:
    async def body(locks: LockManager) -> None:
        first = await granted(locks, request(read=SEALED | CACHE, owner="worker:a"))
        second = await granted(locks, request(read=SEALED, owner="worker:b"))
        assert await blocked_by(locks, request(write=SEALED, owner="worker:c")) == [first.lease_id, second.lease_id]
        assert await blocked_by(locks, request(write=CACHE, owner="worker:c")) == [first.lease_id]
        assert await locks.unlock(first.lease_id) is True
        assert await blocked_by(locks, request(write=SEALED, owner="worker:c")) == [second.lease_id]
        await granted(locks, request(write=CACHE, owner="worker:c"))

    run_locks(db_url, body)


def test_a_type_asked_for_both_reading_and_writing_is_locked_for_writing(db_url: str) -> None:
    async def body(locks: LockManager) -> None:
        lease = await granted(locks, request(read=SEALED | CACHE, write=SEALED))
        assert (lease.read_types, lease.write_types) == (CACHE, SEALED)
        await blocked_by(locks, request(read=SEALED, owner="worker:b"))

    run_locks(db_url, body)


def test_bad_requests_are_refused_before_touching_the_database(db_url: str) -> None:
    async def body(locks: LockManager) -> None:
        with pytest.raises(InvalidArgument, match="both empty"):
            await locks.try_lock(request())
        with pytest.raises(InvalidArgument, match="owner is required"):
            await locks.try_lock(request(write=SEALED, owner=""))
        with pytest.raises(InvalidArgument, match="ttl must not be negative"):
            await locks.try_lock(request(write=SEALED, ttl=-1))
        with pytest.raises(InvalidArgument):
            await locks.try_lock(request(write=SEALED, lease_id="not-a-uuid"))
        assert await locks.list_locks() == []

    run_locks(db_url, body)


def test_a_lease_id_is_idempotent_for_the_same_request_and_refused_for_another(db_url: str) -> None:
    async def body(locks: LockManager) -> None:
        lease_id = str(uuid.uuid4())
        first = await granted(locks, request(write=SEALED, lease_id=lease_id))
        assert first.lease_id == lease_id
        # The same request again (a client retrying after a lost reply) gets the same lease.
        assert await granted(locks, request(write=SEALED, lease_id=lease_id)) == first
        with pytest.raises(AlreadyExists, match=lease_id):
            await locks.try_lock(request(write=CACHE, lease_id=lease_id))
        with pytest.raises(AlreadyExists, match=lease_id):
            await locks.try_lock(request(S2, write=SEALED, lease_id=lease_id))
        assert [lease.lease_id for lease in await locks.list_locks()] == [lease_id]

    run_locks(db_url, body)


def test_ttls_are_clamped_to_the_configured_range(db_url: str) -> None:
    clock = FakeClock()

    async def body(locks: LockManager) -> None:
        default = await granted(locks, request(S1, write=SEALED))
        short = await granted(locks, request(S2, write=SEALED, ttl=0.5))
        long = await granted(locks, request(S2, write=CACHE, ttl=10_000))
        exact = await granted(locks, request(S2, write=UNSEALED, ttl=42))
        assert [lease.ttl for lease in (default, short, long, exact)] == [60.0, 5.0, 600.0, 42.0]
        for lease in (default, short, long, exact):
            assert (lease.acquired_at, lease.expires_at) == (clock.now, clock.now + lease.ttl)

    run_locks(db_url, body, clock=clock)


def test_an_expired_lease_no_longer_blocks_and_the_sweeper_deletes_it(db_url: str) -> None:
    clock = FakeClock()

    async def body(locks: LockManager) -> None:
        old = await granted(locks, request(write=SEALED, owner="worker:dead", ttl=10))
        kept = await granted(locks, request(S2, write=SEALED, owner="worker:alive", ttl=100))
        clock.advance(9.9)
        await blocked_by(locks, request(write=SEALED, owner="worker:b"))
        clock.advance(0.1)  # exactly at expires_at the lease is over
        assert [lease.lease_id for lease in await locks.list_locks()] == [kept.lease_id]
        assert await locks.list_locks(S1) == []
        new = await granted(locks, request(write=SEALED, owner="worker:b", ttl=10))
        # The lapsed row is gone as soon as the sweeper runs; the live ones stay.
        clock.advance(10)
        assert await locks.sweep() == 1  # sectors whose waiters it woke: S1 (old and new lapsed)
        assert await locks.sweep() == 0
        assert [lease.lease_id for lease in await locks.list_locks()] == [kept.lease_id]
        # A lapsed lease cannot be released or renewed: its holder lost the lock.
        assert await locks.unlock(old.lease_id) is False
        with pytest.raises(NotFound, match="lock is lost"):
            await locks.renew(new.lease_id, None)

    run_locks(db_url, body, clock=clock)


def test_unlock_lapsed_but_not_swept_reports_false_and_frees_the_row(db_url: str) -> None:
    clock = FakeClock()

    async def body(locks: LockManager) -> None:
        lease = await granted(locks, request(write=SEALED, ttl=10))
        clock.advance(11)
        assert await locks.unlock(lease.lease_id) is False
        assert await locks.sweep() == 0  # unlock removed the row already

    run_locks(db_url, body, clock=clock)


def test_renew_extends_from_now_and_may_change_the_ttl(db_url: str) -> None:
    clock = FakeClock()

    async def body(locks: LockManager) -> None:
        lease = await granted(locks, request(write=SEALED, ttl=10))
        clock.advance(8)
        renewed = await locks.renew(lease.lease_id, None)  # same ttl, counted from now
        assert (renewed.ttl, renewed.expires_at, renewed.acquired_at) == (10.0, clock.now + 10, lease.acquired_at)
        clock.advance(8)  # past the first expiry: still held
        await blocked_by(locks, request(write=SEALED, owner="worker:b"))
        longer = await locks.renew(lease.lease_id, 30)
        assert (longer.ttl, longer.expires_at) == (30.0, clock.now + 30)
        clamped = await locks.renew(lease.lease_id, 1)
        assert (clamped.ttl, clamped.expires_at) == (5.0, clock.now + 5)
        with pytest.raises(InvalidArgument, match="ttl must not be negative"):
            await locks.renew(lease.lease_id, -1)
        with pytest.raises(NotFound):
            await locks.renew(str(uuid.uuid4()), None)
        with pytest.raises(InvalidArgument):
            await locks.renew("not-a-uuid", None)
        clock.advance(5)
        with pytest.raises(NotFound, match="lock is lost"):
            await locks.renew(lease.lease_id, None)

    run_locks(db_url, body, clock=clock)


def test_unlock_frees_the_lock_once(db_url: str) -> None:
    async def body(locks: LockManager) -> None:
        lease = await granted(locks, request(write=SEALED))
        assert await locks.unlock(lease.lease_id) is True
        assert await locks.unlock(lease.lease_id) is False
        assert await locks.unlock(str(uuid.uuid4())) is False
        with pytest.raises(InvalidArgument):
            await locks.unlock("not-a-uuid")
        await granted(locks, request(write=SEALED, owner="worker:b"))

    run_locks(db_url, body)


async def collect(locks: LockManager, req: LockRequest, deadline: float | None = None) -> list[Waiting | Lease]:
    return [message async for message in locks.acquire(req, deadline)]


def test_a_waiter_reports_its_blockers_and_is_woken_by_the_unlock(db_url: str) -> None:
    # retry_max far beyond the test's bound: only the unlock's wake-up can make the grant prompt.
    settings = LockSettings(retry_max=60.0, waiting_repeat=60.0)

    async def body(locks: LockManager) -> None:
        holder = await granted(locks, request(write=SEALED, owner="worker:a", ttl=120))
        messages: list[Waiting | Lease] = []
        reported = asyncio.Event()

        async def wait() -> None:
            async for message in locks.acquire(request(read=SEALED, owner="worker:b")):
                messages.append(message)
                reported.set()

        waiter = asyncio.create_task(wait())
        await asyncio.wait_for(reported.wait(), 10)
        assert messages == [Waiting([holder])]
        assert locks.wakeups.waiting() == 1
        started = time.monotonic()
        assert await locks.unlock(holder.lease_id) is True
        await asyncio.wait_for(waiter, 10)
        assert time.monotonic() - started < 5
        assert len(messages) == 2 and isinstance(messages[1], Lease)
        assert (messages[1].owner, messages[1].read_types) == ("worker:b", SEALED)
        assert locks.wakeups.waiting() == 0

    run_locks(db_url, body, settings)


def test_a_waiter_gets_the_lock_when_the_blocker_lapses(db_url: str) -> None:
    # A holder that died never unlocks: the waiter looks again when its lease expires (retry_at),
    # not only every retry_max.
    settings = LockSettings(ttl_min=0.1, retry_max=60.0, waiting_repeat=60.0)

    async def body(locks: LockManager) -> None:
        await granted(locks, request(write=SEALED, owner="worker:dead", ttl=0.5))
        started = time.monotonic()
        messages = await asyncio.wait_for(collect(locks, request(write=SEALED, owner="worker:b")), 10)
        assert isinstance(messages[0], Waiting) and isinstance(messages[-1], Lease)
        assert messages[-1].owner == "worker:b"
        assert time.monotonic() - started < 5

    run_locks(db_url, body, settings)


def test_a_granted_request_yields_only_the_lease(db_url: str) -> None:
    async def body(locks: LockManager) -> None:
        messages = await collect(locks, request(write=SEALED))
        assert len(messages) == 1 and isinstance(messages[0], Lease)
        assert await locks.list_locks(S1) == messages

    run_locks(db_url, body)


def test_a_waiter_gives_up_at_its_deadline_naming_the_holder(db_url: str) -> None:
    settings = LockSettings(retry_max=0.05)

    async def body(locks: LockManager) -> None:
        holder = await granted(locks, request(write=SEALED, owner="worker:a", ttl=120))
        deadline = asyncio.get_running_loop().time() + 0.3
        messages: list[Waiting | Lease] = []
        with pytest.raises(DeadlineExceeded, match=f"worker:a \\({holder.lease_id}\\)"):
            async for message in locks.acquire(request(write=SEALED, owner="worker:b"), deadline):
                messages.append(message)
        assert messages == [Waiting([holder])]
        assert [lease.lease_id for lease in await locks.list_locks()] == [holder.lease_id]

    run_locks(db_url, body, settings)


def test_draining_ends_blocked_waiters_with_unavailable(db_url: str) -> None:
    settings = LockSettings(retry_max=60.0, waiting_repeat=60.0)

    async def body(locks: LockManager) -> None:
        await granted(locks, request(write=SEALED, ttl=120))
        waiting = asyncio.Event()

        async def wait() -> None:
            async for _ in locks.acquire(request(write=SEALED, owner="worker:b")):
                waiting.set()

        waiter = asyncio.create_task(wait())
        await asyncio.wait_for(waiting.wait(), 10)
        locks.drain()
        with pytest.raises(Unavailable, match="shutting down"):
            await asyncio.wait_for(waiter, 10)
        with pytest.raises(Unavailable):
            await collect(locks, request(S2, write=SEALED))

    run_locks(db_url, body, settings)


def test_release_later_frees_the_lease_in_the_background(db_url: str) -> None:
    async def body(locks: LockManager) -> None:
        lease = await granted(locks, request(write=SEALED))
        locks.release_later(lease.lease_id)
        await locks.finish_background()
        assert await locks.list_locks() == []
        await granted(locks, request(write=SEALED, owner="worker:b"))

    run_locks(db_url, body)
