"""The sealing operations (services/manager/sealing.py) through their domain API: plain inputs
(domain.py) in, results and domain errors out, with the manager in-process and TEST-ONLY fake
workers (tests/support/fake_worker.py) running the tasks. No ManagerService message is involved:
that is what the manager's domain/edge split makes possible."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from services.common.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.manager.domain import (
    AddPieceInput,
    ByteRange,
    Commit1Input,
    Commit2Input,
    FinalizeInput,
    PieceChunk,
    PieceRef,
    PreCommit1Input,
    PreCommit2Input,
    ReadPieceInput,
    SectorId,
    SectorRef,
    UnsealInput,
)
from services.manager.resources import SealProof
from services.manager.sealing import Deadline, Sealing
from tests.support.fake_worker import FakeIndex, FakeWorker, InProcessManager

MINER = 1000
P2K = SealProof.STACKED_DRG_2KIB_V1_1
TICKET = bytes([0x11] * 32)
SEED = bytes([0x22] * 32)
FULL = 2032  # unpadded bytes of a piece that fills a 2 KiB sector


def ref(number: int) -> SectorRef:
    return SectorRef(SectorId(MINER, number), P2K)


async def chunks_of(data: bytes, size: int = 300, offsets: list[int] | None = None) -> AsyncIterator[PieceChunk]:
    for i, start in enumerate(range(0, len(data), size)):
        offset = offsets[i] if offsets is not None and i < len(offsets) else start
        yield PieceChunk(offset, data[start : start + size])


def deadline(seconds: float | None = 20.0) -> Deadline:
    return Deadline(seconds)


def run(test: Callable[[Sealing, FakeWorker], Awaitable[None]], tmp_path: Path) -> None:
    """Runs `test` against the sealing of an in-process manager with one fake worker and index."""

    async def main() -> None:
        index = FakeIndex()
        manager = await InProcessManager(tmp_path).start(index)
        worker = await FakeWorker("a", manager.address, index).start()  # type: ignore[abstract]
        try:
            assert manager.app is not None
            await test(manager.app.sealing, worker)
        finally:
            await worker.stop()
            await manager.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


async def add_full_piece(sealing: Sealing, number: int, data: bytes | None = None) -> PieceRef:
    data = data if data is not None else bytes([number % 251]) * FULL
    info = await sealing.add_piece(AddPieceInput(ref(number), (), len(data)), chunks_of(data), deadline())
    return PieceRef(int(info.size), bytes(info.commp))


def test_a_sector_seals_through_the_domain_api_and_a_repeated_step_answers_its_record(tmp_path: Path) -> None:
    async def test(sealing: Sealing, worker: FakeWorker) -> None:
        piece = await add_full_piece(sealing, 1)
        assert piece.size == 2048 and len(piece.commp) == 32
        pc1 = PreCommit1Input(ref(1), TICKET, (piece,))
        p1 = await sealing.seal_pre_commit1(pc1, deadline())
        assert p1.startswith(b"p1o:")
        commitments = await sealing.seal_pre_commit2(PreCommit2Input(ref(1), p1), deadline())
        comm_r, comm_d = bytes(commitments.comm_r), bytes(commitments.comm_d)
        c1 = await sealing.seal_commit1(Commit1Input(ref(1), TICKET, SEED, (piece,), comm_r, comm_d), deadline())
        assert c1.startswith(b"c1o:")
        proof = await sealing.seal_commit2(Commit2Input(ref(1), c1), deadline())
        assert len(proof) == 192
        await sealing.finalize_sector(FinalizeInput(ref(1), ()), deadline())
        recorded = await sealing.sector_commitments(SectorId(MINER, 1))
        assert (recorded.comm_r, recorded.comm_d, recorded.proof_type) == (comm_r, comm_d, int(P2K))

        # The same PC1 again answers the recorded output without running it again.
        ran_before = [m for m, _, _ in worker.ran].count("SealPreCommit1")
        assert await sealing.seal_pre_commit1(pc1, deadline()) == p1
        assert [m for m, _, _ in worker.ran].count("SealPreCommit1") == ran_before == 1
        assert {m for m, _, n in worker.ran if n == 1} >= {
            "AddPiece",
            "SealPreCommit1",
            "SealPreCommit2",
            "SealCommit1",
            "SealCommit2",
            "FinalizeSector",
            "MoveStorage",
        }

    run(test, tmp_path)


def test_an_add_piece_sent_again_gets_its_recorded_piece_and_other_bytes_are_refused(tmp_path: Path) -> None:
    """A client whose AddPiece reply was lost (its manager died after the piece was written)
    sends the same stream again, to any manager: the same bytes answer the recorded piece and
    nothing runs; different bytes at that position are another pipeline's, refused as before."""

    async def test(sealing: Sealing, worker: FakeWorker) -> None:
        half = 1016
        first, second = b"a" * half, b"b" * half
        p1 = await sealing.add_piece(AddPieceInput(ref(5), (), half), chunks_of(first), deadline())
        p2 = await sealing.add_piece(AddPieceInput(ref(5), (1016,), half), chunks_of(second), deadline())
        again2 = await sealing.add_piece(AddPieceInput(ref(5), (1016,), half), chunks_of(second, 100), deadline())
        again1 = await sealing.add_piece(AddPieceInput(ref(5), (), half), chunks_of(first), deadline())
        assert (again1, again2) == (p1, p2) and p1 != p2
        assert [m for m, _, _ in worker.ran] == ["AddPiece", "AddPiece"]
        with pytest.raises(AlreadyExists, match="another pipeline already added 2 piece"):
            await sealing.add_piece(AddPieceInput(ref(5), (), half), chunks_of(b"c" * half), deadline())
        with pytest.raises(FailedPrecondition):
            await sealing.add_piece(AddPieceInput(ref(5), (1016,), half), chunks_of(first), deadline())
        assert [m for m, _, _ in worker.ran] == ["AddPiece", "AddPiece"]

    run(test, tmp_path)


