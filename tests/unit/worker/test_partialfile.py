"""Partial files and their RLE+ trailer: the reference's byte-exact vectors, round trips through
close/reopen, and hole punching that really gives blocks back (st_blocks drops)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.worker import rleplus
from services.worker.partialfile import PartialFile, PartialFileError

# Vectors from the spec (go-bitfield v0.2.4).
VECTORS = [
    ([(0, 2048)], "041002"),
    ([(0, 1024)], "041001"),
    ([(1024, 2048)], "0010014004"),
    ([], ""),
]


@pytest.mark.parametrize(("runs", "hex_"), VECTORS)
def test_rleplus_vectors(runs: rleplus.Runs, hex_: str) -> None:
    assert rleplus.encode(runs).hex() == hex_
    assert rleplus.decode(bytes.fromhex(hex_)) == runs


def test_rleplus_rejects_bad_input() -> None:
    with pytest.raises(rleplus.RlePlusError):
        rleplus.decode(bytes.fromhex("04100200"))  # trailing zero byte
    with pytest.raises(rleplus.RlePlusError):
        rleplus.decode(bytes.fromhex("07"))  # version 3
    with pytest.raises(rleplus.RlePlusError):
        rleplus.decode(bytes.fromhex("041002"), max_bits=1024)


@st.composite
def run_sets(draw: st.DrawFn) -> rleplus.Runs:
    cuts = sorted(set(draw(st.lists(st.integers(0, 5000), max_size=20))))
    runs = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    return rleplus.normalize(runs)


@settings(max_examples=300, deadline=None)
@given(run_sets())
def test_rleplus_round_trip(runs: rleplus.Runs) -> None:
    data = rleplus.encode(runs)
    assert not data or data[-1] != 0
    assert rleplus.decode(data) == runs


def test_full_2kib_file_is_2055_bytes(tmp_path: Path) -> None:
    path = tmp_path / "s-t01000-1"
    with PartialFile.create(path, 2048) as pf:
        assert path.stat().st_size == 2048 + 4
        pf.write_at(0, b"\x01" * 2048)
        pf.mark_allocated(0, 2048)
    assert path.stat().st_size == 2055
    assert path.read_bytes()[2048:] == bytes.fromhex("041002") + (3).to_bytes(4, "little")


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s-t01000-2"
    size = 8 << 20
    with PartialFile.create(path, size) as pf:
        pf.write_at(1 << 20, b"\xaa" * (1 << 20))
        pf.mark_allocated(1 << 20, 1 << 20)
        pf.mark_allocated(4 << 20, 2 << 20)
        assert pf.allocated() == [(1 << 20, 2 << 20), (4 << 20, 6 << 20)]
    with PartialFile.open(path, size) as pf:
        assert pf.allocated() == [(1 << 20, 2 << 20), (4 << 20, 6 << 20)]
        assert pf.has_allocated_padded(1 << 20, 1 << 20)
        assert not pf.has_allocated_padded(0, 2 << 20)
        # Unpadded coordinates: 127 unpadded bytes are 128 padded ones.
        assert pf.has_allocated((1 << 20) // 128 * 127, (1 << 20) // 128 * 127)
        assert pf.read_at(1 << 20, 4) == b"\xaa" * 4
        pf.free(1 << 20, 512 << 10)
        assert pf.allocated() == [((1 << 20) + (512 << 10), 2 << 20), (4 << 20, 6 << 20)]
    with PartialFile.open(path, size) as pf:
        assert pf.allocated() == [((1 << 20) + (512 << 10), 2 << 20), (4 << 20, 6 << 20)]
        assert pf.read_at(1 << 20, 4) == b"\0" * 4


def test_free_really_deallocates_blocks(tmp_path: Path) -> None:
    path = tmp_path / "s-t01000-3"
    size = 8 << 20
    with PartialFile.create(path, size) as pf:
        pf.write_at(0, os.urandom(size))
        pf.mark_allocated(0, size)
    full = path.stat().st_blocks * 512
    assert full >= size
    with PartialFile.open(path, size) as pf:
        pf.free(0, 6 << 20)
    after = path.stat().st_blocks * 512
    assert full - after >= (6 << 20) - 4096, (full, after)
    with PartialFile.open(path, size) as pf:
        assert pf.allocated() == [(6 << 20, 8 << 20)]


def test_open_rejects_wrong_size_and_bad_trailer(tmp_path: Path) -> None:
    path = tmp_path / "s-t01000-4"
    with PartialFile.create(path, 2048):
        pass
    with pytest.raises(PartialFileError):
        PartialFile.open(path, 4096)
    with open(path, "r+b") as f:
        f.seek(2048)
        f.write(b"\x07\x01\x00\x00\x00")
    with pytest.raises(PartialFileError):
        PartialFile.open(path, 2048)


def test_random_marks_and_frees_match_a_model(tmp_path: Path) -> None:
    rng = random.Random(7)
    size = 1 << 16
    model = [False] * size
    path = tmp_path / "s-t01000-5"
    with PartialFile.create(path, size) as pf:
        for _ in range(60):
            a = rng.randrange(0, size, 128)
            b = min(size, a + rng.randrange(128, 8192, 128))
            if rng.random() < 0.6:
                pf.mark_allocated(a, b - a)
                model[a:b] = [True] * (b - a)
            else:
                pf.free(a, b - a)
                model[a:b] = [False] * (b - a)
    with PartialFile.open(path, size) as pf:
        got = [False] * size
        for a, b in pf.allocated():
            got[a:b] = [True] * (b - a)
    assert got == model
