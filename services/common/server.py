"""One bootstrap for every service: a grpc.aio server with auth and metrics interceptors,
grpc.health.v1 (SERVING once ready, NOT_SERVING while draining), server reflection (grpcurl
needs no proto files; v1 and v1alpha), a Prometheus endpoint, and a graceful stop on SIGTERM/SIGINT.

A service is plain domain code plus thin servicers; it plugs in through `Service`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.common import grpc_options, reflection, tls
from services.common.auth import AuthInterceptor, Permission, create_token, method_permissions
from services.common.config import ServiceConfig
from services.common.grpc_options import server_options
from services.common.metrics import MetricsInterceptor, start_metrics_server
from services.common.readiness import Readiness
from services.common.startup import (
    EXIT_STARTUP,
    GRPC_LISTEN_KEY,
    METRICS_LISTEN_KEY,
    METRICS_OFF_HINT,
    StartupError,
    bind_failure,
    check_data_dir,
    check_port_free,
    load_secret,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """One gRPC service to serve: the servicer, its generated `add_..._to_server`, its descriptor."""

    servicer: object
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    descriptor: ServiceDescriptor


@dataclass
class Runtime:
    """What a running service knows about itself once the server is bound."""

    name: str
    config: ServiceConfig
    address: str
    secret: bytes
    metrics_address: str | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Dependencies report here; the health service `sectorstorage.v1.Ready` follows them.
    readiness: Readiness | None = None

    async def dependency(self, name: str, problem: str | None) -> None:
        """Whether a dependency (the index, the manager) answers: None, or what is wrong."""
        if self.readiness is not None:
            await self.readiness.dependency(name, problem)

    def token(self, permission: Permission = Permission.ADMIN) -> str:
        """A token for this service's own calls to its peers (they share the fleet key)."""
        return create_token(
            self.secret, permission, subject=f"{self.name}@{self.address}", audience=self.config.auth.fleet
        )