def test_out_of_order_steps_are_refused_with_the_lifecycle_s_error_before_anything_runs(tmp_path: Path) -> None:
    async def test(sealing: Sealing, worker: FakeWorker) -> None:
        with pytest.raises(FailedPrecondition, match="no AddPiece was recorded"):
            await sealing.seal_pre_commit2(PreCommit2Input(ref(2), b"p1o"), deadline())
        with pytest.raises(FailedPrecondition, match="send existing_piece_sizes empty"):
            await sealing.add_piece(AddPieceInput(ref(2), (1016,), 1016), chunks_of(b"x" * 1016), deadline())
        await add_full_piece(sealing, 2)
        # Another pipeline starting the same sector number finds it claimed.
        with pytest.raises(AlreadyExists, match="another pipeline already added 1 piece"):
            await sealing.add_piece(AddPieceInput(ref(2), (), FULL), chunks_of(b"y" * FULL), deadline())
        # Unsealing needs the sealed replica first.
        with pytest.raises(FailedPrecondition, match="before SealPreCommit2"):
            await sealing.unseal_piece(UnsealInput(ref(2), ByteRange(0, FULL), TICKET, "baga"), deadline())
        assert [m for m, _, _ in worker.ran] == ["AddPiece"]

    run(test, tmp_path)


