"""Prometheus metrics: an HTTP /metrics endpoint on its own port, and per-RPC counters and
latencies recorded by a server interceptor so every service reports the same RPC metrics."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Histogram, start_http_server

from services.common.config import parse_host_port

RPC_STARTED = Counter("sectorstorage_rpc_started_total", "RPCs started", ["service", "method"])
RPC_HANDLED = Counter("sectorstorage_rpc_handled_total", "RPCs finished, by status code", ["service", "method", "code"])
RPC_SECONDS = Histogram(
    "sectorstorage_rpc_duration_seconds",
    "Time to handle an RPC (unary) or to open a stream",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def start_metrics_server(listen: str) -> tuple[str, int] | None:
    """Serves /metrics; returns the bound (host, port), or None when disabled by an empty listen."""
    if not listen:
        return None
    host, port = parse_host_port(listen)
    server, _thread = start_http_server(port, addr=host)
    return host, int(server.server_port)


def _split(method: str) -> tuple[str, str]:
    _, service, name = method.split("/", 2) if method.count("/") >= 2 else ("", "unknown", method)
    return service, name


def _code_of(context: grpc.aio.ServicerContext[Any, Any], default: str = "OK") -> str:
    code = context.code()
    if code is None:
        return default
    return code.name if isinstance(code, grpc.StatusCode) else str(code)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, name = _split(handler_call_details.method)
        if handler.unary_unary:
            # aio handlers are coroutines; the stubs type them as sync ones.
            inner: Callable[..., Any] = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                RPC_STARTED.labels(service, name).inc()
                start = time.perf_counter()
                code = "UNKNOWN"
                try:
                    result = inner(request, context)
                    if inspect.isawaitable(result):
                        result = await result
                    code = _code_of(context)
                    return result
                except BaseException:
                    code = _code_of(context, default="UNKNOWN")
                    raise
                finally:
                    RPC_SECONDS.labels(service, name).observe(time.perf_counter() - start)
                    RPC_HANDLED.labels(service, name, code).inc()

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # Streaming calls: count them; their duration is the client's business.
        RPC_STARTED.labels(service, name).inc()
        return handler
