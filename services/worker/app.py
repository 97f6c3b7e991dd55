"""The worker process: builds its parts (parts.py) and serves WorkerService (servicer.py) on the
common bootstrap, with the background loops (storage heartbeat, manager link, result sender,
bulk side channel) and the SIGTERM drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Sequence

import grpc

from services.common.auth import Permission
from services.common.backoff import Backoff
from services.common.client import aio_channel
from services.common.config import ProofsBackend, parse_host_port
from services.common.proto.sectorstorage.v1 import worker_pb2, worker_pb2_grpc
from services.common.server import Registration, Runtime, Service, format_address, registration
from services.common.startup import StartupError
from services.worker import bulk, faults, proofs, tasks
from services.worker.calls import CallId, CallType
from services.worker.callstore import CallStore
from services.worker.config import WorkerConfig
from services.worker.drain import drain_for_stop
from services.worker.failures import CallFailed
from services.worker.identity import WorkerIdentity, load_or_create_worker_id
from services.worker.index_client import IndexClient
from services.worker.local_store import LocalStore
from services.worker.manager_link import ManagerLink
from services.worker.managers import ManagerAddresses
from services.worker.messages import RESULT_CODEC
from services.worker.parts import Parts
from services.worker.paths import STORAGE_FILE, StorageList
from services.worker.pc1_batch import Pc1Batcher, capacity_warnings
from services.worker.peers import Peers
from services.worker.remote_store import RemoteStore
from services.worker.resources import (
    ALL_TASK_TYPES,
    EnabledTaskTypes,
    concurrency_caps,
    detect_resources,
    parse_overrides,
    parse_task_type,
)
from services.worker.returns import ReturnSender
from services.worker.runner import CallRunner
from services.worker.sectors import SectorId
from services.worker.servicer import WorkerServicer, add_worker_service
from services.worker.storage_control import StorageControl

log = logging.getLogger(__name__)


class WorkerApp(Service):
    name = "worker"

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        section = config.worker
        worker_id = load_or_create_worker_id(config.data_dir)
        identity = WorkerIdentity(worker_id=worker_id, name=section.name)
        if not identity.name:
            identity = WorkerIdentity(worker_id=worker_id, name=identity.hostname)
        overrides = parse_overrides({**section.resources, **os.environ})
        enabled = [parse_task_type(t) for t in section.task_types] or list(ALL_TASK_TYPES)
        local = LocalStore(StorageList.load(config.data_dir / STORAGE_FILE))
        local.open_configured()
        calls = CallStore(config.data_dir / "calls.db", RESULT_CODEC)
        serve_fault, task_fault = faults.load()
        self.parts = Parts(
            config=config,
            identity=identity,
            resources=detect_resources(section.no_swap, section.cpus, section.memory),
            overrides=overrides,
            task_types=EnabledTaskTypes(enabled),
            local=local,
            calls=calls,
            runner=CallRunner(
                calls,
                lambda: self._wake_sender(),
                worker_id,
                section.max_tasks,
                concurrency_caps(overrides),
                task_fault,
            ),
            fault=serve_fault,
            task_fault=task_fault,
        )
        if section.pc1_batch_size > 1 and config.proofs.backend is not ProofsBackend.EMULATED:
            raise StartupError(
                f"worker.pc1_batch_size / SECTORSTORAGE_WORKER_PC1_BATCH_SIZE = {section.pc1_batch_size}: PC1 batches are the emulated backend's only, not proofs.backend = {config.proofs.backend.value}; set it to 1"
            )
        self.parts.proofs = proofs.for_config(config.proofs)
        if section.pc1_batch_size > 1:
            self.parts.pc1_batcher = Pc1Batcher(section.pc1_batch_size, section.pc1_batch_wait_ms / 1000)
            for why in capacity_warnings(section.pc1_batch_size, section.max_tasks, concurrency_caps(overrides)):
                log.warning("PC1 batches cannot fill on this worker", extra={"why": why})
        restarted = self.parts.runner.recover()
        if restarted:
            log.warning(
                "calls interrupted by the last stop will be returned as WORKER_RESTARTED", extra={"calls": restarted}
            )
        for miner, number, call_type in self.parts.runner.interrupted:
            if call_type == CallType.SEAL_PRE_COMMIT_1:
                removed = tasks.discard_interrupted_pre_commit1(local, SectorId(miner, number))
                if removed:
                    log.warning(
                        "removed the half-written outputs of an interrupted PC1",
                        extra={"files": [str(f) for f in removed]},
                    )
        # ReadSectorFile/ReadSectorDir are served by their wire versions (add_worker_service).
        self.servicer = WorkerServicer(self.parts)  # type: ignore[abstract]
        self.link: ManagerLink | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._redeclare: asyncio.Task[None] | None = None
        self._channels: list[grpc.aio.Channel] = []
        self._abandon_threads = False
        # The background loops (manager link, result sender, storage heartbeat) outlive the
        # SIGTERM: they run through the drain and end in stop().
        self._quit = asyncio.Event()

    @property
    def identity(self) -> WorkerIdentity:
        return self.parts.identity

    def _wake_sender(self) -> None:
        if self.parts.sender is not None:
            self.parts.sender.wake()

    def registrations(self) -> Sequence[Registration]:
        reg = registration(worker_pb2, worker_pb2_grpc, "WorkerService", self.servicer)
        return [Registration(reg.servicer, add_worker_service, reg.descriptor)]

    async def start(self, runtime: Runtime) -> None:
        section = self.config.worker
        p = self.parts
        address = section.advertise or runtime.address
        # The side channel is plain TCP: under TLS (served or used) sector bytes stay on the TLS
        # gRPC streams, whatever bulk_transfer says.
        tls = self.config.tls
        bulk_on = section.bulk_transfer and not (tls.cert_file or tls.ca_file)
        if section.bulk_transfer and not bulk_on:
            log.info("bulk side channel off: TLS is configured and the channel is plaintext")
        if bulk_on:
            self._start_bulk(address)
        p.peers = Peers(runtime.token(Permission.ADMIN), bulk=bulk_on, bulk_streams=section.bulk_streams)
        if section.index:
            # ADMIN: detaching a path (StorageDetach) needs it; everything else WRITE.
            channel = aio_channel(section.index, runtime.token(Permission.ADMIN))
            self._channels.append(channel)
            p.index = IndexClient(channel, owner_prefix=f"worker:{p.identity.worker_id}", address=section.index)
            p.remote = RemoteStore(
                p.local,
                p.index,
                p.peers,
                section.parallel_fetch_limit,
                owner=p.identity.worker_id,
                check_content=p.proofs.checks_fetched_content,
            )
        else:
            log.warning("no index configured (worker.index): serving, but storage and tasks are unavailable")
        p.storage = StorageControl(p.local, p.index, [address])
        self._loops.append(
            asyncio.create_task(
                p.storage.run(self._quit, section.storage_heartbeat_s, runtime.dependency), name="storage-heartbeat"
            )
        )
        if not section.manager:
            log.warning("no manager configured (worker.manager): serving files and RPCs without registering")
            return
        backoff = Backoff(section.register_retry_initial_s, section.register_retry_max_s)
        managers = ManagerAddresses.parse(section.manager)
        p.sender = ReturnSender(
            p.calls, p.identity.worker_id, managers, runtime.token(Permission.WRITE), Backoff(0.2, 5.0)
        )
        self._loops.append(asyncio.create_task(p.sender.run(self._quit), name="return-sender"))

        async def manager_restarted() -> None:
            # In the background, until the index takes it: the index may be down at the same
            # moment (both restarted), and registration must not wait for it or fail with it.
            # One at a time: a manager restarting again while the index is still down finds the
            # retrying one (it announces the paths as they are then) instead of starting another.
            if p.storage is not None and p.index is not None and (self._redeclare is None or self._redeclare.done()):
                self._redeclare = asyncio.create_task(self._redeclare_until_done(), name="redeclare")
                self._loops.append(self._redeclare)

        def unknown_calls(calls: list[CallId]) -> None:
            for call in calls:
                p.runner.abort(call, "the manager does not know this call")

        self.link = ManagerLink(
            managers=managers,
            token=runtime.token(Permission.WRITE),
            address=address,
            session_id=p.identity.session_id,
            worker_info=self.servicer.info,
            backoff=backoff,
            heartbeat_interval_s=section.heartbeat_interval_s,
            info_version=p.info_version,
            running_calls=p.runner.running_call_ids,
            on_unknown_calls=unknown_calls,
            on_manager_restart=manager_restarted,
            shutting_down=lambda: p.runner.shutting_down,
            on_dependency=runtime.dependency,
            proofs_backend=self.config.proofs.backend.value,
        )
        p.link = self.link
        self._loops.append(asyncio.create_task(self.link.run(self._quit), name="manager-link"))

    def _start_bulk(self, advertise: str) -> None:
        """The side channel listens on worker.bulk_listen (default: the gRPC listen host, a free
        port) and is advertised as worker.bulk_advertise (default: the advertised host)."""
        section = self.config.worker
        host, port = (
            parse_host_port(section.bulk_listen) if section.bulk_listen else (parse_host_port(self.config.listen)[0], 0)
        )
        server = bulk.BulkServer(bulk.TicketBook(), self.parts.fault, host, port)
        server.start()
        self.parts.bulk_server = server
        self.parts.bulk_address = section.bulk_advertise or format_address(parse_host_port(advertise)[0], server.port)
        log.info(
            "bulk side channel listening",
            extra={"address": format_address(host, server.port), "advertised": self.parts.bulk_address},
        )

    async def drain(self) -> None:
        """SIGTERM: refuse new tasks, tell the manager, let running ones end, return results."""
        p = self.parts
        link = self.link
        if link is None or p.sender is None:
            p.runner.shutting_down = True
            return
        await drain_for_stop(
            p.runner,
            announce=link.wake,
            undelivered=lambda: len(p.calls.pending()),
            timeout_s=self.config.worker.drain_timeout_s,
            deliver_timeout_s=max(1.0, self.config.shutdown_grace),
            retry_deliveries=p.sender.retry_now,
            last_delivery_failure=lambda: p.sender.last_failure if p.sender is not None else 0.0,
        )

    async def _redeclare_until_done(self) -> None:
        """Announces the paths and their sector files to the index again (after a manager
        restart), retrying with back-off while the index cannot be reached."""
        storage = self.parts.storage
        assert storage is not None
        backoff = Backoff(0.5, 10.0)
        while not self._quit.is_set():
            try:
                await storage.redeclare("", drop_missing=False)
                return
            except CallFailed as exc:
                delay = backoff.next_delay()
                log.warning(
                    "could not announce the storage paths again after the manager restarted; retrying",
                    extra={"error": exc.details, "retry_in_s": round(delay, 2)},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._quit.wait(), delay)

    async def stop(self) -> None:
        self._quit.set()
        finished = await self.parts.runner.shutdown(max(1.0, self.config.shutdown_grace))
        self._abandon_threads = not finished
        self.parts.proofs.close()
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.parts.peers is not None:
            await self.parts.peers.close()
        if self.parts.bulk_server is not None:
            await asyncio.to_thread(self.parts.bulk_server.stop)
        for channel in self._channels:
            await channel.close()
        self.parts.calls.close()
        if self._abandon_threads:
            # A rust_core call cannot be interrupted and Python would wait for its thread at
            # exit (hours for a 32 GiB PC1). Its call stays `running` in the call store and is
            # returned as WORKER_RESTARTED by the next process, so nothing is lost by leaving now.
            log.warning("exiting with rust_core calls still running; they will be reported as WORKER_RESTARTED")
            logging.shutdown()
            os._exit(0)
