"""The sealing tasks: what each one locks, which files it finds, fetches or allocates, what it
runs in rust_core, and what it declares or drops in the index afterwards.

Every task is a coroutine over plain domain arguments returning an Outcome (the name of the
StoredCallResult field and its value) or raising TaskFailure; the runner turns both into the
stored result. Heavy rust_core work runs in a thread through `cancellable()` with the task's
cancel token: a stopped task (abort, timeout, drain, shutdown, lost lock) cancels the token, the
rust_core call ends within 100 ms having removed what it half-wrote, and only then are the locks
and reservations released (see its docstring). Other blocking work goes through `blocking()`.
What a failed or stopped step leaves is discarded (local_store.discard: renamed to a trash name at
once, deleted in the background), so the stop never waits for the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import rust_core
from services.common import errors
from services.common.pieces import next_piece
from services.common.vocabulary import TaskErrorCode as Code
from services.worker import sealer
from services.worker.calls import DONE, AddedPiece, Commitments, Outcome, TaskFailure
from services.worker.failures import CallFailed
from services.worker.index_client import IndexClient, IndexUnavailable, LockLost, SectorLocation
from services.worker.local_store import (
    LocalPath,
    LocalStore,
    NoSpace,
    PathNotFound,
    discard,
    move_into_place,
    remove_file_or_dir,
)
from services.worker.partialfile import PartialFile, PartialFileError
from services.worker.pc1_batch import Pc1Batcher, Pc1Job
from services.worker.peers import Peers
from services.worker.proofs import EmulatedProofs, SealingProofs
from services.worker.remote_store import FetchFailed, RemoteStore, SectorNotFound
from services.worker.rleplus import Runs, complement, normalize
from services.worker.sealer import Piece
from services.worker.sectors import FileType, PathType, PostKind, SectorId, padded, prover_id, unpadded

log = logging.getLogger(__name__)
T = TypeVar("T")


def classify(exc: BaseException) -> TaskFailure:
    """The TaskError a failure becomes: temporary where a retry (here or elsewhere) may work."""
    if isinstance(exc, TaskFailure):
        return exc
    if isinstance(exc, rust_core.Cancelled):
        # Only a stopped task cancels its token, and the runner records why it stopped; this is
        # the fallback should the error surface on its own.
        return TaskFailure(Code.ABORTED, "the rust_core call was cancelled")
    if isinstance(exc, NoSpace):
        return TaskFailure(Code.ALLOCATE_SPACE, str(exc))
    if isinstance(exc, SectorNotFound):
        return TaskFailure(Code.SECTOR_NOT_FOUND, str(exc))
    if isinstance(exc, (FetchFailed, IndexUnavailable, LockLost)):
        return TaskFailure(Code.TEMPORARY, str(exc))
    if isinstance(exc, CallFailed):
        return TaskFailure(Code.TEMPORARY, f"index or peer call failed: {exc.status}: {exc.details}")
    if isinstance(exc, (ValueError, PartialFileError)):
        return TaskFailure(Code.PERMANENT, str(exc))
    if isinstance(exc, OSError) and disk_full(exc):
        return TaskFailure(
            Code.ALLOCATE_SPACE,
            f"the disk filled up while the task wrote its files ({exc}); they were removed: free space there or retry elsewhere",
        )
    if isinstance(exc, OSError):
        return TaskFailure(Code.TEMPORARY, f"I/O error: {exc}")
    return TaskFailure(Code.UNSPECIFIED, f"{type(exc).__name__}: {exc}")


def disk_full(exc: OSError) -> bool:
    """ENOSPC/EDQUOT, from Python (errno set) or from rust_core (an OSError whose message is
    the Rust io::Error text, "... (os error 28)"): the space the task reserved was taken by
    someone else. Reported as ALLOCATE_SPACE, so the manager retries where there is room."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return f"(os error {errno.ENOSPC})" in text or f"(os error {errno.EDQUOT})" in text


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Runs short blocking work in a thread. When the task is cancelled this waits for the thread
    to finish before the cancellation goes on: locks and reservations are released only once
    nothing touches the files any more. Long rust_core calls use `cancellable` instead."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        try:
            await future
        except BaseException:  # noqa: BLE001 - the task is being cancelled anyway
            pass
        raise


