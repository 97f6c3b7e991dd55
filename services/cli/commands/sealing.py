"""`sectorctl sealing`: the manager's operator view: jobs, workers, the scheduler's queue, task
history, and aborting a call (SealingJobs, WorkerStats, SchedDiag, TaskHistory, Abort)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from services.cli import render
from services.cli.connection import Connection, miner_from
from services.cli.names import SECTOR_SIZES, task_short
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2


def _job_state(value: manager_pb2.JobState.ValueType) -> str:
    return render.enum_name("JOB_STATE_", manager_pb2.JobState.Name(value)).lower().replace("_", "-")


def _age(ts: Timestamp, now: float) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    seconds = max(0.0, now - ts.ToNanoseconds() / 1e9)
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _sector(ref: common_pb2.SectorRef) -> str:
    return f"{ref.id.miner}/{ref.id.number}"


def _worker(hostname: str, worker_id: str) -> str:
    """'host:1a2b3c4d': hosts often run several workers, so the id's start tells them apart."""
    if not worker_id:
        return "-"
    return f"{hostname}:{worker_id[:8]}" if hostname else worker_id


def jobs(args: argparse.Namespace, conn: Connection) -> int:
    request = manager_pb2.SealingJobsRequest(include_delivered=args.all, worker_id=args.worker or "")
    if args.sector is not None:
        request.sector.CopyFrom(common_pb2.SectorId(miner=miner_from(args), number=args.sector))
    reply = conn.manager().SealingJobs(request, timeout=conn.timeout)
    if args.json:
        render.emit_json({"jobs": [render.message_dict(j) for j in reply.jobs]})
        return 0
    now = time.time()
    rows = [
        (
            j.call_id.id,
            _sector(j.sector),
            task_short(j.task_type),
            _job_state(j.state),
            _worker(j.hostname, j.worker_id),
            j.attempt,
            _age(j.started_at, now),
            _age(j.queued_at, now),
        )
        for j in reply.jobs
    ]
    render.emit(
        render.table(("CALL", "SECTOR", "TASK", "STATE", "WORKER", "TRY", "RUN", "QUEUED"), rows) if rows else "no jobs"
    )
    return 0


def worker_state_text(s: manager_pb2.WorkerState) -> str:
    words = ["enabled" if s.enabled else "disabled"]
    if s.draining:
        words.append("draining")
    elif s.cordoned:
        words.append("cordoned")
    words.append("connected" if s.connected else "disconnected")
    return ",".join(words)


def worker_state_dict(s: manager_pb2.WorkerState) -> dict[str, bool]:
    return {"enabled": s.enabled, "cordoned": s.cordoned, "draining": s.draining, "connected": s.connected}


def _caps(w: manager_pb2.WorkerStat) -> str:
    """'PC1 2/4' per task type; per size ('PC1(32GiB) 2/4 PC1(64GiB) 1/4') only when tasks of
    several sizes run or caps differ between sizes (the manager reports every size a cap covers)."""
    by_type: dict[int, list[manager_pb2.TaskCapUsage]] = {}
    for t in w.tasks:
        by_type.setdefault(t.task_type, []).append(t)
    parts = []
    for entries in by_type.values():
        caps = {str(t.max_concurrent) if t.HasField("max_concurrent") else "-" for t in entries}
        busy = [t for t in entries if t.running]
        if len(caps) == 1 and len(busy) <= 1:
            parts.append(f"{task_short(entries[0].task_type)} {sum(t.running for t in entries)}/{caps.pop()}")
            continue
        for t in busy or entries:
            cap = str(t.max_concurrent) if t.HasField("max_concurrent") else "-"
            size = "" if t.seal_proof == common_pb2.REGISTERED_SEAL_PROOF_UNSPECIFIED else f"({_size_of(t.seal_proof)})"
            parts.append(f"{task_short(t.task_type)}{size} {t.running}/{cap}")
    return " ".join(parts) or "-"


def _size_of(proof: common_pb2.RegisteredSealProof.ValueType) -> str:
    return render.size(SECTOR_SIZES[proof]).replace(" ", "") if proof in SECTOR_SIZES else "?"


