"""commP, zero-piece commitments and commD through the Python API: every shared vector,
properties, file and streaming forms, and the errors bad input must raise."""

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rust_core
from tests.unit.rust_core.go_math_rand import stream as go_rand_stream


def load(vectors_dir: Path, section: str) -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads((vectors_dir / "vectors.json").read_text())[section]
    assert vectors, section
    return vectors


def node_hash(left: bytes, right: bytes) -> bytes:
    digest = bytearray(hashlib.sha256(left + right).digest())
    digest[31] &= 0x3F
    return bytes(digest)


def biggest_cat() -> bytes:
    return b"i am the biggest cat, what do you think about that".ljust(127, b"\0")


def four_runs() -> bytes:
    return b"".join(bytes([b]) * 127 for b in range(4))


def payload_of(v: dict[str, Any]) -> bytes | Iterator[bytes] | None:
    """The payload of a commP vector, from its input recipe (None: not reproducible offline)."""
    recipe: str = v["input"]
    n: int = v["payload_size"]
    if not v["reverified_here"]:
        return None
    if recipe.startswith("payload_size bytes of 0x00"):
        return bytes(n)
    if "i am the biggest cat" in recipe:
        return biggest_cat()
    if "bytes of 'a'" in recipe:
        return b"a" * n
    if "Go rand" in recipe:
        return go_rand_stream(0x7E5, n)
    if recipe.startswith("127 bytes 0x00, 127 bytes 0x01"):
        return four_runs()
    if recipe.startswith("the 508 bytes above followed by 508 zero bytes"):
        return four_runs().ljust(1016, b"\0")
    if "*already-padded* bytes: 0x01 then" in recipe:
        return b"\x01".ljust(n, b"\0")  # fr32 of 01 00 … is 01 00 …
    raise AssertionError(f"unknown commP input recipe: {recipe}")


# Vectors ----------------------------------------------------------------------------------------


def test_zero_piece_commitments(vectors_dir: Path) -> None:
    rows = load(vectors_dir, "zero_piece_commitments")
    assert [r["padded_size"] for r in rows] == [32 << i for i in range(37)]  # 32 B … 2 TiB
    for r in rows:
        digest = rust_core.zero_piece_commitment(r["padded_size"])
        assert digest.hex() == r["digest_hex"]
        if r["unpadded_size"] is not None:
            assert rust_core.padded_to_unpadded(r["padded_size"]) == r["unpadded_size"]
            assert rust_core.piece_cid(digest) == r["piece_cid_v1"]


def test_zero_piece_commitments_equal_hashing_zeros(vectors_dir: Path) -> None:
    for r in load(vectors_dir, "zero_piece_commitments"):
        if r["unpadded_size"] is not None and r["padded_size"] <= 8 << 20:
            assert rust_core.piece_commitment(bytes(r["unpadded_size"])).hex() == r["digest_hex"]


def test_hashhash_zero_txt(vectors_dir: Path) -> None:
    rows = [line.split(",") for line in (vectors_dir / "hashhash_zero.txt").read_text().split()]
    assert len(rows) >= 18
    for payload, padded, cid in rows:
        assert rust_core.padded_size_for_payload(int(payload)) == int(padded)
        assert rust_core.piece_cid(rust_core.piece_commitment(bytes(int(payload)), True)) == cid
        assert rust_core.piece_commitment(bytes(int(payload)), pad_to=int(padded)).hex() == (
            rust_core.commp_from_cid(cid).hex()
        )


def commp_vector_ids(v: dict[str, Any]) -> str:
    return f"{v['source'].split()[0]}:{v['payload_size']}"


def check_commp_vector(v: dict[str, Any]) -> None:
    assert rust_core.piece_cid(bytes.fromhex(v["digest_hex"])) == v["piece_cid_v1"]
    assert rust_core.commp_from_cid(v["piece_cid_v1"]).hex() == v["digest_hex"]
    payload = payload_of(v)
    if payload is None:
        return
    if isinstance(payload, bytes):
        assert len(payload) == v["payload_size"]
        got = rust_core.piece_commitment(payload, pad_to=v["padded_size"])
        assert rust_core.piece_commitment(payload, pad_to=True) == got
    else:
        hasher = rust_core.PieceHasher()
        for chunk in payload:
            hasher.update(chunk)
        assert hasher.payload_size == v["payload_size"]
        got = hasher.finish(pad_to=v["padded_size"])
    assert got.hex() == v["digest_hex"], v["input"]


def test_commp_vectors(vectors_dir: Path) -> None:
    vectors = [v for v in load(vectors_dir, "commp") if "Go rand" not in v["input"]]
    assert len(vectors) >= 26
    for v in vectors:
        check_commp_vector(v)


