"""What operators set on workers (enable/disable, cordon/uncordon, drain), kept apart from the
RPCs that ask for it: the state is remembered in the database so that a worker that registers
again (or a manager that restarted) keeps it, and a drain waits here, polling, until the
worker's assigned tasks are done."""

from __future__ import annotations

import asyncio
import logging

from services.common.errors import NotFound
from services.manager.jobs import JobRunner
from services.manager.store import ManagerStore, WorkerOperatorState
from services.manager.workers import WorkerHandle

log = logging.getLogger(__name__)

# How often a drain looks whether the worker's tasks are done.
DRAIN_POLL_S = 0.2


class Operators:
    def __init__(self, runner: JobRunner, store: ManagerStore, poll_s: float = DRAIN_POLL_S) -> None:
        self.runner = runner
        self.store = store
        self.poll_s = poll_s
        # By worker id: what operators set, including for workers not registered now.
        self.states: dict[str, WorkerOperatorState] = {}

    async def load(self) -> None:
        """Reads the remembered states (at start, before any worker registers)."""
        self.states = await self.store.worker_states()

    def state_of(self, worker_id: str) -> WorkerOperatorState:
        """What a registering worker starts with (enabled and not cordoned unless set)."""
        return self.states.get(worker_id) or WorkerOperatorState(worker_id)

    def worker(self, worker_id: str) -> WorkerHandle:
        handle = self.runner.registry.get(worker_id)
        if handle is None:
            raise NotFound(f"unknown worker {worker_id}")
        return handle

    async def set_state(self, handle: WorkerHandle, **changes: bool) -> WorkerHandle:
        """Sets `enabled`, `cordoned` and/or `draining` of a worker; the first two are
        remembered, and the scheduler learns of the change at once."""
        for name, value in changes.items():
            setattr(handle, name, value)
        state = WorkerOperatorState(handle.worker_id, handle.enabled, handle.cordoned)
        await self.store.set_worker_state(state)
        self.states[handle.worker_id] = state
        self.runner.set_operator_state(handle)
        log.info(
            "worker state changed",
            extra={"worker": handle.worker_id, "enabled": handle.enabled, "cordoned": handle.cordoned},
        )
        return handle

    def busy(self, handle: WorkerHandle) -> bool:
        """Whether the scheduler still holds resources for tasks on the worker."""
        sched = self.runner.scheduler.workers.get(handle.worker_id)
        return bool(sched and sched.assigned)

    async def drain(self, handle: WorkerHandle, limit_s: float | None, abort_remaining: bool) -> bool:
        """Cordons the worker and waits up to `limit_s` (None: no limit) for its tasks to end;
        with `abort_remaining`, what is still running then is requeued elsewhere. The worker
        stays cordoned; returns whether it has no tasks left."""
        await self.set_state(handle, cordoned=True, draining=True)
        loop = asyncio.get_running_loop()
        until = None if limit_s is None else loop.time() + limit_s
        try:
            while self.busy(handle):
                if until is not None and loop.time() >= until:
                    break
                await asyncio.sleep(self.poll_s)
            if self.busy(handle) and abort_remaining:
                await self.runner.requeue_worker_calls(handle.worker_id, "drained")
        finally:
            handle.draining = False
            self.runner.set_operator_state(handle)
        return not self.busy(handle)
