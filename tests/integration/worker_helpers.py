"""Helpers for the worker's integration tests: real index and worker processes, and the test's
own ManagerService endpoint.

`ManagerEndpoint` is the manager's side of the worker contract (RegisterWorker, WorkerHeartbeat
and the Return<Method> RPCs), served by the test so it can drive the worker's task RPCs
directly and see every result the worker returns. It is not a stand-in for code under test: the
worker is the code under test, and this is the peer it calls.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

from services.common.auth import Permission, create_token
from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import (
    common_pb2,
    index_pb2,
    index_pb2_grpc,
    manager_pb2,
    manager_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from services.devfleet import ServiceProcess
from tests.conftest import TEST_SECRET

StartService = Callable[..., ServiceProcess]
PROOF = {
    2048: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1,
    8 << 20: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_8MIB_V1_1,
    512 << 20: common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_512MIB_V1_1,
}
MINER = 1000
TICKET = hashlib.sha256(b"ticket").digest()[:31] + b"\x00"
SEED = hashlib.sha256(b"seed").digest()[:31] + b"\x00"
FAST_WORKER_ENV = {
    "SECTORSTORAGE_WORKER_STORAGE_HEARTBEAT_S": "1",
    "SECTORSTORAGE_WORKER_HEARTBEAT_INTERVAL_S": "1",
    "SECTORSTORAGE_WORKER_REGISTER_RETRY_INITIAL_S": "0.1",
    "SECTORSTORAGE_WORKER_REGISTER_RETRY_MAX_S": "0.5",
    # A test's teardown SIGTERMs workers that may still run tasks: drain briefly.
    "SECTORSTORAGE_WORKER_DRAIN_TIMEOUT_S": "5",
}


def token(permission: Permission = Permission.ADMIN) -> str:
    return create_token(TEST_SECRET.encode(), permission, subject="test")


class ManagerEndpoint(manager_pb2_grpc.ManagerServiceServicer):
    """The manager side of the worker contract, served by the test (see module docstring)."""

    def __init__(self) -> None:
        self.results: dict[str, tuple[str, Any]] = {}
        self.returns: list[str] = []
        self.registrations: list[manager_pb2.RegisterWorkerRequest] = []
        self.heartbeats: list[manager_pb2.WorkerHeartbeatRequest] = []
        self.refuse_returns = False
        self.session = str(uuid.uuid4())
        self.cond = threading.Condition()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        manager_pb2_grpc.add_ManagerServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)

    def RegisterWorker(
        self, request: manager_pb2.RegisterWorkerRequest, context: grpc.ServicerContext
    ) -> manager_pb2.RegisterWorkerResponse:
        with self.cond:
            self.registrations.append(request)
            self.cond.notify_all()
        return manager_pb2.RegisterWorkerResponse(
            manager_session_id=self.session, heartbeat_interval=Duration(seconds=1)
        )

    def WorkerHeartbeat(
        self, request: manager_pb2.WorkerHeartbeatRequest, context: grpc.ServicerContext
    ) -> manager_pb2.WorkerHeartbeatResponse:
        with self.cond:
            self.heartbeats.append(request)
        return manager_pb2.WorkerHeartbeatResponse(manager_session_id=self.session)

    def _ret(self, method: str, request: Any, context: grpc.ServicerContext, response: Any) -> Any:
        if self.refuse_returns:
            context.abort(grpc.StatusCode.UNAVAILABLE, "test manager refuses returns for now")
        key = request.call_id.id
        with self.cond:
            self.returns.append(key)
            field_name = request.WhichOneof("outcome")
            self.results.setdefault(key, (field_name, getattr(request, field_name)))
            self.cond.notify_all()
        return response

    def ReturnAddPiece(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("AddPiece", r, c, manager_pb2.ReturnAddPieceResponse())

    def ReturnSealPreCommit1(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("PC1", r, c, manager_pb2.ReturnSealPreCommit1Response())

    def ReturnSealPreCommit2(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("PC2", r, c, manager_pb2.ReturnSealPreCommit2Response())

    def ReturnSealCommit1(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("C1", r, c, manager_pb2.ReturnSealCommit1Response())

    def ReturnSealCommit2(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("C2", r, c, manager_pb2.ReturnSealCommit2Response())

    def ReturnFinalizeSector(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("FIN", r, c, manager_pb2.ReturnFinalizeSectorResponse())

    def ReturnReleaseUnsealed(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("REL", r, c, manager_pb2.ReturnReleaseUnsealedResponse())

    def ReturnMoveStorage(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("MOVE", r, c, manager_pb2.ReturnMoveStorageResponse())

    def ReturnUnsealPiece(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("UNS", r, c, manager_pb2.ReturnUnsealPieceResponse())

    def ReturnFetch(self, r: Any, c: grpc.ServicerContext) -> Any:
        return self._ret("GET", r, c, manager_pb2.ReturnFetchResponse())

    def wait(self, call: common_pb2.CallId, timeout: float = 60.0) -> tuple[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while call.id not in self.results:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no result for call {call.id} within {timeout}s")
                self.cond.wait(left)
            return self.results[call.id]


@dataclass
class WorkerHandle:
    proc: ServiceProcess
    channel: grpc.Channel
    stub: worker_pb2_grpc.WorkerServiceStub
    manager: ManagerEndpoint | None
    paths: dict[str, Path] = field(default_factory=dict)  # label -> local dir
    ids: dict[str, str] = field(default_factory=dict)  # label -> storage id

    def attach(self, label: str, root: Path, *, seal: bool, store: bool, weight: int = 10, max_storage: int = 0) -> str:
        reply = self.stub.StorageAttachLocal(
            worker_pb2.StorageAttachLocalRequest(
                path=str(root),
                init=worker_pb2.StoragePathConfig(
                    weight=weight, can_seal=seal, can_store=store, max_storage=max_storage
                ),
            ),
            timeout=30,
        )
        self.paths[label] = root
        self.ids[label] = reply.path.info.id
        return reply.path.info.id

    def result(self, call: common_pb2.CallId, timeout: float = 90.0) -> tuple[str, Any]:
        assert self.manager is not None
        return self.manager.wait(call, timeout)

    def ok(self, call: common_pb2.CallId, timeout: float = 90.0) -> Any:
        field_name, value = self.result(call, timeout)
        assert field_name != "error", f"task failed: {value}"
        return value


def start_worker(
    start_service: StartService,
    index: ServiceProcess,
    manager: ManagerEndpoint | None,
    *,
    env: dict[str, str] | None = None,
    data_dir: Path | None = None,
) -> WorkerHandle:
    args = ["--index", index.address]
    if manager is not None:
        args += ["--manager", manager.address]
    proc = start_service("worker", *args, env={**FAST_WORKER_ENV, **(env or {})}, data_dir=data_dir)
    channel = sync_channel(proc.address, token())
    return WorkerHandle(proc, channel, worker_pb2_grpc.WorkerServiceStub(channel), manager)


def index_stub(index: ServiceProcess) -> index_pb2_grpc.IndexServiceStub:
    return index_pb2_grpc.IndexServiceStub(sync_channel(index.address, token()))


def find(index: ServiceProcess, number: int, *types: int) -> list[index_pb2.SectorStorageInfo]:
    reply = index_stub(index).StorageFindSector(
        index_pb2.StorageFindSectorRequest(sector=common_pb2.SectorId(miner=MINER, number=number), types=list(types)),
        timeout=10,
    )
    return list(reply.locations)


def sector_ref(number: int, size: int) -> common_pb2.SectorRef:
    return common_pb2.SectorRef(id=common_pb2.SectorId(miner=MINER, number=number), proof_type=PROOF[size])


def new_call(number: int) -> common_pb2.CallId:
    return common_pb2.CallId(sector=common_pb2.SectorId(miner=MINER, number=number), id=str(uuid.uuid4()))


def assignment(number: int, timeout_s: float | None = None) -> worker_pb2.TaskAssignment:
    a = worker_pb2.TaskAssignment(call_id=new_call(number), attempt=1)
    if timeout_s is not None:
        a.timeout.FromMilliseconds(int(timeout_s * 1000))
    return a


def piece_stream(
    header: worker_pb2.WorkerServiceAddPieceHeader, data: bytes, chunk: int = 1 << 20
) -> Iterator[worker_pb2.WorkerServiceAddPieceRequest]:
    yield worker_pb2.WorkerServiceAddPieceRequest(header=header)
    for offset in range(0, len(data), chunk):
        yield worker_pb2.WorkerServiceAddPieceRequest(
            chunk=common_pb2.Chunk(offset=offset, data=data[offset : offset + chunk])
        )


def add_piece(
    w: WorkerHandle, number: int, size: int, data: bytes, existing: list[int] | None = None
) -> common_pb2.CallId:
    a = assignment(number)
    header = worker_pb2.WorkerServiceAddPieceHeader(
        assignment=a, sector=sector_ref(number, size), existing_piece_sizes=existing or [], piece_size=len(data)
    )
    reply = w.stub.AddPiece(piece_stream(header, data), timeout=120)
    assert reply.call_id == a.call_id
    return reply.call_id
