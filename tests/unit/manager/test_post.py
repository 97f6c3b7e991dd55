"""Proving (services/manager/post.py) through its domain API, with the manager in-process and a
TEST-ONLY fake worker (tests/support/fake_worker.py) that holds sealed sectors but implements none
of the PoSt RPCs: what PoSt and CheckProvable answer when sectors have no holder or a holder
cannot prove, the PoSt requests convert.py refuses (in order), and the pure checks (winning
challenge, verifications). The proof bytes themselves are rust_core's (tests/unit/test_porep.py,
the e2e tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.config import DatabaseConfig
from services.common.errors import InvalidArgument, Unavailable
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.manager import convert
from services.manager.app import ManagerApp
from services.manager.domain import (
    AddPieceInput,
    PieceChunk,
    PieceRef,
    PreCommit1Input,
    ProvingSector,
    SealVerification,
    SectorId,
    SectorRef,
    WinningChallenge,
)
from services.manager.post import Proving, assemble, post_proof_info
from services.manager.resources import SealProof
from services.manager.sealing import Deadline
from tests.support.fake_worker import FakeIndex, FakeWorker, InProcessManager, fake_vanilla_proof
from tests.unit.manager.db import db_url  # noqa: F401 - fixture

MINER = 1000
P2K = SealProof.STACKED_DRG_2KIB_V1_1
WINDOW_2K = common_pb2.RegisteredPoStProof.ValueType(5)  # StackedDrgWindow2KiBV1
WINNING_2K = common_pb2.RegisteredPoStProof.ValueType(10)  # StackedDrgWinning2KiBV1
RANDOMNESS = bytes([0x33] * 32)
TICKET = bytes([0x11] * 32)


def proving(number: int) -> ProvingSector:
    return ProvingSector(SectorRef(SectorId(MINER, number), P2K), bytes([number]) * 32)


def proving_sector(
    number: int, miner: int = MINER, proof: int = int(P2K), comm_r: bytes | None = None
) -> common_pb2.ProvingSector:
    return common_pb2.ProvingSector(
        sector=common_pb2.SectorRef(
            id=common_pb2.SectorId(miner=miner, number=number),
            proof_type=common_pb2.RegisteredSealProof.ValueType(proof),
        ),
        comm_r=bytes([number]) * 32 if comm_r is None else comm_r,
    )


def run(test: Callable[[InProcessManager, ManagerApp, FakeWorker], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        index = FakeIndex()
        manager = await InProcessManager(tmp_path).start(index)
        worker = await FakeWorker("a", manager.address, index).start()  # type: ignore[abstract]
        try:
            assert manager.app is not None
            await test(manager, manager.app, worker)
        finally:
            await worker.stop()
            await manager.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


async def sealed_on_worker(app: ManagerApp, number: int) -> None:
    """Runs AddPiece and PC1, after which the fake index lists the worker's sealed and cache files."""
    ref = SectorRef(SectorId(MINER, number), P2K)

    async def chunks() -> AsyncIterator[PieceChunk]:
        yield PieceChunk(0, bytes([number]) * 2032)

    info = await app.sealing.add_piece(AddPieceInput(ref, (), 2032), chunks(), Deadline(20))
    piece = PieceRef(int(info.size), bytes(info.commp))
    await app.sealing.seal_pre_commit1(PreCommit1Input(ref, TICKET, (piece,)), Deadline(20))


def test_window_post_skips_sectors_nobody_holds_or_can_prove_with_every_reason(tmp_path: Path) -> None:
    async def test(manager: InProcessManager, app: ManagerApp, worker: FakeWorker) -> None:
        await sealed_on_worker(app, 1)
        proof, skipped = await app.proving.generate_post(WINDOW_2K, RANDOMNESS, [proving(9), proving(1)], Deadline(20))
        assert proof is None
        assert [b.sector.number for b in skipped] == [1, 9]
        assert skipped[0].reason.startswith(f"on {worker.worker_id}: worker {worker.worker_id} failed: UNIMPLEMENTED")
        assert skipped[1].reason == "no connected worker running WDP holds the sealed and cache files of s-t01000-9"
        # A winning PoSt cannot skip a challenged sector.
        with pytest.raises(Unavailable, match="winning PoSt needs every challenged sector: 1: on worker-a"):
            await app.proving.generate_post(WINNING_2K, RANDOMNESS, [proving(1)], Deadline(20))

    run(test, tmp_path)


