"""The tests' one launcher for real service processes, built on services/devfleet's
ServiceProcess (which `make demo` uses too), every process signed with the test fleet key:

- `start_service` (a fixture): any service as a process, stopped (killed if need be) at teardown;
- `start_index`: an index on SQLite or PostgreSQL, with a stub (tests/integration/index);
- `start_worker`: a worker against a real index and, optionally, the test's own ManagerEndpoint
  (tests/integration/worker);
- `Fleet` / `make_fleet` / the `fleet` fixture: a whole fleet (index, manager, workers) on fixed
  loopback ports, so that any of them can be killed and started again on the same address and
  data dir as an operator's service manager would (the manager end-to-end, fleet and fault tests).
"""

from __future__ import annotations

import calendar
import json
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import (
    common_pb2,
    manager_pb2,
    manager_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from services.devfleet import LocalFleet, ServiceProcess
from tests.support.auth import TEST_SECRET, token
from tests.support.index import Index
from tests.support.worker import ManagerEndpoint, WorkerHandle

StartService = Callable[..., ServiceProcess]
FAST_WORKER_ENV = {
    "SECTORSTORAGE_WORKER_STORAGE_HEARTBEAT_S": "1",
    "SECTORSTORAGE_WORKER_HEARTBEAT_INTERVAL_S": "1",
    "SECTORSTORAGE_WORKER_REGISTER_RETRY_INITIAL_S": "0.1",
    "SECTORSTORAGE_WORKER_REGISTER_RETRY_MAX_S": "0.5",
    # A test's teardown SIGTERMs workers that may still run tasks: drain briefly.
    "SECTORSTORAGE_WORKER_DRAIN_TIMEOUT_S": "5",
}
MANAGER_ENV = {
    "SECTORSTORAGE_MANAGER_HEARTBEAT_INTERVAL_S": "0.5",
    "SECTORSTORAGE_MANAGER_HEARTBEAT_TIMEOUT_S": "3",
    "SECTORSTORAGE_MANAGER_STARTUP_GRACE_S": "10",
    "SECTORSTORAGE_MANAGER_SELECTOR_REFRESH_S": "1",
    "SECTORSTORAGE_MANAGER_SCHED_PASS_INTERVAL_S": "1",
    "SECTORSTORAGE_MANAGER_RETRY_BACKOFF_INITIAL_S": "0.2",
    "SECTORSTORAGE_MANAGER_RETRY_BACKOFF_MAX_S": "1",
}


def free_port() -> int:
    """A loopback port free right now (for services that must come back on the same address)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service(
    name: str, *args: str, data_dir: Path, env: dict[str, str] | None = None, wrapper: Sequence[str] = ()
) -> ServiceProcess:
    """Service `name` as a process (not started yet) with the test fleet key: every test process
    is made here, so they all accept the tokens of tests/support/auth.py."""
    return ServiceProcess(
        name=name, data_dir=data_dir, args=args, env=dict(env or {}), secret=TEST_SECRET, wrapper=wrapper
    )


def service_group(root: Path) -> LocalFleet:
    """Services started under `root` with the test fleet key and no extra environment, stopped
    together by `close()`: for fixtures of a wider scope than a test (a module's fleet)."""
    return LocalFleet(root, secret=TEST_SECRET, env={})


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """Starts real service processes; all are stopped (killed if need be) at teardown."""
    fleet = service_group(tmp_path)

    def start(
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        wrapper: Sequence[str] = (),
    ) -> ServiceProcess:
        label = f"{name}-{len(fleet.processes)}"
        return fleet.start(name, label, *args, env=env, data_dir=data_dir, wrapper=wrapper)

    yield start
    fleet.close(timeout=10)


def start_index(data_dir: Path, db_url: str = "", backend: str = "sqlite", env: dict[str, str] | None = None) -> Index:
    """An index on SQLite in `data_dir` (db_url '') or on the PostgreSQL database `db_url`; the
    caller stops it (the index tests share one per module and backend)."""
    full_env = {"SECTORSTORAGE_DATABASE_URL": db_url, **(env or {})}
    proc = service("index", data_dir=data_dir, env=full_env).start(timeout=60)
    return Index(proc, backend, db_url)


def start_worker(
    start_service: StartService,
    index: ServiceProcess,
    manager: ManagerEndpoint | None,
    *,
    env: dict[str, str] | None = None,
    data_dir: Path | None = None,
) -> WorkerHandle:
    """A worker against a real index and, when given, the test's ManagerEndpoint (which then sees
    its registration, heartbeats and every Return<Method>)."""
    args = ["--index", index.address]
    if manager is not None:
        args += ["--manager", manager.address]
    proc = start_service("worker", *args, env={**FAST_WORKER_ENV, **(env or {})}, data_dir=data_dir)
    channel = sync_channel(proc.address, token())
    return WorkerHandle(proc, channel, worker_pb2_grpc.WorkerServiceStub(channel), manager)


@dataclass
class WorkerSpec:
    name: str
    cpus: int
    task_types: list[str] = field(default_factory=list)
    resources: dict[str, int] = field(default_factory=dict)
    # Extra environment (test fault hooks, timeouts).
    env: dict[str, str] = field(default_factory=dict)
    # The storage path to attach; default: tmp/store-<name>, for sealing and long-term storage.
    store: Path | None = None
    can_seal: bool = True
    can_store: bool = True


@dataclass
class Fleet:
    start_service: StartService
    tmp: Path
    index: ServiceProcess
    manager: ServiceProcess
    port: int
    workers: dict[str, ServiceProcess] = field(default_factory=dict)
    worker_ids: dict[str, str] = field(default_factory=dict)
    cpus: dict[str, int] = field(default_factory=dict)
    specs: dict[str, WorkerSpec] = field(default_factory=dict)
    worker_ports: dict[str, int] = field(default_factory=dict)
    manager_env: dict[str, str] = field(default_factory=lambda: dict(MANAGER_ENV))
    index_port: int = 0
    # Every worker process started, killed ones included: (name, process).
    worker_runs: list[tuple[str, ServiceProcess]] = field(default_factory=list)
    # Per role ("index", "manager" or a worker name): the address it listens on (default
    # loopback) and a command it runs under (e.g. `ip netns exec NS` for the multi-host test).
    hosts: dict[str, str] = field(default_factory=dict)
    wrappers: dict[str, list[str]] = field(default_factory=dict)
    # Further managers on the same database (failover tests): (port, process).
    standbys: list[tuple[int, ServiceProcess]] = field(default_factory=list)
    _channel: grpc.Channel | None = None

    @property
    def address(self) -> str:
        return f"{self.host('manager')}:{self.port}"

    def host(self, role: str) -> str:
        return self.hosts.get(role, "127.0.0.1")

    def stub(self) -> manager_pb2_grpc.ManagerServiceStub:
        if self._channel is None:
            self._channel = sync_channel(self.address, token())
        return manager_pb2_grpc.ManagerServiceStub(self._channel)

    def start_index(self) -> ServiceProcess:
        """(Re)starts the index on its fixed port and data dir."""
        if not self.index_port:
            self.index_port = free_port()
        self.index = self.start_service(
            "index",
            "--listen",
            f"{self.host('index')}:{self.index_port}",
            data_dir=self.tmp / "index",
            wrapper=self.wrappers.get("index", []),
        )
        return self.index

    def start_manager(self) -> ServiceProcess:
        self.manager = self.start_service(
            "manager",
            "--listen",
            self.address,
            "--index",
            self.index.address,
            env=self.manager_env,
            data_dir=self.tmp / "manager",
            wrapper=self.wrappers.get("manager", []),
        )
        return self.manager

    @property
    def manager_addresses(self) -> str:
        """What workers are given: every manager of the fleet, comma-separated."""
        return ",".join([self.address, *(proc.address for _, proc in self.standbys)])

    def add_manager(self, host: str | None = None, env: dict[str, str] | None = None) -> ServiceProcess:
        """Another manager on the same database and index (it stands by while one leads); by
        default on the first manager's host and with its environment."""
        port = free_port()
        proc = self.start_service(
            "manager",
            "--listen",
            f"{host or self.host('manager')}:{port}",
            "--index",
            self.index.address,
            env=env if env is not None else self.manager_env,
            data_dir=self.tmp / f"manager-{len(self.standbys) + 2}",
        )
        self.standbys.append((port, proc))
        return proc

    def use_manager(self, port: int) -> None:
        """Points stub() (and what the fleet's helpers call) at the manager on `port`."""
        self.port = port
        self._channel = None

    def add_worker(self, spec: WorkerSpec) -> None:
        self.specs[spec.name] = spec
        self.worker_ports[spec.name] = free_port()
        proc = self.start_worker(spec.name)
        stub = worker_pb2_grpc.WorkerServiceStub(sync_channel(proc.address, token()))
        root = spec.store or self.tmp / f"store-{spec.name}"
        stub.StorageAttachLocal(
            worker_pb2.StorageAttachLocalRequest(
                path=str(root), init=worker_pb2.StoragePathConfig(can_seal=spec.can_seal, can_store=spec.can_store)
            ),
            timeout=30,
        )
        info = stub.Info(worker_pb2.InfoRequest(), timeout=10).info
        self.worker_ids[spec.name] = info.worker_id
        self.cpus[info.worker_id] = spec.cpus

    def start_worker(self, name: str) -> ServiceProcess:
        """(Re)starts a worker with its spec, port and data dir (so the same worker id and paths)."""
        spec = self.specs[name]
        env = {
            **FAST_WORKER_ENV,
            "SECTORSTORAGE_WORKER_CPUS": str(spec.cpus),
            "SECTORSTORAGE_WORKER_NAME": spec.name,
            **spec.env,
        }
        if spec.task_types:
            env["SECTORSTORAGE_WORKER_TASK_TYPES"] = json.dumps(spec.task_types)
        if spec.resources:
            env["SECTORSTORAGE_WORKER_RESOURCES"] = (
                "{" + ", ".join(f"{k} = {v}" for k, v in spec.resources.items()) + "}"
            )
        proc = self.start_service(
            "worker",
            "--listen",
            f"{self.host(name)}:{self.worker_ports[name]}",
            "--index",
            self.index.address,
            "--manager",
            self.manager_addresses,
            env=env,
            data_dir=self.tmp / f"w-{spec.name}",
            wrapper=self.wrappers.get(name, []),
        )
        self.workers[name] = proc
        self.worker_runs.append((name, proc))
        return proc

    def worker_stub(self, name: str) -> worker_pb2_grpc.WorkerServiceStub:
        return worker_pb2_grpc.WorkerServiceStub(sync_channel(self.workers[name].address, token()))

    def wait_registered(self, timeout: float = 30) -> None:
        """Every worker registered, connected and reporting its storage path."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                stats = self.stub().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=5).workers
                ready = {s.info.worker_id for s in stats if s.state.connected and s.info.paths}
                if set(self.worker_ids.values()) <= ready:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("workers did not register with their paths")
            time.sleep(0.1)

    def name_of(self, worker_id: str) -> str:
        return next(n for n, w in self.worker_ids.items() if w == worker_id)

    def history(self, **filters: Any) -> list[manager_pb2.TaskRun]:
        runs: list[manager_pb2.TaskRun] = []
        token_ = ""
        while True:
            page = self.stub().TaskHistory(
                manager_pb2.TaskHistoryRequest(page_size=500, page_token=token_, **filters), timeout=10
            )
            runs.extend(page.runs)
            if not page.next_page_token:
                return runs
            token_ = page.next_page_token

    def worker_log_events(self, msg: str) -> list[tuple[str, dict[str, Any]]]:
        """(worker name, JSON log entry) for each log line with this message (every process a
        worker name had, restarts included)."""
        out = []
        for name, proc in self.worker_runs:
            for line in proc.output:
                if not line.startswith("{"):
                    continue
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg") == msg:
                    out.append((name, entry))
        return out


def make_fleet(
    start_service: StartService,
    tmp_path: Path,
    manager_env: dict[str, str] | None = None,
    hosts: dict[str, str] | None = None,
    wrappers: dict[str, list[str]] | None = None,
) -> Fleet:
    """An index and a manager on fixed ports; workers are added by the test."""
    # The index and manager are set by start_index() and start_manager() just below.
    fleet = Fleet(
        start_service,
        tmp_path,
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        free_port(),
        hosts=dict(hosts or {}),
        wrappers=dict(wrappers or {}),
    )
    if manager_env is not None:
        fleet.manager_env = {**MANAGER_ENV, **manager_env}
    fleet.start_index()
    fleet.start_manager()
    return fleet


def fleet_with_workers(
    start_service: StartService, tmp: Path, manager_env: dict[str, str], workers: Sequence[WorkerSpec]
) -> Fleet:
    """An index, a manager with extra environment, and these workers, registered with their paths."""
    fleet = make_fleet(start_service, tmp, manager_env)
    for spec in workers:
        fleet.add_worker(spec)
    fleet.wait_registered()
    return fleet


@pytest.fixture
def fleet(start_service: StartService, tmp_path: Path) -> Iterator[Fleet]:
    yield make_fleet(start_service, tmp_path)


def retrying(call: Callable[[], Any], timeout: float = 120) -> Any:
    """Calls until the manager answers (it may be restarting): what a client does that lost its
    manager and comes back with the same request."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            if (
                exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
                or time.monotonic() > deadline
            ):
                raise
            time.sleep(0.2)


def summary(fleet: Fleet, runs: list[manager_pb2.TaskRun]) -> list[tuple[Any, ...]]:
    """Runs as (sector, task, attempt, worker, outcome, error) for readable failures."""
    return [
        (
            r.sector.id.number,
            common_pb2.TaskType.Name(r.task_type),
            r.attempt,
            fleet.name_of(r.worker_id) if r.worker_id else "",
            manager_pb2.TaskOutcome.Name(r.outcome),
            r.error.message,
        )
        for r in sorted(runs, key=lambda r: (r.sector.id.number, r.attempt))
    ]


def log_time(ts: str) -> float:
    """Seconds since the epoch of a JSON log line's `ts`."""
    base, _, rest = ts.partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(rest.rstrip("Z")) / 1000
