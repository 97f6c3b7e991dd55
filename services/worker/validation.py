"""Checks of request values that need no message to read (convert.py reads the messages): each
raises Invalid with a message that says what to fix."""

from __future__ import annotations

from pathlib import Path

from services.common import errors
from services.common.pieces import next_piece
from services.worker.sectors import is_unpadded_piece_size


class Invalid(errors.InvalidArgument, ValueError):
    """INVALID_ARGUMENT (and a ValueError, which the tasks classify as a permanent failure)."""


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


def bytes32(name: str, value: bytes) -> bytes:
    if len(value) != 32:
        raise Invalid(f"{name} must be 32 bytes, got {len(value)}")
    return value


def piece_sizes(existing: list[int], new: int) -> None:
    for i, s in enumerate(existing):
        if not is_unpadded_piece_size(s):
            raise Invalid(f"existing_piece_sizes[{i}] = {s} is not 127*2^k")
    if not is_unpadded_piece_size(new):
        raise Invalid(f"piece_size {new} is not 127*2^k")


def piece_fits(existing: list[int], new: int, sector_size: int) -> None:
    """The new piece, placed after the existing ones by the fleet's rule (services/common/
    pieces.py), ends inside the sector."""
    _, offset = next_piece(existing, new)
    if offset + new + new // 127 > sector_size:
        raise Invalid(f"a {new}-byte piece does not fit after the existing pieces in a {sector_size}-byte sector")
