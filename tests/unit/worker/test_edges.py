"""The worker's client edges: a failed call to the index or a peer becomes failures.CallFailed
(the other service's answer as a domain error), which a task classifies as TEMPORARY and a
handler answers UNAVAILABLE, with the same messages a raw gRPC error gave before."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.common import errors
from services.common.errors import status_of
from services.common.proto.sectorstorage.v1 import common_pb2
from services.worker.edge import call_failed, translated
from services.worker.failures import CallFailed
from services.worker.tasks import classify


def rpc_error(code: grpc.StatusCode, details: str = "from the fake") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_a_failed_call_carries_the_answer_as_a_domain_error() -> None:
    missing = call_failed(rpc_error(grpc.StatusCode.NOT_FOUND, "no such file"), "peer", "10.0.0.2:7000")
    assert missing.answered(errors.NotFound) and not missing.answered(errors.ResourceExhausted)
    assert not missing.unreachable and (missing.status, missing.details) == ("NOT_FOUND", "no such file")
    assert str(missing) == "a dependency failed: NOT_FOUND: no such file"
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert call_failed(rpc_error(code), "index").unreachable


def test_its_log_line_names_the_dependency() -> None:
    down = call_failed(rpc_error(grpc.StatusCode.UNAVAILABLE, "connect failed"), "index", "127.0.0.1:1")
    message, extra = down.describe("storage heartbeat failed; retrying in 10 s")
    assert message == "index 127.0.0.1:1 unavailable (UNAVAILABLE): storage heartbeat failed; retrying in 10 s"
    assert extra == {"dependency": "index", "address": "127.0.0.1:1", "code": "UNAVAILABLE", "error": "connect failed"}


def test_a_handler_answers_unavailable_and_a_task_fails_temporary() -> None:
    failed = call_failed(rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad lease"), "index")
    assert status_of(failed) == (grpc.StatusCode.UNAVAILABLE, "a dependency failed: INVALID_ARGUMENT: bad lease")
    outcome = classify(failed)
    assert outcome.code == common_pb2.TASK_ERROR_CODE_TEMPORARY
    assert outcome.message == "index or peer call failed: INVALID_ARGUMENT: bad lease"


def test_translated_methods_raise_call_failed_with_the_rpc_error_as_cause() -> None:
    class Client:
        address = "10.0.0.9:7001"

        @translated("index", lambda client, *args, **kwargs: client.address)
        async def call(self, code: grpc.StatusCode | None) -> str:
            if code is not None:
                raise rpc_error(code)
            return "ok"

    client = Client()
    assert asyncio.run(client.call(None)) == "ok"
    with pytest.raises(CallFailed) as info:
        asyncio.run(client.call(grpc.StatusCode.RESOURCE_EXHAUSTED))
    assert info.value.answered(errors.ResourceExhausted) and info.value.address == "10.0.0.9:7001"
    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)
