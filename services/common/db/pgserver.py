"""A throwaway PostgreSQL server on loopback, for tests, benchmarks and local demos.

PostgreSQL refuses to run as root, so when this process is root the server runs as an
unprivileged system user (`sectorstorage-test`, created with useradd when missing, else
`nobody`) through `runuser`. The data directory is a fresh temporary directory; nothing is
left behind after `stop()`. Binaries are found on PATH or under /usr/lib/postgresql/*/bin
(Debian's `postgresql` package).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DEDICATED_USER = "sectorstorage-test"

# Durability settings traded for speed where the data is thrown away anyway.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class PostgresUnavailable(Exception):
    """No PostgreSQL binaries, or the server would not start; the message says why."""


def find_bin_dir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres, newest version first."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: _version(p.parent.parent.name), reverse=True
    )
    return candidates[0].parent if candidates else None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _server_user() -> str | None:
    """None when we are not root (the server runs as us); else an unprivileged user name."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(DEDICATED_USER)
        return DEDICATED_USER
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd:
        result = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", DEDICATED_USER],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode in (0, 9):  # 9: it appeared meanwhile
            return DEDICATED_USER
    return "nobody"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int = 0
    user: str | None = None
    settings: dict[str, str] = field(default_factory=dict)
    _counter: int = 0

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root)

    def start(self) -> PostgresServer:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        self.root.chmod(0o700)
        init = self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        if init.returncode != 0:
            raise PostgresUnavailable(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        for attempt in range(5):
            self.port = _free_port()
            if self._launch():
                return self
            if attempt == 4 or "could not bind" not in self._log():
                raise PostgresUnavailable(f"PostgreSQL did not start:\n{self._log()}")
            time.sleep(0.2)
        raise AssertionError("unreachable")

    def trust_network(self, cidr: str) -> None:
        """Lets clients of a network in without a password (a test's own hosts, e.g. network
        namespaces on a bridge; the server must listen there too: settings' listen_addresses)."""
        with (self.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {cidr} trust\n")
        reloaded = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "reload")
        if reloaded.returncode != 0:
            raise PostgresUnavailable(f"pg_ctl reload failed: {reloaded.stderr.strip()}")

    def halt(self) -> None:
        """Stops the server abruptly, keeping its data (to test outages); `resume()` restarts it."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", timeout=60)

    def resume(self) -> None:
        if not self._launch():
            raise PostgresUnavailable(f"PostgreSQL did not restart on port {self.port}:\n{self._log()}")

    def _launch(self) -> bool:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "300",
            **self.settings,
        }
        opt_text = " ".join(
            f"-c {key}={value!r}" if value == "" else f"-c {key}={value}" for key, value in options.items()
        )
        started = self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-o",
            opt_text,
            "-w",
            "-t",
            "60",
            "start",
        )
        return started.returncode == 0

    def _log(self) -> str:
        try:
            return self.log_file.read_text()
        except OSError:
            return ""

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its DSN."""
        import psycopg

        self._counter += 1
        name = f"{prefix}_{os.getpid()}_{self._counter}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def stop(self) -> None:
        if self.data_dir.exists():
            self._run(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", timeout=60
            )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, fast: bool = True, settings: dict[str, str] | None = None) -> PostgresServer:
    """Starts a fresh server in a new temporary directory. `fast` turns off fsync (tests)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin); "
            "install Debian's postgresql package: apt-get install -y postgresql"
        )
    root = Path(tempfile.mkdtemp(prefix="sectorstorage-pg-"))
    merged = {**(FAST_SETTINGS if fast else {}), **(settings or {})}
    server = PostgresServer(bin_dir=bin_dir, root=root, user=_server_user(), settings=merged)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise
