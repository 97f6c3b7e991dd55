"""Channels to other services that carry a bearer token on every call (sync for the CLI and
tests, aio for services calling each other)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from services.common import tls
from services.common.grpc_options import client_options

_HEADER = "authorization"


def _with_token(metadata: Any, token: str) -> list[tuple[str, str]]:
    items = [(k, v) for k, v in (metadata or ()) if k.lower() != _HEADER]
    items.append((_HEADER, f"Bearer {token}"))
    return items


class _SyncToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, d: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        return _SyncDetails(
            d.method, d.timeout, _with_token(d.metadata, self._token), d.credentials, d.wait_for_ready, d.compression
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], d: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(d), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], d: grpc.ClientCallDetails, request: Any) -> Any:
        return continuation(self._details(d), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], d: grpc.ClientCallDetails, requests: Iterator[Any]
    ) -> Any:
        return continuation(self._details(d), requests)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], d: grpc.ClientCallDetails, requests: Iterator[Any]
    ) -> Any:
        return continuation(self._details(d), requests)


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(
        self, method: str, timeout: float | None, metadata: Any, credentials: Any, wait_for_ready: Any, compression: Any
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


class _AioTokenBase:
    def __init__(self, token: str) -> None:
        self._token = token

    def _details(self, d: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*_with_token(d.metadata, self._token))
        return grpc.aio.ClientCallDetails(d.method, d.timeout, metadata, d.credentials, d.wait_for_ready)


# grpc.aio files an interceptor under the first call kind it implements (an if/elif chain on
# isinstance), so one class implementing all four kinds would only see unary-unary calls and
# streaming calls would go out without a token: one class per kind.
class _AioTokenUnaryUnary(_AioTokenBase, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, d: grpc.aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(self._details(d), request)


class _AioTokenUnaryStream(_AioTokenBase, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, d: grpc.aio.ClientCallDetails, request: Any) -> Any:
        return await continuation(self._details(d), request)


class _AioTokenStreamUnary(_AioTokenBase, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, d: grpc.aio.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(d), request_iterator)


class _AioTokenStreamStream(_AioTokenBase, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, d: grpc.aio.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(d), request_iterator)


def sync_channel(target: str, token: str | None, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    """A channel carrying `token`; TLS with `credentials`, else with the process's (tls.py)."""
    credentials = credentials or tls.client_credentials()
    if credentials is not None:
        channel = grpc.secure_channel(target, credentials, options=client_options())
    else:
        channel = grpc.insecure_channel(target, options=client_options())
    return grpc.intercept_channel(channel, _SyncToken(token)) if token else channel


def aio_channel(target: str, token: str | None, credentials: grpc.ChannelCredentials | None = None) -> grpc.aio.Channel:
    """As sync_channel, for services calling each other."""
    interceptors: list[Any] | None = (
        [
            _AioTokenUnaryUnary(token),
            _AioTokenUnaryStream(token),
            _AioTokenStreamUnary(token),
            _AioTokenStreamStream(token),
        ]
        if token
        else None
    )
    credentials = credentials or tls.client_credentials()
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=client_options(), interceptors=interceptors)
    return grpc.aio.insecure_channel(target, options=client_options(), interceptors=interceptors)
