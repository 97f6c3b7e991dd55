"""A set of local service processes that share one fleet key and one state directory, stopped
together, last started first: what `make demo`, bench and the tests' launcher
(tests/support/fleet.py) start services with."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.devfleet.process import ServiceProcess


@dataclass
class LocalFleet:
    """Processes started under `root` (one data dir per label), all with the key `secret` and
    the environment `env` (each start may add to it)."""

    root: Path
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    env: dict[str, str] = field(default_factory=lambda: {"SECTORSTORAGE_LOG_LEVEL": "warning"})
    processes: list[ServiceProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        label: str,
        *args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> ServiceProcess:
        """Starts service `name` (index, manager, worker) with its state in root/label (or
        `data_dir`), under `wrapper` if given (e.g. `ip netns exec NS`)."""
        proc = ServiceProcess(
            name=name,
            data_dir=data_dir or self.root / label,
            args=args,
            secret=self.secret,
            env={**self.env, **(env or {})},
            wrapper=wrapper,
        )
        proc.start()
        self.processes.append(proc)
        return proc

    def stop(self, timeout: float = 15.0) -> list[tuple[str, int]]:
        """Stops every process gracefully, last started first (workers before their manager and
        index), and returns (label, exit code) for each: a clean stop is exit 0 everywhere. A
        process that does not stop within `timeout` is killed (its code is then -9), its last
        output goes to stderr so that the hang can be read, and the others are still stopped:
        one stuck service must not leave the rest of the fleet running."""
        codes = []
        for proc in reversed(self.processes):
            try:
                code = proc.stop(timeout)
            except subprocess.TimeoutExpired:
                code = proc.proc.returncode if proc.proc is not None and proc.proc.returncode is not None else -9
                tail = "".join(proc.output[-20:])
                print(
                    f"{proc.data_dir.name} did not stop within {timeout:g} s: killed; its last output:\n{tail}",
                    file=sys.stderr,
                )
            codes.append((proc.data_dir.name, code))
        return codes

    def close(self, timeout: float = 15.0) -> None:
        """Stops every process, last started first, killing any that will not stop in time:
        a teardown that never raises and leaves nothing running."""
        for proc in reversed(self.processes):
            try:
                proc.stop(timeout)
            except Exception:  # noqa: BLE001 - the kill below is the fallback
                proc.kill()

    def kill(self) -> None:
        """SIGKILL to every process still running (a start-up that failed half way)."""
        for proc in reversed(self.processes):
            proc.kill()