def workers(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().WorkerStats(
        manager_pb2.WorkerStatsRequest(worker_id=args.worker or ""), timeout=conn.timeout
    )
    if args.json:
        render.emit_json({"workers": [render.message_dict(w) for w in reply.workers]})
        return 0
    blocks = []
    for w in reply.workers:
        res = w.info.resources
        mem_total = res.mem_physical
        lines = [
            f"Worker {w.info.worker_id}, host {w.info.hostname} ({w.info.name or '-'}) at {w.address}",
            f"  state: {worker_state_text(w.state)}   tasks: {w.tasks_running} running, {w.tasks_preparing} preparing, {w.tasks_assigned} assigned",
            f"  CPU: {render.bar(w.cpu_used, res.cpus)}  {w.cpu_used}/{res.cpus} threads",
            f"  RAM: {render.bar(w.mem_used_min + res.mem_reserved, mem_total)}  {render.size(w.mem_used_min + res.mem_reserved)}/{render.size(mem_total)}",
            f"  VMEM: {render.bar(w.mem_used_max + res.mem_reserved, mem_total + res.mem_swap)}  {render.size(w.mem_used_max + res.mem_reserved)}/{render.size(mem_total + res.mem_swap)}",
        ]
        for g in w.gpus:
            lines.append(f"  GPU {g.ordinal}: {render.bar(g.used, 1.0)}  {g.name}")
        if not w.gpus:
            lines.append("  GPU: none")
        lines.append(f"  running/caps: {_caps(w)}")
        blocks.append("\n".join(lines))
    render.emit("\n\n".join(blocks) if blocks else "no workers registered")
    return 0


def abort(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().Abort(
        manager_pb2.AbortRequest(call_id=common_pb2.CallId(id=args.call_id), reason=args.reason), timeout=conn.timeout
    )
    previous = _job_state(reply.previous_state)
    if args.json:
        render.emit_json(
            {
                "call_id": args.call_id,
                "aborted": True,
                "previous_state": manager_pb2.JobState.Name(reply.previous_state),
            }
        )
    else:
        render.emit(f"aborted call {args.call_id} (it was {previous})")
    return 0


def _wait_reason(value: manager_pb2.WaitReason.ValueType) -> str:
    return render.enum_name("WAIT_REASON_", manager_pb2.WaitReason.Name(value)).lower().replace("_", "-")


def sched_diag(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().SchedDiag(manager_pb2.SchedDiagRequest(force_sched=args.force_sched), timeout=conn.timeout)
    if args.json:
        render.emit_json(render.message_dict(reply))
        return 0
    now = time.time()
    out = []
    if reply.requests:
        rows = [
            (
                r.call_id.id,
                _sector(r.sector),
                task_short(r.task_type),
                r.priority,
                _age(r.queued_at, now),
                _wait_reason(r.reason) + (" (UNSATISFIABLE)" if r.unsatisfiable else ""),
            )
            for r in reply.requests
        ]
        out.append("Queue:\n" + render.table(("CALL", "SECTOR", "TASK", "PRIO", "WAITING", "REASON"), rows))
        for r in reply.requests:
            for rej in r.rejections:
                out.append(
                    f"  {r.call_id.id} not on {rej.worker_id}: {_wait_reason(rej.reason)}"
                    + (f" ({rej.detail})" if rej.detail else "")
                )
    else:
        out.append("Queue: empty")
    unsatisfiable = [r for r in reply.requests if r.unsatisfiable]
    if unsatisfiable:
        out.append(
            f"{len(unsatisfiable)} request(s) no registered worker can ever run: "
            + ", ".join(r.call_id.id for r in unsatisfiable)
        )
    if reply.workers:
        rows2 = [(w.worker_id, w.hostname, worker_state_text(w.state), w.assigned, w.running) for w in reply.workers]
        out.append("Workers:\n" + render.table(("WORKER", "HOST", "STATE", "ASSIGNED", "RUNNING"), rows2))
    out.append(f"Awaiting return: {', '.join(c.id for c in reply.awaiting_return) or 'none'}")
    out.append(f"Returned, not collected: {len(reply.returned_work)}")
    render.emit("\n".join(out))
    return 0


def managers(args: argparse.Namespace, conn: Connection) -> int:
    reply = conn.manager().Managers(manager_pb2.ManagersRequest(), timeout=conn.timeout)
    if args.json:
        render.emit_json(render.message_dict(reply))
        return 0
    now = time.time()
    role = "leader" if reply.answered_by_leader else "standby"
    lines = [f"Answered by: {reply.answered_by.holder} at {reply.answered_by.address} ({role})"]
    if not reply.leader.holder:
        lines.append("Leader: none yet (no manager has led)")
    else:
        state = "live" if reply.live else "EXPIRED: no manager leads until a standby takes the lease"
        lines += [
            f"Leader: {reply.leader.holder} at {reply.leader.address}",
            f"  epoch {reply.epoch}, leading for {_age(reply.since, now)}, lease {state}"
            + (
                f" (runs {reply.expires_at.ToNanoseconds() / 1e9 - now:.1f} s more unless renewed)"
                if reply.live
                else ""
            ),
            f"Failovers so far: {reply.failovers}",
        ]
    render.emit("\n".join(lines))
    return 0


def _outcome(value: manager_pb2.TaskOutcome.ValueType) -> str:
    return render.enum_name("TASK_OUTCOME_", manager_pb2.TaskOutcome.Name(value)).lower().replace("_", "-")


def history(args: argparse.Namespace, conn: Connection) -> int:
    """Follows next_page_token until --limit runs (or the end)."""
    if args.limit < 1:
        raise ValueError("--limit must be at least 1")
    stub = conn.manager()
    request = manager_pb2.TaskHistoryRequest(failed_only=args.failed, worker_id=args.worker or "")
    if args.sector is not None:
        request.sector.CopyFrom(common_pb2.SectorId(miner=miner_from(args), number=args.sector))
    runs: list[manager_pb2.TaskRun] = []
    while len(runs) < args.limit:
        request.page_size = min(1000, args.limit - len(runs))
        reply = stub.TaskHistory(request, timeout=conn.timeout)
        runs.extend(reply.runs)
        if not reply.next_page_token:
            break
        request.page_token = reply.next_page_token
    if args.json:
        render.emit_json({"runs": [render.message_dict(r) for r in runs]})
        return 0
    rows = []
    for r in runs:
        took = "-"
        if r.finished_at.seconds and r.started_at.seconds:
            took = f"{(r.finished_at.ToNanoseconds() - r.started_at.ToNanoseconds()) / 1e9:.2f}s"
        error = (
            f"{common_pb2.TaskErrorCode.Name(r.error.code).removeprefix('TASK_ERROR_CODE_')}: {r.error.message}"
            if r.error.message or r.error.code
            else ""
        )
        started = r.started_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if r.started_at.seconds else "-"
        rows.append(
            (
                r.call_id.id,
                _sector(r.sector),
                task_short(r.task_type),
                r.attempt,
                _worker(r.hostname, r.worker_id),
                started,
                took,
                _outcome(r.outcome),
                error,
            )
        )
    render.emit(
        render.table(("CALL", "SECTOR", "TASK", "TRY", "WORKER", "STARTED", "TOOK", "OUTCOME", "ERROR"), rows)
        if rows
        else "no task runs"
    )
    return 0


def register(groups: Any, common: argparse.ArgumentParser) -> None:
    verbs = groups.add_parser(
        "sealing",
        help="jobs, workers and the scheduler (manager)",
        description="sectorctl sealing: jobs, workers and the scheduler (manager).",
    ).add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("jobs", parents=[common], help="jobs the manager knows: queued, assigned, running, returned")
    p.add_argument("--all", action="store_true", help="include delivered jobs")
    p.add_argument("--worker", help="only jobs of this worker id")
    p.add_argument("--sector", type=int, help="only jobs of this sector number (of --miner)")
    p.add_argument("--miner", type=int, help="miner actor id (default: SECTORSTORAGE_MINER or 1000)")
    p.set_defaults(func=jobs)

    p = verbs.add_parser(
        "workers", parents=[common], help="per worker: state, CPU/RAM/GPU use, running tasks against caps"
    )
    p.add_argument("--worker", help="only this worker id")
    p.set_defaults(func=workers)

    p = verbs.add_parser("abort", parents=[common], help="abort a queued or running call (not retried)")
    p.add_argument("call_id", metavar="CALL_ID", help="the call id (see `sealing jobs`)")
    p.add_argument("--reason", default="aborted with sectorctl", help="recorded in the history and the caller's error")
    p.set_defaults(func=abort)

    p = verbs.add_parser("sched-diag", parents=[common], help="the scheduler's queue and why each request waits")
    p.add_argument("--force-sched", action="store_true", help="run a scheduling pass first")
    p.set_defaults(func=sched_diag)

    p = verbs.add_parser(
        "managers", parents=[common], help="which manager leads, since when, failovers (managers sharing a database)"
    )
    p.set_defaults(func=managers)

    p = verbs.add_parser("history", parents=[common], help="task runs, newest first")
    p.add_argument("--sector", type=int, help="only runs on this sector number (of --miner)")
    p.add_argument("--miner", type=int, help="miner actor id (default: SECTORSTORAGE_MINER or 1000)")
    p.add_argument("--failed", action="store_true", help="only runs that did not succeed")
    p.add_argument("--worker", help="only runs on this worker id")
    p.add_argument("--limit", type=int, default=100, help="at most this many runs (default 100)")
    p.set_defaults(func=history)
