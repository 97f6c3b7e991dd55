"""The worker service process: the WorkerService servicer on the common bootstrap, and the
link that keeps it registered with the manager."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

import rust_core
from services.common.auth import Permission
from services.common.backoff import Backoff
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.common.server import Registration, Runtime, Service, registration
from services.worker.config import WorkerConfig
from services.worker.identity import WorkerIdentity, load_or_create_worker_id
from services.worker.manager_link import ManagerLink
from services.worker.resources import Resources, detect_resources

log = logging.getLogger(__name__)


def worker_info_message(identity: WorkerIdentity, resources: Resources) -> common_pb2.WorkerInfo:
    return common_pb2.WorkerInfo(
        worker_id=identity.worker_id,
        name=identity.name,
        hostname=identity.hostname,
        resources=common_pb2.WorkerResources(
            mem_physical=resources.mem_physical,
            mem_swap=resources.mem_swap,
            mem_reserved=resources.mem_reserved,
            cpus=resources.cpus,
            gpus=[common_pb2.GpuInfo(name=g.name, ordinal=g.ordinal, memory=g.memory) for g in resources.gpus],
        ),
        version=rust_core.__version__,
    )


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """Identity RPCs; tasks and file serving answer UNIMPLEMENTED until the worker issue lands."""

    def __init__(self, identity: WorkerIdentity, resources: Resources) -> None:
        self.identity = identity
        self.resources = resources

    async def Info(self, request: worker_pb2.InfoRequest, context: grpc.aio.ServicerContext[Any, Any]) -> worker_pb2.InfoResponse:
        return worker_pb2.InfoResponse(info=worker_info_message(self.identity, self.resources))

    async def Session(self, request: worker_pb2.SessionRequest, context: grpc.aio.ServicerContext[Any, Any]) -> worker_pb2.SessionResponse:
        started = Timestamp()
        started.FromNanoseconds(int(self.identity.started_at * 1e9))
        return worker_pb2.SessionResponse(session_id=self.identity.session_id, started_at=started, worker_id=self.identity.worker_id)


class WorkerApp(Service):
    name = "worker"

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        worker_id = load_or_create_worker_id(config.data_dir)
        self.identity = WorkerIdentity(worker_id=worker_id, name=config.worker.name)
        if not self.identity.name:
            self.identity = WorkerIdentity(worker_id=worker_id, name=self.identity.hostname)
        self.resources = detect_resources()
        # Unimplemented RPCs are filled in by registration(), so the class is complete at run time.
        self.servicer = WorkerServicer(self.identity, self.resources)  # type: ignore[abstract]
        self.link: ManagerLink | None = None
        self._link_task: asyncio.Task[None] | None = None

    def registrations(self) -> Sequence[Registration]:
        return [registration(worker_pb2, worker_pb2_grpc, "WorkerService", self.servicer)]

    async def start(self, runtime: Runtime) -> None:
        section = self.config.worker
        if not section.manager:
            log.warning("no manager configured (worker.manager): serving files and RPCs without registering")
            return
        self.link = ManagerLink(
            manager=section.manager,
            token=runtime.token(Permission.WRITE),
            address=section.advertise or runtime.address,
            session_id=self.identity.session_id,
            worker_info=lambda: worker_info_message(self.identity, self.resources),
            backoff=Backoff(section.register_retry_initial_s, section.register_retry_max_s),
            heartbeat_interval_s=section.heartbeat_interval_s,
        )
        self._link_task = asyncio.create_task(self.link.run(runtime.stopping), name="manager-link")

    async def stop(self) -> None:
        if self._link_task is not None:
            self._link_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._link_task
