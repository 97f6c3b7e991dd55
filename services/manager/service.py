"""The manager service process: database, call tracker, scheduler, worker registry and the
ManagerService servicer on the common bootstrap, plus the upkeep loops (heartbeat timeouts,
orphaned and overdue calls, selector refresh, full scheduling passes, retention)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence

from services.common.auth import Permission
from services.common.db import Database, DatabaseRefused, DatabaseUnavailable, SchemaTooNew, open_database
from services.common.proto.sectorstorage.v1 import manager_pb2, manager_pb2_grpc
from services.common.server import Registration, Runtime, Service, registration
from services.manager import metrics, views
from services.manager.calltracker import CallTracker, RetryPolicy
from services.manager.config import ManagerConfig
from services.manager.index_client import GrpcStorageIndex, StorageIndex
from services.manager.jobs import JobRunner
from services.manager.operators import Operators
from services.manager.post import Proving
from services.manager.sealing import Sealing
from services.manager.selectors import SelectorContext
from services.manager.servicer import ManagerServicer
from services.manager.store import ManagerStore
from services.manager.tasks import TaskType
from services.manager.workers import WorkerRegistry

log = logging.getLogger(__name__)


def open_manager_database(config: ManagerConfig) -> tuple[Database, ManagerStore]:
    """Opens and migrates the manager's database; raises OSError (start-up fails with the
    message) when it cannot be reached, was written by a newer build, or is an SQLite file that
    is corrupt or empty where data is expected (see check_sqlite_file)."""
    try:
        db = open_database(
            config.database.url,
            config.data_dir,
            "manager",
            threads=config.manager.db_threads,
            init=config.database.init,
        )
    except DatabaseRefused as exc:
        raise OSError(str(exc)) from None
    store = ManagerStore(db)
    try:
        store.migrate()
    except (DatabaseUnavailable, SchemaTooNew) as exc:
        db.close()
        raise OSError(f"manager database {db.target.describe()}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        db.close()
        raise OSError(
            f"manager database {db.target.describe()} cannot be used ({exc}): restore it from a backup, or move it away to start with an empty manager"
        ) from None
    except Exception:
        db.close()
        raise
    return db, store


class ManagerApp(Service):
    name = "manager"

    def __init__(self, config: ManagerConfig, index: StorageIndex | None = None) -> None:
        """`index` replaces the gRPC index client (tests plug in an in-memory one)."""
        self.config = config
        self._injected_index = index
        settings = config.manager
        self.db, self.store = open_manager_database(config)
        self.session_id = str(uuid.uuid4())
        self.runtime: Runtime | None = None
        self.index: StorageIndex | None = None
        self.registry = WorkerRegistry(self._worker_token, settings.heartbeat_timeout_s)
        self.selectors = SelectorContext(index=None, workers_of_path=self.registry.workers_of_path)
        policy = RetryPolicy(
            settings.max_attempts,
            settings.retry_backoff_initial_s,
            settings.retry_backoff_max_s,
            settings.redelivery_window_s,
            per_type={int(t): settings.retry_of(t) for t in TaskType if t.short in settings.retry},
        )
        self.tracker = CallTracker(self.store, policy)
        self.runner = JobRunner(self.tracker, self.registry, self.selectors, settings)
        self.selectors.can_run = self.runner.can_run
        self.sealing = Sealing(self.runner, None, self._worker_token, self.store)
        self.proving = Proving(self.runner, self.sealing, None)
        self.ready = asyncio.Event()
        # Unimplemented RPCs are filled in by registration(), so the class is complete at run time.
        self.operators = Operators(self.runner, self.store)
        self.servicer = ManagerServicer(
            self.runner, self.sealing, self.proving, self.store, self.operators, self.session_id, self.ready
        )  # type: ignore[abstract]
        self._loops: list[asyncio.Task[None]] = []
        self._index_problem: str | None = None
        log.info("manager database ready", extra={"database": self.db.target.describe()})

    def _worker_token(self) -> str:
        assert self.runtime is not None
        return self.runtime.token(Permission.ADMIN)

    def registrations(self) -> Sequence[Registration]:
        return [registration(manager_pb2, manager_pb2_grpc, "ManagerService", self.servicer)]

    async def start(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = self.config.manager
        if self._injected_index is not None:
            self.index = self._injected_index
        elif settings.index:
            self.index = GrpcStorageIndex(settings.index, runtime.token(Permission.WRITE))
        else:
            log.warning("no index configured (manager.index): selectors accept any worker that enables the task type")
        self.selectors.index = self.index
        self.sealing.index = self.index
        self.proving.index = self.index
        await self.operators.load()
        self.runner.started_at = time.monotonic()
        await self.runner.recover()
        metrics.register_collector(lambda: views.snapshot(self.runner))
        self.ready.set()
        self._loops = [
            asyncio.create_task(self._every(min(1.0, settings.heartbeat_interval_s / 2), self.runner.tick, "upkeep")),
            asyncio.create_task(self._every(settings.sched_pass_interval_s, self._full_pass, "full-pass")),
            asyncio.create_task(self._every(3600.0, self._purge, "retention")),
            asyncio.create_task(self._every(min(2.0, settings.heartbeat_interval_s), self._check_index, "readiness")),
        ]

    async def _full_pass(self) -> None:
        placed = self.runner.scheduler.full_pass()
        if placed:
            log.info("full scheduling pass placed requests the events had not", extra={"placed": placed})

    async def _check_index(self) -> None:
        """Readiness follows the index: without it nothing that needs locality is placed. When
        it answers again, the requests that waited for it are resolved at once."""
        if isinstance(self.index, GrpcStorageIndex) and self.runtime is not None:
            problem = await self.index.problem()
            await self.runtime.dependency("index", problem)
            if self._index_problem and problem is None:
                self.runner.selectors_changed("the index answers again")
            self._index_problem = problem

    async def _purge(self) -> None:
        settings = self.config.manager
        now = time.time()
        works, calls = await self.store.purge(now - settings.result_retention_s, now - settings.history_retention_s)
        if works or calls:
            log.info("retention: forgot old works and calls", extra={"works": works, "calls": calls})

    @staticmethod
    async def _every(seconds: float, step: object, name: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()  # type: ignore[operator]
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("manager loop step failed", extra={"loop": name})

    async def stop(self) -> None:
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.runner.close()
        await self.sealing.close()
        await self.registry.close()
        if self.index is not None:
            await self.index.close()
        self.db.close()
