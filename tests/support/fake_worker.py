"""TEST-ONLY FAKES for the manager's unit-level tests: an in-process WorkerService that follows
the worker.proto call protocol (dispatch answers at once, the outcome comes back through the
manager's Return<Method>, results held until acknowledged, ListCallResults / AckCallResult) but
computes nothing real, and an in-memory StorageIndex.

They exercise the manager's scheduling, dispatch and return handling in one process, in
milliseconds; the same paths against real worker processes are in tests/integration/manager/.
A fake is only worth what it agrees with: tests/unit/manager/test_fake_worker.py checks that
every RPC method here has the real WorkerService's request and response types, that the fake
serves every worker RPC the manager calls (but the PoSt ones, listed there), and that FakeIndex
is a StorageIndex (mypy checks the RPC methods' annotations, tests/support being type-checked).
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import grpc
from google.protobuf.empty_pb2 import Empty
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

import rust_core
from services.common.auth import Permission
from services.common.cid import sealed_cid, unsealed_cid
from services.common.client import aio_channel
from services.common.config import AuthConfig, MetricsConfig
from services.common.proto.sectorstorage.v1 import (
    common_pb2,
    manager_pb2,
    manager_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from services.common.server import ServiceHost
from services.manager.app import ManagerApp
from services.manager.config import ManagerConfig, ManagerSection
from services.manager.index_client import FileType, PathType, SectorLocation, StorageIndex
from services.manager.jobs import JobRunner
from services.manager.resources import GiB, SealProof
from services.manager.tasks import TaskType
from tests.support.auth import TEST_SECRET, token
from tests.support.records import record_steps

ALL_TASKS = [t for t in TaskType]
C = worker_pb2.CallType
W = worker_pb2
# What grpc.aio hands a servicer method (the worker's servicer types it the same way).
Context = grpc.aio.ServicerContext[Any, Any]
# The task requests the manager dispatches with a TaskAssignment (AddPiece, a stream, aside).
TaskRequest = (
    W.WorkerServiceSealPreCommit1Request
    | W.WorkerServiceSealPreCommit2Request
    | W.WorkerServiceSealCommit1Request
    | W.WorkerServiceSealCommit2Request
    | W.WorkerServiceFinalizeSectorRequest
    | W.WorkerServiceReleaseUnsealedRequest
    | W.MoveStorageRequest
    | W.WorkerServiceUnsealPieceRequest
    | W.FetchRequest
)

# Which input files a task brings to its worker first (moved there, as a real worker's fetch
# with FETCH_MODE_MOVE does).
_MOVES = {
    "SealPreCommit1": {FileType.UNSEALED},
    "SealPreCommit2": {FileType.SEALED, FileType.CACHE},
    "SealCommit1": {FileType.SEALED, FileType.CACHE},
    "FinalizeSector": {FileType.SEALED, FileType.CACHE},
    "MoveStorage": {FileType.SEALED, FileType.CACHE},
}
# Which files a task leaves behind (declared in the fake index where it ran).
_PRODUCES = {
    "AddPiece": {FileType.UNSEALED},
    "SealPreCommit1": {FileType.SEALED, FileType.CACHE},
    "SealPreCommit2": {FileType.SEALED, FileType.CACHE},
    "UnsealPiece": {FileType.UNSEALED},
}


# --- in-memory index --------------------------------------------------------------------------


class FakePath(TypedDict):
    """One path of the fake index: where it is served, what it may hold, and a room counter."""

    url: str
    can_seal: bool
    can_store: bool
    weight: int
    room: int


@dataclass
class FakeIndex:
    """StorageIndex in memory: paths with a capacity counter, declarations per sector."""

    paths: dict[str, FakePath] = field(default_factory=dict)
    files: dict[tuple[int, int], dict[FileType, set[str]]] = field(default_factory=dict)
    finds: int = 0

    def add_path(
        self,
        storage_id: str,
        url: str,
        can_seal: bool = True,
        can_store: bool = True,
        weight: int = 10,
        room: int = 10**18,
    ) -> None:
        self.paths[storage_id] = {
            "url": url,
            "can_seal": can_seal,
            "can_store": can_store,
            "weight": weight,
            "room": room,
        }

    def declare(self, miner: int, number: int, types: Iterable[FileType], storage_id: str) -> None:
        entry = self.files.setdefault((miner, number), {})
        for t in types:
            entry.setdefault(t, set()).add(storage_id)

    def drop(self, miner: int, number: int, types: Iterable[FileType], storage_id: str) -> None:
        entry = self.files.get((miner, number), {})
        for t in types:
            entry.get(t, set()).discard(storage_id)

    async def find_sector(
        self, miner: int, number: int, types: Iterable[FileType], sector_size: int, allow_fetch: bool
    ) -> list[SectorLocation]:
        self.finds += 1
        wanted = set(types)
        entry = self.files.get((miner, number), {})
        holders: dict[str, set[FileType]] = {}
        for t in wanted:
            for sid in entry.get(t, set()):
                holders.setdefault(sid, set()).add(t)
        out = [
            SectorLocation(
                sid,
                (self.paths[sid]["url"],),
                self.paths[sid]["weight"] * len(found),
                self.paths[sid]["can_seal"],
                self.paths[sid]["can_store"],
                True,
                frozenset(found),
            )
            for sid, found in holders.items()
        ]
        out.sort(key=lambda loc: (-loc.weight, loc.storage_id))
        if allow_fetch:
            for sid, p in sorted(self.paths.items()):
                if sid not in holders and p["can_seal"] and p["room"] > 0:
                    out.append(
                        SectorLocation(
                            sid, (p["url"],), 0, True, p["can_store"], False, frozenset(), fetch_candidate=True
                        )
                    )
        return out

    async def best_alloc(
        self, types: Iterable[FileType], sector_size: int, path_type: PathType, miner: int | None
    ) -> list[str]:
        def usable(p: FakePath) -> bool:
            return p["can_seal"] if path_type is PathType.SEALING else p["can_store"]

        fits = [(sid, p) for sid, p in self.paths.items() if usable(p) and p["room"] >= sector_size and p["weight"] > 0]
        fits.sort(key=lambda item: (-item[1]["room"] * item[1]["weight"], item[0]))
        return [sid for sid, _ in fits]

    async def try_read_lock(self, miner: int, number: int, types: Iterable[FileType], owner: str) -> str | None:
        return str(uuid.uuid4())

    async def unlock(self, lease_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


def as_storage_index(index: FakeIndex) -> StorageIndex:
    """FakeIndex where the manager wants its StorageIndex: mypy checks here (tests/support is
    type-checked) that the fake has every method of the protocol with the same signature."""
    return index


# --- fake worker ------------------------------------------------------------------------------


def _fake_result(method: str, request: Message) -> bytes | Message:
    """Deterministic stand-ins for real results (hash of the inputs)."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("assignment")
    digest = hashlib.sha256(method.encode() + copy.SerializeToString(deterministic=True)).digest()
    if method == "SealPreCommit1":
        return b"p1o:" + digest
    if method == "SealPreCommit2":
        comm_d, comm_r = digest, hashlib.sha256(digest).digest()
        return common_pb2.SectorCommitments(
            comm_d=comm_d, comm_r=comm_r, unsealed_cid=unsealed_cid(comm_d), sealed_cid=sealed_cid(comm_r)
        )
    if method == "SealCommit1":
        return b"c1o:" + digest
    if method == "SealCommit2":
        return digest * 6  # 192 bytes
    return Empty()


_RESULT_FIELD = {
    "AddPiece": "piece",
    "SealPreCommit1": "pre_commit1_output",
    "SealPreCommit2": "commitments",
    "SealCommit1": "commit1_output",
    "SealCommit2": "proof",
}
_CALL_TYPE = {
    "AddPiece": C.CALL_TYPE_ADD_PIECE,
    "SealPreCommit1": C.CALL_TYPE_SEAL_PRE_COMMIT_1,
    "SealPreCommit2": C.CALL_TYPE_SEAL_PRE_COMMIT_2,
    "SealCommit1": C.CALL_TYPE_SEAL_COMMIT_1,
    "SealCommit2": C.CALL_TYPE_SEAL_COMMIT_2,
    "FinalizeSector": C.CALL_TYPE_FINALIZE_SECTOR,
    "ReleaseUnsealed": C.CALL_TYPE_RELEASE_UNSEALED,
    "MoveStorage": C.CALL_TYPE_MOVE_STORAGE,
    "UnsealPiece": C.CALL_TYPE_UNSEAL_PIECE,
    "Fetch": C.CALL_TYPE_FETCH,
}


@dataclass
class Gate:
    """Holds tasks of some methods until released (to catch them mid-run)."""

    methods: set[str] = field(default_factory=set)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    reached: asyncio.Event = field(default_factory=asyncio.Event)


class FakeWorker(worker_pb2_grpc.WorkerServiceServicer):
    """TEST-ONLY in-process worker (see the module docstring)."""

    def __init__(
        self,
        name: str,
        manager: str,
        index: FakeIndex | None = None,
        cpus: int = 16,
        mem_gib: int = 64,
        gpus: int = 0,
        task_types: Iterable[TaskType] = ALL_TASKS,
        task_seconds: float = 0.0,
        overrides: Iterable[common_pb2.TaskResources] = (),
    ) -> None:
        self.name = name
        self.worker_id = f"worker-{name}"
        self.session_id = str(uuid.uuid4())
        self.manager = manager
        self.index = index
        self.storage_id = f"path-{name}"
        self.cpus, self.mem_gib, self.gpus = cpus, mem_gib, gpus
        self.task_types = list(task_types)
        self.task_seconds = task_seconds
        self.overrides = list(overrides)
        self.address = ""
        self.server: grpc.aio.Server | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: manager_pb2_grpc.ManagerServiceAsyncStub | None = None
        # Executions per (method, work id): the "worker's records" of what it ran.
        self.executed: Counter[tuple[str, str]] = Counter()
        self.ran: list[tuple[str, str, int]] = []  # (method, call id, sector number)
        self.assignments: dict[str, worker_pb2.TaskAssignment] = {}
        self.calls: dict[str, str] = {}  # call id -> method
        self.running: set[str] = set()
        self.results: dict[str, worker_pb2.StoredCallResult] = {}
        self.fail_next: dict[str, common_pb2.TaskError] = {}
        self.gate = Gate()
        # Holds the dispatch RPCs of its methods before the call is accepted (a dispatch slow on
        # the wire), until its event is set.
        self.dispatch_gate = Gate()
        self.return_enabled = True
        self.heartbeats = True
        self.aborted: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # The last piece AddPiece received (ReadPiece serves it back).
        self.piece_bytes = b""
        # GenerateVanillaProofs is served only once a test turns it on (it is UNIMPLEMENTED
        # otherwise, as for the tests that expect a holder that cannot prove); then each sector
        # asked counts here, waits its delay in vanilla_delays first, and gets a proof of the
        # right header (rust_core's assemble_post accepts it; nothing verifies it).
        self.vanilla_enabled = False
        self.vanilla_asked: Counter[int] = Counter()
        self.vanilla_delays: dict[int, float] = {}
        # Sectors whose vanilla proof this fake gets wrong (another comm_r in it), as a holder
        # with a rotten sealed file would: the manager's check must refuse it.
        self.vanilla_bad: set[int] = set()
        self._beat: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def info(self) -> common_pb2.WorkerInfo:
        return common_pb2.WorkerInfo(
            worker_id=self.worker_id,
            name=self.name,
            hostname=f"host-{self.name}",
            resources=common_pb2.WorkerResources(
                mem_physical=self.mem_gib * GiB,
                mem_swap=0,
                mem_reserved=1 * GiB,
                cpus=self.cpus,
                gpus=[common_pb2.GpuInfo(name=f"gpu{i}", ordinal=i) for i in range(self.gpus)],
            ),
            task_types=[common_pb2.TaskType.ValueType(int(t)) for t in self.task_types],
            paths=[
                common_pb2.StoragePath(
                    info=common_pb2.StorageInfo(id=self.storage_id, urls=[self.address], can_seal=True, can_store=True)
                )
            ],
            resource_overrides=self.overrides,
        )

    async def start(self, register: bool = True) -> FakeWorker:
        self.server = grpc.aio.server()
        worker_pb2_grpc.add_WorkerServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"
        if self.index is not None:
            self.index.add_path(self.storage_id, self.address)
        self.channel = aio_channel(self.manager, token(Permission.WRITE))
        self.stub = manager_pb2_grpc.ManagerServiceStub(self.channel)
        if register:
            await self.register()
        return self

    async def register(self) -> manager_pb2.RegisterWorkerResponse:
        assert self.stub is not None
        reply = await self.stub.RegisterWorker(
            manager_pb2.RegisterWorkerRequest(info=self.info(), address=self.address, session_id=self.session_id),
            timeout=10,
        )
        if self._beat is None:
            self._beat = asyncio.create_task(self._heartbeat_loop(reply.heartbeat_interval.ToNanoseconds() / 1e9))
        return reply

    async def heartbeat(self, info: bool = False) -> manager_pb2.WorkerHeartbeatResponse:
        assert self.stub is not None
        request = manager_pb2.WorkerHeartbeatRequest(
            worker_id=self.worker_id,
            session_id=self.session_id,
            running_calls=[self.assignments[c].call_id for c in sorted(self.running)],
        )
        if info:
            request.info.CopyFrom(self.info())
        return await self.stub.WorkerHeartbeat(request, timeout=10)

    async def _heartbeat_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if not self.heartbeats:
                continue
            try:
                reply = await self.heartbeat()
                for call in reply.unknown_calls:
                    self.aborted.append(call.id)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.NOT_FOUND:
                    try:
                        await self.register()
                    except grpc.aio.AioRpcError:
                        pass

    async def point_to(self, manager: str) -> None:
        """The manager moved (restarted on another port): re-register there."""
        if self.channel is not None:
            await self.channel.close()
        self.manager = manager
        self.channel = aio_channel(manager, token(Permission.WRITE))
        self.stub = manager_pb2_grpc.ManagerServiceStub(self.channel)
        await self.register()

    async def restart(self) -> None:
        """A new process: new session, nothing running, stored results kept (its call store)."""
        for task in list(self._tasks):
            task.cancel()
        self.running.clear()
        self.session_id = str(uuid.uuid4())
        await self.register()

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.server is not None:
            await self.server.stop(0)
        if self.channel is not None:
            await self.channel.close()

    # --- task RPCs ---------------------------------------------------------------------------

    def _accept(self, method: str, request: TaskRequest, context: Context) -> worker_pb2.TaskAssignment:
        assignment = request.assignment
        call_id = assignment.call_id.id
        if call_id in self.calls:
            return assignment  # idempotent per call id
        self.calls[call_id] = method
        self.assignments[call_id] = assignment
        self.running.add(call_id)
        task = asyncio.create_task(self._run(method, request, assignment))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return assignment

    async def _run(
        self, method: str, request: TaskRequest | common_pb2.PieceInfo, assignment: worker_pb2.TaskAssignment
    ) -> None:
        call_id = assignment.call_id.id
        if self.index is not None and method in _MOVES:
            sector = assignment.call_id.sector
            entry = self.index.files.get((sector.miner, sector.number), {})
            for t in _MOVES[method]:
                if entry.get(t):
                    entry[t] = {self.storage_id}
        self.executed[(method, assignment.work_id)] += 1
        self.ran.append((method, call_id, assignment.call_id.sector.number))
        if method in self.gate.methods:
            self.gate.reached.set()
            await self.gate.event.wait()
        if self.task_seconds:
            await asyncio.sleep(self.task_seconds)
        started = Timestamp()
        started.GetCurrentTime()
        stored = worker_pb2.StoredCallResult(
            call_id=assignment.call_id, call_type=_CALL_TYPE[method], started_at=started, finished_at=started
        )
        error = self.fail_next.pop(method, None)
        if call_id in self.aborted:
            error = common_pb2.TaskError(code=common_pb2.TASK_ERROR_CODE_ABORTED, message="aborted")
        if error is not None:
            stored.error.CopyFrom(error)
        elif isinstance(request, common_pb2.PieceInfo):  # AddPiece's result is the piece
            stored.piece.CopyFrom(request)
        else:
            value = _fake_result(method, request)
            field_name = _RESULT_FIELD.get(method, "done")
            if isinstance(value, bytes):
                setattr(stored, field_name, value)
            else:
                getattr(stored, field_name).CopyFrom(value)
        if error is None and self.index is not None and method in _PRODUCES:
            sector = assignment.call_id.sector
            self.index.declare(sector.miner, sector.number, _PRODUCES[method], self.storage_id)
        if error is None and self.index is not None and isinstance(request, W.FetchRequest):
            self._fetched(request)
        self.running.discard(call_id)
        self.results[call_id] = stored
        await self._return(stored)

    async def _return(self, stored: worker_pb2.StoredCallResult) -> None:
        method = next(m for m, ct in _CALL_TYPE.items() if ct == stored.call_type)
        request = getattr(manager_pb2, f"Return{method}Request")(call_id=stored.call_id)
        which = stored.WhichOneof("outcome")
        assert which is not None
        value = getattr(stored, which)
        if isinstance(value, bytes):
            setattr(request, which, value)
        else:
            getattr(request, which).CopyFrom(value)
        request.meta.worker_id = self.worker_id
        while self.return_enabled:
            try:
                assert self.stub is not None
                await getattr(self.stub, f"Return{method}")(request, timeout=10)
                self.results.pop(stored.call_id.id, None)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION):
                    self.results.pop(stored.call_id.id, None)
                    return
                await asyncio.sleep(0.2)

    async def SealPreCommit1(
        self, request: W.WorkerServiceSealPreCommit1Request, context: Context
    ) -> W.WorkerServiceSealPreCommit1Response:
        if "SealPreCommit1" in self.dispatch_gate.methods:
            self.dispatch_gate.reached.set()
            await self.dispatch_gate.event.wait()
        return worker_pb2.WorkerServiceSealPreCommit1Response(
            call_id=self._accept("SealPreCommit1", request, context).call_id
        )

    async def SealPreCommit2(
        self, request: W.WorkerServiceSealPreCommit2Request, context: Context
    ) -> W.WorkerServiceSealPreCommit2Response:
        return worker_pb2.WorkerServiceSealPreCommit2Response(
            call_id=self._accept("SealPreCommit2", request, context).call_id
        )

    async def SealCommit1(
        self, request: W.WorkerServiceSealCommit1Request, context: Context
    ) -> W.WorkerServiceSealCommit1Response:
        return worker_pb2.WorkerServiceSealCommit1Response(
            call_id=self._accept("SealCommit1", request, context).call_id
        )

    async def SealCommit2(
        self, request: W.WorkerServiceSealCommit2Request, context: Context
    ) -> W.WorkerServiceSealCommit2Response:
        return worker_pb2.WorkerServiceSealCommit2Response(
            call_id=self._accept("SealCommit2", request, context).call_id
        )

    async def FinalizeSector(
        self, request: W.WorkerServiceFinalizeSectorRequest, context: Context
    ) -> W.WorkerServiceFinalizeSectorResponse:
        return worker_pb2.WorkerServiceFinalizeSectorResponse(
            call_id=self._accept("FinalizeSector", request, context).call_id
        )

    async def ReleaseUnsealed(
        self, request: W.WorkerServiceReleaseUnsealedRequest, context: Context
    ) -> W.WorkerServiceReleaseUnsealedResponse:
        return worker_pb2.WorkerServiceReleaseUnsealedResponse(
            call_id=self._accept("ReleaseUnsealed", request, context).call_id
        )

    async def MoveStorage(self, request: W.MoveStorageRequest, context: Context) -> W.MoveStorageResponse:
        return worker_pb2.MoveStorageResponse(call_id=self._accept("MoveStorage", request, context).call_id)

    async def UnsealPiece(
        self, request: W.WorkerServiceUnsealPieceRequest, context: Context
    ) -> W.WorkerServiceUnsealPieceResponse:
        return worker_pb2.WorkerServiceUnsealPieceResponse(
            call_id=self._accept("UnsealPiece", request, context).call_id
        )

    async def Fetch(self, request: W.FetchRequest, context: Context) -> W.FetchResponse:
        return W.FetchResponse(call_id=self._accept("Fetch", request, context).call_id)

    def _fetched(self, request: W.FetchRequest) -> None:
        """The fetched files are now here (and, for a move, only here), as a real worker's Fetch
        leaves them declared in the index."""
        assert self.index is not None
        entry = self.index.files.setdefault((request.sector.id.miner, request.sector.id.number), {})
        for t in request.types:
            kind = FileType(int(t))
            if request.mode == W.FETCH_MODE_MOVE or kind not in entry:
                entry[kind] = set()
            entry[kind].add(self.storage_id)

    async def AddPiece(
        self, request_iterator: AsyncIterator[W.WorkerServiceAddPieceRequest], context: Context
    ) -> W.WorkerServiceAddPieceResponse:
        header: W.WorkerServiceAddPieceHeader | None = None
        data = bytearray()
        async for message in request_iterator:
            if header is None:
                header = message.header
                continue
            data.extend(message.chunk.data)
        assert header is not None
        if len(data) != header.piece_size:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"got {len(data)} of {header.piece_size} bytes")
        padded = header.piece_size // 127 * 128
        commp = rust_core.piece_commitment(bytes(data), padded)  # the real commP, as a worker's
        piece = common_pb2.PieceInfo(size=padded, piece_cid=unsealed_cid(commp), commp=commp)
        wrapped = worker_pb2.WorkerServiceAddPieceRequest(header=header)
        self.piece_bytes = bytes(data)
        assignment = self._accept_piece(wrapped, piece)
        return worker_pb2.WorkerServiceAddPieceResponse(call_id=assignment.call_id)

    def _accept_piece(
        self, wrapped: W.WorkerServiceAddPieceRequest, piece: common_pb2.PieceInfo
    ) -> worker_pb2.TaskAssignment:
        assignment = wrapped.header.assignment
        call_id = assignment.call_id.id
        if call_id not in self.calls:
            self.calls[call_id] = "AddPiece"
            self.assignments[call_id] = assignment
            self.running.add(call_id)
            task = asyncio.create_task(self._run("AddPiece", piece, assignment))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return assignment

    async def AbortCall(self, request: W.AbortCallRequest, context: Context) -> W.AbortCallResponse:
        # A gated task returns ABORTED once released (see _run).
        self.aborted.append(request.call_id.id)
        return worker_pb2.AbortCallResponse(found=request.call_id.id in self.running)

    async def ListCallResults(
        self, request: W.ListCallResultsRequest, context: Context
    ) -> AsyncIterator[W.ListCallResultsResponse]:
        for stored in list(self.results.values()):
            yield worker_pb2.ListCallResultsResponse(result=stored)

    async def AckCallResult(self, request: W.AckCallResultRequest, context: Context) -> W.AckCallResultResponse:
        deleted = 0
        for cid in request.call_ids:
            if self.results.pop(cid.id, None) is not None:
                deleted += 1
        return worker_pb2.AckCallResultResponse(deleted=deleted)

    async def Remove(self, request: W.WorkerServiceRemoveRequest, context: Context) -> W.WorkerServiceRemoveResponse:
        removed: list[common_pb2.RemovedSectorFile] = []
        if self.index is not None:
            entry = self.index.files.get((request.sector.miner, request.sector.number), {})
            for t, paths in entry.items():
                if self.storage_id in paths:
                    paths.discard(self.storage_id)
                    removed.append(common_pb2.RemovedSectorFile(storage_id=self.storage_id, type=int(t)))  # type: ignore[arg-type]
        return worker_pb2.WorkerServiceRemoveResponse(removed=removed)

    async def IsAllocated(self, request: W.IsAllocatedRequest, context: Context) -> W.IsAllocatedResponse:
        present = False
        if self.index is not None:
            entry = self.index.files.get((request.sector.id.miner, request.sector.id.number), {})
            present = self.storage_id in entry.get(FileType.UNSEALED, set())
        return worker_pb2.IsAllocatedResponse(allocated=present, file_present=present)

    async def GenerateVanillaProofs(
        self, request: W.GenerateVanillaProofsRequest, context: Context
    ) -> AsyncIterator[W.GenerateVanillaProofsResponse]:
        if not self.vanilla_enabled:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "GenerateVanillaProofs is off on this fake")
        for s in request.sectors:
            number = s.sector.id.number
            self.vanilla_asked[number] += 1
            delay = self.vanilla_delays.get(number, 0.0)
            if delay:
                await asyncio.sleep(delay)
            proof = fake_vanilla_proof(int(request.proof_type), int(s.sector.proof_type), s)
            if number in self.vanilla_bad:
                proof = proof[:-32] + bytes(b ^ 0xFF for b in proof[-32:])
            yield worker_pb2.GenerateVanillaProofsResponse(sector=s.sector.id, vanilla_proof=proof)

    async def ReadPiece(
        self, request: W.WorkerServiceReadPieceRequest, context: Context
    ) -> AsyncIterator[W.WorkerServiceReadPieceResponse]:
        data = self.piece_bytes[request.range.offset : request.range.offset + request.range.size]
        data = data.ljust(request.range.size, b"\x00")
        for start in range(0, len(data), 1000):
            yield worker_pb2.WorkerServiceReadPieceResponse(
                chunk=common_pb2.Chunk(offset=start, data=data[start : start + 1000])
            )


