"""Where pieces go in a sector: one rule for the whole fleet (the manager checks AddPiece with it,
the worker writes with it, sectorctl lays files out with it).

Sizes: a piece is 127 * 2^k unpadded bytes, 128 * 2^k once fr32-padded. Placement: each piece
starts at the next padded offset that is a multiple of its own padded size, the gap before it
being zeros (rust-fil-proofs' `sum_piece_bytes_with_alignment`, and rust_core's commD, which
places pieces the same way; tests/unit/common/test_piece_alignment.py pins the two together).
"""

from __future__ import annotations

from collections.abc import Sequence


def padded_size(unpadded: int) -> int:
    """fr32: every 127 bytes take 128."""
    return unpadded + unpadded // 127


def is_unpadded_piece_size(size: int) -> bool:
    """127 * 2^k bytes, k >= 0."""
    if size <= 0 or size % 127:
        return False
    n = size // 127
    return n & (n - 1) == 0


def align_up(offset: int, padded: int) -> int:
    """The first multiple of `padded` at or after `offset`."""
    return -(-offset // padded) * padded


def piece_offsets(unpadded_sizes: Sequence[int]) -> list[int]:
    """The padded offset of each piece, in order."""
    offsets = []
    end = 0
    for size in unpadded_sizes:
        padded = padded_size(size)
        start = align_up(end, padded)
        offsets.append(start)
        end = start + padded
    return offsets


def next_piece(existing_unpadded: Sequence[int], new_unpadded: int) -> tuple[int, int]:
    """(padded end of the existing pieces, padded offset of the new one): the bytes between the
    two are the zero padding the new piece's alignment needs."""
    end = 0
    for size, start in zip(existing_unpadded, piece_offsets(existing_unpadded), strict=True):
        end = start + padded_size(size)
    return end, align_up(end, padded_size(new_unpadded))
