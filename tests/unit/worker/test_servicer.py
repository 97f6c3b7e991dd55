"""The WorkerService handlers' refusals, driven through an in-process grpc.aio server on a real
socket (the status codes and messages a caller sees): a disabled task type, a worker shutting
down, a GPU it does not have, malformed request fields, a call it already knows, and a worker
without an index. No index, manager or rust_core work is involved: every refusal comes before
any task runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.worker.calls import CallId
from services.worker.callstore import CallStore, call_key
from services.worker.config import WorkerConfig
from services.worker.faults import ServeFault, TaskFault
from services.worker.identity import WorkerIdentity
from services.worker.local_store import LocalStore
from services.worker.messages import RESULT_CODEC, call_id_of
from services.worker.parts import Parts
from services.worker.paths import StorageList
from services.worker.resources import ALL_TASK_TYPES, EnabledTaskTypes, Gpu, Resources
from services.worker.runner import CallRunner
from services.worker.servicer import WorkerServicer, add_worker_service

TaskType = common_pb2.TaskType
if TYPE_CHECKING:  # the asynchronous stub's type exists in the type stubs only
    Stub = worker_pb2_grpc.WorkerServiceAsyncStub
    Scenario = Callable[[Stub, Parts], Awaitable[None]]
SECTOR = common_pb2.SectorRef(
    id=common_pb2.SectorId(miner=1000, number=7), proof_type=common_pb2.REGISTERED_SEAL_PROOF_STACKED_DRG_2KIB_V1_1
)


def make_parts(root: Path, task_types: tuple[int, ...], gpus: tuple[Gpu, ...]) -> Parts:
    calls = CallStore(root / "calls.db", RESULT_CODEC)
    return Parts(
        config=WorkerConfig(data_dir=root),
        identity=WorkerIdentity(worker_id=str(uuid.uuid4()), name="w"),
        resources=Resources(mem_physical=1 << 30, mem_swap=0, mem_reserved=0, cpus=2, gpus=gpus),
        overrides=[],
        task_types=EnabledTaskTypes(list(task_types)),
        local=LocalStore(StorageList(root / "storage.json")),
        calls=calls,
        runner=CallRunner(calls, lambda: None, "w"),
        fault=ServeFault(),
        task_fault=TaskFault(),
    )


def serve(
    tmp_path: Path,
    scenario: Scenario,
    task_types: tuple[int, ...] = ALL_TASK_TYPES,
    gpus: tuple[Gpu, ...] = (),
) -> None:
    """Runs `scenario` against a worker servicer (no index configured) on a local port."""

    async def main() -> None:
        parts = make_parts(tmp_path, task_types, gpus)
        server = grpc.aio.server()
        add_worker_service(WorkerServicer(parts), server)  # type: ignore[abstract]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await scenario(worker_pb2_grpc.WorkerServiceStub(channel), parts)
        finally:
            await server.stop(None)
            parts.calls.close()

    asyncio.run(main())


async def refused(call: Awaitable[object], code: grpc.StatusCode, words: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    assert words in (info.value.details() or ""), info.value.details()


async def add_piece(w: Stub, *messages: worker_pb2.WorkerServiceAddPieceRequest) -> object:
    """An AddPiece call that sends `messages` and closes its side (the messages are written
    before the answer is awaited, so a refusal ends the call, not the writing)."""
    call = w.AddPiece()
    for message in messages:
        await call.write(message)
    await call.done_writing()
    return await call


def header(piece_size: int = 1016) -> worker_pb2.WorkerServiceAddPieceRequest:
    return worker_pb2.WorkerServiceAddPieceRequest(
        header=worker_pb2.WorkerServiceAddPieceHeader(sector=SECTOR, piece_size=piece_size, assignment=assignment())
    )


def assignment(gpus: tuple[int, ...] = (), **fields: object) -> worker_pb2.TaskAssignment:
    call = common_pb2.CallId(sector=SECTOR.id, id=str(uuid.uuid4()))
    return worker_pb2.TaskAssignment(call_id=call, attempt=1, gpu_ordinals=list(gpus), **fields)  # type: ignore[arg-type]


def pc2(a: worker_pb2.TaskAssignment | None = None) -> worker_pb2.WorkerServiceSealPreCommit2Request:
    return worker_pb2.WorkerServiceSealPreCommit2Request(
        sector=SECTOR, pre_commit1_output=b"p1", assignment=a or assignment()
    )


def test_a_disabled_task_type_is_refused(tmp_path: Path) -> None:
    async def scenario(w: Stub, parts: Parts) -> None:
        await refused(
            w.SealPreCommit2(pc2()),
            grpc.StatusCode.FAILED_PRECONDITION,
            "task type TASK_TYPE_PRE_COMMIT_2 is disabled on this worker",
        )
        # Disabled at run time too, and enabled again.
        await w.DisableTaskType(worker_pb2.DisableTaskTypeRequest(task_types=[TaskType.TASK_TYPE_FINALIZE]))
        finalize = worker_pb2.WorkerServiceFinalizeSectorRequest(sector=SECTOR, assignment=assignment())
        await refused(w.FinalizeSector(finalize), grpc.StatusCode.FAILED_PRECONDITION, "TASK_TYPE_FINALIZE is disabled")
        reply = await w.EnableTaskType(worker_pb2.EnableTaskTypeRequest(task_types=[TaskType.TASK_TYPE_FINALIZE]))
        assert (
            TaskType.TASK_TYPE_FINALIZE in reply.task_types and TaskType.TASK_TYPE_PRE_COMMIT_2 not in reply.task_types
        )

    serve(tmp_path, scenario, task_types=tuple(t for t in ALL_TASK_TYPES if t != TaskType.TASK_TYPE_PRE_COMMIT_2))


def test_a_worker_shutting_down_refuses_new_tasks(tmp_path: Path) -> None:
    async def scenario(w: Stub, parts: Parts) -> None:
        parts.runner.shutting_down = True
        await refused(w.SealPreCommit2(pc2()), grpc.StatusCode.FAILED_PRECONDITION, "the worker is shutting down")
        await refused(add_piece(w, header()), grpc.StatusCode.FAILED_PRECONDITION, "the worker is shutting down")

    serve(tmp_path, scenario)


def test_an_unknown_gpu_ordinal_is_refused(tmp_path: Path) -> None:
    async def scenario(w: Stub, parts: Parts) -> None:
        await refused(
            w.SealPreCommit2(pc2(assignment(gpus=(0, 3)))),
            grpc.StatusCode.INVALID_ARGUMENT,
            "GPU ordinal 3 does not exist on this worker (it has [0])",
        )

    serve(tmp_path, scenario, gpus=(Gpu(name="g", ordinal=0, memory=1 << 30),))


def test_malformed_task_requests_are_invalid_argument(tmp_path: Path) -> None:
    async def scenario(w: Stub, parts: Parts) -> None:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        no_sector = worker_pb2.WorkerServiceSealPreCommit2Request(pre_commit1_output=b"p1", assignment=assignment())
        await refused(w.SealPreCommit2(no_sector), invalid, "sector (id and proof_type) is required")
        no_output = worker_pb2.WorkerServiceSealPreCommit2Request(sector=SECTOR, assignment=assignment())
        await refused(w.SealPreCommit2(no_output), invalid, "pre_commit1_output is required")
        no_call = worker_pb2.WorkerServiceSealPreCommit2Request(sector=SECTOR, pre_commit1_output=b"p1")
        await refused(w.SealPreCommit2(no_call), invalid, "assignment.call_id is required")
        bad_id = assignment()
        bad_id.call_id.id = "not-a-uuid"
        await refused(w.SealPreCommit2(pc2(bad_id)), invalid, "is not a UUID")
        other_sector = assignment()
        other_sector.call_id.sector.number = 8
        await refused(w.SealPreCommit2(pc2(other_sector)), invalid, "call_id.sector differs")
        bad_timeout = assignment(timeout=Duration(seconds=1, nanos=-5))
        await refused(w.SealPreCommit2(pc2(bad_timeout)), invalid, "assignment.timeout is not a valid duration")
        commit1 = worker_pb2.WorkerServiceSealCommit1Request(sector=SECTOR, ticket=b"abc", assignment=assignment())
        await refused(w.SealCommit1(commit1), invalid, "ticket must be 32 bytes, got 3")
        release = worker_pb2.WorkerServiceReleaseUnsealedRequest(sector=SECTOR, assignment=assignment())
        await refused(w.ReleaseUnsealed(release), invalid, "give exactly one of ranges (non-empty) and all")
        fetch = worker_pb2.FetchRequest(
            sector=SECTOR, types=[common_pb2.SECTOR_FILE_TYPE_SEALED], assignment=assignment()
        )
        await refused(w.Fetch(fetch), invalid, "path_type must be SEALING or STORAGE")
        proofs = worker_pb2.GenerateVanillaProofsRequest(
            proof_type=common_pb2.REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_2KIB_V1, randomness=b"r" * 32
        )
        await refused(w.GenerateVanillaProofs(proofs).read(), invalid, "sectors must not be empty")
        await refused(w.AbortCall(worker_pb2.AbortCallRequest()), invalid, "call_id is required")
        await refused(w.AckCallResult(worker_pb2.AckCallResultRequest()), invalid, "call_ids must not be empty")
        await refused(w.EnableTaskType(worker_pb2.EnableTaskTypeRequest()), invalid, "task_types must not be empty")
        await refused(
            w.DisableTaskType(worker_pb2.DisableTaskTypeRequest(task_types=[TaskType.ValueType(999)])),
            invalid,
            "unknown task type 999",
        )

    serve(tmp_path, scenario)


def test_a_malformed_add_piece_stream_is_invalid_argument(tmp_path: Path) -> None:
    async def scenario(w: Stub, parts: Parts) -> None:
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        chunk = worker_pb2.WorkerServiceAddPieceRequest(chunk=common_pb2.Chunk(offset=0, data=b"x"))
        await refused(add_piece(w), invalid, "empty stream: the first message must be the header")
        await refused(add_piece(w, chunk), invalid, "the first message must be the header")
        await refused(add_piece(w, header(2032 * 2)), invalid, "does not fit after the existing pieces")
        await refused(add_piece(w, header(1000)), invalid, "piece_size 1000 is not 127*2^k")

    serve(tmp_path, scenario)


def test_a_known_call_is_answered_with_its_id_and_not_run_again(tmp_path: Path) -> None:
    """A retried RPC of a call the worker already has (here: recorded as running) gets the call
    id back, even once its type is disabled: the first attempt's outcome is what counts."""

    async def scenario(w: Stub, parts: Parts) -> None:
        request = pc2()
        parts.calls.start(call_key(call_id_of(request.assignment.call_id)), worker_pb2.CALL_TYPE_SEAL_PRE_COMMIT_2, 0.0)
        reply = await w.SealPreCommit2(request)
        assert reply.call_id == request.assignment.call_id
        assert not parts.runner.running

    serve(tmp_path, scenario, task_types=())


