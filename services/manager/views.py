"""What operators see: the SealingJobs, WorkerStats, SchedDiag and SectorStatus replies, built
from the live state (tracker, scheduler, registry) and, for delivered jobs, the database. An edge
module, like convert.py: it builds messages (the domain modules do not), and stays apart from
convert.py because each reply reads the runner's live state where convert.py only maps values;
message leaves (timestamps, SectorRefs, TaskRuns, the WorkerInfo a worker sent) come from
convert.py. `snapshot` feeds the metrics gauges."""

from __future__ import annotations

import time
from collections import Counter

from services.common.cid import unsealed_cid
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.manager import lifecycle, metrics
from services.manager.calltracker import LiveWork
from services.manager.convert import call_id_msg, ref_msg, sector_ref_msg, set_ts, ts, worker_info_msg
from services.manager.jobs import Ephemeral, JobRunner
from services.manager.queue import SchedRequest
from services.manager.records import CallStatus, WorkRecord, WorkStatus
from services.manager.resources import DEFAULT_TABLE
from services.manager.tasks import TaskType
from services.manager.workers import WorkerHandle, WorkerInfo, table_of

JobState = manager_pb2.JobState
_STATE_ORDER = {
    JobState.JOB_STATE_RUNNING: 0,
    JobState.JOB_STATE_PREPARING: 1,
    JobState.JOB_STATE_ASSIGNED: 1,
    JobState.JOB_STATE_QUEUED: 2,
    JobState.JOB_STATE_RET_WAIT: 3,
    JobState.JOB_STATE_RETURNED: 4,
    JobState.JOB_STATE_DELIVERED: 5,
}
# SchedDiag lists per-worker rejections for this many requests at the head of the queue (each
# costs one line per worker; 10,000 requests x 200 workers would not fit in a message).
DIAG_REJECTIONS_FOR = 200


def mono_to_wall(value: float) -> float:
    return time.time() - (time.monotonic() - value) if value else 0.0


def job_state_of(live: LiveWork, runner: JobRunner) -> int:
    """The JobState (manager.proto) of a live work, from its record, its call and the scheduler."""
    status = live.record.status
    call = live.call
    if status is WorkStatus.DONE:
        return JobState.JOB_STATE_RETURNED
    if status is WorkStatus.DELIVERED:
        return JobState.JOB_STATE_DELIVERED
    if call.status is CallStatus.QUEUED:
        return JobState.JOB_STATE_ASSIGNED if call.call_id in runner.scheduler.assigned else JobState.JOB_STATE_QUEUED
    if call.status is CallStatus.DISPATCHING:
        return JobState.JOB_STATE_ASSIGNED
    handle = runner.registry.get(call.worker_id)
    if handle is None or not handle.connected or call.call_id not in runner.scheduler.assigned:
        return JobState.JOB_STATE_RET_WAIT
    return JobState.JOB_STATE_RUNNING


# --- SealingJobs -------------------------------------------------------------------------------


def _job_of_live(live: LiveWork, runner: JobRunner) -> manager_pb2.SealingJob:
    record, call = live.record, live.call
    job = manager_pb2.SealingJob(
        call_id=call_id_msg(record.miner, record.number, call.call_id),
        work_id=record.work_id,
        sector=ref_msg(record.miner, record.number, record.seal_proof),
        task_type=common_pb2.TaskType.ValueType(record.task_type),
        worker_id=call.worker_id,
        hostname=call.hostname,
        state=job_state_of(live, runner),  # type: ignore[arg-type]
        priority=record.priority,
        attempt=record.attempt,
    )
    placed = runner.scheduler.assigned.get(call.call_id)
    if placed is not None and not job.worker_id:
        job.worker_id = placed.worker_id
        handle = runner.registry.get(placed.worker_id)
        job.hostname = handle.hostname if handle else ""
    set_ts(job.queued_at, call.queued_at)
    set_ts(job.started_at, call.started_at or call.dispatched_at)
    return job