@pytest.mark.slow
def test_commp_vectors_from_go_math_rand(vectors_dir: Path) -> None:
    """lotus' TestDCAPCloses / TestAddPiece512M / TestAddPiece512MPadded pieces (up to 512 MiB)."""
    vectors = [v for v in load(vectors_dir, "commp") if "Go rand" in v["input"]]
    assert len(vectors) == 3
    for v in vectors:
        check_commp_vector(v)


def test_go_math_rand_matches_published_sample(vectors_dir: Path) -> None:
    want = (vectors_dir / "gomathrand_read_seed0x7e5_first2032.bin").read_bytes()
    assert b"".join(go_rand_stream(0x7E5, len(want), chunk=700)) == want


def test_tree_node_vectors(vectors_dir: Path) -> None:
    one, zero, parent = (bytes.fromhex(v["node_hex"]) for v in load(vectors_dir, "tree_nodes"))
    assert node_hash(b"\x01".ljust(32, b"\0"), bytes(32)) == one
    assert rust_core.zero_piece_commitment(64) == zero
    # The parent of both is the commP of the 128-byte padded piece 01 00 … (127 bytes 01 00 …).
    assert rust_core.piece_commitment(b"\x01".ljust(127, b"\0")) == parent


def test_curio_8mib_tree_levels(vectors_dir: Path) -> None:
    """README §6: node 0 of every level of the tree over padded 01 00 … (curio Test8MiB)."""
    table = (vectors_dir / "README.md").read_text().split("## 6.")[1]
    levels = 0
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4 or not cells[1].split(" ")[0].isdigit():
            continue
        level, want, zero = int(cells[1].split(" ")[0]), cells[3].strip("`"), cells[4].strip("`")
        leaf = b"\x01".ljust(32, b"\0")
        if level == 0:
            got = leaf
        elif level == 1:
            got = node_hash(leaf, bytes(32))
        else:
            got = rust_core.piece_commitment(b"\x01".ljust(127 << (level - 2), b"\0"))
        assert got.hex() == want, level
        if zero != "-":
            assert rust_core.zero_piece_commitment(32 << level).hex() == zero, level
        levels += 1
    assert levels == 19


def pieces_of(v: dict[str, Any]) -> list[tuple[int, bytes]]:
    pieces = []
    for p in v["pieces_in_order"]:
        digest = bytes.fromhex(p["digest_hex"])
        if "piece_cid_v1" in p:
            assert rust_core.commp_from_cid(p["piece_cid_v1"]) == digest
        if p.get("zero_piece"):
            assert rust_core.zero_piece_commitment(p["padded_size"]) == digest
        pieces.append((p["padded_size"], digest))
    return pieces


def test_commd_vectors(vectors_dir: Path) -> None:
    vectors = load(vectors_dir, "commd_from_pieces")
    assert len(vectors) == 5
    for v in vectors:
        commd = rust_core.unsealed_commitment(v["sector_size"], pieces_of(v))
        assert commd.hex() == v["commd_hex"], v["source"]
        assert rust_core.piece_cid(commd) == v["commd_cid"]


def test_commd_mainnet_sector_aggregate_without_zero_pieces(vectors_dir: Path) -> None:
    d1 = load(vectors_dir, "commd_from_pieces")[0]
    real = pieces_of(d1)[:10]
    root = rust_core.unsealed_commitment(8 << 30, real)
    assert rust_core.piece_cid(root) == "baga6ea4seaqez5c7zwfn6rqlhmsjeukdlrhs5ubvh2qlevfjwv3dljnaynifqoi"
    lifted = node_hash(
        node_hash(root, rust_core.zero_piece_commitment(8 << 30)), rust_core.zero_piece_commitment(16 << 30)
    )
    assert lifted.hex() == d1["commd_hex"]
    assert rust_core.unsealed_commitment(32 << 30, real).hex() == d1["commd_hex"]


def test_commd_d5_equals_commp_of_sector_bytes(vectors_dir: Path) -> None:
    d5 = load(vectors_dir, "commd_from_pieces")[4]
    assert d5["unpadded_sector_bytes"].startswith("A(127) + 889 x 0x00 + 1016 x 'a'")
    sector = biggest_cat() + bytes(889) + b"a" * 1016
    assert rust_core.piece_commitment(sector).hex() == d5["commd_hex"]


# Properties -------------------------------------------------------------------------------------

pieces = st.integers(min_value=0, max_value=7).flatmap(lambda k: st.binary(min_size=127 << k, max_size=127 << k))


