"""Connections, transactions and retries for SQLite and PostgreSQL.

Each `Database` owns a small thread pool; every worker thread keeps its own connection, so a
transaction runs start to finish on one thread and one connection and the asyncio event loop
only waits on a future. `Database.run(fn)` / `transact(fn)` run `fn(tx)` between BEGIN and
COMMIT and re-run it when the database reports a conflict that a retry resolves (PostgreSQL
serialization failures and deadlocks, SQLite `database is locked`). `fn` must therefore touch
nothing outside the transaction.

Isolation, and why it is enough:
- SQLite: write transactions start with BEGIN IMMEDIATE and, inside one process, also take a
  Python lock, so writers never wait in SQLite's sleep-and-retry busy handler (which would cost
  milliseconds); other processes on the same file wait up to `busy_timeout_ms`. Writers are
  serialized, hence serializable. WAL lets readers run beside the writer.
- PostgreSQL: write transactions run at READ COMMITTED and take explicit locks where a decision
  depends on what they read: row locks (`{for_update}` ...) for read-modify-write of a row, and
  `Tx.advisory_lock` for decisions over a set of rows (e.g. granting a sector lock); a statement
  after the lock sees every transaction committed before it. Read transactions use REPEATABLE
  READ READ ONLY for one consistent snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from services.common.db.dialect import Dialect
from services.common.db.url import DatabaseTarget, parse_database_url

log = logging.getLogger(__name__)

T = TypeVar("T")
Row = tuple[Any, ...]

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_INT32 = 2**31


class Mode(Enum):
    """What a transaction does; picks its BEGIN and, on SQLite, whether it takes the write lock."""

    READ = "read"
    WRITE = "write"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or lost the connection; the caller may retry later."""


class RetryExhausted(DatabaseUnavailable):
    """A transaction kept conflicting with others beyond the retry budget."""


class _Cursor(Protocol):
    rowcount: int

    def execute(self, sql: Any, params: Any = ...) -> Any: ...
    def executemany(self, sql: Any, params: Any) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchone(self) -> Any: ...
    def close(self) -> Any: ...


