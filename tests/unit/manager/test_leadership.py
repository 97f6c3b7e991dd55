"""The leader lease (services/manager/leadership.py) on SQLite and a real PostgreSQL server:
one leader at a time, takeover only after expiry or release with a higher epoch, and a deposed
leader's writes refused by the database itself, even the one racing the takeover."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from services.common.db import Database, DatabaseUnavailable, Tx
from services.manager.leadership import (
    Campaign,
    Fenced,
    HeldElsewhere,
    Leadership,
    Lease,
    NotLeader,
    db_session_name,
    holder_name,
)
from services.manager.store import ManagerStore, WorkerOperatorState
from tests.unit.manager.db import databases, db_url, open_store  # noqa: F401

TTL = 10.0


class Clock:
    """A clock the test moves (lease expiry without waiting)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def manager(store: ManagerStore, name: str, clock: Clock) -> Leadership:
    return Leadership(store.db, name, f"{name}:9000", TTL, clock)


def test_one_leader_then_a_fenced_takeover(db_url: str, databases: list[Database]) -> None:  # noqa: F811
    a_store, b_store = open_store(db_url, databases), open_store(db_url, databases)
    clock = Clock()
    a, b = manager(a_store, "a", clock), manager(b_store, "b", clock)

    async def run() -> None:
        lease = await a.try_acquire()
        assert lease is not None and (lease.holder, lease.epoch, lease.failovers) == ("a", 1, 0)
        await a_store.set_worker_state(WorkerOperatorState("w1", cordoned=True))  # the leader writes
        if b_store.db.dialect == "sqlite":
            with pytest.raises(HeldElsewhere, match="single-manager default.*PostgreSQL"):
                await b.try_acquire()
            return
        assert await b.try_acquire() is None  # a live lease: b stands by
        clock.now += TTL / 2
        assert (await a.renew()).expires_at == clock.now + TTL
        clock.now += TTL / 2 + 1  # renewed: still a's
        assert await b.try_acquire() is None
        clock.now += TTL  # a stopped renewing (paused, cut off): b takes over
        taken = await b.try_acquire()
        assert taken is not None and (taken.holder, taken.epoch, taken.failovers) == ("b", 2, 1)
        assert (await a.current()).holder == "b"
        # a wakes up still believing it leads: the database refuses its writes.
        assert a.epoch == 1
        with pytest.raises(Fenced, match="no longer leads"):
            await a_store.set_worker_state(WorkerOperatorState("w1", cordoned=False))
        with pytest.raises(NotLeader):
            await a.renew()
        assert (await b_store.worker_states())["w1"].cordoned  # a's late write is not there
        await b_store.set_worker_state(WorkerOperatorState("w2"))  # the new leader's is
        # a clean stop hands over at once, without waiting for the lease to expire
        await b.release()
        again = await a.try_acquire()
        assert again is not None and (again.epoch, again.failovers) == (3, 2)
        with pytest.raises(Fenced):
            await b_store.set_worker_state(WorkerOperatorState("w3"))

    asyncio.run(run())


def test_sqlite_takeover_after_a_crashed_manager(tmp_path: Path, databases: list[Database]) -> None:  # noqa: F811
    """On SQLite a second manager is refused while the first lives, and takes over once its
    lease expired (the first crashed): a restart on the same file never waits for a human."""
    url = f"sqlite:///{tmp_path / 'manager.db'}"
    clock = Clock()
    first = manager(open_store(url, databases), "first", clock)
    second = manager(open_store(url, databases), "second", clock)

    async def run() -> None:
        assert await first.try_acquire() is not None
        with pytest.raises(HeldElsewhere, match="first"):
            await second.try_acquire()
        clock.now += TTL + 1
        lease = await second.try_acquire()
        assert lease is not None and lease.epoch == 2

    asyncio.run(run())


@pytest.mark.postgres
def test_racing_candidates_elect_exactly_one(postgres: object, databases: list[Database]) -> None:  # noqa: F811
    url = postgres.new_database()  # type: ignore[attr-defined]
    clock = Clock()
    candidates = [manager(open_store(url, databases), f"m{i}", clock) for i in range(6)]

    async def run() -> None:
        for _ in range(3):  # three elections, each after the previous leader's lease expired
            won = [
                c for c, lease in zip(candidates, await asyncio.gather(*(c.try_acquire() for c in candidates))) if lease
            ]
            assert len(won) == 1
            assert (await won[0].current()).holder == won[0].holder
            clock.now += TTL + 1
            for c in candidates:
                c.epoch = None  # forget: each election starts from an expired lease

    asyncio.run(run())


