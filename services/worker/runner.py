"""Running asynchronous calls: admission (per-type caps, a total cap), one asyncio task per call
with its timeout, abort, and the durable record of each outcome before it is returned.

Stopping a call (AbortCall, its timeout, the drain deadline, SIGTERM past the grace period, a lost
lock lease) cancels the call's rust_core token as well as its asyncio task: the running rust_core
call returns within 100 ms (tasks.cancellable), the task's clean-up removes its files and releases
its index locks and space reservation, and the outcome (ABORTED, TIMED_OUT or TEMPORARY, with the
time the call ran) is recorded and returned at once, which frees the worker in the manager's
accounting.

Ordering that makes returns reliable: the call is recorded (`running`) before the task starts;
its outcome is written (`done`) before the sender is woken; a process that dies in between
leaves `running` rows, which the next start turns into WORKER_RESTARTED outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from services.common import errors
from services.common.vocabulary import TaskErrorCode as Code
from services.worker.calls import CallId, CallResult, Outcome, TaskFailure, task_type_name
from services.worker.callstore import CallStore, call_key
from services.worker.faults import TaskFault
from services.worker.tasks import TaskContext, classify

log = logging.getLogger(__name__)


class Exhausted(errors.ResourceExhausted):
    """RESOURCE_EXHAUSTED: the worker cannot start another call of this type now."""


def _deadline_mono(deadline: asyncio.Timeout) -> float:
    """The loop-time deadline of an expired asyncio.timeout as time.monotonic() (the default loop
    clock is monotonic)."""
    when = deadline.when()
    return when if when is not None else time.monotonic()


def stored_result(call_id: CallId, call_type: int, started_at: float, outcome: Outcome | TaskFailure) -> CallResult:
    """The result to store of a call that started at `started_at` (Unix seconds) and ends now."""
    return CallResult(call_id, call_type, outcome, started_ns=int(started_at * 1e9), finished_ns=int(time.time() * 1e9))


@dataclass
class RunningCall:
    call_id: CallId
    call_type: int
    task_type: int
    seal_proof: int
    started_at: float
    task: asyncio.Task[None] | None = None
    stop_reason: TaskFailure | None = None
    context: TaskContext = field(default_factory=lambda: TaskContext(owner=""))
    # time.monotonic() of the first stop request (abort, timeout, drain), for the stop latency.
    stop_requested: float | None = None


class CallRunner:
    def __init__(
        self,
        store: CallStore,
        on_result: Callable[[], None],
        worker_id: str,
        max_tasks: int = 0,
        type_caps: dict[tuple[int, int], int] | None = None,
        fault: TaskFault | None = None,
    ) -> None:
        self.store = store
        self.on_result = on_result
        self.worker_id = worker_id
        self.max_tasks = max_tasks
        self.type_caps = dict(type_caps or {})
        self.running: dict[str, RunningCall] = {}
        self.shutting_down = False
        # (miner, sector number, call type) of the calls `recover` found cut off by the last stop.
        self.interrupted: list[tuple[int, int, int]] = []
        self.fault = fault or TaskFault()

    def recover(self) -> int:
        """Calls left `running` by a previous process end as WORKER_RESTARTED."""
        keys = self.store.running_keys()
        for key in keys:
            record = self.store.get(key)
            if record is None:
                continue
            call_id = CallId.parse_key(key)
            self.interrupted.append((call_id.miner, call_id.number, record.call_type))
            failure = TaskFailure(Code.WORKER_RESTARTED, "the worker restarted while the call was running")
            self.store.finish(key, stored_result(call_id, record.call_type, time.time(), failure))
        self.store.prune()
        return len(keys)

    def known(self, call_id: CallId) -> bool:
        key = call_key(call_id)
        return key in self.running or self.store.get(key) is not None

    def admit(self, task_type: int, seal_proof: int = 0) -> None:
        """Raises Exhausted when one more task of this type (and sector size) would pass the
        worker's total limit or a MAX_CONCURRENT cap (per size, or for every size)."""
        if self.max_tasks and len(self.running) >= self.max_tasks:
            raise Exhausted(f"{len(self.running)} tasks running, the worker's limit is {self.max_tasks}")
        name = task_type_name(task_type)
        for proof in {seal_proof, 0}:
            cap = self.type_caps.get((task_type, proof))
            if cap is None:
                continue
            same = sum(
                1 for r in self.running.values() if r.task_type == task_type and (proof == 0 or r.seal_proof == proof)
            )
            if same >= cap:
                scope = "" if proof == 0 else " of this sector size"
                raise Exhausted(f"{same} {name} tasks{scope} running, the worker's cap is {cap}")

    def context_for(self, call_id: CallId, gpu_ordinals: list[int]) -> TaskContext:
        key = call_key(call_id)

        def lost(why: str) -> None:
            self._stop(key, TaskFailure(Code.TEMPORARY, why))

        return TaskContext(owner=f"call:{key}", gpu_ordinals=list(gpu_ordinals), on_lost=lost)

    def start(
        self,
        call_id: CallId,
        call_type: int,
        task_type: int,
        seal_proof: int,
        timeout_s: float | None,
        context: TaskContext,
        work: Callable[[TaskContext], Awaitable[Outcome]],
    ) -> None:
        """Records the call and starts it; the caller has checked `known` and `admit`."""
        key = call_key(call_id)
        started = time.time()
        if not self.store.start(key, call_type, started):
            return
        running = RunningCall(call_id, call_type, task_type, seal_proof, started, context=context)
        self.running[key] = running
        running.task = asyncio.create_task(self._run(key, running, timeout_s, work), name=f"call-{key}")

    @contextlib.contextmanager
    def inline(
        self,
        call_id: CallId,
        call_type: int,
        task_type: int,
        seal_proof: int,
        context: TaskContext | None = None,
    ) -> Iterator[RunningCall]:
        """Counts a call that runs inside its dispatch RPC (AddPiece) as running while it does.
        AbortCall on it cancels its token: the rust_core call stops and the RPC records the
        abort."""
        key = call_key(call_id)
        running = RunningCall(call_id, call_type, task_type, seal_proof, time.time())
        if context is not None:
            running.context = context
        self.running[key] = running
        try:
            yield running
        finally:
            self.running.pop(key, None)

    def record(self, running: RunningCall, outcome: Outcome | TaskFailure) -> None:
        """Stores the outcome of an inline call; it is returned like any other (a failure of a
        call that was told to stop is recorded as the stop)."""
        key = call_key(running.call_id)
        if isinstance(outcome, TaskFailure) and running.stop_reason is not None:
            outcome = TaskFailure(
                running.stop_reason.code, f"{running.stop_reason.message} (stopped after {self._ran(running)})"
            )
        if self.store.start(key, running.call_type, running.started_at):
            self.store.finish(key, stored_result(running.call_id, running.call_type, running.started_at, outcome))
            self.on_result()

    async def _run(
        self, key: str, running: RunningCall, timeout_s: float | None, work: Callable[[TaskContext], Awaitable[Outcome]]
    ) -> None:
        outcome: Outcome | TaskFailure
        try:
            try:
                async with asyncio.timeout(timeout_s) as deadline:
                    self._test_fault()
                    outcome = await work(running.context)
            except TimeoutError:
                running.stop_requested = running.stop_requested or _deadline_mono(deadline)
                outcome = TaskFailure(
                    Code.TIMED_OUT,
                    f"the task ran past its timeout of {timeout_s:g} s and was stopped after {self._ran(running)}",
                )
            except asyncio.CancelledError:
                if self.shutting_down and running.stop_reason is None:
                    raise  # left `running`: the next start reports WORKER_RESTARTED
                reason = running.stop_reason or TaskFailure(Code.ABORTED, "task cancelled")
                outcome = TaskFailure(reason.code, f"{reason.message} (stopped after {self._ran(running)})")
            except Exception as exc:  # noqa: BLE001 - every failure becomes a TaskError
                outcome = classify(exc)
                if outcome.code in (Code.UNSPECIFIED,):
                    log.exception("task failed unexpectedly", extra={"call": key})
            # From the stop request to here: the rust_core call returned, files discarded, locks
            # and the reservation released (the `async with` blocks have exited).
            released_s = None if running.stop_requested is None else time.monotonic() - running.stop_requested
            record_start = time.monotonic()
            self.store.finish(key, stored_result(running.call_id, running.call_type, running.started_at, outcome))
            self.on_result()
            if isinstance(outcome, TaskFailure) and released_s is not None:
                assert running.stop_requested is not None
                call_return_s = running.context.call_return_s
                log.warning(
                    "task stopped",
                    extra={
                        "call": key,
                        "code": Code(outcome.code).wire_name,
                        "error": outcome.message,
                        # Stop request to the outcome recorded (and the Return under way).
                        "stop_latency_s": round(time.monotonic() - running.stop_requested, 4),
                        # Of which: the rust_core call returning, the clean-up up to the
                        # release of locks and reservation, and the durable record.
                        "call_return_s": None if call_return_s is None else round(call_return_s, 4),
                        "released_s": round(released_s, 4),
                        "record_s": round(time.monotonic() - record_start, 4),
                    },
                )
            elif isinstance(outcome, TaskFailure):
                log.warning(
                    "task failed", extra={"call": key, "code": Code(outcome.code).wire_name, "error": outcome.message}
                )
            else:
                log.info("task done", extra={"call": key, "seconds": round(time.time() - running.started_at, 3)})
        finally:
            self.running.pop(key, None)

    def stop(self, key: str, reason: TaskFailure) -> bool:
        """Cancels a running (asynchronous) call; its outcome is recorded as `reason`."""
        return self._stop(key, reason)

    @staticmethod
    def _ran(running: RunningCall) -> str:
        return f"{time.time() - running.started_at:.2f} s"

    def _test_fault(self) -> None:
        """The test-only failure injection (a no-op unless services/worker/faults.py loaded the
        test hooks; delays and hangs run in the task's own `before` hook)."""
        if self.fault.should_fail():
            raise TaskFailure(Code.TEMPORARY, f"test fault injected ({self.fault.injected} so far in this process)")

    def _stop(self, key: str, reason: TaskFailure) -> bool:
        running = self.running.get(key)
        if running is not None and running.task is None and running.stop_reason is None:
            # An inline call (AddPiece): its RPC handler sees the cancelled rust_core call fail.
            running.stop_reason = reason
            running.stop_requested = time.monotonic()
            running.context.cancel.cancel()
            return True
        if running is None or running.task is None or running.task.done():
            return False
        if running.stop_reason is None:
            running.stop_reason = reason
            running.stop_requested = time.monotonic()
        # The token first: the rust_core call starts stopping while the task's cancellation is
        # delivered (tasks.cancellable also cancels it, for stops that come as a bare cancel).
        running.context.cancel.cancel()
        running.task.cancel()
        return True

    def abort(self, call_id: CallId, reason: str) -> bool:
        """Stops a running call (True). A call this worker has never seen is recorded as
        aborted, so that its dispatch, should it come after the abort (the manager aborted it
        while the dispatch was on the wire), starts nothing: a stale PC1 or PC2 that ran late
        would remove the sector's newer files everywhere."""
        key = call_key(call_id)
        if self._stop(key, TaskFailure(Code.ABORTED, f"task aborted: {reason or 'by an operator'}")):
            return True
        if key not in self.running and self.store.forbid(key):
            log.info("a call was aborted before its dispatch arrived: it will not run", extra={"call": key})
        return False

    def running_call_ids(self) -> list[CallId]:
        return [r.call_id for r in self.running.values()]

    async def shutdown(self, wait_s: float) -> bool:
        """Stops every running task without recording an outcome (they become WORKER_RESTARTED
        at the next start, since their work is lost with this process). Their rust_core calls
        are cancelled and end within 100 ms, then their clean-up runs; returns False if some had
        not ended after `wait_s`."""
        self.shutting_down = True
        running = [r for r in self.running.values() if r.task is not None]
        tasks = [r.task for r in running if r.task is not None]
        for r in running:
            r.context.cancel.cancel()
        for t in tasks:
            t.cancel()
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=wait_s)
        return not pending
