"""ManagerService messages <-> the manager's domain values. Decoding checks what a message must
hold (required fields, sizes, enum values) and raises InvalidArgument with the field's name;
encoding builds reply messages from records. The servicer calls these on its edge so that the
domain modules (sealing, lifecycle, operators, ...) never see a message."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.common import wellknown
from services.common.cid import CidError, parse_unsealed_cid, sealed_cid, unsealed_cid
from services.common.pieces import is_unpadded_piece_size
from services.common.proto.sectorstorage.v1 import common_pb2, manager_pb2
from services.common.resource_override import ResourceOverride
from services.manager.accounting import Hardware
from services.manager.domain import (
    AddPieceInput,
    BadSector,
    ByteRange,
    Commit1Input,
    Commit2Input,
    FinalizeInput,
    PieceChunk,
    PieceRef,
    PreCommit1Input,
    PreCommit2Input,
    ProvingSector,
    ReadPieceInput,
    ReleaseUnsealedInput,
    RemovedFile,
    SealVerification,
    SectorId,
    SectorRef,
    UnsealInput,
    WinningChallenge,
)
from services.manager.leadership import Lease
from services.manager.post import post_proof_info
from services.manager.records import CallRecord, CallStatus
from services.manager.resources import SealProof
from services.manager.store import SectorCommitmentsRecord
from services.manager.tasks import TaskType
from services.manager.validation import (
    MAX_SECTOR_NUMBER,
    bytes32,
    invalid,
    is_padded_piece_size,
    unpadded_capacity,
)
from services.manager.workers import Gpu, WorkerInfo

# --- scalars -----------------------------------------------------------------------------------


def timestamp_seconds(name: str, ts: Timestamp) -> float:
    """Unix seconds of a request timestamp; 0.0 when unset (all zero). A timestamp outside the
    protobuf range (nanos not in [0, 1e9), seconds before year 1 or after 9999) is refused
    instead of failing deep inside the handler."""
    if not ts.seconds and not ts.nanos:
        return 0.0
    try:
        return float(ts.ToNanoseconds()) / 1e9
    except ValueError as exc:
        raise invalid(f"{name}: {exc}") from None


def duration_seconds(name: str, d: Duration) -> float:
    """Seconds of a request duration, which must be valid and not negative."""
    problem = wellknown.duration_problem(d)
    if problem:
        raise invalid(f"{name} is not a valid duration: {problem}")
    seconds = wellknown.duration_seconds(d)
    if seconds < 0:
        raise invalid(f"{name} must not be negative, got {seconds} s")
    return seconds


def duration_msg(seconds: float) -> Duration:
    return Duration(seconds=int(seconds), nanos=int(round((seconds % 1) * 1e9)))


def ts(seconds: float) -> Timestamp:
    """A reply timestamp; unset (all zero) for 0.0, which records use for "never"."""
    out = Timestamp()
    if seconds:
        out.FromNanoseconds(int(seconds * 1e9))
    return out


def set_ts(field: Timestamp, seconds: float) -> None:
    if seconds:
        field.FromNanoseconds(int(seconds * 1e9))


# --- sectors -----------------------------------------------------------------------------------


def sector_id(sid: common_pb2.SectorId, what: str = "sector") -> SectorId:
    if sid.miner == 0:
        raise invalid(f"{what}: miner is required (the actor id, > 0)")
    if sid.miner > MAX_SECTOR_NUMBER:
        raise invalid(f"{what}: miner {sid.miner} is larger than 2^63-1")
    if sid.number > MAX_SECTOR_NUMBER:
        raise invalid(f"{what}: number {sid.number} is larger than 2^63-1 (Filecoin's MaxSectorNumber)")
    return SectorId(sid.miner, sid.number)


def required_sector_id(sid: common_pb2.SectorId, present: bool, what: str = "sector") -> SectorId:
    if not present:
        raise invalid(f"{what} is required")
    return sector_id(sid, what)


def sector_ref(ref: common_pb2.SectorRef, present: bool, what: str = "sector") -> SectorRef:
    """Checks a SectorRef (present, ids in range, a supported seal proof)."""
    if not present:
        raise invalid(f"{what} is required")
    sid = sector_id(ref.id, what)
    if ref.proof_type not in SealProof._value2member_map_:
        raise invalid(
            f"{what}.proof_type must be a supported seal proof "
            f"({', '.join(common_pb2.RegisteredSealProof.Name(common_pb2.RegisteredSealProof.ValueType(p)) for p in SealProof)}), got {ref.proof_type}"
        )
    return SectorRef(sid, SealProof(ref.proof_type))


def sector_id_msg(sid: SectorId) -> common_pb2.SectorId:
    return common_pb2.SectorId(miner=sid.miner, number=sid.number)


def sector_ref_msg(ref: SectorRef) -> common_pb2.SectorRef:
    return ref_msg(ref.miner, ref.number, int(ref.proof))


def ref_msg(miner: int, number: int, proof: int) -> common_pb2.SectorRef:
    """A SectorRef from a record's columns (the proof type as stored, even one no longer served)."""
    return common_pb2.SectorRef(
        id=common_pb2.SectorId(miner=miner, number=number), proof_type=common_pb2.RegisteredSealProof.ValueType(proof)
    )


