"""PC1 for several sectors as one task (`[worker] pc1_batch_size = N`, issue 20): the PC1 calls of
one sector size and proof type that reach this worker are gathered until N wait or the window
(`pc1_batch_wait_ms`) from the first of them ends, then run as one rust_core call that labels
their sectors together on one core (rust_core.seal_pre_commit_phase1_batch: the SHA-256 rounds of
the sectors interleaved, each sector's files and phase-1 blob exactly the single call's).

Each call stays a call: it holds its own locks, space and cache directory (tasks.pre_commit1),
is recorded and returned on its own; only the rust_core PC1 call (tree_d of each sector, then the
labeling of all) is shared. What can go wrong
with one member of a batch is kept to that member:

- Stopped (AbortCall, its timeout, a lost lock, the drain deadline): while it waits for the
  batch to fill, it just leaves the group. Once the batch runs, its own stop token in the batch
  is cancelled and it waits until rust_core says it is out of the batch (within 100 ms: its
  files removed, its layers' memory freed) and only then reports its stop, so nothing writes
  its files after that. The rust_core call goes on with the others, which resume at the layer
  they were labeling (its file is rewritten; the layers before it are kept): a stop costs them
  at most one layer, not the whole labeling.
- Failed (a bad unsealed file, pieces that do not match): the batch call fails as a whole, naming
  the sector; every member is then run alone, so each gets its own outcome, as without batching.
- A worker restart: nothing is kept between processes; each call is `running` in the call store
  and comes back as WORKER_RESTARTED like any other (CallRunner.recover).

Calls of another size or proof type are never in one batch (the key). Nothing here knows gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rust_core
from services.common.vocabulary import TaskType
from services.worker import sealer
from services.worker.sealer import Piece

log = logging.getLogger(__name__)

# (sector size in bytes, seal proof type): only calls with one key share a batch.
BatchKey = tuple[int, int]
# The blocking call a batch runs: (sector size, jobs, the batch's cancel token, one stop token per
# job, told (from the call's thread) with a job's index once that job is out of the call) -> one
# phase-1 blob per job, None for a stopped one.
RunBatch = Callable[
    [int, "list[Pc1Job]", rust_core.CancelToken, list[rust_core.CancelToken], Callable[[int], None]],
    "list[bytes | None]",
]


@dataclass(frozen=True)
class Pc1Job:
    """One sector's PC1 arguments, and the call it belongs to (for the logs)."""

    call: str
    cache: Path
    unsealed: Path
    prover: bytes
    number: int
    ticket: bytes
    pieces: list[Piece]


def run_batch(
    sector_size: int,
    jobs: list[Pc1Job],
    cancel: rust_core.CancelToken,
    lanes: list[rust_core.CancelToken],
    on_stopped: Callable[[int], None],
) -> list[bytes | None]:
    """The production RunBatch: rust_core's batch PC1."""
    return sealer.pre_commit1_batch(
        sector_size,
        [(j.cache, j.unsealed, j.prover, j.number, j.ticket, j.pieces) for j in jobs],
        cancel,
        lanes,
        on_stopped,
    )


@dataclass
class _Run:
    """One rust_core call in flight: its token and the thread's future."""

    batch: int
    token: rust_core.CancelToken
    thread: asyncio.Future[list[bytes | None]]


@dataclass(eq=False)
class _Entry:
    job: Pc1Job
    future: asyncio.Future[bytes]
    cancelled: bool = False
    run: _Run | None = None
    # Its own stop token in a running batch, and set once the batch says it is out.
    lane: rust_core.CancelToken = field(default_factory=rust_core.CancelToken)
    out: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class BatchRecord:
    """A rust_core call that ran: its number, the calls in it, how it ended ("done" or
    "failed"), how long it took and the calls that left it stopped."""

    batch: int
    key: BatchKey
    calls: tuple[str, ...]
    outcome: str
    seconds: float
    stopped: tuple[str, ...] = ()