def test_a_vanilla_proof_that_does_not_verify_skips_its_sector_and_is_never_stored(tmp_path: Path) -> None:
    """The holder of sector 2 returns a proof that does not verify against its comm_r (a rotten
    sealed file): sector 2 is skipped with that reason, the PoSt is made over sectors 1 and 3 and
    is exactly the proof of those two, and the bad proof is not stored, so a retry asks for it
    again (and uses it once it is right). A stored proof that does not verify is proven again."""

    async def test(manager: InProcessManager, app: ManagerApp, worker: FakeWorker) -> None:
        worker.vanilla_enabled = True
        for n in (1, 2, 3):
            await sealed_on_worker(app, n)
        worker.vanilla_bad = {2}
        sectors = [proving(1), proving(2), proving(3)]
        proof, skipped = await app.proving.generate_post(WINDOW_2K, RANDOMNESS, sectors, Deadline(20))
        assert [(b.sector.number, b.reason) for b in skipped] == [
            (2, f"on {worker.worker_id}: its vanilla proof does not verify against the sector's comm_r")
        ]
        good = [fake_vanilla_proof(int(WINDOW_2K), int(P2K), proving_sector(n)) for n in (1, 3)]
        assert proof == assemble("window", P2K.sector_size, good)
        stored = await app.store.vanilla_proofs(
            int(WINDOW_2K), RANDOMNESS, MINER, [(n, bytes([n]) * 32) for n in (1, 2, 3)]
        )
        assert set(stored) == {1, 3}
        # The holder is right again: the retry asks only for sector 2 and proves all three.
        worker.vanilla_bad = set()
        worker.vanilla_asked.clear()
        proof, skipped = await app.proving.generate_post(WINDOW_2K, RANDOMNESS, sectors, Deadline(20))
        assert not skipped and dict(worker.vanilla_asked) == {2: 1}
        # A stored proof that went bad (written by an older manager, or damaged) is not reused.
        await app.store.db.run(
            lambda tx: tx.execute(
                "UPDATE manager_vanilla_proofs SET proof = ? WHERE number = 3", (b"SSPV-not-a-proof",)
            )
        )
        worker.vanilla_asked.clear()
        proof, skipped = await app.proving.generate_post(WINDOW_2K, RANDOMNESS, sectors, Deadline(20))
        assert not skipped and dict(worker.vanilla_asked) == {3: 1}
        every = [fake_vanilla_proof(int(WINDOW_2K), int(P2K), proving_sector(n)) for n in (1, 2, 3)]
        assert proof == assemble("window", P2K.sector_size, every)

    run(test, tmp_path)


def test_check_provable_names_what_is_wrong_with_each_sector(tmp_path: Path) -> None:
    async def test(manager: InProcessManager, app: ManagerApp, worker: FakeWorker) -> None:
        await sealed_on_worker(app, 2)
        found = await app.proving.check_provable(WINDOW_2K, [proving(2), proving(8)], False, Deadline(20))
        bad = {b.sector.number: b.reason for b in found}
        assert bad[8] == "cache and/or sealed paths not found for s-t01000-8"
        assert bad[2].startswith("stat failed on a holder: UNIMPLEMENTED")
        # Through the service: the same reasons, and a winning proof type refused.
        assert manager.stub is not None
        reply = await manager.stub.CheckProvable(
            manager_pb2.CheckProvableRequest(proof_type=WINDOW_2K, sectors=[proving_sector(8)]), timeout=20
        )
        assert [(b.sector.number, b.reason) for b in reply.bad_sectors] == [(8, bad[8])]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await manager.stub.CheckProvable(
                manager_pb2.CheckProvableRequest(proof_type=WINNING_2K, sectors=[proving_sector(2)]), timeout=20
            )
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details() == "proof_type must be a Window PoSt type"

    run(test, tmp_path)


def test_post_requests_are_checked_in_order_before_any_worker_is_asked() -> None:
    cases = [
        (WINDOW_2K, RANDOMNESS[:31], [proving_sector(1)], "randomness must be 32 bytes, got 31"),
        (WINDOW_2K, RANDOMNESS, [], r"sectors is required \(non-empty\)"),
        (
            WINDOW_2K,
            RANDOMNESS,
            [proving_sector(1), proving_sector(2, miner=7)],
            "all sectors must belong to one miner",
        ),
        (WINDOW_2K, RANDOMNESS, [proving_sector(1, proof=int(SealProof.STACKED_DRG_8MIB_V1_1))], r"sectors\[0\] is a"),
        (99, RANDOMNESS, [proving_sector(1)], "proof_type must be a supported Window or Winning PoSt type, got 99"),
    ]
    for proof_type, randomness, sectors, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            convert.post_request(proof_type, randomness, sectors)
    # Bad randomness is named before a bad sector.
    with pytest.raises(InvalidArgument, match="randomness"):
        convert.post_request(WINDOW_2K, b"", [common_pb2.ProvingSector()])
    # CheckProvable's cheap check needs no CommR; a PoSt does.
    kind, seal, checked = convert.post_request(WINDOW_2K, bytes(32), [proving_sector(1, comm_r=b"")], False)
    assert (kind, seal, checked) == ("window", P2K, (ProvingSector(SectorRef(SectorId(MINER, 1), P2K), b""),))
    with pytest.raises(InvalidArgument, match=r"sectors\[0\].comm_r must be 32 bytes, got 0"):
        convert.post_request(WINDOW_2K, bytes(32), [proving_sector(1, comm_r=b"")])


