"""The sealing operations on files, through rust_core: typed, blocking functions (rust_core
releases the GIL, so callers run them with asyncio.to_thread and the event loop keeps serving).
Each long one takes the task's `cancel` token (tasks.cancellable passes it): cancelled, the
rust_core call raises rust_core.Cancelled within 100 ms, having removed its half-written files.

This is the only module that calls rust_core's PoRep functions, so a change in that API is one
edit here.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import rust_core
from services.worker.sectors import PostKind

# Unpadded bytes rust_core's add_piece_stream processes per step (65536 fr32 blocks).
ADD_PIECE_BATCH = 127 << 16
# Unpadded bytes per ReadPiece unpad step: 8192 fr32 blocks = 1 MiB padded.
PAD_BLOCK = 127 * 8192


@dataclass(frozen=True)
class Piece:
    padded_size: int
    commp: bytes

    def as_tuple(self) -> tuple[int, bytes]:
        return (self.padded_size, self.commp)


class QueueReader:
    """A binary reader over chunks put into a bounded queue by another thread: what rust_core's
    add_piece_stream reads from while the event loop receives the stream. `None` ends the data;
    `fail()` makes the next read raise, which stops the reader's consumer."""

    def __init__(self, depth: int = 4) -> None:
        self._queue: queue.Queue[bytes | None | BaseException] = queue.Queue(maxsize=depth)
        self._view = memoryview(b"")
        self._eof = False

    def offer(self, data: bytes) -> bool:
        try:
            self._queue.put_nowait(data)
        except queue.Full:
            return False
        return True

    def put(self, data: bytes | None) -> None:
        self._queue.put(data)

    def fail(self) -> None:
        while True:
            try:
                self._queue.put_nowait(ConnectionAbortedError("the AddPiece stream was abandoned"))
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()

    def read(self, n: int = -1) -> bytes:
        while not self._view and not self._eof:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is None:
                self._eof = True
            else:
                self._view = memoryview(item)
        if n < 0:
            n = len(self._view)
        out = self._view[:n].tobytes()
        self._view = self._view[n:]
        return out


Token = rust_core.CancelToken | None


def add_piece_stream(reader: QueueReader, out: BinaryIO, cancel: Token = None) -> tuple[int, bytes]:
    """fr32-pads everything `reader` yields into `out` (at its position) and returns (padded
    bytes written, commP), padding and hashing the same reads in parallel."""
    written, commp = rust_core.add_piece_stream(reader, out, cancel=cancel)
    return written, bytes(commp)


def pad_stream(reader: BinaryIO, writer: BinaryIO) -> int:
    """fr32-pads everything `reader` yields into `writer` (at its position); padded bytes written."""
    return int(rust_core.fr32_pad_stream(reader, writer))


def zero_commp(padded_size: int) -> bytes:
    return rust_core.zero_piece_commitment(padded_size)


def piece_cid(commp: bytes) -> str:
    return rust_core.piece_cid(commp)


def sealed_cid(commr: bytes) -> str:
    return rust_core.sealed_cid(commr)


def commp_from_cid(cid: str) -> bytes:
    return rust_core.commp_from_cid(cid)


def pre_commit1(
    sector_size: int,
    cache: Path,
    unsealed: Path,
    prover: bytes,
    number: int,
    ticket: bytes,
    pieces: list[Piece],
    cancel: Token = None,
) -> bytes:
    return bytes(
        rust_core.seal_pre_commit_phase1(
            sector_size,
            str(cache),
            str(unsealed),
            prover,
            number,
            ticket,
            [p.as_tuple() for p in pieces],
            cancel=cancel,
        )
    )


