"""Test-only fault injection, imported only by services/worker/faults.load() when
SECTORSTORAGE_TEST_FAULTS=1 (production never imports it): each fault acts when its own variable
below is set. The hooks live in the worker because the tests drive real worker processes
(docs/reliability.md, "Fault hooks").

SECTORSTORAGE_TEST_FAULT_SERVE_EXIT_AFTER_BYTES=N: the process exits at once (as a crash would,
no clean-up) after it has sent more than N bytes of sector files to peers, over gRPC streams or
the bulk side channel (which then sends in steps of at most 1 MiB, so the exit lands in the
middle of a file). Lets the tests make a fetch source die in the middle of a stream,
deterministically.

SECTORSTORAGE_TEST_FAULT_SERVE_BYTES_PER_S=N: files are served to peers at about N bytes per
second (1 MiB steps, a sleep after each; on the side channel that is the connection's own
thread). Lets the tests keep a 512 MiB fetch running long enough to abort it in the middle.

SECTORSTORAGE_TEST_FAULT_SERVE_FLIP_BYTE=N: in every file or cache stream served to peers (gRPC
streams and the bulk side channel), the byte at offset N (the last byte, in a shorter stream) is
sent inverted, after the server computed the stream's checksum from its file: a transfer
corrupted in flight, which the fetching worker must refuse. The file itself is not changed.

SECTORSTORAGE_TEST_FAULT_TASK_DELAY="PC1=0.5,AP=0.2": each task of these types waits that many
seconds before it runs (a slow task: lets the tests keep a worker busy, or make tasks overlap).

SECTORSTORAGE_TEST_FAULT_TASK_HANG="PC1=1": attempts 1..N of each task of this type hang (until
they are stopped: a timeout, an abort, a drain), later attempts run normally. Lets the tests
make a task hang on its first attempt and see it timed out and retried.

SECTORSTORAGE_TEST_FAULT_VANILLA_DELAY="3=5,7=2": the vanilla proof of these sector numbers
waits that many seconds before it is sent on a GenerateVanillaProofs stream (a slow disk: lets
the tests kill the manager while a PoSt is half proven); each sector's proof is then logged
("test fault: vanilla proof", with its number), so a test counts what the worker was asked.

SECTORSTORAGE_TEST_FAULT_TASK_FAIL_P=p: each asynchronous task fails at its start with
probability p, as a TEMPORARY error saying it was injected (the manager retries it, here or
elsewhere); SECTORSTORAGE_TEST_FAULT_TASK_SEED=n seeds the draws, so a soak run can be replayed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
from collections.abc import Mapping

from services.worker.faults import (
    ENV_SERVE_EXIT,
    ENV_SERVE_FLIP,
    ENV_SERVE_RATE,
    ENV_TASK_DELAY,
    ENV_TASK_FAIL_P,
    ENV_TASK_HANG,
    ENV_TASK_SEED,
    ENV_VANILLA_DELAY,
    ServeFault,
    TaskFault,
)

log = logging.getLogger(__name__)


class ArmedServeFault(ServeFault):
    """Exits mid-stream, serves slowly or corrupts what it serves (module docstring)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        raw = env.get(ENV_SERVE_EXIT, "")
        self.limit = int(raw) if raw.isdigit() else None
        raw_rate = env.get(ENV_SERVE_RATE, "")
        self.rate = int(raw_rate) if raw_rate.isdigit() and int(raw_rate) > 0 else None
        raw_flip = env.get(ENV_SERVE_FLIP, "")
        self.flip = int(raw_flip) if raw_flip.isdigit() else None
        self.sent = 0
        self._lock = threading.Lock()  # side channel connections count from their threads
        if self.limit is not None:
            log.warning("test fault armed: exit after serving bytes", extra={"bytes": self.limit})
        if self.rate is not None:
            log.warning("test fault armed: serving files slowly", extra={"bytes_per_s": self.rate})
        if self.flip is not None:
            log.warning("test fault armed: corrupting served streams", extra={"offset": self.flip})

    def step(self, default: int) -> int:
        """The most bytes to send between two count() calls."""
        return default if self.limit is None and self.rate is None else min(default, 1 << 20)

    def count(self, n: int) -> None:
        if self.rate is not None:
            time.sleep(n / self.rate)
        if self.limit is None:
            return
        with self._lock:
            self.sent += n
            over = self.sent > self.limit
        if over:
            log.error("test fault: exiting in the middle of a stream", extra={"sent": self.sent})
            os._exit(17)

    def flip_at(self, length: int) -> int | None:
        if self.flip is None or length == 0:
            return None
        at = min(self.flip, length - 1)
        log.warning("test fault: a byte of a served stream is sent inverted", extra={"offset": at, "length": length})
        return at


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


class ArmedTaskFault(TaskFault):
    """Slows down, hangs or fails tasks by type (module docstring). `before` runs ahead of each
    task, inside its timeout; `should_fail` draws the injected failures."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.delays = _per_type(env.get(ENV_TASK_DELAY, ""), ENV_TASK_DELAY)
        self.hangs = {task: int(n) for task, n in _per_type(env.get(ENV_TASK_HANG, ""), ENV_TASK_HANG).items()}
        raw_p = env.get(ENV_TASK_FAIL_P, "")
        try:
            self.fail_p = float(raw_p) if raw_p else 0.0
        except ValueError:
            self.fail_p = -1.0
        if not 0.0 <= self.fail_p <= 1.0:
            raise ValueError(f"{ENV_TASK_FAIL_P}={raw_p}: must be a probability in [0, 1]")
        raw_seed = env.get(ENV_TASK_SEED, "")
        self.random = random.Random(int(raw_seed) if raw_seed else None)
        self.injected = 0
        self.vanilla_delays = {
            int(number): delay for number, delay in _per_type(env.get(ENV_VANILLA_DELAY, ""), ENV_VANILLA_DELAY).items()
        }
        if self.vanilla_delays:
            log.warning("test fault armed: slow vanilla proofs", extra={"delays": self.vanilla_delays})
        if self.delays or self.hangs or self.fail_p:
            log.warning(
                "test fault armed: slow, hanging or failing tasks",
                extra={"delays": self.delays, "hangs": self.hangs, "fail_p": self.fail_p},
            )

    async def before(self, task: str, attempt: int) -> None:
        delay = self.delays.get(task, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)
        if attempt <= self.hangs.get(task, 0):
            log.warning("test fault: task hangs", extra={"task": task, "attempt": attempt})
            await asyncio.Event().wait()

    def delay_of(self, task: str) -> float:
        return self.delays.get(task, 0.0)

    async def vanilla_proof(self, number: int) -> None:
        if not self.vanilla_delays:
            return
        delay = self.vanilla_delays.get(number, 0.0)
        log.warning("test fault: vanilla proof", extra={"number": number, "delay": delay})
        if delay > 0:
            await asyncio.sleep(delay)

    def should_fail(self) -> bool:
        """Draws whether the task starting now fails; counts the failures injected."""
        if not self.fail_p or self.random.random() >= self.fail_p:
            return False
        self.injected += 1
        return True
