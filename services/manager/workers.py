"""The worker registry: who is registered, with which session, when each was last heard from,
how to reach it, and the operator's state for it (enabled, cordoned, draining).

A worker is identified by its stable worker id; its session id changes with every process start,
which is how a restart is told apart from a reconnect. A worker that misses heartbeats for the
timeout is marked gone: it stays listed (disconnected) but its session is dropped, so its next
heartbeat answers NOT_FOUND and it registers again.

Plain values only: what a worker says about itself arrives decoded (`WorkerInfo`, built by
convert.py), and the channel to each worker is opened by the factory the app passes in
(worker_link.WorkerClient).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from services.common.resource_override import ResourceOverride
from services.manager.accounting import Hardware
from services.manager.resources import ResourceTable
from services.manager.tasks import TaskType


class WorkerConnection(Protocol):
    """The manager's channel to one worker (worker_link.WorkerClient), opened by the registry's
    `connect` for a worker's address and closed when the worker moves or restarts."""

    address: str

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Gpu:
    ordinal: int
    name: str


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker says about itself when it registers and in its heartbeats (common.proto's
    WorkerInfo, decoded by convert.worker_info), as far as the manager reads it. `wire` is the
    message as the worker sent it (serialized), which WorkerStats shows operators as is."""

    name: str = ""
    hostname: str = ""
    # Its storage paths' ids (those that have one), in the worker's order.
    path_ids: tuple[str, ...] = ()
    hardware: Hardware = Hardware(0, 0, 0, 0)
    gpus: tuple[Gpu, ...] = ()
    # The task types it runs, as sent (values this manager does not know included).
    task_types: tuple[int, ...] = ()
    # Its changes to the resource table (rows of task types this manager does not know left out).
    overrides: tuple[ResourceOverride, ...] = ()
    wire: bytes = b""


class Registration(Enum):
    NEW = "new"
    # Same worker id and session: a repeated registration (manager restarted, or a retry).
    SAME_SESSION = "same_session"
    # Same worker id, new session: the worker process restarted.
    RESTARTED = "restarted"


@dataclass(eq=False)
class WorkerHandle:
    worker_id: str
    session_id: str
    address: str
    info: WorkerInfo
    registered_at: float
    last_heartbeat: float
    connected: bool = True
    enabled: bool = True
    cordoned: bool = False
    draining: bool = False
    # The worker process reported it is stopping (SIGTERM): nothing new goes to it. Not an
    # operator state: the next process's registration clears it.
    shutting_down: bool = False
    client: WorkerConnection | None = None
    # When the heartbeat before the last one arrived (calls dispatched before it must show up
    # in the worker's running list).
    previous_heartbeat: float = 0.0
    # Calls the manager holds resources for that the worker's heartbeats did not list, and how
    # many heartbeats in a row.
    missing: dict[str, int] = field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return self.info.hostname or self.info.name

    @property
    def schedulable(self) -> bool:
        return self.connected and self.enabled and not self.cordoned and not self.draining and not self.shutting_down

    @property
    def path_ids(self) -> list[str]:
        return list(self.info.path_ids)


def hardware_of(info: WorkerInfo) -> Hardware:
    return info.hardware


def task_types_of(info: WorkerInfo) -> frozenset[TaskType]:
    return frozenset(TaskType(t) for t in info.task_types if t in TaskType._value2member_map_)


def table_of(info: WorkerInfo) -> ResourceTable:
    return ResourceTable(overrides=list(info.overrides))


class WorkerRegistry:
    def __init__(
        self,
        connect: Callable[[str], WorkerConnection],
        heartbeat_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.clock = clock
        self.workers: dict[str, WorkerHandle] = {}
        self._paths: dict[str, set[str]] = {}

    def get(self, worker_id: str) -> WorkerHandle | None:
        return self.workers.get(worker_id)

    def register(
        self, worker_id: str, session_id: str, address: str, info: WorkerInfo, enabled: bool, cordoned: bool
    ) -> tuple[WorkerHandle, Registration, WorkerConnection | None]:
        """Records a registration; returns the handle, what kind it was, and a client that the
        caller must close (the old one, when the address changed or the worker restarted)."""
        now = self.clock()
        handle = self.workers.get(worker_id)
        stale: WorkerConnection | None = None
        if handle is None:
            handle = WorkerHandle(worker_id, session_id, address, info, now, now, enabled=enabled, cordoned=cordoned)
            kind = Registration.NEW
            self.workers[worker_id] = handle
        else:
            # The same session after being marked gone is the same process: its calls may still run.
            kind = Registration.SAME_SESSION if handle.session_id == session_id else Registration.RESTARTED
            if kind is Registration.RESTARTED:
                handle.shutting_down = False
            # A new address, or a new process (its old channel may sit in reconnect back-off after
            # the old one died, failing the next calls fast): a fresh channel.
            if (handle.address != address or kind is Registration.RESTARTED) and handle.client is not None:
                stale, handle.client = handle.client, None
            handle.session_id = session_id
            handle.address = address
            handle.registered_at = now
            handle.last_heartbeat = now
            handle.previous_heartbeat = 0.0
            handle.connected = True
            handle.missing.clear()
            self._unindex(handle)
            handle.info = info
        if handle.client is None:
            handle.client = self._connect(address)
        self._index(handle)
        return handle, kind, stale

    def heartbeat(self, worker_id: str, session_id: str, info: WorkerInfo | None) -> WorkerHandle | None:
        handle = self.workers.get(worker_id)
        if handle is None or not handle.connected or handle.session_id != session_id:
            return None
        handle.previous_heartbeat = handle.last_heartbeat
        handle.last_heartbeat = self.clock()
        if info is not None:
            self._unindex(handle)
            handle.info = info
            self._index(handle)
        return handle

    def expired(self) -> list[WorkerHandle]:
        """Connected workers whose last heartbeat is older than the timeout."""
        limit = self.clock() - self.heartbeat_timeout_s
        return [h for h in self.workers.values() if h.connected and h.last_heartbeat < limit]

    def mark_gone(self, handle: WorkerHandle) -> None:
        handle.connected = False
        handle.missing.clear()
        self._unindex(handle)

    def _index(self, handle: WorkerHandle) -> None:
        for path_id in handle.path_ids:
            self._paths.setdefault(path_id, set()).add(handle.worker_id)

    def _unindex(self, handle: WorkerHandle) -> None:
        for path_id in handle.path_ids:
            owners = self._paths.get(path_id)
            if owners is not None:
                owners.discard(handle.worker_id)
                if not owners:
                    del self._paths[path_id]

    def workers_of_path(self, path_id: str) -> Iterable[str]:
        return sorted(self._paths.get(path_id, ()))

    def by_address(self, address: str) -> WorkerHandle | None:
        for handle in self.workers.values():
            if handle.address == address and handle.connected:
                return handle
        return None

    async def close(self) -> None:
        for handle in self.workers.values():
            if handle.client is not None:
                await handle.client.close()
                handle.client = None
