"""One data-access layer for every service that keeps durable state (index, manager).

SQLite (WAL, the default: one file under the data dir) and PostgreSQL (a DSN, for several
replicas of a service on one database) behind the same small API: `open_database()` gives a
`Database`; `Database.run(fn)` runs `fn(tx)` as one transaction on a worker thread (retrying it on
serialization failures and lock timeouts) so grpc.aio servers never block their event loop;
`apply_migrations()` brings a component's schema to its newest version at start.

SQL is written once, with `?` placeholders and a few `{name}` dialect macros (see
`dialect.py`); the dialect translates it.
"""

from services.common.db.dialect import Dialect
from services.common.db.engine import (
    Database,
    DatabaseRefused,
    DatabaseUnavailable,
    LockWaitExpired,
    Mode,
    RetryExhausted,
    Tx,
    check_sqlite_file,
    open_database,
)
from services.common.db.migrations import Migration, SchemaTooNew, apply_migrations, schema_version
from services.common.db.url import DatabaseTarget, parse_database_url

__all__ = [
    "Database",
    "DatabaseRefused",
    "DatabaseTarget",
    "DatabaseUnavailable",
    "Dialect",
    "LockWaitExpired",
    "Migration",
    "Mode",
    "RetryExhausted",
    "SchemaTooNew",
    "Tx",
    "apply_migrations",
    "check_sqlite_file",
    "open_database",
    "parse_database_url",
    "schema_version",
]