async def cancellable(ctx: TaskContext, fn: Callable[..., T], *args: Any) -> T:
    """Runs a long rust_core call (`fn(*args, cancel=token)`) in a thread with the task's cancel
    token. When the task is cancelled (abort, timeout, drain deadline, shutdown, lost lock) the
    token is cancelled too: the call raises rust_core.Cancelled within 100 ms, having removed its
    half-written files, and this waits for that before the cancellation goes on, so the locks and
    reservations the caller releases next are released as soon as nothing touches the files."""
    future = asyncio.ensure_future(asyncio.to_thread(functools.partial(fn, *args, cancel=ctx.cancel)))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        ctx.cancel.cancel()
        cancelled_at = time.monotonic()
        with contextlib.suppress(BaseException):
            await future
        ctx.call_return_s = time.monotonic() - cancelled_at
        raise


@dataclass(frozen=True)
class SectorRef:
    id: SectorId
    size: int


@dataclass
class TaskEnv:
    """What tasks work with; built once by the service."""

    local: LocalStore
    remote: RemoteStore
    index: IndexClient
    peers: Peers
    compute_backend: str = "auto"
    lock_ttl_s: float = 60.0
    # PC1 calls gathered into batches ([worker] pc1_batch_size > 1); None: each PC1 alone.
    pc1_batcher: Pc1Batcher | None = None
    # The proofs backend the tasks call ([proofs] backend; proofs.py).
    proofs: SealingProofs = field(default_factory=EmulatedProofs)
    # Waits until the manager surely still wants a call dispatched in the given registration
    # (ManagerLink.confirm); None without a manager.
    confirm: Callable[[int], Awaitable[None]] | None = None


@dataclass
class TaskContext:
    """Per-call facts: who holds the locks, the GPUs granted, how to stop on a lost lease, and the
    cancel token of the call's rust_core work (one per call, cancelled when the call is stopped)."""

    owner: str
    gpu_ordinals: list[int] = field(default_factory=list)
    # The worker's registration with the manager the call was dispatched in (ManagerLink).
    link_session: int = 0
    on_lost: Callable[[str], None] | None = None
    cancel: rust_core.CancelToken = field(default_factory=rust_core.CancelToken)
    # Once stopped: how long the rust_core call took to return after its token was cancelled.
    call_return_s: float | None = None


def _lock(env: TaskEnv, ctx: TaskContext, sector: SectorId, read: FileType, write: FileType) -> Any:
    return env.index.lock(sector, read, write, ctx.owner, env.lock_ttl_s, ctx.on_lost)


async def _still_wanted(env: TaskEnv, ctx: TaskContext) -> None:
    """Before a step that removes a sector's files everywhere (under the sector's lock): a call
    received before a break in contact with the manager waits until the manager has seen it
    again; one it ended or gave to another worker meanwhile is aborted there instead of wiping
    the files its replacement wrote since."""
    if env.confirm is not None:
        await env.confirm(ctx.link_session)


# --- removal helpers ---------------------------------------------------------------------------


async def remove_local(env: TaskEnv, sector: SectorId, file_type: FileType, storage_id: str = "") -> list[LocalPath]:
    """Drops local copies from the index, then deletes them, one copy at a time. In this order
    an index that cannot be reached leaves the file and its declaration both in place (the task
    fails and its retry does both); the other order left a declaration of a deleted file, which
    every later reader tried to fetch."""
    removed = []
    for copy in await blocking(env.local.find, sector, file_type, storage_id):
        await env.index.drop(copy.path.id, sector, file_type)
        await blocking(remove_file_or_dir, copy.file)
        removed.append(copy.path)
    return removed


async def remove_everywhere(env: TaskEnv, sector: SectorId, file_type: FileType) -> None:
    """Deletes every copy in the fleet: local ones here, others through the peers serving them
    (a peer that cannot be reached keeps its copy and its declaration, and a warning is logged)."""
    await remove_local(env, sector, file_type)
    await remove_remote(env, sector, file_type)


