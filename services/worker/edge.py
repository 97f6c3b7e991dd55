"""Where gRPC errors of calls to other services become domain errors (failures.CallFailed):
used by the client modules (index_client.py, peers.py) on every call they make, so nothing
behind them sees a grpc.aio.AioRpcError."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import grpc

from services.common import errors
from services.common.dependency import UNAVAILABLE_CODES
from services.worker.failures import CallFailed

P = ParamSpec("P")
T = TypeVar("T")


def call_failed(exc: grpc.aio.AioRpcError, dependency: str, address: str = "") -> CallFailed:
    """The domain error for a failed call to `dependency` (e.g. "index") at `address`."""
    details = exc.details() or ""
    return CallFailed(
        dependency,
        address,
        exc.code().name,
        details,
        errors.from_status(exc.code(), details),
        exc.code() in UNAVAILABLE_CODES,
    )


def translated(
    dependency: str, address: Callable[..., str] = lambda *args, **kwargs: ""
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorates a client's coroutine method so a failed gRPC call raises CallFailed (the
    AioRpcError as its cause); `address`, given the method's arguments (the client first),
    says where the service was called."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await fn(*args, **kwargs)
            except grpc.aio.AioRpcError as exc:
                raise call_failed(exc, dependency, address(*args, **kwargs)) from exc

        return wrapper

    return decorate
