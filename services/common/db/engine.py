"""Connections, transactions and retries for SQLite and PostgreSQL.

Each `Database` owns a small thread pool; every worker thread keeps its own connection, so a
transaction runs start to finish on one thread and one connection and the asyncio event loop
only waits on a future. `Database.run(fn)` / `transact(fn)` run `fn(tx)` between BEGIN and
COMMIT and re-run it when the database reports a conflict that a retry resolves (PostgreSQL
serialization failures and deadlocks, SQLite `database is locked`). `fn` must therefore touch
nothing outside the transaction.

Isolation, and why it is enough:
- SQLite: the writes of a process all run on one writer thread, in groups committed together
  (`_GroupCommitter`: one BEGIN IMMEDIATE ... COMMIT and one fsync for all the writes queued at
  that moment, each in its own savepoint). So writers of this process never wait in SQLite's
  sleep-and-retry busy handler (which costs milliseconds); other processes on the same file wait
  up to `busy_timeout_ms`. Writers are serialized, hence serializable. WAL lets readers run
  beside the writer.
- PostgreSQL: write transactions run at READ COMMITTED and take explicit locks where a decision
  depends on what they read: row locks (`{for_update}` ...) for read-modify-write of a row, and
  `Tx.advisory_lock` for decisions over a set of rows (e.g. granting a sector lock); a statement
  after the lock sees every transaction committed before it. Read transactions use REPEATABLE
  READ READ ONLY for one consistent snapshot.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import random
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter

from services.common.db.dialect import Dialect
from services.common.db.url import DatabaseTarget, parse_database_url

log = logging.getLogger(__name__)

DB_RETRIES = Counter(
    "sectorstorage_db_retries_total",
    "Transactions re-run after a conflict (serialization failure, deadlock, database is locked)",
    ["db"],
)
DB_UNAVAILABLE = Counter(
    "sectorstorage_db_unavailable_total", "Transactions failed because the database could not be reached", ["db"]
)

T = TypeVar("T")
Row = tuple[Any, ...]

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_INT32 = 2**31


# libpq connection settings: a server that stops answering (a partition that drops packets, a
# host that died without closing its sockets) fails the query within seconds instead of leaving
# it blocked for the kernel's default retransmission time (~15 min): unacknowledged data times
# out after tcp_user_timeout, an idle link is probed by keepalives.
PG_LINK_TIMEOUTS: dict[str, int] = {
    "connect_timeout": 10,
    "tcp_user_timeout": 10_000,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
}


class Mode(Enum):
    """What a transaction does; picks its BEGIN and, on SQLite, whether it takes the write lock."""

    READ = "read"
    WRITE = "write"
    # A read that is one statement: no BEGIN/COMMIT (a statement is its own snapshot), which on
    # PostgreSQL saves two round trips. Tx refuses a second statement.
    READ_ONE = "read-one"


class DatabaseUnavailable(Exception):
    """The database cannot be reached or lost the connection; the caller may retry later."""


class RetryExhausted(DatabaseUnavailable):
    """A transaction kept conflicting with others beyond the retry budget."""


class LockWaitExpired(DatabaseUnavailable):
    """A row lock was not granted within the session's lock_timeout: another session holds it
    (a process that froze mid-transaction, until the server ends it). Worth trying again."""


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
        self._statements = 0

    def _run(self, sql: str, params: Sequence[Any]) -> None:
        self._statements += 1
        if self.mode is Mode.READ_ONE and self._statements > 1:
            raise RuntimeError("a READ_ONE transaction runs exactly one statement; use Mode.READ")
        self._cur.execute(self.dialect.sql(sql), tuple(params))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs one statement; returns the number of rows it changed (DML) or -1."""
        self._run(sql, params)
        return int(self._cur.rowcount)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if batch:
            self._statements += 1
            self._cur.executemany(self.dialect.sql(sql), batch)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._run(sql, params)
        return [tuple(r) for r in self._cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self._run(sql, params)
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
    def lock_wait_expired(self, exc: BaseException) -> bool: ...


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
        return (
            isinstance(exc, sqlite3.OperationalError)
            and code is not None
            and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
        )

    def lost(self, exc: BaseException, conn: Any) -> bool:
        return False

    def lock_wait_expired(self, exc: BaseException) -> bool:
        return False  # a busy SQLite database is retryable, then RetryExhausted


class _Postgres:
    dialect = Dialect.POSTGRESQL

    def __init__(self, target: DatabaseTarget, application_name: str) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - the postgres extra is missing
            raise DatabaseUnavailable(
                "PostgreSQL support needs psycopg: pip install 'sectorstorage[postgres]'"
            ) from exc
        self._psycopg = psycopg
        self.target = target
        self.application_name = application_name

    def connect(self) -> Any:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(
                self.target.dsn, autocommit=True, application_name=self.application_name, **PG_LINK_TIMEOUTS
            )
            # A stuck peer must not hold row locks forever; waits on locks are bounded. Our
            # transactions run their statements back to back, so one idle for 5 s belongs to a
            # process that froze or lost its link: ending it frees its locks, e.g. the share lock
            # a manager's write holds on the leader's lease, which a takeover waits for
            # (services/manager/leadership.py), well within the failover budget.
            conn.execute("SET lock_timeout = '15s'")
            conn.execute("SET idle_in_transaction_session_timeout = '5s'")
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
        """The connection is gone, whatever the error says: e.g. the server ended a session that
        sat idle in its transaction (the process froze), which psycopg reports as an
        InternalError (SQLSTATE 25P03), not an OperationalError."""
        psycopg = self._psycopg
        if isinstance(exc, psycopg.errors.IdleInTransactionSessionTimeout):
            return True
        return isinstance(exc, psycopg.Error) and bool(conn.closed or conn.broken)

    def lock_wait_expired(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.errors.LockNotAvailable)


class Database:
    """A pool of per-thread connections to one database, and the transaction runner."""

    max_attempts = 30

    def __init__(
        self,
        target: DatabaseTarget,
        *,
        threads: int = 4,
        application_name: str = "sectorstorage",
        session_name: str | None = None,
    ) -> None:
        """`application_name` names the service (thread names, metric labels); `session_name`,
        when given, is what PostgreSQL shows as this process's sessions' application_name, so
        another process can find them (a takeover ends the sessions of a frozen leader)."""
        self.target = target
        self.name = application_name
        self.dialect = target.dialect
        session_name = session_name or application_name
        self._backend: _Backend = (
            _Sqlite(target) if target.dialect is Dialect.SQLITE else _Postgres(target, session_name)
        )
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"db-{application_name}")
        self._local = threading.local()
        self._conns: set[Any] = set()
        self._conns_lock = threading.Lock()
        # SQLite has one writer at a time: all writes of this process go through one thread that
        # commits them in groups (see _GroupCommitter), which never meets SQLite's busy handler
        # (it sleeps in steps of milliseconds) for writers of this process.
        self._committer = _GroupCommitter(self) if self.dialect is Dialect.SQLITE else None
        self._closed = False
        self._listeners: list[_Listener] = []
        self.inline_reads = self.dialect is Dialect.SQLITE and target.inline_reads
        self._inline_conn: Any = None
        self._async_pool = _AsyncPool(target, session_name, threads) if self.dialect is Dialect.POSTGRESQL else None
        # Runs first in every write transaction and may refuse it by raising (a fenced-out
        # leader's writes: services/manager/leadership.py); None: every write goes ahead.
        self.write_guard: Callable[[Tx], None] | None = None

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

    def _guarded(self, fn: Callable[[Tx], T], mode: Mode, unguarded: bool = False) -> Callable[[Tx], T]:
        """`fn` preceded, in the same transaction, by the write guard (for write transactions)."""
        guard = self.write_guard
        if mode is not Mode.WRITE or guard is None or unguarded:
            return fn

        def guarded(tx: Tx) -> T:
            guard(tx)
            return fn(tx)

        return guarded

    def transact(self, fn: Callable[[Tx], T], mode: Mode = Mode.WRITE, *, unguarded: bool = False) -> T:
        """Runs fn(tx) in one transaction; blocking. SQLite writes run on the writer thread.
        `unguarded` skips the write guard (for the transactions that decide who may write)."""
        fn = self._guarded(fn, mode, unguarded)
        if mode is Mode.WRITE and self._committer is not None:
            return self._committer.submit(fn).result()
        try:
            return self._transact(fn, mode)
        except DatabaseUnavailable:
            DB_UNAVAILABLE.labels(self.name).inc()
            raise

    def _transact(self, fn: Callable[[Tx], T], mode: Mode) -> T:
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                DB_RETRIES.labels(self.name).inc()
            conn = self._connection()
            try:
                return self._once(conn, fn, mode)
            except _CommitFailed as failed:
                cause = failed.__cause__
                if cause is not None and self._backend.lost(cause, conn):
                    self._discard(conn)
                    raise DatabaseUnavailable(
                        f"lost the database connection while committing (outcome unknown): {cause}"
                    ) from cause
                if cause is not None and self._backend.retryable(cause) and attempt < self.max_attempts:
                    self._pause(attempt)
                    continue
                raise cause if cause is not None else failed  # noqa: B904 - re-raises the commit's own error as it was
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
                if self._backend.lock_wait_expired(exc):
                    raise LockWaitExpired(f"waited too long for a row lock another session holds: {exc}") from exc
                raise

    def _once(self, conn: Any, fn: Callable[[Tx], T], mode: Mode) -> T:
        cur = conn.cursor()
        try:
            if mode is Mode.READ_ONE:
                return fn(Tx(self.dialect, cur, mode))
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

    def _group(self, conn: Any, fns: Sequence[Callable[[Tx], Any]]) -> list[tuple[bool, Any]]:
        """Runs each fn in its own SAVEPOINT of one write transaction and commits once; returns
        (True, result) or (False, exception) per fn. A fn that fails is rolled back alone; a
        conflict (busy/locked) or a failed COMMIT fails the whole group, to be re-run."""
        cur = conn.cursor()
        try:
            cur.execute(self._backend.begin(Mode.WRITE))
            outcomes: list[tuple[bool, Any]] = []
            try:
                for fn in fns:
                    cur.execute("SAVEPOINT one_call")
                    try:
                        outcomes.append((True, fn(Tx(self.dialect, cur, Mode.WRITE))))
                    except Exception as exc:
                        if self._backend.retryable(exc):
                            raise
                        cur.execute("ROLLBACK TO one_call")
                        outcomes.append((False, exc))
                    cur.execute("RELEASE one_call")
            except BaseException:
                self._rollback(cur)
                raise
            try:
                cur.execute("COMMIT")
            except Exception as exc:
                self._rollback(cur)
                raise _CommitFailed() from exc
            return outcomes
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

    async def run(
        self, fn: Callable[[Tx], T], mode: Mode = Mode.WRITE, *, quick: bool = False, unguarded: bool = False
    ) -> T:
        """Runs fn(tx) in one transaction on the pool; the event loop only awaits the result.

        `quick` marks a small read (a few indexed rows): on SQLite it runs on the calling
        (event-loop) thread. A WAL reader never waits for a lock and its pages come from the page
        cache or mmap, so such a read costs microseconds, while the hop to a pool thread and back
        costs ~100 us of latency and most of the CPU of the query. Should it ever meet a busy
        database (WAL recovery), it goes to the pool instead of blocking the loop. Reads that scan
        (listings, counts) must not be marked quick: they would stall every other call.
        """
        if quick and mode is not Mode.WRITE and self.inline_reads:
            try:
                return self._inline_read(fn, mode)
            except _InlineBusy:
                pass
        if mode is Mode.WRITE and self._committer is not None:
            return await asyncio.wrap_future(self._committer.submit(self._guarded(fn, mode, unguarded)))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self.transact, fn, mode, unguarded=unguarded)
        )

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """One read statement, as cheaply as the backend allows: on SQLite on the event loop (as
        `run(..., quick=True)`), on PostgreSQL on an asyncio connection (no thread hop). For small
        indexed reads on hot paths; the statement is its own snapshot."""
        if self.inline_reads:
            try:
                return self._inline_read(lambda tx: tx.query(sql, params), Mode.READ_ONE)
            except _InlineBusy:
                pass
        if self._async_pool is None:
            return await self.run(lambda tx: tx.query(sql, params), Mode.READ_ONE)
        try:
            return await self._async_pool.query(self.dialect.sql(sql), tuple(params))
        except DatabaseUnavailable:
            DB_UNAVAILABLE.labels(self.name).inc()
            raise

    def _inline_read(self, fn: Callable[[Tx], T], mode: Mode) -> T:
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
            return self._once(conn, fn, mode)
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

    async def aclose(self) -> None:
        """close(), plus the asyncio connections (call on the event loop that used them)."""
        if self._async_pool is not None:
            await self._async_pool.close()
        self.close()

    def close(self) -> None:
        self._closed = True
        for listener in self._listeners:
            listener.stop()
        if self._committer is not None:
            self._committer.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass


class _GroupCommitter:
    """Group commit for SQLite: one thread runs every write transaction of the process. It takes
    all the writes queued at that moment (up to `max_group`), runs each in its own SAVEPOINT of a
    single BEGIN IMMEDIATE ... COMMIT, and answers them all after that one COMMIT. Each call stays
    atomic and isolated (the calls run one after another; a failing call is rolled back to its
    savepoint alone) and is answered only once durable, while N concurrent writes cost one fsync
    and one thread hand-off instead of N. A lone write is simply its own group."""

    max_group = 256

    def __init__(self, db: Database) -> None:
        self._db = db
        self._queue: queue.SimpleQueue[tuple[Callable[[Tx], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, fn: Callable[[Tx], T]) -> Future[T]:
        future: Future[T] = Future()
        if self._db._closed:
            future.set_exception(DatabaseUnavailable("database is closed (the service is stopping)"))
            return future
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name=f"db-writer-{self._db.name}", daemon=True)
                    self._thread.start()
        self._queue.put((fn, future))
        return future

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        while True:  # anything queued after the stop: refuse
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item[1].set_running_or_notify_cancel():
                item[1].set_exception(DatabaseUnavailable("database is closed (the service is stopping)"))

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            stopping = False
            while len(group) < self.max_group:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
            live = [(fn, fut) for fn, fut in group if fut.set_running_or_notify_cancel()]
            if live:
                self._run(live)
            if stopping:
                return

    def _run(self, group: list[tuple[Callable[[Tx], Any], Future[Any]]]) -> None:
        db = self._db
        fns = [fn for fn, _ in group]
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1:
                DB_RETRIES.labels(db.name).inc()
            try:
                conn = db._connection()
                outcomes = db._group(conn, fns)
            except _CommitFailed as failed:
                cause = failed.__cause__
                if cause is not None and db._backend.retryable(cause) and attempt < db.max_attempts:
                    db._pause(attempt)
                    continue
                self._fail(group, cause if isinstance(cause, Exception) else failed)
                return
            except Exception as exc:
                if db._backend.retryable(exc) and attempt < db.max_attempts:
                    db._pause(attempt)
                    continue
                if db._backend.retryable(exc):
                    exc = RetryExhausted(f"transaction still conflicting after {attempt} attempts: {exc}")
                self._fail(group, exc)
                return
            except BaseException as exc:  # noqa: BLE001 - must answer every caller
                self._fail(group, RuntimeError(f"write failed: {exc!r}"))
                return
            for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
            return

    def _fail(self, group: list[tuple[Callable[[Tx], Any], Future[Any]]], exc: Exception) -> None:
        if isinstance(exc, DatabaseUnavailable):
            DB_UNAVAILABLE.labels(self._db.name).inc()
        for _, future in group:
            future.set_exception(exc)


class _AsyncPool:
    """PostgreSQL connections driven by the event loop, for `Database.query`: up to `size` at
    once, opened on demand, kept while healthy. A connection that fails or whose query was
    cancelled half-way is closed rather than reused."""

    def __init__(self, target: DatabaseTarget, application_name: str, size: int) -> None:
        import psycopg

        self._psycopg = psycopg
        self._target = target
        self._application_name = application_name
        self._size = size
        self._idle: list[Any] = []
        self._slots: asyncio.Semaphore | None = None

    async def _connect(self) -> Any:
        psycopg = self._psycopg
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._target.dsn, autocommit=True, application_name=self._application_name, **PG_LINK_TIMEOUTS
            )
            await conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"cannot connect to {self._target.describe()}: {exc}".strip()) from exc
        return conn

    async def query(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
        psycopg = self._psycopg
        async with self._slots:
            for attempt in (1, 2):
                conn = self._idle.pop() if self._idle else await self._connect()
                try:
                    cur = await conn.execute(sql, params)
                    rows = await cur.fetchall()
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    await self._discard(conn)
                    if conn.broken or conn.closed:
                        if attempt == 1:
                            continue  # a connection that died while idle: one fresh try
                        raise DatabaseUnavailable(f"lost the database connection: {exc}") from exc
                    raise
                except BaseException:
                    await self._discard(conn)
                    raise
                self._idle.append(conn)
                return [tuple(r) for r in rows]
        raise AssertionError("unreachable")

    @staticmethod
    async def _discard(conn: Any) -> None:
        try:
            await conn.close()
        except Exception:  # noqa: BLE001
            pass

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await self._discard(conn)


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
                log.warning(
                    "database listener lost its connection; reconnecting",
                    extra={"channel": self._channel, "error": str(exc)},
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass


class DatabaseRefused(Exception):
    """The database file exists but cannot be used as it is (empty where data is expected, not
    SQLite, corrupt); the message names the file and what to do."""


_SQLITE_MAGIC = b"SQLite format 3\0"


def _read_write_uri(path: Path) -> str:
    """An SQLite URI opening `path` read-write without creating it. Leading slashes collapse to
    one (`//tmp/x` would read as host `tmp`); `?`, `#` and `%` in the path are escaped."""
    text = os.path.abspath(path)
    text = "/" + text.lstrip("/")
    return f"file:{urllib.parse.quote(text)}?mode=rw"


# How long an empty file may stay empty before it is refused: another process of the fleet (a
# second index replica on the same file) may be creating it right now, and SQLite writes the
# header and the schema only with that process's first transaction.
EMPTY_GRACE_S = 5.0


def check_sqlite_file(path: Path, component: str, *, init: bool, grace_s: float | None = None) -> None:
    """Refuses an existing SQLite file that cannot be this component's database: not SQLite at
    all (or corrupt), or empty (0 bytes, or no tables) where a database with data is expected,
    as after a failed restore or a truncated copy. Starting there would silently begin an
    empty database in place of the lost one; `init` allows that on purpose. A missing file is a
    fresh start and fine. An empty file is looked at again for `grace_s` first (EMPTY_GRACE_S):
    a concurrent first start on the same file fills it meanwhile."""
    deadline = time.monotonic() + (EMPTY_GRACE_S if grace_s is None else grace_s)
    while True:
        try:
            _check_sqlite_file_once(path, component, init=init)
            return
        except _EmptyDatabase as exc:
            if time.monotonic() >= deadline:
                raise DatabaseRefused(str(exc)) from None
            time.sleep(0.1)


class _EmptyDatabase(Exception):
    """An empty database file (which a concurrent first start may be filling)."""


def _check_sqlite_file_once(path: Path, component: str, *, init: bool) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise DatabaseRefused(
            f"{component} database {path} is a directory: move it away, or set database.url to the database file"
        ) from None
    except OSError as exc:
        raise DatabaseRefused(
            f"{component} database {path} cannot be read ({exc.strerror or exc}): fix its permissions or set database.url"
        ) from None
    fresh = "or start once with --init-database (database.init = true) to begin with an empty one"
    if not head:
        if init:
            return
        raise _EmptyDatabase(
            f"{component} database {path} is empty (0 bytes), but an existing {component} database is expected there: "
            f"restore it from a backup, {fresh}"
        )
    if head != _SQLITE_MAGIC:
        raise DatabaseRefused(
            f"{component} database {path} is not an SQLite database (or is corrupt): "
            f"restore it from a backup, or move it away to start with an empty {component}"
        )
    try:
        conn = sqlite3.connect(_read_write_uri(path), uri=True, timeout=5)
        try:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseRefused(
            f"{component} database {path} cannot be opened ({exc}): restore it from a backup, "
            f"or move it away to start with an empty {component}"
        ) from None
    if not tables and not init:
        raise _EmptyDatabase(
            f"{component} database {path} holds no tables, but an existing {component} database is expected there: "
            f"restore it from a backup, {fresh}"
        )


def open_database(
    url: str,
    data_dir: Path,
    default_name: str,
    *,
    threads: int = 4,
    init: bool = False,
    session_name: str | None = None,
) -> Database:
    """The service's database from its `database.url` (see `url.py`). Connects lazily: call
    `apply_migrations` (which connects) to fail fast on a bad DSN. An existing SQLite file is
    checked first (`check_sqlite_file`; DatabaseRefused), so an empty or foreign file is never
    silently taken for a new database unless `init`."""
    target = parse_database_url(url, data_dir, default_name)
    if target.path is not None:
        check_sqlite_file(target.path, default_name, init=init)
    return Database(
        target, threads=threads, application_name=f"sectorstorage-{default_name}", session_name=session_name
    )
