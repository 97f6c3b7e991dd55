"""The options of every gRPC server and channel of the fleet, in one place, so a server's
policy always matches what its clients do.

- Message size: large enough for one streamed chunk plus framing (streams carry bigger payloads).
- Port binding: exclusive unless `grpc.reuse_port` asks to share it (gRPC's default is to set
  SO_REUSEPORT, which let a second service bind a port already in use and take half its
  connections).
"""

from __future__ import annotations

from typing import Any

from services.common.config import GrpcConfig

MAX_MESSAGE_BYTES = 64 * 1024 * 1024

_COMMON: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]


def client_options() -> list[tuple[str, Any]]:
    """Options of every channel to a service (sectorctl, tests, services calling each other)."""
    return list(_COMMON)


def server_options(config: GrpcConfig) -> list[tuple[str, Any]]:
    """Options of a service's gRPC server."""
    return [*_COMMON, ("grpc.so_reuseport", 1 if config.reuse_port else 0)]
