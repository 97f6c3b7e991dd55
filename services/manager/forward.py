"""A standby manager serves the API by forwarding each call to the leader.

With several managers on one database exactly one leads (leadership.py); the others stand by.
Clients, workers and the Kubernetes Service may reach any of them: a standby passes every
ManagerService call on to the leader unchanged (the request's bytes, the caller's token, its
deadline) and relays the answer, streams included. So every manager is a working endpoint, a
rolling update always has ready managers, and a failover needs nothing from the callers but a
retry of the calls that were cut (UNAVAILABLE), which the call tracker's ids make safe.

The leader checks the caller's token itself (the standby checked it too, before forwarding):
forwarding grants nothing. A call is forwarded once at most (a header marks it): a manager that
gets a forwarded call while it does not lead answers UNAVAILABLE instead of passing it on, so
two managers with stale views never bounce a call between them. With no live leader (between a
leader's death and its lease running out) calls get UNAVAILABLE saying when to retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from services.common import tls
from services.common.db import DatabaseUnavailable
from services.common.grpc_options import client_options
from services.manager.leadership import Lease

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/sectorstorage.v1.ManagerService/"
# Calls every manager answers itself (what it sees of the leadership).
LOCAL_METHODS = frozenset({SERVICE_PREFIX + "Managers"})
FORWARDED_HEADER = "x-sectorstorage-forwarded-by"
# Metadata passed on to the leader: the caller's credentials and nothing transport-specific.
_PASSED = ("authorization",)

Context = grpc.aio.ServicerContext[Any, Any]


class NoLeader(Exception):
    """Nobody leads right now; the message says when to retry."""


class LeaderForwarder(grpc.aio.ServerInterceptor):
    """Server interceptor: while this manager does not lead, ManagerService calls go to the
    leader. `leading()` says whether this manager leads; `leader()` reads the lease."""

    def __init__(
        self,
        holder: str,
        leading: Callable[[], bool],
        leader: Callable[[], Awaitable[Lease]],
        clock: Callable[[], float],
    ) -> None:
        # Set once this manager knows whether it leads (its first try for the lease): calls that
        # arrive earlier wait for that instead of guessing.
        self.decided = asyncio.Event()
        self.holder = holder
        self.leading = leading
        self.leader = leader
        self.clock = clock
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(SERVICE_PREFIX) or details.method in LOCAL_METHODS:
            return handler
        await self.decided.wait()
        if self.leading():
            return handler
        return self._forwarding(handler, details.method)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    # -- the leader's channel ------------------------------------------------------------------

    async def _target(self, context: Context) -> grpc.aio.Channel:
        metadata = {k: str(v) for k, v in (context.invocation_metadata() or ())}
        if FORWARDED_HEADER in metadata:
            raise NoLeader(
                f"manager {self.holder} does not lead either (the call was forwarded by {metadata[FORWARDED_HEADER]}): "
                "the leadership is changing, retry"
            )
        try:
            lease = await self.leader()
        except DatabaseUnavailable as exc:
            raise NoLeader(
                f"manager {self.holder} cannot read who leads (its database is unavailable): {exc}"
            ) from None
        now = self.clock()
        if not lease.live(now) or lease.holder == self.holder or not lease.address:
            left = max(0.0, lease.expires_at - now) if lease.holder else 0.0
            raise NoLeader(
                "no manager leads right now"
                + (f" (the lease of {lease.holder} runs out in {left:.1f} s)" if left else "")
                + ": retry in a few seconds"
            )
        channel = self._channels.get(lease.address)
        if channel is None:
            credentials = tls.client_credentials()
            options = client_options()
            channel = (
                grpc.aio.secure_channel(lease.address, credentials, options=options)
                if credentials is not None
                else grpc.aio.insecure_channel(lease.address, options=options)
            )
            self._channels[lease.address] = channel
        return channel

    def _metadata(self, context: Context) -> list[tuple[str, str]]:
        passed = [(k, str(v)) for k, v in (context.invocation_metadata() or ()) if k.lower() in _PASSED]
        return [*passed, (FORWARDED_HEADER, self.holder)]

    def _forwarding(self, template: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
        """A handler of `template`'s streaming shape that relays raw bytes to the leader."""

        async def refuse(context: Context, exc: Exception) -> None:
            if isinstance(exc, NoLeader):
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            if isinstance(exc, grpc.aio.AioRpcError):
                await context.abort(exc.code(), exc.details() or "")
            raise exc

        async def unary_unary(request: bytes, context: Context) -> bytes:
            try:
                channel = await self._target(context)
                call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
                reply: bytes = await call(request, timeout=context.time_remaining(), metadata=self._metadata(context))
                return reply
            except (NoLeader, grpc.aio.AioRpcError) as exc:
                await refuse(context, exc)
                raise

        async def unary_stream(request: bytes, context: Context) -> AsyncIterator[bytes]:
            try:
                channel = await self._target(context)
                open_stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(method)
                stream = open_stream(request, timeout=context.time_remaining(), metadata=self._metadata(context))
                async for message in stream:
                    yield message
            except (NoLeader, grpc.aio.AioRpcError) as exc:
                await refuse(context, exc)

        async def stream_unary(requests: AsyncIterator[bytes], context: Context) -> bytes:
            try:
                channel = await self._target(context)
                upload: grpc.aio.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(method)
                reply: bytes = await upload(
                    requests, timeout=context.time_remaining(), metadata=self._metadata(context)
                )
                return reply
            except (NoLeader, grpc.aio.AioRpcError) as exc:
                await refuse(context, exc)
                raise

        async def stream_stream(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
            try:
                channel = await self._target(context)
                open_both: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(method)
                both = open_both(requests, timeout=context.time_remaining(), metadata=self._metadata(context))
                async for message in both:
                    yield message
            except (NoLeader, grpc.aio.AioRpcError) as exc:
                await refuse(context, exc)

        if template.unary_unary:
            return grpc.unary_unary_rpc_method_handler(unary_unary)
        if template.unary_stream:
            return grpc.unary_stream_rpc_method_handler(unary_stream)
        if template.stream_unary:
            return grpc.stream_unary_rpc_method_handler(stream_unary)
        return grpc.stream_stream_rpc_method_handler(stream_stream)
