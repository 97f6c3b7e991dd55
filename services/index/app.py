"""The index service process: database, store, lock manager and the IndexService servicer on
the common bootstrap, plus the lease sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence

from services.common.db import (
    Database,
    DatabaseRefused,
    DatabaseUnavailable,
    SchemaTooNew,
    apply_migrations,
    open_database,
)
from services.common.proto.sectorstorage.v1 import index_pb2, index_pb2_grpc
from services.common.server import Registration, Runtime, Service, registration
from services.index.config import IndexConfig
from services.index.locks import LockManager, LockSettings
from services.index.schema import COMPONENT, MIGRATIONS
from services.index.servicer import IndexServicer
from services.index.store import IndexStore

log = logging.getLogger(__name__)


def open_index_database(config: IndexConfig) -> Database:
    """Opens the configured database and migrates it; raises OSError (start-up fails with the
    message) when it cannot be reached, was written by a newer build, or is an SQLite file that
    is corrupt or empty where data is expected (see check_sqlite_file)."""
    try:
        db = open_database(
            config.database.url, config.data_dir, "index", threads=config.index.db_threads, init=config.database.init
        )
    except DatabaseRefused as exc:
        raise OSError(str(exc)) from None
    try:
        apply_migrations(db, COMPONENT, MIGRATIONS)
    except (DatabaseUnavailable, SchemaTooNew) as exc:
        db.close()
        raise OSError(f"index database {db.target.describe()}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        db.close()
        raise OSError(
            f"index database {db.target.describe()} cannot be used ({exc}): restore it from a backup, or move it away to start with an empty index"
        ) from None
    except Exception:
        db.close()
        raise
    return db


class IndexApp(Service):
    name = "index"

    def __init__(self, config: IndexConfig) -> None:
        self.config = config
        settings = config.index
        self.db = open_index_database(config)
        self.store = IndexStore(self.db, heartbeat_timeout=settings.heartbeat_timeout_s)
        self.locks = LockManager(
            self.db,
            LockSettings(
                ttl_default=settings.lock_ttl_default_s,
                ttl_min=settings.lock_ttl_min_s,
                ttl_max=settings.lock_ttl_max_s,
                retry_max=settings.lock_retry_max_s,
                waiting_repeat=settings.lock_waiting_repeat_s,
            ),
        )
        self.servicer = IndexServicer(self.store, self.locks)
        self._sweeper: asyncio.Task[None] | None = None
        log.info("index database ready", extra={"database": self.db.target.describe()})

    def registrations(self) -> Sequence[Registration]:
        return [registration(index_pb2, index_pb2_grpc, "IndexService", self.servicer)]

    async def start(self, runtime: Runtime) -> None:
        self.locks.start()
        self._sweeper = asyncio.create_task(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.index.lock_sweep_interval_s)
            try:
                expired = await self.locks.sweep()
                if expired:
                    log.info("expired lock leases removed", extra={"sectors": expired})
            except Exception as exc:  # noqa: BLE001 - keep sweeping through database outages
                log.warning("lease sweep failed", extra={"error": str(exc)})

    async def drain(self) -> None:
        self.locks.drain()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.locks.finish_background()
        await self.db.aclose()