class Service:
    """What a service plugs into the bootstrap. Subclasses override what they need."""

    name: str = "service"

    def registrations(self) -> Sequence[Registration]:
        raise NotImplementedError

    def interceptors(self) -> Sequence[grpc.aio.ServerInterceptor]:
        """Server interceptors of this service, run after authentication (a call they see is
        authenticated and permitted)."""
        return ()

    async def start(self, runtime: Runtime) -> None:
        """Called once the server is listening (start background loops here)."""

    async def drain(self) -> None:
        """Called on SIGTERM after health turns NOT_SERVING, before the server stops."""

    async def stop(self) -> None:
        """Called after the server stopped: close databases, cancel loops."""


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ServiceHost:
    def __init__(self, service: Service, config: ServiceConfig) -> None:
        self.service = service
        self.config = config
        self.health = health.aio.HealthServicer()
        self.readiness = Readiness(self.health)
        self.server: grpc.aio.Server | None = None
        self.runtime: Runtime | None = None
        # Set once the server listens: a failure before that is a start-up failure (exit 2).
        self.started = False

    async def _bind(self, server: grpc.aio.Server, regs: list[Registration]) -> tuple[str, str | None]:
        """Registers the services, binds the gRPC and metrics ports and starts serving; returns
        (gRPC address, metrics address). A port that cannot be bound is a StartupError."""
        config = self.config
        for reg in regs:
            reg.add_to_server(reg.servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.readiness.set_serving(False)
        reflection.enable_server_reflection([r.descriptor.full_name for r in regs] + [health.SERVICE_NAME], server)
        host = config.listen.rpartition(":")[0].strip("[]")
        # TLS (optional): the listening port, and every channel this process opens to its peers.
        tls.configure_client(config.tls)
        credentials = tls.server_credentials(config.tls)
        if not config.grpc.reuse_port:
            check_port_free(config.listen, GRPC_LISTEN_KEY)
        try:
            port = (
                server.add_secure_port(config.listen, credentials)
                if credentials
                else server.add_insecure_port(config.listen)
            )
        except RuntimeError:
            port = 0
        if port == 0:
            raise StartupError(
                f"{GRPC_LISTEN_KEY} {config.listen}: cannot bind (in use, or not an address of this host): choose another port"
            )
        try:
            metrics = start_metrics_server(config.metrics.listen)
        except OSError as exc:
            raise StartupError(
                bind_failure(config.metrics.listen, METRICS_LISTEN_KEY, exc) + METRICS_OFF_HINT
            ) from None
        await server.start()
        return format_address(host, port), format_address(*metrics) if metrics else None

    async def _set_health(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        await self.health.set("", status)
        for reg in self.service.registrations():
            await self.health.set(reg.descriptor.full_name, status)

    async def run(self) -> None:
        config = self.config
        check_data_dir(config.data_dir)
        secret = load_secret(config)
        regs = list(self.service.registrations())
        interceptors = [
            MetricsInterceptor(),
            AuthInterceptor(
                secret,
                method_permissions(r.descriptor for r in regs),
                required=config.auth.required,
                audience=config.auth.fleet,
                previous_secrets=[k.encode() for k in config.auth.previous_secrets],
            ),
            *self.service.interceptors(),
        ]
        grpc_options.configure(config.grpc)
        server = grpc.aio.server(interceptors=interceptors, options=server_options(config.grpc))
        self.server = server
        try:
            address, metrics_address = await self._bind(server, regs)
        except BaseException:
            await server.stop(None)
            raise
        runtime = Runtime(self.service.name, config, address, secret, metrics_address, readiness=self.readiness)
        self.runtime = runtime
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runtime.stopping.set)
        try:
            await self.service.start(runtime)
        except BaseException:
            await server.stop(None)
            raise
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        await self.readiness.set_serving(True)
        self.started = True
        # The one line a supervisor or a test reads to learn the bound ports.
        print(
            f"sectorstorage-{self.service.name} listening on {address}"
            + (f" metrics on {metrics_address}" if metrics_address else ""),
            flush=True,
        )
        log.info(
            "serving",
            extra={
                "address": address,
                "metrics": metrics_address,
                "data_dir": str(config.data_dir),
                "tls": tls_mode(config),
            },
        )
        await runtime.stopping.wait()
        log.info("draining: health NOT_SERVING, finishing in-flight calls", extra={"grace_s": config.shutdown_grace})
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.readiness.set_serving(False)
        await self.service.drain()
        await server.stop(config.shutdown_grace)
        await self.service.stop()
        log.info("stopped")


def tls_mode(config: ServiceConfig) -> str:
    """For the start-up log line: how the listening port is protected."""
    if not config.tls.cert_file:
        return "off"
    return "mutual" if config.tls.client_ca_file else "server"


def run_service(service: Service, config: ServiceConfig) -> int:
    """Runs until SIGTERM/SIGINT; returns the process exit code: 0 after a graceful stop, 2 when
    it could not start (one line on stderr saying what to fix), 1 when it failed later."""
    host = ServiceHost(service, config)
    try:
        asyncio.run(host.run())
    except KeyboardInterrupt:
        return 130
    except StartupError as exc:
        print(f"sectorstorage-{service.name}: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except OSError as exc:
        if not host.started:
            print(f"sectorstorage-{service.name}: cannot start: {exc}", file=sys.stderr)
            return EXIT_STARTUP
        print(f"sectorstorage-{service.name}: {exc}", file=sys.stderr)
        return 1
    return 0


def _unimplemented(method: MethodDescriptor) -> Callable[..., Any]:
    details = f"{method.containing_service.name}/{method.name} is not implemented in this version"

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, details)

    async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, details)
        yield  # pragma: no cover - makes this an async generator

    return streaming if method.server_streaming else unary


def registration(pb2: Any, pb2_grpc: Any, service_name: str, servicer: object) -> Registration:
    """The Registration for a generated service `service_name` from its `_pb2`/`_pb2_grpc` modules.

    Methods the servicer does not override answer UNIMPLEMENTED with a clear message (the
    generated base class raises NotImplementedError, which grpc.aio logs as a crash).
    """
    descriptor = pb2.DESCRIPTOR.services_by_name[service_name]
    base = getattr(pb2_grpc, f"{service_name}Servicer")
    for method in descriptor.methods:
        if getattr(type(servicer), method.name) is getattr(base, method.name):
            setattr(servicer, method.name, _unimplemented(method))
    return Registration(
        servicer=servicer,
        add_to_server=getattr(pb2_grpc, f"add_{service_name}Servicer_to_server"),
        descriptor=descriptor,
    )