async def remove_remote(env: TaskEnv, sector: SectorId, file_type: FileType, only_secondary: bool = False) -> None:
    """Deletes the copies other workers hold (with `only_secondary`, only those not declared
    primary), through the peers serving them."""
    for loc in await env.index.find_sector(sector, file_type):
        if loc.storage_id in env.local.paths or (only_secondary and loc.primary):
            continue
        for url in loc.urls:
            try:
                await env.peers.remove(url, sector, file_type, loc.storage_id)
                break
            except CallFailed as exc:
                if exc.answered(errors.NotFound):
                    await env.index.drop(loc.storage_id, sector, file_type)
                    break
                log.warning(
                    "could not remove a remote copy",
                    extra={"sector": str(sector), "type": file_type.dirname, "source": url, "error": exc.details},
                )


# --- AddPiece ----------------------------------------------------------------------------------


def piece_offset(existing_unpadded: list[int], piece_unpadded: int) -> tuple[int, int]:
    """(end of the existing pieces, offset of the new piece), padded, by the fleet's one rule
    (services/common/pieces.py): each existing piece sits aligned to its own size too, so the
    end is not simply the sum of their sizes."""
    return next_piece(existing_unpadded, piece_unpadded)


class BadStream(errors.InvalidArgument, ValueError):
    """The AddPiece stream itself is wrong (too many or too few bytes, bad offsets): the RPC
    fails with INVALID_ARGUMENT and no outcome is recorded."""


