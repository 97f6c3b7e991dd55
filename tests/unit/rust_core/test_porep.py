"""PoRep emulation through the Python API: 2 KiB and 8 MiB sectors end to end (seal, verify,
tamper, unseal, PoSt, CheckProvable, determinism)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rust_core
from tests.unit.rust_core.porep_helpers import (
    PROVER,
    SEED,
    TICKET,
    Sector,
    flip,
    flipped,
    fr32_pad,
    fr32_unpad,
    make_unsealed,
    merkle_root,
    seal_sector,
)

KIB2 = 2048
MIB8 = 8 << 20


@pytest.fixture(scope="module")
def s2k(tmp_path_factory: pytest.TempPathFactory) -> Sector:
    # Two pieces: 128 B and 1 KiB (a zero gap between them, a zero tail).
    return seal_sector(tmp_path_factory.mktemp("s2k"), KIB2, 3, [128, 1024], rng_seed=3)


@pytest.fixture(scope="module")
def s8m(tmp_path_factory: pytest.TempPathFactory) -> Sector:
    return seal_sector(tmp_path_factory.mktemp("s8m"), MIB8, 42, [4 << 20, 1 << 20, 2 << 20], rng_seed=42)


def test_piece_commitments_are_subtrees_of_the_unsealed_tree() -> None:
    padded, pieces = make_unsealed(KIB2, [128, 1024], rng_seed=3)
    assert pieces[0][1] == merkle_root(padded[:128])
    assert pieces[1][1] == merkle_root(padded[1024:2048])
    assert merkle_root(padded) == bytes(rust_core.unsealed_commitment(KIB2, pieces))


def test_params_table() -> None:
    assert rust_core.supported_sector_sizes() == [2048, 8 << 20, 512 << 20, 32 << 30, 64 << 30]
    assert rust_core.sector_params(KIB2)["layers"] == 2
    p32 = rust_core.sector_params(32 << 30)
    assert (p32["layers"], p32["porep_challenges"], p32["tree_r_last_parts"]) == (11, 176, 8)
    assert rust_core.sector_params(64 << 30)["tree_r_last_parts"] == 16
    assert rust_core.sector_params(MIB8)["window_post_challenges"] == 10
    assert rust_core.sector_params(MIB8)["winning_post_challenges"] == 66
    with pytest.raises(ValueError, match="unsupported sector size"):
        rust_core.sector_params(4096)


@pytest.mark.parametrize("name", ["s2k", "s8m"])
def test_seal_verifies(name: str, request: pytest.FixtureRequest) -> None:
    s: Sector = request.getfixturevalue(name)
    assert s.comm_d == merkle_root(fr32_pad(s.payload))
    assert s.comm_d == bytes(rust_core.unsealed_commitment(s.size, s.pieces))
    assert s.sealed.stat().st_size == s.size
    assert s.verify()


@pytest.mark.parametrize("name", ["s2k", "s8m"])
def test_tampered_public_inputs_fail(name: str, request: pytest.FixtureRequest) -> None:
    s: Sector = request.getfixturevalue(name)
    assert not s.verify(comm_r=flipped(s.comm_r, 5))
    assert not s.verify(comm_r=flipped(s.comm_r, 31, 0x80))  # not even a field element
    assert not s.verify(comm_d=flipped(s.comm_d, 0))
    assert not s.verify(ticket=flipped(TICKET, 9))
    assert not s.verify(seed=flipped(SEED, 30))
    assert not s.verify(prover_id=flipped(PROVER, 1))
    assert not s.verify(sector_number=s.number + 1)


@pytest.mark.parametrize("name", ["s2k", "s8m"])
def test_any_flipped_proof_byte_fails(name: str, request: pytest.FixtureRequest) -> None:
    s: Sector = request.getfixturevalue(name)
    n = len(s.proof)
    for i in sorted({0, 5, 6, 14, 50, 100, n // 3, n // 2, n - 33, n - 1}):
        assert not s.verify(proof=flipped(s.proof, i)), f"byte {i} of {n}"
    assert not s.verify(proof=s.proof[:-1])
    assert not s.verify(proof=s.proof + b"\0")
    assert not s.verify(proof=b"")


def test_every_byte_of_a_2k_proof_matters(s2k: Sector) -> None:
    for i in range(0, len(s2k.proof), 7):
        assert not s2k.verify(proof=flipped(s2k.proof, i, 0x10)), i


def test_malformed_public_inputs_are_value_errors(s2k: Sector) -> None:
    with pytest.raises(ValueError, match="comm_r must be 32 bytes"):
        s2k.verify(comm_r=s2k.comm_r[:31])
    with pytest.raises(ValueError, match="unsupported sector size"):
        s2k.verify(sector_size=4096)
    assert not s2k.verify(sector_size=MIB8)


def test_sealed_file_flipped_before_c1_fails(tmp_path: Path) -> None:
    s = seal_sector(tmp_path, KIB2, 9, [2048], rng_seed=9, tamper_sealed_at=777)
    assert not s.verify()


def test_c2_rejects_another_sectors_c1_output(s2k: Sector) -> None:
    with pytest.raises(ValueError, match="made for sector 3"):
        rust_core.seal_commit_phase2(s2k.c1_output, PROVER, 4)
    with pytest.raises(ValueError, match="commit phase-1 output"):
        rust_core.seal_commit_phase2(s2k.c1_output[:-3], PROVER, 3)


def test_pc1_checks_pieces_and_fr32(tmp_path: Path) -> None:
    padded, pieces = make_unsealed(KIB2, [1024], rng_seed=5)
    unsealed = tmp_path / "u"
    unsealed.write_bytes(padded)
    bad = [(1024, flipped(pieces[0][1], 3))]
    with pytest.raises(ValueError, match="piece 0"):
        rust_core.seal_pre_commit_phase1(KIB2, str(tmp_path / "c"), str(unsealed), PROVER, 1, TICKET, bad)
    with pytest.raises(ValueError, match="non-zero data"):
        rust_core.seal_pre_commit_phase1(KIB2, str(tmp_path / "c"), str(unsealed), PROVER, 1, TICKET, [])
    unsealed.write_bytes(padded[:31] + b"\xff" + padded[32:])
    with pytest.raises(ValueError, match="not fr32-padded"):
        rust_core.seal_pre_commit_phase1(KIB2, str(tmp_path / "c"), str(unsealed), PROVER, 1, TICKET, pieces)
    unsealed.write_bytes(padded[:1000])
    with pytest.raises(ValueError, match="expected at least the sector size"):
        rust_core.seal_pre_commit_phase1(KIB2, str(tmp_path / "c"), str(unsealed), PROVER, 1, TICKET, pieces)
    with pytest.raises(OSError):
        rust_core.seal_pre_commit_phase1(KIB2, str(tmp_path / "c"), str(tmp_path / "none"), PROVER, 1, TICKET, pieces)
    with pytest.raises(ValueError, match="phase-1 output"):
        rust_core.seal_pre_commit_phase2(b"SSP1junk", str(tmp_path / "c"), str(tmp_path / "s"))


@pytest.mark.parametrize("name", ["s2k", "s8m"])
def test_unseal_gives_back_the_original_bytes(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    s: Sector = request.getfixturevalue(name)
    out = tmp_path / "unsealed-out"
    unpadded = s.size // 128 * 127
    rust_core.unseal_range(
        s.size, str(s.cache), str(s.sealed), str(out), PROVER, s.number, TICKET, s.comm_d, 0, unpadded
    )
    assert fr32_unpad(out.read_bytes()) == s.payload
    # A range: the second piece only, into a fresh file at its padded offset.
    first_size = s.pieces[0][0]
    second_size = s.pieces[1][0]
    start = (first_size + second_size - 1) // second_size * second_size
    out2 = tmp_path / "range-out"
    rust_core.unseal_range(
        s.size,
        str(s.cache),
        str(s.sealed),
        str(out2),
        PROVER,
        s.number,
        TICKET,
        s.comm_d,
        start // 128 * 127,
        second_size // 128 * 127,
    )
    got = out2.read_bytes()[start : start + second_size]
    assert fr32_unpad(got) == s.payload[start // 128 * 127 : (start + second_size) // 128 * 127]


def test_unseal_with_wrong_inputs_or_range_fails(s2k: Sector, tmp_path: Path) -> None:
    args = [KIB2, str(s2k.cache), str(s2k.sealed), str(tmp_path / "o"), PROVER, s2k.number]
    with pytest.raises(ValueError, match="not fr32 data"):
        rust_core.unseal_range(*args, flipped(TICKET, 0), s2k.comm_d, 0, 2032)
    with pytest.raises(ValueError, match="multiples of 127"):
        rust_core.unseal_range(*args, TICKET, s2k.comm_d, 1, 127)
    with pytest.raises(ValueError, match="within the sector"):
        rust_core.unseal_range(*args, TICKET, s2k.comm_d, 127, 2032)


@pytest.mark.parametrize("name", ["s2k", "s8m"])
def test_window_and_winning_post(name: str, request: pytest.FixtureRequest) -> None:
    s: Sector = request.getfixturevalue(name)
    rand = bytes([0x33] * 32)
    pub = [(s.number, s.comm_r)]
    proof = rust_core.generate_window_post(s.size, rand, PROVER, [s.post_sector()])
    assert rust_core.verify_window_post(s.size, rand, PROVER, pub, proof)
    assert not rust_core.verify_window_post(s.size, flipped(rand, 0), PROVER, pub, proof)
    assert not rust_core.verify_window_post(s.size, rand, PROVER, [(s.number, flipped(s.comm_r, 2))], proof)
    assert not rust_core.verify_window_post(s.size, rand, PROVER, pub, flipped(proof, len(proof) // 2))
    # Randomness is masked to 254 bits, as Lotus does.
    assert rust_core.verify_window_post(s.size, flipped(rand, 31, 0x80), PROVER, pub, proof)

    winning = rust_core.generate_winning_post(s.size, rand, PROVER, [s.post_sector()])
    assert rust_core.verify_winning_post(s.size, rand, PROVER, pub, winning)
    assert not rust_core.verify_window_post(s.size, rand, PROVER, pub, winning)
    idx = rust_core.generate_winning_post_sector_challenge(s.size, rand, PROVER, 10)
    assert len(idx) == 1 and 0 <= idx[0] < 10
    with pytest.raises(ValueError, match="at most 1"):
        rust_core.generate_winning_post(s.size, rand, PROVER, [s.post_sector(), s.post_sector()])

    vanilla = rust_core.generate_single_vanilla_proof(s.size, rand, PROVER, s.post_sector())
    assert rust_core.verify_single_vanilla_proof(s.size, rand, PROVER, (s.number, s.comm_r), vanilla)
    assert not rust_core.verify_single_vanilla_proof(s.size, rand, PROVER, (s.number + 1, s.comm_r), vanilla)


def test_post_fails_on_corrupted_replica_and_check_provable_names_faults(tmp_path: Path) -> None:
    sectors = {n: seal_sector(tmp_path / f"s{n}", KIB2, n, [2048], rng_seed=n) for n in (1, 2, 3, 4, 5)}
    for s in sectors.values():
        rust_core.clear_cache(str(s.cache), KIB2)
    rand = bytes(32)
    good = sectors[1]
    assert rust_core.verify_window_post(
        KIB2,
        rand,
        PROVER,
        [(good.number, good.comm_r)],
        rust_core.generate_window_post(KIB2, rand, PROVER, [good.post_sector()]),
    )

    corrupt = sectors[2]
    flip(corrupt.sealed, 1234)
    proof = rust_core.generate_window_post(KIB2, rand, PROVER, [good.post_sector(), corrupt.post_sector()])
    assert not rust_core.verify_window_post(KIB2, rand, PROVER, [(1, good.comm_r), (2, corrupt.comm_r)], proof)

    with open(sectors[3].sealed, "r+b") as f:
        f.truncate(1000)
    (sectors[4].cache / "p_aux").unlink()
    sectors[5].sealed.unlink()

    report = rust_core.check_provable(
        KIB2, PROVER, [(n, s.comm_r, str(s.sealed), str(s.cache)) for n, s in sectors.items()]
    )
    assert report[1] is None
    assert "corrupt" in report[2] and "does not verify" in report[2]
    assert "wrong size (got 1000, expect 2048)" in report[3]
    assert "p_aux" in report[4] and "missing" in report[4]
    assert "sealed file" in report[5] and "missing" in report[5]
    # Without comm_r, and with fixed randomness.
    again = rust_core.check_provable(KIB2, PROVER, [(1, None, str(good.sealed), str(good.cache))], bytes(32))
    assert again == {1: None}
    with pytest.raises(ValueError, match="sector 3"):
        rust_core.generate_window_post(KIB2, rand, PROVER, [sectors[3].post_sector()])


def test_clear_cache_keeps_what_post_needs(tmp_path: Path) -> None:
    s = seal_sector(tmp_path, KIB2, 8, [1024], rng_seed=8)
    before = {p.name for p in s.cache.iterdir()}
    assert {
        "sc-02-data-layer-1.dat",
        "sc-02-data-layer-2.dat",
        "sc-02-data-tree-d.dat",
        "sc-02-data-tree-c.dat",
        "sc-02-data-tree-r-last.dat",
        "p_aux",
    } <= before
    rust_core.clear_cache(str(s.cache), KIB2)
    rust_core.clear_cache(str(s.cache), KIB2)  # idempotent
    assert {p.name for p in s.cache.iterdir()} == {"sc-02-data-tree-r-last.dat", "p_aux"}
    with pytest.raises(OSError, match="sc-02-data-tree-d.dat"):
        rust_core.seal_commit_phase1(
            KIB2, str(s.cache), str(s.sealed), PROVER, 8, TICKET, SEED, s.pieces, s.comm_r, s.comm_d
        )


def test_gpu_selection_without_devices() -> None:
    assert rust_core.gpu_devices() == [] or all("name" in d for d in rust_core.gpu_devices())
    assert rust_core.gpu_backend("cpu") == "cpu"
    if not rust_core.gpu_devices():
        assert rust_core.gpu_backend("auto") == "cpu"
        with pytest.raises(ValueError, match="CUDA device 0 requested"):
            rust_core.gpu_backend("cuda:0")
    with pytest.raises(ValueError, match="unknown compute backend"):
        rust_core.gpu_backend("tpu")


def test_backends_and_thread_counts_give_identical_bytes(s8m: Sector, tmp_path: Path) -> None:
    cpu = seal_sector(tmp_path / "cpu", MIB8, 42, [4 << 20, 1 << 20, 2 << 20], rng_seed=42, backend="cpu")
    assert (cpu.comm_r, cpu.proof) == (s8m.comm_r, s8m.proof)
    script = (
        "import sys, hashlib; from pathlib import Path; sys.path.insert(0, sys.argv[2]);"
        "from porep_helpers import seal_sector;"
        "s = seal_sector(Path(sys.argv[1]), 8 << 20, 42, [4 << 20, 1 << 20, 2 << 20], rng_seed=42);"
        "print(s.comm_r.hex(), hashlib.sha256(s.proof).hexdigest(), hashlib.sha256(s.sealed.read_bytes()).hexdigest())"
    )
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "one"), str(Path(__file__).parent)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out == [
        s8m.comm_r.hex(),
        hashlib.sha256(s8m.proof).hexdigest(),
        hashlib.sha256(s8m.sealed.read_bytes()).hexdigest(),
    ]


def test_concurrent_seals_from_threads(tmp_path: Path) -> None:
    """The bindings release the GIL and share no state: sectors sealed from several threads at
    once all verify and match a sequential run."""
    from concurrent.futures import ThreadPoolExecutor

    def run(n: int) -> Sector:
        return seal_sector(tmp_path / f"t{n}", KIB2, 100 + n, [1024, 512], rng_seed=n)

    with ThreadPoolExecutor(max_workers=4) as pool:
        sectors = list(pool.map(run, range(4)))
    for s in sectors:
        assert s.verify()
    again = seal_sector(tmp_path / "again", KIB2, 100, [1024, 512], rng_seed=0)
    assert (again.comm_r, again.proof) == (sectors[0].comm_r, sectors[0].proof)


def test_partial_unsealed_file_with_trailer(tmp_path: Path) -> None:
    """Lotus's partial file: padded sector data, then an RLE+ trailer and its length. PC1 reads
    the data area; unseal writes into it without touching the trailer."""
    import rust_core as rc

    padded, pieces = make_unsealed(KIB2, [2048], rng_seed=11)
    trailer = bytes.fromhex("041002") + (3).to_bytes(4, "little")
    partial = tmp_path / "partial"
    partial.write_bytes(padded + trailer)
    cache, sealed = tmp_path / "cache", tmp_path / "sealed"
    p1 = rc.seal_pre_commit_phase1(KIB2, str(cache), str(partial), PROVER, 11, TICKET, pieces)
    _, comm_d = rc.seal_pre_commit_phase2(p1, str(cache), str(sealed))
    target = tmp_path / "target"
    target.write_bytes(bytes(KIB2) + trailer)
    rc.unseal_range(KIB2, str(cache), str(sealed), str(target), PROVER, 11, TICKET, comm_d, 0, 2032)
    assert target.read_bytes() == padded + trailer


@pytest.mark.parametrize("name", ["s2k", "s8m"])
def test_reference_verifier_written_from_the_doc_agrees(name: str, request: pytest.FixtureRequest) -> None:
    from tests.unit.rust_core.porep_reference_verifier import verify_seal as ref_verify

    s: Sector = request.getfixturevalue(name)
    args = [s.size, s.comm_r, s.comm_d, PROVER, s.number, TICKET, SEED]
    assert ref_verify(*args, s.proof)
    for i in (20, len(s.proof) // 2, len(s.proof) - 5):
        bad = flipped(s.proof, i)
        assert ref_verify(*args, bad) == rust_core.verify_seal(*args, bad) is False
    assert not ref_verify(s.size, s.comm_r, s.comm_d, PROVER, s.number + 1, TICKET, SEED, s.proof)