def fake_vanilla_proof(post_proof: int, seal_proof: int, s: common_pb2.ProvingSector) -> bytes:
    """A vanilla proof's header (rust_core/src/porep/post.rs: "SSPV", version 1, kind 1 window or
    2 winning, sector size) over a section naming the sector and its comm_r."""
    kind = 1 if post_proof <= 9 else 2
    head = b"SSPV" + struct.pack("<HBQ", 1, kind, SealProof(seal_proof).sector_size)
    return head + struct.pack("<Q", s.sector.id.number) + s.comm_r


def verify_fake_vanilla_proof(
    sector_size: int, randomness: bytes, prover: bytes, sector: tuple[int, bytes], proof: bytes, kind: str
) -> bool:
    """The manager's per-proof check for the fake's proofs (they carry no Merkle paths for
    rust_core to verify): the header's kind and size, and the sector's number and comm_r."""
    expected = b"SSPV" + struct.pack("<HBQ", 1, 1 if kind == "window" else 2, sector_size)
    return proof == expected + struct.pack("<Q", sector[0]) + sector[1]


# --- the manager in-process -------------------------------------------------------------------


@dataclass(frozen=True)
class SeededSector:
    """What the requests of the next steps of a seeded sector must carry."""

    ref: common_pb2.SectorRef
    pieces: list[common_pb2.PieceInfo]
    ticket: bytes
    seed: bytes
    pc1_output: bytes
    comm_r: bytes
    comm_d: bytes
    c1_output: bytes
    c2_proof: bytes


