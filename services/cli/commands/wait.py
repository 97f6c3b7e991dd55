"""`sectorctl wait-api`: block until the manager answers and enough workers are connected — for
scripts that start a fleet and use it right away (the reference's `lotus-miner wait-api`)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import grpc

from services.cli import render
from services.cli.connection import Connection
from services.common.proto.sectorstorage.v1 import manager_pb2

POLL_S = 0.25


def wait_api(args: argparse.Namespace, conn: Connection) -> int:
    """Retries while the manager is unreachable; any other error (e.g. a bad token) ends it."""
    deadline = time.monotonic() + args.wait_timeout
    connected = 0
    while True:
        try:
            workers = conn.manager().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=5).workers
            connected = sum(1 for w in workers if w.state.connected)
            if connected >= args.workers:
                break
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            conn.close()  # a fresh channel next time, not one waiting out its reconnect back-off
        if time.monotonic() > deadline:
            print(f"sectorctl: timed out after {args.wait_timeout:.0f}s: {connected} of {args.workers} worker(s) connected", file=sys.stderr)
            return 1
        time.sleep(POLL_S)
    if args.json:
        render.emit_json({"ready": True, "workers_connected": connected})
    else:
        render.emit(f"manager ready, {connected} worker(s) connected")
    return 0


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    p = groups.add_parser("wait-api", parents=[common], help="wait until the manager answers (and --workers N are connected)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="also wait for N connected workers")
    p.add_argument("--timeout", dest="wait_timeout", type=float, default=60.0, metavar="S", help="give up after S seconds (default 60)")
    p.set_defaults(func=wait_api)