def call_id_msg(miner: int, number: int, call_id: str) -> common_pb2.CallId:
    return common_pb2.CallId(sector=common_pb2.SectorId(miner=miner, number=number), id=call_id)


# --- pieces and ranges -------------------------------------------------------------------------


def pieces(infos: Iterable[common_pb2.PieceInfo], proof: SealProof | None, full: bool) -> tuple[PieceRef, ...]:
    """Checks PieceInfos (size, and piece_cid/commp agreeing); returns their (size, commP).
    With full, their padded sizes must add up to the sector size."""
    out = []
    total = 0
    for i, info in enumerate(infos):
        if not is_padded_piece_size(info.size):
            raise invalid(f"pieces[{i}].size {info.size} is not a padded piece size (a power of two >= 128)")
        commp = bytes(info.commp)
        if info.piece_cid:
            try:
                from_cid = parse_unsealed_cid(info.piece_cid)
            except CidError as exc:
                raise invalid(f"pieces[{i}].piece_cid: {exc}") from None
            if commp and commp != from_cid:
                raise invalid(f"pieces[{i}]: piece_cid and commp disagree")
            commp = from_cid
        elif not commp:
            raise invalid(f"pieces[{i}]: piece_cid or commp is required")
        bytes32(commp, f"pieces[{i}].commp")
        out.append(PieceRef(int(info.size), commp))
        total += info.size
    if full and proof is not None and total != proof.sector_size:
        raise invalid(f"the pieces' padded sizes add up to {total}, the sector size is {proof.sector_size}")
    if full and not out:
        raise invalid("pieces is required (all pieces of the sector, in order)")
    return tuple(out)


def byte_range(r: common_pb2.UnpaddedByteRange, present: bool, proof: SealProof, what: str = "range") -> ByteRange:
    if not present:
        raise invalid(f"{what} is required")
    if r.offset % 127:
        raise invalid(f"{what}.offset {r.offset} is not a multiple of 127")
    if not is_unpadded_piece_size(r.size):
        raise invalid(f"{what}.size {r.size} is not an unpadded piece size (127 * 2^k)")
    if r.offset + r.size > unpadded_capacity(proof):
        raise invalid(
            f"{what} ends at {r.offset + r.size}, beyond the sector's {unpadded_capacity(proof)} unpadded bytes"
        )
    return ByteRange(r.offset, r.size)


# --- sealing requests --------------------------------------------------------------------------


def add_piece(header: manager_pb2.AddPieceHeader) -> AddPieceInput:
    sector = sector_ref(header.sector, header.HasField("sector"))
    return AddPieceInput(sector, tuple(header.existing_piece_sizes), header.piece_size, header.priority)


def pre_commit1(req: manager_pb2.SealPreCommit1Request) -> PreCommit1Input:
    sector = sector_ref(req.sector, req.HasField("sector"))
    bytes32(req.ticket, "ticket")
    return PreCommit1Input(sector, req.ticket, pieces(req.pieces, sector.proof, full=True), req.priority)


def pre_commit2(req: manager_pb2.SealPreCommit2Request) -> PreCommit2Input:
    sector = sector_ref(req.sector, req.HasField("sector"))
    if not req.pre_commit1_output:
        raise invalid("pre_commit1_output is required (SealPreCommit1's output)")
    return PreCommit2Input(sector, req.pre_commit1_output, req.priority)


