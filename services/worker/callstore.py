"""The worker's durable record of calls: a small SQLite file in the data dir.

A call is recorded before its task starts (state `running`) and its outcome is written (state
`done`, the result's bytes) before the worker tries to deliver it with the manager's
Return<Method>; it is deleted only once the manager acknowledged it (state `acked`, result
dropped). So a result is never lost between finishing and delivery, and a crash while a task
runs becomes a WORKER_RESTARTED outcome at the next start. The reference meant to do this but
stored results only for failed calls (an inverted condition); here every outcome is stored.
The bytes are a StoredCallResult message, encoded and decoded by the ResultCodec the edge hands
in (app.py: messages.RESULT_CODEC), so this module reads no message itself.

Acknowledged calls stay as tombstones for a while so that a repeated dispatch of the same
CallId is recognised ("starts nothing and answers as the first one did"); so do calls aborted
before their dispatch arrived (`forbid`), so that the late dispatch does not run them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.worker.calls import CallId, CallResult

TOMBSTONE_TTL_S = 7 * 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_key    TEXT PRIMARY KEY,
    call_type   INTEGER NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'acked')),
    started_at  REAL NOT NULL,
    finished_at REAL,
    result      BLOB
);
CREATE INDEX IF NOT EXISTS calls_state ON calls(state, finished_at);
"""


def call_key(call_id: CallId) -> str:
    """The reference's string form `<miner>-<number>-<uuid>`."""
    return call_id.key


@dataclass(frozen=True)
class ResultCodec:
    """How a result is kept as bytes (and read back): the edge's encoding, given by app.py."""

    encode: Callable[[CallResult], bytes]
    decode: Callable[[bytes], CallResult]


@dataclass(frozen=True)
class CallRecord:
    key: str
    call_type: int
    state: str
    result: CallResult | None


class CallStore:
    def __init__(self, path: Path, codec: ResultCodec) -> None:
        self.codec = codec
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a result counts as stored only once it is on disk.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, key: str) -> CallRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT call_key, call_type, state, result FROM calls WHERE call_key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        result = self.codec.decode(row[3]) if row[3] is not None else None
        return CallRecord(row[0], row[1], row[2], result)

    def start(self, key: str, call_type: int, started_at: float) -> bool:
        """Records a new call; False when the key is already known (a repeated dispatch)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO calls (call_key, call_type, state, started_at) VALUES (?, ?, 'running', ?)",
                (key, call_type, started_at),
            )
            return cur.rowcount == 1

    def finish(self, key: str, result: CallResult) -> None:
        data = self.codec.encode(result)
        with self._lock:
            self._db.execute(
                "UPDATE calls SET state = 'done', finished_at = ?, result = ? WHERE call_key = ? AND state = 'running'",
                (time.time(), data, key),
            )

    def forbid(self, key: str) -> bool:
        """Records a call that was aborted before it arrived, as a tombstone: a dispatch of it
        that comes later (the abort and the dispatch crossed on the wire) is recognised as known
        and starts nothing. False when the call is already known."""
        now = time.time()
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO calls (call_key, call_type, state, started_at, finished_at) "
                "VALUES (?, 0, 'acked', ?, ?)",
                (key, now, now),
            )
            return cur.rowcount == 1

    def pending(self) -> list[CallResult]:
        """Finished, unacknowledged results, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT result FROM calls WHERE state = 'done' ORDER BY finished_at, call_key"
            ).fetchall()
        return [self.codec.decode(r[0]) for r in rows]

    def running_keys(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT call_key FROM calls WHERE state = 'running'")]

    def ack(self, key: str) -> bool:
        """Drops a delivered result (keeping a tombstone); True when it was pending."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE calls SET state = 'acked', result = NULL WHERE call_key = ? AND state = 'done'", (key,)
            )
            return cur.rowcount == 1

    def prune(self, now: float | None = None) -> int:
        cutoff = (now or time.time()) - TOMBSTONE_TTL_S
        with self._lock:
            cur = self._db.execute("DELETE FROM calls WHERE state = 'acked' AND finished_at < ?", (cutoff,))
            return cur.rowcount
