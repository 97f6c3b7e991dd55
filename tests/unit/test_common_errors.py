"""services/common/errors.py: every domain error reaches the client as its status and message,
from unary and streaming handlers, over a real socket; unexpected errors become INTERNAL without
taking the server down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.common import errors
from services.common.db import DatabaseUnavailable


class ThirdParty(Exception):
    """An error type a service cannot subclass: mapped through the decorator's table."""


RAISED: dict[str, BaseException] = {
    "invalid": errors.InvalidArgument("field x: must be positive"),
    "missing": errors.NotFound("sector s-t01-1 not found"),
    "conflict": errors.Aborted("another call holds the sector"),
    "database": DatabaseUnavailable("connection refused"),
    "third": ThirdParty("disk full"),
    "bug": ZeroDivisionError("division by zero"),
}

TABLE = [(ThirdParty, grpc.StatusCode.RESOURCE_EXHAUSTED)]


class Handlers:
    @errors.status_errors(TABLE, database="the test's")
    async def unary(self, request: bytes, context: Any) -> bytes:
        raise RAISED[request.decode()]

    @errors.status_errors(TABLE, database="the test's")
    async def stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b"first"
        raise RAISED[request.decode()]


def _identity(b: bytes) -> bytes:
    return b


async def _serve() -> tuple[grpc.aio.Server, int]:
    handlers = Handlers()
    server = grpc.aio.server()
    generic = grpc.method_handlers_generic_handler(
        "test.Errors",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(handlers.unary, _identity, _identity),
            "Stream": grpc.unary_stream_rpc_method_handler(handlers.stream, _identity, _identity),
        },
    )
    server.add_generic_rpc_handlers((generic,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


EXPECTED = {
    "invalid": (grpc.StatusCode.INVALID_ARGUMENT, "field x: must be positive"),
    "missing": (grpc.StatusCode.NOT_FOUND, "sector s-t01-1 not found"),
    "conflict": (grpc.StatusCode.ABORTED, "another call holds the sector"),
    "database": (grpc.StatusCode.UNAVAILABLE, "the test's database unavailable, retry later: connection refused"),
    "third": (grpc.StatusCode.RESOURCE_EXHAUSTED, "disk full"),
    "bug": (grpc.StatusCode.INTERNAL, "internal error in unary: ZeroDivisionError: division by zero"),
}


def test_each_error_reaches_the_client_as_its_status() -> None:
    async def run() -> None:
        server, port = await _serve()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                unary: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Errors/Unary")
                stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream("/test.Errors/Stream")
                for key, (code, message) in EXPECTED.items():
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await unary(key.encode())
                    assert (info.value.code(), info.value.details()) == (code, message)
                    got: list[bytes] = []
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        async for item in stream(key.encode()):
                            got.append(item)
                    assert got == [b"first"], "items before the error still arrive"
                    assert info.value.code() == code
                    assert info.value.details() == message.replace("in unary", "in stream")
                # The server survived every error above.
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await unary(b"invalid")
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            await server.stop(None)

    asyncio.run(run())


def test_client_edge_translation_round_trips_every_code() -> None:
    for kind in (
        errors.InvalidArgument,
        errors.NotFound,
        errors.AlreadyExists,
        errors.FailedPrecondition,
        errors.Aborted,
        errors.OutOfRange,
        errors.DeadlineExceeded,
        errors.ResourceExhausted,
        errors.Unavailable,
        errors.Cancelled,
        errors.PermissionDenied,
        errors.Unimplemented,
        errors.Internal,
    ):
        back = errors.from_status(kind.code, "why")
        assert type(back) is kind and str(back) == "why"
    assert type(errors.from_status(grpc.StatusCode.UNKNOWN, "?")) is errors.DomainError