@pytest.mark.postgres
def test_a_write_racing_the_takeover_commits_before_it_or_not_at_all(
    postgres: object,
    databases: list[Database],  # noqa: F811
) -> None:
    """The deposed leader's write transaction is open (fenced, not yet committed) when the
    takeover starts: the takeover waits for it, so the write lands under the old epoch, and the
    next one is refused. Never a write after the new leader took over."""
    url = postgres.new_database()  # type: ignore[attr-defined]
    clock = Clock()
    a_store, b_store = open_store(url, databases), open_store(url, databases)
    a, b = manager(a_store, "a", clock), manager(b_store, "b", clock)
    fenced_open = threading.Event()
    times: dict[str, float] = {}

    def slow_write(tx: Tx) -> None:
        # The guard already ran (share lock held); the write takes a while to finish.
        fenced_open.set()
        time.sleep(1.0)
        tx.execute(
            "INSERT INTO manager_worker_state (worker_id, enabled, cordoned, updated_at) VALUES ('slow', TRUE, FALSE, 0)"
        )
        times["write_done"] = time.monotonic()

    async def run() -> None:
        assert await a.try_acquire() is not None
        writing = asyncio.get_running_loop().run_in_executor(None, a_store.db.transact, slow_write)
        await asyncio.get_running_loop().run_in_executor(None, fenced_open.wait)
        clock.now += TTL + 1
        lease = await b.try_acquire()
        times["takeover_done"] = time.monotonic()
        await writing
        assert lease is not None and lease.epoch == 2
        assert times["takeover_done"] >= times["write_done"], "the takeover did not wait for the write"
        assert "slow" in await b_store.worker_states()
        with pytest.raises(Fenced):
            await a_store.set_worker_state(WorkerOperatorState("late"))
        assert "late" not in await b_store.worker_states()

    asyncio.run(run())


def named_manager(
    url: str,
    databases: list[Database],  # noqa: F811
    session: str,
    clock: Clock,
) -> tuple[ManagerStore, Leadership]:
    """A manager's store and lease, its database sessions named after it as a real one's are."""
    store = open_store(url, databases, session_name=db_session_name(session))
    return store, Leadership(store.db, holder_name("h", f"{session}:9000", session), f"{session}:9000", TTL, clock)


@pytest.mark.postgres
def test_a_takeover_ends_the_transaction_a_frozen_leader_left_open(
    postgres: object,
    databases: list[Database],  # noqa: F811
) -> None:
    """A leader froze inside a write transaction (it holds the lease row's share lock). Once its
    lease expired, the standby ends that session instead of waiting for the server's timeouts
    (none ends a session frozen mid-statement), takes over at once, and the frozen write never
    lands."""
    url = postgres.new_database()  # type: ignore[attr-defined]
    clock = Clock()
    (a_store, a), (b_store, b) = (
        named_manager(url, databases, "froze123", clock),
        named_manager(url, databases, "standby1", clock),
    )
    inside = threading.Event()
    thaw = threading.Event()

    def frozen_write(tx: Tx) -> None:
        inside.set()  # the fence's share lock is held from here on
        thaw.wait(30)
        tx.execute(
            "INSERT INTO manager_worker_state (worker_id, enabled, cordoned, updated_at) VALUES ('late', TRUE, FALSE, 0)"
        )

    async def run() -> None:
        assert await a.try_acquire() is not None
        loop = asyncio.get_running_loop()
        writing = loop.run_in_executor(None, a_store.db.transact, frozen_write)
        await loop.run_in_executor(None, inside.wait)
        clock.now += TTL + 1
        started = time.monotonic()
        lease = await b.try_acquire()
        took = time.monotonic() - started
        assert lease is not None and lease.epoch == 2
        # Far below the 5 s after which the server ends a session idle in its transaction.
        assert took < 2.0, f"the takeover waited {took:.1f} s for the frozen leader"
        thaw.set()
        with pytest.raises(Fenced):  # its session was ended; tried again, the write is fenced
            await writing
        assert "late" not in await b_store.worker_states()

    asyncio.run(run())


@pytest.mark.postgres
def test_a_takeover_goes_ahead_when_the_old_sessions_cannot_be_ended(
    postgres: object,
    databases: list[Database],  # noqa: F811
) -> None:
    """Ending the expired holder's sessions only spares a wait: when the database refuses it
    (a role without the right to end another role's sessions), the standby still takes over."""
    url = postgres.new_database()  # type: ignore[attr-defined]
    clock = Clock()
    (_, a), (_, b) = (
        named_manager(url, databases, "gone1234", clock),
        named_manager(url, databases, "standby2", clock),
    )
    refused: list[str] = []

    async def no_right(name: str) -> list[int]:
        refused.append(name)
        raise RuntimeError("permission denied to terminate process")

    b._terminate = no_right  # type: ignore[method-assign]

    async def run() -> None:
        assert await a.try_acquire() is not None
        clock.now += TTL + 1
        lease = await b.try_acquire()
        assert lease is not None and lease.holder == b.holder and lease.epoch == 2
        assert refused == [db_session_name("gone1234")]

    asyncio.run(run())