class PieceSink:
    """Receives one piece's bytes during an AddPiece stream and hands them to rust_core's
    one-pass AddPiece (fr32 padding written to the unsealed file and commP hashing of the same
    bytes, in parallel), which runs in a thread reading from a bounded queue: the network, the
    padding and the hashing all overlap."""

    def __init__(
        self, target: PartialFile, offset: int, size: int, cancel: rust_core.CancelToken | None = None
    ) -> None:
        self.target = target
        self.offset = offset
        self.size = size
        self.received = 0
        self.pending = bytearray()
        self.reader = sealer.QueueReader()
        self.out = open(target.path, "r+b", buffering=0)  # noqa: SIM115 - closed in finish/abort
        self.out.seek(offset)
        self.cancel = cancel or rust_core.CancelToken()
        self.job = asyncio.ensure_future(asyncio.to_thread(sealer.add_piece_stream, self.reader, self.out, self.cancel))

    async def feed(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > unpadded(self.size):
            raise BadStream(f"the stream carries more than the piece's {unpadded(self.size)} bytes")
        if self.job.done():
            await self.job  # it failed: raise its error
            raise RuntimeError("AddPiece stopped reading before the end of the piece")
        # Hand rust_core whole batches: each read from its thread takes the GIL, which the event
        # loop holds most of the time, so few large reads beat many small ones.
        self.pending += data
        if len(self.pending) >= sealer.ADD_PIECE_BATCH:
            await self._hand_over()

    async def _hand_over(self) -> None:
        batch, self.pending = bytes(self.pending), bytearray()
        if not self.reader.offer(batch):
            await asyncio.to_thread(self.reader.put, batch)

    async def finish(self) -> AddedPiece:
        if self.received != unpadded(self.size):
            raise BadStream(f"the stream carried {self.received} bytes, the piece has {unpadded(self.size)}")
        if self.pending:
            await self._hand_over()
        await asyncio.to_thread(self.reader.put, None)
        try:
            written, commp = await self.job
        finally:
            self.out.close()
        if written != self.size:
            raise RuntimeError(f"AddPiece wrote {written} padded bytes, expected {self.size}")
        await blocking(self.target.mark_allocated, self.offset, self.size)
        return AddedPiece(size=self.size, commp=commp, piece_cid=sealer.piece_cid(commp))

    async def abort(self) -> None:
        """Stops the rust_core thread (its token is cancelled and its next read fails) and waits
        for it to end."""
        self.cancel.cancel()
        self.reader.fail()
        with contextlib.suppress(BaseException):
            await self.job
        self.out.close()


@asynccontextmanager
async def add_piece(
    env: TaskEnv, ctx: TaskContext, sector: SectorRef, existing: list[int], piece_size: int
) -> AsyncIterator[PieceSink]:
    """Opens (first piece: creates) the unsealed file under a write lock and yields the sink the
    stream feeds. On an exception nothing is marked allocated, and a file created here is
    removed again."""
    end, offset = piece_offset(existing, piece_size)
    size = padded(piece_size)
    if offset + size > sector.size:
        raise ValueError(
            f"can't add a {piece_size}-byte piece at padded offset {offset} to a {sector.size}-byte sector"
        )
    async with _lock(env, ctx, sector.id, FileType(0), FileType.UNSEALED):
        if not existing:
            # A first piece starts the sector over: older unsealed copies anywhere are stale.
            await remove_everywhere(env, sector.id, FileType.UNSEALED)
            acquire = env.remote.acquire(sector.id, sector.size, FileType(0), FileType.UNSEALED, PathType.SEALING)
        else:
            acquire = env.remote.acquire(sector.id, sector.size, FileType.UNSEALED, FileType(0), PathType.SEALING)
        async with acquire as acq:
            path = acq.path(FileType.UNSEALED)
            created = not existing
            pf = await blocking(PartialFile.create if created else PartialFile.open, path, sector.size)
            try:
                sink = PieceSink(pf, offset, size, ctx.cancel)
                try:
                    yield sink
                except BaseException:
                    await asyncio.shield(sink.abort())
                    raise
                # The zero padding before an aligned piece, once the piece itself is written: a
                # stream that fails leaves the file as it was.
                if offset > end:
                    await blocking(_fill_zeros, pf, end, offset - end)
            except BaseException:
                pf.close()
                if created:
                    await asyncio.shield(blocking(discard, path))
                raise
            pf.close()
            if created:
                await env.index.declare(acq.storage[FileType.UNSEALED].id, sector.id, FileType.UNSEALED, primary=False)


def _fill_zeros(pf: PartialFile, offset: int, size: int) -> None:
    """Zero pieces between the existing pieces and an aligned new one."""
    step = 1 << 20
    for start in range(offset, offset + size, step):
        pf.write_at(start, bytes(min(step, offset + size - start)))
    pf.mark_allocated(offset, size)


# --- PreCommit / Commit --------------------------------------------------------------------------


def _check_pieces(pieces: list[Piece], sector_size: int) -> None:
    total = sum(p.padded_size for p in pieces)
    if total != sector_size:
        raise ValueError(f"the pieces' padded sizes add up to {total}, not the sector size {sector_size}")


async def pre_commit1(
    env: TaskEnv, ctx: TaskContext, sector: SectorRef, ticket: bytes, pieces: list[Piece], seal_proof: int = 0
) -> Outcome:
    """Labels the unsealed data into a fresh cache directory. Unlike Lotus's PC1 it creates no
    empty sealed file: a declared zero-byte placeholder would be fetched (and rejected, or worse,
    used) by a PC2 or C1 placed on another worker; PC2 creates the sealed file where it runs.
    With `[worker] pc1_batch_size` > 1 (env.pc1_batcher) the rust_core call is shared with other
    PC1 calls of the same size and proof type (services/worker/pc1_batch.py); all else is per call."""
    _check_pieces(pieces, sector.size)
    async with _lock(env, ctx, sector.id, FileType.UNSEALED, FileType.SEALED | FileType.CACHE):
        await _still_wanted(env, ctx)
        # Leftovers of an earlier attempt, wherever they are, would be stale copies.
        for t in (FileType.SEALED, FileType.CACHE):
            await remove_everywhere(env, sector.id, t)
        async with env.remote.acquire(
            sector.id, sector.size, FileType.UNSEALED, FileType.CACHE, PathType.SEALING
        ) as acq:
            cache = acq.path(FileType.CACHE)
            await blocking(_fresh_cache, cache)
            try:
                if env.pc1_batcher is None:
                    out = await cancellable(
                        ctx,
                        env.proofs.pre_commit1,
                        sector.size,
                        cache,
                        acq.path(FileType.UNSEALED),
                        prover_id(sector.id.miner),
                        sector.id.number,
                        ticket,
                        pieces,
                    )
                else:
                    job = Pc1Job(
                        ctx.owner,
                        cache,
                        acq.path(FileType.UNSEALED),
                        prover_id(sector.id.miner),
                        sector.id.number,
                        ticket,
                        pieces,
                    )

                    def returned(seconds: float) -> None:
                        ctx.call_return_s = seconds

                    out = await env.pc1_batcher.run((sector.size, seal_proof), job, returned)
            except BaseException:
                await asyncio.shield(blocking(discard, cache))
                raise
            await env.index.declare(acq.storage[FileType.CACHE].id, sector.id, FileType.CACHE, primary=False)
    return ("pre_commit1_output", out)


def discard_interrupted_pre_commit1(local: LocalStore, sector: SectorId) -> list[Path]:
    """At start, for a PC1 the last process was killed in: its half-written cache is removed
    before the paths are announced (the scan would declare it as a copy). Only the cache: PC1
    replaces any cache it finds, but it never touches a sealed file (PC2 writes that)."""
    return [p.file(FileType.CACHE, sector) for p in local.remove(sector, FileType.CACHE)]


def _fresh_cache(cache: Path) -> None:
    discard(cache)
    cache.mkdir()


async def pre_commit2(env: TaskEnv, ctx: TaskContext, sector: SectorRef, p1_output: bytes) -> Outcome:
    """Builds the trees in the cache and writes the sealed replica. The cache is the only input
    (tree_d holds the data, the layers the key): it is fetched when elsewhere, moved rather than
    copied so the stale copy without trees cannot serve a later C1; the sealed file is allocated
    here, and any older sealed copy in the fleet is removed first."""
    async with _lock(env, ctx, sector.id, FileType(0), FileType.SEALED | FileType.CACHE):
        await _still_wanted(env, ctx)
        await remove_everywhere(env, sector.id, FileType.SEALED)
        async with env.remote.acquire(
            sector.id, sector.size, FileType.CACHE, FileType.SEALED, PathType.SEALING, move=True
        ) as acq:
            sealed = acq.path(FileType.SEALED)
            backend = sealer.backend_for(ctx.gpu_ordinals, env.compute_backend)
            try:
                comm_r, comm_d = await cancellable(
                    ctx, env.proofs.pre_commit2, p1_output, acq.path(FileType.CACHE), sealed, backend
                )
            except BaseException:
                await asyncio.shield(blocking(discard, sealed))
                raise
            await env.index.declare(acq.storage[FileType.SEALED].id, sector.id, FileType.SEALED, primary=False)
    return (
        "commitments",
        Commitments(
            comm_d=comm_d, comm_r=comm_r, unsealed_cid=sealer.piece_cid(comm_d), sealed_cid=sealer.sealed_cid(comm_r)
        ),
    )


async def commit1(
    env: TaskEnv,
    ctx: TaskContext,
    sector: SectorRef,
    ticket: bytes,
    seed: bytes,
    pieces: list[Piece],
    comm_r: bytes,
    comm_d: bytes,
) -> Outcome:
    types = FileType.SEALED | FileType.CACHE
    async with _lock(env, ctx, sector.id, types, FileType(0)):
        async with env.remote.acquire(sector.id, sector.size, types, FileType(0), PathType.SEALING) as acq:
            out = await cancellable(
                ctx,
                env.proofs.commit1,
                sector.size,
                acq.path(FileType.CACHE),
                acq.path(FileType.SEALED),
                prover_id(sector.id.miner),
                sector.id.number,
                ticket,
                seed,
                pieces,
                comm_r,
                comm_d,
            )
    return ("commit1_output", out)


async def commit2(env: TaskEnv, ctx: TaskContext, sector: SectorRef, c1_output: bytes) -> Outcome:
    backend = sealer.backend_for(ctx.gpu_ordinals, env.compute_backend)
    proof = await cancellable(ctx, env.proofs.commit2, c1_output, prover_id(sector.id.miner), sector.id.number, backend)
    return ("proof", proof)


# --- Finalize, release, move, unseal, fetch -------------------------------------------------------


def _padded_runs(ranges: list[tuple[int, int]]) -> Runs:
    return normalize([(padded(off), padded(off) + padded(size)) for off, size in ranges])


def _free_runs(path: Path, sector_size: int, runs: Runs) -> None:
    with PartialFile.open(path, sector_size) as pf:
        for start, end in runs:
            pf.free(start, end - start)


async def finalize(env: TaskEnv, ctx: TaskContext, sector: SectorRef, keep_unsealed: list[tuple[int, int]]) -> Outcome:
    async with _lock(env, ctx, sector.id, FileType(0), FileType.UNSEALED | FileType.SEALED | FileType.CACHE):
        async with env.remote.acquire(sector.id, sector.size, FileType.CACHE, FileType(0), PathType.SEALING) as acq:
            await blocking(env.proofs.clear_cache, acq.path(FileType.CACHE), sector.size)
        if keep_unsealed:
            # Free what is not kept, in padded bytes over the whole data area (the reference mixed
            # unpadded ranges with a padded length here).
            doomed = complement(_padded_runs(keep_unsealed), 0, sector.size)
            for copy in await blocking(env.local.find, sector.id, FileType.UNSEALED):
                await blocking(_free_runs, copy.file, sector.size, doomed)
        else:
            await remove_everywhere(env, sector.id, FileType.UNSEALED)
    return DONE


async def release_unsealed(
    env: TaskEnv, ctx: TaskContext, sector: SectorRef, ranges: list[tuple[int, int]], everything: bool
) -> Outcome:
    async with _lock(env, ctx, sector.id, FileType(0), FileType.UNSEALED):
        if everything:
            await remove_everywhere(env, sector.id, FileType.UNSEALED)
        else:
            runs = _padded_runs(ranges)
            for copy in await blocking(env.local.find, sector.id, FileType.UNSEALED):
                await blocking(_free_runs, copy.file, sector.size, runs)
    return DONE


async def move_storage(env: TaskEnv, ctx: TaskContext, sector: SectorRef, types: FileType) -> Outcome:
    async with _lock(env, ctx, sector.id, FileType(0), types):
        for t in types.singles():
            copies = await blocking(env.local.find, sector.id, t)
            stored = [c for c in copies if c.path.meta.can_store]
            if stored:
                await env.index.declare(stored[0].path.id, sector.id, t, primary=True)
            else:
                targets, reservation = await blocking(env.local.allocate, sector.id, t, sector.size, PathType.STORAGE)
                dest = targets[t]
                try:
                    with env.local.using([dest.id]):
                        if copies:
                            src = copies[0]
                            await env.index.drop(src.path.id, sector.id, t)
                            await blocking(move_into_place, src.file, dest.file(t, sector.id))
                            await env.index.declare(dest.id, sector.id, t, primary=True)
                        else:
                            await env.remote.fetch(sector.id, t, sector.size, dest, move=True)
                finally:
                    reservation.release()
            # A move ends with the one primary copy: sealing copies left on other workers (a
            # finalize that ran on another worker after a crash copied the files there) go.
            await remove_remote(env, sector.id, t, only_secondary=True)
    return DONE


async def unseal_piece(
    env: TaskEnv, ctx: TaskContext, sector: SectorRef, offset: int, size: int, ticket: bytes, comm_d: bytes
) -> Outcome:
    want = (padded(offset), padded(offset) + padded(size))
    async with _lock(env, ctx, sector.id, FileType.SEALED | FileType.CACHE, FileType.UNSEALED):
        unsealed_path, unsealed_store, created = await _unsealed_for_unseal(env, sector)
        reservation = None
        try:
            if created:
                targets, reservation = await blocking(
                    env.local.allocate, sector.id, FileType.UNSEALED, sector.size, PathType.STORAGE
                )
                unsealed_store = targets[FileType.UNSEALED]
                unsealed_path = unsealed_store.file(FileType.UNSEALED, sector.id)
                await blocking(lambda: PartialFile.create(unsealed_path, sector.size).close())
            with PartialFile.open(unsealed_path, sector.size, writable=False) as pf:
                todo = complement(pf.allocated(), *want)
            if todo:
                # One unseal call per span: each regenerates the whole key, so never split it.
                start = todo[0][0] // 128 * 128
                end = -(-todo[-1][1] // 128) * 128
                async with env.remote.acquire(
                    sector.id, sector.size, FileType.SEALED | FileType.CACHE, FileType(0), PathType.STORAGE
                ) as acq:
                    await cancellable(
                        ctx,
                        env.proofs.unseal,
                        sector.size,
                        acq.path(FileType.CACHE),
                        acq.path(FileType.SEALED),
                        unsealed_path,
                        prover_id(sector.id.miner),
                        sector.id.number,
                        ticket,
                        comm_d,
                        unpadded(start),
                        unpadded(end - start),
                    )

                    def mark() -> None:
                        with PartialFile.open(unsealed_path, sector.size) as pf:
                            pf.mark_allocated(start, end - start)

                    await blocking(mark)
                    fetched = {t: acq.storage[t].id for t in acq.fetched.singles()}
                # The working copies of sealed/cache fetched for this unseal are not kept: only
                # those, in the path they were fetched into; a replica this worker holds in
                # another path (declared or found by a rescan meanwhile) is not a working copy.
                for t, storage_id in fetched.items():
                    await remove_local(env, sector.id, t, storage_id)
            if created:
                await env.index.declare(unsealed_store.id, sector.id, FileType.UNSEALED, primary=True)
        except BaseException:
            if created:
                await asyncio.shield(blocking(discard, unsealed_path))
            raise
        finally:
            if reservation is not None:
                reservation.release()
    if todo:
        try:
            await _drop_sealing_copies(env, ctx, sector)
        except (CallFailed, IndexUnavailable, OSError, LockLost) as exc:
            # The unseal is done and declared: a copy left over wastes space until the next
            # unseal here (or an operator's cleanup), it does not fail the read.
            log.warning(
                "could not remove the sealing copies after an unseal",
                extra={"sector": str(sector.id), "error": str(exc)},
            )
    return DONE


async def _drop_sealing_copies(env: TaskEnv, ctx: TaskContext, ref: SectorRef) -> None:
    """After an unseal: this worker's copies of the sealed file and cache that are not primary,
    where a primary copy is declared in another path (the reference's RemoveCopies). They are
    what a FETCH task copied here for the unseal (when no holder could run it), or a sealing
    leftover; the primary replica stays where it is. A sector not finalized yet has no primary
    copy, so its sealing copies are all kept. Under the write lock: nobody reads them meanwhile."""
    sector = ref.id
    types = FileType.SEALED | FileType.CACHE
    async with _lock(env, ctx, sector, FileType(0), types):
        for t in types.singles():
            locations = await env.index.find_sector(sector, t)
            primary = [loc for loc in locations if loc.primary]
            for copy in await blocking(env.local.find, sector, t):
                if any(loc.storage_id == copy.path.id for loc in primary):
                    continue
                others = [loc for loc in primary if loc.storage_id != copy.path.id]
                if not others or not await _one_exists(env, sector, t, ref.size, others):
                    continue
                log.info(
                    "removing a non-primary copy left by an unseal",
                    extra={"sector": str(sector), "type": t.dirname, "path": copy.path.id},
                )
                await remove_local(env, sector, t, copy.path.id)


async def _one_exists(
    env: TaskEnv, sector: SectorId, file_type: FileType, sector_size: int, locations: list[SectorLocation]
) -> bool:
    """Whether one of these declared copies is really there (a declaration can outlive its file
    when a disk is lost or a file removed by hand): asked of the path itself, locally or from the
    peer serving it; a sealed file must also have the sector's size. A copy is removed only when
    another one is known to exist, never on the word of the index alone."""
    want_dir = file_type == FileType.CACHE

    def fits(is_dir: bool, size: int) -> bool:
        return is_dir == want_dir and (want_dir or size == sector_size)

    for loc in locations:
        if loc.storage_id in env.local.paths:
            for copy in await blocking(env.local.find, sector, file_type, loc.storage_id):
                if fits(want_dir, 0 if want_dir else (await blocking(copy.file.stat)).st_size):
                    return True
            continue
        for url in loc.urls:
            try:
                is_dir, size = await env.peers.stat(url, sector, file_type, loc.storage_id)
            except CallFailed:
                continue  # that url is down, or the peer has no such copy: the next url says
            if fits(is_dir, size):
                return True
            break
    return False


async def _unsealed_for_unseal(env: TaskEnv, sector: SectorRef) -> tuple[Path, LocalPath, bool]:
    """The unsealed file to unseal into: a local copy, else one fetched from a peer, else a new
    one (created=True, path chosen by the caller)."""
    copies = await blocking(env.local.find, sector.id, FileType.UNSEALED)
    if copies:
        return copies[0].file, copies[0].path, False
    try:
        async with env.remote.acquire(sector.id, sector.size, FileType.UNSEALED, FileType(0), PathType.STORAGE) as acq:
            return acq.path(FileType.UNSEALED), acq.storage[FileType.UNSEALED], False
    except SectorNotFound:
        placeholder = next(iter(env.local.paths.values()), None)
        if placeholder is None:
            raise NoSpace("no local storage paths attached") from None
        return Path(), placeholder, True


async def fetch(
    env: TaskEnv, ctx: TaskContext, sector: SectorRef, types: FileType, path_type: PathType, move: bool
) -> Outcome:
    async with _lock(env, ctx, sector.id, FileType(0) if move else types, types if move else FileType(0)):
        async with env.remote.acquire(sector.id, sector.size, types, FileType(0), path_type, move=move):
            pass
    return DONE


# --- synchronous work -------------------------------------------------------------------------------


async def remove_sector(env: TaskEnv, sector: SectorId, types: FileType) -> list[tuple[str, FileType]]:
    removed: list[tuple[str, FileType]] = []
    for t in types.singles():
        for path in await remove_local(env, sector, t):
            removed.append((path.id, t))
    return removed


def find_local_or_fail(local: LocalStore, sector: SectorId, file_type: FileType, storage_id: str = "") -> Path:
    try:
        copies = local.find(sector, file_type, storage_id)
    except PathNotFound:
        raise
    if not copies:
        raise FileNotFoundError(f"no local {file_type.dirname} file of sector {sector}")
    return copies[0].file


async def vanilla_proofs(
    env: TaskEnv,
    ctx: TaskContext,
    kind: PostKind,
    sector_size: int,
    randomness: bytes,
    sectors: list[tuple[SectorId, bytes]],
) -> AsyncIterator[tuple[SectorId, bytes | TaskFailure]]:
    """One vanilla proof per sector, in order, from local files only (PoSt never waits for a
    fetch). Each sector is read-locked with a try-lock, as the reference's PoSt prover does, so
    a sector being rewritten is reported instead of delaying the deadline."""
    for sector, comm_r in sectors:
        try:
            lease = await env.index.try_lock(
                sector, FileType.SEALED | FileType.CACHE, FileType(0), ctx.owner, env.lock_ttl_s
            )
            if lease is None:
                raise TaskFailure(Code.TEMPORARY, "can't acquire read lock")
            try:
                sealed = await blocking(find_local_or_fail, env.local, sector, FileType.SEALED)
                cache = await blocking(find_local_or_fail, env.local, sector, FileType.CACHE)
                proof = await cancellable(
                    ctx,
                    env.proofs.vanilla_proof,
                    kind,
                    sector_size,
                    randomness,
                    prover_id(sector.miner),
                    sector.number,
                    comm_r,
                    sealed,
                    cache,
                )
            finally:
                await env.index.unlock(lease)
            yield sector, proof
        except Exception as exc:  # noqa: BLE001 - one sector's failure does not stop the others
            failure = classify(exc)
            if isinstance(exc, FileNotFoundError):
                failure = TaskFailure(Code.SECTOR_NOT_FOUND, str(exc))
            yield sector, failure
