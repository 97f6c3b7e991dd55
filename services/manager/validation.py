"""The manager's domain checks (piece layout and sizes, 32-byte values) and the error a work
that failed for good gives its caller. They raise the fleet's domain errors
(services/common/errors.py), whose message says what to fix; the servicer's one decorator turns
them into the RPC's status. Checks of a message's shape are in convert.py."""

from __future__ import annotations

from collections.abc import Sequence

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
from services.common.vocabulary import TaskErrorCode as ErrorCode
from services.manager.calltracker import Outcome
from services.manager.resources import SealProof

MAX_SECTOR_NUMBER = 2**63 - 1


def invalid(message: str) -> InvalidArgument:
    """The error for a request field that cannot be served as sent (INVALID_ARGUMENT)."""
    return InvalidArgument(message)


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
    """The error a caller gets for a work that failed for good; the message starts with the
    TaskErrorCode name (as the proto spells it: TASK_ERROR_CODE_<name>)."""
    name = f"TASK_ERROR_CODE_{outcome.error_code.name}"
    return _ERROR_OF_CODE[outcome.error_code](f"{name}: {outcome.error_message}")


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