@settings(deadline=None)
@given(pieces, st.lists(st.integers(min_value=1, max_value=20_000), max_size=6))
def test_streaming_equals_in_memory(data: bytes, cuts: list[int]) -> None:
    hasher = rust_core.PieceHasher()
    pos = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        hasher.update(data[pos:cut])
        pos = max(pos, cut)
    assert hasher.finish() == rust_core.piece_commitment(data)
    assert rust_core.piece_commitment_stream(io.BytesIO(data)) == hasher.finish()


def test_streaming_large_piece_in_odd_slices() -> None:
    data = os.urandom(127 << 17)  # 16 MiB padded: many chunks, more than one batch
    want = rust_core.piece_commitment(data)
    hasher = rust_core.PieceHasher()
    for start in range(0, len(data), 999_983):
        hasher.update(data[start : start + 999_983])
    assert hasher.finish() == want
    assert rust_core.piece_commitment(data[:-1000], pad_to=True) == rust_core.piece_commitment(
        data[:-1000] + bytes(1000)
    )


@settings(deadline=None)
@given(st.binary(max_size=4000), st.integers(min_value=0, max_value=3))
def test_zero_extension_equals_explicit_zeros(data: bytes, extra: int) -> None:
    piece = rust_core.padded_to_unpadded(rust_core.padded_size_for_payload(len(data))) << extra
    want = rust_core.piece_commitment(data.ljust(piece, b"\0"))
    assert rust_core.piece_commitment(data, pad_to=piece) == want
    assert rust_core.piece_commitment(data, pad_to=piece // 127 * 128) == want


@settings(deadline=None)
@given(pieces)
def test_commd_of_one_full_sector_piece_is_its_commp(data: bytes) -> None:
    commp = rust_core.piece_commitment(data)
    size = rust_core.unpadded_to_padded(len(data))
    assert rust_core.unsealed_commitment(size, [(size, commp)]) == commp


@settings(deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=6), st.data())
def test_commd_equals_commp_of_laid_out_sector(exponents: list[int], draw: st.DataObject) -> None:
    """Place pieces by the alignment rule by hand; commD from commitments must equal commP of the
    whole sector's bytes."""
    sizes = [128 << e for e in exponents]
    offset, layout = 0, []
    for size in sizes:
        offset = -(-offset // size) * size
        layout.append(offset)
        offset += size
    sector_size = max(128, 1 << (offset - 1).bit_length())
    sector = bytearray(sector_size // 128 * 127)
    commitments = []
    for size, start in zip(sizes, layout):
        data = draw.draw(st.binary(min_size=size // 128 * 127, max_size=size // 128 * 127))
        sector[start // 128 * 127 : start // 128 * 127 + len(data)] = data
        commitments.append((size, rust_core.piece_commitment(data)))
    want = rust_core.piece_commitment(bytes(sector))
    assert rust_core.unsealed_commitment(sector_size, commitments) == want
    assert rust_core.unsealed_commitment(sector_size * 2, commitments) == node_hash(
        want, rust_core.zero_piece_commitment(sector_size)
    )


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=20_000))
def test_file_forms_equal_in_memory(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("commp") / "piece"
    path.write_bytes(data)
    want = rust_core.piece_commitment(data, pad_to=True)
    assert rust_core.piece_commitment_file(path, pad_to=True) == want
    assert rust_core.piece_commitment_file(str(path), pad_to=True) == want


def test_large_file_equals_in_memory(tmp_path: Path) -> None:
    data = os.urandom(127 << 18)  # 32 MiB padded: two read batches
    path = tmp_path / "piece"
    path.write_bytes(data)
    assert rust_core.piece_commitment_file(path) == rust_core.piece_commitment(data)
    with path.open("rb") as f:
        assert rust_core.piece_commitment_stream(f) == rust_core.piece_commitment(data)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=3000), st.integers(min_value=0, max_value=2))
def test_add_piece_equals_pad_plus_commp(tmp_path_factory: pytest.TempPathFactory, data: bytes, extra: int) -> None:
    piece = rust_core.padded_size_for_payload(len(data)) << extra
    d = tmp_path_factory.mktemp("add")
    src, dst = d / "src", d / "dst"
    src.write_bytes(data)
    want = (piece, rust_core.piece_commitment(data, pad_to=piece))
    assert rust_core.add_piece_file(src, dst, pad_to=piece) == want
    assert dst.read_bytes() == rust_core.fr32_pad(data, pad_to=piece)
    sink = io.BytesIO()
    assert rust_core.add_piece_stream(io.BytesIO(data), sink, pad_to=piece) == want
    assert sink.getvalue() == dst.read_bytes()


def test_add_piece_into_sector_file_and_errors(tmp_path: Path) -> None:
    data = os.urandom(127 << 17)  # 16 MiB padded: two read batches
    src, sector = tmp_path / "piece", tmp_path / "unsealed"
    src.write_bytes(data)
    sector.write_bytes(bytes(64 << 20))
    size, commp = rust_core.add_piece_file(src, sector, dst_offset=32 << 20)
    assert (size, commp) == (16 << 20, rust_core.piece_commitment(data))
    assert sector.stat().st_size == 64 << 20
    assert rust_core.fr32_unpad_range(sector, (32 << 20) // 128 * 127, len(data)) == data
    src.write_bytes(b"x" * 381)  # a multiple of 127 but not a piece
    with pytest.raises(ValueError, match=r"127·2\^k"):
        rust_core.add_piece_file(src, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_result_does_not_depend_on_thread_count() -> None:
    code = (
        "import rust_core, random; d = random.Random(5).randbytes(127 << 16); "
        "print(rust_core.piece_commitment(d).hex(), rust_core.fr32_pad(d)[-4096:].hex())"
    )
    outputs = set()
    for threads in ("1", "3", "8"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outputs.add(run.stdout)
    assert len(outputs) == 1


def test_hasher_finish_is_repeatable() -> None:
    hasher = rust_core.PieceHasher()
    hasher.update(b"x" * 600)
    assert hasher.finish(pad_to=True) == hasher.finish(pad_to=1024)
    hasher.update(bytearray(b"y" * 416))
    assert hasher.payload_size == 1016
    assert hasher.finish() == rust_core.piece_commitment(b"x" * 600 + b"y" * 416)


# Bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 126, 128, 381, 1000])
def test_commp_rejects_non_piece_lengths(n: int) -> None:
    with pytest.raises(ValueError, match=r"127·2\^k"):
        rust_core.piece_commitment(b"x" * n)


def test_commp_rejects_bad_pad_to() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        rust_core.piece_commitment(b"x" * 300, pad_to=254)
    with pytest.raises(ValueError, match="neither a padded size"):
        rust_core.piece_commitment(b"x" * 300, pad_to=1000)
    with pytest.raises(ValueError, match="smallest piece"):
        rust_core.PieceHasher().finish(pad_to=64)  # a power of two, but not a piece size


def test_commp_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"x" * 200)
    with pytest.raises(ValueError, match=r"short: data length 200 is not an unpadded piece size"):
        rust_core.piece_commitment_file(path)
    with pytest.raises(OSError, match="missing"):
        rust_core.piece_commitment_file(tmp_path / "missing")


@pytest.mark.parametrize("size", [-128, 0, 16, 96, 100, 1000, 1 << 64])
def test_zero_commitment_rejects_bad_sizes(size: int) -> None:
    with pytest.raises(ValueError, match="padded_size|power of two"):
        rust_core.zero_piece_commitment(size)


def test_commd_rejects_bad_layouts() -> None:
    c = bytes(32)
    cases: list[tuple[int, list[tuple[int, bytes]], str]] = [
        (2000, [], "sector size"),
        (2048, [(1000, c)], "piece 0"),
        (2048, [(127, c)], "unpadded size"),
        (2048, [(4096, c)], "larger than the sector"),
        (2048, [(128, c), (1024, c), (1024, c)], "piece 2 .* does not fit"),
        (2048, [(1024, c)] * 3, "does not fit"),
        (2048, [(128, b"short")], "must be 32 bytes"),
        (2048, [(-1, c)], "non-negative"),
    ]
    for sector, pieces_list, match in cases:
        with pytest.raises(ValueError, match=match):
            rust_core.unsealed_commitment(sector, pieces_list)
    assert rust_core.unsealed_commitment(2048, [(1024, c), (1024, c)]) == node_hash(c, c)


def test_piece_commitment_reads_any_buffer_in_place(tmp_path: Path) -> None:
    import array
    import mmap

    data = os.urandom(127 * 4096 + 77)
    want = rust_core.piece_commitment(data, pad_to=True)
    assert rust_core.piece_commitment(bytearray(data), pad_to=True) == want
    assert rust_core.piece_commitment(memoryview(b"xx" + data)[2:], pad_to=True) == want
    assert rust_core.piece_commitment(array.array("B", data), pad_to=True) == want
    path = tmp_path / "payload"
    path.write_bytes(data)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert rust_core.piece_commitment(m, pad_to=True) == want
    h = rust_core.PieceHasher()
    h.update(memoryview(data)[:1000])
    h.update(bytearray(data[1000:]))
    assert h.finish(pad_to=True) == want
    with pytest.raises(TypeError, match="bytes-like"):
        rust_core.piece_commitment("text")  # type: ignore[arg-type]
