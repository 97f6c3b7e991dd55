"""LocalFleet.stop: one process that ignores SIGTERM is killed after the timeout, named, and the
processes after it are still stopped (the demo must never leave part of the fleet running)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from services.devfleet.fleet import LocalFleet
from services.devfleet.process import ServiceProcess


def _process(label: str, root: Path, script: str) -> ServiceProcess:
    """`script` under sh; returns once it printed "ready" (its traps are set by then)."""
    proc = ServiceProcess(name="test", data_dir=root / label)
    proc.proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.proc.stdout is not None and proc.proc.stdout.readline() == "ready\n"
    return proc


def test_a_stuck_process_is_killed_and_the_rest_still_stop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fleet = LocalFleet(tmp_path)
    first = _process("index", tmp_path, "echo ready; exec sleep 60")  # stops on SIGTERM (killed by it)
    stuck = _process("manager", tmp_path, "trap '' TERM; echo ready; sleep 60")
    fleet.processes = [first, stuck]
    try:
        codes = dict(fleet.stop(timeout=1.0))
    finally:
        fleet.kill()
    assert codes["manager"] == -9
    assert codes["index"] == -15  # stopped after the stuck one was given up on
    assert first.proc is not None and first.proc.poll() is not None
    assert stuck.proc is not None and stuck.proc.poll() is not None
    assert "manager did not stop within 1 s: killed" in capsys.readouterr().err
