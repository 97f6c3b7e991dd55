"""The worker's fault hooks: no-ops unless the test flag loads the test-only ones (off by default
even then), seeded draws, delays per task type, a clear error for a bad probability."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import pytest

from services.worker.faults import (
    ENV_ARM,
    ENV_SERVE_EXIT,
    ENV_TASK_DELAY,
    ENV_TASK_FAIL_P,
    ENV_TASK_SEED,
    ENV_VANILLA_DELAY,
    ServeFault,
    TaskFault,
    load,
)
from services.worker.testing.faults import ArmedServeFault, ArmedTaskFault

ARMED = {ENV_ARM: "1"}


def armed_task_fault(env: Mapping[str, str]) -> ArmedTaskFault:
    """The task hook the worker loads for `env` (which arms the test hooks)."""
    task = load(env)[1]
    assert isinstance(task, ArmedTaskFault)
    return task


def test_off_unless_set() -> None:
    fault = armed_task_fault(ARMED)
    assert not any(fault.should_fail() for _ in range(1000)) and fault.delay_of("PC1") == 0.0


def test_fault_variables_do_nothing_without_the_test_flag(caplog: pytest.LogCaptureFixture) -> None:
    """A stray fault variable in a production environment is logged and ignored: no exit in the
    middle of a transfer, no slowed or failing task."""
    stray = {ENV_SERVE_EXIT: "1", ENV_TASK_DELAY: "PC1=5", ENV_TASK_FAIL_P: "1"}
    with caplog.at_level("WARNING"):
        serve, task = load(stray)
    # The production no-ops: the test hooks (and their os._exit) are not even loaded.
    assert type(serve) is ServeFault and type(task) is TaskFault
    assert serve.step(8 << 20) == 8 << 20 and task.delay_of("PC1") == 0.0 and not task.should_fail()
    assert f"test fault variables ignored ({ENV_ARM} is not 1)" in caplog.text
    armed = load({**stray, **ARMED})[0]
    assert isinstance(armed, ArmedServeFault) and armed.limit == 1


def test_seeded_draws_replay_and_count() -> None:
    env = {ENV_TASK_FAIL_P: "0.25", ENV_TASK_SEED: "7", **ARMED}
    first = [armed_task_fault(env).should_fail() for _ in range(1)]
    a, b = armed_task_fault(env), armed_task_fault(env)
    draws = [a.should_fail() for _ in range(400)]
    assert draws == [b.should_fail() for _ in range(400)] and first == draws[:1]
    assert a.injected == sum(draws) and 60 < a.injected < 140


def test_delays_and_bad_probability() -> None:
    assert armed_task_fault({ENV_TASK_DELAY: "pc1=2, C2=0.5", **ARMED}).delays == {"PC1": 2.0, "C2": 0.5}
    with pytest.raises(ValueError, match="probability"):
        load({ENV_TASK_FAIL_P: "1.5", **ARMED})


def test_vanilla_proof_delays_per_sector_number(caplog: pytest.LogCaptureFixture) -> None:
    async def timed(fault: TaskFault, number: int) -> float:
        started = time.monotonic()
        await fault.vanilla_proof(number)
        return time.monotonic() - started

    fault = armed_task_fault({**ARMED, ENV_VANILLA_DELAY: "3=0.2, 5=0"})
    assert fault.vanilla_delays == {3: 0.2, 5: 0.0}
    assert asyncio.run(timed(fault, 3)) >= 0.2
    assert asyncio.run(timed(fault, 4)) < 0.1
    logged = [r.__dict__.get("number") for r in caplog.records if r.getMessage() == "test fault: vanilla proof"]
    assert logged == [3, 4]
    assert asyncio.run(timed(TaskFault(), 3)) < 0.1  # the production hook does nothing
    with pytest.raises(ValueError, match=ENV_VANILLA_DELAY):
        armed_task_fault({**ARMED, ENV_VANILLA_DELAY: "3"})
