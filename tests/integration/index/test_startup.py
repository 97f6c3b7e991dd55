"""Start-up against a database that cannot be used fails at once with a message naming it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from services.devfleet import console_script


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
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SECTORSTORAGE_DATABASE_URL": url},
    )
    assert result.returncode == 2, result.stderr
    assert "cannot start" in result.stderr and fragment in result.stderr


def start_once(service: str, data_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [console_script(f"sectorstorage-{service}"), "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SECTORSTORAGE_AUTH_SECRET": "k" * 32, "SECTORSTORAGE_MANAGER_INDEX": "127.0.0.1:1"},
    )


def sqlite_without_tables(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")  # a valid SQLite file, 4 KiB, with no table at all
    conn.commit()
    conn.close()


@pytest.mark.parametrize("service", ["index", "manager"])
def test_empty_or_foreign_database_file_is_refused(tmp_path: Path, service: str) -> None:
    """A database file that exists but is empty (0 bytes, or SQLite with no tables) would start as
    an empty database in place of the lost one: refused with one line and exit code 2, as is
    a file that is not SQLite at all. A missing file is a fresh start, and --init-database
    starts fresh on an empty one on purpose."""
    db = tmp_path / f"{service}.db"
    db.write_bytes(b"")
    result = start_once(service, tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"sectorstorage-{service}: cannot start: {service} database {db} is empty (0 bytes), but an existing {service} database "
        "is expected there: restore it from a backup, or start once with --init-database (database.init = true) to begin with "
        "an empty one\n"
    )
    assert db.stat().st_size == 0  # left as it was

    db.unlink()
    sqlite_without_tables(db)
    result = start_once(service, tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"sectorstorage-{service}: cannot start: {service} database {db} holds no tables, but an existing {service} database "
        "is expected there: restore it from a backup, or start once with --init-database (database.init = true) to begin with "
        "an empty one\n"
    )

    db.write_bytes(os.urandom(8192))
    result = start_once(service, tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"sectorstorage-{service}: cannot start: {service} database {db} is not an SQLite database (or is corrupt): "
        f"restore it from a backup, or move it away to start with an empty {service}\n"
    )
    # Not even --init-database starts over a file that is not SQLite.
    assert start_once(service, tmp_path, "--init-database").returncode == 2

    # A SQLite header over garbage pages: still one line, no traceback.
    db.write_bytes(b"SQLite format 3\0" + os.urandom(8192))
    result = start_once(service, tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"sectorstorage-{service}: cannot start: {service} database ")


@pytest.mark.parametrize("service", ["index", "manager"])
def test_init_database_starts_fresh_on_an_empty_file(start_service: Any, tmp_path: Path, service: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / f"{service}.db").write_bytes(b"")
    args = ("--index", "127.0.0.1:1") if service == "manager" else ()
    proc = start_service(service, *args, "--init-database", data_dir=data)
    proc.stop()
    assert (data / f"{service}.db").stat().st_size > 0
    # Once it holds the schema, it starts without the switch.
    start_service(service, *args, data_dir=data).stop()
    # A fresh data dir (no file at all) needs no switch either.
    start_service(service, *args, data_dir=tmp_path / "fresh").stop()


def test_database_path_with_odd_characters_is_checked_and_used(start_service: Any, tmp_path: Path) -> None:
    """The emptiness check opens the file by URI: a path with `//`, spaces, `#` or `%`
    still names that file."""
    odd = tmp_path / "a b#c%d"
    odd.mkdir()
    url = f"sqlite:///{odd}/index.db"  # an absolute path after sqlite:/// gives //tmp/...
    proc = start_service("index", env={"SECTORSTORAGE_DATABASE_URL": url}, data_dir=tmp_path / "data")
    proc.stop()
    assert (odd / "index.db").stat().st_size > 0
    start_service(
        "index", env={"SECTORSTORAGE_DATABASE_URL": url}, data_dir=tmp_path / "data"
    ).stop()  # reopened: has tables
