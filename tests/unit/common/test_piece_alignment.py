"""One piece-placement rule for the fleet (services/common/pieces.py), pinned against rust_core:
pieces written at the offsets the rule gives (zeros between) hash to the commD that rust_core's
`unsealed_commitment` computes from the piece list alone. The worker's AddPiece and the
manager's AddPiece check use the same rule (they once disagreed: for [127, 508] plus 127 the
worker wrote at 640, the manager and rust_core expected 1024)."""

from __future__ import annotations

import os

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rust_core
from services.common.pieces import is_unpadded_piece_size, next_piece, padded_size, piece_offsets
from services.manager.resources import SealProof
from services.manager.validation import piece_layout
from services.worker.tasks import piece_offset

SECTOR = 8 << 20


def sealed_like(sizes: list[int]) -> tuple[bytes, list[tuple[int, bytes]]]:
    """The unsealed sector (padded) with pieces of random data at the rule's offsets, and the
    (padded size, commP) list rust_core places by itself."""
    sector = bytearray(SECTOR)
    pieces = []
    for size, offset in zip(sizes, piece_offsets(sizes), strict=True):
        data = os.urandom(size)
        padded = rust_core.fr32_pad(data)
        sector[offset : offset + len(padded)] = padded
        pieces.append((len(padded), rust_core.piece_commitment(data)))
    return bytes(sector), pieces


def test_the_disagreement_that_was() -> None:
    assert piece_offsets([127, 508, 127]) == [0, 512, 1024]
    assert next_piece([127, 508], 127) == (1024, 1024)
    assert piece_offset([127, 508], 127) == (1024, 1024)
    proof = SealProof.STACKED_DRG_8MIB_V1_1
    assert proof.sector_size == SECTOR
    assert piece_layout([127, 508], 127, proof) == 1024


@pytest.mark.parametrize(
    "sizes", [[127, 508, 127], [254, 127, 1016, 127, 508], [127 * 1024, 127, 127 * 2048], [127] * 9]
)
def test_offsets_agree_with_rust_core(sizes: list[int]) -> None:
    sector, pieces = sealed_like(sizes)
    whole = rust_core.piece_commitment(rust_core.fr32_unpad(sector))
    assert rust_core.unsealed_commitment(SECTOR, pieces) == whole


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=8))
def test_random_piece_lists_agree_with_rust_core(exponents: list[int]) -> None:
    sizes = [127 << k for k in exponents]
    ends = [o + padded_size(s) for o, s in zip(piece_offsets(sizes), sizes, strict=True)]
    assume(max(ends) <= SECTOR)
    assert all(is_unpadded_piece_size(s) for s in sizes)
    sector, pieces = sealed_like(sizes)
    assert rust_core.unsealed_commitment(SECTOR, pieces) == rust_core.piece_commitment(rust_core.fr32_unpad(sector))
    for i in range(1, len(sizes)):
        assert (
            piece_offset(sizes[:i], sizes[i])[1]
            == piece_layout(sizes[:i], sizes[i], SealProof.STACKED_DRG_8MIB_V1_1)
            == piece_offsets(sizes)[i]
        )