def _job_of_ephemeral(job: Ephemeral, runner: JobRunner) -> manager_pb2.SealingJob:
    handle = runner.registry.get(job.worker_id) if job.worker_id else None
    out = manager_pb2.SealingJob(
        call_id=call_id_msg(job.sector.miner, job.sector.number, job.call_id),
        sector=sector_ref_msg(job.sector),
        task_type=common_pb2.TaskType.ValueType(int(job.task_type)),
        worker_id=job.worker_id,
        hostname=handle.hostname if handle else "",
        state=JobState.JOB_STATE_RUNNING if job.worker_id else JobState.JOB_STATE_QUEUED,
        priority=job.priority,
        attempt=1,
    )
    set_ts(out.queued_at, job.queued_at)
    set_ts(out.started_at, job.started_at)
    return out


def _job_of_delivered(record: WorkRecord) -> manager_pb2.SealingJob:
    job = manager_pb2.SealingJob(
        call_id=call_id_msg(record.miner, record.number, record.call_id),
        work_id=record.work_id,
        sector=ref_msg(record.miner, record.number, record.seal_proof),
        task_type=common_pb2.TaskType.ValueType(record.task_type),
        state=JobState.JOB_STATE_DELIVERED,
        priority=record.priority,
        attempt=record.attempt,
    )
    set_ts(job.queued_at, record.created_at)
    return job


def sealing_jobs(
    runner: JobRunner, req: manager_pb2.SealingJobsRequest, delivered: list[WorkRecord]
) -> list[manager_pb2.SealingJob]:
    jobs = [_job_of_live(live, runner) for live in runner.tracker.live()]
    jobs.extend(_job_of_ephemeral(e, runner) for e in runner.ephemeral.values())
    jobs.extend(_job_of_delivered(r) for r in delivered)
    if req.worker_id:
        jobs = [j for j in jobs if j.worker_id == req.worker_id]
    if req.HasField("sector"):
        jobs = [j for j in jobs if j.sector.id.miner == req.sector.miner and j.sector.id.number == req.sector.number]
    jobs.sort(
        key=lambda j: (_STATE_ORDER.get(j.state, 9), (j.started_at.ToNanoseconds() or j.queued_at.ToNanoseconds()))
    )
    return jobs


# --- WorkerStats -------------------------------------------------------------------------------


def worker_state(handle: WorkerHandle) -> manager_pb2.WorkerState:
    return manager_pb2.WorkerState(
        enabled=handle.enabled,
        cordoned=handle.cordoned or handle.draining or handle.shutting_down,
        draining=handle.draining or handle.shutting_down,
        connected=handle.connected,
    )


def worker_stat(handle: WorkerHandle, runner: JobRunner) -> manager_pb2.WorkerStat:
    stat = manager_pb2.WorkerStat(
        info=worker_info_msg(handle.info),
        address=handle.address,
        session_id=handle.session_id if handle.connected else "",
        state=worker_state(handle),
    )
    set_ts(stat.registered_at, mono_to_wall(handle.registered_at))
    set_ts(stat.last_heartbeat, mono_to_wall(handle.last_heartbeat))
    sched = runner.scheduler.workers.get(handle.worker_id)
    gpus = list(handle.info.gpus)
    if sched is None:
        stat.gpus.extend(manager_pb2.GpuUsage(ordinal=g.ordinal, name=g.name, used=0.0) for g in gpus)
        return stat
    cap = sched.capacity
    stat.mem_used_min = cap.used_min + cap.used_base
    stat.mem_used_max = cap.used_max + cap.used_base
    stat.cpu_used = cap.cpu_used
    for g, used in zip(gpus, cap.gpu_used, strict=False):
        stat.gpus.append(manager_pb2.GpuUsage(ordinal=g.ordinal, name=g.name, used=round(used, 6)))
    caps = {shape: row.max_concurrent for shape, row in sched.table.items() if row.max_concurrent is not None}
    for shape in sorted(set(caps) | set(cap.running), key=lambda s: (int(s[0]), int(s[1]))):
        usage = manager_pb2.TaskCapUsage(
            task_type=common_pb2.TaskType.ValueType(int(shape[0])),
            seal_proof=common_pb2.RegisteredSealProof.ValueType(int(shape[1])),
            running=cap.running.get(shape, 0),
        )
        if shape in caps:
            usage.max_concurrent = caps[shape] or 0
        stat.tasks.append(usage)
    for call_id in sched.assigned:
        live = runner.tracker.by_call.get(call_id)
        if live is not None and live.call.call_id == call_id and live.call.status is CallStatus.QUEUED:
            stat.tasks_assigned += 1
        else:
            stat.tasks_running += 1
    return stat


