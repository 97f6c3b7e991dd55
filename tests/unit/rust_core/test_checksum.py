"""rust_core.crc32c and crc32c_file: the standard CRC32C's known answers, agreement with a
pure-Python reference on random data (whole and chained chunk by chunk through `seed`), any
buffer-protocol object, file ranges, and the errors bad input raises."""

from __future__ import annotations

import array
import mmap
import os
import random
from pathlib import Path

import pytest

import rust_core

POLY = 0x82F63B78
_TABLE = []
for _b in range(256):
    _c = _b
    for _ in range(8):
        _c = (_c >> 1) ^ POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def reference(data: bytes, seed: int = 0) -> int:
    """CRC32C byte by byte, from the definition (reflected, all-ones init and final xor)."""
    crc = seed ^ 0xFFFFFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


def test_known_answers() -> None:
    assert rust_core.crc32c(b"") == 0
    assert rust_core.crc32c(b"123456789") == 0xE3069283
    assert rust_core.crc32c(bytes(32)) == 0x8A9136AA
    assert rust_core.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert reference(b"123456789") == 0xE3069283


@pytest.mark.parametrize("length", [1, 7, 8, 63, 4096, 24_575, 24_576, 24_577, 100_003])
def test_matches_the_reference_on_random_data(length: int) -> None:
    data = random.Random(length).randbytes(length)
    assert rust_core.crc32c(data) == reference(data)


def test_chains_through_seed_across_chunks() -> None:
    rng = random.Random(5)
    data = rng.randbytes(300_000)
    whole = reference(data)
    assert rust_core.crc32c(data) == whole
    crc, at = 0, 0
    while at < len(data):
        n = rng.choice([0, 1, 5, 8, 4096, 65_536, 70_001])
        crc = rust_core.crc32c(data[at : at + n], crc)
        at += n
    assert crc == whole
    assert rust_core.crc32c(b"", 0x12345678) == 0x12345678


def test_accepts_any_buffer_without_copying(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(1 << 20)
    want = reference(data[:4096])
    assert rust_core.crc32c(bytearray(data[:4096])) == want
    assert rust_core.crc32c(memoryview(data)[:4096]) == want
    assert rust_core.crc32c(array.array("B", data[:4096])) == want
    path = tmp_path / "f"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert rust_core.crc32c(m) == rust_core.crc32c(data)


def test_file_ranges(tmp_path: Path) -> None:
    data = os.urandom((3 << 20) + 77)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert rust_core.crc32c_file(path, 0, len(data)) == rust_core.crc32c(data)
    assert rust_core.crc32c_file(str(path), 1000, 1 << 20) == reference(data[1000 : 1000 + (1 << 20)])
    seed = rust_core.crc32c(data[:10])
    assert rust_core.crc32c_file(path, 10, 5000, seed) == rust_core.crc32c(data[:5010])
    assert rust_core.crc32c_file(path, len(data), 0) == 0


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        rust_core.crc32c("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        rust_core.crc32c(b"x", 1 << 32)
    with pytest.raises(ValueError, match="seed"):
        rust_core.crc32c(b"x", -1)
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    with pytest.raises(OSError, match="ends at"):
        rust_core.crc32c_file(path, 5, 6)
    with pytest.raises(OSError):
        rust_core.crc32c_file(tmp_path / "missing", 0, 1)
    with pytest.raises(ValueError, match="offset"):
        rust_core.crc32c_file(path, -1, 1)


def test_file_descriptor(tmp_path: Path) -> None:
    """An open descriptor is read with pread (its position untouched) and stays open."""
    data = os.urandom(70_000)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert rust_core.crc32c_file(fd, 100, 60_000) == rust_core.crc32c(data[100:60_100])
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0
        assert os.fstat(fd).st_size == len(data)  # still open
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="file descriptor"):
        rust_core.crc32c_file(fd, 0, 1)
    with pytest.raises(TypeError, match="path or a file descriptor"):
        rust_core.crc32c_file(True, 0, 1)  # type: ignore[arg-type]
