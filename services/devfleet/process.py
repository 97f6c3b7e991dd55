"""One service as a local process, for `make demo`, the tests and the benchmarks: started from its
console script on a free loopback port, its bound address read from the line it prints, stopped
with SIGTERM (or killed, to test crashes)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

BIN_DIR = Path(sys.executable).parent
_LISTENING = re.compile(r"listening on (\S+)(?: metrics on (\S+))?")


def console_script(name: str) -> str:
    path = BIN_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: install the package (make develop)")
    return str(path)


def _log_copy(name: str, pid: int) -> TextIO | None:
    """A file that gets a copy of the service's output when SECTORSTORAGE_DEVFLEET_LOG_DIR names a
    folder: the output otherwise lives only in the test's memory, which a failed soak discards."""
    folder = os.environ.get("SECTORSTORAGE_DEVFLEET_LOG_DIR")
    if not folder:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return open(Path(folder) / f"{name}-{pid}.log", "a", encoding="utf-8")  # noqa: SIM115 - lives with the pump


@dataclass
class ServiceProcess:
    """One running service; `address` is HOST:PORT of its gRPC server."""

    name: str
    data_dir: Path
    args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    secret: str = ""
    proc: subprocess.Popen[str] | None = None
    address: str = ""
    metrics_address: str | None = None
    output: list[str] = field(default_factory=list)
    # A command the service runs under, e.g. ("ip", "netns", "exec", "ns1") to start it in a
    # network namespace (the multi-host tests).
    wrapper: Sequence[str] = ()

    def start(self, timeout: float = 30.0) -> ServiceProcess:
        env = {**os.environ, "SECTORSTORAGE_LOG_FORMAT": "json", **self.env}
        if self.secret:
            env["SECTORSTORAGE_AUTH_SECRET"] = self.secret
        cmd = [
            *self.wrapper,
            console_script(f"sectorstorage-{self.name}"),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        found = threading.Event()
        copy = _log_copy(self.name, self.proc.pid)

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            try:
                for line in self.proc.stdout:
                    self.output.append(line)
                    if copy is not None:
                        copy.write(line)
                        copy.flush()
                    match = _LISTENING.search(line)
                    if match and not found.is_set():
                        self.address, self.metrics_address = match.group(1), match.group(2)
                        found.set()
            finally:
                if copy is not None:
                    copy.close()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not start:\n{self.log()}")
        return self

    def log(self) -> str:
        return "".join(self.output)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
