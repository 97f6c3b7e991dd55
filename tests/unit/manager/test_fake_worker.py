"""The fake worker the manager's unit tests run against (tests/support/fake_worker.py) agrees
with the real WorkerService: each of its RPC methods is a WorkerService RPC with the proto's
request and response types (and streams where the proto streams), it serves every worker RPC the
manager's code calls (but the PoSt ones, listed below with why), and FakeIndex has the manager's
StorageIndex methods. A fake that drifted from the contract would let the manager's unit tests
pass against a worker that does not exist; mypy checks the same annotations against the
generated servicer (tests/support is type-checked)."""

from __future__ import annotations

import ast
import asyncio
import inspect
import typing
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc

from services.common.client import aio_channel
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from services.manager.index_client import FileType, StorageIndex
from tests.support.auth import token
from tests.support.fake_worker import FakeIndex, FakeWorker
from tests.support.paths import REPO

SERVICE = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"]
RPCS = {method.name: method for method in SERVICE.methods}
# Worker RPCs the manager calls that the fake does not serve. CheckProvable's stat of the files
# needs real sector files: the manager's PoSt is tested against real workers
# (tests/integration/manager/test_e2e.py, test_post_failover.py). The manager's unit tests must
# not reach these RPCs. (GenerateVanillaProofs is served with made-up proofs when a test turns
# it on, to count what a PoSt asks for; real proofs are the integration tests'.)
NOT_FAKED = {"StatSectorFile"}


def fake_rpcs() -> dict[str, Callable[..., object]]:
    """The RPC methods FakeWorker defines itself (not the generated UNIMPLEMENTED ones)."""
    return {name: fn for name, fn in vars(FakeWorker).items() if name in RPCS and callable(fn)}


def worker_rpcs_the_manager_calls() -> set[str]:
    """WorkerService RPC names in services/manager: attributes called on a `...stub` (direct
    calls) and string constants (the task calls dispatched by name, `getattr(stub, rpc)`)."""
    called: set[str] = set()
    for path in sorted((REPO / "services" / "manager").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in RPCS and ast.unparse(node.value).endswith("stub"):
                called.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RPCS:
                called.add(node.value)
    return called


def test_every_rpc_method_of_the_fake_has_the_protos_types() -> None:
    fakes = fake_rpcs()
    assert {"AddPiece", "SealPreCommit1", "AbortCall", "ListCallResults"} <= set(fakes)
    for name, fn in fakes.items():
        rpc = RPCS[name]
        request: object = getattr(worker_pb2, rpc.input_type.name)
        response: object = getattr(worker_pb2, rpc.output_type.name)
        if rpc.client_streaming:
            request = AsyncIterator[request]  # type: ignore[valid-type]
        if rpc.server_streaming:
            response = AsyncIterator[response]  # type: ignore[valid-type]
        hints = typing.get_type_hints(fn)
        _, request_param, _ = inspect.signature(fn).parameters
        assert (hints[request_param], hints["return"]) == (request, response), name
        # A streaming response is an async generator; any other RPC a coroutine.
        if rpc.server_streaming:
            assert inspect.isasyncgenfunction(fn), name
        else:
            assert inspect.iscoroutinefunction(fn), name
        assert hasattr(worker_pb2_grpc.WorkerServiceServicer, name)


def test_the_fake_has_no_rpc_like_method_the_proto_lacks() -> None:
    """A misspelt RPC name would never be called: every public CamelCase method is an RPC."""
    public = {name for name, fn in vars(FakeWorker).items() if callable(fn) and name[:1].isupper()}
    assert public - set(RPCS) == set()


def test_the_fake_serves_every_worker_rpc_the_manager_calls() -> None:
    called = worker_rpcs_the_manager_calls()
    # A control: the scan does see the manager's dispatch, its recovery and its aborts.
    assert {"SealPreCommit1", "AddPiece", "ListCallResults", "AckCallResult", "AbortCall"} <= called
    assert called - set(fake_rpcs()) == NOT_FAKED, "fake the new RPC, or list it in NOT_FAKED with why"


def test_fake_index_has_the_storage_index_methods() -> None:
    for name, member in vars(StorageIndex).items():
        if name.startswith("_") or not inspect.iscoroutinefunction(member):
            continue
        fake = getattr(FakeIndex, name)
        assert inspect.iscoroutinefunction(fake), name
        assert list(inspect.signature(fake).parameters) == list(inspect.signature(member).parameters), name


def test_fetch_on_the_fake_moves_or_copies_the_files_here(tmp_path: Path) -> None:
    """The one task RPC added with the surface check: a move leaves the files only here, a copy
    adds this path to their holders, as a real worker's Fetch leaves them declared."""

    async def main() -> None:
        index = FakeIndex()
        index.add_path("path-other", "127.0.0.1:1")
        index.declare(1000, 7, [FileType.SEALED, FileType.CACHE], "path-other")
        index.declare(1000, 8, [FileType.SEALED], "path-other")
        worker = await FakeWorker("a", "127.0.0.1:1", index).start(register=False)
        worker.return_enabled = False  # no manager: the outcome stays in the fake's call store
        try:
            async with aio_channel(worker.address, token()) as channel:
                stub = worker_pb2_grpc.WorkerServiceStub(channel)
                for number, mode in ((7, worker_pb2.FETCH_MODE_MOVE), (8, worker_pb2.FETCH_MODE_COPY)):
                    sector = common_pb2.SectorRef(id=common_pb2.SectorId(miner=1000, number=number))
                    call = common_pb2.CallId(sector=sector.id, id=f"fetch-{number}")
                    reply = await stub.Fetch(
                        worker_pb2.FetchRequest(
                            assignment=worker_pb2.TaskAssignment(call_id=call, attempt=1),
                            sector=sector,
                            types=[common_pb2.SECTOR_FILE_TYPE_SEALED],
                            mode=mode,
                        ),
                        timeout=10,
                    )
                    assert reply.call_id == call
            for _ in range(200):
                if not worker.running:
                    break
                await asyncio.sleep(0.01)
            assert worker.running == set()
            assert index.files[(1000, 7)] == {FileType.SEALED: {"path-a"}, FileType.CACHE: {"path-other"}}
            assert index.files[(1000, 8)] == {FileType.SEALED: {"path-other", "path-a"}}
            assert set(worker.results) == {"fetch-7", "fetch-8"}
            assert all(r.WhichOneof("outcome") == "done" for r in worker.results.values())
        finally:
            await worker.stop()

    asyncio.run(main())


def test_an_rpc_the_fake_does_not_serve_is_unimplemented(tmp_path: Path) -> None:
    """What the manager would see if a unit test reached an RPC in NOT_FAKED: UNIMPLEMENTED,
    never a made-up answer."""

    async def main() -> None:
        worker = await FakeWorker("a", "127.0.0.1:1").start(register=False)
        try:
            async with aio_channel(worker.address, token()) as channel:
                stub = worker_pb2_grpc.WorkerServiceStub(channel)
                try:
                    await stub.StatSectorFile(worker_pb2.StatSectorFileRequest(), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() is grpc.StatusCode.UNIMPLEMENTED
                else:
                    raise AssertionError("StatSectorFile answered")
        finally:
            await worker.stop()

    asyncio.run(main())
