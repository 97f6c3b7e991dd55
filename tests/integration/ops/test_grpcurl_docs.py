"""Every grpcurl example in docs/grpcurl.md runs against live services and succeeds."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.auth import TEST_SECRET
from tests.support.fleet import StartService
from tests.support.paths import REPO

DOC = REPO / "docs" / "grpcurl.md"


def doc_commands() -> list[str]:
    """The lines of the doc's ```sh blocks, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_doc_has_examples_for_each_service() -> None:
    commands = doc_commands()
    for var in ("$INDEX", "$MANAGER", "$WORKER"):
        assert any(var in c for c in commands), var
    assert any(c.startswith("TOKEN=") for c in commands)


def test_every_grpcurl_example_runs(start_service: StartService) -> None:
    index = start_service("index")
    manager = start_service("manager", "--index", index.address)
    worker = start_service("worker", "--index", index.address, "--manager", manager.address)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SECTORSTORAGE_AUTH_SECRET": TEST_SECRET,
        "INDEX": index.address,
        "MANAGER": manager.address,
        "WORKER": worker.address,
    }
    script = "set -e\n" + "\n".join(f"echo '>>> {i}'\n{c}" for i, c in enumerate(doc_commands()))
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    out = result.stdout
    assert out.count(">>> ") == len(doc_commands())
    assert "sectorstorage.v1.IndexService" in out and '"status": "SERVING"' in out
    assert out.count("6f1c2a9e-3b7d-4e1a-9c55-0b2f7d4e8a11") >= 3  # attached, found, listed
