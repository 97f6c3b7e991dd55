"""Piece, unsealed and sealed CIDs and piece-size helpers through the Python API."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rust_core


def vectors(vectors_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((vectors_dir / "vectors.json").read_text())
    return loaded


def all_v1_pairs(vectors_dir: Path) -> list[tuple[str, str]]:
    """(digest hex, piece CID v1) from every section of vectors.json that has both."""
    v = vectors(vectors_dir)
    pairs = [(r["digest_hex"], r["piece_cid_v1"]) for r in v["zero_piece_commitments"] if "piece_cid_v1" in r]
    pairs += [(r["digest_hex"], r["piece_cid_v1"]) for r in v["commp"]]
    pairs += [(r["digest_hex"], r["piece_cid_v1"]) for r in v["piece_cid_v2"]]
    for r in v["commd_from_pieces"]:
        pairs.append((r["commd_hex"], r["commd_cid"]))
        pairs += [(p["digest_hex"], p["piece_cid_v1"]) for p in r["pieces_in_order"] if "piece_cid_v1" in p]
    return pairs


def b32(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode().rstrip("=").lower()


def test_every_v1_cid_round_trips(vectors_dir: Path) -> None:
    pairs = all_v1_pairs(vectors_dir)
    assert len(pairs) >= 86
    for digest_hex, cid in pairs:
        assert cid.startswith("baga6ea4seaq")
        assert rust_core.piece_cid(bytes.fromhex(digest_hex)) == cid
        assert rust_core.commp_from_cid(cid).hex() == digest_hex
        assert rust_core.commp_from_cid(cid.upper()).hex() == digest_hex  # base32 upper, 'B'


def test_readme_decode_example() -> None:
    # vectors/README.md §5: the stream-commp example, decoded byte by byte.
    cid = "baga6ea4seaqjxuo4um6mcu7bnv6ui4x5ky4lb7kfpq6bd2h7tyx7hszooo2aybi"
    digest = "9bd1dca33cc153e16d7d4472fd5638b0fd457c3c11e8ff9e2ff3cb2e73b40c05"
    assert b32(bytes.fromhex("0181e203922020" + digest)) == cid
    assert rust_core.commp_from_cid(cid).hex() == digest


def test_piece_cid_v2_vectors(vectors_dir: Path) -> None:
    rows = vectors(vectors_dir)["piece_cid_v2"]
    assert len(rows) == 4
    base = b"".join(bytes([b]) * 127 for b in range(4))
    for r in rows:
        digest = bytes.fromhex(r["digest_hex"])
        payload = r["payload_size"]
        assert rust_core.piece_commitment(base.ljust(payload, b"\0"), pad_to=True) == digest
        assert rust_core.piece_cid(digest) == r["piece_cid_v1"]
        assert rust_core.piece_cid_v2(digest, payload) == r["piece_cid_v2"]
        padded = rust_core.padded_size_for_payload(payload)
        assert rust_core.piece_cid_v2_info(r["piece_cid_v2"]) == (digest, payload, padded)
        assert rust_core.commp_from_cid(r["piece_cid_v2"]) == digest


@pytest.mark.parametrize(
    ("padded", "payload", "v1", "v2"),
    [  # vectors/README.md §5, zero pieces (go-fil-commcid): rows the JSON does not repeat
        (
            32 << 30,
            34091302912,
            "baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
            "bafkzcibcaapao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq",
        ),
        (
            64 << 30,
            68182605824,
            "baga6ea4seaqomqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
            "bafkzcibcaap6mqafu276g53zko4k23xzh4h4uecjwicbmvhsuqi7o4bhthhm4aq",
        ),
    ],
)
def test_piece_cid_v2_of_zero_sectors(padded: int, payload: int, v1: str, v2: str) -> None:
    zero = rust_core.zero_piece_commitment(padded)
    assert rust_core.piece_cid(zero) == v1
    assert rust_core.piece_cid_v2(zero, payload) == v2
    assert rust_core.piece_cid_v2_info(v2) == (zero, payload, padded)


@settings(deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_sealed_cid_round_trip(commr: bytes) -> None:
    cid = rust_core.sealed_cid(commr)
    assert cid.startswith("bagboea4b5abc")  # 01 82e203 81e802 20
    assert rust_core.commr_from_cid(cid) == commr
    with pytest.raises(ValueError, match="fil-commitment-unsealed"):
        rust_core.commp_from_cid(cid)


@settings(deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(min_value=0, max_value=1 << 40))
def test_v1_and_v2_round_trip(commp: bytes, payload: int) -> None:
    assert rust_core.commp_from_cid(rust_core.piece_cid(commp)) == commp
    info = rust_core.piece_cid_v2_info(rust_core.piece_cid_v2(commp, payload))
    assert info == (commp, payload, rust_core.padded_size_for_payload(payload))


UNSEALED = "baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"


@pytest.mark.parametrize(
    ("cid", "match"),
    [
        ("", "empty"),
        ("zQmSomething", "multibase prefix"),
        ("b!!!!", "not valid base32"),
        (UNSEALED[:-3], "not valid base32|declares"),
        (b32(bytes.fromhex("0181e203922020") + bytes(31)), "declares a 32-byte digest"),
        (b32(bytes.fromhex("0181e20392201f") + bytes(31)), "must be 32 bytes"),
        (b32(bytes.fromhex("0281e203922020") + bytes(32)), "version 2"),
        (b32(bytes.fromhex("01701220") + bytes(32)), "codec 0x70"),
        (b32(bytes.fromhex("0181e2031220") + bytes(32)), "multihash 0x12"),
        (b32(bytes.fromhex("0181e203922020") + bytes(33)), "carries 33"),
        (b32(bytes.fromhex("01")), "truncated"),
        ("bafkzcibd7abqlxticxolgseegik2stpfgkkuwyf6kufex3doorkvmzpjuxwe4d", "base32|truncated|32 bytes"),
    ],
)
def test_bad_cids_raise_value_error(cid: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rust_core.commp_from_cid(cid)


def test_bad_commitment_lengths() -> None:
    for f in (rust_core.piece_cid, rust_core.sealed_cid):
        with pytest.raises(ValueError, match="32 bytes, got 31"):
            f(bytes(31))
    with pytest.raises(ValueError, match="codec"):
        rust_core.commr_from_cid(UNSEALED)
    with pytest.raises(ValueError, match="codec 0xf101"):
        rust_core.piece_cid_v2_info(UNSEALED)
    with pytest.raises(ValueError, match="payload_size"):
        rust_core.piece_cid_v2(bytes(32), -5)


# Piece sizes ------------------------------------------------------------------------------------


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=56))
def test_size_conversions_round_trip(k: int) -> None:
    assert rust_core.unpadded_to_padded(127 << k) == 128 << k
    assert rust_core.padded_to_unpadded(128 << k) == 127 << k


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=127 << 40))
def test_padded_size_for_payload_is_smallest_fit(payload: int) -> None:
    padded = rust_core.padded_size_for_payload(payload)
    assert padded >= 128 and padded & (padded - 1) == 0
    assert payload <= rust_core.padded_to_unpadded(padded)
    assert padded == 128 or payload > rust_core.padded_to_unpadded(padded // 2)


@pytest.mark.parametrize("size", [0, 1, 64, 100, 127, 129, 1000, 1 << 64, -128])
def test_padded_to_unpadded_rejects(size: int) -> None:
    with pytest.raises(ValueError, match="padded piece size|non-negative"):
        rust_core.padded_to_unpadded(size)


@pytest.mark.parametrize("size", [0, 1, 126, 128, 381, 1024, -127])
def test_unpadded_to_padded_rejects(size: int) -> None:
    with pytest.raises(ValueError, match=r"127·2\^k|non-negative"):
        rust_core.unpadded_to_padded(size)


def test_payload_too_large() -> None:
    with pytest.raises(ValueError, match="exceeds the largest piece"):
        rust_core.padded_size_for_payload((1 << 63) // 128 * 127 + 1)
    with pytest.raises(TypeError):
        rust_core.padded_size_for_payload("1024")  # type: ignore[arg-type]