class Tx:
    """One open transaction. SQL uses `?` placeholders and the dialect macros."""

    def __init__(self, dialect: Dialect, cursor: _Cursor, mode: Mode) -> None:
        self.dialect = dialect
        self.mode = mode
        self._cur = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs one statement; returns the number of rows it changed (DML) or -1."""
        self._cur.execute(self.dialect.sql(sql), tuple(params))
        return int(self._cur.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if batch:
            self._cur.executemany(self.dialect.sql(sql), batch)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cur.execute(self.dialect.sql(sql), tuple(params))
        return [tuple(r) for r in self._cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._cur.execute(self.dialect.sql(sql), tuple(params))
        row = self._cur.fetchone()
        return None if row is None else tuple(row)

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def advisory_lock(self, namespace: int, key: int) -> None:
        """Holds a lock on (namespace, key) until the transaction ends, across every process on
        the database. Needed on PostgreSQL only; SQLite write transactions are already exclusive.
        `key` may be any integer: it is folded to 32 bits (a collision only serializes more)."""
        if self.mode is not Mode.WRITE:
            raise RuntimeError("advisory_lock needs a WRITE transaction")
        if self.dialect is Dialect.POSTGRESQL:
            self._cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_fold32(namespace), _fold32(key ^ (key >> 32))))

    def notify(self, channel: str, payload: str) -> None:
        """Sends `payload` to `Database.listen(channel)` callbacks of every process, at commit
        (PostgreSQL NOTIFY). A no-op on SQLite, whose listeners poll."""
        if self.dialect is Dialect.POSTGRESQL:
            self._cur.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def _fold32(value: int) -> int:
    return value % (2 * _INT32) - _INT32


class _InlineBusy(Exception):
    """An inline read found the database busy; it is re-run on the pool."""


class _CommitFailed(Exception):
    """COMMIT itself failed: whether the transaction took effect is unknown."""


class _Backend(Protocol):
    dialect: Dialect

    def connect(self) -> Any: ...
    def begin(self, mode: Mode) -> str: ...
    def retryable(self, exc: BaseException) -> bool: ...
    def lost(self, exc: BaseException, conn: Any) -> bool: ...


class _Sqlite:
    dialect = Dialect.SQLITE

    def __init__(self, target: DatabaseTarget) -> None:
        assert target.path is not None
        self.target = target
        self.path: Path = target.path

    def connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self.target.busy_timeout_ms / 1000,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,  # closed from the owning Database's thread at shutdown
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.target.synchronous.value.upper()}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={self.target.busy_timeout_ms}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
        conn.execute("PRAGMA mmap_size=1073741824")  # read pages through the OS cache
        return conn

    def begin(self, mode: Mode) -> str:
        return "BEGIN IMMEDIATE" if mode is Mode.WRITE else "BEGIN"

    def retryable(self, exc: BaseException) -> bool:
        code = getattr(exc, "sqlite_errorcode", None)
        return isinstance(exc, sqlite3.OperationalError) and code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)

    def lost(self, exc: BaseException, conn: Any) -> bool:
        return False


class _Postgres:
    dialect = Dialect.POSTGRESQL

    def __init__(self, target: DatabaseTarget, application_name: str) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the postgres extra is missing
            raise DatabaseUnavailable("PostgreSQL support needs psycopg: pip install 'sectorstorage[postgres]'") from exc
        self._psycopg = psycopg
        self.target = target
        self.application_name = application_name

    def connect(self) -> Any:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(self.target.dsn, autocommit=True, connect_timeout=10, application_name=self.application_name)
            # A stuck peer must not hold row locks forever; waits on locks are bounded.
            conn.execute("SET lock_timeout = '15s'")
            conn.execute("SET idle_in_transaction_session_timeout = '60s'")
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"cannot connect to {self.target.describe()}: {exc}".strip()) from exc
        return conn

    def begin(self, mode: Mode) -> str:
        return "BEGIN" if mode is Mode.WRITE else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

    def retryable(self, exc: BaseException) -> bool:
        errors = self._psycopg.errors
        return isinstance(exc, (errors.SerializationFailure, errors.DeadlockDetected))

    def lost(self, exc: BaseException, conn: Any) -> bool:
        psycopg = self._psycopg
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and bool(conn.closed or conn.broken)


class Database:
    """A pool of per-thread connections to one database, and the transaction runner."""

    max_attempts = 30

    def __init__(self, target: DatabaseTarget, *, threads: int = 4, application_name: str = "sectorstorage") -> None:
        self.target = target
        self.dialect = target.dialect
        self._backend: _Backend = _Sqlite(target) if target.dialect is Dialect.SQLITE else _Postgres(target, application_name)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"db-{application_name}")
        self._local = threading.local()
        self._conns: set[Any] = set()
        self._conns_lock = threading.Lock()
        # SQLite has one writer at a time; queueing writers here is far cheaper than SQLite's
        # busy handler (which sleeps in steps of milliseconds).
        self._write_lock: AbstractContextManager[Any] = threading.Lock() if self.dialect is Dialect.SQLITE else nullcontext()
        self._closed = False
        self._listeners: list[_Listener] = []
        self.inline_reads = self.dialect is Dialect.SQLITE and target.inline_reads
        self._inline_conn: Any = None

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise DatabaseUnavailable("database is closed (the service is stopping)")
            conn = self._backend.connect()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.add(conn)
        return conn

    def _discard(self, conn: Any) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._conns_lock:
            self._conns.discard(conn)
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - it is already broken
            pass

    # -- transactions ------------------------------------------------------------------------

    def transact(self, fn: Callable[[Tx], T], mode: Mode = Mode.WRITE) -> T:
        """Runs fn(tx) in one transaction on the calling thread; blocking."""
        attempt = 0
        while True:
            attempt += 1
            conn = self._connection()
            try:
                return self._once(conn, fn, mode)
            except _CommitFailed as failed:
                cause = failed.__cause__
                if cause is not None and self._backend.lost(cause, conn):
                    self._discard(conn)
                    raise DatabaseUnavailable(f"lost the database connection while committing (outcome unknown): {cause}") from cause
                if cause is not None and self._backend.retryable(cause) and attempt < self.max_attempts:
                    self._pause(attempt)
                    continue
                raise cause if cause is not None else failed
            except Exception as exc:
                if self._backend.retryable(exc):
                    if attempt < self.max_attempts:
                        self._pause(attempt)
                        continue
                    raise RetryExhausted(f"transaction still conflicting after {attempt} attempts: {exc}") from exc
                if self._backend.lost(exc, conn):
                    # Nothing was committed: the connection died before COMMIT. One fresh try.
                    self._discard(conn)
                    if attempt < 3:
                        continue
                    raise DatabaseUnavailable(f"lost the database connection: {exc}") from exc
                raise

    def _once(self, conn: Any, fn: Callable[[Tx], T], mode: Mode) -> T:
        lock = self._write_lock if mode is Mode.WRITE else nullcontext()
        with lock:
            cur = conn.cursor()
            try:
                cur.execute(self._backend.begin(mode))
                try:
                    result = fn(Tx(self.dialect, cur, mode))
                except BaseException:
                    self._rollback(cur)
                    raise
                try:
                    cur.execute("COMMIT")
                except Exception as exc:
                    self._rollback(cur)
                    raise _CommitFailed() from exc
                return result
            finally:
                try:
                    cur.close()
                except Exception:  # noqa: BLE001
                    pass

    @staticmethod
    def _rollback(cur: _Cursor) -> None:
        try:
            cur.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - no transaction left, or the connection is gone
            pass

    @staticmethod
    def _pause(attempt: int) -> None:
        time.sleep(min(0.002 * 2 ** min(attempt, 6), 0.1) * random.uniform(0.5, 1.0))

    async def run(self, fn: Callable[[Tx], T], mode: Mode = Mode.WRITE) -> T:
        """Runs fn(tx) in one transaction on the pool; the event loop only awaits the result.

        Exception: SQLite reads run on the calling (event-loop) thread. A WAL reader never waits
        for a lock and its pages come from the page cache or mmap, so it costs microseconds,
        while the hop to a pool thread and back costs ~100 us of latency and most of the CPU of
        a small query. Should a read ever meet a busy database (WAL recovery), it goes to the
        pool instead of blocking the loop.
        """
        if mode is Mode.READ and self.inline_reads:
            try:
                return self._inline_read(fn)
            except _InlineBusy:
                pass
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.transact, fn, mode)

    def _inline_read(self, fn: Callable[[Tx], T]) -> T:
        conn = self._inline_conn
        if conn is None:
            if self._closed:
                raise DatabaseUnavailable("database is closed (the service is stopping)")
            conn = self._backend.connect()
            conn.execute("PRAGMA busy_timeout=0")  # never wait on the event loop
            self._inline_conn = conn
            with self._conns_lock:
                self._conns.add(conn)
        try:
            return self._once(conn, fn, Mode.READ)
        except Exception as exc:
            if self._backend.retryable(exc):
                raise _InlineBusy() from exc
            raise

    # -- notifications -----------------------------------------------------------------------

    def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """Calls callback(payload) (on a background thread) for each `Tx.notify(channel, ...)`
        committed by any process. PostgreSQL only; on SQLite nothing is delivered and listeners
        rely on polling."""
        if self.dialect is Dialect.POSTGRESQL:
            listener = _Listener(self._backend, channel, callback)
            self._listeners.append(listener)
            listener.start()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        self._closed = True
        for listener in self._listeners:
            listener.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass


class _Listener:
    """A thread holding one LISTEN connection; reconnects with back-off when it drops."""

    def __init__(self, backend: _Backend, channel: str, callback: Callable[[str], None]) -> None:
        if not channel.replace("_", "").isalnum():
            raise ValueError(f"bad channel name {channel!r}")
        self._backend = backend
        self._channel = channel
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"db-listen-{channel}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._backend.connect()
                conn.execute(f"LISTEN {self._channel}")
                delay = 0.1
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=0.5):
                        self._callback(note.payload)
            except Exception as exc:  # noqa: BLE001 - keep listening through outages
                log.warning("database listener lost its connection; reconnecting", extra={"channel": self._channel, "error": str(exc)})
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass


def open_database(url: str, data_dir: Path, default_name: str, *, threads: int = 4) -> Database:
    """The service's database from its `database.url` (see `url.py`). Connects lazily: call
    `apply_migrations` (which connects) to fail fast on a bad DSN."""
    return Database(parse_database_url(url, data_dir, default_name), threads=threads, application_name=f"sectorstorage-{default_name}")