def test_without_an_index_tasks_and_storage_are_unavailable(tmp_path: Path) -> None:
    async def scenario(w: Stub, parts: Parts) -> None:
        unavailable = grpc.StatusCode.UNAVAILABLE
        await refused(w.SealPreCommit2(pc2()), unavailable, "no index configured (worker.index)")
        attach = worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "p"))
        await refused(w.StorageAttachLocal(attach), unavailable, "storage paths cannot be attached")
        # The request is checked before the index is needed.
        relative = worker_pb2.StorageAttachLocalRequest(path="relative/p")
        await refused(w.StorageAttachLocal(relative), grpc.StatusCode.INVALID_ARGUMENT, "must be absolute")
        no_role = worker_pb2.StorageAttachLocalRequest(path=str(tmp_path / "p"), init=worker_pb2.StoragePathConfig())
        await refused(
            w.StorageAttachLocal(no_role), grpc.StatusCode.INVALID_ARGUMENT, "init needs can_seal or can_store"
        )

    serve(tmp_path, scenario)


def test_a_deposed_managers_assignments_are_refused(tmp_path: Path) -> None:
    """Managers fence their dispatches by lease epoch: once a worker saw epoch 5, an assignment
    of epoch 4 (a manager deposed since) is refused before anything starts, a task's or an
    AddPiece's; epoch 0 (not given) is not checked, and a higher epoch is taken."""

    def from_epoch(epoch: int) -> worker_pb2.TaskAssignment:
        return assignment(leader_epoch=epoch)

    async def scenario(w: Stub, parts: Parts) -> None:
        unavailable, stale = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION
        # Admitted (then refused for the missing index, which comes after the fence).
        await refused(w.SealPreCommit2(pc2(from_epoch(5))), unavailable, "no index configured")
        await refused(
            w.SealPreCommit2(pc2(from_epoch(4))), stale, "deposed manager (lease epoch 4; a manager with epoch 5"
        )
        await refused(w.SealPreCommit2(pc2(from_epoch(0))), unavailable, "no index configured")
        piece = worker_pb2.WorkerServiceAddPieceRequest(
            header=worker_pb2.WorkerServiceAddPieceHeader(sector=SECTOR, piece_size=1016, assignment=from_epoch(3))
        )
        await refused(add_piece(w, piece), stale, "lease epoch 3")
        await refused(w.SealPreCommit2(pc2(from_epoch(6))), unavailable, "no index configured")
        await refused(w.SealPreCommit2(pc2(from_epoch(5))), stale, "a manager with epoch 6 leads now")
        assert parts.runner.running_call_ids() == []

    serve(tmp_path, scenario)


