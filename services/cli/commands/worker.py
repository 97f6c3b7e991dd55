"""`sectorctl worker`: an operator's scheduling controls of one worker, through the manager
(EnableWorker, DisableWorker, CordonWorker, UncordonWorker, DrainWorker), and the task types a
worker accepts, on the worker itself (TaskTypes, EnableTaskType, DisableTaskType: the
reference's `lotus-worker tasks enable|disable`)."""

from __future__ import annotations

import argparse
from typing import Any

from google.protobuf.duration_pb2 import Duration

from services.cli import render
from services.cli.commands.sealing import worker_state_dict, worker_state_text
from services.cli.connection import Connection
from services.cli.names import SIZE_LABELS, parse_task_type, task_short
from services.common.proto.sectorstorage.v1 import manager_pb2, worker_pb2


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
    reply = conn.manager().DisableWorker(
        manager_pb2.DisableWorkerRequest(worker_id=args.worker_id), timeout=conn.timeout
    )
    return _report(args, "disabled", reply.state)


def cordon(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().CordonWorker(manager_pb2.CordonWorkerRequest(worker_id=args.worker_id), timeout=conn.timeout)
    return _report(args, "cordoned", reply.state)


def uncordon(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().UncordonWorker(
        manager_pb2.UncordonWorkerRequest(worker_id=args.worker_id), timeout=conn.timeout
    )
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
        render.emit(
            f"worker {args.worker_id} not drained: {len(reply.remaining)} task(s) still there (they keep running; --abort-remaining re-queues them)"
        )
        for j in reply.remaining:
            render.emit(f"  {j.call_id.id}  {j.sector.id.miner}/{j.sector.id.number}  {task_short(j.task_type)}")
    return 0 if reply.drained else 1


def tasks(args: argparse.Namespace, conn: Connection) -> int:
    """Lists, enables or disables task types on a worker; the manager places by the new set from
    the worker's next heartbeat (sent at once when it changes)."""
    stub = conn.worker(args.worker)
    types = [parse_task_type(t) for t in args.types]
    if args.action == "list":
        if types:
            raise ValueError("`worker tasks list` takes no task types")
        accepted = list(stub.TaskTypes(worker_pb2.TaskTypesRequest(), timeout=conn.timeout).task_types)
    elif not types:
        raise ValueError(f"`worker tasks {args.action}` needs at least one task type (e.g. PC1 C2)")
    elif args.action == "enable":
        accepted = list(
            stub.EnableTaskType(worker_pb2.EnableTaskTypeRequest(task_types=types), timeout=conn.timeout).task_types
        )
    else:
        accepted = list(
            stub.DisableTaskType(worker_pb2.DisableTaskTypeRequest(task_types=types), timeout=conn.timeout).task_types
        )
    names = [task_short(t) for t in accepted]
    if args.json:
        render.emit_json({"worker": args.worker, "task_types": names})
    else:
        render.emit(f"{args.worker} accepts: {' '.join(names) if names else 'nothing'}")
    return 0


def _row_text(row: manager_pb2.ResourceTableRow) -> tuple[str, ...]:
    threads = "all" if row.max_parallelism < 0 else str(row.max_parallelism)
    if row.HasField("max_parallelism_gpu"):
        threads += f" (GPU {'all' if row.max_parallelism_gpu < 0 else row.max_parallelism_gpu})"
    return (
        task_short(row.task_type),
        SIZE_LABELS.get(row.seal_proof, str(row.seal_proof)),
        render.size(row.min_memory),
        render.size(row.max_memory),
        threads,
        f"{row.gpu_utilization:g}",
        render.size(row.base_min_memory),
        str(row.max_concurrent) if row.HasField("max_concurrent") else "-",
        "*" if row.overridden else "",
    )


def resources(args: argparse.Namespace, conn: Connection) -> int:
    """The resource table a worker is scheduled with (`lotus-worker resources`), rows its
    configuration changed marked; with --default the built-in table."""
    reply = conn.manager().WorkerStats(
        manager_pb2.WorkerStatsRequest(
            worker_id=args.worker_id, include_resources=True, default_resources=args.default
        ),
        timeout=conn.timeout,
    )
    rows = list(reply.workers[0].resources) if reply.workers else []
    if args.json:
        render.emit_json(
            {"worker_id": args.worker_id, "default": args.default, "resources": [render.message_dict(r) for r in rows]}
        )
        return 0
    headers = ("TASK", "SIZE", "MIN MEM", "MAX MEM", "THREADS", "GPU", "BASE MEM", "MAX AT ONCE", "CHANGED")
    render.emit(render.table(headers, [_row_text(r) for r in rows]))
    return 0


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    verbs = groups.add_parser(
        "worker",
        help="enable, disable, cordon, drain a worker (manager)",
        description="sectorctl worker: enable, disable, cordon, drain a worker (manager).",
    ).add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, func, text in (
        ("enable", enable, "let a disabled worker receive tasks again"),
        ("disable", disable, "no new tasks; assigned ones go back to the queue, running ones finish"),
        ("cordon", cordon, "no new tasks; assigned and running ones continue"),
        ("uncordon", uncordon, "end a cordon (and a drain)"),
    ):
        p = verbs.add_parser(name, parents=[common], help=text)
        p.add_argument("worker_id", metavar="WORKER_ID", help="see `sealing workers`")
        p.set_defaults(func=func)
    p = verbs.add_parser(
        "drain", parents=[common], help="cordon and wait until no task is assigned or running (exit 1 if some remain)"
    )
    p.add_argument("worker_id", metavar="WORKER_ID")
    p.add_argument(
        "--timeout",
        dest="drain_timeout",
        type=float,
        default=None,
        metavar="S",
        help="wait at most S seconds (default: the call's --timeout)",
    )
    p.add_argument(
        "--abort-remaining",
        action="store_true",
        help="at the timeout, stop the remaining tasks and re-queue them elsewhere",
    )
    p.set_defaults(func=drain)
    p = verbs.add_parser(
        "resources", parents=[common], help="the resource table a worker is scheduled with (* = changed by its config)"
    )
    p.add_argument("worker_id", metavar="WORKER_ID", help="see `sealing workers`")
    p.add_argument("--default", action="store_true", help="the built-in table instead")
    p.set_defaults(func=resources)
    p = verbs.add_parser("tasks", parents=[common], help="list, enable or disable the task types a worker accepts")
    p.add_argument("action", choices=("list", "enable", "disable"))
    p.add_argument(
        "types", nargs="*", metavar="TYPE", help="task types: AP PC1 PC2 C1 C2 FIN GET UNS WDP WNP (or full names)"
    )
    p.add_argument(
        "--worker", required=True, metavar="HOST:PORT", help="the worker's gRPC address (see `sealing workers`)"
    )
    p.set_defaults(func=tasks)
