"""The worker's side of the tests: the test's own ManagerService endpoint, a handle on a running
worker, and the task requests the manager would send (a worker is started by
tests/support/fleet.py's `start_worker`).

`ManagerEndpoint` is the manager's side of the worker contract (RegisterWorker, WorkerHeartbeat
and the Return<Method> RPCs), served by the test so it can drive the worker's task RPCs
directly and see every result the worker returns. It is not a stand-in for code under test: the
worker is the code under test, and this is the peer it calls.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

import rust_core
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
from services.common.vocabulary import prover_id
from services.devfleet import ServiceProcess
from tests.support.auth import token
from tests.support.sectors import MINER, SEED, TICKET, new_call, sector_ref


class ManagerEndpoint(manager_pb2_grpc.ManagerServiceServicer):
    """The manager side of the worker contract, served by the test (see module docstring)."""

    def __init__(self) -> None:
        self.results: dict[str, tuple[str, Any]] = {}
        self.returns: list[str] = []
        self.registrations: list[manager_pb2.RegisterWorkerRequest] = []
        self.heartbeats: list[manager_pb2.WorkerHeartbeatRequest] = []
        self.refuse_returns = False
        # The next heartbeat is answered NOT_FOUND (the manager declared the worker gone), once.
        self.forget_worker = False
        # Call ids the heartbeats name as unknown (the manager ended them or gave them away).
        self.unknown: set[str] = set()
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
            forget, self.forget_worker = self.forget_worker, False
            self.cond.notify_all()
        if forget:
            context.abort(grpc.StatusCode.NOT_FOUND, "worker marked gone: register again")
        unknown = [c for c in request.running_calls if c.id in self.unknown]
        return manager_pb2.WorkerHeartbeatResponse(manager_session_id=self.session, unknown_calls=unknown)

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


def index_stub(index: ServiceProcess) -> index_pb2_grpc.IndexServiceStub:
    return index_pb2_grpc.IndexServiceStub(sync_channel(index.address, token()))


def find(index: ServiceProcess, number: int, *types: int) -> list[index_pb2.SectorStorageInfo]:
    reply = index_stub(index).StorageFindSector(
        index_pb2.StorageFindSectorRequest(
            sector=common_pb2.SectorId(miner=MINER, number=number),
            types=[common_pb2.SectorFileType.ValueType(t) for t in types],
        ),
        timeout=10,
    )
    return list(reply.locations)


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


def fetch_files(
    w: WorkerHandle,
    number: int,
    size: int,
    types: list[common_pb2.SectorFileType.ValueType],
    mode: worker_pb2.FetchMode.ValueType = worker_pb2.FETCH_MODE_COPY,
) -> tuple[str, object]:
    """A Fetch task on one worker, awaited: ("done", ...) or ("error", TaskError)."""
    a = assignment(number)
    w.stub.Fetch(
        worker_pb2.FetchRequest(
            assignment=a,
            sector=sector_ref(number, size),
            types=types,
            path_type=common_pb2.PATH_TYPE_SEALING,
            mode=mode,
        ),
        timeout=10,
    )
    return w.result(a.call_id)


def tree(directory: Path) -> dict[str, bytes]:
    return {n: (directory / n).read_bytes() for n in sorted(os.listdir(directory))}


def log_entries(w: WorkerHandle, msg: str) -> list[dict[str, object]]:
    """The worker's JSON log lines with this message."""
    entries = []
    for line in w.proc.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("msg") == msg:
                entries.append(entry)
    return entries


def routes(w: WorkerHandle) -> list[tuple[object, object]]:
    """(file type, how it came) of each completed fetch, in order."""
    return [(e["type"], e["via"]) for e in log_entries(w, "fetched")]


def prove_on(
    w: WorkerHandle, ref: common_pb2.SectorRef, pieces: list[common_pb2.PieceInfo], cids: Any, size: int
) -> None:
    """C1 and C2 on one worker from the files it can reach; the proof must verify."""
    number = ref.id.number
    call = assignment(number)
    w.stub.SealCommit1(
        worker_pb2.WorkerServiceSealCommit1Request(
            assignment=call, sector=ref, ticket=TICKET, seed=SEED, pieces=pieces, comm_r=cids.comm_r, comm_d=cids.comm_d
        ),
        timeout=10,
    )
    c1 = w.ok(call.call_id)
    call = assignment(number)
    w.stub.SealCommit2(
        worker_pb2.WorkerServiceSealCommit2Request(assignment=call, sector=ref, commit1_output=c1), timeout=10
    )
    proof = w.ok(call.call_id)
    assert rust_core.verify_seal(size, cids.comm_r, cids.comm_d, prover_id(MINER), number, TICKET, SEED, proof)


def precommit_on(
    w: WorkerHandle, number: int, size: int, data: bytes, pc2_worker: WorkerHandle | None = None
) -> tuple[list[common_pb2.PieceInfo], Any]:
    """AddPiece and PC1 on `w`, then PC2 on `pc2_worker` (default `w`): the sector's pieces and
    its SectorCommitments."""
    ref = sector_ref(number, size)
    piece = w.ok(add_piece(w, number, size, data))
    pieces = [common_pb2.PieceInfo(size=size, commp=piece.commp)]
    call = assignment(number)
    w.stub.SealPreCommit1(
        worker_pb2.WorkerServiceSealPreCommit1Request(assignment=call, sector=ref, ticket=TICKET, pieces=pieces),
        timeout=10,
    )
    p1 = w.ok(call.call_id)
    second = pc2_worker or w
    call = assignment(number)
    second.stub.SealPreCommit2(
        worker_pb2.WorkerServiceSealPreCommit2Request(assignment=call, sector=ref, pre_commit1_output=p1), timeout=10
    )
    return pieces, second.ok(call.call_id)
