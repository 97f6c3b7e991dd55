"""services/common/db on real SQLite files and a real PostgreSQL server: URLs, SQL translation,
transactions (commit, rollback, retry on conflicts), migrations (once, concurrently, refusing a
newer schema), advisory locks across connections, NOTIFY."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.common.db import (
    Database,
    Dialect,
    Migration,
    Mode,
    SchemaTooNew,
    Tx,
    apply_migrations,
    open_database,
    parse_database_url,
    schema_version,
)
from services.common.db.url import Synchronous
from tests.support.postgres import Postgres

MIGRATIONS = (
    Migration(1, "items", ("CREATE TABLE items (pk {serial_pk}, name TEXT NOT NULL UNIQUE, n BIGINT NOT NULL)",)),
    Migration(
        2,
        "tags",
        ("CREATE TABLE tags (item BIGINT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (item, tag)){without_rowid}",),
    ),
)


# -- URLs and SQL ---------------------------------------------------------------------------------


def test_parse_database_url(tmp_path: Path) -> None:
    default = parse_database_url("", tmp_path, "index")
    assert default.dialect is Dialect.SQLITE and default.path == tmp_path / "index.db"
    assert default.synchronous is Synchronous.FULL and default.inline_reads
    assert parse_database_url("sqlite:sub/x.db", tmp_path, "i").path == tmp_path / "sub/x.db"
    absolute = parse_database_url(
        "sqlite:///var/lib/x.db?synchronous=normal&busy_timeout_ms=100&inline_reads=0", tmp_path, "i"
    )
    assert absolute.path == Path("/var/lib/x.db") and absolute.synchronous is Synchronous.NORMAL
    assert absolute.busy_timeout_ms == 100 and not absolute.inline_reads
    pg = parse_database_url("postgresql://u:secret@db:5432/index", tmp_path, "i")
    assert pg.dialect is Dialect.POSTGRESQL and pg.describe() == "postgresql://u:***@db:5432/index"
    for bad, fragment in [
        ("mysql://x", "must start with"),
        ("sqlite:", "names no file"),
        ("sqlite::memory:", "not durable"),
        ("sqlite://host/x.db", "sqlite:///ABSOLUTE"),
        ("sqlite:x.db?synchronous=off", "synchronous must be"),
        ("sqlite:x.db?wal=1", "unknown option 'wal'"),
        ("sqlite:x.db?busy_timeout_ms=-1", "busy_timeout_ms"),
    ]:
        with pytest.raises(ValueError, match=fragment):
            parse_database_url(bad, tmp_path, "i")


def test_dialect_translation() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c LIKE 'x%'{for_update}"
    assert Dialect.SQLITE.sql(sql) == "SELECT a FROM t WHERE b = ? AND c LIKE 'x%'"
    assert Dialect.POSTGRESQL.sql(sql) == "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%' FOR UPDATE"
    with pytest.raises(KeyError, match="unknown SQL macro"):
        Dialect.SQLITE.sql("SELECT {nope}")


# -- both dialects --------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres").new_database()
    database = open_database(url, tmp_path, "unit", threads=4)
    apply_migrations(database, "unit", MIGRATIONS)
    yield database
    database.close()


def test_migrations_apply_once_and_refuse_newer(db: Database) -> None:
    assert schema_version(db, "unit") == 2
    assert apply_migrations(db, "unit", MIGRATIONS) == 0
    assert apply_migrations(db, "other-component", MIGRATIONS[:0]) == 0  # versions are per component
    with pytest.raises(SchemaTooNew, match="version 2, but this build knows versions up to 1"):
        apply_migrations(db, "unit", MIGRATIONS[:1])
    with pytest.raises(ValueError, match="numbered 1..n"):
        apply_migrations(db, "unit", (MIGRATIONS[1],))


def test_transactions_commit_or_roll_back_whole(db: Database) -> None:
    db.transact(lambda tx: tx.execute("INSERT INTO items (name, n) VALUES (?, ?)", ("a", 1)))

    def half_then_fail(tx: Tx) -> None:
        tx.execute("INSERT INTO items (name, n) VALUES (?, ?)", ("b", 2))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        db.transact(half_then_fail)
    names = db.transact(lambda tx: tx.query("SELECT name FROM items ORDER BY name"), Mode.READ)
    assert names == [("a",)]
    assert db.transact(lambda tx: tx.execute("UPDATE items SET n = n + 1 WHERE name = ?", ("a",))) == 1
    row = db.transact(lambda tx: tx.one("UPDATE items SET n = n + 1 WHERE name = ? RETURNING n", ("a",)))
    assert row == (3,)
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM items WHERE name = ?", ("zzz",)), Mode.READ) == 0


def test_run_from_asyncio_and_concurrent_increments_are_not_lost(db: Database) -> None:
    db.transact(lambda tx: tx.execute("INSERT INTO items (name, n) VALUES ('counter', 0)"))

    def bump(tx: Tx) -> None:
        # Read-modify-write under a row lock ({for_update}; SQLite's write lock): no lost update.
        value = tx.scalar("SELECT n FROM items WHERE name = 'counter'{for_update}")
        tx.execute("UPDATE items SET n = ? WHERE name = 'counter'", (value + 1,))

    async def many() -> None:
        await asyncio.gather(*(db.run(bump) for _ in range(200)))

    asyncio.run(many())
    assert db.transact(lambda tx: tx.scalar("SELECT n FROM items WHERE name = 'counter'"), Mode.READ) == 200


def test_advisory_lock_is_exclusive_across_connections(db: Database) -> None:
    inside = []
    overlaps = []
    guard = threading.Lock()

    def critical(tx: Tx) -> None:
        tx.advisory_lock(7, 12345)
        with guard:
            if inside:
                overlaps.append(1)
            inside.append(1)
        time.sleep(0.01)
        with guard:
            inside.pop()

    threads = [threading.Thread(target=db.transact, args=(critical,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    with pytest.raises(RuntimeError, match="WRITE"):
        db.transact(lambda tx: tx.advisory_lock(1, 1), Mode.READ)


def test_read_transactions_see_one_snapshot(db: Database) -> None:
    db.transact(lambda tx: tx.execute("INSERT INTO items (name, n) VALUES ('x', 1)"))
    seen: list[int] = []

    def read_twice(tx: Tx) -> None:
        seen.append(tx.scalar("SELECT n FROM items WHERE name = 'x'"))
        writer = threading.Thread(
            target=db.transact, args=(lambda w: w.execute("UPDATE items SET n = 2 WHERE name = 'x'"),)
        )
        writer.start()
        writer.join()
        seen.append(tx.scalar("SELECT n FROM items WHERE name = 'x'"))

    db.transact(read_twice, Mode.READ)
    assert seen == [1, 1]


def test_sqlite_retries_when_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    db = open_database("sqlite:busy.db?busy_timeout_ms=50", tmp_path, "unit")
    apply_migrations(db, "unit", MIGRATIONS)
    other = sqlite3.connect(tmp_path / "busy.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # like another process in the middle of a write
    threading.Timer(0.3, lambda: other.execute("COMMIT")).start()
    start = time.monotonic()
    db.transact(lambda tx: tx.execute("INSERT INTO items (name, n) VALUES ('late', 1)"))
    assert time.monotonic() - start >= 0.25  # waited (busy timeout + retries), then succeeded
    assert db.transact(lambda tx: tx.scalar("SELECT n FROM items WHERE name = 'late'"), Mode.READ) == 1
    db.close()
    other.close()


def test_postgres_notify_reaches_listeners(postgres: Postgres, tmp_path: Path) -> None:
    db = open_database(postgres.new_database(), tmp_path, "unit")
    got: list[str] = []
    arrived = threading.Event()
    db.listen("unit_events", lambda payload: (got.append(payload), arrived.set()))
    deadline = time.monotonic() + 10
    while not arrived.is_set() and time.monotonic() < deadline:  # the listener connects in the background
        db.transact(lambda tx: tx.notify("unit_events", "hello"))
        arrived.wait(0.2)
    assert "hello" in got
    db.close()


def test_postgres_unreachable_is_reported(tmp_path: Path) -> None:
    from services.common.db import DatabaseUnavailable

    db = open_database("postgresql://nobody@127.0.0.1:1/none", tmp_path, "unit")
    with pytest.raises(DatabaseUnavailable, match="cannot connect to postgresql://nobody@127.0.0.1:1/none"):
        apply_migrations(db, "unit", MIGRATIONS)
    db.close()


def test_read_one_runs_exactly_one_statement(db: Database) -> None:
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM items"), Mode.READ_ONE) == 0

    def two(tx: Tx) -> None:
        tx.query("SELECT 1")
        tx.query("SELECT 2")

    with pytest.raises(RuntimeError, match="exactly one statement"):
        db.transact(two, Mode.READ_ONE)

    async def inline() -> int:
        return int(await db.run(lambda tx: tx.scalar("SELECT COUNT(*) FROM items"), Mode.READ_ONE, quick=True))

    assert asyncio.run(inline()) == 0


def test_concurrent_writes_fail_or_commit_one_by_one(db: Database) -> None:
    """Many writes at once (on SQLite: committed in groups): each is atomic on its own; a failing
    one leaves no trace and does not take the others down."""

    def write(i: int) -> Callable[[Tx], int]:
        def fn(tx: Tx) -> int:
            tx.execute("INSERT INTO items (name, n) VALUES (?, ?)", (f"w{i}", i))
            tx.execute("INSERT INTO tags (item, tag) VALUES (?, 'x')", (i,))
            if i % 5 == 0:
                raise ValueError(f"write {i} refused")
            return i

        return fn

    async def many() -> list[object]:
        return list(await asyncio.gather(*(db.run(write(i)) for i in range(100)), return_exceptions=True))

    results = asyncio.run(many())
    assert [r for r in results if isinstance(r, ValueError)] and all(
        isinstance(r, ValueError) == (i % 5 == 0) for i, r in enumerate(results)
    )
    names = {n for (n,) in db.transact(lambda tx: tx.query("SELECT name FROM items"), Mode.READ)}
    tags = {i for (i,) in db.transact(lambda tx: tx.query("SELECT item FROM tags"), Mode.READ)}
    assert names == {f"w{i}" for i in range(100) if i % 5} and tags == {i for i in range(100) if i % 5}
    # A constraint violation is one call's failure too.
    with pytest.raises(Exception, match="(?i)unique"):
        db.transact(lambda tx: tx.execute("INSERT INTO items (name, n) VALUES ('w1', 0)"))
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM items"), Mode.READ) == 80


def test_closed_database_refuses_writes(tmp_path: Path) -> None:
    from services.common.db import DatabaseUnavailable

    db = open_database("", tmp_path, "unit")
    apply_migrations(db, "unit", MIGRATIONS)
    db.close()
    with pytest.raises(DatabaseUnavailable, match="closed"):
        db.transact(lambda tx: tx.execute("INSERT INTO items (name, n) VALUES ('late', 1)"))


def test_query_runs_one_read_statement(db: Database) -> None:
    db.transact(lambda tx: tx.execute("INSERT INTO items (name, n) VALUES ('q', 7)"))

    async def read() -> list[tuple[object, ...]]:
        try:
            return await db.query("SELECT name, n FROM items WHERE n = ?", (7,))
        finally:
            if db._async_pool is not None:  # asyncio connections belong to this loop
                await db._async_pool.close()

    assert asyncio.run(read()) == [("q", 7)]


@pytest.mark.parametrize("dirname", ["plain", "we ird#100%"])
def test_an_existing_sqlite_database_reopens_from_any_url_form(tmp_path: Path, dirname: str) -> None:
    """The start-up check of an existing database file opens it by a file: URI; an absolute URL
    (sqlite:////abs/path: a leading '//') or a path with URI characters must still open."""
    folder = tmp_path / dirname
    folder.mkdir()
    url = f"sqlite:///{folder / 'manager.db'}"
    first = open_database(url, tmp_path, "manager")
    first.transact(lambda tx: tx.execute("CREATE TABLE t (x INTEGER)"))
    first.close()
    again = open_database(url, tmp_path, "manager")
    try:
        assert again.transact(lambda tx: tx.scalar("SELECT count(*) FROM t")) == 0
    finally:
        again.close()


def test_an_empty_file_being_created_by_another_process_is_waited_for(tmp_path: Path) -> None:
    """Two replicas starting on one new SQLite file: the second may see it empty (0 bytes, then
    no tables) while the first creates it; it waits instead of refusing. A file that stays empty
    is refused once the grace has passed."""
    from services.common.db import DatabaseRefused, check_sqlite_file

    path = tmp_path / "index.db"
    path.touch()

    def create_slowly() -> None:
        time.sleep(0.3)
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.commit()
        conn.close()

    creator = threading.Thread(target=create_slowly)
    creator.start()
    check_sqlite_file(path, "index", init=False, grace_s=5)
    creator.join()

    empty = tmp_path / "empty.db"
    empty.touch()
    started = time.monotonic()
    with pytest.raises(DatabaseRefused, match="is empty"):
        check_sqlite_file(empty, "index", init=False, grace_s=0.3)
    assert 0.3 <= time.monotonic() - started < 3
