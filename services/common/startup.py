"""Start-up checks every service shares. Each failure is a `StartupError` whose message is one
line naming the config key (or the path) and what to do; the launcher prints it as
`sectorstorage-<service>: cannot start: <message>` and exits with code 2, no traceback."""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
from collections.abc import Callable
from pathlib import Path

from services.common.auth import AuthError, load_or_create_secret
from services.common.config import ProofsBackend, ProofsConfig, ServiceConfig, parse_host_port

# The exit code of every start-up failure (a configuration or environment problem, not a crash).
EXIT_STARTUP = 2


class StartupError(Exception):
    """Start-up cannot go on; the message says which key or path and what to do."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def check_proofs_backend(proofs: ProofsConfig, installed: Callable[[str], bool] = _installed) -> None:
    """`[proofs] backend`: the emulated backend always starts; the filecoin one needs the
    rust_filecoin extension (the worker's tasks and the manager's verifier call it:
    docs/filecoin-backend.md), so a fleet configured for real proofs never silently runs the
    emulation. What the filecoin backend does not wire (a PoSt assembled from vanilla proofs,
    PC1 batches) is refused where it is asked for."""
    if proofs.backend is ProofsBackend.EMULATED:
        return
    if not installed("rust_filecoin"):
        raise StartupError(
            "proofs.backend / SECTORSTORAGE_PROOFS_BACKEND = filecoin needs the rust_filecoin extension, which is not installed: build it with `make develop-filecoin` (docs/filecoin-backend.md)"
        )


def check_data_dir(path: Path) -> None:
    """Creates the data dir when missing and checks this process can write in it."""
    where = f"data_dir {path} (--data-dir / data_dir)"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StartupError(f"{where} exists but is not a directory: remove it or choose another directory") from None
    except OSError as exc:
        raise StartupError(
            f"{where} cannot be created ({_why(exc)}): create it for the service's user or choose another directory"
        ) from None
    if not path.is_dir():
        raise StartupError(f"{where} exists but is not a directory: remove it or choose another directory")
    probe = path / f".write-check-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"{where} is not writable ({_why(exc)}): give the service's user write access or choose another directory"
        ) from None


def load_secret(config: ServiceConfig) -> bytes:
    """The fleet's token-signing key: `auth.secret`, else the key file (created on first start)."""
    if config.auth.secret:
        return config.auth.secret.encode()
    path = config.secret_path()
    where = f"auth key file {path} (auth.secret_file)"
    try:
        return load_or_create_secret(path)
    except AuthError:
        size = len(path.read_bytes().strip())
        raise StartupError(
            f"{where} holds a key of {size} bytes, at least 32 are needed: put the fleet's key in it "
            "(or set auth.secret / SECTORSTORAGE_AUTH_SECRET)"
        ) from None
    except IsADirectoryError:
        raise StartupError(
            f"{where} is a directory: remove it, or point auth.secret_file at the fleet's key file"
        ) from None
    except OSError as exc:
        raise StartupError(
            f"{where} cannot be read or created ({_why(exc)}): fix its permissions or point auth.secret_file elsewhere"
        ) from None


def check_port_free(listen: str, key: str) -> None:
    """Refuses a HOST:PORT that another socket already listens on (or that cannot be bound
    here), before gRPC binds it: gRPC itself would log a multi-line error and fail with a bare
    RuntimeError. Port 0 (any free port) needs no check. `key` names the setting, e.g.
    `listen (--listen)`."""
    host, port = parse_host_port(listen)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"{key} {listen}: cannot resolve {host!r} ({exc.strerror}): use an address of this host"
        ) from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as sock:
            # As gRPC binds: SO_REUSEADDR (a port in TIME_WAIT is free), never SO_REUSEPORT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(addr)
            except OSError as exc:
                raise StartupError(bind_failure(listen, key, exc)) from None


GRPC_LISTEN_KEY = "listen (--listen)"
METRICS_LISTEN_KEY = "metrics.listen (--metrics-listen)"
METRICS_OFF_HINT = " ('' turns metrics off)"


def check_ports(config: ServiceConfig) -> None:
    """The gRPC port (unless shared on purpose with grpc.reuse_port) and the metrics port are
    free to bind."""
    if not config.grpc.reuse_port:
        check_port_free(config.listen, GRPC_LISTEN_KEY)
    if config.metrics.listen:
        try:
            check_port_free(config.metrics.listen, METRICS_LISTEN_KEY)
        except StartupError as exc:
            raise StartupError(f"{exc}{METRICS_OFF_HINT}") from None


def bind_failure(listen: str, key: str, exc: OSError) -> str:
    """The one-line message for a port that cannot be bound."""
    if exc.errno == errno.EADDRINUSE:
        return f"{key} {listen}: the port is already in use (another service, or this one already running): stop it or choose another port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{key} {listen}: the address is not one of this host's: use one of its addresses (or 0.0.0.0)"
    if exc.errno == errno.EACCES:
        return f"{key} {listen}: permission denied (ports below 1024 need privileges): choose a port of 1024 or more"
    return f"{key} {listen}: cannot bind ({_why(exc)})"
