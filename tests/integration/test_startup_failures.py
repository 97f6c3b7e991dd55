"""Start-up failures of real service processes: each is one line on stderr naming the config key
or path and what to do, exit code 2, no traceback, and nothing left listening."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from services.cli.local_fleet import console_script
from tests.conftest import TEST_SECRET
from tests.integration.fleet import free_port
from tests.integration.worker_helpers import StartService


def run_once(service: str, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Starts a service that is expected not to start; its whole output and exit code."""
    return subprocess.run(
        [console_script(f"sectorstorage-{service}"), "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "SECTORSTORAGE_AUTH_SECRET": TEST_SECRET, **(env or {})},
    )


def assert_refused(result: subprocess.CompletedProcess[str], service: str, line: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr == f"sectorstorage-{service}: cannot start: {line}\n", result.stderr
    assert "listening on" not in result.stdout


def in_use(listen: str) -> str:
    return f"{listen}: the port is already in use (another service, or this one already running): stop it or choose another port"


def test_second_service_on_a_port_in_use_is_refused(start_service: StartService, tmp_path: Path) -> None:
    port = free_port()
    listen = f"127.0.0.1:{port}"
    first = start_service("index", "--listen", listen)
    for service, extra in (("index", ()), ("manager", ("--index", first.address)), ("worker", ())):
        result = run_once(service, tmp_path / service, "--listen", listen, *extra)
        assert_refused(result, service, f"listen (--listen) {in_use(listen)}")
    # The first one still answers on its port, alone.
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_reuse_port_shares_a_port_only_when_every_process_asks(start_service: StartService, tmp_path: Path) -> None:
    port = free_port()
    listen = f"127.0.0.1:{port}"
    shared = {"SECTORSTORAGE_GRPC_REUSE_PORT": "true"}
    data = tmp_path / "index"
    start_service("index", "--listen", listen, env=shared, data_dir=data)
    second = start_service("index", "--listen", listen, env=shared, data_dir=data)  # index replicas on one database
    assert second.address == listen
    # One that does not ask to share is refused, even next to sharing ones.
    assert_refused(run_once("index", tmp_path / "third", "--listen", listen), "index", f"listen (--listen) {in_use(listen)}")
