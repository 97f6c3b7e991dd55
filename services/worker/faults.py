"""The worker's fault hooks: the points where a test may make the worker misbehave (serve files
slowly or die in the middle of a stream, slow down, hang or fail tasks). In production they do
nothing: `load()` returns the no-op hooks below, and the code that misbehaves
(services/worker/testing/faults.py, with its `os._exit`) is not even imported.

Only SECTORSTORAGE_TEST_FAULTS=1 (set by tests/conftest.py for the processes the tests start)
makes `load()` import the test-only hooks, which then act on the SECTORSTORAGE_TEST_FAULT_*
variables their module describes. A fault variable without the flag (a copied environment, a
typo) is logged and ignored. docs/reliability.md, "Fault hooks", says why the hooks are in the
worker at all.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)
ENV_SERVE_EXIT = "SECTORSTORAGE_TEST_FAULT_SERVE_EXIT_AFTER_BYTES"
ENV_SERVE_RATE = "SECTORSTORAGE_TEST_FAULT_SERVE_BYTES_PER_S"
ENV_SERVE_FLIP = "SECTORSTORAGE_TEST_FAULT_SERVE_FLIP_BYTE"
ENV_TASK_DELAY = "SECTORSTORAGE_TEST_FAULT_TASK_DELAY"
ENV_TASK_HANG = "SECTORSTORAGE_TEST_FAULT_TASK_HANG"
ENV_TASK_FAIL_P = "SECTORSTORAGE_TEST_FAULT_TASK_FAIL_P"
ENV_TASK_SEED = "SECTORSTORAGE_TEST_FAULT_TASK_SEED"
ENV_VANILLA_DELAY = "SECTORSTORAGE_TEST_FAULT_VANILLA_DELAY"
ENV_ARM = "SECTORSTORAGE_TEST_FAULTS"
FAULT_VARS = (
    ENV_SERVE_EXIT,
    ENV_SERVE_RATE,
    ENV_SERVE_FLIP,
    ENV_TASK_DELAY,
    ENV_TASK_HANG,
    ENV_TASK_FAIL_P,
    ENV_TASK_SEED,
    ENV_VANILLA_DELAY,
)
# Imported by name, only when armed: no production code path refers to it.
TEST_MODULE = "services.worker.testing.faults"


class ServeFault:
    """The hook on every file served to a peer (gRPC streams and the bulk side channel): a no-op."""

    def step(self, default: int) -> int:
        """The most bytes to send between two count() calls."""
        return default

    def count(self, n: int) -> None:
        """Called after each `n` bytes sent."""

    def flip_at(self, length: int) -> int | None:
        """The offset, in a stream of `length` bytes about to be served, of a byte to send
        inverted after the stream's checksum was computed (corruption in flight); None: none."""
        return None


class TaskFault:
    """The hooks around every task: a no-op. `before` runs ahead of each task, inside its
    timeout; `should_fail` says whether the task starting now fails (`injected` counts those)."""

    injected = 0

    async def before(self, task: str, attempt: int) -> None:
        return None

    def delay_of(self, task: str) -> float:
        return 0.0

    def should_fail(self) -> bool:
        return False

    async def vanilla_proof(self, number: int) -> None:
        """Runs before a sector's vanilla proof is sent on a GenerateVanillaProofs stream."""
        return None


def load(env: Mapping[str, str] | None = None) -> tuple[ServeFault, TaskFault]:
    """The hooks for this process: the test-only ones when SECTORSTORAGE_TEST_FAULTS=1, else the
    no-ops (a fault variable set without the flag is logged and ignored)."""
    env = os.environ if env is None else env
    if env.get(ENV_ARM) != "1":
        stray = sorted(name for name in FAULT_VARS if env.get(name))
        if stray:
            log.warning(f"test fault variables ignored ({ENV_ARM} is not 1): {', '.join(stray)}")
        return ServeFault(), TaskFault()
    armed = importlib.import_module(TEST_MODULE)
    serve: ServeFault = armed.ArmedServeFault(env)
    task: TaskFault = armed.ArmedTaskFault(env)
    return serve, task
