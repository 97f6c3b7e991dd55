"""fr32 padding through the Python API: the shared vectors, properties, file and stream forms,
and the errors bad input must raise."""

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rust_core


def fr32_vectors(vectors_dir: Path) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((vectors_dir / "vectors.json").read_text())["fr32"]
    return vectors


def reference_pad(data: bytes) -> bytes:
    """Bit-by-bit definition: 254 data bits per 32-byte node, little-endian bit order."""
    src = int.from_bytes(data, "little")
    out = bytearray()
    for block in range(len(data) // 127):
        bits = (src >> (1016 * block)) & ((1 << 1016) - 1)
        for k in range(4):
            out += ((bits >> (254 * k)) & ((1 << 254) - 1)).to_bytes(32, "little")
    return bytes(out)


# Vectors ----------------------------------------------------------------------------------------


def test_every_fr32_vector(vectors_dir: Path) -> None:
    vectors = fr32_vectors(vectors_dir)
    assert len(vectors) == 10
    for v in vectors:
        data = bytes.fromhex(v["input_hex"])
        if "padded_hex_128" in v:
            padded = rust_core.fr32_pad(data, pad_to=True)  # short inputs are zero-extended
            assert padded.hex() == v["padded_hex_128"], v["input"]
            block = data.ljust(127, b"\0")
            assert rust_core.fr32_pad(block) == padded
            assert rust_core.fr32_unpad(padded) == block
        else:
            # F10: Lotus ignores set pad bits; we reject them unless told to be lenient.
            want = bytes.fromhex(v["unpadded_hex_127"])
            assert rust_core.fr32_unpad(data, strict=False) == want
            with pytest.raises(ValueError, match="padding bits"):
                rust_core.fr32_unpad(data)


def test_vectors_agree_with_reference(vectors_dir: Path) -> None:
    for v in fr32_vectors(vectors_dir):
        if "padded_hex_128" in v:
            block = bytes.fromhex(v["input_hex"]).ljust(127, b"\0")
            assert reference_pad(block).hex() == v["padded_hex_128"]


# Properties -------------------------------------------------------------------------------------

blocks = st.integers(min_value=0, max_value=24).flatmap(lambda n: st.binary(min_size=127 * n, max_size=127 * n))


@settings(deadline=None)
@given(blocks)
def test_unpad_inverts_pad(data: bytes) -> None:
    padded = rust_core.fr32_pad(data)
    assert len(padded) == len(data) // 127 * 128
    assert rust_core.fr32_unpad(padded) == data


@settings(deadline=None)
@given(blocks)
def test_pad_matches_reference_and_clears_top_bits(data: bytes) -> None:
    padded = rust_core.fr32_pad(data)
    assert padded == reference_pad(data)
    assert all(padded[i + 31] & 0xC0 == 0 for i in range(0, len(padded), 32))


@settings(deadline=None)
@given(st.binary(max_size=3000))
def test_pad_to_zero_extends(data: bytes) -> None:
    piece = rust_core.padded_to_unpadded(rust_core.padded_size_for_payload(len(data)))
    assert rust_core.fr32_pad(data, pad_to=True) == rust_core.fr32_pad(data.ljust(piece, b"\0"))
    bigger = rust_core.unpadded_to_padded(piece) * 2
    assert rust_core.fr32_pad(data, pad_to=bigger) == rust_core.fr32_pad(data.ljust(bigger // 128 * 127, b"\0"))


def test_parallel_path_round_trip() -> None:
    data = os.urandom(127 * 100_003)  # beyond the 4 MiB threshold of the multi-core path
    padded = rust_core.fr32_pad(data)
    assert padded[: 128 * 64] == reference_pad(data[: 127 * 64])
    assert padded[-128 * 64 :] == reference_pad(data[-127 * 64 :])
    assert rust_core.fr32_unpad(padded) == data


def test_concurrent_calls_from_threads() -> None:
    inputs = [os.urandom(127 * 70_000) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(rust_core.fr32_pad, inputs))
    assert [rust_core.fr32_unpad(r) for r in results] == inputs


# Files and streams ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=40).flatmap(
        lambda n: st.tuples(
            st.binary(min_size=127 * n, max_size=127 * n),
            st.integers(min_value=0, max_value=127 * n),
            st.integers(min_value=0, max_value=127 * n),
        )
    )
)
def test_range_unpad_equals_slice_of_full_unpad(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[bytes, int, int]
) -> None:
    data, a, b = case
    offset, end = min(a, b), max(a, b)
    path = tmp_path_factory.mktemp("range") / "padded"
    path.write_bytes(rust_core.fr32_pad(data))
    full = rust_core.fr32_unpad(path.read_bytes())
    assert rust_core.fr32_unpad_range(path, offset, end - offset) == full[offset:end]
    out = path.with_name("out")
    assert rust_core.fr32_unpad_file(path, out, offset, end - offset) == end - offset
    assert out.read_bytes() == full[offset:end]


def test_range_across_batches(tmp_path: Path) -> None:
    data = os.urandom(127 * 200_000)  # 25 MB padded: several 8 MiB batches
    path = tmp_path / "padded"
    path.write_bytes(rust_core.fr32_pad(data))
    for offset, length in [(0, len(data)), (12_345, 10_000_000), (len(data) - 1, 1)]:
        assert rust_core.fr32_unpad_range(path, offset, length) == data[offset : offset + length]
    out = tmp_path / "unpadded"
    assert rust_core.fr32_unpad_file(path, out) == len(data)
    assert out.read_bytes() == data


@given(st.binary(max_size=5000))
@settings(max_examples=30, deadline=None)
def test_file_and_stream_forms_equal_in_memory(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    want = rust_core.fr32_pad(data, pad_to=True)
    d = tmp_path_factory.mktemp("pad")
    src, dst = d / "src", d / "dst"
    src.write_bytes(data)
    assert rust_core.fr32_pad_file(src, dst, pad_to=True) == len(want)
    assert dst.read_bytes() == want
    sink = io.BytesIO()
    assert rust_core.fr32_pad_stream(io.BytesIO(data), sink, pad_to=True) == len(want)
    assert sink.getvalue() == want


def test_large_file_and_stream(tmp_path: Path) -> None:
    data = os.urandom(127 * 150_001)  # several batches plus a partial one
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(data)
    assert rust_core.fr32_pad_file(str(src), str(dst)) == 128 * 150_001
    assert dst.read_bytes() == rust_core.fr32_pad(data)
    sink = io.BytesIO()
    with src.open("rb") as reader:
        rust_core.fr32_pad_stream(reader, sink)
    assert sink.getvalue() == dst.read_bytes()


def test_pad_file_into_existing_file_at_offset(tmp_path: Path) -> None:
    sector = tmp_path / "unsealed"
    sector.write_bytes(b"\xaa" * 4096)
    piece = tmp_path / "piece"
    piece.write_bytes(os.urandom(508))
    assert rust_core.fr32_pad_file(piece, sector, dst_offset=1024) == 512
    content = sector.read_bytes()
    assert len(content) == 4096
    assert content[:1024] == b"\xaa" * 1024 and content[1536:] == b"\xaa" * 2560
    assert rust_core.fr32_unpad_range(sector, 1016, 508) == piece.read_bytes()


# Bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 100, 126, 128, 254 + 1])
def test_pad_rejects_length_not_multiple_of_127(n: int) -> None:
    with pytest.raises(ValueError, match="multiple of 127"):
        rust_core.fr32_pad(b"x" * n)


@pytest.mark.parametrize("n", [1, 127, 129, 255])
def test_unpad_rejects_length_not_multiple_of_128(n: int) -> None:
    with pytest.raises(ValueError, match="multiple of 128"):
        rust_core.fr32_unpad(b"\0" * n)


def test_unpad_rejects_set_pad_bits_and_names_offset() -> None:
    padded = bytearray(rust_core.fr32_pad(bytes(127 * 3)))
    padded[128 + 95] |= 0x40
    with pytest.raises(ValueError, match="padded offset 128"):
        rust_core.fr32_unpad(bytes(padded))


@pytest.mark.parametrize(
    ("pad_to", "match"),
    [(1000, "piece size"), (64, "smallest piece"), (128, "does not fit"), (-1, "non-negative")],
)
def test_pad_rejects_bad_pad_to(pad_to: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rust_core.fr32_pad(b"x" * 200, pad_to=pad_to)


def test_file_errors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"x" * 200)
    with pytest.raises(ValueError, match="multiple of 127"):
        rust_core.fr32_pad_file(src, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()  # checked before the destination is touched
    with pytest.raises(ValueError, match="multiple of 128"):
        rust_core.fr32_pad_file(src, tmp_path / "dst", pad_to=True, dst_offset=100)
    with pytest.raises(OSError):
        rust_core.fr32_pad_file(tmp_path / "missing", tmp_path / "dst")
    padded = tmp_path / "padded"
    padded.write_bytes(rust_core.fr32_pad(bytes(127 * 4)))
    with pytest.raises(ValueError, match="truncated"):
        rust_core.fr32_unpad_range(padded, 500, 10)
    padded.write_bytes(padded.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        rust_core.fr32_unpad_file(padded, tmp_path / "out")
    with pytest.raises(ValueError, match="offset"):
        rust_core.fr32_unpad_range(padded, -1, 10)


def test_stream_of_wrong_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="multiple of 127"):
        rust_core.fr32_pad_stream(io.BytesIO(b"x" * 200), io.BytesIO())


# In-place forms and buffer-protocol inputs ------------------------------------------------------


@settings(deadline=None)
@given(blocks, st.sampled_from(["bytearray", "memoryview", "array"]))
def test_pad_into_and_unpad_into_equal_the_allocating_forms(data: bytes, kind: str) -> None:
    import array

    def wrap(b: bytes) -> Any:
        if kind == "bytearray":
            return bytearray(b)
        if kind == "memoryview":
            return memoryview(bytearray(b))
        return array.array("B", b)

    dst = bytearray(b"\xee" * (len(data) // 127 * 128 + 5))
    assert rust_core.fr32_pad_into(wrap(data), dst) == len(data) // 127 * 128
    assert bytes(dst[: len(data) // 127 * 128]) == rust_core.fr32_pad(data)
    assert dst[len(data) // 127 * 128 :] == b"\xee" * 5  # the rest of dst is untouched
    back = memoryview(bytearray(len(data) + 3))
    assert rust_core.fr32_unpad_into(wrap(bytes(dst[: len(data) // 127 * 128])), back) == len(data)
    assert bytes(back[: len(data)]) == data
    assert rust_core.fr32_pad(wrap(data)) == rust_core.fr32_pad(data)


def test_pad_into_writes_into_an_mmap_and_zero_extends(tmp_path: Path) -> None:
    import mmap

    data = os.urandom(127 * 100_003 + 50)  # multi-core path, then zero extension
    piece = rust_core.padded_size_for_payload(len(data))
    path = tmp_path / "sector"
    path.write_bytes(b"\0" * (piece + 4096))
    with path.open("r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        view = memoryview(m)
        try:
            written = rust_core.fr32_pad_into(memoryview(data)[10:], view[4096:], pad_to=True)
            assert written == rust_core.padded_size_for_payload(len(data) - 10)
            assert bytes(view[4096 : 4096 + written]) == rust_core.fr32_pad(data[10:], pad_to=True)
            out = bytearray(rust_core.padded_to_unpadded(written))
            assert rust_core.fr32_unpad_into(view[4096 : 4096 + written], out) == len(out)
            assert bytes(out[: len(data) - 10]) == data[10:]
        finally:
            view.release()


def test_into_forms_reject_bad_buffers() -> None:
    src = os.urandom(127 * 2)
    with pytest.raises(TypeError, match="writable"):
        rust_core.fr32_pad_into(src, bytes(256))
    with pytest.raises(TypeError, match="bytes-like"):
        rust_core.fr32_pad_into("not bytes", bytearray(256))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs 256"):
        rust_core.fr32_pad_into(src, bytearray(255))
    with pytest.raises(TypeError, match="contiguous"):
        rust_core.fr32_pad_into(memoryview(bytearray(127 * 4))[::2], bytearray(256))
    shared = bytearray(127 * 2 + 256)
    with pytest.raises(ValueError, match="overlap"):
        rust_core.fr32_pad_into(memoryview(shared)[:254], memoryview(shared)[100:])
    padded = bytearray(rust_core.fr32_pad(src))
    padded[31] |= 0x80
    with pytest.raises(ValueError, match="padded offset 0"):
        rust_core.fr32_unpad_into(padded, bytearray(254))
    out = bytearray(254)
    assert rust_core.fr32_unpad_into(padded, out, strict=False) == 254
    with pytest.raises(ValueError, match="multiple of 128"):
        rust_core.fr32_unpad_into(bytes(100), bytearray(100))
    assert rust_core.fr32_pad_into(b"", bytearray()) == 0