class Recorder:
    """What a campaign told its manager, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []
        self.elected = asyncio.Event()

    async def elected_(self, lease: Lease) -> None:
        self.events.append(("elected", lease.epoch))
        self.elected.set()

    async def deposed(self, reason: str) -> None:
        self.events.append(("deposed", reason))


def campaign(lead: Leadership, rec: Recorder) -> Campaign:
    return Campaign(lead, rec.elected_, rec.deposed, renew_every_s=0.2, poll_every_s=0.05)


@pytest.mark.postgres
def test_campaigns_fail_over_and_a_deposed_leader_stops(postgres: object, databases: list[Database]) -> None:  # noqa: F811
    url = postgres.new_database()  # type: ignore[attr-defined]
    a_lead = Leadership(open_store(url, databases).db, "a", "a:1", 1.0)
    b_lead = Leadership(open_store(url, databases).db, "b", "b:1", 1.0)
    a_rec, b_rec = Recorder(), Recorder()

    async def run() -> None:
        a_task = asyncio.create_task(campaign(a_lead, a_rec).run())
        await asyncio.wait_for(a_rec.elected.wait(), 5)
        b_task = asyncio.create_task(campaign(b_lead, b_rec).run())
        await asyncio.sleep(1.5)  # longer than the ttl: a renews, b stands by
        assert not b_rec.elected.is_set()
        # a dies without a word (kill -9: no release); b leads within about the ttl.
        a_task.cancel()
        died = time.monotonic()
        await asyncio.wait_for(b_rec.elected.wait(), 5)
        assert time.monotonic() - died < 1.0 + 0.5
        assert b_rec.events == [("elected", 2)]
        # Someone takes the lease from b behind its back (a clock far ahead): b's next renewal
        # finds out, and b stops leading.
        thief = Leadership(open_store(url, databases).db, "c", "c:1", 1.0, clock=lambda: time.time() + 60)
        assert await thief.try_acquire() is not None
        reason = await asyncio.wait_for(b_task, 5)
        assert "lost the lease" in reason and b_rec.events[-1] == ("deposed", reason)
        assert b_lead.epoch is None

    asyncio.run(run())


def test_a_leader_cut_off_from_its_database_stops_before_its_lease_could_lapse(
    tmp_path: Path,
    databases: list[Database],  # noqa: F811
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'manager.db'}", databases)

    class CutOff(Leadership):
        cut = False

        async def renew(self) -> Lease:
            if self.cut:
                raise DatabaseUnavailable("connection refused")
            return await super().renew()

    lead = CutOff(store.db, "a", "a:1", 1.0)
    rec = Recorder()

    async def run() -> None:
        task = asyncio.create_task(campaign(lead, rec).run())
        await asyncio.wait_for(rec.elected.wait(), 5)
        lead.cut = True
        cut = time.monotonic()
        reason = await asyncio.wait_for(task, 5)
        # It gave up while its lease certainly still held: no window in which it and a
        # successor both think they lead.
        assert time.monotonic() - cut < 1.0
        assert "unreachable" in reason and lead.epoch is None

    asyncio.run(run())


def test_a_leader_whose_renewal_hangs_stops_before_its_lease_could_lapse(
    tmp_path: Path,
    databases: list[Database],  # noqa: F811
) -> None:
    """A partition that drops packets leaves a renewal hanging, neither failing nor answering:
    the campaign gives up on it in time and stops leading while the lease certainly holds."""
    store = open_store(f"sqlite:///{tmp_path / 'manager.db'}", databases)

    class Hung(Leadership):
        hang = False

        async def renew(self) -> Lease:
            if self.hang:
                await asyncio.Event().wait()  # never answers
            return await super().renew()

    lead = Hung(store.db, "a", "a:1", 1.0)
    rec = Recorder()

    async def run() -> None:
        task = asyncio.create_task(campaign(lead, rec).run())
        await asyncio.wait_for(rec.elected.wait(), 5)
        lead.hang = True
        cut = time.monotonic()
        reason = await asyncio.wait_for(task, 5)
        assert time.monotonic() - cut < 1.0  # before the 1 s lease could have lapsed
        assert "unreachable" in reason and lead.epoch is None

    asyncio.run(run())
