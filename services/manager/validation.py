"""Request checks shared by the manager's RPCs. They raise the fleet's domain errors
(services/common/errors.py: InvalidArgument, ...), whose message says what to fix; the servicer's
one decorator turns them into the RPC's status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.common import wellknown
from services.common.cid import CidError, parse_unsealed_cid, unsealed_cid
from services.common.errors import (
    Aborted,
    DeadlineExceeded,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from services.common.pieces import is_unpadded_piece_size, next_piece
from services.common.pieces import padded_size as padded
from services.common.proto.sectorstorage.v1 import common_pb2
from services.manager.calltracker import ErrorCode, Outcome
from services.manager.resources import SealProof

MAX_SECTOR_NUMBER = 2**63 - 1


def invalid(message: str) -> InvalidArgument:
    """The error for a request field that cannot be served as sent (INVALID_ARGUMENT)."""
    return InvalidArgument(message)


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


# TaskErrorCode -> the sealing call's status (manager.proto, ManagerService comment).
_ERROR_OF_CODE: dict[ErrorCode, type[DomainError]] = {
    ErrorCode.UNSPECIFIED: FailedPrecondition,
    ErrorCode.PERMANENT: FailedPrecondition,
    ErrorCode.SECTOR_NOT_FOUND: NotFound,
    ErrorCode.ALLOCATE_SPACE: ResourceExhausted,
    ErrorCode.TEMPORARY: Unavailable,
    ErrorCode.WORKER_RESTARTED: Unavailable,
    ErrorCode.TIMED_OUT: DeadlineExceeded,
    ErrorCode.ABORTED: Aborted,
}


def failure_of(outcome: Outcome) -> DomainError:
    """The status a caller gets for a work that failed for good; the message starts with the
    TaskErrorCode name."""
    name = common_pb2.TaskErrorCode.Name(common_pb2.TaskErrorCode.ValueType(outcome.error_code))
    return _ERROR_OF_CODE[outcome.error_code](f"{name}: {outcome.error_message}")


def sector_id(sid: common_pb2.SectorId, what: str = "sector") -> None:
    if sid.miner == 0:
        raise invalid(f"{what}: miner is required (the actor id, > 0)")
    if sid.miner > MAX_SECTOR_NUMBER:
        raise invalid(f"{what}: miner {sid.miner} is larger than 2^63-1")
    if sid.number > MAX_SECTOR_NUMBER:
        raise invalid(f"{what}: number {sid.number} is larger than 2^63-1 (Filecoin's MaxSectorNumber)")


def sector_ref(ref: common_pb2.SectorRef, present: bool, what: str = "sector") -> SealProof:
    """Checks a SectorRef; returns its seal proof."""
    if not present:
        raise invalid(f"{what} is required")
    sector_id(ref.id, what)
    if ref.proof_type not in SealProof._value2member_map_:
        raise invalid(
            f"{what}.proof_type must be a supported seal proof "
            f"({', '.join(common_pb2.RegisteredSealProof.Name(common_pb2.RegisteredSealProof.ValueType(p)) for p in SealProof)}), got {ref.proof_type}"
        )
    return SealProof(ref.proof_type)


def bytes32(value: bytes, name: str) -> None:
    if len(value) != 32:
        raise invalid(f"{name} must be 32 bytes, got {len(value)}")


def is_padded_piece_size(size: int) -> bool:
    return size >= 128 and size & (size - 1) == 0


def unpadded_capacity(proof: SealProof) -> int:
    return proof.sector_size // 128 * 127


def piece_layout(existing: Sequence[int], size: int, proof: SealProof) -> int:
    """Checks AddPiece sizes; returns the padded offset where the new piece goes (each piece at
    the next offset aligned to its own padded size, as the reference writes them)."""
    for i, s in enumerate(existing):
        if not is_unpadded_piece_size(s):
            raise invalid(f"existing_piece_sizes[{i}] = {s} is not an unpadded piece size (127 * 2^k)")
    if not is_unpadded_piece_size(size):
        raise invalid(f"piece_size {size} is not an unpadded piece size (127 * 2^k bytes, e.g. 127, 254, 508, 1016)")
    _, start = next_piece(existing, size)
    end = start + padded(size)
    if end > proof.sector_size:
        raise invalid(f"the piece does not fit: it would end at padded byte {end}, the sector has {proof.sector_size}")
    return start


def pieces(infos: Iterable[common_pb2.PieceInfo], proof: SealProof | None, full: bool) -> list[common_pb2.PieceInfo]:
    """Checks PieceInfos (size, and piece_cid/commp agreeing); returns them with both set.
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
        out.append(common_pb2.PieceInfo(size=info.size, piece_cid=unsealed_cid(commp), commp=commp))
        total += info.size
    if full and proof is not None and total != proof.sector_size:
        raise invalid(f"the pieces' padded sizes add up to {total}, the sector size is {proof.sector_size}")
    if full and not out:
        raise invalid("pieces is required (all pieces of the sector, in order)")
    return out


def byte_range(r: common_pb2.UnpaddedByteRange, present: bool, proof: SealProof, what: str = "range") -> None:
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


def worker_id(value: str) -> str:
    if not value:
        raise invalid("worker_id is required")
    return value


def call_id(cid: common_pb2.CallId, present: bool) -> str:
    if not present or not cid.id:
        raise invalid("call_id is required")
    return cid.id
