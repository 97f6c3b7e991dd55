"""Live progress of `sectors seal`: one line per task. On a terminal the line of the running
task is redrawn in place with its elapsed time and where the manager placed it (SealingJobs);
otherwise (logs, pipes, tests) a plain line when a task starts and one when it ends."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TextIO, TypeVar

import grpc

from services.cli.names import task_short
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2, manager_pb2_grpc

T = TypeVar("T")
REDRAW_S = 0.2
POLL_S = 1.0


@dataclass
class _Outcome(Generic[T]):
    value: list[T] = field(default_factory=list)  # the result, once there is one
    error: BaseException | None = None


def _in_background(call: Callable[[], T]) -> tuple[threading.Thread, _Outcome[T]]:
    """Runs call in a daemon thread, so Ctrl-C ends sectorctl at once (the manager carries on
    with the work, and repeating the command attaches to it)."""
    outcome: _Outcome[T] = _Outcome()

    def target() -> None:
        try:
            outcome.value.append(call())
        except BaseException as exc:  # handed to the caller's thread
            outcome.error = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


class Progress:
    """A sealing.Runner that shows progress while each step runs in a background thread."""

    def __init__(
        self, stub: manager_pb2_grpc.ManagerServiceStub, sector: common_pb2.SectorId, out: TextIO = sys.stdout
    ) -> None:
        self._stub = stub
        self._sector = sector
        self._out = out
        self._tty = out.isatty()
        self.seconds: dict[str, float] = {}

    def _where(self) -> str:
        """The sector's live job as the manager sees it, e.g. 'PC1 running on host-1'."""
        try:
            jobs = self._stub.SealingJobs(manager_pb2.SealingJobsRequest(sector=self._sector), timeout=2).jobs
        except grpc.RpcError:
            return ""
        if not jobs:
            return ""
        j = jobs[0]
        state = manager_pb2.JobState.Name(j.state).removeprefix("JOB_STATE_").lower()
        return f"{task_short(j.task_type)} {state}" + (f" on {j.hostname or j.worker_id}" if j.worker_id else "")

    def __call__(self, task: str, call: Callable[[], T]) -> T:
        start = time.monotonic()
        thread, outcome = _in_background(call)
        if not self._tty:
            print(f"  {task:<34} started", file=self._out, flush=True)
        where, polled = "", 0.0
        while thread.is_alive():
            thread.join(REDRAW_S)
            if self._tty and thread.is_alive():
                if time.monotonic() - polled > POLL_S:
                    where, polled = self._where(), time.monotonic()
                elapsed = time.monotonic() - start
                self._out.write(f"\r\x1b[2K  {task:<34} {elapsed:7.1f}s  {where}")
                self._out.flush()
        if outcome.error is not None:
            self._finish(task, start, "FAILED")
            raise outcome.error
        self.seconds[task] = self._finish(task, start, "done")
        return outcome.value[0]

    def _finish(self, task: str, start: float, word: str) -> float:
        elapsed = time.monotonic() - start
        prefix = "\r\x1b[2K" if self._tty else ""
        print(f"{prefix}  {task:<34} {word} in {elapsed:.2f}s", file=self._out, flush=True)
        return elapsed