def test_the_winning_challenge_is_deterministic_and_within_the_eligible_sectors(tmp_path: Path) -> None:
    async def test(manager: InProcessManager, app: ManagerApp, worker: FakeWorker) -> None:
        req = manager_pb2.GenerateWinningPoStSectorChallengeRequest(
            proof_type=WINNING_2K, randomness=RANDOMNESS, miner=MINER, eligible_sector_count=10
        )
        challenge = convert.winning_challenge(req)
        assert challenge == WinningChallenge(P2K, RANDOMNESS, MINER, 10)
        first = app.proving.winning_challenge(challenge)
        assert first == app.proving.winning_challenge(challenge)
        assert first and all(0 <= i < 10 for i in first)
        req.proof_type = WINDOW_2K
        with pytest.raises(InvalidArgument, match="proof_type must be a Winning PoSt type"):
            convert.winning_challenge(req)
        req.proof_type, req.eligible_sector_count = WINNING_2K, 0
        with pytest.raises(InvalidArgument, match="eligible_sector_count must be > 0"):
            convert.winning_challenge(req)

    run(test, tmp_path)


def test_verifications_answer_why_a_proof_is_not_valid(tmp_path: Path) -> None:
    async def test(manager: InProcessManager, app: ManagerApp, worker: FakeWorker) -> None:
        proving_: Proving = app.proving
        assert proving_.proof_problem("window", []) == "no proof"
        assert proving_.proof_problem("window", [(WINDOW_2K, b"x")] * 2) == "expected one proof, got 2"
        assert proving_.proof_problem("window", [(WINNING_2K, b"x")]) == f"proof_type {WINNING_2K} is a winning PoSt"
        assert proving_.proof_problem("window", [(WINDOW_2K, b"x")]) is None
        valid, reason = proving_.verify_post("window", WINDOW_2K, RANDOMNESS, [proving(1)], b"not a proof")
        assert not valid and reason
        seal = SealVerification(
            SectorRef(SectorId(MINER, 1), P2K), bytes(32), bytes(32), TICKET, RANDOMNESS, b"not a proof"
        )
        valid, reason = proving_.verify_seal(seal)
        assert not valid and reason
        assert post_proof_info(WINDOW_2K) == ("window", P2K)
        assert post_proof_info(WINNING_2K) == ("winning", P2K)
        # Through the service, a request without proofs is not valid whatever its sectors.
        assert manager.stub is not None
        reply = await manager.stub.VerifyWindowPoSt(
            manager_pb2.VerifyWindowPoStRequest(randomness=b"", sectors=[common_pb2.ProvingSector()]), timeout=20
        )
        assert (reply.valid, reply.reason) == (False, "no proof")

    run(test, tmp_path)


