"""`sectorstorage-web`: the dashboard process. Flags and config as the services take them
(`--listen`, `--data-dir`, `--config`, `SECTORSTORAGE_*`), plus `--manager`, `--index`,
`--token-file`, `--auth` and `--password-file`; it prints `sectorstorage-web listening on
HOST:PORT` once serving (what devfleet and supervisors read), and stops on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from services.common import grpc_options, tls
from services.common.config import ConfigError, load_config, parse_host_port
from services.common.log import setup_logging
from services.common.startup import EXIT_STARTUP, StartupError, bind_failure, check_data_dir
from services.web.app import SetupError, build
from services.web.config import WebConfig

log = logging.getLogger("sectorstorage.web")
FLAGS = (
    ("--listen", "listen", "HOST:PORT to serve HTTP(S) on (default 127.0.0.1:7180; port 0 picks a free one)"),
    ("--data-dir", "data_dir", "directory for the login cookie key (default ./data)"),
    ("--manager", "web.manager", "the manager's gRPC HOST:PORT"),
    ("--index", "web.index", "the index's gRPC HOST:PORT"),
    ("--token-file", "web.token_file", "file holding the dashboard's READ token for the services"),
    ("--auth", "web.auth", "password (default: a login with the dashboard password) or proxy"),
    ("--password-file", "web.password_file", "file holding the password people log in with"),
    ("--log-format", "log.format", "auto, json or text"),
    ("--log-level", "log.level", "debug, info, warning, error"),
)


def _parse(argv: Sequence[str] | None) -> tuple[Path | None, dict[str, str | None]]:
    parser = argparse.ArgumentParser(
        prog="sectorstorage-web",
        description="sectorstorage fleet dashboard (read-only). Config: defaults < --config TOML < SECTORSTORAGE_* env < flags.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    for flag, key, text in FLAGS:
        parser.add_argument(flag, dest=key, default=None, help=text)
    args = vars(parser.parse_args(argv))
    return args.pop("config"), args


def _bind(listen: str) -> socket.socket:
    host, port = parse_host_port(listen)
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        raise StartupError(bind_failure(listen, "listen (--listen)", exc)) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _ssl(config: WebConfig) -> ssl.SSLContext | None:
    if not config.tls.cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(config.tls.cert_file, config.tls.key_file)
        if config.tls.client_ca_file:
            context.load_verify_locations(config.tls.client_ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"tls.cert_file/key_file/client_ca_file: cannot load ({exc})") from None
    return context


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _serve(app: web.Application, sock: socket.socket, context: ssl.SSLContext | None) -> None:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, sock, ssl_context=context)
    await site.start()
    address = _address(sock)
    scheme = "https" if context else "http"
    print(f"sectorstorage-web listening on {address} url {scheme}://{address}/", flush=True)
    log.info("serving", extra={"address": address, "tls": scheme == "https"})
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await runner.cleanup()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    config_file, flags = _parse(argv)
    try:
        config = load_config(WebConfig, config_file, flags=flags)
    except ConfigError as exc:
        print(f"sectorstorage-web: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    setup_logging("web", config.log)
    grpc_options.configure(config.grpc)
    try:
        tls.configure_client(config.tls)
        check_data_dir(config.data_dir)
        app = build(config)
        context = _ssl(config)
        sock = _bind(config.listen)
    except (SetupError, StartupError, OSError, ValueError) as exc:
        print(f"sectorstorage-web: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    try:
        asyncio.run(_serve(app, sock, context))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
