"""The fleet's domain errors and the one place they become gRPC statuses.

Domain code raises these plain exceptions (it never imports grpc); each service's servicer wraps
its handlers in `status_errors`, which aborts the call with the error's status and its message
(the message says what to fix). A service may add its own exception types to the table (e.g. a
third-party error it cannot subclass); anything unmapped is logged and answered INTERNAL, never a
crash of the handler. Clients of other services translate `grpc.aio.AioRpcError` into these at
their edge (`from_rpc_error`), so domain code catches domain errors only.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import grpc

from services.common.db import DatabaseUnavailable

log = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
F = TypeVar("F", bound=Callable[..., Any])


class DomainError(Exception):
    """A request the service refuses or cannot serve; `str(error)` says what to fix."""

    code = grpc.StatusCode.INTERNAL


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DomainError):
    """A conflict with concurrent work; retrying the whole operation may succeed."""

    code = grpc.StatusCode.ABORTED


class OutOfRange(DomainError):
    code = grpc.StatusCode.OUT_OF_RANGE


class DeadlineExceeded(DomainError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """Cannot serve this now (shutting down, a dependency down); retry, possibly elsewhere."""

    code = grpc.StatusCode.UNAVAILABLE


class Cancelled(DomainError):
    code = grpc.StatusCode.CANCELLED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unimplemented(DomainError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(DomainError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[DomainError]] = {
    kind.code: kind
    for kind in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        DeadlineExceeded,
        ResourceExhausted,
        Unavailable,
        Cancelled,
        PermissionDenied,
        Unimplemented,
        Internal,
    )
}

Table = Sequence[tuple[type[BaseException], grpc.StatusCode]]


def from_status(code: grpc.StatusCode, message: str) -> DomainError:
    """The domain error for a status another service answered (a client edge's translation)."""
    return _BY_CODE.get(code, DomainError)(message)


def from_rpc_error(exc: grpc.aio.AioRpcError, what: str = "") -> DomainError:
    """`from_status` for a failed call; `what` prefixes the message with the call's purpose."""
    details = exc.details() or exc.code().name
    return from_status(exc.code(), f"{what}: {details}" if what else details)


def status_of(
    exc: BaseException, table: Table = (), database: str = "the service's"
) -> tuple[grpc.StatusCode, str] | None:
    """The status `exc` maps to, or None for an unexpected error (a bug: INTERNAL, logged)."""
    if isinstance(exc, DomainError):
        return exc.code, str(exc)
    for kind, code in table:
        if isinstance(exc, kind):
            return code, str(exc)
    if isinstance(exc, DatabaseUnavailable):
        return grpc.StatusCode.UNAVAILABLE, f"{database} database unavailable, retry later: {exc}"
    return None


async def abort_with(
    context: Context, exc: BaseException, method: str, table: Table = (), database: str = "the service's"
) -> NoReturn:
    """Ends the call with the status of `exc` (INTERNAL and a logged traceback if unmapped)."""
    mapped = status_of(exc, table, database)
    if mapped is None:
        log.error("internal error", exc_info=exc, extra={"method": method})
        mapped = grpc.StatusCode.INTERNAL, f"internal error in {method}: {type(exc).__name__}: {exc}"
    await context.abort(*mapped)
    raise AssertionError("unreachable")  # pragma: no cover - abort raises


def status_errors(table: Table = (), database: str = "the service's") -> Callable[[F], F]:
    """Decorates a servicer handler (coroutine or async generator, signature
    `(self, request, context)`) so every error it raises becomes a status (see module doc);
    `database` names whose database an outage message is about."""

    def decorate(fn: F) -> F:
        method = fn.__name__
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def stream(self: Any, request: Any, context: Context) -> AsyncIterator[Any]:
                try:
                    async for item in fn(self, request, context):
                        yield item
                except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - every error becomes a status
                    await abort_with(context, exc, method, table, database)

            return stream  # type: ignore[return-value]

        @functools.wraps(fn)
        async def unary(self: Any, request: Any, context: Context) -> Any:
            try:
                return await fn(self, request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - every error becomes a status
                await abort_with(context, exc, method, table, database)

        return unary  # type: ignore[return-value]

    return decorate