def commit1(req: manager_pb2.SealCommit1Request) -> Commit1Input:
    sector = sector_ref(req.sector, req.HasField("sector"))
    for name in ("ticket", "seed", "comm_r", "comm_d"):
        bytes32(getattr(req, name), name)
    return Commit1Input(
        sector,
        req.ticket,
        req.seed,
        pieces(req.pieces, sector.proof, full=True),
        req.comm_r,
        req.comm_d,
        req.priority,
    )


def commit2(req: manager_pb2.SealCommit2Request) -> Commit2Input:
    sector = sector_ref(req.sector, req.HasField("sector"))
    if not req.commit1_output:
        raise invalid("commit1_output is required (SealCommit1's output)")
    return Commit2Input(sector, req.commit1_output, req.priority)


def finalize(req: manager_pb2.FinalizeSectorRequest) -> FinalizeInput:
    sector = sector_ref(req.sector, req.HasField("sector"))
    keep = tuple(byte_range(r, True, sector.proof, f"keep_unsealed[{i}]") for i, r in enumerate(req.keep_unsealed))
    return FinalizeInput(sector, keep, req.priority)


def release_unsealed(req: manager_pb2.ReleaseUnsealedRequest) -> ReleaseUnsealedInput:
    sector = sector_ref(req.sector, req.HasField("sector"))
    if bool(req.ranges) == req.all:
        raise invalid("give exactly one of ranges (non-empty) and all")
    ranges = tuple(byte_range(r, True, sector.proof, f"ranges[{i}]") for i, r in enumerate(req.ranges))
    return ReleaseUnsealedInput(sector, ranges, req.all, req.priority)


def unseal(req: manager_pb2.UnsealPieceRequest) -> UnsealInput:
    sector = sector_ref(req.sector, req.HasField("sector"))
    r = byte_range(req.range, req.HasField("range"), sector.proof)
    bytes32(req.ticket, "ticket")
    return UnsealInput(sector, r, req.ticket, req.unsealed_cid, req.priority)


def read_piece(req: manager_pb2.ReadPieceRequest) -> ReadPieceInput:
    sector = sector_ref(req.sector, req.HasField("sector"))
    r = byte_range(req.range, req.HasField("range"), sector.proof)
    return ReadPieceInput(sector, r, req.ticket, req.unsealed_cid, req.priority)


def sector_range(req: manager_pb2.IsUnsealedRequest) -> tuple[SectorRef, ByteRange]:
    sector = sector_ref(req.sector, req.HasField("sector"))
    return sector, byte_range(req.range, req.HasField("range"), sector.proof)


# --- workers and calls -------------------------------------------------------------------------


def worker_id(value: str) -> str:
    if not value:
        raise invalid("worker_id is required")
    return value


def call_id(cid: common_pb2.CallId, present: bool) -> str:
    if not present or not cid.id:
        raise invalid("call_id is required")
    return cid.id


def worker_address(address: str) -> str:
    """A worker's dial-back address, which must be a gRPC target."""
    if " " in address or (":" not in address and "/" not in address):
        raise invalid(f"address {address!r} is not a gRPC target (HOST:PORT, dns:///host:port, unix:path)")
    return address


# --- listing pages -----------------------------------------------------------------------------


def list_sectors_page(page_size: int, page_token: str) -> tuple[int, tuple[int, int] | None]:
    """ListSectors' page size (default 100, at most 1000) and the (miner, number) it resumes after."""
    size = page_size or 100
    if size > 1000:
        raise invalid(f"page_size is at most 1000, got {size}")
    if not page_token:
        return size, None
    miner, _, number = page_token.partition("-")
    if not (miner.isdigit() and number.isdigit()):
        raise invalid("page_token is not one this RPC returned")
    return size, (int(miner), int(number))


def history_filters(req: manager_pb2.TaskHistoryRequest) -> str:
    """A digest of TaskHistory's filters: a page token is only valid for the filters it was made for."""
    copy = manager_pb2.TaskHistoryRequest()
    copy.CopyFrom(req)
    copy.ClearField("page_token")
    copy.ClearField("page_size")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


def encode_page_token(last: CallRecord, filters: str) -> str:
    return base64.urlsafe_b64encode(
        json.dumps({"q": last.queued_at, "c": last.call_id, "f": filters}).encode()
    ).decode()


def decode_page_token(token: str, filters: str) -> tuple[float, str]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        position = (float(data["q"]), str(data["c"]))
        same = data["f"] == filters
    except (ValueError, KeyError, TypeError):
        raise invalid("page_token is not one TaskHistory returned") from None
    if not same:
        raise invalid("the filters changed since the first page: start again without page_token")
    return position


