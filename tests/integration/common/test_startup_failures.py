"""Start-up failures of real service processes: each is one line on stderr naming the config key
or path and what to do, exit code 2, no traceback, and nothing left listening."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
from pathlib import Path

import pytest

from services.devfleet import console_script
from tests.support.auth import TEST_SECRET
from tests.support.fleet import StartService, free_port


def run_once(
    service: str, data_dir: Path, *args: str, env: dict[str, str] | None = None, secret: bool = True
) -> subprocess.CompletedProcess[str]:
    """Starts a service that is expected not to start; its whole output and exit code."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SECTORSTORAGE_")}
    if secret:
        base["SECTORSTORAGE_AUTH_SECRET"] = TEST_SECRET
    if service == "manager":
        args = (*args, "--index", "127.0.0.1:1")
    return subprocess.run(
        [console_script(f"sectorstorage-{service}"), "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
    )


def assert_refused(result: subprocess.CompletedProcess[str], service: str, line: str) -> None:
    """Exit code 2 and exactly this one line on stderr (so no traceback, no log lines)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr == f"sectorstorage-{service}: cannot start: {line}\n", result.stderr
    assert "listening on" not in result.stdout


SERVICES = ("index", "manager", "worker")


def in_use(listen: str) -> str:
    return f"{listen}: the port is already in use (another service, or this one already running): stop it or choose another port"


def test_second_service_on_a_port_in_use_is_refused(start_service: StartService, tmp_path: Path) -> None:
    port = free_port()
    listen = f"127.0.0.1:{port}"
    start_service("index", "--listen", listen)  # holds the port
    for service in SERVICES:
        result = run_once(service, tmp_path / service, "--listen", listen)
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
    assert_refused(
        run_once("index", tmp_path / "third", "--listen", listen), "index", f"listen (--listen) {in_use(listen)}"
    )


def test_metrics_port_in_use_is_refused(start_service: StartService, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        for service in SERVICES:
            result = run_once(service, tmp_path / service, "--metrics-listen", listen)
            assert_refused(
                result, service, f"metrics.listen (--metrics-listen) {in_use(listen)} ('' turns metrics off)"
            )
        assert not (tmp_path / "index" / "index.db").exists()  # refused before opening its state


def test_auth_key_problems_are_refused(tmp_path: Path) -> None:
    for service in SERVICES:
        data = tmp_path / service
        data.mkdir()
        key = data / "auth.key"
        key.write_text("too-short\n")
        assert_refused(
            run_once(service, data, secret=False),
            service,
            f"auth key file {key} (auth.secret_file) holds a key of 9 bytes, at least 32 are needed: put the fleet's key in it "
            "(or set auth.secret / SECTORSTORAGE_AUTH_SECRET)",
        )
        key.unlink()
        key.mkdir()
        assert_refused(
            run_once(service, data, secret=False),
            service,
            f"auth key file {key} (auth.secret_file) is a directory: remove it, or point auth.secret_file at the fleet's key file",
        )
        assert_refused(
            run_once(service, data, secret=False, env={"SECTORSTORAGE_AUTH_SECRET": "short"}),
            service,
            "invalid configuration: config key 'auth.secret' / SECTORSTORAGE_AUTH_SECRET (from environment): "
            "Value error, must be at least 32 characters (a random key, not a password)",
        )


def test_unusable_data_dir_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for service in SERVICES:
        assert_refused(
            run_once(service, a_file),
            service,
            f"data_dir {a_file} (--data-dir / data_dir) exists but is not a directory: remove it or choose another directory",
        )
        assert_refused(
            run_once(service, a_file / "sub"),
            service,
            f"data_dir {a_file / 'sub'} (--data-dir / data_dir) cannot be created (Not a directory): "
            "create it for the service's user or choose another directory",
        )
    # A directory this process may not write in: sysfs refuses new files even to root; as
    # another user, a directory without write permission does.
    if os.geteuid() == 0:
        read_only = Path("/sys/kernel")
        if not read_only.is_dir() or _can_create(read_only):
            pytest.skip("no directory here that root cannot write in")
    else:
        read_only = tmp_path / "read-only"
        read_only.mkdir(mode=0o555)
    for service in SERVICES:
        assert_refused(
            run_once(service, read_only),
            service,
            f"data_dir {read_only} (--data-dir / data_dir) is not writable (Permission denied): "
            "give the service's user write access or choose another directory",
        )


def _can_create(directory: Path) -> bool:
    try:
        (directory / f".probe-{os.getpid()}").touch()
    except OSError:
        return False
    (directory / f".probe-{os.getpid()}").unlink()
    return True


def test_unreadable_or_corrupt_database_is_refused(tmp_path: Path) -> None:
    for service in ("index", "manager"):
        data = tmp_path / service
        data.mkdir()
        db = data / f"{service}.db"
        db.mkdir()
        assert_refused(
            run_once(service, data),
            service,
            f"{service} database {db} is a directory: move it away, or set database.url to the database file",
        )
        db.rmdir()
        db.write_bytes(b"not a database at all" * 100)
        assert_refused(
            run_once(service, data),
            service,
            f"{service} database {db} is not an SQLite database (or is corrupt): "
            f"restore it from a backup, or move it away to start with an empty {service}",
        )


@pytest.mark.parametrize("service", SERVICES)
def test_proofs_backend_is_checked_at_start(service: str, tmp_path: Path) -> None:
    """`[proofs] backend`: a name neither backend has is a config error; `filecoin` needs the
    rust_filecoin extension rather than running the emulation under a fleet configured for real
    proofs (docs/filecoin-backend.md); with it, the proofs check passes (the service goes on to
    its next check: here a port in use)."""
    result = run_once(service, tmp_path / "bad", env={"SECTORSTORAGE_PROOFS_BACKEND": "groth16"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f"sectorstorage-{service}: cannot start: invalid configuration: config key 'proofs.backend' / SECTORSTORAGE_PROOFS_BACKEND (from environment): "
    ), result.stderr
    assert "'emulated' or 'filecoin'" in result.stderr and result.stderr.count("\n") == 1
    if importlib.util.find_spec("rust_filecoin") is None:
        result = run_once(service, tmp_path / "filecoin", env={"SECTORSTORAGE_PROOFS_BACKEND": "filecoin"})
        line = "proofs.backend / SECTORSTORAGE_PROOFS_BACKEND = filecoin needs the rust_filecoin extension, which is not installed: build it with `make develop-filecoin` (docs/filecoin-backend.md)"
        assert_refused(result, service, line)
        return
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_once(
            service,
            tmp_path / "filecoin",
            "--listen",
            f"127.0.0.1:{port}",
            env={"SECTORSTORAGE_PROOFS_BACKEND": "filecoin"},
        )
    assert result.returncode == 2, result.stderr
    assert "proofs.backend" not in result.stderr and str(port) in result.stderr, result.stderr


def test_a_filecoin_worker_refuses_pc1_batches(tmp_path: Path) -> None:
    """PC1 batches are the emulation's: a filecoin worker asked for them does not start (one line)."""
    if importlib.util.find_spec("rust_filecoin") is None:
        pytest.skip("rust_filecoin (the real proofs backend) is not built: run `make develop-filecoin`")
    result = run_once(
        "worker",
        tmp_path / "w",
        env={
            "SECTORSTORAGE_PROOFS_BACKEND": "filecoin",
            "SECTORSTORAGE_PROOFS_PARAMETER_CACHE": str(tmp_path / "params"),
            "SECTORSTORAGE_WORKER_PC1_BATCH_SIZE": "2",
        },
    )
    assert_refused(
        result,
        "worker",
        "worker.pc1_batch_size / SECTORSTORAGE_WORKER_PC1_BATCH_SIZE = 2: PC1 batches are the emulated backend's only, not proofs.backend = filecoin; set it to 1",
    )