def resource_rows(info: WorkerInfo, default: bool) -> list[manager_pb2.ResourceTableRow]:
    """A worker's resource table (or the built-in one), each row flagged where the worker's
    configuration changed it."""
    effective = DEFAULT_TABLE if default else table_of(info)
    out = []
    for (task, proof), row in sorted(effective.items(), key=lambda item: (int(item[0][0]), int(item[0][1]))):
        message = manager_pb2.ResourceTableRow(
            task_type=common_pb2.TaskType.ValueType(int(task)),
            seal_proof=common_pb2.RegisteredSealProof.ValueType(int(proof)),
            min_memory=row.min_memory,
            max_memory=row.max_memory,
            max_parallelism=row.max_parallelism,
            gpu_utilization=row.gpu_utilization,
            base_min_memory=row.base_min_memory,
            overridden=not default and row != DEFAULT_TABLE.row((task, proof)),
        )
        if row.max_parallelism_gpu is not None:
            message.max_parallelism_gpu = row.max_parallelism_gpu
        if row.max_concurrent is not None:
            message.max_concurrent = row.max_concurrent
        out.append(message)
    return out


# --- SchedDiag ---------------------------------------------------------------------------------


def _queued(request: SchedRequest, runner: JobRunner, with_rejections: bool) -> manager_pb2.QueuedRequest:
    payload = request.payload
    if isinstance(payload, LiveWork):
        record = payload.record
        sector = ref_msg(record.miner, record.number, record.seal_proof)
        work_id = record.work_id
    elif isinstance(payload, Ephemeral):
        sector, work_id = sector_ref_msg(payload.sector), ""
    else:
        sector, work_id = ref_msg(0, request.sector_number, int(request.shape[1])), ""
    diagnosis = runner.scheduler.diagnose(request, with_rejections)
    out = manager_pb2.QueuedRequest(
        call_id=common_pb2.CallId(sector=sector.id, id=request.id),
        work_id=work_id,
        sector=sector,
        task_type=common_pb2.TaskType.ValueType(int(request.shape[0])),
        priority=request.priority,
        reason=manager_pb2.WaitReason.ValueType(int(diagnosis.reason)),
        unsatisfiable=diagnosis.unsatisfiable,
        rejections=[
            manager_pb2.WorkerRejection(
                worker_id=wid, reason=manager_pb2.WaitReason.ValueType(int(reason)), detail=detail
            )
            for wid, reason, detail in diagnosis.rejections
        ],
    )
    set_ts(out.queued_at, mono_to_wall(request.queued_at))
    return out


def sched_diag(runner: JobRunner, force: bool) -> manager_pb2.SchedDiagResponse:
    if force:
        runner.scheduler.full_pass()
    out = manager_pb2.SchedDiagResponse()
    for i, request in enumerate(runner.scheduler.queue.ordered()):
        out.requests.append(_queued(request, runner, i < DIAG_REJECTIONS_FOR))
    for handle in sorted(runner.registry.workers.values(), key=lambda h: h.worker_id):
        sched = runner.scheduler.workers.get(handle.worker_id)
        assigned = running = 0
        if sched is not None:
            for call_id in sched.assigned:
                live = runner.tracker.by_call.get(call_id)
                if live is not None and live.call.call_id == call_id and live.call.status is CallStatus.QUEUED:
                    assigned += 1
                else:
                    running += 1
        out.workers.append(
            manager_pb2.SchedWorker(
                worker_id=handle.worker_id,
                hostname=handle.hostname,
                state=worker_state(handle),
                assigned=assigned,
                running=running,
            )
        )
    for live in runner.tracker.live():
        if live.call.status in (CallStatus.DISPATCHING, CallStatus.RUNNING):
            out.awaiting_return.append(call_id_msg(live.record.miner, live.record.number, live.call.call_id))
        elif live.record.status is WorkStatus.DONE:
            out.returned_work.append(live.work_id)
    return out


