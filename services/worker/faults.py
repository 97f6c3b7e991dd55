"""Test-only fault injection, off unless its environment variable is set.

SECTORSTORAGE_TEST_FAULT_SERVE_EXIT_AFTER_BYTES=N: the process exits at once (as a crash would,
no clean-up) after it has sent more than N bytes of sector files to peers, over gRPC streams or
the bulk side channel (which then sends in steps of at most 1 MiB, so the exit lands in the
middle of a file). Lets the tests make a fetch source die in the middle of a stream,
deterministically.

SECTORSTORAGE_TEST_FAULT_TASK_DELAY="PC1=0.5,AP=0.2": each task of these types waits that many
seconds before it runs (a slow task: lets the tests keep a worker busy, or make tasks overlap).

SECTORSTORAGE_TEST_FAULT_TASK_HANG="PC1=1": attempts 1..N of each task of this type hang (until
they are stopped: a timeout, an abort, a drain), later attempts run normally. Lets the tests
make a task hang on its first attempt and see it timed out and retried.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping

log = logging.getLogger(__name__)
ENV_SERVE_EXIT = "SECTORSTORAGE_TEST_FAULT_SERVE_EXIT_AFTER_BYTES"
ENV_TASK_DELAY = "SECTORSTORAGE_TEST_FAULT_TASK_DELAY"
ENV_TASK_HANG = "SECTORSTORAGE_TEST_FAULT_TASK_HANG"


class ServeFault:
    def __init__(self) -> None:
        raw = os.environ.get(ENV_SERVE_EXIT, "")
        self.limit = int(raw) if raw.isdigit() else None
        self.sent = 0
        self._lock = threading.Lock()  # side channel connections count from their threads
        if self.limit is not None:
            log.warning("test fault armed: exit after serving bytes", extra={"bytes": self.limit})

    def step(self, default: int) -> int:
        """The most bytes to send between two count() calls."""
        return default if self.limit is None else min(default, 1 << 20)

    def count(self, n: int) -> None:
        if self.limit is None:
            return
        with self._lock:
            self.sent += n
            over = self.sent > self.limit
        if over:
            log.error("test fault: exiting in the middle of a stream", extra={"sent": self.sent})
            os._exit(17)


def _per_type(raw: str, name: str) -> dict[str, float]:
    """Parses "PC1=0.5,AP=2" into {"PC1": 0.5, "AP": 2.0}; a malformed value is an error, not a
    silently disarmed fault."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        task, sep, value = item.partition("=")
        try:
            out[task.strip().upper()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"{name}: expected TASK=NUMBER items separated by commas, got {item!r}")
    return out


class TaskFault:
    """Slows down or hangs tasks by type (module docstring); `before` runs ahead of each task."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.delays = _per_type(env.get(ENV_TASK_DELAY, ""), ENV_TASK_DELAY)
        self.hangs = {task: int(n) for task, n in _per_type(env.get(ENV_TASK_HANG, ""), ENV_TASK_HANG).items()}
        if self.delays or self.hangs:
            log.warning("test fault armed: slow or hanging tasks", extra={"delays": self.delays, "hangs": self.hangs})

    async def before(self, task: str, attempt: int) -> None:
        delay = self.delays.get(task, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if attempt <= self.hangs.get(task, 0):
            log.warning("test fault: task hangs", extra={"task": task, "attempt": attempt})
            await asyncio.Event().wait()
