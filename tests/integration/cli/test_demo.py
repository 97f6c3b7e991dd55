"""`make demo`'s main job end to end: a local fleet seals two 8 MiB sectors, reads a piece back
identical, passes CheckProvable and a Window PoSt, and stops cleanly."""

import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO


def test_demo_seals_reads_back_and_proves(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli.demo", "--root", str(tmp_path / "demo")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.count("verified: True") == 3  # two seals and the Window PoSt
    assert "identical to the original" in out
    assert "2/2 sectors provable" in out
    assert "(exit 0)" in out and "demo OK" in out
    # The two sectors are sealed at once, so both workers get work, and the summary says who did what.
    assert "tasks ran on 2 of 2 workers" in out
    assert "demo-worker-1: " in out and "demo-worker-2: " in out