def test_an_assignment_placed_on_another_session_of_this_worker_is_refused(tmp_path: Path) -> None:
    """The manager names the worker session it placed a call on: a dispatch that reaches a later
    run of the worker process (a resend, or one held in a reconnecting channel while the worker
    restarted) is refused before anything starts, a task's or an AddPiece's, since the manager
    retries that work as a new call; this session's own id and "" (not given) are admitted."""

    async def scenario(w: Stub, parts: Parts) -> None:
        unavailable, stale = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION
        own = parts.identity.session_id
        earlier = assignment()
        earlier.worker_session_id = "an-earlier-session"
        await refused(w.SealPreCommit2(pc2(earlier)), stale, "assignment for worker session an-earlier-session")
        await refused(w.SealPreCommit2(pc2(earlier)), stale, f"this worker process is session {own}")
        piece = worker_pb2.WorkerServiceAddPieceRequest(
            header=worker_pb2.WorkerServiceAddPieceHeader(sector=SECTOR, piece_size=1016, assignment=earlier)
        )
        await refused(add_piece(w, piece), stale, "restarted after the manager placed the call")
        assert parts.runner.running_call_ids() == []
        assert not parts.runner.known(CallId(SECTOR.id.miner, SECTOR.id.number, earlier.call_id.id))
        # Its own session, and none given: admitted (then refused for the missing index).
        current = assignment()
        current.worker_session_id = own
        await refused(w.SealPreCommit2(pc2(current)), unavailable, "no index configured")
        await refused(w.SealPreCommit2(pc2(assignment())), unavailable, "no index configured")

    serve(tmp_path, scenario)


