"""Protobuf messages <-> worker domain values. Reading a request validates it (validation.Invalid,
INVALID_ARGUMENT, names the field and what to send instead) and yields what the domain modules
work with: a `dispatch.TaskCall` for every asynchronous task RPC, plain values otherwise. Writing
a reply cannot fail. This and servicer.py are the only worker modules that read the
WorkerService request messages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

import rust_core
from services.common import wellknown
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.common.resource_override import ResourceOverride
from services.common.vocabulary import TaskType
from services.worker import sealer, tasks
from services.worker.calls import CallId, CallType, TaskFailure
from services.worker.cleanup import Orphan
from services.worker.dispatch import AddPieceCall, Assignment, ProofsCall, TaskCall
from services.worker.index_client import fs_stat_msg, storage_info_msg
from services.worker.local_store import FsStat, LocalPath
from services.worker.messages import call_id_of, file_type_msg, sector_id_msg, sector_id_of, task_error_msg
from services.worker.parts import Parts
from services.worker.paths import PathMeta
from services.worker.reads import Chunk
from services.worker.resources import ALL_TASK_TYPES
from services.worker.sealer import Piece
from services.worker.sectors import (
    FileType,
    PathType,
    PostKind,
    SectorId,
    check_unpadded_range,
    post_proof_info,
    sector_size_of,
    types_from_proto,
)
from services.worker.serving import FileStat
from services.worker.tasks import SectorRef
from services.worker.validation import Invalid, bytes32, piece_fits, piece_sizes

# -- fields shared by many requests -------------------------------------------------------------


def sector_id(msg: common_pb2.SectorId, has: bool = True) -> SectorId:
    if not has:
        raise Invalid("sector is required")
    try:
        return sector_id_of(msg)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def sector_ref(msg: common_pb2.SectorRef, has: bool = True) -> SectorRef:
    if not has or not msg.HasField("id"):
        raise Invalid("sector (id and proof_type) is required")
    sid = sector_id(msg.id)
    try:
        size = sector_size_of(msg.proof_type)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return SectorRef(sid, size)


def assignment_call(assignment: worker_pb2.TaskAssignment, has: bool, sector: SectorId) -> CallId:
    if not has or not assignment.HasField("call_id"):
        raise Invalid("assignment.call_id is required")
    call = assignment.call_id
    try:
        uuid.UUID(call.id)
    except ValueError:
        raise Invalid(f"call_id.id {call.id!r} is not a UUID") from None
    if not call.HasField("sector") or sector_id(call.sector) != sector:
        raise Invalid(f"call_id.sector differs from the request's sector {sector}")
    return call_id_of(call)


def timeout_s(assignment: worker_pb2.TaskAssignment) -> float | None:
    if not assignment.HasField("timeout"):
        return None
    problem = wellknown.duration_problem(assignment.timeout)
    if problem:
        raise Invalid(f"assignment.timeout is not a valid duration: {problem}")
    seconds = wellknown.duration_seconds(assignment.timeout)
    return seconds if seconds > 0 else None


def assignment(msg: worker_pb2.TaskAssignment, has: bool, sector: SectorId) -> Assignment:
    """The manager's assignment of a call: its id (for `sector`), GPUs, attempt and timeout."""
    call = assignment_call(msg, has, sector)
    return Assignment(
        call, tuple(msg.gpu_ordinals), msg.attempt, timeout_s(msg), msg.leader_epoch, msg.worker_session_id
    )


def pieces(msgs: Sequence[common_pb2.PieceInfo]) -> list[Piece]:
    out = []
    for i, p in enumerate(msgs):
        size = p.size
        if size < 128 or size & (size - 1):
            raise Invalid(f"pieces[{i}].size {size} is not a padded piece size (a power of two >= 128)")
        if not p.piece_cid and not p.commp:
            raise Invalid(f"pieces[{i}] needs piece_cid or commp")
        commp = p.commp
        if p.piece_cid:
            try:
                from_cid = sealer.commp_from_cid(p.piece_cid)
            except ValueError as exc:
                raise Invalid(f"pieces[{i}].piece_cid: {exc}") from None
            if commp and commp != from_cid:
                raise Invalid(f"pieces[{i}]: piece_cid and commp disagree")
            commp = from_cid
        out.append(Piece(size, bytes32(f"pieces[{i}].commp", commp)))
    return out


