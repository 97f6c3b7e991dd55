"""The options of every gRPC server and channel of the fleet, in one place, so a server's policy
always matches what its clients do.

- Message size: large enough for one streamed chunk plus framing (streams carry bigger payloads).
- Keep-alive: every channel pings after `grpc.keepalive_time_s` (30 s) without activity, with or
  without calls in flight, so a dead peer or a silently dropped connection (NAT, load balancer)
  is noticed. A server refuses pings that come more often than its
  `min_recv_ping_interval_without_data` allows, counting each as a strike and closing the
  connection with GOAWAY ENHANCE_YOUR_CALM "too_many_pings" after `max_ping_strikes`; gRPC's
  default minimum is 5 minutes, which every 30 s client ping broke. Servers here accept a ping
  every half keep-alive interval (slack for timers), without calls too.
- Reconnection: a channel that lost its peer tries again after 0.25 s, backing off to
  `grpc.reconnect_backoff_max_s` (2 s), not gRPC's 120 s: a peer restarted on its address is
  reached again within seconds (a channel in back-off fails every call at once).
- Port binding: exclusive unless `grpc.reuse_port` asks to share it (gRPC's default is to set
  SO_REUSEPORT, which let a second service bind a port already in use).

A service takes the `[grpc]` section of its config (`configure`, at start); other processes
(sectorctl, tests) read `SECTORSTORAGE_GRPC_*` from the environment.
"""

from __future__ import annotations

import os
from typing import Any

from services.common.config import ConfigError, GrpcConfig, section_from_env

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# Pings without a call in between that a server tolerates before GOAWAY (gRPC's default).
MAX_PING_STRIKES = 2

_configured: GrpcConfig | None = None


def configure(config: GrpcConfig) -> None:
    """Sets this process's options (a service calls it with its config before any channel)."""
    global _configured
    _configured = config


def current() -> GrpcConfig:
    """The configured options, else `SECTORSTORAGE_GRPC_*` from the environment, else defaults."""
    global _configured
    if _configured is None:
        try:
            _configured = section_from_env(GrpcConfig, "grpc", os.environ)
        except ConfigError:
            _configured = GrpcConfig()
    return _configured


def _common(config: GrpcConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", int(config.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", int(config.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def client_options(config: GrpcConfig | None = None) -> list[tuple[str, Any]]:
    """Options of every channel to a service (sectorctl, tests, services calling each other)."""
    config = config or current()
    cap_ms = int(config.reconnect_backoff_max_s * 1000)
    return [
        *_common(config),
        ("grpc.initial_reconnect_backoff_ms", min(250, cap_ms)),
        ("grpc.min_reconnect_backoff_ms", min(250, cap_ms)),
        ("grpc.max_reconnect_backoff_ms", cap_ms),
    ]


def server_options(config: GrpcConfig | None = None) -> list[tuple[str, Any]]:
    """Options of a service's gRPC server: the same keep-alive, and a ping policy that accepts
    what the clients do."""
    config = config or current()
    return [
        *_common(config),
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS; its string is not the macro's name.
        ("grpc.http2.min_ping_interval_without_data_ms", int(config.keepalive_time_s * 1000) // 2),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        ("grpc.so_reuseport", 1 if config.reuse_port else 0),
    ]
