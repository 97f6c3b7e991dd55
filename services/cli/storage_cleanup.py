"""`sectorctl storage cleanup`: list (and with --apply remove) sector files on a worker's paths
that no declaration in the index owns (WorkerService.StorageCleanup; the guards are the
worker's, see services/worker/cleanup.py).

The lead wires it into `sectorctl storage` with `register(storage_verbs)`. It talks to one
worker: `--worker HOST:PORT` or SECTORSTORAGE_WORKER, with an ADMIN token from `--token` or
SECTORSTORAGE_TOKEN.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import grpc

from services.common.client import sync_channel
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2, worker_pb2_grpc

TIMEOUT_S = 300.0


def register(storage_verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verb = storage_verbs.add_parser(
        "cleanup",
        help="list (dry run) or remove (--apply) files no sector in the index owns on a worker's paths",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verb.add_argument("--worker", default=None, help="HOST:PORT of the worker (default: SECTORSTORAGE_WORKER)")
    verb.add_argument("--token", default=None, help="ADMIN token (default: SECTORSTORAGE_TOKEN)")
    verb.add_argument("--path", default="", metavar="STORAGE_ID", help="only this storage path (default: all of the worker's)")
    verb.add_argument("--apply", action="store_true", help="remove the files listed as removable (default: dry run)")
    verb.set_defaults(func=run)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def run(args: argparse.Namespace) -> int:
    worker = args.worker or os.environ.get("SECTORSTORAGE_WORKER", "")
    if not worker:
        raise ValueError("no worker: pass --worker HOST:PORT or set SECTORSTORAGE_WORKER")
    token = args.token or os.environ.get("SECTORSTORAGE_TOKEN") or None
    stub = worker_pb2_grpc.WorkerServiceStub(sync_channel(worker, token))
    try:
        reply = stub.StorageCleanup(worker_pb2.StorageCleanupRequest(storage_id=args.path, apply=args.apply), timeout=TIMEOUT_S)
    except grpc.RpcError as exc:
        print(f"sectorctl: storage cleanup on {worker}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    if getattr(args, "json", False):
        entries = [
            {
                "storage_id": e.storage_id,
                "path": e.path,
                "sector": {"miner": e.sector.miner, "number": e.sector.number} if e.HasField("sector") else None,
                "type": common_pb2.SectorFileType.Name(e.type),
                "size": e.size,
                "removed": e.removed,
                "skipped": e.skipped,
            }
            for e in reply.entries
        ]
        print(json.dumps({"apply": args.apply, "entries": entries, "reclaimable_bytes": reply.reclaimable_bytes}))
        return 0
    for e in reply.entries:
        state = "removed" if e.removed else (f"kept: {e.skipped}" if e.skipped else "would remove")
        print(f"{e.storage_id}  {e.path}  {_size(e.size)}  {state}")
    verb = "removed" if args.apply else "reclaimable with --apply"
    print(f"{len(reply.entries)} undeclared entries; {_size(reply.reclaimable_bytes)} {verb}")
    return 0
