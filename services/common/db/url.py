"""Where the database is: `DatabaseConfig.url` turned into a typed target.

Accepted forms (the same as `DatabaseConfig.url` documents):
  ""                              SQLite file `<data_dir>/<default_name>.db`
  "sqlite:RELATIVE.db"            SQLite file under the data dir
  "sqlite:///ABSOLUTE/PATH.db"    SQLite file at an absolute path
  "postgresql://user:pw@host:5432/db" (or postgres://)  a PostgreSQL DSN, passed to libpq as is

SQLite takes options as a query string: `?synchronous=full|normal` (default full: every commit is
on disk before the RPC answers, like PostgreSQL's default; `normal` still survives a killed
process but may lose the last commits on power loss), `busy_timeout_ms=N` (default 5000: how
long a writer waits for another process holding the file) and `inline_reads=0|1` (default 1:
read transactions run on the event-loop thread, see `Database.run`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qsl

from services.common.db.dialect import Dialect


class Synchronous(StrEnum):
    FULL = "full"
    NORMAL = "normal"


@dataclass(frozen=True)
class DatabaseTarget:
    dialect: Dialect
    # SQLite: the database file.
    path: Path | None = None
    # PostgreSQL: the DSN.
    dsn: str = ""
    synchronous: Synchronous = Synchronous.FULL
    busy_timeout_ms: int = 5000
    # Run read transactions on the event-loop thread (see Database.run).
    inline_reads: bool = True

    def describe(self) -> str:
        """For logs: the file, or the DSN without its password."""
        if self.dialect is Dialect.SQLITE:
            return f"sqlite:{self.path}"
        return _redact(self.dsn)


def _redact(dsn: str) -> str:
    scheme, sep, rest = dsn.partition("://")
    if not sep or "@" not in rest:
        return dsn
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else dsn


def parse_database_url(url: str, data_dir: Path, default_name: str) -> DatabaseTarget:
    """Raises ValueError with a message naming what to fix."""
    if not url:
        return DatabaseTarget(Dialect.SQLITE, path=data_dir / f"{default_name}.db")
    if url.startswith(("postgresql://", "postgres://")):
        return DatabaseTarget(Dialect.POSTGRESQL, dsn=url)
    if not url.startswith("sqlite:"):
        raise ValueError(f"database url {url!r} must start with 'sqlite:' or 'postgresql://'")
    rest, _, query = url[len("sqlite:") :].partition("?")
    if rest.startswith("//"):
        if not rest.startswith("///"):
            raise ValueError(f"database url {url!r}: use sqlite:///ABSOLUTE/PATH or sqlite:RELATIVE/PATH")
        path = Path(rest[2:])
    elif not rest or rest == ":memory:":
        raise ValueError(f"database url {url!r} names no file (in-memory SQLite is not durable)")
    else:
        path = Path(rest) if Path(rest).is_absolute() else data_dir / rest
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    synchronous = Synchronous.FULL
    busy = 5000
    inline = True
    for key, value in options.items():
        if key == "synchronous":
            try:
                synchronous = Synchronous(value.lower())
            except ValueError:
                raise ValueError(
                    f"database url {url!r}: synchronous must be 'full' or 'normal', got {value!r}"
                ) from None
        elif key == "busy_timeout_ms":
            if not value.isdigit() or not 0 < int(value) <= 600_000:
                raise ValueError(f"database url {url!r}: busy_timeout_ms must be 1..600000, got {value!r}")
            busy = int(value)
        elif key == "inline_reads":
            if value not in ("0", "1"):
                raise ValueError(f"database url {url!r}: inline_reads must be 0 or 1, got {value!r}")
            inline = value == "1"
        else:
            raise ValueError(
                f"database url {url!r}: unknown option {key!r} (known: synchronous, busy_timeout_ms, inline_reads)"
            )
    return DatabaseTarget(Dialect.SQLITE, path=path, synchronous=synchronous, busy_timeout_ms=busy, inline_reads=inline)