@dataclass
class Pc1Batcher:
    """Gathers PC1 calls into batches of up to `size` (see the module docstring)."""

    size: int
    wait_s: float
    run_fn: RunBatch = run_batch
    # The last batches run, newest last (tests and logs; bounded).
    history: list[BatchRecord] = field(default_factory=list)
    _pending: dict[BatchKey, list[_Entry]] = field(default_factory=dict)
    _timers: dict[BatchKey, asyncio.TimerHandle] = field(default_factory=dict)
    _drivers: set[asyncio.Task[None]] = field(default_factory=set)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def waiting(self, key: BatchKey) -> int:
        """Calls of `key` gathered and not started yet."""
        return len(self._pending.get(key, []))

    async def run(self, key: BatchKey, job: Pc1Job, returned: Callable[[float], None] | None = None) -> bytes:
        """PC1 of `job` as part of a batch; its phase-1 blob. Cancelled, it returns only once no
        rust_core call writes its files any more (`returned` gets how long that took)."""
        loop = asyncio.get_running_loop()
        entry = _Entry(job, loop.create_future())
        group = self._pending.setdefault(key, [])
        group.append(entry)
        if len(group) >= self.size:
            self._flush(key)
        elif len(group) == 1:
            self._timers[key] = loop.call_later(self.wait_s, self._flush, key)
        try:
            return await asyncio.shield(entry.future)
        except asyncio.CancelledError:
            entry.cancelled = True
            self._leave(key, entry)
            run = entry.run
            if run is not None and not run.thread.done():
                stopping = time.monotonic()
                entry.lane.cancel()
                told: asyncio.Future[Any] = asyncio.ensure_future(entry.out.wait())
                either: list[asyncio.Future[Any]] = [told, run.thread]
                try:
                    # Out of the batch, or the whole call over (finished or failed meanwhile).
                    while not (entry.out.is_set() or run.thread.done()):
                        with contextlib.suppress(BaseException):
                            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    told.cancel()
                if returned is not None:
                    returned(time.monotonic() - stopping)
            raise

    def _leave(self, key: BatchKey, entry: _Entry) -> None:
        group = self._pending.get(key)
        if group is None or entry not in group:
            return
        group.remove(entry)
        if not group:
            del self._pending[key]
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    def _flush(self, key: BatchKey) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        group = [e for e in self._pending.pop(key, []) if not e.cancelled]
        if not group:
            return
        driver = asyncio.get_running_loop().create_task(self._drive(key, group), name=f"pc1-batch-{key[0]}")
        self._drivers.add(driver)
        driver.add_done_callback(self._drivers.discard)

    async def _drive(self, key: BatchKey, entries: list[_Entry]) -> None:
        """Runs `entries` as one rust_core call; what a stop or a failure does: module docstring."""
        queue: list[list[_Entry]] = [entries]
        while queue:
            group = [e for e in queue.pop(0) if not e.cancelled and not e.future.done()]
            if not group:
                continue
            batch = next(self._seq)
            token = rust_core.CancelToken()
            jobs = [e.job for e in group]
            stopped: list[str] = []
            loop = asyncio.get_running_loop()

            def out_of_batch(i: int, members: list[_Entry] = group, stopped: list[str] = stopped) -> None:
                stopped.append(members[i].job.call)
                with contextlib.suppress(RuntimeError):  # the loop is closing: nobody waits
                    loop.call_soon_threadsafe(members[i].out.set)

            thread = asyncio.ensure_future(
                asyncio.to_thread(self.run_fn, key[0], jobs, token, [e.lane for e in group], out_of_batch)
            )
            run = _Run(batch, token, thread)
            for e in group:
                e.run = run
            calls = tuple(j.call for j in jobs)
            log.info("pc1 batch started", extra={"batch": batch, "sectors": len(jobs), "calls": list(calls)})
            started = time.monotonic()
            try:
                outs = await asyncio.shield(thread)
            except asyncio.CancelledError:
                # The batcher's own task is cancelled (the loop is closing): stop the call too.
                token.cancel()
                with contextlib.suppress(BaseException):
                    await thread
                for e in group:
                    e.future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - each member then gets its own outcome
                self._record(batch, key, calls, "failed", started, stopped)
                if len(group) > 1:
                    log.warning(
                        "pc1 batch failed; its sectors run one by one",
                        extra={"batch": batch, "calls": list(calls), "error": str(exc)},
                    )
                    queue[0:0] = [[e] for e in group]
                elif not group[0].cancelled:
                    group[0].future.set_exception(exc)
                continue
            self._record(batch, key, calls, "done", started, stopped)
            log.info(
                "pc1 batch done",
                extra={
                    "batch": batch,
                    "sectors": len(jobs),
                    "calls": list(calls),
                    "stopped": stopped,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
            for e, out in zip(group, outs, strict=True):
                if e.future.done() or e.cancelled:
                    continue
                if out is None:  # out without being stopped here: never expected; run it again
                    queue.insert(0, [e])
                else:
                    e.future.set_result(out)

    def _record(
        self, batch: int, key: BatchKey, calls: tuple[str, ...], outcome: str, started: float, stopped: list[str]
    ) -> None:
        self.history.append(BatchRecord(batch, key, calls, outcome, time.monotonic() - started, tuple(stopped)))
        del self.history[:-100]


def capacity_warnings(size: int, max_tasks: int, caps: dict[tuple[int, int], int]) -> list[str]:
    """What in this worker's own limits keeps `size` PC1 calls from running here at once (a batch
    can then never fill, and every batch waits out its window): `max_tasks` and the PC1
    MAX_CONCURRENT overrides (for every size, or per size: seal proof != 0)."""
    out = []
    if max_tasks and max_tasks < size:
        out.append(f"max_tasks = {max_tasks} is below pc1_batch_size = {size}")
    for (task_type, proof), cap in sorted(caps.items()):
        if task_type == TaskType.PRE_COMMIT_1 and cap < size:
            scope = "for every size" if proof == 0 else f"for seal proof {proof}"
            out.append(f"PC1 MAX_CONCURRENT {scope} is {cap}, below pc1_batch_size = {size}")
    return out