# --- task history ------------------------------------------------------------------------------

_OUTCOME_OF = {
    CallStatus.QUEUED: manager_pb2.TASK_OUTCOME_RUNNING,
    CallStatus.DISPATCHING: manager_pb2.TASK_OUTCOME_RUNNING,
    CallStatus.RUNNING: manager_pb2.TASK_OUTCOME_RUNNING,
    CallStatus.SUCCEEDED: manager_pb2.TASK_OUTCOME_SUCCEEDED,
    CallStatus.FAILED: manager_pb2.TASK_OUTCOME_FAILED,
    CallStatus.ABORTED: manager_pb2.TASK_OUTCOME_ABORTED,
    CallStatus.TIMED_OUT: manager_pb2.TASK_OUTCOME_TIMED_OUT,
    CallStatus.REQUEUED: manager_pb2.TASK_OUTCOME_REQUEUED,
    CallStatus.CANCELLED: manager_pb2.TASK_OUTCOME_ABORTED,
}


def task_run(call: CallRecord) -> manager_pb2.TaskRun:
    run = manager_pb2.TaskRun(
        call_id=call_id_msg(call.miner, call.number, call.call_id),
        work_id=call.work_id,
        sector=ref_msg(call.miner, call.number, call.seal_proof),
        task_type=common_pb2.TaskType.ValueType(call.task_type),
        attempt=call.attempt,
        worker_id=call.worker_id,
        hostname=call.hostname,
        outcome=_OUTCOME_OF[call.status],
    )
    set_ts(run.queued_at, call.queued_at)
    set_ts(run.started_at, call.started_at or call.dispatched_at)
    set_ts(run.finished_at, call.finished_at if call.status.final else 0.0)
    if call.error_message:
        run.error.CopyFrom(
            common_pb2.TaskError(code=common_pb2.TaskErrorCode.ValueType(call.error_code), message=call.error_message)
        )
    return run


async def piece_chunks(messages: AsyncIterator[manager_pb2.AddPieceRequest]) -> AsyncIterator[PieceChunk]:
    """The chunks of an AddPiece stream after its header; InvalidArgument at a second header."""
    async for message in messages:
        if message.WhichOneof("payload") != "chunk":
            raise invalid("only the first AddPiece message may be a header")
        yield PieceChunk(message.chunk.offset, message.chunk.data)


def sector_commitments(rec: SectorCommitmentsRecord) -> manager_pb2.SectorCommitmentsResponse:
    recorded_at = Timestamp()
    recorded_at.FromNanoseconds(int(rec.recorded_at * 1e9))
    return manager_pb2.SectorCommitmentsResponse(
        sector=ref_msg(rec.miner, rec.number, rec.proof_type),
        comm_r=rec.comm_r,
        comm_d=rec.comm_d,
        recorded_at=recorded_at,
        sealed_cid=sealed_cid(rec.comm_r),
        unsealed_cid=unsealed_cid(rec.comm_d),
    )


def removed_file(f: RemovedFile) -> common_pb2.RemovedSectorFile:
    return common_pb2.RemovedSectorFile(storage_id=f.storage_id, type=common_pb2.SectorFileType.ValueType(f.file_type))


# --- workers -----------------------------------------------------------------------------------


def worker_info(info: common_pb2.WorkerInfo) -> WorkerInfo:
    """What a worker says about itself, as the registry and the scheduler read it (and the message
    itself, serialized, for WorkerStats)."""
    r = info.resources
    return WorkerInfo(
        name=info.name,
        hostname=info.hostname,
        path_ids=tuple(p.info.id for p in info.paths if p.info.id),
        hardware=Hardware(
            mem_physical=r.mem_physical,
            mem_swap=r.mem_swap,
            mem_reserved=r.mem_reserved,
            cpus=r.cpus,
            gpu_ordinals=tuple(g.ordinal for g in r.gpus),
            ignore_resources=info.ignore_resources,
        ),
        gpus=tuple(Gpu(g.ordinal, g.name) for g in r.gpus),
        task_types=tuple(int(t) for t in info.task_types),
        overrides=tuple(_overrides(info)),
        wire=info.SerializeToString(),
    )


