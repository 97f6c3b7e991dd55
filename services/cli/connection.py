"""Where sectorctl connects and with which token: flags first, then SECTORSTORAGE_MANAGER,
SECTORSTORAGE_INDEX, SECTORSTORAGE_TOKEN / --token-file; stubs over channels that carry the
token on every call (services.common.client)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import index_pb2_grpc, manager_pb2_grpc, worker_pb2_grpc

DEFAULT_MINER = 1000  # the demo's miner (services/cli/demo.py)


class ConfigError(Exception):
    """Something the operator must configure (a flag or environment variable is missing)."""


@dataclass
class Connection:
    """Lazily opened channels to the manager, index and workers named on the command line."""

    manager_target: str | None
    index_target: str | None
    token: str | None
    timeout: float
    _channels: dict[str, grpc.Channel] = field(default_factory=dict)
    # The service most recently asked for, so a connection error can say which address failed.
    last_target: str | None = None

    def _channel(self, target: str) -> grpc.Channel:
        self.last_target = target
        if target not in self._channels:
            self._channels[target] = sync_channel(target, self.token)
        return self._channels[target]

    def manager(self) -> manager_pb2_grpc.ManagerServiceStub:
        if not self.manager_target:
            raise ConfigError("no manager address: pass --manager HOST:PORT or set SECTORSTORAGE_MANAGER")
        return manager_pb2_grpc.ManagerServiceStub(self._channel(self.manager_target))

    def index(self) -> index_pb2_grpc.IndexServiceStub:
        if not self.index_target:
            raise ConfigError("no index address: pass --index HOST:PORT or set SECTORSTORAGE_INDEX")
        return index_pb2_grpc.IndexServiceStub(self._channel(self.index_target))

    def worker(self, target: str) -> worker_pb2_grpc.WorkerServiceStub:
        return worker_pb2_grpc.WorkerServiceStub(self._channel(target))

    def source_of(self, target: str) -> tuple[str, str]:
        """(service, where its address came from) for an error hint."""
        if target == self.manager_target:
            return "manager", "--manager / SECTORSTORAGE_MANAGER"
        if target == self.index_target:
            return "index", "--index / SECTORSTORAGE_INDEX"
        return "worker", "--worker HOST:PORT"

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()


def token_from(args: argparse.Namespace) -> str | None:
    if args.token:
        return str(args.token)
    if args.token_file:
        path = Path(args.token_file)
        if not path.is_file():
            raise ConfigError(f"token file {path} does not exist")
        return path.read_text().strip()
    env = os.environ.get("SECTORSTORAGE_TOKEN")
    return env.strip() if env else None


def from_args(args: argparse.Namespace) -> Connection:
    return Connection(
        manager_target=args.manager or os.environ.get("SECTORSTORAGE_MANAGER") or None,
        index_target=args.index or os.environ.get("SECTORSTORAGE_INDEX") or None,
        token=token_from(args),
        timeout=float(args.timeout),
    )


def miner_from(args: argparse.Namespace) -> int:
    if getattr(args, "miner", None) is not None:
        return int(args.miner)
    env = os.environ.get("SECTORSTORAGE_MINER")
    if env:
        try:
            return int(env)
        except ValueError:
            raise ConfigError(f"SECTORSTORAGE_MINER={env!r} is not a miner actor id (a number like 1000)") from None
    return DEFAULT_MINER
