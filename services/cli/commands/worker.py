"""`sectorctl worker`: an operator's scheduling controls of one worker, through the manager
(EnableWorker, DisableWorker, CordonWorker, UncordonWorker, DrainWorker)."""

from __future__ import annotations

import argparse
from typing import Any

from google.protobuf.duration_pb2 import Duration

from services.cli import render
from services.cli.commands.sealing import worker_state_dict, worker_state_text
from services.cli.connection import Connection
from services.cli.names import task_short
from services.common.proto.sectorstorage.v1 import manager_pb2


def _report(args: argparse.Namespace, action: str, state: manager_pb2.WorkerState) -> int:
    if args.json:
        render.emit_json({"worker_id": args.worker_id, "action": action, "state": worker_state_dict(state)})
    else:
        render.emit(f"worker {args.worker_id} {action}: {worker_state_text(state)}")
    return 0


def enable(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().EnableWorker(manager_pb2.EnableWorkerRequest(worker_id=args.worker_id), timeout=conn.timeout)
    return _report(args, "enabled", reply.state)


def disable(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().DisableWorker(manager_pb2.DisableWorkerRequest(worker_id=args.worker_id), timeout=conn.timeout)
    return _report(args, "disabled", reply.state)


def cordon(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().CordonWorker(manager_pb2.CordonWorkerRequest(worker_id=args.worker_id), timeout=conn.timeout)
    return _report(args, "cordoned", reply.state)


def uncordon(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().UncordonWorker(manager_pb2.UncordonWorkerRequest(worker_id=args.worker_id), timeout=conn.timeout)
    return _report(args, "uncordoned", reply.state)


def drain(args: argparse.Namespace, conn: Connection) -> int:
    """Waits up to --timeout for the worker's tasks (the call's deadline allows for it); exit 1
    when tasks remain, so scripts can wait for a drain before an upgrade."""
    request = manager_pb2.DrainWorkerRequest(worker_id=args.worker_id, abort_remaining=args.abort_remaining)
    deadline = conn.timeout
    if args.drain_timeout is not None:
        request.timeout.CopyFrom(Duration(seconds=int(args.drain_timeout), nanos=int(args.drain_timeout % 1 * 1e9)))
        deadline = max(deadline, args.drain_timeout + 30)
    reply = conn.manager().DrainWorker(request, timeout=deadline)
    if args.json:
        render.emit_json(
            {
                "worker_id": args.worker_id,
                "drained": reply.drained,
                "remaining": [render.message_dict(j) for j in reply.remaining],
                "state": worker_state_dict(reply.state),
            }
        )
    elif reply.drained:
        render.emit(f"worker {args.worker_id} drained: {worker_state_text(reply.state)}")
    else:
        render.emit(f"worker {args.worker_id} not drained: {len(reply.remaining)} task(s) still there (they keep running; --abort-remaining re-queues them)")
        for j in reply.remaining:
            render.emit(f"  {j.call_id.id}  {j.sector.id.miner}/{j.sector.id.number}  {task_short(j.task_type)}")
    return 0 if reply.drained else 1


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    verbs = groups.add_parser("worker", help="enable, disable, cordon, drain a worker (manager)", description="sectorctl worker: enable, disable, cordon, drain a worker (manager).").add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, func, text in (
        ("enable", enable, "let a disabled worker receive tasks again"),
        ("disable", disable, "no new tasks; assigned ones go back to the queue, running ones finish"),
        ("cordon", cordon, "no new tasks; assigned and running ones continue"),
        ("uncordon", uncordon, "end a cordon (and a drain)"),
    ):
        p = verbs.add_parser(name, parents=[common], help=text)
        p.add_argument("worker_id", metavar="WORKER_ID", help="see `sealing workers`")
        p.set_defaults(func=func)
    p = verbs.add_parser("drain", parents=[common], help="cordon and wait until no task is assigned or running (exit 1 if some remain)")
    p.add_argument("worker_id", metavar="WORKER_ID")
    p.add_argument("--timeout", dest="drain_timeout", type=float, default=None, metavar="S", help="wait at most S seconds (default: the call's --timeout)")
    p.add_argument("--abort-remaining", action="store_true", help="at the timeout, stop the remaining tasks and re-queue them elsewhere")
    p.set_defaults(func=drain)
