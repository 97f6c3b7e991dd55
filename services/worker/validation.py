"""Request checks shared by the servicer: each raises Invalid with a message that says what to
fix, and returns the domain value the tasks work with."""

from __future__ import annotations

import uuid
from pathlib import Path

from services.common import errors, wellknown
from services.common.proto.sectorstorage.v1 import common_pb2, worker_pb2
from services.worker import sealer
from services.worker.sealer import Piece
from services.worker.sectors import (
    FileType,
    SectorId,
    check_unpadded_range,
    is_unpadded_piece_size,
    sector_size_of,
    types_from_proto,
)
from services.worker.tasks import SectorRef


class Invalid(errors.InvalidArgument, ValueError):
    """INVALID_ARGUMENT (and a ValueError, which the tasks classify as a permanent failure)."""


def sector_id(msg: common_pb2.SectorId, has: bool = True) -> SectorId:
    if not has:
        raise Invalid("sector is required")
    try:
        return SectorId.from_proto(msg)
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


def assignment_call(assignment: worker_pb2.TaskAssignment, has: bool, sector: SectorId) -> common_pb2.CallId:
    if not has or not assignment.HasField("call_id"):
        raise Invalid("assignment.call_id is required")
    call = assignment.call_id
    try:
        uuid.UUID(call.id)
    except ValueError:
        raise Invalid(f"call_id.id {call.id!r} is not a UUID") from None
    if not call.HasField("sector") or sector_id(call.sector) != sector:
        raise Invalid(f"call_id.sector differs from the request's sector {sector}")
    return call


# Limits of a storage path an admin attaches: Linux's PATH_MAX and NAME_MAX, and a depth no real
# mount layout reaches (creating a path thousands of levels deep exhausted Python's recursion).
MAX_PATH_BYTES = 4095
MAX_NAME_BYTES = 255
MAX_PATH_DEPTH = 64


def storage_root(path: str) -> Path:
    """The root of a storage path to attach: absolute, without '..' or NUL, of sane length."""
    if "\x00" in path:
        raise Invalid("path contains a NUL byte")
    root = Path(path)
    if not path or not root.is_absolute() or ".." in root.parts:
        raise Invalid(f"path {path[:200]!r} must be absolute (and without '..')")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise Invalid(f"path is {len(path.encode())} bytes long; at most {MAX_PATH_BYTES}")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in root.parts[1:]):
        raise Invalid(f"a component of the path is longer than {MAX_NAME_BYTES} bytes")
    if len(root.parts) - 1 > MAX_PATH_DEPTH:
        raise Invalid(f"path is {len(root.parts) - 1} directories deep; at most {MAX_PATH_DEPTH}")
    return root


def timeout_s(assignment: worker_pb2.TaskAssignment) -> float | None:
    if not assignment.HasField("timeout"):
        return None
    problem = wellknown.duration_problem(assignment.timeout)
    if problem:
        raise Invalid(f"assignment.timeout is not a valid duration: {problem}")
    seconds = wellknown.duration_seconds(assignment.timeout)
    return seconds if seconds > 0 else None


def bytes32(name: str, value: bytes) -> bytes:
    if len(value) != 32:
        raise Invalid(f"{name} must be 32 bytes, got {len(value)}")
    return value


def pieces(msgs: list[common_pb2.PieceInfo]) -> list[Piece]:
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


def file_types(values: list[int] | tuple[int, ...], default: FileType | None = None) -> FileType:
    if not values and default is not None:
        return default
    try:
        return types_from_proto(list(values))
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


def piece_sizes(existing: list[int], new: int) -> None:
    for i, s in enumerate(existing):
        if not is_unpadded_piece_size(s):
            raise Invalid(f"existing_piece_sizes[{i}] = {s} is not 127*2^k")
    if not is_unpadded_piece_size(new):
        raise Invalid(f"piece_size {new} is not 127*2^k")
