"""Versioned schema migrations, applied at start, one component (index, manager) at a time.

Each component owns a numbered list of migrations. `apply_migrations` runs, in one transaction,
those not yet recorded in `schema_migrations` for that component, so services sharing one
PostgreSQL database keep separate version lines, and several replicas starting at once apply
each migration exactly once (they queue on an advisory lock; SQLite's write lock does the same).
A database newer than the code (a downgrade) is refused rather than half-understood.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from services.common.db.engine import Database, Mode, Tx

log = logging.getLogger(__name__)

_MIGRATION_LOCK_NAMESPACE = 0x5353_4D47  # "SSMG"


@dataclass(frozen=True)
class Migration:
    """One schema step: statements (with dialect macros) run in order, in one transaction."""

    version: int
    name: str
    statements: tuple[str, ...]


class SchemaTooNew(Exception):
    """The database was migrated by a newer build than this one."""


def _check(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1..n in order, got {versions}")


def apply_migrations(db: Database, component: str, migrations: Sequence[Migration]) -> int:
    """Brings `component`'s schema to the newest version; returns how many migrations ran."""
    _check(migrations)

    def run(tx: Tx) -> int:
        tx.advisory_lock(_MIGRATION_LOCK_NAMESPACE, zlib.crc32(component.encode()))
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,"
            " applied_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (component, version))"
        )
        done = {int(v) for (v,) in tx.query("SELECT version FROM schema_migrations WHERE component = ?", (component,))}
        newest = max(done, default=0)
        if newest > len(migrations):
            raise SchemaTooNew(
                f"the {component} schema in the database is at version {newest}, but this build knows versions "
                f"up to {len(migrations)}: run a newer build (downgrades are not supported)"
            )
        ran = 0
        for migration in migrations:
            if migration.version in done:
                continue
            for statement in migration.statements:
                tx.execute(statement)
            tx.execute(
                "INSERT INTO schema_migrations (component, version, name, applied_at) VALUES (?, ?, ?, ?)",
                (component, migration.version, migration.name, time.time()),
            )
            ran += 1
        return ran

    ran = db.transact(run, Mode.WRITE)
    if ran:
        log.info("schema migrated", extra={"component": component, "applied": ran, "version": len(migrations)})
    return ran


def schema_version(db: Database, component: str) -> int:
    """The newest applied migration of `component` (0 when none)."""

    def read(tx: Tx) -> int:
        try:
            value = tx.scalar("SELECT MAX(version) FROM schema_migrations WHERE component = ?", (component,))
        except Exception:  # noqa: BLE001 - the table does not exist yet
            return 0
        return int(value or 0)

    return db.transact(read, Mode.READ)
