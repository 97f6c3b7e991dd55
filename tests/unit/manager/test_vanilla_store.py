"""The manager keeps PoSt vanilla proofs as they arrive (SQLite files and PostgreSQL): per proof
type, randomness, miner, sector number and comm_r; a second write of a proof keeps the first;
a lookup names only the sectors asked for with their comm_r; old proofs are purged."""

from __future__ import annotations

import asyncio

from services.common.db import Database
from tests.unit.manager.db import databases, db_url, open_store  # noqa: F401 - fixtures

WINDOW = 5
WINNING = 10
R1 = bytes([1] * 32)
R2 = bytes([2] * 32)


def comm_r(n: int) -> bytes:
    return bytes([n]) * 32


def test_put_get_conflict_and_purge(db_url: str, databases: list[Database]) -> None:
    async def main() -> None:
        store = open_store(db_url, databases)
        assert await store.vanilla_proofs(WINDOW, R1, 1000, [(1, comm_r(1))]) == {}
        await store.put_vanilla_proofs(
            WINDOW, R1, [(1000, 1, comm_r(1), b"p1"), (1000, 2, comm_r(2), b"p2")], stored_at=100.0
        )
        await store.put_vanilla_proofs(WINDOW, R1, [], stored_at=100.0)  # nothing to write
        wanted = [(1, comm_r(1)), (2, comm_r(2)), (3, comm_r(3))]
        assert await store.vanilla_proofs(WINDOW, R1, 1000, wanted) == {1: b"p1", 2: b"p2"}
        # Another challenge, proof type, miner, or a re-sealed sector (new comm_r): none of these.
        assert await store.vanilla_proofs(WINDOW, R2, 1000, wanted) == {}
        assert await store.vanilla_proofs(WINNING, R1, 1000, wanted) == {}
        assert await store.vanilla_proofs(WINDOW, R1, 1001, wanted) == {}
        assert await store.vanilla_proofs(WINDOW, R1, 1000, [(1, comm_r(9))]) == {}
        assert await store.vanilla_proofs(WINDOW, R1, 1000, [(2, comm_r(2))]) == {2: b"p2"}

        # The same proofs again (an identical request beside this one): no error, first kept;
        # a new sector in the same batch is added.
        await store.put_vanilla_proofs(
            WINDOW, R1, [(1000, 1, comm_r(1), b"other"), (1000, 3, comm_r(3), b"p3")], stored_at=200.0
        )
        assert await store.vanilla_proofs(WINDOW, R1, 1000, wanted) == {1: b"p1", 2: b"p2", 3: b"p3"}
        # The re-sealed sector's proof lives beside the old one.
        await store.put_vanilla_proofs(WINDOW, R1, [(1000, 1, comm_r(9), b"p1-new")], stored_at=200.0)
        assert await store.vanilla_proofs(WINDOW, R1, 1000, [(1, comm_r(9))]) == {1: b"p1-new"}
        await store.put_vanilla_proofs(WINNING, R2, [(1000, 1, comm_r(1), b"w1")], stored_at=300.0)

        # Concurrent identical writers both succeed.
        same = [(1000, 4, comm_r(4), b"p4")]
        await asyncio.gather(*[store.put_vanilla_proofs(WINDOW, R1, same, stored_at=200.0) for _ in range(4)])

        # A restarted manager finds them.
        again = open_store(db_url, databases)
        assert await again.vanilla_proofs(WINNING, R2, 1000, [(1, comm_r(1))]) == {1: b"w1"}

        # Retention: those stored before the cut go (2 at t=100), the rest stay.
        assert await store.purge_vanilla_proofs(150.0) == 2
        assert await store.vanilla_proofs(WINDOW, R1, 1000, wanted) == {3: b"p3"}
        assert await store.purge_vanilla_proofs(150.0) == 0
        assert await store.purge_vanilla_proofs(1000.0) == 4
        assert await store.vanilla_proofs(WINNING, R2, 1000, [(1, comm_r(1))]) == {}

    asyncio.run(main())
