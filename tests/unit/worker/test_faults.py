"""The worker's test-only task fault hook: off by default, seeded draws, delays per task type,
a clear error for a bad probability."""

from __future__ import annotations

import pytest

from services.worker.faults import (
    ENV_ARM,
    ENV_SERVE_EXIT,
    ENV_TASK_DELAY,
    ENV_TASK_FAIL_P,
    ENV_TASK_SEED,
    ServeFault,
    TaskFault,
)

ARMED = {ENV_ARM: "1"}


def test_off_unless_set() -> None:
    fault = TaskFault(ARMED)
    assert not any(fault.should_fail() for _ in range(1000)) and fault.delay_of("PC1") == 0.0


def test_fault_variables_do_nothing_without_the_test_flag(caplog: pytest.LogCaptureFixture) -> None:
    """A stray fault variable in a production environment is logged and ignored: no exit in the
    middle of a transfer, no slowed or failing task."""
    stray = {ENV_SERVE_EXIT: "1", ENV_TASK_DELAY: "PC1=5", ENV_TASK_FAIL_P: "1"}
    with caplog.at_level("WARNING"):
        serve, task = ServeFault(stray), TaskFault(stray)
    assert serve.limit is None and serve.rate is None
    assert task.delays == {} and task.fail_p == 0.0 and not task.should_fail()
    assert f"test fault variables ignored ({ENV_ARM} is not 1)" in caplog.text
    assert ServeFault({**stray, **ARMED}).limit == 1


def test_seeded_draws_replay_and_count() -> None:
    env = {ENV_TASK_FAIL_P: "0.25", ENV_TASK_SEED: "7", **ARMED}
    first = [TaskFault(env).should_fail() for _ in range(1)]
    a, b = TaskFault(env), TaskFault(env)
    draws = [a.should_fail() for _ in range(400)]
    assert draws == [b.should_fail() for _ in range(400)] and first == draws[:1]
    assert a.injected == sum(draws) and 60 < a.injected < 140


def test_delays_and_bad_probability() -> None:
    assert TaskFault({ENV_TASK_DELAY: "pc1=2, C2=0.5", **ARMED}).delays == {"PC1": 2.0, "C2": 0.5}
    with pytest.raises(ValueError, match="probability"):
        TaskFault({ENV_TASK_FAIL_P: "1.5", **ARMED})
