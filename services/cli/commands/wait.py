"""`sectorctl wait-api`: block until the manager answers, the index serves (when one is named)
and enough workers are connected — for scripts that start a fleet and use it right away (the
reference's `lotus-miner wait-api`)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli import render
from services.cli.connection import Connection
from services.common.proto.sectorstorage.v1 import manager_pb2

POLL_S = 0.25


# While waiting, what is missing is said on stderr this often.
PROGRESS_S = 5.0


def _index_state(conn: Connection) -> str | None:
    """None when the index (if one is named) serves; else what is wrong with it."""
    if not conn.index_target:
        return None
    try:
        reply = health_pb2_grpc.HealthStub(conn._channel(conn.index_target)).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    except grpc.RpcError as exc:
        conn.close()
        return f"the index at {conn.index_target} is unreachable ({exc.code().name})"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"the index at {conn.index_target} is {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def wait_api(args: argparse.Namespace, conn: Connection) -> int:
    """Retries while the manager (or the index, when --index / SECTORSTORAGE_INDEX names one) is
    unreachable, saying on stderr what it waits for; any other error (a bad token) ends it."""
    started = time.monotonic()
    deadline = started + args.wait_timeout
    said = started
    connected = 0
    while True:
        missing: str | None
        try:
            workers = conn.manager().WorkerStats(manager_pb2.WorkerStatsRequest(), timeout=5).workers
            connected = sum(1 for w in workers if w.state.connected)
            missing = _index_state(conn)
            if missing is None and connected < args.workers:
                missing = f"{connected} of {args.workers} worker(s) connected"
            if missing is None:
                break
        except grpc.RpcError as exc:
            if exc.code() is not grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            conn.close()  # a fresh channel next time, not one waiting out its reconnect back-off
            missing = f"the manager at {conn.manager_target} is unreachable"
        now = time.monotonic()
        if now > deadline:
            print(f"sectorctl: timed out after {args.wait_timeout:.0f}s: {missing}", file=sys.stderr)
            return 1
        if now - said >= PROGRESS_S:
            print(
                f"sectorctl: waiting ({now - started:.0f}s of {args.wait_timeout:.0f}s): {missing}",
                file=sys.stderr,
                flush=True,
            )
            said = now
        time.sleep(POLL_S)
    ready = {"ready": True, "workers_connected": connected, "index_checked": bool(conn.index_target)}
    if args.json:
        render.emit_json(ready)
    else:
        render.emit(f"manager ready, {connected} worker(s) connected" + (", index ready" if conn.index_target else ""))
    return 0


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    p = groups.add_parser(
        "wait-api",
        parents=[common],
        help="wait until the manager answers, the index serves (if named) and --workers N are connected",
    )
    p.add_argument("--workers", type=int, default=0, metavar="N", help="also wait for N connected workers")
    p.add_argument(
        "--timeout",
        dest="wait_timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="give up after S seconds (default 60)",
    )
    p.set_defaults(func=wait_api)