def test_a_malformed_piece_stream_fails_the_work_and_the_caller_gets_invalid_argument(tmp_path: Path) -> None:
    async def test(sealing: Sealing, worker: FakeWorker) -> None:
        data = b"z" * FULL
        with pytest.raises(InvalidArgument, match="chunk offset 999 but 300 bytes were sent so far"):
            await sealing.add_piece(AddPieceInput(ref(3), (), FULL), chunks_of(data, offsets=[0, 999]), deadline())
        with pytest.raises(InvalidArgument, match=f"only 600 of piece_size {FULL} bytes were sent"):
            await sealing.add_piece(AddPieceInput(ref(3), (), FULL), chunks_of(data[:600]), deadline())
        # A piece that does not fit is refused before anything is queued.
        with pytest.raises(InvalidArgument, match="the piece does not fit"):
            await sealing.add_piece(AddPieceInput(ref(3), (FULL,), FULL), chunks_of(data), deadline())
        assert worker.ran == []
        # The sector is still free for a whole piece.
        assert (await add_full_piece(sealing, 3, data)).size == 2048

    run(test, tmp_path)


def test_a_piece_is_read_back_from_the_worker_holding_it_unsealed(tmp_path: Path) -> None:
    async def test(sealing: Sealing, worker: FakeWorker) -> None:
        data = bytes(range(256)) * 7 + bytes(FULL - 256 * 7)
        await add_full_piece(sealing, 4, data)
        assert await sealing.is_unsealed(ref(4), ByteRange(0, 1016))
        stream = await sealing.read_piece(ReadPieceInput(ref(4), ByteRange(1016, 1016), b"", ""), deadline())
        assert (stream.did_unseal, stream.size) == (False, 1016)
        got = b"".join([chunk.data async for chunk in stream.chunks])
        assert got == data[1016:2032]
        # A sector nobody holds: neither unsealed nor sealed anywhere.
        with pytest.raises(NotFound, match="has neither unsealed data nor a sealed replica"):
            await sealing.read_piece(ReadPieceInput(ref(5), ByteRange(0, 127), TICKET, "baga"), deadline())

    run(test, tmp_path)


def test_a_step_that_outlasts_the_caller_s_deadline_goes_on_and_the_same_call_collects_it(tmp_path: Path) -> None:
    async def test(sealing: Sealing, worker: FakeWorker) -> None:
        piece = await add_full_piece(sealing, 6)
        worker.gate.methods.add("SealPreCommit1")
        pc1 = PreCommit1Input(ref(6), TICKET, (piece,))
        with pytest.raises(DeadlineExceeded, match="SealPreCommit1 of s-t01000-6 is still in progress"):
            await sealing.seal_pre_commit1(pc1, Deadline(0.2))
        # While it runs, the sector's in-flight work is just that PC1 (another sector has none).
        in_flight = sealing.pipelines.in_flight(await sealing.store.sector(MINER, 6), MINER, 6)
        assert [w.method for w in in_flight] == ["SealPreCommit1"]
        assert sealing.pipelines.in_flight(None, MINER, 7) == []
        worker.gate.event.set()
        assert (await sealing.seal_pre_commit1(pc1, deadline())).startswith(b"p1o:")
        assert [m for m, _, _ in worker.ran].count("SealPreCommit1") == 1
        assert sealing.pipelines.in_flight(await sealing.store.sector(MINER, 6), MINER, 6) == []

    run(test, tmp_path)


def test_remove_deletes_the_files_and_forgets_the_commitments(tmp_path: Path) -> None:
    async def test(sealing: Sealing, worker: FakeWorker) -> None:
        piece = await add_full_piece(sealing, 8)
        p1 = await sealing.seal_pre_commit1(PreCommit1Input(ref(8), TICKET, (piece,)), deadline())
        await sealing.seal_pre_commit2(PreCommit2Input(ref(8), p1), deadline())
        assert await sealing.sector_commitments(SectorId(MINER, 8)) is not None
        removed = await sealing.remove(SectorId(MINER, 8))
        assert {f.storage_id for f in removed} == {worker.storage_id}
        assert len(removed) == 3  # unsealed, sealed, cache
        with pytest.raises(NotFound, match="no SealPreCommit2 result is known for s-t01000-8"):
            await sealing.sector_commitments(SectorId(MINER, 8))
        record = await sealing.store.sector(MINER, 8)
        assert record is not None and record.removed

    run(test, tmp_path)
