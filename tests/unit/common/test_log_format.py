"""Logs for people and for collectors: `log.format = auto` (the default) writes text lines with
the structured fields as key=value when stderr is a terminal, JSON otherwise; --help shows what
each value looks like (HOST:PORT, DIR), not config keys."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from services.common.config import LogConfig, LogFormat
from services.common.log import JsonFormatter, TextFormatter, resolved_format


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    auto = LogConfig()
    assert auto.format is LogFormat.AUTO
    assert resolved_format(auto, _Tty()) is LogFormat.TEXT
    assert resolved_format(auto, io.StringIO()) is LogFormat.JSON
    assert resolved_format(LogConfig(format=LogFormat.JSON), _Tty()) is LogFormat.JSON


def test_text_lines_keep_the_structured_fields() -> None:
    record = logging.LogRecord("services.worker", logging.WARNING, __file__, 1, "index unavailable", None, None)
    record.sector = "1000-5"
    line = TextFormatter("worker").format(record)
    assert "WARNING" in line and "worker: index unavailable" in line and "sector=1000-5" in line
    assert json.loads(JsonFormatter("worker").format(record))["sector"] == "1000-5"


def test_a_service_on_a_terminal_logs_text_and_its_help_names_values(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECTORSTORAGE_")}
    helped = subprocess.run(
        [sys.executable, "-m", "services.manager.main", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert "--index HOST:PORT" in helped.stdout and "MANAGER.INDEX" not in helped.stdout
    assert "--data-dir DIR" in helped.stdout
    # Started on a terminal, the index logs text lines.
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.index.main", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "index")],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**env, "SECTORSTORAGE_AUTH_SECRET": "k" * 40},
    )
    os.close(follower)
    out = b""
    try:
        deadline = time.monotonic() + 30
        while b" INFO " not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                out += os.read(leader, 4096)
    finally:
        proc.terminate()
        proc.wait(30)
        os.close(leader)
    lines = [line for line in out.decode(errors="replace").splitlines() if " INFO " in line]
    assert lines and not lines[0].lstrip().startswith("{") and " index: " in lines[0], out
