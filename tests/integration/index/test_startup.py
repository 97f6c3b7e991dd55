"""Start-up against a database that cannot be used fails at once with a message naming it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from services.cli.local_fleet import console_script


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql://nobody@127.0.0.1:1/index", "cannot connect to postgresql://nobody@127.0.0.1:1/index"),
        ("sqlite:x.db?synchronous=off", "synchronous must be 'full' or 'normal'"),
    ],
)
def test_unusable_database_stops_startup(tmp_path: Path, url: str, fragment: str) -> None:
    result = subprocess.run(
        [console_script("sectorstorage-index"), "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "SECTORSTORAGE_DATABASE_URL": url},
    )
    assert result.returncode == 2, result.stderr
    assert "cannot start" in result.stderr and fragment in result.stderr
