"""The delivery step of a worker's drain (services/worker/drain.py): a delivery failure from
before the drain (an outage since over) does not cut the wait short; one during it does."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from services.worker.drain import drain_for_stop


def idle_runner() -> Any:
    return SimpleNamespace(running={}, shutting_down=False)


def test_a_stale_failure_does_not_stop_the_wait_for_deliveries() -> None:
    pending = {"n": 1}
    stale = time.monotonic() - 10

    def retry() -> None:  # the sender retries now and the manager takes the result shortly
        asyncio.get_running_loop().call_later(0.2, pending.update, {"n": 0})

    runner = idle_runner()
    report = asyncio.run(
        drain_for_stop(
            runner,
            lambda: None,
            lambda: pending["n"],
            5.0,
            5.0,
            retry_deliveries=retry,
            last_delivery_failure=lambda: stale,
        )
    )
    assert runner.shutting_down and report.finished and report.undelivered == 0


def test_a_failure_during_the_drain_leaves_the_results_stored() -> None:
    failed = {"at": 0.0}

    def retry() -> None:  # the manager is down: the retry fails at once
        failed["at"] = time.monotonic() + 0.001

    started = time.monotonic()
    report = asyncio.run(
        drain_for_stop(
            idle_runner(),
            lambda: None,
            lambda: 1,
            5.0,
            5.0,
            retry_deliveries=retry,
            last_delivery_failure=lambda: failed["at"],
        )
    )
    assert report.undelivered == 1 and time.monotonic() - started < 1.0
