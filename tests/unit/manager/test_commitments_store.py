"""The manager remembers each sector's commitments from its successful SealPreCommit2 (SQLite
files and PostgreSQL): recorded in the work's outcome transaction, kept across a restart,
overwritten by a later PC2, untouched by failures, deleted by forget (a successful Remove)."""

from __future__ import annotations

import asyncio

from services.common.db import Database
from services.common.proto.sectorstorage.v1 import common_pb2
from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.manager.calltracker import CallTracker, Outcome, RetryPolicy, SectorRefKey
from services.manager.store import ManagerStore
from tests.unit.manager.db import databases, db_url, open_store  # noqa: F401 - fixtures

SECTOR = SectorRefKey(miner=1000, number=7, seal_proof=5)
PC2 = "SealPreCommit2"
COMM_R = bytes(range(32))
COMM_D = bytes(range(32, 64))


def tracker_of(store: ManagerStore) -> CallTracker:
    return CallTracker(store, RetryPolicy(max_attempts=1, backoff_initial_s=0.01, backoff_max_s=0.02))


async def pc2(tracker: CallTracker, params: bytes, outcome: Outcome, sector: SectorRefKey = SECTOR) -> None:
    live, _ = await tracker.open(PC2, 3, sector, params, 0)
    assert await tracker.mark_dispatching(live, "w1", "h", "s", (), 1)
    await tracker.complete(live.call.call_id, PC2, outcome)
    await tracker.wait(live, 1)
    await tracker.deliver(live)


def commitments(comm_r: bytes = COMM_R, comm_d: bytes = COMM_D) -> bytes:
    return common_pb2.SectorCommitments(comm_r=comm_r, comm_d=comm_d).SerializeToString()


def test_pc2_success_records_commitments_until_forgotten(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        store = open_store(db_url, databases)
        assert store.migrate() == 0  # a second migrate is a no-op
        tracker = tracker_of(store)
        assert await store.sector_commitments(1000, 7) is None
        # A failed PC2 records nothing.
        await pc2(tracker, b"fail", Outcome.failure(ErrorCode.PERMANENT, "no"))
        assert await store.sector_commitments(1000, 7) is None

        await pc2(tracker, b"ok", Outcome.success(commitments()))
        rec = await store.sector_commitments(1000, 7)
        assert rec is not None
        assert (rec.miner, rec.number, rec.proof_type, rec.comm_r, rec.comm_d) == (1000, 7, 5, COMM_R, COMM_D)
        assert rec.recorded_at > 0
        assert await store.sector_commitments(1000, 8) is None
        assert await store.sector_commitments(1001, 7) is None

        # A restarted manager still knows them.
        again = open_store(db_url, databases)
        assert await again.sector_commitments(1000, 7) == rec

        # A repeated PC2 (new inputs) overwrites: one row, the latest values.
        await pc2(tracker, b"ok2", Outcome.success(commitments(COMM_D, COMM_R)))
        rec2 = await store.sector_commitments(1000, 7)
        assert rec2 is not None and (rec2.comm_r, rec2.comm_d) == (COMM_D, COMM_R)

        # A result that is not 32-byte commitments is not recorded.
        other = SectorRefKey(miner=1000, number=9, seal_proof=5)
        await pc2(tracker, b"bad", Outcome.success(commitments(b"short")), other)
        assert await store.sector_commitments(1000, 9) is None

        # Remove forgets them; a repeat is harmless.
        assert await store.forget_sector_commitments(1000, 7)
        assert await store.sector_commitments(1000, 7) is None
        assert not await store.forget_sector_commitments(1000, 7)

    asyncio.run(main())
