"""The durable call tracker: every work and every call is written to the database before it is
acted on, so a manager restart neither loses a result nor runs a task twice.

Life of a work (reference §1.3, made durable and without its quirks):
1. `open`: the work id (method + parameter hash) is looked up. A live work with that id (queued,
   running, or done but not yet collected) is *attached to*: the caller waits for it instead of
   starting it again. Otherwise a work row and its first call row (status queued) are written.
2. The scheduler places the call; `mark_dispatching` writes worker, session and grant *before*
   the dispatch RPC; `mark_running` once the worker accepted it.
3. The worker's Return (or the manager's own verdict: worker lost, timed out, dispatch refused)
   ends the call: `complete` / `fail_call`. The first outcome of a call wins; later ones are
   duplicates. A temporary failure with attempts left becomes the next call (back-off, new call
   id); anything else makes the work done, outcome stored.
4. `wait` hands the outcome to every caller waiting, and the first hand-over marks the work
   delivered: the next identical request runs again (the reference instead dropped a result
   nobody waited for at restart, and kept a failed start forever).
A result that arrives after its call was given up for lost (the worker came back) is still
used if the work has not finished otherwise: it is the same computation.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Protocol

from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.manager.records import (
    CallRecord,
    CallStatus,
    OutcomeKind,
    WorkRecord,
    WorkStatus,
    new_call_id,
    work_id_for,
)

log = logging.getLogger(__name__)
# A call in one of these was ended by the manager, not by its worker's Return: the worker must
# not go on running it.
_STOPPED = frozenset({CallStatus.ABORTED, CallStatus.CANCELLED, CallStatus.TIMED_OUT})


@dataclass(frozen=True)
class Outcome:
    """How a call (and then its work) ended: a serialized result, or an error."""

    kind: OutcomeKind
    result: bytes = b""
    error_code: ErrorCode = ErrorCode.UNSPECIFIED
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.RESULT

    @classmethod
    def success(cls, result: bytes) -> Outcome:
        return cls(OutcomeKind.RESULT, result)

    @classmethod
    def failure(cls, code: ErrorCode, message: str) -> Outcome:
        return cls(OutcomeKind.ERROR, b"", code, message or code.name.lower())


@dataclass(frozen=True)
class RetryPolicy:
    """Temporary failures are retried with exponential back-off up to `max_attempts` runs."""

    max_attempts: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    # How long a delivered result still answers an identical request (see CallTracker.open);
    # 0: the next identical request runs again at once.
    redelivery_window_s: float = 0.0

    # Per task type (its wire value): (max attempts, first back-off, longest back-off).
    per_type: dict[int, tuple[int, float, float]] = field(default_factory=dict)

    def attempts_for(self, task_type: int) -> int:
        return self.per_type[task_type][0] if task_type in self.per_type else self.max_attempts

    def delay(self, failed_attempt: int, task_type: int | None = None) -> float:
        initial, longest = self.backoff_initial_s, self.backoff_max_s
        if task_type in self.per_type:
            _, initial, longest = self.per_type[task_type]
        base = min(longest, initial * 2 ** max(0, failed_attempt - 1))
        return random.uniform(base / 2, base)


class ReturnStatus(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    NOT_FOUND = "not_found"
    WRONG_METHOD = "wrong_method"


@dataclass(eq=False)
class LiveWork:
    """A work not yet delivered, in memory, with its current call."""

    record: WorkRecord
    call: CallRecord
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Serializes changes to this work: each is written to the database before it is applied
    # here, so a failed write changes nothing and a concurrent duplicate sees the final state.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiters: int = 0
    # Attached by the job runner (in memory only).
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def work_id(self) -> str:
        return self.record.work_id

    def outcome(self) -> Outcome:
        r = self.record
        if r.outcome is OutcomeKind.RESULT:
            return Outcome.success(r.result)
        return Outcome(
            OutcomeKind.ERROR,
            b"",
            ErrorCode(r.error_code) if r.error_code in ErrorCode._value2member_map_ else ErrorCode.UNSPECIFIED,
            r.error_message,
        )


@dataclass
class Decision:
    """What the tracker decided about a returned or failed call."""

    status: ReturnStatus
    work: LiveWork | None = None
    # The work needs its (new) current call scheduled.
    retry: bool = False
    # A late result finished the work: this (other) call of it is no longer wanted.
    superseded: CallRecord | None = None


class CallStore(Protocol):
    """The repository the tracker writes through (store.ManagerStore)."""

    async def save(self, work: WorkRecord | None = None, calls: Sequence[CallRecord] = ()) -> None: ...
    async def load_live(self) -> tuple[list[WorkRecord], list[CallRecord]]: ...
    async def delivered_since(self, since: float) -> list[WorkRecord]: ...
    async def get_call(self, call_id: str) -> CallRecord | None: ...


@dataclass(frozen=True)
class SectorRefKey:
    miner: int
    number: int
    seal_proof: int


class CallTracker:
    def __init__(
        self, store: CallStore, policy: RetryPolicy | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.policy = policy or RetryPolicy()
        self.clock = clock
        # Live works by work id, and by the id of their current call.
        self.works: dict[str, LiveWork] = {}
        # The same works by sector (miner, number), kept with `works` by _add and _forget.
        self._by_sector: dict[tuple[int, int], dict[str, LiveWork]] = {}
        self.by_call: dict[str, LiveWork] = {}
        # Set by stop_waiting: callers waiting for a work get this error instead of its outcome.
        self._stopped_waiting: Callable[[], Exception] | None = None
        self._stop_waiting = asyncio.Event()
        # Successful works delivered less than redelivery_window_s ago, oldest first: work id ->
        # (work, forget at).
        self.recent: dict[str, tuple[LiveWork, float]] = {}

    # --- start and recovery ------------------------------------------------------------------

    async def recover(self) -> list[LiveWork]:
        """Loads every work not yet delivered (after a restart)."""
        works, calls = await self.store.load_live()
        by_id = {c.call_id: c for c in calls}
        recovered = []
        for record in works:
            call = by_id.get(record.call_id)
            if call is None:  # cannot happen with a consistent store; keep the work visible
                log.error("work without its current call; marking it failed", extra={"work_id": record.work_id})
                call = CallRecord(
                    record.call_id,
                    record.work_id,
                    record.method,
                    record.task_type,
                    record.miner,
                    record.number,
                    record.seal_proof,
                    record.attempt,
                    CallStatus.FAILED,
                )
                record.status = WorkStatus.DONE
                record.outcome = OutcomeKind.ERROR
                record.error_code = ErrorCode.PERMANENT
                record.error_message = "call record lost"
            live = LiveWork(record, call)
            if record.status is WorkStatus.DONE:
                live.done.set()
            self._add(live)
            recovered.append(live)
        window = self.policy.redelivery_window_s
        if window > 0:
            for record in sorted(await self.store.delivered_since(self.clock() - window), key=lambda r: r.updated_at):
                if record.outcome is OutcomeKind.RESULT and record.work_id not in self.works:
                    call = CallRecord(
                        record.call_id,
                        record.work_id,
                        record.method,
                        record.task_type,
                        record.miner,
                        record.number,
                        record.seal_proof,
                        record.attempt,
                        CallStatus.SUCCEEDED,
                    )
                    delivered = LiveWork(record, call)
                    delivered.done.set()
                    self.recent[record.work_id] = (delivered, record.updated_at + window)
        return recovered

    def work_id(self, method: str, params: bytes, key_extra: bytes = b"") -> str:
        return work_id_for(method, params + key_extra)

    def work_id_of(self, method: str, params: bytes, key_extra: bytes, generation: int) -> str:
        """The id `open` gives a deduplicated work of this sector generation."""
        return self.work_id(method, params, key_extra + _generation_key(generation))

    async def open(
        self,
        method: str,
        task_type: int,
        sector: SectorRefKey,
        params: bytes,
        priority: int,
        dedup: bool = True,
        key_extra: bytes = b"",
        selector: str = "",
        generation: int = 0,
    ) -> tuple[LiveWork, bool]:
        """The live work for this request, and whether it was created now (False: attached to
        one in flight or finished and not yet collected). Work of another sector generation
        (lifecycle.py) is another work, even with the same parameters."""
        key_extra += _generation_key(generation)
        work_id = self.work_id(method, params, key_extra) if dedup else f"{method}:{new_call_id()}"
        existing = self.works.get(work_id) or self._recently_delivered(work_id)
        if existing is not None:
            return existing, False
        now = self.clock()
        call_id = new_call_id()
        record = WorkRecord(
            work_id=work_id,
            method=method,
            task_type=task_type,
            miner=sector.miner,
            number=sector.number,
            seal_proof=sector.seal_proof,
            priority=priority,
            params=params,
            status=WorkStatus.QUEUED,
            attempt=1,
            call_id=call_id,
            dedup=dedup,
            selector=selector,
            created_at=now,
            updated_at=now,
            generation=generation,
        )
        call = CallRecord(
            call_id=call_id,
            work_id=work_id,
            method=method,
            task_type=task_type,
            miner=sector.miner,
            number=sector.number,
            seal_proof=sector.seal_proof,
            attempt=1,
            priority=priority,
            queued_at=now,
        )
        live = LiveWork(record, call)
        # Registered before the write so that a concurrent identical request attaches to it.
        self._add(live)
        try:
            await self.store.save(record, [call])
        except BaseException:
            self._forget(live)
            live.record.outcome = OutcomeKind.ERROR
            live.record.error_code = ErrorCode.TEMPORARY
            live.record.error_message = "the manager could not record the work (database unavailable)"
            live.done.set()
            raise
        return live, True

    # --- dispatch ----------------------------------------------------------------------------

    async def mark_dispatching(
        self,
        live: LiveWork,
        worker_id: str,
        hostname: str,
        session_id: str,
        gpu_ordinals: tuple[int, ...],
        threads: int,
    ) -> bool:
        """Written before the dispatch RPC: after a crash the call is known to maybe be on that
        worker. False when the call is no longer the work's live current call (aborted)."""
        async with live.lock:
            if live.call.status is not CallStatus.QUEUED:
                return False
            now = self.clock()
            call = replace(
                live.call,
                status=CallStatus.DISPATCHING,
                worker_id=worker_id,
                hostname=hostname,
                session_id=session_id,
                gpu_ordinals=gpu_ordinals,
                threads=threads,
                dispatched_at=now,
            )
            record = replace(live.record, status=WorkStatus.RUNNING, updated_at=now)
            await self.store.save(record, [call])
            live.record, live.call = record, call
            return True

    async def mark_running(self, live: LiveWork, call_id: str) -> bool:
        """False when the call was stopped (aborted, cancelled, superseded by a late result)
        while its dispatch RPC was on the wire: the worker has it now and must be told to stop
        it again (the first abort may have arrived before the dispatch). A call that returned
        (or failed) before the dispatch RPC answered is left alone."""
        async with live.lock:
            if live.call.call_id != call_id or live.call.status is not CallStatus.DISPATCHING:
                return not (live.call.call_id == call_id and live.call.status in _STOPPED)
            call = replace(live.call, status=CallStatus.RUNNING, started_at=self.clock())
            await self.store.save(None, [call])
            live.call = call
            return True

    # --- outcomes ----------------------------------------------------------------------------

    async def complete(
        self, call_id: str, method: str, outcome: Outcome, started_at: float = 0.0, finished_at: float = 0.0
    ) -> Decision:
        """A worker returned an outcome for a call."""
        live = self.by_call.get(call_id)
        if live is None:
            return await self._complete_unknown(call_id, method, outcome, started_at, finished_at)
        async with live.lock:
            if live.call.call_id != call_id:
                return await self._complete_unknown(call_id, method, outcome, started_at, finished_at)
            if live.call.method != method:
                return Decision(ReturnStatus.WRONG_METHOD, live)
            if live.call.status.final:
                return Decision(ReturnStatus.DUPLICATE, live)
            status = CallStatus.SUCCEEDED if outcome.ok else _failed_status(outcome.error_code)
            return await self._finish(live, status, outcome, started_at, finished_at)

    async def fail_call(
        self, live: LiveWork, call_id: str, status: CallStatus, code: ErrorCode, message: str
    ) -> Decision:
        """The manager ends a call itself (worker lost or restarted, timed out, dispatch refused)."""
        async with live.lock:
            if live.call.call_id != call_id or live.call.status.final:
                return Decision(ReturnStatus.DUPLICATE, live)
            return await self._finish(live, status, Outcome.failure(code, message))

    async def _finish(
        self, live: LiveWork, status: CallStatus, outcome: Outcome, started_at: float = 0.0, finished_at: float = 0.0
    ) -> Decision:
        """Ends the current call (caller holds live.lock): retry as a new call, or store the outcome."""
        now = self.clock()
        call = replace(
            live.call,
            status=status,
            started_at=started_at or live.call.started_at,
            finished_at=finished_at or now,
            error_code=0 if outcome.ok else int(outcome.error_code),
            error_message="" if outcome.ok else outcome.error_message,
        )
        record = replace(live.record, updated_at=now)
        retry = (
            not outcome.ok
            and outcome.error_code.temporary
            and record.dedup
            and record.attempt < self.policy.attempts_for(record.task_type)
        )
        if retry:
            attempt = record.attempt + 1
            next_call = CallRecord(
                call_id=new_call_id(),
                work_id=record.work_id,
                method=record.method,
                task_type=record.task_type,
                miner=record.miner,
                number=record.number,
                seal_proof=record.seal_proof,
                attempt=attempt,
                priority=record.priority,
                queued_at=now,
            )
            record.attempt = attempt
            record.call_id = next_call.call_id
            record.status = WorkStatus.QUEUED
            record.not_before = now + self.policy.delay(attempt - 1, record.task_type)
            await self.store.save(record, [call, next_call])
            if self.by_call.get(call.call_id) is live:
                del self.by_call[call.call_id]
            live.record, live.call = record, next_call
            self.by_call[next_call.call_id] = live
            log.info(
                "call failed temporarily; retrying",
                extra={
                    "work_id": record.work_id,
                    "call_id": call.call_id,
                    "attempt": attempt,
                    "error": outcome.error_message,
                    "retry_in_s": round(record.not_before - now, 2),
                },
            )
            return Decision(ReturnStatus.STORED, live, retry=True)
        self._set_outcome(record, outcome)
        await self.store.save(record, [call])
        live.record, live.call = record, call
        live.done.set()
        return Decision(ReturnStatus.STORED, live)

    @staticmethod
    def _set_outcome(record: WorkRecord, outcome: Outcome) -> None:
        record.status = WorkStatus.DONE
        record.outcome = outcome.kind
        record.result = outcome.result
        record.error_code = 0 if outcome.ok else int(outcome.error_code)
        record.error_message = "" if outcome.ok else outcome.error_message
        record.not_before = 0.0

    async def _complete_unknown(
        self, call_id: str, method: str, outcome: Outcome, started_at: float, finished_at: float
    ) -> Decision:
        """A Return for a call that is not the current call of a live work."""
        old = await self.store.get_call(call_id)
        if old is None:
            return Decision(ReturnStatus.NOT_FOUND)
        if old.method != method:
            return Decision(ReturnStatus.WRONG_METHOD)
        live = self.works.get(old.work_id)
        if not (outcome.ok and old.status is CallStatus.REQUEUED and live is not None):
            return Decision(ReturnStatus.DUPLICATE, live)
        async with live.lock:
            if (
                live.record.status not in (WorkStatus.QUEUED, WorkStatus.RUNNING)
                or live.call.call_id == call_id
                or live.call.status is not CallStatus.QUEUED
            ):
                # Used only while the rerun is still queued here: a rerun given to a worker may
                # have begun by removing what the late call wrote (a PC1 removes the sector's
                # sealed file and cache everywhere first, a PC2 its sealed file), so the late
                # result could name files that are gone. The rerun's own result counts then.
                return Decision(ReturnStatus.DUPLICATE, live)
            # The worker we gave up on finished after all: its result is as good as a rerun's.
            now = self.clock()
            old = replace(
                old,
                status=CallStatus.SUCCEEDED,
                finished_at=finished_at or now,
                started_at=started_at or old.started_at,
                error_code=0,
                error_message="",
            )
            current = live.call
            superseded = replace(
                current,
                status=CallStatus.CANCELLED,
                finished_at=now,
                error_code=int(ErrorCode.ABORTED),
                error_message=f"superseded by the late result of call {call_id}",
            )
            record = replace(live.record, updated_at=now)
            self._set_outcome(record, outcome)
            await self.store.save(record, [old, superseded])
            live.record, live.call = record, superseded
            live.done.set()
            log.info("late result of a requeued call used", extra={"work_id": live.work_id, "call_id": call_id})
            return Decision(ReturnStatus.STORED, live, superseded=current)

    async def abort(self, call_id: str, reason: str) -> tuple[CallStatus, LiveWork] | None:
        """Ends a queued or running call and its work with ABORTED (not retried). None when the
        call is not live."""
        live = self.by_call.get(call_id)
        if live is None:
            return None
        async with live.lock:
            if (
                live.call.call_id != call_id
                or live.call.status.final
                or live.record.status not in (WorkStatus.QUEUED, WorkStatus.RUNNING)
            ):
                return None
            previous = live.call.status
            await self._finish(
                live, CallStatus.ABORTED, Outcome.failure(ErrorCode.ABORTED, reason or "aborted by an operator")
            )
            return previous, live

    # --- delivery ----------------------------------------------------------------------------

    def stop_waiting(self, error: Callable[[], Exception]) -> None:
        """Every caller waiting for a work, now or later, gets `error()` instead (this manager
        hands its lead over: the outcome will reach the next leader, where the same request
        sent again attaches to the same work). The works themselves go on."""
        self._stopped_waiting = error
        self._stop_waiting.set()

    async def wait(self, live: LiveWork, timeout: float | None) -> Outcome:
        """Waits for the work's outcome (raises TimeoutError; the work goes on), then delivers it."""
        live.waiters += 1
        try:
            if not live.done.is_set():
                done = asyncio.ensure_future(live.done.wait())
                stopped = asyncio.ensure_future(self._stop_waiting.wait())
                try:
                    await asyncio.wait({done, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    done.cancel()
                    stopped.cancel()
                if not live.done.is_set():
                    if self._stopped_waiting is not None:
                        raise self._stopped_waiting()
                    raise TimeoutError
        finally:
            live.waiters -= 1
        outcome = live.outcome()
        await self.deliver(live)
        return outcome

    async def deliver(self, live: LiveWork) -> None:
        """The outcome reached a caller: forget the work (the next identical request runs again)."""
        async with live.lock:
            if live.record.status is not WorkStatus.DONE:
                return
            record = replace(live.record, status=WorkStatus.DELIVERED, updated_at=self.clock())
            # Forgotten first: a request arriving during the write starts a new run (or, within
            # the redelivery window, gets this result again).
            self._forget(live)
            live.record = record
            if self.policy.redelivery_window_s > 0 and record.outcome is OutcomeKind.RESULT:
                self.recent[live.work_id] = (live, record.updated_at + self.policy.redelivery_window_s)
            await self.store.save(record)

    def _recently_delivered(self, work_id: str) -> LiveWork | None:
        """A successful result delivered within the redelivery window, for a caller that sends
        the identical request again because it never saw the answer (its connection broke, or
        the manager died between recording the delivery and the reply reaching the client):
        it gets the same result instead of running the task a second time. Expired entries are
        dropped here, oldest first."""
        now = self.clock()
        while self.recent:
            oldest = next(iter(self.recent))
            if self.recent[oldest][1] > now:
                break
            del self.recent[oldest]
        entry = self.recent.get(work_id)
        return entry[0] if entry is not None else None

    def _add(self, live: LiveWork) -> None:
        self.works[live.work_id] = live
        self.by_call[live.call.call_id] = live
        self._by_sector.setdefault((live.record.miner, live.record.number), {})[live.work_id] = live

    def _forget(self, live: LiveWork) -> None:
        if self.works.get(live.work_id) is live:
            del self.works[live.work_id]
        if self.by_call.get(live.call.call_id) is live:
            del self.by_call[live.call.call_id]
        key = (live.record.miner, live.record.number)
        of_sector = self._by_sector.get(key)
        if of_sector is not None and of_sector.get(live.work_id) is live:
            del of_sector[live.work_id]
            if not of_sector:
                del self._by_sector[key]

    # --- views -------------------------------------------------------------------------------

    def live(self) -> list[LiveWork]:
        return list(self.works.values())

    def live_of(self, miner: int, number: int) -> list[LiveWork]:
        """The live works of one sector, without scanning the others (the lifecycle checks
        this on every sealing call)."""
        return list(self._by_sector.get((miner, number), {}).values())

    def running_on(self, worker_id: str) -> list[LiveWork]:
        return [
            w
            for w in self.works.values()
            if w.call.worker_id == worker_id and w.call.status in (CallStatus.DISPATCHING, CallStatus.RUNNING)
        ]


def _generation_key(generation: int) -> bytes:
    return b"\x00generation:" + str(generation).encode() if generation else b""


def _failed_status(code: ErrorCode) -> CallStatus:
    if code is ErrorCode.ABORTED:
        return CallStatus.ABORTED
    if code is ErrorCode.WORKER_RESTARTED:
        return CallStatus.REQUEUED  # its worker was lost; the task goes back to the queue
    if code is ErrorCode.TIMED_OUT:
        return CallStatus.TIMED_OUT
    return CallStatus.FAILED