def test_file_serving_refusals(tmp_path: Path) -> None:
    async def scenario(w: Stub, parts: Parts) -> None:
        cache = worker_pb2.ReadSectorFileRequest(sector=SECTOR.id, type=common_pb2.SECTOR_FILE_TYPE_CACHE)
        await refused(w.ReadSectorFile(cache).read(), grpc.StatusCode.FAILED_PRECONDITION, "the cache is a directory")
        sealed = worker_pb2.ReadSectorFileRequest(sector=SECTOR.id, type=common_pb2.SECTOR_FILE_TYPE_SEALED)
        await refused(w.ReadSectorFile(sealed).read(), grpc.StatusCode.NOT_FOUND, "no local sealed file")
        no_sector = worker_pb2.ReadSectorFileRequest(type=common_pb2.SECTOR_FILE_TYPE_SEALED)
        await refused(w.ReadSectorFile(no_sector).read(), grpc.StatusCode.INVALID_ARGUMENT, "sector is required")
        transfer = worker_pb2.OpenTransferRequest(sector=SECTOR.id, type=common_pb2.SECTOR_FILE_TYPE_SEALED)
        await refused(w.OpenTransfer(transfer), grpc.StatusCode.FAILED_PRECONDITION, "no bulk side channel")
        piece = worker_pb2.WorkerServiceReadPieceRequest(sector=SECTOR)
        await refused(w.ReadPiece(piece).read(), grpc.StatusCode.INVALID_ARGUMENT, "range is required")

    serve(tmp_path, scenario)


def test_information_answers(tmp_path: Path) -> None:
    async def scenario(w: Stub, parts: Parts) -> None:
        session = await w.Session(worker_pb2.SessionRequest())
        assert session.worker_id == parts.identity.worker_id and session.session_id == parts.identity.session_id
        types = await w.TaskTypes(worker_pb2.TaskTypesRequest())
        assert list(types.task_types) == [TaskType.TASK_TYPE_ADD_PIECE, TaskType.TASK_TYPE_FETCH]
        assert (await w.Paths(worker_pb2.PathsRequest())).paths == []

    serve(tmp_path, scenario, task_types=(TaskType.TASK_TYPE_FETCH, TaskType.TASK_TYPE_ADD_PIECE))
