"""The worker's parts, wired together once per process (app.py builds them): stores, call
store, runner, links to the index and the manager. The servicer and the background loops reach
each other only through this."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from services.common import errors
from services.common.resource_override import ResourceOverride
from services.worker import bulk, tasks
from services.worker.callstore import CallStore
from services.worker.config import WorkerConfig
from services.worker.faults import ServeFault, TaskFault
from services.worker.identity import WorkerIdentity
from services.worker.index_client import IndexClient
from services.worker.local_store import FsStat, LocalPath, LocalStore
from services.worker.manager_link import ManagerLink
from services.worker.pc1_batch import Pc1Batcher
from services.worker.peers import Peers
from services.worker.proofs import EmulatedProofs, SealingProofs
from services.worker.remote_store import RemoteStore
from services.worker.resources import EnabledTaskTypes, Resources
from services.worker.returns import ReturnSender
from services.worker.runner import CallRunner
from services.worker.storage_control import StorageControl

log = logging.getLogger(__name__)


class Unavailable(errors.Unavailable):
    """UNAVAILABLE: a dependency (the index) is not configured or not up yet."""


class Disabled(errors.FailedPrecondition):
    """FAILED_PRECONDITION: the task type is disabled or the worker is shutting down."""


@dataclass
class Parts:
    """The worker's running parts; the ones that need the bound address and tokens are made
    in WorkerApp.start()."""

    config: WorkerConfig
    identity: WorkerIdentity
    resources: Resources
    overrides: list[ResourceOverride]
    task_types: EnabledTaskTypes
    local: LocalStore
    calls: CallStore
    runner: CallRunner
    fault: ServeFault
    task_fault: TaskFault
    index: IndexClient | None = None
    peers: Peers | None = None
    remote: RemoteStore | None = None
    storage: StorageControl | None = None
    sender: ReturnSender | None = None
    # The bulk side channel and the HOST:PORT peers reach it at; None/"" when off.
    bulk_server: bulk.BulkServer | None = None
    bulk_address: str = ""
    # PC1 batching ([worker] pc1_batch_size > 1); None: each PC1 runs alone (the default).
    pc1_batcher: Pc1Batcher | None = None
    # The link to the manager (app.py); None without a manager.
    link: ManagerLink | None = None
    # The proofs backend the tasks call ([proofs] backend; proofs.py).
    proofs: SealingProofs = field(default_factory=EmulatedProofs)

    def env(self) -> tasks.TaskEnv:
        if self.index is None or self.remote is None or self.peers is None:
            raise Unavailable("no index configured (worker.index): this worker cannot run tasks")
        section = self.config.worker
        return tasks.TaskEnv(
            self.local,
            self.remote,
            self.index,
            self.peers,
            section.compute_backend,
            section.lock_ttl_s,
            self.pc1_batcher,
            self.proofs,
            None if self.link is None else self.link.confirm,
        )

    def storage_control(self) -> StorageControl:
        if self.storage is None or self.storage.index is None:
            raise Unavailable("no index configured (worker.index): storage paths cannot be attached")
        return self.storage

    def info_version(self) -> int:
        return self.task_types.version + (self.storage.version if self.storage else 0)

    async def path_stats(self) -> list[tuple[LocalPath, FsStat]]:
        """Each attached path and how full it is now (none when storage is not configured: the
        worker info then lists no paths)."""
        if self.storage is None:
            return []
        return [(path, await self.storage.stat(path)) for path in list(self.local.paths.values())]
