"""The dashboard's one gRPC edge: read-only calls to the manager and the index with the
dashboard's read token, each reply converted to the plain values of model.py. A service that
does not answer, or refuses the token, becomes a `ServiceError` naming it, so a page can say
which service is down and still show what the other one answered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.common.client import aio_channel
from services.common.proto.sectorstorage.v1 import (
    common_pb2,
    index_pb2,
    index_pb2_grpc,
    manager_pb2,
    manager_pb2_grpc,
)
from services.common.vocabulary import TASK_BY_SHORT, SealProof, TaskType
from services.web import model

T = TypeVar("T")
# At most this many history runs are read for one page (pages of 500).
HISTORY_LIMIT = 2000
SECTOR_LIMIT = 1000
FILE_TYPES = (
    common_pb2.SECTOR_FILE_TYPE_UNSEALED,
    common_pb2.SECTOR_FILE_TYPE_SEALED,
    common_pb2.SECTOR_FILE_TYPE_CACHE,
)


class ServiceError(Exception):
    """A service did not answer (or refused): `service` is 'manager' or 'index'."""

    def __init__(self, service: str, target: str, code: str, detail: str) -> None:
        super().__init__(f"{service} at {target}: {code}: {detail}")
        self.service = service
        self.target = target
        self.code = code
        self.detail = detail

    @property
    def down(self) -> bool:
        return self.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


class NotFound(Exception):
    """The service answered that the thing asked for does not exist."""


def _time(ts: Timestamp) -> float | None:
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToNanoseconds() / 1e9


def _word(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower().replace("_", "-")


def task_name(value: int) -> str:
    try:
        return TaskType(value).short
    except ValueError:
        return "?"


def _proof_label(value: int) -> str:
    try:
        return SealProof(value).label
    except ValueError:
        return "?"


def _sector(ref: common_pb2.SectorId) -> model.SectorKey:
    return model.SectorKey(ref.miner, ref.number)


def _state(s: manager_pb2.WorkerState) -> model.WorkerState:
    return model.WorkerState(enabled=s.enabled, cordoned=s.cordoned, draining=s.draining, connected=s.connected)


def _worker(w: manager_pb2.WorkerStat) -> model.Worker:
    res = w.info.resources
    gpu_names = {g.ordinal: g.name for g in res.gpus}
    return model.Worker(
        worker_id=w.info.worker_id,
        name=w.info.name,
        hostname=w.info.hostname,
        address=w.address,
        state=_state(w.state),
        last_heartbeat=_time(w.last_heartbeat),
        cpus=res.cpus,
        cpu_used=w.cpu_used,
        mem_physical=res.mem_physical,
        mem_swap=res.mem_swap,
        mem_reserved=res.mem_reserved,
        mem_used_min=w.mem_used_min,
        mem_used_max=w.mem_used_max,
        gpus=tuple(model.Gpu(g.ordinal, g.name or gpu_names.get(g.ordinal, ""), g.used) for g in w.gpus),
        caps=tuple(
            model.CapUsage(
                task=task_name(t.task_type),
                size="" if t.seal_proof == common_pb2.REGISTERED_SEAL_PROOF_UNSPECIFIED else _proof_label(t.seal_proof),
                running=t.running,
                cap=t.max_concurrent if t.HasField("max_concurrent") else None,
            )
            for t in w.tasks
        ),
        tasks_running=w.tasks_running,
        tasks_preparing=w.tasks_preparing,
        tasks_assigned=w.tasks_assigned,
        task_types=tuple(task_name(t) for t in w.info.task_types),
        paths=tuple((p.info.id, p.local_path) for p in w.info.paths),
    )


def _job(j: manager_pb2.SealingJob) -> model.Job:
    return model.Job(
        call_id=j.call_id.id,
        sector=_sector(j.sector.id),
        task=task_name(j.task_type),
        state=_word(manager_pb2.JobState.Name(j.state), "JOB_STATE_"),
        worker_id=j.worker_id,
        hostname=j.hostname,
        queued_at=_time(j.queued_at),
        started_at=_time(j.started_at),
        attempt=j.attempt,
    )


def _reason(value: manager_pb2.WaitReason.ValueType) -> str:
    return _word(manager_pb2.WaitReason.Name(value), "WAIT_REASON_")


def _sched(reply: manager_pb2.SchedDiagResponse) -> model.SchedDiag:
    return model.SchedDiag(
        requests=tuple(
            model.QueuedRequest(
                call_id=r.call_id.id,
                sector=_sector(r.sector.id),
                task=task_name(r.task_type),
                priority=r.priority,
                queued_at=_time(r.queued_at),
                reason=_reason(r.reason),
                unsatisfiable=r.unsatisfiable,
                rejections=tuple(model.Rejection(x.worker_id, _reason(x.reason), x.detail) for x in r.rejections),
            )
            for r in reply.requests
        ),
        workers=tuple(
            model.SchedWorker(w.worker_id, w.hostname, _state(w.state), w.assigned, w.running) for w in reply.workers
        ),
        awaiting_return=tuple(c.id for c in reply.awaiting_return),
        returned_work=len(reply.returned_work),
    )


def _file_type(value: common_pb2.SectorFileType.ValueType) -> str:
    return _word(common_pb2.SectorFileType.Name(value), "SECTOR_FILE_TYPE_") if value else "?"


def _path(e: index_pb2.StorageListEntry) -> model.StoragePath:
    return model.StoragePath(
        storage_id=e.info.id,
        urls=tuple(e.info.urls),
        weight=e.info.weight,
        can_seal=e.info.can_seal,
        can_store=e.info.can_store,
        groups=tuple(e.info.groups),
        capacity=e.stat.capacity,
        available=e.stat.available,
        fs_available=e.stat.fs_available,
        reserved=e.stat.reserved,
        max_storage=e.stat.max,
        used=e.stat.used,
        healthy=e.health.healthy,
        health_error=e.health.error,
        last_heartbeat=_time(e.health.last_heartbeat),
        file_counts=tuple((_file_type(c.type), c.count) for c in e.file_counts if c.count),
    )


def _status(s: manager_pb2.SectorStatusResponse) -> model.SectorStatus:
    return model.SectorStatus(
        sector=_sector(s.sector.id),
        proof=_proof_label(s.sector.proof_type),
        proof_value=s.sector.proof_type,
        state=_word(manager_pb2.SectorLifecycleState.Name(s.state), "SECTOR_LIFECYCLE_STATE_"),
        generation=s.generation,
        pieces=tuple(model.Piece(p.size, p.piece_cid) for p in s.pieces),
        steps=tuple(
            model.Step(_word(manager_pb2.SectorStep.Name(x.step), "SECTOR_STEP_"), _time(x.done_at)) for x in s.steps
        ),
        last_error=s.last_error,
        jobs=tuple(_job(j) for j in s.jobs),
        created_at=_time(s.created_at),
        updated_at=_time(s.updated_at),
    )


def _run(r: manager_pb2.TaskRun) -> model.TaskRun:
    return model.TaskRun(
        call_id=r.call_id.id,
        sector=_sector(r.sector.id),
        task=task_name(r.task_type),
        attempt=r.attempt,
        worker_id=r.worker_id,
        hostname=r.hostname,
        queued_at=_time(r.queued_at),
        started_at=_time(r.started_at),
        finished_at=_time(r.finished_at),
        outcome=_word(manager_pb2.TaskOutcome.Name(r.outcome), "TASK_OUTCOME_"),
        error_code=_word(common_pb2.TaskErrorCode.Name(r.error.code), "TASK_ERROR_CODE_") if r.error.code else "",
        error=r.error.message,
    )


def _window_post(proof: int) -> int:
    label = _proof_label(proof).upper()
    return int(common_pb2.RegisteredPoStProof.Value(f"REGISTERED_PO_ST_PROOF_STACKED_DRG_WINDOW_{label}_V1"))


@dataclass
class Services:
    """Channels to the manager and the index, opened on the running event loop."""

    manager_target: str
    index_target: str
    token: str | None
    timeout: float

    def __post_init__(self) -> None:
        self._manager_channel = aio_channel(self.manager_target, self.token)
        self._index_channel = aio_channel(self.index_target, self.token)
        self._manager = manager_pb2_grpc.ManagerServiceStub(self._manager_channel)
        self._index = index_pb2_grpc.IndexServiceStub(self._index_channel)

    async def close(self) -> None:
        await asyncio.gather(self._manager_channel.close(), self._index_channel.close())

    async def _call(self, service: str, call: Callable[[], Awaitable[T]]) -> T:
        target = self.manager_target if service == "manager" else self.index_target
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(exc.details() or "not found") from None
            raise ServiceError(service, target, exc.code().name, exc.details() or "") from None

    def _m(self, method: str, request: Any) -> Callable[[], Awaitable[Any]]:
        rpc = getattr(self._manager, method)
        return lambda: rpc(request, timeout=self.timeout)

    def _i(self, method: str, request: Any) -> Callable[[], Awaitable[Any]]:
        rpc = getattr(self._index, method)
        return lambda: rpc(request, timeout=self.timeout)

    async def workers(self) -> list[model.Worker]:
        reply = await self._call("manager", self._m("WorkerStats", manager_pb2.WorkerStatsRequest()))
        return [_worker(w) for w in reply.workers]

    async def jobs(self, sector: model.SectorKey | None = None) -> list[model.Job]:
        request = manager_pb2.SealingJobsRequest()
        if sector is not None:
            request.sector.CopyFrom(common_pb2.SectorId(miner=sector.miner, number=sector.number))
        reply = await self._call("manager", self._m("SealingJobs", request))
        return [_job(j) for j in reply.jobs]

    async def sched_diag(self) -> model.SchedDiag:
        reply = await self._call("manager", self._m("SchedDiag", manager_pb2.SchedDiagRequest()))
        return _sched(reply)

    async def paths(self) -> list[model.StoragePath]:
        reply = await self._call("index", self._i("StorageList", index_pb2.StorageListRequest()))
        return [_path(e) for e in reply.paths]

    async def sectors(self) -> tuple[list[model.SectorStatus], bool]:
        """Every sector (at most SECTOR_LIMIT) and whether there were more."""
        out: list[model.SectorStatus] = []
        page = ""
        while True:
            request = manager_pb2.ListSectorsRequest(page_size=500, page_token=page)
            reply = await self._call("manager", self._m("ListSectors", request))
            out.extend(_status(s) for s in reply.sectors)
            page = reply.next_page_token
            if not page or len(out) >= SECTOR_LIMIT:
                return out[:SECTOR_LIMIT], bool(page)

    async def sector(self, key: model.SectorKey) -> model.SectorStatus:
        request = manager_pb2.SectorStatusRequest(sector=common_pb2.SectorId(miner=key.miner, number=key.number))
        return _status(await self._call("manager", self._m("SectorStatus", request)))

    async def locations(self, key: model.SectorKey) -> list[model.FileLocation]:
        out: list[model.FileLocation] = []
        sector = common_pb2.SectorId(miner=key.miner, number=key.number)
        found: dict[str, tuple[index_pb2.SectorStorageInfo, list[str]]] = {}
        for file_type in FILE_TYPES:
            request = index_pb2.StorageFindSectorRequest(sector=sector, types=[file_type])
            reply = await self._call("index", self._i("StorageFindSector", request))
            for loc in reply.locations:
                found.setdefault(loc.id, (loc, []))[1].append(_file_type(file_type))
        for loc, types in found.values():
            out.append(
                model.FileLocation(loc.id, tuple(loc.urls), tuple(types), loc.primary, loc.can_seal, loc.can_store)
            )
        return out

    async def provable(self, status: model.SectorStatus) -> str | None:
        """None when the sector's files check out (CheckProvable, not expensive), else why not."""
        ref = common_pb2.SectorRef(
            id=common_pb2.SectorId(miner=status.sector.miner, number=status.sector.number),
            proof_type=common_pb2.RegisteredSealProof.ValueType(status.proof_value),
        )
        request = manager_pb2.CheckProvableRequest(
            proof_type=common_pb2.RegisteredPoStProof.ValueType(_window_post(status.proof_value)),
            sectors=[common_pb2.ProvingSector(sector=ref)],
        )
        reply = await self._call("manager", self._m("CheckProvable", request))
        return reply.bad_sectors[0].reason if reply.bad_sectors else None

    async def history(
        self, filters: model.HistoryFilter, limit: int = HISTORY_LIMIT
    ) -> tuple[list[model.TaskRun], bool]:
        """Runs newest first (at most `limit`) and whether there were more."""
        request = manager_pb2.TaskHistoryRequest(
            page_size=500, failed_only=filters.failed_only, worker_id=filters.worker_id
        )
        if filters.sector is not None:
            request.sector.CopyFrom(common_pb2.SectorId(miner=filters.sector.miner, number=filters.sector.number))
        if filters.task is not None:
            request.task_type = common_pb2.TaskType.Value(f"TASK_TYPE_{TASK_BY_SHORT[filters.task].name}")
        if filters.since is not None:
            request.since.FromNanoseconds(int(filters.since * 1e9))
        out: list[model.TaskRun] = []
        while True:
            reply = await self._call("manager", self._m("TaskHistory", request))
            out.extend(_run(r) for r in reply.runs)
            if not reply.next_page_token or len(out) >= limit:
                return out[:limit], bool(reply.next_page_token)
            request.page_token = reply.next_page_token