def snapshot(runner: JobRunner) -> metrics.Snapshot:
    """The gauges' values (called from the metrics HTTP thread: copies before iterating)."""
    snap = metrics.Snapshot()
    for request in list(runner.scheduler.queue.values()):
        snap.queued[request.shape[0].short] += 1
    unsatisfiable = runner.unsatisfiable_shapes() if snap.queued else set()
    if unsatisfiable:
        for request in list(runner.scheduler.queue.values()):
            if request.shape in unsatisfiable:
                snap.unsatisfiable[request.shape[0].short] += 1
    state_names: dict[int, str] = {int(v): k.removeprefix("JOB_STATE_").lower() for k, v in JobState.items()}
    for live in list(runner.tracker.works.values()):
        snap.jobs[(TaskType(live.record.task_type).short, state_names[job_state_of(live, runner)])] += 1
    counts: Counter[str] = Counter()
    for handle in list(runner.registry.workers.values()):
        if not handle.connected:
            counts["disconnected"] += 1
        elif not handle.enabled:
            counts["disabled"] += 1
        elif handle.cordoned or handle.draining or handle.shutting_down:
            counts["cordoned"] += 1
        else:
            counts["enabled"] += 1
        sched = runner.scheduler.workers.get(handle.worker_id)
        if sched is not None:
            cap = sched.capacity
            snap.worker_use[handle.worker_id] = (
                handle.hostname,
                cap.used_min + cap.used_base,
                cap.used_max + cap.used_base,
                cap.cpu_used,
                sum(cap.gpu_used),
                len(sched.assigned),
            )
    snap.workers = counts
    snap.placements = runner.scheduler.stats.placements
    return snap


# --- SectorStatus ------------------------------------------------------------------------------

_STEP_PROTO = {
    lifecycle.Step.PRE_COMMIT_1: manager_pb2.SECTOR_STEP_PRE_COMMIT_1,
    lifecycle.Step.PRE_COMMIT_2: manager_pb2.SECTOR_STEP_PRE_COMMIT_2,
    lifecycle.Step.COMMIT_1: manager_pb2.SECTOR_STEP_COMMIT_1,
    lifecycle.Step.COMMIT_2: manager_pb2.SECTOR_STEP_COMMIT_2,
    lifecycle.Step.FINALIZE: manager_pb2.SECTOR_STEP_FINALIZE,
    lifecycle.Step.MOVE_STORAGE: manager_pb2.SECTOR_STEP_MOVE_STORAGE,
}


def sector_status(
    record: lifecycle.SectorRecord, runner: JobRunner, with_jobs: bool = True
) -> manager_pb2.SectorStatusResponse:
    """A sector's lifecycle record and (with_jobs) its work not finished yet, for SectorStatus
    and ListSectors (which leaves the jobs out: each would scan every live job)."""
    out = manager_pb2.SectorStatusResponse(
        sector=ref_msg(record.miner, record.number, record.proof_type),
        state=manager_pb2.SectorLifecycleState.ValueType(int(record.state)),
        generation=record.generation,
        last_error=record.last_error,
    )
    for piece in record.pieces:
        out.pieces.append(common_pb2.PieceInfo(size=piece.size, commp=piece.commp, piece_cid=unsealed_cid(piece.commp)))
    for step in lifecycle.STEP_ORDER:
        done = record.steps.get(step)
        if done is not None:
            out.steps.append(manager_pb2.SectorStepDone(step=_STEP_PROTO[step], done_at=ts(done.done_at)))
    if not with_jobs:
        set_ts(out.created_at, record.created_at)
        set_ts(out.updated_at, record.updated_at)
        return out
    request = manager_pb2.SealingJobsRequest(sector=common_pb2.SectorId(miner=record.miner, number=record.number))
    out.jobs.extend(
        j
        for j in sealing_jobs(runner, request, [])
        if j.state not in (JobState.JOB_STATE_RETURNED, JobState.JOB_STATE_DELIVERED)
    )
    set_ts(out.created_at, record.created_at)
    set_ts(out.updated_at, record.updated_at)
    return out
