"""Proving (services/manager/post.py) through its public API, with the manager in-process and a
TEST-ONLY fake worker (tests/unit/manager_fakes.py) that holds sealed sectors but implements none
of the PoSt RPCs: what PoSt and CheckProvable answer when sectors have no holder or a holder
cannot prove, the requests they refuse, and the pure checks (winning challenge, verifications).
The proof bytes themselves are rust_core's (tests/unit/test_porep.py, the e2e tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.common.errors import InvalidArgument, Unavailable
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.manager.domain import AddPieceInput, PieceChunk, PieceRef, PreCommit1Input, SectorId, SectorRef
from services.manager.post import Proving, post_proof_info
from services.manager.resources import SealProof
from services.manager.sealing import Deadline
from services.manager.service import ManagerApp
from tests.unit.manager_fakes import FakeIndex, FakeWorker, InProcessManager

MINER = 1000
P2K = SealProof.STACKED_DRG_2KIB_V1_1
WINDOW_2K = common_pb2.RegisteredPoStProof.ValueType(5)  # StackedDrgWindow2KiBV1
WINNING_2K = common_pb2.RegisteredPoStProof.ValueType(10)  # StackedDrgWinning2KiBV1
RANDOMNESS = bytes([0x33] * 32)
TICKET = bytes([0x11] * 32)


def proving_sector(number: int, miner: int = MINER, proof: int = int(P2K)) -> common_pb2.ProvingSector:
    return common_pb2.ProvingSector(
        sector=common_pb2.SectorRef(
            id=common_pb2.SectorId(miner=miner, number=number),
            proof_type=common_pb2.RegisteredSealProof.ValueType(proof),
        ),
        comm_r=bytes([number]) * 32,
    )


def run(test: Callable[[ManagerApp, FakeWorker], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        index = FakeIndex()
        manager = await InProcessManager(tmp_path).start(index)
        worker = await FakeWorker("a", manager.address, index).start()  # type: ignore[abstract]
        try:
            assert manager.app is not None
            await test(manager.app, worker)
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
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        await sealed_on_worker(app, 1)
        sectors = [proving_sector(9), proving_sector(1)]
        proofs, skipped = await app.proving.generate_post(WINDOW_2K, RANDOMNESS, sectors, Deadline(20))
        assert proofs == []
        assert [b.sector.number for b in skipped] == [1, 9]
        assert skipped[0].reason.startswith(f"on {worker.worker_id}: worker {worker.worker_id} failed: UNIMPLEMENTED")
        assert skipped[1].reason == ("no connected worker running WDP holds the sealed and cache files of s-t01000-9")
        # A winning PoSt cannot skip a challenged sector.
        with pytest.raises(Unavailable, match="winning PoSt needs every challenged sector: 1: on worker-a"):
            await app.proving.generate_post(WINNING_2K, RANDOMNESS, [proving_sector(1)], Deadline(20))

    run(test, tmp_path)


def test_check_provable_names_what_is_wrong_with_each_sector(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        await sealed_on_worker(app, 2)
        request = manager_pb2.CheckProvableRequest(proof_type=WINDOW_2K, sectors=[proving_sector(2), proving_sector(8)])
        bad = {b.sector.number: b.reason for b in await app.proving.check_provable(request, Deadline(20))}
        assert bad[8] == "cache and/or sealed paths not found for s-t01000-8"
        assert bad[2].startswith("stat failed on a holder: UNIMPLEMENTED")
        with pytest.raises(InvalidArgument, match="proof_type must be a Window PoSt type"):
            await app.proving.check_provable(
                manager_pb2.CheckProvableRequest(proof_type=WINNING_2K, sectors=[proving_sector(2)]), Deadline(20)
            )

    run(test, tmp_path)


def test_post_requests_are_checked_before_any_worker_is_asked(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        proving: Proving = app.proving
        cases = [
            (WINDOW_2K, RANDOMNESS[:31], [proving_sector(1)], "randomness must be 32 bytes, got 31"),
            (WINDOW_2K, RANDOMNESS, [], r"sectors is required \(non-empty\)"),
            (
                WINDOW_2K,
                RANDOMNESS,
                [proving_sector(1), proving_sector(2, miner=7)],
                "all sectors must belong to one miner",
            ),
            (
                WINDOW_2K,
                RANDOMNESS,
                [proving_sector(1, proof=int(SealProof.STACKED_DRG_8MIB_V1_1))],
                r"sectors\[0\] is a",
            ),
            (99, RANDOMNESS, [proving_sector(1)], "proof_type must be a supported Window or Winning PoSt type, got 99"),
        ]
        for proof_type, randomness, sectors, message in cases:
            with pytest.raises(InvalidArgument, match=message):
                await proving.generate_post(proof_type, randomness, sectors, Deadline(5))
        assert worker.ran == []

    run(test, tmp_path)


def test_the_winning_challenge_is_deterministic_and_within_the_eligible_sectors(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        req = manager_pb2.GenerateWinningPoStSectorChallengeRequest(
            proof_type=WINNING_2K, randomness=RANDOMNESS, miner=MINER, eligible_sector_count=10
        )
        first = app.proving.winning_challenge(req)
        assert first == app.proving.winning_challenge(req)
        assert first and all(0 <= i < 10 for i in first)
        req.proof_type = WINDOW_2K
        with pytest.raises(InvalidArgument, match="proof_type must be a Winning PoSt type"):
            app.proving.winning_challenge(req)
        req.proof_type, req.eligible_sector_count = WINNING_2K, 0
        with pytest.raises(InvalidArgument, match="eligible_sector_count must be > 0"):
            app.proving.winning_challenge(req)

    run(test, tmp_path)


def test_verifications_answer_why_a_proof_is_not_valid(tmp_path: Path) -> None:
    async def test(app: ManagerApp, worker: FakeWorker) -> None:
        proving = app.proving
        sectors = [proving_sector(1)]
        assert proving.verify_post("window", RANDOMNESS, sectors, []) == (False, "no proof")
        two = [common_pb2.PoStProof(proof_type=WINDOW_2K, proof=b"x")] * 2
        assert proving.verify_post("window", RANDOMNESS, sectors, two) == (False, "expected one proof, got 2")
        winning = [common_pb2.PoStProof(proof_type=WINNING_2K, proof=b"x")]
        assert proving.verify_post("window", RANDOMNESS, sectors, winning) == (
            False,
            f"proof_type {WINNING_2K} is a winning PoSt",
        )
        seal = manager_pb2.VerifySealRequest(
            sector=proving_sector(1).sector,
            comm_r=bytes(32),
            comm_d=bytes(32),
            ticket=TICKET,
            seed=RANDOMNESS,
            proof=b"not a proof",
        )
        valid, reason = proving.verify_seal(seal)
        assert not valid and reason
        assert post_proof_info(WINDOW_2K) == ("window", P2K)
        assert post_proof_info(WINNING_2K) == ("winning", P2K)

    run(test, tmp_path)
