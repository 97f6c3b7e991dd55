"""A live fleet for the reliability tests: one index, one manager and one worker as real
processes (services/devfleet/process.py), the worker with one attached storage path, optionally a
2 KiB sector sealed through the manager before the test starts (the state the bad-input tests
check is still intact afterwards), and plaintext or TLS channels with an admin token.

Also the log checks those tests share: a service that hit an unhandled exception logs it (JSON
`exc` field, or a bare Python traceback on stderr), so a crash the client never saw still fails.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.sealing import SealedSector, seal_sector
from services.common.auth import Permission
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import (
    common_pb2,
    index_pb2_grpc,
    manager_pb2,
    manager_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from services.devfleet import ServiceProcess
from tests.support.auth import token
from tests.support.fleet import FAST_WORKER_ENV, MANAGER_ENV, service_group
from tests.support.sectors import P2K, SEED, TICKET, piece_data

# The sector sealed before a test, under a miner id random inputs are unlikely to hit (the fuzz
# tests lean on small numbers and boundaries, and a legitimate Remove of it would not be a bug).
FIXTURE_MINER = 271_828
SEALED_NUMBER = 1


def admin_token() -> str:
    return token(Permission.ADMIN, subject="reliability-test")


@dataclass
class LiveFleet:
    """index + manager + worker; `channel(name)` is an admin-token channel to one of them."""

    root: Path
    index: ServiceProcess
    manager: ServiceProcess
    worker: ServiceProcess
    storage: Path
    storage_id: str
    credentials: grpc.ChannelCredentials | None = None
    sealed: SealedSector | None = None
    data: bytes = b""
    sealed_digest: str = ""
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)

    @property
    def processes(self) -> dict[str, ServiceProcess]:
        return {"index": self.index, "manager": self.manager, "worker": self.worker}

    def channel(self, name: str) -> grpc.Channel:
        if name not in self._channels:
            self._channels[name] = sync_channel(self.processes[name].address, admin_token(), self.credentials)
        return self._channels[name]

    def index_stub(self) -> index_pb2_grpc.IndexServiceStub:
        return index_pb2_grpc.IndexServiceStub(self.channel("index"))

    def manager_stub(self) -> manager_pb2_grpc.ManagerServiceStub:
        return manager_pb2_grpc.ManagerServiceStub(self.channel("manager"))

    def worker_stub(self) -> worker_pb2_grpc.WorkerServiceStub:
        return worker_pb2_grpc.WorkerServiceStub(self.channel("worker"))

    def serving(self, name: str, timeout: float = 5.0) -> bool:
        """grpc.health.v1 says SERVING (health is open: no token needed)."""
        stub = health_pb2_grpc.HealthStub(self.channel(name))
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def alive(self) -> dict[str, bool]:
        return {
            name: p.proc is not None and p.proc.poll() is None and self.serving(name)
            for name, p in self.processes.items()
        }

    def sealed_file(self) -> Path:
        return self.storage / "sealed" / f"s-t0{FIXTURE_MINER}-{SEALED_NUMBER}"

    def stop(self) -> None:
        for channel in self._channels.values():
            channel.close()
        for proc in (self.worker, self.manager, self.index):
            try:
                proc.stop(timeout=10)
            except Exception:  # noqa: BLE001 - teardown: kill what did not stop
                proc.kill()


def crashes(lines: list[str]) -> list[str]:
    """Log lines (a ServiceProcess's output) that show an unhandled exception (JSON `exc`, or a
    raw traceback)."""
    found = []
    for line in lines:
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "exc" in entry:
                found.append(f"{entry.get('msg')}: {entry['exc']}")
        elif "Traceback (most recent call last)" in line:
            found.append(line)
    return found


def logged(proc: ServiceProcess, text: str, timeout: float = 10.0) -> bool:
    """Whether `proc` logs `text` within `timeout` (start-up lines come after the ready line)."""
    deadline = time.monotonic() + timeout
    while text not in proc.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _wait_registered(fleet: LiveFleet, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            stats = fleet.manager_stub().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=5).workers
            if any(s.state.connected and s.info.paths for s in stats):
                return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not register with its storage path")
        time.sleep(0.1)


def start_fleet(
    root: Path,
    *,
    seal: bool,
    env: dict[str, dict[str, str]] | None = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> LiveFleet:
    """Starts the three services under `root` (env per service name), attaches a storage path
    and, with `seal`, seals sector SEALED_NUMBER (2 KiB) through the manager."""
    env = env or {}
    processes = service_group(root)

    def start(name: str, *args: str, extra: dict[str, str]) -> ServiceProcess:
        return processes.start(name, name, *args, env={**extra, **env.get(name, {})})

    try:
        index = start("index", extra={})
        manager = start("manager", "--index", index.address, extra=MANAGER_ENV)
        worker = start("worker", "--index", index.address, "--manager", manager.address, extra=FAST_WORKER_ENV)
        fleet = LiveFleet(root, index, manager, worker, root / "store", "", credentials)
        reply = fleet.worker_stub().StorageAttachLocal(
            worker_pb2.StorageAttachLocalRequest(
                path=str(fleet.storage), init=worker_pb2.StoragePathConfig(can_seal=True, can_store=True)
            ),
            timeout=30,
        )
        fleet.storage_id = reply.path.info.id
        _wait_registered(fleet)
        if seal:
            ref = common_pb2.SectorRef(
                id=common_pb2.SectorId(miner=FIXTURE_MINER, number=SEALED_NUMBER), proof_type=P2K
            )
            fleet.data = piece_data(SEALED_NUMBER, P2K)
            fleet.sealed = seal_sector(fleet.manager_stub(), ref, fleet.data, TICKET, SEED)
            assert fleet.sealed.verified
            fleet.sealed_digest = digest(fleet.sealed_file())
        return fleet
    except BaseException:
        processes.kill()
        raise


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> Iterator[Path]:
    """Every file and directory under root (not following links)."""
    yield from root.rglob("*")


def call_code(call: Any) -> grpc.StatusCode:
    """The status a call ends with (OK when it returns; server streams are read to the end)."""
    try:
        result = call()
        if isinstance(result, Iterator):
            for _ in result:
                pass
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        return code
    return grpc.StatusCode.OK
