"""The job runner: takes a tracked work from the call tracker to a worker and back.

    open (tracker) -> resolve selector -> queue (scheduler) -> placed -> write "dispatching"
    -> dispatch RPC -> "running" -> Return<Method> (or: worker lost / restarted / timed out)
    -> outcome stored, resources released -> retry as a new call, or hand to the callers.

It also keeps the fleet honest: a worker that misses heartbeats is marked gone and its calls are
re-queued; a worker that restarted has its old session's calls failed as WORKER_RESTARTED after
its stored results were collected; calls the manager holds resources for but the worker no
longer runs (two heartbeats without them, and no stored result) are given up; running calls of
a manager that restarted are accounted on their worker again when it registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.manager import metrics, worker_link
from services.manager.calls import BY_METHOD, CallSpec
from services.manager.calltracker import CallTracker, Decision, LiveWork, Outcome, ReturnStatus, SectorRefKey
from services.manager.config import ManagerSection
from services.manager.domain import SectorId, SectorRef, TaskAssignment
from services.manager.queue import RequestState, SchedRequest
from services.manager.records import CallRecord, CallStatus, WorkRecord, WorkStatus, new_call_id
from services.manager.resources import SealProof
from services.manager.scheduler import Scheduler, SchedWorker
from services.manager.selectors import Candidates, Selector, SelectorContext, selector_from_json, selector_to_json
from services.manager.tasks import TaskType
from services.manager.worker_link import DispatchFailed, WorkerCallFailed, WorkerRequest
from services.manager.workers import (
    Registration,
    WorkerHandle,
    WorkerInfo,
    WorkerRegistry,
    hardware_of,
    table_of,
    task_types_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# A custom dispatch: (worker, assignment) -> sends the task. Raises DispatchFailed or
# WorkerCallFailed (worker_link.py).
CustomDispatch = Callable[[WorkerHandle, TaskAssignment], Awaitable[None]]
WorkGuard = Callable[[WorkRecord], Awaitable[str | None]]


@dataclass(eq=False)
class Ephemeral:
    """An untracked placement (PoSt vanilla proofs): the caller runs it synchronously on the
    worker it gets, and it ends with the call."""

    future: asyncio.Future[SchedWorker]
    task_type: TaskType
    sector: SectorRef
    priority: int
    queued_at: float
    call_id: str
    worker_id: str = ""
    started_at: float = 0.0


@dataclass
class RunnerClock:
    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic


class JobRunner:
    def __init__(
        self,
        tracker: CallTracker,
        registry: WorkerRegistry,
        selectors: SelectorContext,
        settings: ManagerSection,
        clock: RunnerClock | None = None,
    ) -> None:
        self.tracker = tracker
        self.registry = registry
        self.selectors = selectors
        self.settings = settings
        self.clock = clock or RunnerClock()
        self.scheduler = Scheduler(self._on_assign, self.clock.mono, settings.assigner)
        self.ephemeral: dict[str, Ephemeral] = {}
        self.started_at = self.clock.mono()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._dispatched_at: dict[str, float] = {}
        self._resolved_at: dict[str, float] = {}
        self._warned_unsatisfiable: set[tuple[TaskType, SealProof]] = set()
        self._closing = False
        # The lease epoch this manager leads with (set by the app; 0: not known), sent with every
        # dispatch so that workers refuse a deposed manager's.
        self.leader_epoch: Callable[[], int] = lambda: 0
        # Says why a work is no longer wanted (its sector was removed, or a newer pipeline
        # started on it: lifecycle.py), or None; asked before it is queued and again before it
        # is dispatched.
        self.work_guard: WorkGuard | None = None

    # --- background tasks --------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        task = asyncio.create_task(self._guard(coro, name), name=name or None)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guard(coro: Coroutine[Any, Any, Any], name: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job step failed", extra={"step": name})

    async def close(self) -> None:
        self._closing = True
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def stand_down(self, why: Callable[[], Exception]) -> None:
        """Stops placing, re-queuing and waiting (the leader hands its lead over on SIGTERM): the
        next leader places what is queued and settles what runs, from the database and the
        workers' own reports. Nothing this process would still decide could be recorded once the
        lease is gone, and a call it gave up on here would run again there. Calls already
        dispatched and results already arriving end normally. Callers waiting for a work, or for
        a place for a PoSt read, get `why()`: sent again, to any manager, the same request
        attaches to the same work."""
        self._closing = True
        self.scheduler.freeze()
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for job in self.ephemeral.values():
            if not job.worker_id and not job.future.done():
                job.future.set_exception(why())
        self.tracker.stop_waiting(why)

    # --- submitting work ---------------------------------------------------------------------

    async def open(
        self,
        spec: CallSpec,
        sector: SectorRef,
        request: WorkerRequest,
        priority: int,
        selector: Selector,
        dedup: bool = True,
        dispatch: CustomDispatch | None = None,
        key_extra: bytes = b"",
        generation: int = 0,
    ) -> tuple[LiveWork, bool]:
        """Finds or starts the work for a worker request; True when it was started now."""
        key = SectorRefKey(sector.miner, sector.number, int(sector.proof))
        live, created = await self.tracker.open(
            spec.method,
            int(spec.task_type),
            key,
            worker_link.params(spec, request),
            priority,
            dedup=dedup,
            key_extra=key_extra,
            selector=selector_to_json(selector),
            generation=generation,
        )
        if created:
            live.extra["selector"] = selector
            if dispatch is not None:
                live.extra["dispatch"] = dispatch
            await self.schedule(live)
        else:
            metrics.DEDUP_ATTACHED.labels(spec.method).inc()
        return live, created

    async def schedule(self, live: LiveWork) -> None:
        """Queues the work's current call (after its retry back-off, if any)."""
        call_id = live.call.call_id
        delay = live.record.not_before - self.clock.wall()
        if delay > 0:
            loop = asyncio.get_running_loop()
            self._timers[call_id] = loop.call_later(delay, lambda: self.spawn(self._queue(live, call_id), "schedule"))
            return
        await self._queue(live, call_id)

    async def _queue(self, live: LiveWork, call_id: str) -> None:
        self._timers.pop(call_id, None)
        if self._closing or live.call.call_id != call_id or live.call.status is not CallStatus.QUEUED:
            return
        if await self._dropped(live, call_id):
            return
        if live.record.method == "AddPiece" and "dispatch" not in live.extra:
            # An AddPiece carries its bytes in the client's stream, relayed as they come; a
            # manager that restarted (or took over) has no stream to send, so the work cannot run
            # again here. It fails at once, so the lifecycle lets the client's AddPiece sent again
            # through (or answers it from the record, when the worker wrote the piece before).
            await self._fail(
                live,
                call_id,
                CallStatus.FAILED,
                ErrorCode.PERMANENT,
                "the piece's bytes were lost with the manager that was relaying them: send the AddPiece again",
            )
            return
        candidates = avoid_full_workers(await self._resolve(live), live)
        if live.call.call_id != call_id or live.call.status is not CallStatus.QUEUED or call_id in self.scheduler.queue:
            return
        record = live.record
        request = SchedRequest(
            id=call_id,
            shape=(TaskType(record.task_type), SealProof(record.seal_proof)),
            sector_number=record.number,
            priority=record.priority,
            candidates=candidates,
            payload=live,
        )
        self._resolved_at[call_id] = self.clock.mono()
        self.scheduler.submit(request)

    def _selector(self, live: LiveWork) -> Selector:
        selector = live.extra.get("selector")
        if selector is None:
            selector = selector_from_json(live.record.selector)
            live.extra["selector"] = selector
        return selector  # type: ignore[return-value]

    async def _resolve(self, live: LiveWork) -> Candidates:
        try:
            return await self._selector(live).resolve(self.selectors)
        except Exception as exc:  # noqa: BLE001 - the index misbehaved; wait and ask again
            log.warning(
                "selector failed; the request waits and asks again", extra={"work_id": live.work_id, "error": str(exc)}
            )
            return Candidates()

    # --- placement and dispatch --------------------------------------------------------------

    def _on_assign(self, request: SchedRequest, worker: SchedWorker) -> None:
        payload = request.payload
        task = request.shape[0].short
        metrics.QUEUE_WAIT_SECONDS.labels(task).observe(max(0.0, self.clock.mono() - request.queued_at))
        if isinstance(payload, Ephemeral):
            payload.worker_id = worker.id
            payload.started_at = self.clock.wall()
            if not payload.future.done():
                payload.future.set_result(worker)
            return
        assert isinstance(payload, LiveWork)
        self.spawn(self._dispatch(payload, request, worker), "dispatch")

    def assignment(self, live: LiveWork, request: SchedRequest) -> TaskAssignment:
        record = live.record
        grant = request.grant
        return TaskAssignment(
            SectorId(record.miner, record.number),
            request.id,
            record.work_id,
            record.attempt,
            grant.gpu_ordinals if grant else (),
            grant.threads if grant else 0,
            self.settings.timeout_of(TaskType(record.task_type)) or 0.0,
            self.leader_epoch(),
        )

    async def _dispatch(self, live: LiveWork, request: SchedRequest, worker: SchedWorker) -> None:
        call_id = request.id
        handle = self.registry.get(worker.id)
        if handle is None or not handle.connected or handle.client is None:
            self.scheduler.release(call_id)
            await self._fail(
                live, call_id, CallStatus.REQUEUED, ErrorCode.TEMPORARY, f"worker {worker.id} went away before dispatch"
            )
            return
        if await self._dropped(live, call_id):
            self.scheduler.release(call_id)
            return
        grant = request.grant
        ok = await self.tracker.mark_dispatching(
            live,
            handle.worker_id,
            handle.hostname,
            handle.session_id,
            grant.gpu_ordinals if grant else (),
            grant.threads if grant else 0,
        )
        if not ok:  # aborted while it was being placed
            self.scheduler.release(call_id)
            return
        self._dispatched_at[call_id] = self.clock.mono()
        spec = BY_METHOD[live.record.method]
        metrics.CALLS_DISPATCHED.labels(spec.task_type.short, handle.worker_id).inc()
        session = handle.session_id
        assignment = replace(self.assignment(live, request), worker_session_id=session)
        custom = live.extra.get("dispatch")
        tries = 0
        while True:
            try:
                if custom is not None:
                    await custom(handle, assignment)  # type: ignore[operator]
                else:
                    await self._send(handle, spec, live.record.params, assignment)
                break
            except DispatchFailed as exc:
                self.scheduler.release(call_id)
                live.extra["dispatch_error"] = exc
                await self._fail(live, call_id, CallStatus.FAILED, exc.code, str(exc))
                return
            except WorkerCallFailed as exc:
                same_call = live.call.call_id == call_id and live.call.status is CallStatus.DISPATCHING
                same_worker = handle.connected and handle.session_id == session
                if exc.maybe_delivered and custom is None and same_call and same_worker and tries < 3:
                    tries += 1
                    await asyncio.sleep(0.2 * 2**tries)
                    continue
                self.scheduler.release(call_id)
                if not same_call:
                    return
                message = f"dispatch to worker {handle.worker_id} failed: {exc.code}: {exc.details}"
                if exc.refused:
                    await self._fail(live, call_id, CallStatus.FAILED, ErrorCode.PERMANENT, message)
                else:
                    status = CallStatus.REQUEUED if exc.maybe_delivered else CallStatus.FAILED
                    await self._fail(live, call_id, status, ErrorCode.TEMPORARY, message)
                return
        if not await self.tracker.mark_running(live, call_id):
            # Stopped while the dispatch was on the wire: an abort sent meanwhile may have
            # reached the worker before the call did, so it is sent again now that it is there.
            await self._abort_on(handle, live.call, "stopped while it was being dispatched")

    async def _dropped(self, live: LiveWork, call_id: str) -> bool:
        """Ends the call (CANCELLED, the work ABORTED with the reason, which TaskHistory shows)
        when the work guard says it is no longer wanted."""
        if self.work_guard is None:
            return False
        try:
            reason = await self.work_guard(live.record)
        except Exception as exc:  # noqa: BLE001 - the dispatch's own database write will fail the same way
            log.warning(
                "could not check whether a work is still wanted", extra={"work_id": live.work_id, "error": str(exc)}
            )
            return False
        if reason is None:
            return False
        log.info("dropping work that is no longer wanted", extra={"work_id": live.work_id, "reason": reason})
        await self._fail(live, call_id, CallStatus.CANCELLED, ErrorCode.ABORTED, reason)
        return True

    async def _send(self, handle: WorkerHandle, spec: CallSpec, params: bytes, assignment: TaskAssignment) -> None:
        await worker_link.send_task(handle, spec, params, assignment, self.settings.dispatch_timeout_s)

    async def _fail(self, live: LiveWork, call_id: str, status: CallStatus, code: ErrorCode, message: str) -> None:
        decision = await self.tracker.fail_call(live, call_id, status, code, message)
        self._note_outcome(live, call_id, status.value if decision.status is ReturnStatus.STORED else "duplicate")
        await self._after(decision)

    async def _after(self, decision: Decision) -> None:
        if decision.retry and decision.work is not None:
            await self.schedule(decision.work)
        if decision.superseded is not None:
            await self._stop_call(decision.superseded, "superseded by a late result")

    def _note_outcome(self, live: LiveWork | None, call_id: str, outcome: str) -> None:
        dispatched = self._dispatched_at.pop(call_id, None)
        self._resolved_at.pop(call_id, None)
        task = TaskType(live.record.task_type).short if live is not None else "unknown"
        metrics.CALLS_RETURNED.labels(task, outcome).inc()
        if dispatched is not None:
            metrics.CALL_SECONDS.labels(task).observe(self.clock.mono() - dispatched)

    async def _stop_call(self, call: CallRecord, reason: str) -> None:
        """Takes a call out of the queue, or tells its worker to stop it."""
        timer = self._timers.pop(call.call_id, None)
        if timer is not None:
            timer.cancel()
        if self.scheduler.cancel(call.call_id) is not None:
            return
        if call.worker_id:
            handle = self.registry.get(call.worker_id)
            if handle is not None:
                await self._abort_on(handle, call, reason)

    async def _abort_on(self, handle: WorkerHandle, call: CallRecord, reason: str) -> None:
        if handle.client is None or not handle.connected:
            return
        try:
            await worker_link.abort_call(handle.client, call.miner, call.number, call.call_id, reason)
        except WorkerCallFailed as exc:
            log.warning(
                "could not stop a call on its worker",
                extra={"call_id": call.call_id, "worker": call.worker_id, "error": exc.details},
            )

    # --- returns -----------------------------------------------------------------------------

    async def handle_return(
        self, method: str, call_id: str, outcome: Outcome, started_at: float = 0.0, finished_at: float = 0.0
    ) -> ReturnStatus:
        live = self.tracker.by_call.get(call_id)
        if (
            live is not None
            and not outcome.ok
            and outcome.error_code is ErrorCode.ALLOCATE_SPACE
            and live.call.call_id == call_id
        ):
            note_full_worker(live, live.call.worker_id)
        decision = await self.tracker.complete(call_id, method, outcome, started_at, finished_at)
        if decision.status in (ReturnStatus.STORED, ReturnStatus.DUPLICATE):
            # Whatever happened to the work, the worker is done with this call.
            self.scheduler.release(call_id)
            for handle in self.registry.workers.values():
                handle.missing.pop(call_id, None)
        if decision.status is ReturnStatus.STORED:
            status = "succeeded" if outcome.ok else ("aborted" if outcome.error_code is ErrorCode.ABORTED else "failed")
            self._note_outcome(decision.work or live, call_id, status)
        elif decision.status is ReturnStatus.DUPLICATE:
            metrics.CALLS_RETURNED.labels(TaskType(BY_METHOD[method].task_type).short, "duplicate").inc()
        await self._after(decision)
        return decision.status

    # --- workers -----------------------------------------------------------------------------

    async def register_worker(
        self, worker_id: str, session_id: str, address: str, info: WorkerInfo, enabled: bool, cordoned: bool
    ) -> WorkerHandle:
        handle, kind, stale = self.registry.register(worker_id, session_id, address, info, enabled, cordoned)
        if stale is not None:
            self.spawn(stale.close(), "close-client")
        held = self.scheduler.workers.get(worker_id)
        if kind is Registration.RESTARTED and held is not None:
            # The old process's tasks are gone with it; their calls are settled in _collect.
            for request in self.scheduler.remove_worker(worker_id):
                self._dispatched_at.pop(request.id, None)
        self.scheduler.upsert_worker(
            worker_id, handle.hostname, hardware_of(info), task_types_of(info), table_of(info), schedulable=False
        )
        # Calls the tracker believes run in this very process (the manager restarted, or the
        # worker was marked gone and came back): account them before anything new is placed.
        for live in self.tracker.running_on(worker_id):
            if live.call.session_id == session_id and live.call.call_id not in self.scheduler.assigned:
                record = live.record
                request = SchedRequest(
                    id=live.call.call_id,
                    shape=(TaskType(record.task_type), SealProof(record.seal_proof)),
                    sector_number=record.number,
                    priority=record.priority,
                    candidates=Candidates(preferred=(worker_id,)),
                    payload=live,
                )
                self.scheduler.force_assign(request, worker_id)
                self._dispatched_at.setdefault(live.call.call_id, self.clock.mono())
        log.info(
            "worker registered",
            extra={
                "worker": worker_id,
                "hostname": handle.hostname,
                "kind": kind.value,
                "address": address,
                "task_types": sorted(t.short for t in task_types_of(info)),
            },
        )
        self.scheduler.set_schedulable(worker_id, handle.schedulable)
        self.spawn(self._collect(handle, session_id), "collect-results")
        self.selectors_changed(f"worker {worker_id} registered")
        return handle

    async def _collect(self, handle: WorkerHandle, session_id: str) -> None:
        """Collects the results a (re)registered worker holds, then settles the calls of its
        previous sessions that it did not return."""
        await self.collect_results(handle)
        if handle.session_id != session_id or self._closing:
            return
        for live in self.tracker.running_on(handle.worker_id):
            if live.call.session_id != session_id:
                call_id = live.call.call_id
                self.scheduler.release(call_id)
                await self._fail(
                    live,
                    call_id,
                    CallStatus.REQUEUED,
                    ErrorCode.WORKER_RESTARTED,
                    f"worker {handle.worker_id} restarted",
                )

    async def collect_results(self, handle: WorkerHandle) -> int:
        """Pulls stored results from a worker (ListCallResults), records them, acknowledges them.
        Returns how many it processed; 0 when the worker cannot list them."""
        if handle.client is None:
            return 0
        acked: list[worker_link.StoredResult] = []
        try:
            async for stored in worker_link.stored_results(handle.client):
                if stored.method is None or stored.outcome is None:
                    log.warning(
                        "worker holds an unreadable call result; dropping it",
                        extra={"worker": handle.worker_id, "call_id": stored.call_id},
                    )
                    acked.append(stored)
                    continue
                await self.handle_return(
                    stored.method, stored.call_id, stored.outcome, stored.started_at, stored.finished_at
                )
                acked.append(stored)
        except WorkerCallFailed as exc:
            if exc.code != "UNIMPLEMENTED":
                log.warning(
                    "could not list a worker's stored results",
                    extra={"worker": handle.worker_id, "error": exc.details},
                )
            return -1 if not acked else len(acked)
        if acked:
            try:
                await worker_link.ack_results(handle.client, acked)
            except WorkerCallFailed as exc:
                log.warning(
                    "could not acknowledge results; the worker will return them again",
                    extra={"worker": handle.worker_id, "error": exc.details},
                )
        return len(acked)

    def heartbeat(
        self,
        worker_id: str,
        session_id: str,
        running: list[str],
        info: WorkerInfo | None,
        shutting_down: bool = False,
    ) -> tuple[WorkerHandle, list[str]] | None:
        """Records a heartbeat; returns the handle and the ids of the running calls the manager has
        no live record of (the worker should stop them), or None for an unknown worker/session. A
        worker that reports it is shutting down becomes unschedulable at once (its SIGTERM drain)."""
        known = self.registry.get(worker_id)
        paths_before = set(known.path_ids) if known is not None else set()
        handle = self.registry.heartbeat(worker_id, session_id, info)
        if handle is not None and info is not None and set(handle.path_ids) != paths_before:
            self.selectors_changed(f"worker {worker_id} reports other storage paths")
        if handle is None:
            return None
        if shutting_down and not handle.shutting_down:
            handle.shutting_down = True
            log.info(
                "worker is shutting down: placing nothing new on it",
                extra={"worker": worker_id, "running": len(running)},
            )
            self.set_operator_state(handle)
        if info is not None:
            self.scheduler.upsert_worker(
                worker_id, handle.hostname, hardware_of(info), task_types_of(info), table_of(info), handle.schedulable
            )
        reported = set(running)
        unknown = []
        for call_id in running:
            live = self.tracker.by_call.get(call_id)
            if (
                live is None or live.call.worker_id != worker_id or live.call.status.final
            ) and call_id not in self.scheduler.assigned:
                unknown.append(call_id)
        # Calls holding resources here that the worker did not report.
        sched = self.scheduler.workers.get(worker_id)
        suspects = []
        if sched is not None:
            for call_id in list(sched.assigned):
                if call_id in reported or call_id in self.ephemeral:
                    handle.missing.pop(call_id, None)
                    continue
                dispatched = self._dispatched_at.get(call_id)
                if dispatched is None or not handle.previous_heartbeat or dispatched >= handle.previous_heartbeat:
                    continue
                handle.missing[call_id] = handle.missing.get(call_id, 0) + 1
                if handle.missing[call_id] >= 2:
                    suspects.append(call_id)
        if suspects:
            self.spawn(self._confirm_lost(handle, session_id, suspects), "confirm-lost")
        return handle, unknown

    async def _confirm_lost(self, handle: WorkerHandle, session_id: str, call_ids: list[str]) -> None:
        """Calls a worker stopped reporting: take any stored results, then give up on the rest."""
        listed = await self.collect_results(handle)
        if listed < 0 or handle.session_id != session_id or self._closing:
            return  # cannot confirm: keep waiting for the Return (or the next leader decides)
        for call_id in call_ids:
            if handle.missing.get(call_id, 0) < 2 or call_id not in self.scheduler.assigned:
                continue
            handle.missing.pop(call_id, None)
            self.scheduler.release(call_id)
            live = self.tracker.by_call.get(call_id)
            if live is not None and live.call.call_id == call_id:
                log.warning(
                    "worker no longer runs a call and holds no result for it; re-queuing",
                    extra={"worker": handle.worker_id, "call_id": call_id},
                )
                await self._fail(
                    live,
                    call_id,
                    CallStatus.REQUEUED,
                    ErrorCode.TEMPORARY,
                    f"worker {handle.worker_id} no longer runs the call",
                )

    async def worker_gone(self, handle: WorkerHandle, reason: str) -> None:
        """A worker missed its heartbeats: its calls go back to the queue."""
        if self._closing:
            return  # handing the lead over: the next leader decides, when the worker reports
        self.registry.mark_gone(handle)
        metrics.WORKERS_LOST.inc()
        held = self.scheduler.remove_worker(handle.worker_id)
        log.warning(
            "worker gone; re-queuing its calls",
            extra={"worker": handle.worker_id, "calls": len(held), "reason": reason},
        )
        for request in held:
            payload = request.payload
            if isinstance(payload, Ephemeral):
                continue  # its synchronous caller sees the RPC fail
            if isinstance(payload, LiveWork):
                await self._fail(
                    payload,
                    request.id,
                    CallStatus.REQUEUED,
                    ErrorCode.TEMPORARY,
                    f"worker {handle.worker_id} gone: {reason}",
                )

    async def requeue_worker_calls(self, worker_id: str, reason: str) -> None:
        """Stops every call placed on a worker and sends it back to the queue (a drain that
        ran out of time with abort_remaining)."""
        sched = self.scheduler.workers.get(worker_id)
        for call_id in list(sched.assigned if sched else ()):
            live = self.tracker.by_call.get(call_id)
            if live is not None and live.call.call_id == call_id and not live.call.status.final:
                await self._stop_call(live.call, reason)
                await self._fail(
                    live, call_id, CallStatus.REQUEUED, ErrorCode.TEMPORARY, f"worker {worker_id}: {reason}"
                )
            self.scheduler.release(call_id)

    def can_run(self, worker_id: str, task_type: TaskType) -> bool:
        """Whether a worker could run a task type at all now: registered, connected, enabled
        by the operator and for the type (busy or not)."""
        handle = self.registry.get(worker_id)
        sched = self.scheduler.workers.get(worker_id)
        return handle is not None and handle.schedulable and sched is not None and task_type in sched.task_types

    def set_operator_state(self, handle: WorkerHandle) -> None:
        self.scheduler.set_schedulable(handle.worker_id, handle.schedulable)

    # --- abort -------------------------------------------------------------------------------

    async def abort(self, call_id: str, reason: str) -> tuple[str, LiveWork | None] | None:
        """Aborts a live call; returns its previous job state name, or None when unknown."""
        ephemeral = self.ephemeral.get(call_id)
        if ephemeral is not None:
            state = "running" if ephemeral.worker_id else "queued"
            if not ephemeral.future.done():
                ephemeral.future.set_exception(asyncio.CancelledError(reason or "aborted"))
            self.scheduler.cancel(call_id)
            return state, None
        placed = call_id in self.scheduler.assigned
        result = await self.tracker.abort(call_id, reason)
        if result is None:
            return None
        previous, live = result
        self._note_outcome(live, call_id, "aborted")
        if previous is CallStatus.QUEUED:
            timer = self._timers.pop(call_id, None)
            if timer is not None:
                timer.cancel()
            self.scheduler.cancel(call_id)
            return ("assigned" if placed else "queued"), live
        await self._stop_call(live.call, reason or "aborted by an operator")
        return ("assigned" if previous is CallStatus.DISPATCHING else "running"), live

    # --- synchronous (untracked) placements --------------------------------------------------

    async def place(
        self,
        task_type: TaskType,
        sector: SectorRef,
        priority: int,
        candidates: Candidates,
        timeout: float | None,
    ) -> tuple[str, SchedWorker]:
        """Waits for a place for an untracked task; returns its call id and worker. The caller
        must `release(call_id)` when done."""
        call_id = new_call_id()
        loop = asyncio.get_running_loop()
        job = Ephemeral(loop.create_future(), task_type, sector, priority, self.clock.wall(), call_id)
        self.ephemeral[call_id] = job
        request = SchedRequest(
            id=call_id,
            shape=(task_type, sector.proof),
            sector_number=sector.number,
            priority=priority,
            candidates=candidates,
            payload=job,
        )
        self.scheduler.submit(request)
        try:
            worker = await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except BaseException:
            self.scheduler.cancel(call_id)
            self.release(call_id)
            raise
        return call_id, worker

    def release(self, call_id: str) -> None:
        self.ephemeral.pop(call_id, None)
        self.scheduler.release(call_id)

    # --- periodic upkeep ---------------------------------------------------------------------

    async def recover(self) -> int:
        """After a restart: re-queue works that were waiting; running ones wait for their worker."""
        recovered = await self.tracker.recover()
        queued = 0
        for live in recovered:
            if not live.record.dedup:
                # An AddPiece: its bytes were a client stream relayed by the old process, which
                # died with it (queued or mid-relay alike; a worker that was writing it stopped
                # when the stream broke). Failed at once, so the client's AddPiece sent again is
                # not held up by it; a piece the worker did finish is written again by that retry.
                await self.tracker.fail_call(
                    live,
                    live.call.call_id,
                    CallStatus.FAILED,
                    ErrorCode.PERMANENT,
                    "the manager restarted before the piece data was all sent; add the piece again",
                )
                continue
            if live.record.status is WorkStatus.QUEUED:
                await self.schedule(live)
                queued += 1
        log.info("recovered work", extra={"works": len(recovered), "requeued": queued})
        return queued

    async def tick(self) -> None:
        """One round of upkeep: gone workers, orphaned and overdue calls, stale selectors."""
        if self._closing:
            return
        for handle in self.registry.expired():
            await self.worker_gone(handle, f"no heartbeat for {self.settings.heartbeat_timeout_s:g}s")
        now = self.clock.mono()
        grace = self.settings.startup_grace_s or self.settings.heartbeat_timeout_s
        wall = self.clock.wall()
        for live in self.tracker.live():
            call = live.call
            if call.status not in (CallStatus.DISPATCHING, CallStatus.RUNNING):
                continue
            owner = self.registry.get(call.worker_id)
            if (
                (owner is None or not owner.connected)
                and now - self.started_at > grace
                and call.call_id not in self.scheduler.assigned
            ):
                await self._fail(
                    live,
                    call.call_id,
                    CallStatus.REQUEUED,
                    ErrorCode.TEMPORARY,
                    f"worker {call.worker_id} did not come back",
                )
                continue
            timeout = self.settings.timeout_of(TaskType(live.record.task_type))
            started = call.started_at or call.dispatched_at
            if timeout and started and wall - started > timeout + self.settings.timeout_grace_s:
                await self._stop_call(call, "timed out")
                # Its resources stay held until the worker confirms (Return or heartbeats).
                await self._fail(
                    live, call.call_id, CallStatus.TIMED_OUT, ErrorCode.TIMED_OUT, f"ran longer than {timeout:g}s"
                )
        await self.refresh_selectors()
        self.warn_unsatisfiable()

    def selectors_changed(self, why: str) -> None:
        """Something that selectors read changed (a worker attached or detached a storage path,
        a worker joined): every queued request is resolved again now, not at its next periodic
        refresh (`selector_refresh_s`), so a request that found no place waits no longer than
        the event that gives it one."""
        waiting = [r for r in self.scheduler.queue.values() if isinstance(r.payload, LiveWork)]
        if not waiting:
            return
        for request in waiting:
            self._resolved_at[request.id] = 0.0
        log.info("resolving queued requests again", extra={"reason": why, "requests": len(waiting)})
        self.spawn(self.refresh_selectors(), "refresh-selectors")

    async def refresh_selectors(self, limit: int = 500) -> int:
        """Asks the index again for requests that waited a refresh interval (files may have
        arrived, paths freed up, workers joined)."""
        now = self.clock.mono()
        stale = [
            r
            for r in self.scheduler.queue.values()
            if isinstance(r.payload, LiveWork)
            and now - self._resolved_at.get(r.id, 0.0) >= self.settings.selector_refresh_s
        ]
        stale.sort(key=lambda r: self._resolved_at.get(r.id, 0.0))
        for request in stale[:limit]:
            live = request.payload
            assert isinstance(live, LiveWork)
            candidates = avoid_full_workers(await self._resolve(live), live)
            self._resolved_at[request.id] = self.clock.mono()
            current = self.scheduler.queue.get(request.id)
            if current is not None and current.state is RequestState.QUEUED:
                self.scheduler.update_candidates(request.id, candidates)
        return min(len(stale), limit)

    def unsatisfiable_shapes(self) -> set[tuple[TaskType, SealProof]]:
        """Shapes of queued requests that no registered worker could ever run."""
        shapes = {r.shape for r in self.scheduler.queue.values()}
        out = set()
        for shape in shapes:
            if not self.scheduler.workers:
                continue
            if not any(
                shape[0] in w.task_types and w.capacity.check_idle(shape, w.row(shape)) is None
                for w in self.scheduler.workers.values()
            ):
                out.add(shape)
        return out

    def warn_unsatisfiable(self) -> None:
        shapes = self.unsatisfiable_shapes()
        for shape in shapes - self._warned_unsatisfiable:
            waiting = sum(1 for r in self.scheduler.queue.values() if r.shape == shape)
            log.warning(
                "queued requests that no registered worker can ever run (see SchedDiag)",
                extra={"task": shape[0].short, "sector_size": shape[1].label, "waiting": waiting},
            )
        self._warned_unsatisfiable = shapes


FULL_WORKERS = "full_workers"


def note_full_worker(live: LiveWork, worker_id: str) -> None:
    """A call of this work failed for lack of space on this worker (its disk filled up, or it
    could not reserve): its retries should go elsewhere."""
    if worker_id:
        full = live.extra.setdefault(FULL_WORKERS, set())
        assert isinstance(full, set)
        full.add(worker_id)


def avoid_full_workers(candidates: Candidates, live: LiveWork) -> Candidates:
    """Leaves out the workers where this work already ran out of space, while others remain:
    the index's view of their free space lags behind (storage heartbeats), and a holder of the
    sector's files would otherwise be preferred again and fail the same way. If only those
    workers can take the work, they stay (space may be freed there)."""
    full = live.extra.get(FULL_WORKERS)
    if not full or candidates.anywhere:
        return candidates
    assert isinstance(full, set)
    preferred = tuple(w for w in candidates.preferred if w not in full)
    pool = None if candidates.pool is None else frozenset(w for w in candidates.pool if w not in full)
    if not preferred and not pool:
        return candidates
    return replace(candidates, preferred=preferred, pool=pool)
