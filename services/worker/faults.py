"""Test-only fault injection, off unless its environment variables are set.

SECTORSTORAGE_TEST_FAULT_SERVE_EXIT_AFTER_BYTES=N: the process exits at once (as a crash would,
no clean-up) after it has sent more than N bytes of sector files to peers. Lets the tests
make a fetch source die in the middle of a stream, deterministically.
"""

from __future__ import annotations

import logging
import os
import random

log = logging.getLogger(__name__)
ENV_SERVE_EXIT = "SECTORSTORAGE_TEST_FAULT_SERVE_EXIT_AFTER_BYTES"


class ServeFault:
    def __init__(self) -> None:
        raw = os.environ.get(ENV_SERVE_EXIT, "")
        self.limit = int(raw) if raw.isdigit() else None
        self.sent = 0
        if self.limit is not None:
            log.warning("test fault armed: exit after serving bytes", extra={"bytes": self.limit})

    def count(self, n: int) -> None:
        if self.limit is None:
            return
        self.sent += n
        if self.sent > self.limit:
            log.error("test fault: exiting in the middle of a stream", extra={"sent": self.sent})
            os._exit(17)


ENV_TASK_FAIL_P = "SECTORSTORAGE_TEST_FAULT_TASK_FAIL_P"
ENV_TASK_SEED = "SECTORSTORAGE_TEST_FAULT_TASK_SEED"
ENV_TASK_DELAY = "SECTORSTORAGE_TEST_FAULT_TASK_DELAY_S"


class TaskFault:
    """Test-only faults of asynchronous tasks, for the soak and fault tests (off unless set):

    SECTORSTORAGE_TEST_FAULT_TASK_FAIL_P=p: each task fails at its start with probability p, as
    a TEMPORARY error saying it was injected (the manager retries it, here or elsewhere);
    SECTORSTORAGE_TEST_FAULT_TASK_SEED=n seeds the draws, so a run can be replayed.
    SECTORSTORAGE_TEST_FAULT_TASK_DELAY_S=PC1=2,C2=5: those task types (short names) wait that
    many seconds before they start: a task slow enough to freeze or kill in the middle of.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw_p = env.get(ENV_TASK_FAIL_P, "")
        self.fail_p = float(raw_p) if raw_p else 0.0
        if not 0.0 <= self.fail_p <= 1.0:
            raise ValueError(f"{ENV_TASK_FAIL_P}={raw_p}: must be a probability in [0, 1]")
        raw_seed = env.get(ENV_TASK_SEED, "")
        self.random = random.Random(int(raw_seed) if raw_seed else None)
        self.delays: dict[str, float] = {}
        for item in filter(None, env.get(ENV_TASK_DELAY, "").split(",")):
            name, _, seconds = item.partition("=")
            self.delays[name.strip().upper()] = float(seconds)
        self.injected = 0
        if self.fail_p or self.delays:
            log.warning("test task faults armed", extra={"fail_p": self.fail_p, "delays": self.delays})

    def delay_of(self, short_name: str) -> float:
        return self.delays.get(short_name, 0.0)

    def should_fail(self) -> bool:
        """Draws whether the task starting now fails; counts the failures injected."""
        if not self.fail_p or self.random.random() >= self.fail_p:
            return False
        self.injected += 1
        return True
