"""The worker's stop on SIGTERM: drain first, then exit (what a Kubernetes pod stop needs).

Killing a worker mid-task throws its work away and leaves the manager to find out by missed
heartbeats. Instead, on SIGTERM the worker:
1. refuses new tasks and tells the manager at once (a heartbeat with `shutting_down`), so
   nothing new is placed on it;
2. lets its running calls finish, up to `[worker] drain_timeout_s`;
3. stops what still runs then with a TEMPORARY error, which the manager retries elsewhere (the
   stop cancels each task's rust_core call, which returns within 100 ms; its files, locks and
   reservation are released before the outcome is recorded);
4. waits (up to `deliver_timeout_s`, and only while the manager answers) until every stored
   result was returned to the manager;
then the process exits. Results not delivered by then stay in the call store and are collected
when the worker starts again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.worker.calls import TaskFailure
from services.worker.runner import CallRunner

log = logging.getLogger(__name__)
POLL_S = 0.05


@dataclass(frozen=True)
class DrainReport:
    finished: bool
    aborted: int
    undelivered: int


async def _until(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def drain_for_stop(
    runner: CallRunner,
    announce: Callable[[], None],
    undelivered: Callable[[], int],
    timeout_s: float,
    deliver_timeout_s: float,
    retry_deliveries: Callable[[], None] = lambda: None,
    last_delivery_failure: Callable[[], float] = lambda: 0.0,
) -> DrainReport:
    """Runs steps 1-4 of the module docstring. `announce` tells the manager (wakes the
    heartbeat); `undelivered` counts stored results not yet acknowledged by the manager;
    `retry_deliveries` makes the sender try now (not after its back-off);
    `last_delivery_failure` is when a delivery last failed (monotonic)."""
    runner.shutting_down = True
    announce()
    log.info("stopping: draining running calls", extra={"running": len(runner.running), "timeout_s": timeout_s})
    finished = await _until(lambda: not runner.running, timeout_s)
    aborted = 0
    if not finished:
        reason = f"the worker is stopping and its drain_timeout_s ({timeout_s:g} s) ran out; run it elsewhere"
        for key in list(runner.running):
            if runner.stop(key, TaskFailure(ErrorCode.TEMPORARY, reason)):
                aborted += 1
        log.warning("stopping: drain timeout, calls stopped for the manager to retry", extra={"aborted": aborted})
        # Cancelled tasks record their outcome as soon as they see the cancellation.
        await _until(lambda: not any(r.task is not None for r in runner.running.values()), 5.0)
    left = undelivered()
    if left:
        # Only a failure from now on means the manager is not taking results: one from before the
        # drain (an outage since over) must not cut the wait short.
        since = time.monotonic()
        retry_deliveries()
        await _until(lambda: last_delivery_failure() > since or undelivered() == 0, deliver_timeout_s)
        left = undelivered()
    log.info("stopping: drained", extra={"finished": finished, "aborted": aborted, "undelivered": left})
    return DrainReport(finished, aborted, left)
