"""Configuration of the manager service (TOML section `[manager]`, env `SECTORSTORAGE_MANAGER_*`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.config import DatabaseConfig, ServiceConfig
from services.manager.scheduler import ASSIGNERS
from services.manager.tasks import TaskType, parse_task_type

DAY_S = 86400.0


class RetryOverride(BaseModel):
    """One task type's retry budget and back-off; unset fields keep the manager's defaults."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int | None = Field(default=None, ge=1, le=100)
    backoff_initial_s: float | None = Field(default=None, gt=0, le=3600)
    backoff_max_s: float | None = Field(default=None, gt=0, le=86400)


class ManagerSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # HOST:PORT of the index service the selectors ask where sector files are. Empty: no index;
    # every worker enabling a task type is acceptable for it (single-machine setups, tests).
    index: str = ""
    # Workers heartbeat this often (told in RegisterWorker) ...
    heartbeat_interval_s: float = Field(default=5.0, gt=0, le=300)
    # ... and are marked gone, their tasks re-queued, after this long without one.
    heartbeat_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # After a manager restart, calls recorded as running on a worker that has not registered
    # again within this long are re-queued. Unset: heartbeat_timeout_s.
    startup_grace_s: float | None = Field(default=None, gt=0, le=3600)
    # Runs of one work (first attempt included) before a temporary failure is final.
    max_attempts: int = Field(default=5, ge=1, le=100)
    # Retry back-off: doubles from the first delay up to the maximum, jittered.
    retry_backoff_initial_s: float = Field(default=1.0, gt=0, le=3600)
    retry_backoff_max_s: float = Field(default=60.0, gt=0, le=86400)
    # Deadline of one dispatch RPC (the worker answers at once; the task runs afterwards).
    dispatch_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Per task type (short name: AP, PC1, PC2, C1, C2, FIN, GET, UNS, WDP, WNP) the longest a task
    # may run; then it is stopped and retried under the retry budget. Absent: no limit.
    task_timeouts: dict[str, float] = Field(default_factory=dict)
    # PoSt: how long one holder may take to return the next vanilla proof before its sectors go to
    # their next copy, and how many holders are read at once.
    post_read_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    post_parallel_reads: int = Field(default=16, ge=1, le=1024)
    # PoSt vanilla proofs are stored as they arrive (a retried PoSt with the same proof type and
    # randomness asks the workers only for the rest) and forgotten after this long.
    post_proof_retention_s: float = Field(default=DAY_S, gt=0)
    # Retry budget and back-off per task type (short names), overriding max_attempts and the
    # retry_backoff_* values for that type, e.g. {"PC1" = {max_attempts = 2}, "C2" =
    # {max_attempts = 8, backoff_initial_s = 5}}: a 32 GiB PC1 is costly to retry blindly, a GPU
    # hiccup in C2 is cheap to try again.
    retry: dict[str, RetryOverride] = Field(default_factory=dict)
    # Extra time past a task's timeout before the manager itself gives up on the worker.
    timeout_grace_s: float = Field(default=30.0, ge=0, le=3600)
    # How often waiting requests ask the index again where they could run.
    selector_refresh_s: float = Field(default=10.0, gt=0, le=3600)
    # How often a full scheduling pass runs (events normally keep the queue settled).
    sched_pass_interval_s: float = Field(default=10.0, gt=0, le=3600)
    # A result already handed to a caller still answers an identical request for this long
    # (a client that lost the reply, e.g. to a manager crash, and sends the request again gets
    # it instead of a second run). 0: the next identical request runs again at once.
    redelivery_window_s: float = Field(default=0.0, ge=0, le=DAY_S)
    # Results nobody collected, and delivered works, are forgotten after this long.
    result_retention_s: float = Field(default=30 * DAY_S, gt=0)
    # Finished calls (the task history) are kept this long.
    history_retention_s: float = Field(default=30 * DAY_S, gt=0)
    # How the scheduler chooses among the workers a task fits on: "utilization" (the least
    # loaded first) or "spread" (round-robin: the least recently placed-on first).
    assigner: str = "utilization"
    # Database threads.
    db_threads: int = Field(default=4, ge=1, le=64)
    # Leadership (several managers on one PostgreSQL database; docs/manager.md, "Failover"): the
    # leader's lease lasts this long without a renewal. It renews every third of it; a standby
    # asks every sixth of it. After kill -9 of the leader a standby leads within about
    # leader_lease_s, plus a poll (bench/failover.py). A leader that cannot reach the database
    # for two thirds of it stops leading.
    leader_lease_s: float = Field(default=4.0, ge=0.5, le=300)

    @field_validator("task_timeouts")
    @classmethod
    def _task_timeouts(cls, value: dict[str, float]) -> dict[str, float]:
        out = {}
        for name, seconds in value.items():
            tt = parse_task_type(name)
            if seconds <= 0:
                raise ValueError(f"timeout of {name} must be > 0 seconds")
            out[tt.short] = float(seconds)
        return out

    @field_validator("retry")
    @classmethod
    def _retry(cls, value: dict[str, RetryOverride]) -> dict[str, RetryOverride]:
        return {parse_task_type(name).short: override for name, override in value.items()}

    @field_validator("assigner")
    @classmethod
    def _assigner(cls, value: str) -> str:
        text = value.strip().lower()
        if text not in ASSIGNERS:
            raise ValueError(f"unknown assigner {value!r}: use one of {', '.join(ASSIGNERS)}")
        return text

    def timeout_of(self, task_type: TaskType) -> float | None:
        return self.task_timeouts.get(task_type.short)

    def retry_of(self, task_type: TaskType) -> tuple[int, float, float]:
        """(max attempts, first back-off, longest back-off) for a task type."""
        override = self.retry.get(task_type.short) or RetryOverride()
        return (
            override.max_attempts or self.max_attempts,
            override.backoff_initial_s or self.retry_backoff_initial_s,
            override.backoff_max_s or self.retry_backoff_max_s,
        )


class ManagerConfig(ServiceConfig):
    database: DatabaseConfig = DatabaseConfig()
    manager: ManagerSection = ManagerSection()
