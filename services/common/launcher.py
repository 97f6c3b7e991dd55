"""The command line every service shares: `--listen HOST:PORT --data-dir DIR [--config FILE]`
plus a few per-service flags, turned into a validated config and a running server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from services.common import grpc_options
from services.common.config import ConfigError, ConfigT, load_config
from services.common.log import setup_logging
from services.common.server import Service, run_service
from services.common.startup import (
    EXIT_STARTUP,
    StartupError,
    check_data_dir,
    check_ports,
    check_proofs_backend,
    load_secret,
)


@dataclass(frozen=True)
class Flag:
    """A service-specific command-line flag and the config key it sets."""

    name: str
    key: str
    help: str
    # A switch (sets the key to true) rather than a flag taking a value.
    switch: bool = False
    # What the value looks like in --help.
    metavar: str = "VALUE"


COMMON_FLAGS = (
    Flag(
        "--listen",
        "listen",
        "HOST:PORT to serve gRPC on (port 0 picks a free one; default 127.0.0.1:0)",
        metavar="HOST:PORT",
    ),
    Flag("--data-dir", "data_dir", "directory for this service's state (databases, keys, call records)", metavar="DIR"),
    Flag(
        "--metrics-listen",
        "metrics.listen",
        "HOST:PORT for the Prometheus /metrics endpoint ('' disables)",
        metavar="HOST:PORT",
    ),
    Flag("--log-format", "log.format", "auto (default: text on a terminal, else json), json or text", metavar="FORMAT"),
    Flag("--log-level", "log.level", "debug, info (default), warning, error", metavar="LEVEL"),
)
# For the services with a database (index, manager).
INIT_DATABASE = Flag(
    "--init-database",
    "database.init",
    "start with an empty database even if the SQLite file exists but is empty (0 bytes or no tables); "
    "without it such a file is refused",
    switch=True,
)


def launch(
    name: str,
    config_model: type[ConfigT],
    build: Callable[[ConfigT], Service],
    argv: Sequence[str] | None = None,
    extra_flags: Sequence[Flag] = (),
) -> int:
    parser = argparse.ArgumentParser(
        prog=f"sectorstorage-{name}",
        description=f"sectorstorage {name} service. Config: defaults < --config TOML < SECTORSTORAGE_* env < flags.",
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML config file")
    flags = [*COMMON_FLAGS, *extra_flags]
    for flag in flags:
        if flag.switch:
            parser.add_argument(
                flag.name, dest=flag.key, action="store_const", const=True, default=None, help=flag.help
            )
        else:
            parser.add_argument(flag.name, dest=flag.key, default=None, metavar=flag.metavar, help=flag.help)
    args = vars(parser.parse_args(argv))
    config_file = args.pop("config")
    try:
        config = load_config(config_model, config_file, flags=args)
    except ConfigError as exc:
        print(f"sectorstorage-{name}: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    setup_logging(name, config.log)
    # Before build(): services open channels to their peers while they are built.
    grpc_options.configure(config.grpc)
    try:
        # Everything that can be checked before the service opens its state: a second
        # instance on a port in use must not touch the first one's database.
        check_proofs_backend(config.proofs)
        check_data_dir(config.data_dir)
        load_secret(config)
        check_ports(config)
        service = build(config)
    except (ConfigError, StartupError, ValueError, OSError) as exc:
        print(f"sectorstorage-{name}: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    return run_service(service, config)