def test_a_retried_post_reuses_the_stored_vanilla_proofs_and_asks_only_for_the_rest(
    tmp_path: Path,
    db_url: str,  # noqa: F811 - fixture
) -> None:
    """On SQLite and PostgreSQL, with a fake holder that serves made-up vanilla proofs and counts what it is asked: a PoSt
    stores each proof as it arrives (before the holder's stream ends, by the timed flush); a
    manager killed in the middle of it, started again on its database, proves the same request
    asking the holder only for what was not stored; another randomness, proof type or comm_r
    is proven afresh; two identical requests at once both succeed."""

    def window(numbers: list[int], randomness: bytes = RANDOMNESS, comm_r: dict[int, bytes] | None = None) -> Any:
        return manager_pb2.GenerateWindowPoStRequest(
            proof_type=WINDOW_2K,
            randomness=randomness,
            sectors=[proving_sector(n, comm_r=(comm_r or {}).get(n)) for n in numbers],
        )

    async def stored(app: ManagerApp, numbers: list[int], randomness: bytes = RANDOMNESS) -> set[int]:
        got = await app.store.vanilla_proofs(int(WINDOW_2K), randomness, MINER, [(n, bytes([n]) * 32) for n in numbers])
        return set(got)

    def manager() -> InProcessManager:
        m = InProcessManager(tmp_path)
        m.config.database = DatabaseConfig(url=db_url)
        return m

    async def main() -> None:
        index = FakeIndex()
        first = await manager().start(index)
        worker = await FakeWorker("a", first.address, index).start()  # type: ignore[abstract]
        worker.vanilla_enabled = True
        second: InProcessManager | None = None
        try:
            assert first.app is not None and first.stub is not None
            for n in (1, 2, 3, 4):
                await sealed_on_worker(first.app, n)
            # Sector 4 is slow: the three before it are stored while the holder still works on it.
            worker.vanilla_delays = {4: 30.0}
            caller = asyncio.ensure_future(first.stub.GenerateWindowPoSt(window([1, 2, 3, 4]), timeout=60))
            deadline = asyncio.get_running_loop().time() + 10
            while await stored(first.app, [1, 2, 3, 4]) != {1, 2, 3}:
                assert asyncio.get_running_loop().time() < deadline, await stored(first.app, [1, 2, 3, 4])
                await asyncio.sleep(0.05)
            assert dict(worker.vanilla_asked) == {1: 1, 2: 1, 3: 1, 4: 1}
            await first.crash()
            with pytest.raises(grpc.aio.AioRpcError):
                await caller
            await first.close_client()

            worker.vanilla_delays = {}
            second = await manager().start(index)
            await worker.point_to(second.address)
            assert second.stub is not None and second.app is not None
            reply = await second.stub.GenerateWindowPoSt(window([1, 2, 3, 4]), timeout=30)
            assert not reply.skipped and len(reply.proofs) == 1
            assert dict(worker.vanilla_asked) == {1: 1, 2: 1, 3: 1, 4: 2}  # only the one not stored
            # The proof is the one a single uninterrupted run makes (the proofs in request order).
            proofs = [fake_vanilla_proof(int(WINDOW_2K), int(P2K), proving_sector(n)) for n in (1, 2, 3, 4)]
            assert reply.proofs[0].proof == assemble("window", P2K.sector_size, proofs)

            # Everything stored now: a retry asks nobody.
            again = await second.stub.GenerateWindowPoSt(window([4, 1]), timeout=30)
            assert not again.skipped and dict(worker.vanilla_asked) == {1: 1, 2: 1, 3: 1, 4: 2}
            # Another randomness is another challenge; a re-sealed sector (new comm_r) is another
            # sector; two identical requests at once both succeed (one stored copy).
            other = bytes([0x21] * 32)
            twice = await asyncio.gather(
                *[second.stub.GenerateWindowPoSt(window([1, 2], other), timeout=30) for _ in range(2)]
            )
            assert twice[0].proofs == twice[1].proofs and not twice[0].skipped
            assert (worker.vanilla_asked[1], worker.vanilla_asked[2]) in ((2, 2), (3, 3))
            asked = dict(worker.vanilla_asked)
            await second.stub.GenerateWindowPoSt(window([1, 2], comm_r={2: bytes([0x99]) * 32}), timeout=30)
            assert worker.vanilla_asked[2] == asked[2] + 1 and worker.vanilla_asked[1] == asked[1]
            # A Winning PoSt keeps its own proofs the same way.
            winning = manager_pb2.GenerateWinningPoStRequest(
                proof_type=WINNING_2K, randomness=RANDOMNESS, sectors=[proving_sector(3)]
            )
            asked = dict(worker.vanilla_asked)
            for _ in range(2):
                won = await second.stub.GenerateWinningPoSt(winning, timeout=30)
                assert len(won.proofs) == 1
            assert worker.vanilla_asked[3] == asked[3] + 1

            # The retention loop forgets them.
            assert second.app is not None
            second.app.config.manager.post_proof_retention_s = 1e-9
            await second.app._purge()
            assert await stored(second.app, [1, 2, 3, 4]) == set()
        finally:
            await worker.stop()
            if second is not None:
                await second.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_a_cancelled_request_cancels_its_snark_and_waits_for_it() -> None:
    """post._stoppable: the request's cancellation reaches the SNARK's token, and the request
    ends only once the call has returned (nothing keeps running behind a finished request)."""
    import threading

    import rust_core
    from services.manager.post import _stoppable

    seen: dict[str, Any] = {}
    started = threading.Event()

    def snark(cancel: rust_core.CancelToken) -> bytes:
        started.set()
        while not cancel.cancelled:
            threading.Event().wait(0.01)
        seen["returned"] = True
        raise rust_core.Cancelled("stopped")

    async def scenario() -> None:
        task = asyncio.ensure_future(_stoppable(snark))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        seen["after"] = seen.get("returned", False)

    asyncio.run(scenario())
    assert seen["after"] is True
