"""A set of local service processes that share one fleet key and one state directory, stopped
together in reverse start order: what `make demo` runs (the tests' fixed-port fleet in
tests/support/fleet.py builds on the same ServiceProcess)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from services.devfleet.process import ServiceProcess


@dataclass
class LocalFleet:
    """Processes started under `root`, one data dir per label, all signed with `secret`."""

    root: Path
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    processes: list[ServiceProcess] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=lambda: {"SECTORSTORAGE_LOG_LEVEL": "warning"})

    def start(self, name: str, label: str, *args: str) -> ServiceProcess:
        """Starts service `name` (index, manager, worker) with its state in root/label."""
        proc = ServiceProcess(name=name, data_dir=self.root / label, args=args, secret=self.secret, env=dict(self.env))
        proc.start()
        self.processes.append(proc)
        return proc

    def stop(self) -> list[tuple[str, int]]:
        """Stops every process, last started first (workers before their manager and index), and
        returns (label, exit code) for each: a clean stop is exit 0 everywhere."""
        codes = []
        for proc in reversed(self.processes):
            codes.append((proc.data_dir.name, proc.stop()))
        return codes
