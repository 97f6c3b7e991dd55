"""Optional TLS for every gRPC connection of the fleet: server credentials for a service's
listening port (with mutual TLS when a client CA is configured) and the channel credentials its
outgoing calls use (worker->manager, worker->index, manager->worker, worker->worker fetch,
sectorctl).

Off by default: with an empty `[tls]` section every port and channel stays plaintext, as before.
A service process configures its outgoing credentials once at start-up (`configure_client`), so
the modules that open channels need no TLS plumbing of their own; a process that did not (the
CLI, tests) reads them from the `SECTORSTORAGE_TLS_*` environment on first use.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import grpc

from services.common.config import ENV_PREFIX, TlsConfig, section_from_env

_lock = threading.Lock()
_client: grpc.ChannelCredentials | None = None
_configured = False


def _read(config: TlsConfig, key: str) -> bytes:
    """The PEM file named by `tls.<key>`; an unreadable file stops start-up naming the key."""
    path = Path(getattr(config, key))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise OSError(f"tls.{key} / {ENV_PREFIX}TLS_{key.upper()}: cannot read {path}: {exc.strerror or exc}") from None


def server_credentials(config: TlsConfig) -> grpc.ServerCredentials | None:
    """Credentials for the listening port; None means plaintext (no cert_file)."""
    if not config.cert_file:
        return None
    client_ca = _read(config, "client_ca_file") if config.client_ca_file else None
    return grpc.ssl_server_credentials(
        [(_read(config, "key_file"), _read(config, "cert_file"))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def channel_credentials(config: TlsConfig) -> grpc.ChannelCredentials | None:
    """Credentials for outgoing calls; None means plaintext (no ca_file)."""
    if not config.ca_file:
        return None
    key = _read(config, "client_key_file") if config.client_key_file else None
    chain = _read(config, "client_cert_file") if config.client_cert_file else None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(config, "ca_file"), private_key=key, certificate_chain=chain
    )


def configure_client(config: TlsConfig) -> None:
    """Sets the credentials every channel this process opens uses (a service's own config)."""
    global _client, _configured
    credentials = channel_credentials(config)
    with _lock:
        _client, _configured = credentials, True


def client_credentials() -> grpc.ChannelCredentials | None:
    """The process's outgoing credentials: configured, else from SECTORSTORAGE_TLS_* (once)."""
    global _client, _configured
    with _lock:
        if not _configured:
            _client, _configured = channel_credentials(section_from_env(TlsConfig, "tls", os.environ)), True
        return _client
