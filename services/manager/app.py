"""The manager service process: database, call tracker, scheduler, worker registry and the
ManagerService servicer on the common bootstrap, plus the upkeep loops (heartbeat timeouts,
orphaned and overdue calls, selector refresh, full scheduling passes, retention)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sqlite3
import time
import uuid
from collections.abc import Sequence

import grpc

from services.common.auth import Permission
from services.common.db import Database, DatabaseRefused, DatabaseUnavailable, SchemaTooNew, open_database
from services.common.proto.sectorstorage.v1 import manager_pb2, manager_pb2_grpc
from services.common.server import Registration, Runtime, Service, registration
from services.common.startup import StartupError
from services.manager import convert, metrics, verifier, views
from services.manager.calltracker import CallTracker, RetryPolicy
from services.manager.config import ManagerConfig
from services.manager.forward import LeaderForwarder
from services.manager.index_client import GrpcStorageIndex, StorageIndex
from services.manager.jobs import JobRunner
from services.manager.leadership import (
    Campaign,
    FileOwnership,
    HeldElsewhere,
    Leadership,
    Lease,
    NotLeader,
    db_session_name,
    holder_name,
)
from services.manager.operators import Operators
from services.manager.post import Proving
from services.manager.sealing import Sealing
from services.manager.selectors import SelectorContext
from services.manager.servicer import ManagerServicer
from services.manager.store import ManagerStore
from services.manager.tasks import TaskType
from services.manager.worker_link import CODEC, WorkerClient
from services.manager.workers import WorkerRegistry

log = logging.getLogger(__name__)


def open_manager_database(config: ManagerConfig, session: str = "") -> tuple[Database, ManagerStore]:
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
            session_name=db_session_name(session) if session else None,
        )
    except DatabaseRefused as exc:
        raise OSError(str(exc)) from None
    store = ManagerStore(db, CODEC)
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
        self.session_id = str(uuid.uuid4())
        self.db, self.store = open_manager_database(config, self.session_id[:8])
        self.runtime: Runtime | None = None
        self.index: StorageIndex | None = None
        self.registry = WorkerRegistry(self._connect_worker, settings.heartbeat_timeout_s)
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
        self.proving = Proving(self.runner, self.sealing, None, self.store, verifier=verifier.for_config(config.proofs))
        self.ready = asyncio.Event()
        # Unimplemented RPCs are filled in by registration(), so the class is complete at run time.
        self.operators = Operators(self.runner, self.store)
        self.servicer = ManagerServicer(
            self.runner,
            self.sealing,
            self.proving,
            self.store,
            self.operators,
            self.session_id,
            self.ready,
            proofs_backend=config.proofs.backend,
        )  # type: ignore[abstract]
        self._loops: list[asyncio.Task[None]] = []
        # A standby forwards the API to the leader (forward.py); the holder is set at start.
        self.forwarder = LeaderForwarder("", self.leading, self._leader, time.time)
        self.leadership: Leadership | None = None
        self.ownership: FileOwnership | None = None
        self.campaign: Campaign | None = None
        self._campaign_task: asyncio.Task[str] | None = None
        self._database_watch: asyncio.Task[None] | None = None
        # Why this manager stopped leading, once it did.
        self.deposed: str | None = None
        self._index_problem: str | None = None
        log.info("manager database ready", extra={"database": self.db.target.describe()})

    def _worker_token(self) -> str:
        assert self.runtime is not None
        return self.runtime.token(Permission.ADMIN)

    def _connect_worker(self, address: str) -> WorkerClient:
        return WorkerClient(address, self._worker_token())

    def registrations(self) -> Sequence[Registration]:
        return [registration(manager_pb2, manager_pb2_grpc, "ManagerService", self.servicer)]

    def interceptors(self) -> Sequence[grpc.aio.ServerInterceptor]:
        return [self.forwarder]

    def leading(self) -> bool:
        """This manager holds the lease: its API answers itself (calls made while it still
        recovers wait for it, as on any start), else they are forwarded to the leader."""
        return self.leadership is not None and self.leadership.epoch is not None and self.deposed is None

    async def _leader(self) -> Lease:
        assert self.leadership is not None
        return await self.leadership.current()

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
        # Lead before anything else: only the leader recovers, schedules and writes.
        lease_s = settings.leader_lease_s
        if self.db.target.path is not None:  # SQLite: one manager per file, checked by the kernel
            try:
                self.ownership = FileOwnership(self.db.target.path)
            except HeldElsewhere as exc:
                raise StartupError(str(exc)) from None
        self.leadership = Leadership(
            self.db, self._holder(runtime), runtime.address, lease_s, exclusive=self.ownership is not None
        )
        self.forwarder.holder = self.leadership.holder
        leadership = self.leadership
        self.runner.leader_epoch = lambda: leadership.epoch or 0
        self.servicer.managers_view = self._managers_view
        self.campaign = Campaign(
            self.leadership, self._lead, self._deposed, renew_every_s=lease_s / 3, poll_every_s=lease_s / 6
        )
        try:
            lease = await self.leadership.try_acquire()
        except HeldElsewhere as exc:
            raise StartupError(str(exc)) from None
        self.forwarder.decided.set()
        if lease is None:
            current = await self.leadership.current()
            log.info(
                "standing by: the API is forwarded to the leader",
                extra={"leader": current.holder, "leader_address": current.address},
            )
        self._campaign_task = asyncio.create_task(self.campaign.run())
        self._campaign_task.add_done_callback(self._campaign_ended)
        self._database_watch = asyncio.create_task(self._every(2.0, self._check_database, "database"))

    def _campaign_ended(self, task: asyncio.Task[str]) -> None:
        """A campaign only ends when deposed (handled) or cancelled (stopping); one that failed
        leaves a manager that neither leads nor can take over, so it stops (and restarts clean)."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error("the leadership campaign failed: stopping", exc_info=error)
        if self.leadership is not None:
            self.leadership.epoch = None
        self.deposed = self.deposed or f"the leadership campaign failed: {error}"
        if self.runtime is not None:
            self.runtime.stopping.set()

    def _holder(self, runtime: Runtime) -> str:
        """This manager's name in the lease: host, address and session (unique per process)."""
        return holder_name(socket.gethostname(), runtime.address, self.session_id[:8])

    async def _lead(self, lease: Lease) -> None:
        """Becomes the leader: recovers the tracker's state and starts scheduling."""
        assert self.runtime is not None
        settings = self.config.manager
        metrics.LEADER.set(1)
        metrics.LEADER_EPOCH.set(lease.epoch)
        metrics.LEADER_SINCE.set(lease.acquired_at)
        metrics.FAILOVERS.set(lease.failovers)
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

    async def _managers_view(self) -> manager_pb2.ManagersResponse:
        assert self.leadership is not None and self.runtime is not None
        lease = await self.leadership.current()
        return convert.managers_reply(lease, self.leadership.holder, self.runtime.address, self.leading(), time.time())

    async def _check_database(self) -> None:
        """Readiness follows the database, on the leader and on a standby alike (a standby that
        cannot read the lease cannot find the leader to forward to)."""
        if self.leadership is None or self.runtime is None:
            return
        try:
            await self.leadership.current()
            problem = None
        except DatabaseUnavailable as exc:
            problem = f"the manager's database does not answer: {exc}"
        await self.runtime.dependency("database", problem)

    async def _deposed(self, reason: str) -> None:
        """No longer the leader: stop at once (the process exits and comes back as a standby;
        nothing it would still do could be recorded anyway, its writes are fenced)."""
        metrics.LEADER.set(0)
        log.error("this manager no longer leads: stopping", extra={"reason": reason})
        self.deposed = reason
        if self.runtime is not None:
            await self.runtime.dependency("leadership", f"deposed: {reason}")
            self.runtime.stopping.set()

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
        proofs = await self.store.purge_vanilla_proofs(now - settings.post_proof_retention_s)
        if proofs:
            log.info("retention: forgot old PoSt vanilla proofs", extra={"proofs": proofs})

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

    async def drain(self) -> None:
        """SIGTERM: a leader hands its lead over now, not after its calls in flight end. While
        the server drains it accepts no new connection, so workers could not reach it: a leader
        that went on leading would take their silence for death and re-queue what they run
        (which the next leader would then run a second time), and no sector would be placed
        until it exited. So it stops campaigning, placing and re-queuing, gives the lease up
        (a standby takes over within a poll), and cuts its waiting callers with UNAVAILABLE:
        sent again, to any manager, a request attaches to the same work. A standby only stops
        campaigning."""
        campaign = self._campaign_task
        if campaign is not None:
            campaign.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):  # a failure was logged when it ended
                await campaign
        if not self.leading():
            return
        for task in self._loops:
            task.cancel()
        self.runner.stand_down(
            lambda: NotLeader(
                "this manager is stopping and handed the lead over: send the same request again (to any "
                "manager); it attaches to the same work"
            )
        )
        assert self.leadership is not None
        epoch = self.leadership.epoch
        try:
            await self.leadership.release()
        except DatabaseUnavailable as exc:
            log.warning("could not hand the lease over: it expires by itself", extra={"error": str(exc)})
        metrics.LEADER.set(0)
        log.info("stepped down: the lease is handed over", extra={"epoch": epoch})

    async def stop(self) -> None:
        for background in (self._campaign_task, self._database_watch):
            if background is not None:
                background.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await background
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.forwarder.close()
        self.proving.verifier.close()  # a PoSt SNARK still running in a child process is killed
        await self.runner.close()
        await self.sealing.close()
        await self.registry.close()
        if self.index is not None:
            await self.index.close()
        if self.leadership is not None and self.deposed is None:
            # A clean stop hands the lease over at once instead of letting it expire.
            with contextlib.suppress(DatabaseUnavailable):
                await self.leadership.release()
        self.db.close()
        if self.ownership is not None:
            self.ownership.close()
