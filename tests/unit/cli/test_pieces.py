"""The piece layout `sectorctl sectors seal` sends: for any files that fit, the padded sizes add
up to the sector size (as PreCommit1 requires), every piece sits at an offset aligned to its own
size (as the manager's AddPiece places it, so no gap is left unfilled), the files keep their
order, and each file's piece is the smallest 127*2^k holding it. Files that don't fit are refused
before anything is sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.cli.pieces import DoesNotFit, layout, piece_size_for

SECTOR = 8 << 20


def test_piece_size_for() -> None:
    assert [piece_size_for(n) for n in (0, 1, 127, 128, 254, 255, 1000, 1016, 1017)] == [
        127,
        127,
        127,
        254,
        254,
        508,
        1016,
        1016,
        2032,
    ]


def test_examples() -> None:
    assert [(s.file, s.padded) for s in layout([1000, 500], 2048)] == [(0, 1024), (1, 512), (None, 512)]
    assert [(s.file, s.padded) for s in layout([100, 1000], 2048)] == [
        (0, 128),
        (None, 128),
        (None, 256),
        (None, 512),
        (1, 1024),
    ]
    assert [(s.file, s.padded) for s in layout([2032], 2048)] == [(0, 2048)]
    with pytest.raises(DoesNotFit, match="don't fit in a 2 KiB sector.*2033 bytes.*2032 bytes of data"):
        layout([2033], 2048)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=3 << 20), min_size=1, max_size=8))
def test_layouts_fill_the_sector_aligned_and_in_order(sizes: list[int]) -> None:
    try:
        slots = layout(sizes, SECTOR)
    except DoesNotFit:
        total = 0
        for n in sizes:  # the same placement rule, to check the refusal was right
            p = piece_size_for(n) // 127 * 128
            total = -(-total // p) * p + p
        assert total > SECTOR
        return
    assert sum(s.padded for s in slots) == SECTOR
    offset = 0
    for s in slots:
        assert s.padded & (s.padded - 1) == 0 and s.padded >= 128 and offset % s.padded == 0
        offset += s.padded
    files = [s for s in slots if s.file is not None]
    assert [s.file for s in files] == list(range(len(sizes)))
    assert [s.unpadded for s in files] == [piece_size_for(n) for n in sizes]
