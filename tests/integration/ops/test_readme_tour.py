"""The README's 60-second tour runs as written: every line of its sh block in one bash, in order,
against the fleet it starts (ports and the state directory swapped for free ones so parallel runs
don't collide), each sectorctl command succeeding with the output the comments promise, with
the default configuration (no SECTORSTORAGE_* settings beyond the tour's own), in under the 60
seconds its title promises: queued work is placed on the events that make room for it, not at
the periodic selector refresh."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.support.fleet import free_port
from tests.support.paths import REPO

README = REPO / "README.md"


def tour_script() -> str:
    section = README.read_text().split("## A 60-second tour", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the tour has one sh block"
    return str(blocks[0])


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    script = tour_script()
    assert script.count("sectorctl ") >= 15
    for port in ("7101", "7102", "7103", "7104"):
        script = script.replace(port, str(free_port()))
    script = script.replace("/tmp/ss-tour", str(tmp_path / "tour"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECTORSTORAGE_")}
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-e", "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        try:  # whatever the script left running (it kills its fleet itself when it gets there)
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    took = time.monotonic() - started
    assert proc.returncode == 0, f"{out[-4000:]}\n{err[-4000:]}"
    print(f"the tour took {took:.1f} s with the default configuration")
    assert took < 60, f"the 60-second tour took {took:.1f} s"
    assert "manager ready, 2 worker(s) connected" in out
    assert out.count("attached ") == 2
    assert "sector 1000/1 sealed" in out and "VerifySeal: VALID" in out
    assert "sealed, cache" in out  # storage find
    assert "use: seal/store; healthy" in out  # storage list
    assert " PC1 " in out and " C2 " in out and "succeeded" in out  # history
    assert "sector 1000/2" in out and "comm_r  bagboea" in out  # sectors info
    assert "2/2 provable" in out
    assert "verification: VALID" in out
    assert "cordoned" in out and "Queue: empty" in out
