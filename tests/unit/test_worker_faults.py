"""The worker's test-only task fault hook: off by default, seeded draws, delays per task type,
a clear error for a bad probability."""

from __future__ import annotations

import pytest

from services.worker.faults import ENV_TASK_DELAY, ENV_TASK_FAIL_P, ENV_TASK_SEED, TaskFault


def test_off_unless_set() -> None:
    fault = TaskFault({})
    assert not any(fault.should_fail() for _ in range(1000)) and fault.delay_of("PC1") == 0.0


def test_seeded_draws_replay_and_count() -> None:
    env = {ENV_TASK_FAIL_P: "0.25", ENV_TASK_SEED: "7"}
    first = [TaskFault(env).should_fail() for _ in range(1)]
    a, b = TaskFault(env), TaskFault(env)
    draws = [a.should_fail() for _ in range(400)]
    assert draws == [b.should_fail() for _ in range(400)] and first == draws[:1]
    assert a.injected == sum(draws) and 60 < a.injected < 140


def test_delays_and_bad_probability() -> None:
    assert TaskFault({ENV_TASK_DELAY: "pc1=2, C2=0.5"}).delays == {"PC1": 2.0, "C2": 0.5}
    with pytest.raises(ValueError, match="probability"):
        TaskFault({ENV_TASK_FAIL_P: "1.5"})