def _overrides(info: common_pb2.WorkerInfo) -> list[ResourceOverride]:
    out = []
    for o in info.resource_overrides:
        if o.task_type not in TaskType._value2member_map_:
            continue
        proof = SealProof(o.seal_proof) if o.seal_proof in SealProof._value2member_map_ else None
        out.append(
            ResourceOverride(
                task_type=TaskType(o.task_type),
                proof=proof,
                min_memory=o.min_memory if o.HasField("min_memory") else None,
                max_memory=o.max_memory if o.HasField("max_memory") else None,
                max_parallelism=o.max_parallelism if o.HasField("max_parallelism") else None,
                max_parallelism_gpu=o.max_parallelism_gpu if o.HasField("max_parallelism_gpu") else None,
                gpu_utilization=o.gpu_utilization if o.HasField("gpu_utilization") else None,
                base_min_memory=o.base_min_memory if o.HasField("base_min_memory") else None,
                max_concurrent=o.max_concurrent if o.HasField("max_concurrent") else None,
            )
        )
    return out


def worker_info_msg(info: WorkerInfo) -> common_pb2.WorkerInfo:
    """The WorkerInfo message as the worker sent it."""
    return common_pb2.WorkerInfo.FromString(info.wire)


# --- proving -----------------------------------------------------------------------------------


def post_request(
    proof_type: int,
    randomness: bytes,
    sectors: Sequence[common_pb2.ProvingSector],
    need_comm_r: bool = True,
) -> tuple[str, SealProof, tuple[ProvingSector, ...]]:
    """Checks a PoSt request (the proof type, randomness, then each sector: present, of the proof
    type's sector size, with a 32-byte CommR where needed; all of one miner), in that order;
    returns the PoSt kind, the sectors' seal proof and the sectors."""
    kind, seal = post_proof_info(proof_type)
    bytes32(randomness, "randomness")
    if not sectors:
        raise invalid("sectors is required (non-empty)")
    out = []
    for i, s in enumerate(sectors):
        ref = sector_ref(s.sector, s.HasField("sector"), f"sectors[{i}].sector")
        if ref.proof is not seal:
            raise invalid(f"sectors[{i}] is a {ref.proof.label} sector, the proof type is for {seal.label}")
        if need_comm_r:
            bytes32(s.comm_r, f"sectors[{i}].comm_r")
        out.append(ProvingSector(ref, bytes(s.comm_r)))
    if len({s.sector.miner for s in out}) > 1:
        raise invalid("all sectors must belong to one miner")
    return kind, seal, tuple(out)


def bad_sector_msg(bad: BadSector) -> common_pb2.BadSector:
    return common_pb2.BadSector(sector=sector_id_msg(bad.sector), reason=bad.reason)


def post_proofs(proof_type: int, proof: bytes | None) -> list[common_pb2.PoStProof]:
    """A PoSt reply's proofs: the one proof, or none when no sector could be proven."""
    if proof is None:
        return []
    return [common_pb2.PoStProof(proof_type=common_pb2.RegisteredPoStProof.ValueType(proof_type), proof=proof)]


def winning_challenge(req: manager_pb2.GenerateWinningPoStSectorChallengeRequest) -> WinningChallenge:
    kind, seal = post_proof_info(req.proof_type)
    if kind != "winning":
        raise invalid("proof_type must be a Winning PoSt type")
    if req.miner == 0:
        raise invalid("miner is required")
    bytes32(req.randomness, "randomness")
    if req.eligible_sector_count == 0:
        raise invalid("eligible_sector_count must be > 0")
    return WinningChallenge(seal, req.randomness, req.miner, req.eligible_sector_count)


def seal_verification(req: manager_pb2.VerifySealRequest) -> SealVerification:
    sector = sector_ref(req.sector, req.HasField("sector"))
    for name in ("comm_r", "comm_d", "ticket", "seed"):
        bytes32(getattr(req, name), name)
    return SealVerification(sector, req.comm_r, req.comm_d, req.ticket, req.seed, req.proof)


def managers_reply(lease: Lease, holder: str, address: str, leading: bool, now: float) -> manager_pb2.ManagersResponse:
    """The Managers reply: the lease as read, and who answers."""
    return manager_pb2.ManagersResponse(
        leader=manager_pb2.ManagerInfo(holder=lease.holder, address=lease.address),
        epoch=lease.epoch,
        since=ts(lease.acquired_at),
        renewed_at=ts(lease.renewed_at),
        expires_at=ts(lease.expires_at),
        live=lease.live(now),
        failovers=lease.failovers,
        answered_by=manager_pb2.ManagerInfo(holder=holder, address=address),
        answered_by_leader=leading,
    )