class InProcessManager:
    """A ManagerApp on the common bootstrap in this event loop (for unit-level service tests)."""

    def __init__(self, data_dir: Path, settings: ManagerSection | None = None) -> None:
        self.config = ManagerConfig(
            listen="127.0.0.1:0",
            data_dir=data_dir,
            shutdown_grace=0.5,
            metrics=MetricsConfig(listen=""),
            auth=AuthConfig(secret=TEST_SECRET),
            manager=settings
            or ManagerSection(
                heartbeat_interval_s=0.2, heartbeat_timeout_s=2.0, retry_backoff_initial_s=0.05, retry_backoff_max_s=0.2
            ),
        )
        self.app: ManagerApp | None = None
        self.host: ServiceHost | None = None
        self.task: asyncio.Task[None] | None = None
        self.channel: grpc.aio.Channel | None = None
        self.stub: manager_pb2_grpc.ManagerServiceAsyncStub | None = None

    @property
    def address(self) -> str:
        assert self.host is not None and self.host.runtime is not None
        return self.host.runtime.address

    @property
    def runner(self) -> JobRunner:
        assert self.app is not None
        return self.app.runner

    async def start(self, index: FakeIndex | None = None) -> InProcessManager:
        self.app = ManagerApp(self.config, index=index)
        self.app.proving.verify_vanilla = verify_fake_vanilla_proof
        self.host = ServiceHost(self.app, self.config)
        self.task = asyncio.create_task(self.host.run())
        while self.host.runtime is None or not self.app.ready.is_set():
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        self.channel = aio_channel(self.address, token(Permission.ADMIN))
        self.stub = manager_pb2_grpc.ManagerServiceStub(self.channel)
        return self

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.host is not None and self.host.runtime is not None:
            self.host.runtime.stopping.set()
        if self.task is not None:
            await self.task

    async def crash(self) -> None:
        """Stops serving at once without any clean-up (kill -9 as seen from the database: what
        is written is what a new process finds)."""
        assert self.task is not None and self.host is not None and self.host.server is not None and self.app is not None
        self.task.cancel()
        for loop_task in self.app._loops:
            loop_task.cancel()
        for background in (self.app._campaign_task, self.app._database_watch):
            if background is not None:
                background.cancel()
        await self.host.server.stop(0)
        await self.app.runner.close()
        self.app.db.close()
        if self.app.ownership is not None:  # the kernel drops a dead process's file lock
            self.app.ownership.close()

    async def seed(
        self,
        ref: common_pb2.SectorRef,
        through: str,
        *,
        ticket: bytes = bytes([0x11] * 32),
        seed: bytes = bytes([0x22] * 32),
        pc1_output: bytes = b"p1o",
        comm_r: bytes = bytes(32),
        comm_d: bytes = bytes(32),
        c1_output: bytes = b"c1o",
        c2_proof: bytes = bytes(192),
    ) -> SeededSector:
        """Puts a sector's lifecycle at a step without running the steps before it (for tests
        of scheduling and recovery that start mid-pipeline): each step is stored as a finished
        work through the store, as the tracker stores a real one, and the work row then dropped. `through` is the
        last step done: "pieces", "pc1", "pc2", "c1" or "c2". Its one piece fills the sector,
        with commP = SHA-256("piece-<number>")."""
        assert self.app is not None
        store = self.app.store
        miner, number, proof = ref.id.miner, ref.id.number, int(ref.proof_type)
        record = await store.sector(miner, number)
        record = await store.claim_sector(miner, number, proof, record.generation if record else 0)
        size = SealProof(proof).sector_size
        commp = hashlib.sha256(f"piece-{number}".encode()).digest()
        piece = common_pb2.PieceInfo(size=size, commp=commp, piece_cid=unsealed_cid(commp))
        out = SeededSector(ref, [piece], ticket, seed, pc1_output, comm_r, comm_d, c1_output, c2_proof)
        commitments = common_pb2.SectorCommitments(
            comm_r=comm_r, comm_d=comm_d, unsealed_cid=unsealed_cid(comm_d), sealed_cid=sealed_cid(comm_r)
        )
        steps: list[tuple[str, Message, bytes]] = [
            (
                "AddPiece",
                worker_pb2.WorkerServiceAddPieceHeader(sector=ref, piece_size=size // 128 * 127),
                piece.SerializeToString(),
            ),
            (
                "SealPreCommit1",
                worker_pb2.WorkerServiceSealPreCommit1Request(sector=ref, ticket=ticket, pieces=[piece]),
                pc1_output,
            ),
            (
                "SealPreCommit2",
                worker_pb2.WorkerServiceSealPreCommit2Request(sector=ref, pre_commit1_output=pc1_output),
                commitments.SerializeToString(),
            ),
            (
                "SealCommit1",
                worker_pb2.WorkerServiceSealCommit1Request(
                    sector=ref, ticket=ticket, seed=seed, pieces=[piece], comm_r=comm_r, comm_d=comm_d
                ),
                c1_output,
            ),
            ("SealCommit2", worker_pb2.WorkerServiceSealCommit2Request(sector=ref, commit1_output=c1_output), c2_proof),
        ]
        last = ["pieces", "pc1", "pc2", "c1", "c2"].index(through)
        await record_steps(store, miner, number, proof, record.generation, steps[: last + 1])
        return out

    async def close_client(self) -> None:
        if self.channel is not None:
            await self.channel.close()