def unpadded_range(msg: common_pb2.UnpaddedByteRange, sector_size: int, piece_sized: bool = True) -> tuple[int, int]:
    try:
        check_unpadded_range(msg.offset, msg.size, sector_size, piece_sized=piece_sized)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return msg.offset, msg.size


def file_types(values: Iterable[int], default: FileType | None = None) -> FileType:
    values = list(values)
    if not values and default is not None:
        return default
    try:
        return types_from_proto(values)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def one_file_type(value: int, allowed: FileType | None = None) -> FileType:
    try:
        t = FileType.parse_proto(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if allowed is not None and not t & allowed:
        raise Invalid(f"file type {t.dirname} is not allowed here")
    return t


def task_type_list(values: Sequence[int]) -> list[int]:
    if not values:
        raise Invalid("task_types must not be empty")
    for v in values:
        if v not in ALL_TASK_TYPES:
            raise Invalid(f"unknown task type {v}")
    return list(values)


# -- asynchronous task requests -> TaskCall -----------------------------------------------------


def add_piece(first: worker_pb2.WorkerServiceAddPieceRequest) -> AddPieceCall:
    """The header of an AddPiece stream (its first message)."""
    if not first.HasField("header"):
        raise Invalid("the first message must be the header")
    h = first.header
    sector = sector_ref(h.sector, h.HasField("sector"))
    call = assignment_call(h.assignment, h.HasField("assignment"), sector.id)
    existing = list(h.existing_piece_sizes)
    piece_sizes(existing, h.piece_size)
    piece_fits(existing, h.piece_size, sector.size)
    return AddPieceCall(
        call,
        sector,
        h.sector.proof_type,
        existing,
        h.piece_size,
        h.assignment.attempt,
        h.assignment.leader_epoch,
        h.assignment.worker_session_id,
    )


async def piece_bytes(
    rest: AsyncIterator[worker_pb2.WorkerServiceAddPieceRequest],
) -> AsyncIterator[tuple[int, bytes]]:
    """(offset, data) of each chunk after the header; another header is a bad stream."""
    async for msg in rest:
        if not msg.HasField("chunk"):
            raise tasks.BadStream("only the first message may be a header")
        yield msg.chunk.offset, msg.chunk.data


def pre_commit1(request: worker_pb2.WorkerServiceSealPreCommit1Request) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    ticket = bytes32("ticket", request.ticket)
    pieces_ = pieces(request.pieces)
    total = sum(p.padded_size for p in pieces_)
    if total != sector.size:
        raise Invalid(f"the pieces' padded sizes add up to {total}, not the sector size {sector.size}")
    proof = int(request.sector.proof_type)
    return TaskCall(
        CallType.SEAL_PRE_COMMIT_1,
        TaskType.PRE_COMMIT_1,
        proof,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.pre_commit1(env, ctx, sector, ticket, pieces_, proof),
    )


def pre_commit2(request: worker_pb2.WorkerServiceSealPreCommit2Request) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    if not request.pre_commit1_output:
        raise Invalid("pre_commit1_output is required")
    p1 = bytes(request.pre_commit1_output)
    return TaskCall(
        CallType.SEAL_PRE_COMMIT_2,
        TaskType.PRE_COMMIT_2,
        request.sector.proof_type,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.pre_commit2(env, ctx, sector, p1),
    )


def commit1(request: worker_pb2.WorkerServiceSealCommit1Request) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    ticket = bytes32("ticket", request.ticket)
    seed = bytes32("seed", request.seed)
    comm_r = bytes32("comm_r", request.comm_r)
    comm_d = bytes32("comm_d", request.comm_d)
    pieces_ = pieces(request.pieces)
    return TaskCall(
        CallType.SEAL_COMMIT_1,
        TaskType.COMMIT_1,
        request.sector.proof_type,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.commit1(env, ctx, sector, ticket, seed, pieces_, comm_r, comm_d),
    )


def commit2(request: worker_pb2.WorkerServiceSealCommit2Request) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    if not request.commit1_output:
        raise Invalid("commit1_output is required")
    c1 = bytes(request.commit1_output)
    return TaskCall(
        CallType.SEAL_COMMIT_2,
        TaskType.COMMIT_2,
        request.sector.proof_type,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.commit2(env, ctx, sector, c1),
    )


def finalize(request: worker_pb2.WorkerServiceFinalizeSectorRequest) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    keep = [unpadded_range(r, sector.size) for r in request.keep_unsealed]
    return TaskCall(
        CallType.FINALIZE_SECTOR,
        TaskType.FINALIZE,
        request.sector.proof_type,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.finalize(env, ctx, sector, keep),
    )


def release_unsealed(request: worker_pb2.WorkerServiceReleaseUnsealedRequest) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    if bool(request.ranges) == request.all:
        raise Invalid("give exactly one of ranges (non-empty) and all")
    ranges = [unpadded_range(r, sector.size) for r in request.ranges]
    everything = request.all
    return TaskCall(
        CallType.RELEASE_UNSEALED,
        TaskType.FINALIZE,
        request.sector.proof_type,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.release_unsealed(env, ctx, sector, ranges, everything),
    )


def move_storage(request: worker_pb2.MoveStorageRequest) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    types = file_types(request.types)
    return TaskCall(
        CallType.MOVE_STORAGE,
        TaskType.FETCH,
        request.sector.proof_type,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.move_storage(env, ctx, sector, types),
    )


def unseal_piece(request: worker_pb2.WorkerServiceUnsealPieceRequest) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    if not request.HasField("range"):
        raise Invalid("range is required")
    offset, size = unpadded_range(request.range, sector.size)
    ticket = bytes32("ticket", request.ticket)
    comm_d = bytes32("comm_d", request.comm_d)
    return TaskCall(
        CallType.UNSEAL_PIECE,
        TaskType.UNSEAL,
        request.sector.proof_type,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.unseal_piece(env, ctx, sector, offset, size, ticket, comm_d),
    )


def fetch(request: worker_pb2.FetchRequest) -> TaskCall:
    sector = sector_ref(request.sector, request.HasField("sector"))
    types = file_types(request.types)
    if request.path_type not in (common_pb2.PATH_TYPE_SEALING, common_pb2.PATH_TYPE_STORAGE):
        raise Invalid("path_type must be SEALING or STORAGE")
    if request.mode not in (worker_pb2.FETCH_MODE_MOVE, worker_pb2.FETCH_MODE_COPY):
        raise Invalid("mode must be MOVE or COPY")
    path_type = PathType(request.path_type)
    move = request.mode == worker_pb2.FETCH_MODE_MOVE
    return TaskCall(
        CallType.FETCH,
        TaskType.FETCH,
        request.sector.proof_type,
        assignment(request.assignment, request.HasField("assignment"), sector.id),
        lambda env, ctx: tasks.fetch(env, ctx, sector, types, path_type, move),
    )


# -- synchronous requests -----------------------------------------------------------------------


def vanilla_proofs(request: worker_pb2.GenerateVanillaProofsRequest) -> ProofsCall:
    """A GenerateVanillaProofs request, checked: one miner's sectors of the proof's size."""
    try:
        kind, size = post_proof_info(request.proof_type)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    randomness = bytes32("randomness", request.randomness)
    if not request.sectors:
        raise Invalid("sectors must not be empty")
    if not request.HasField("assignment") or not request.assignment.call_id.id:
        raise Invalid("assignment.call_id is required")
    sectors: list[tuple[SectorId, bytes]] = []
    miners = set()
    for i, s in enumerate(request.sectors):
        ref = sector_ref(s.sector, s.HasField("sector"))
        if ref.size != size:
            raise Invalid(f"sectors[{i}] has {ref.size}-byte sectors; the proof type is for {size}")
        sectors.append((ref.id, bytes32(f"sectors[{i}].comm_r", s.comm_r)))
        miners.add(ref.id.miner)
    if len(miners) > 1:
        raise Invalid("all sectors must belong to one miner")
    task_type = TaskType.GENERATE_WINDOW_POST if kind == PostKind.WINDOW else TaskType.GENERATE_WINNING_POST
    return ProofsCall(
        request.assignment.call_id.id,
        task_type,
        kind,
        size,
        randomness,
        sectors,
        list(request.assignment.gpu_ordinals),
    )


def path_init(config: worker_pb2.StoragePathConfig) -> PathMeta:
    """The sectorstore.json of a path to initialise (its id is given when it is attached)."""
    if not config.can_seal and not config.can_store:
        raise Invalid("init needs can_seal or can_store (or both)")
    try:
        return PathMeta.for_new_path(
            weight=config.weight if config.HasField("weight") else None,
            can_seal=config.can_seal,
            can_store=config.can_store,
            max_storage=config.max_storage,
            groups=tuple(config.groups),
            allow_to=tuple(config.allow_to),
            allow_types=file_types(config.allow_types, default=FileType(0)),
            deny_types=file_types(config.deny_types, default=FileType(0)),
            allow_miners=tuple(config.allow_miners),
            deny_miners=tuple(config.deny_miners),
        )
    except Invalid:
        raise
    except ValueError as exc:  # MetaError: contradictory filters, a negative weight
        raise Invalid(str(exc)) from None


# -- domain -> replies --------------------------------------------------------------------------


def timestamp(seconds: float) -> Timestamp:
    out = Timestamp()
    out.FromNanoseconds(int(seconds * 1e9))
    return out


def storage_path(path: LocalPath, urls: list[str], stat: FsStat) -> common_pb2.StoragePath:
    return common_pb2.StoragePath(info=storage_info_msg(path, urls), local_path=str(path.root), stat=fs_stat_msg(stat))


def worker_info(parts: Parts, paths: Iterable[tuple[LocalPath, FsStat]]) -> common_pb2.WorkerInfo:
    """What the manager and `sealing workers` learn of this worker: identity, resources, enabled
    task types and overrides, the side channel's address, and each path with its stat."""
    identity, resources = parts.identity, parts.resources
    urls = parts.storage.urls if parts.storage is not None else []
    return common_pb2.WorkerInfo(
        worker_id=identity.worker_id,
        name=identity.name,
        hostname=identity.hostname,
        resources=common_pb2.WorkerResources(
            mem_physical=resources.mem_physical,
            mem_swap=resources.mem_swap,
            mem_reserved=resources.mem_reserved,
            cpus=resources.cpus,
            gpus=[common_pb2.GpuInfo(name=g.name, ordinal=g.ordinal, memory=g.memory) for g in resources.gpus],
        ),
        version=rust_core.__version__,
        ignore_resources=parts.config.worker.ignore_resources,
        task_types=task_types(parts.task_types.sorted()),
        resource_overrides=[task_resources(r) for r in parts.overrides],
        transfer_address=parts.bulk_address,
        paths=[storage_path(path, urls, stat) for path, stat in paths],
    )


def task_resources(row: ResourceOverride) -> common_pb2.TaskResources:
    """An override row as TaskResources: the fields the operator set, the others unset."""
    msg = common_pb2.TaskResources(
        task_type=common_pb2.TaskType.ValueType(row.task_type),
        seal_proof=common_pb2.RegisteredSealProof.ValueType(row.proof or 0),
    )
    for name, value in row.set_fields().items():
        setattr(msg, name, value)
    return msg


def task_types(values: Iterable[int]) -> list[common_pb2.TaskType.ValueType]:
    return [common_pb2.TaskType.ValueType(t) for t in values]


def removed_files(removed: Iterable[tuple[str, FileType]]) -> list[common_pb2.RemovedSectorFile]:
    return [common_pb2.RemovedSectorFile(storage_id=sid, type=file_type_msg(t)) for sid, t in removed]


def cleanup_reply(found: Iterable[Orphan], apply: bool) -> worker_pb2.StorageCleanupResponse:
    reply = worker_pb2.StorageCleanupResponse()
    for o in found:
        entry = reply.entries.add(
            storage_id=o.storage_id,
            path=str(o.path),
            type=file_type_msg(o.file_type.singles()[0]),
            size=o.size,
            removed=o.removed,
            skipped=o.skipped,
        )
        if o.sector is not None:
            entry.sector.CopyFrom(sector_id_msg(o.sector))
        if o.removed or (not apply and not o.skipped):
            reply.reclaimable_bytes += o.size
    return reply


def stat_reply(st: FileStat) -> worker_pb2.StatSectorFileResponse:
    return worker_pb2.StatSectorFileResponse(
        storage_id=st.storage_id,
        is_dir=st.is_dir,
        size=st.size,
        allocated=st.allocated,
        modified_at=timestamp(st.mtime),
        entries=[worker_pb2.DirEntry(name=e.name, size=e.size) for e in st.entries],
    )


def vanilla_reply(sector: SectorId, outcome: bytes | TaskFailure) -> worker_pb2.GenerateVanillaProofsResponse:
    reply = worker_pb2.GenerateVanillaProofsResponse(sector=sector_id_msg(sector))
    if isinstance(outcome, TaskFailure):
        reply.error.CopyFrom(task_error_msg(outcome))
    else:
        reply.vanilla_proof = outcome
    return reply


def fs_stat(stat: FsStat) -> common_pb2.FsStat:
    return fs_stat_msg(stat)


def chunk(c: Chunk) -> common_pb2.Chunk:
    return common_pb2.Chunk(offset=c.offset, data=c.data)