def pre_commit1_batch(
    sector_size: int,
    sectors: list[tuple[Path, Path, bytes, int, bytes, list[Piece]]],
    cancel: Token = None,
    lanes: list[rust_core.CancelToken] | None = None,
    on_stopped: Callable[[int], object] | None = None,
) -> list[bytes | None]:
    """PC1 of 1 to 8 sectors of one size as one call (cache, unsealed, prover, number, ticket,
    pieces each); one phase-1 blob per sector, each what pre_commit1 gives for it alone. A
    sector whose token in `lanes` is cancelled leaves the call (None; `on_stopped` is told its
    index once its files are gone) and the others go on."""
    outs = rust_core.seal_pre_commit_phase1_batch(
        sector_size,
        [
            (str(cache), str(unsealed), prover, number, ticket, [p.as_tuple() for p in pieces])
            for cache, unsealed, prover, number, ticket, pieces in sectors
        ],
        cancel=cancel,
        lane_cancels=lanes,
        on_lane_stopped=on_stopped,
    )
    return [None if o is None else bytes(o) for o in outs]


def pre_commit2(p1_output: bytes, cache: Path, sealed: Path, backend: str, cancel: Token = None) -> tuple[bytes, bytes]:
    """(comm_r, comm_d). Cancelled, the PC1 files in the cache stay as they were."""
    comm_r, comm_d = rust_core.seal_pre_commit_phase2(p1_output, str(cache), str(sealed), backend, cancel=cancel)
    return bytes(comm_r), bytes(comm_d)


def commit1(
    sector_size: int,
    cache: Path,
    sealed: Path,
    prover: bytes,
    number: int,
    ticket: bytes,
    seed: bytes,
    pieces: list[Piece],
    comm_r: bytes,
    comm_d: bytes,
    cancel: Token = None,
) -> bytes:
    return bytes(
        rust_core.seal_commit_phase1(
            sector_size,
            str(cache),
            str(sealed),
            prover,
            number,
            ticket,
            seed,
            [p.as_tuple() for p in pieces],
            comm_r,
            comm_d,
            cancel=cancel,
        )
    )


def commit2(c1_output: bytes, prover: bytes, number: int, backend: str, cancel: Token = None) -> bytes:
    return bytes(rust_core.seal_commit_phase2(c1_output, prover, number, backend, cancel=cancel))


def verify_seal(
    sector_size: int, comm_r: bytes, comm_d: bytes, prover: bytes, number: int, ticket: bytes, seed: bytes, proof: bytes
) -> bool:
    return bool(rust_core.verify_seal(sector_size, comm_r, comm_d, prover, number, ticket, seed, proof))


def unseal(
    sector_size: int,
    cache: Path,
    sealed: Path,
    unsealed: Path,
    prover: bytes,
    number: int,
    ticket: bytes,
    comm_d: bytes,
    unpadded_offset: int,
    unpadded_length: int,
    cancel: Token = None,
) -> None:
    """Writes the padded data of the unpadded range into the unsealed file's data area."""
    rust_core.unseal_range(
        sector_size,
        str(cache),
        str(sealed),
        str(unsealed),
        prover,
        number,
        ticket,
        comm_d,
        unpadded_offset,
        unpadded_length,
        cancel=cancel,
    )


def clear_cache(cache: Path, sector_size: int) -> None:
    rust_core.clear_cache(str(cache), sector_size)


def vanilla_proof(
    kind: PostKind,
    sector_size: int,
    randomness: bytes,
    prover: bytes,
    number: int,
    comm_r: bytes,
    sealed: Path,
    cache: Path,
    cancel: Token = None,
) -> bytes:
    return bytes(
        rust_core.generate_single_vanilla_proof(
            sector_size,
            randomness,
            prover,
            (number, comm_r, str(sealed), str(cache)),
            "window" if kind == PostKind.WINDOW else "winning",
            cancel=cancel,
        )
    )


def backend_for(gpu_ordinals: list[int], configured: str) -> str:
    """The compute backend a task runs on: the GPU the scheduler granted, else the CPU (a task
    given no GPU must not take one that another task may hold)."""
    if gpu_ordinals:
        return f"cuda:{gpu_ordinals[0]}"
    return "cpu" if configured == "auto" else configured
