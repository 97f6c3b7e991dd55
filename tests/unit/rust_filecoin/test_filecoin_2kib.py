"""The real Filecoin proofs backend (rust_filecoin, docs/filecoin-backend.md) through its
Python API, for a 2 KiB sector: AddPiece to VerifySeal with a real Groth16 proof, the proofs
that must fail, commD against the emulated backend, unseal, Window and Winning PoSt, a corrupted
challenged byte, and blobs of the other backend refused.

Groth16 parameters are generated locally (random, NOT the network's trusted setup) into
$SECTORSTORAGE_FIL_PARAMS or ~/.cache/sectorstorage/filecoin-params: about 17 minutes the first
time on a 2-core machine, then reused (shared with `cargo test` in rust_filecoin/).
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import rust_core
from tests.support.paths import filecoin_param_cache as param_cache

rust_filecoin = pytest.importorskip(
    "rust_filecoin",
    reason="rust_filecoin (the real proofs backend) is not built: run `make develop-filecoin`",
)

pytestmark = pytest.mark.slow

SIZE = 2048
PROVER = bytes(range(32))
TICKET = bytes([0x11] * 32)
SEED = bytes([0x22] * 32)
RANDOMNESS = bytes([0x33] * 32)


@dataclass
class Sealed:
    number: int
    data: bytes
    unsealed: Path
    sealed: Path
    cache: Path
    pieces: list[tuple[int, bytes]]
    comm_r: bytes
    comm_d: bytes


def seal_to_pc2(root: Path, number: int) -> Sealed:
    """AddPiece (one 2032-byte piece filling the sector), PC1 and PC2."""
    data = random.Random(number).randbytes(2032)
    piece = root / f"piece-{number}"
    piece.write_bytes(data)
    unsealed, sealed, cache = root / f"unsealed-{number}", root / f"sealed-{number}", root / f"cache-{number}"
    padded, comm_p = rust_filecoin.add_piece(SIZE, piece, unsealed, 2032)
    assert padded == 2048
    pieces = [(padded, comm_p)]
    p1 = rust_filecoin.seal_pre_commit_phase1(SIZE, cache, unsealed, sealed, PROVER, number, TICKET, pieces)
    assert rust_filecoin.blob_backend(p1) == "filecoin"
    comm_r, comm_d = rust_filecoin.seal_pre_commit_phase2(p1, cache, sealed)
    return Sealed(number, data, unsealed, sealed, cache, pieces, comm_r, comm_d)


@pytest.fixture(scope="module")
def configured() -> Path:
    cache = param_cache()
    in_use = rust_filecoin.configure(cache, cache / "parents", generate_up_to=SIZE)
    assert Path(in_use) == cache
    for circuit in ("seal", "window", "winning"):
        rust_filecoin.ensure_parameters(SIZE, circuit)
    return cache


@pytest.fixture(scope="module")
def sector(configured: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Sealed, bytes]:
    """Sector 1 sealed and proven once for the module (C2 takes about a minute)."""
    s = seal_to_pc2(tmp_path_factory.mktemp("filecoin"), 1)
    c1 = rust_filecoin.seal_commit_phase1(
        SIZE, s.cache, s.sealed, PROVER, s.number, TICKET, SEED, s.pieces, s.comm_r, s.comm_d
    )
    assert rust_filecoin.blob_backend(c1) == "filecoin"
    proof = rust_filecoin.seal_commit_phase2(c1, PROVER, s.number)
    return s, proof


def verify(s: Sealed, proof: bytes, *, comm_r: bytes | None = None, seed: bytes = SEED) -> bool:
    return rust_filecoin.verify_seal(
        SIZE, comm_r if comm_r is not None else s.comm_r, s.comm_d, PROVER, s.number, TICKET, seed, proof
    )


def test_seal_verifies_with_a_real_groth16_proof(sector: tuple[Sealed, bytes]) -> None:
    s, proof = sector
    assert len(rust_filecoin.groth16_proof(proof)) == 192  # one partition for 2 KiB
    assert verify(s, proof)


def test_flipped_proof_bytes_fail(sector: tuple[Sealed, bytes]) -> None:
    s, proof = sector
    # Every 8th byte of the Groth16 proof (A, B and C points), and the tag's version.
    for i in [4, *range(6, len(proof), 8), len(proof) - 1]:
        bad = bytearray(proof)
        bad[i] ^= 0x01
        assert not verify(s, bytes(bad)), f"proof with byte {i} flipped still verifies"
    assert not verify(s, proof[:-1])
    assert not verify(s, proof + b"\0")


def test_wrong_seed_or_comm_r_fails(sector: tuple[Sealed, bytes]) -> None:
    s, proof = sector
    assert not verify(s, proof, seed=bytes([0x23] * 32))
    wrong = bytearray(s.comm_r)
    wrong[0] ^= 0x01
    assert not verify(s, proof, comm_r=bytes(wrong))
    assert not rust_filecoin.verify_seal(SIZE, s.comm_r, s.comm_d, PROVER, s.number + 1, TICKET, SEED, proof)


def test_comm_d_and_comm_p_equal_the_emulated_backends(sector: tuple[Sealed, bytes], tmp_path: Path) -> None:
    s, _ = sector
    comm_p = rust_core.piece_commitment(s.data)
    assert s.pieces == [(2048, comm_p)]
    assert rust_core.unsealed_commitment(SIZE, s.pieces) == s.comm_d
    # The emulated backend's PC1/PC2 on the very same unsealed file.
    p1 = rust_core.seal_pre_commit_phase1(SIZE, tmp_path / "cache", s.unsealed, PROVER, s.number, TICKET, s.pieces)
    emulated_r, emulated_d = rust_core.seal_pre_commit_phase2(p1, tmp_path / "cache", tmp_path / "sealed")
    assert emulated_d == s.comm_d
    assert emulated_r != s.comm_r  # the emulation's commR is a SHA-256 construction


def test_unseal_returns_the_data(sector: tuple[Sealed, bytes], tmp_path: Path) -> None:
    s, _ = sector
    out = tmp_path / "out"
    assert rust_filecoin.unseal_range(SIZE, s.cache, s.sealed, out, PROVER, s.number, s.comm_d, TICKET, 0, 2032) == 2032
    assert out.read_bytes() == s.data
    # A range inside the sector.
    assert rust_filecoin.unseal_range(SIZE, s.cache, s.sealed, out, PROVER, s.number, s.comm_d, TICKET, 127, 254) == 254
    assert out.read_bytes() == s.data[127:381]
    with pytest.raises(ValueError, match="beyond"):
        rust_filecoin.unseal_range(SIZE, s.cache, s.sealed, out, PROVER, s.number, s.comm_d, TICKET, 1900, 254)


def test_window_post_over_two_sectors_then_a_corrupted_challenged_byte(
    sector: tuple[Sealed, bytes], tmp_path: Path
) -> None:
    a, _ = sector
    b = seal_to_pc2(tmp_path, 2)
    rust_filecoin.clear_cache(b.cache)
    proving = [(s.number, s.comm_r, s.sealed, s.cache) for s in (a, b)]
    public = [(s.number, s.comm_r) for s in (a, b)]
    proof = rust_filecoin.generate_window_post(SIZE, RANDOMNESS, PROVER, proving)
    assert rust_filecoin.blob_backend(proof) == "filecoin"
    assert rust_filecoin.verify_window_post(SIZE, RANDOMNESS, PROVER, public, proof)
    assert not rust_filecoin.verify_window_post(SIZE, bytes([0x34] * 32), PROVER, public, proof)
    assert not rust_filecoin.verify_window_post(SIZE, RANDOMNESS, PROVER, [public[0], (2, a.comm_r)], proof)
    bad = bytearray(proof)
    bad[20] ^= 0x01
    assert not rust_filecoin.verify_window_post(SIZE, RANDOMNESS, PROVER, public, bytes(bad))

    # Corrupt one byte of sector b's replica at a leaf this PoSt challenges.
    challenges = rust_filecoin.sector_challenges("window", SIZE, RANDOMNESS, PROVER, [b.number])
    leaf = challenges[b.number][0] % (SIZE // 32)
    replica = bytearray(b.sealed.read_bytes())
    replica[leaf * 32] ^= 0x01
    b.sealed.write_bytes(bytes(replica))
    with pytest.raises(OSError, match="(?i)faulty"):
        rust_filecoin.generate_window_post(SIZE, RANDOMNESS, PROVER, proving)
    # The fault check names sector b (and only b) with the same challenges.
    faults = rust_filecoin.check_provable(SIZE, PROVER, proving, RANDOMNESS)
    assert faults[a.number] is None
    assert faults[b.number] is not None and faults[b.number].startswith("corrupt:"), faults


def test_check_provable_reports_each_kind_of_fault(sector: tuple[Sealed, bytes], tmp_path: Path) -> None:
    s, _ = sector
    good = (s.number, s.comm_r, s.sealed, s.cache)
    assert rust_filecoin.check_provable(SIZE, PROVER, [good]) == {s.number: None}  # fresh randomness
    short = tmp_path / "short"
    short.write_bytes(s.sealed.read_bytes()[:1024])
    wrong_r = bytes([s.comm_r[0] ^ 1]) + s.comm_r[1:]
    faults = rust_filecoin.check_provable(
        SIZE,
        PROVER,
        [
            (5, s.comm_r, tmp_path / "missing", s.cache),
            (6, s.comm_r, short, s.cache),
            (7, s.comm_r, s.sealed, tmp_path / "no-cache"),
            (8, wrong_r, s.sealed, s.cache),
        ],
        RANDOMNESS,
    )
    assert faults[5] is not None and "No such file" in faults[5]
    assert faults[6] == f"sealed file {short}: got 1024 bytes, expect 2048"
    assert faults[7] is not None and "no-cache" in faults[7]
    assert faults[8] is not None and "does not hash to comm_r" in faults[8]
    # Randomness that is not a field element is the caller's error, not a sector's fault.
    with pytest.raises(ValueError, match="randomness"):
        rust_filecoin.check_provable(SIZE, PROVER, [good], bytes([0xFF] * 32))


def test_winning_post(sector: tuple[Sealed, bytes]) -> None:
    s, _ = sector
    picked = rust_filecoin.generate_winning_post_sector_challenge(SIZE, RANDOMNESS, PROVER, 1)
    assert picked == [0]
    proof = rust_filecoin.generate_winning_post(SIZE, RANDOMNESS, PROVER, [(s.number, s.comm_r, s.sealed, s.cache)])
    assert rust_filecoin.verify_winning_post(SIZE, RANDOMNESS, PROVER, [(s.number, s.comm_r)], proof)
    assert not rust_filecoin.verify_winning_post(SIZE, bytes(32), PROVER, [(s.number, s.comm_r)], proof)


def test_blobs_of_the_emulated_backend_are_refused(sector: tuple[Sealed, bytes], tmp_path: Path) -> None:
    s, proof = sector
    p1 = rust_core.seal_pre_commit_phase1(SIZE, tmp_path / "cache", s.unsealed, PROVER, s.number, TICKET, s.pieces)
    assert rust_filecoin.blob_backend(p1) == "emulated"
    with pytest.raises(rust_filecoin.BackendMismatch, match="emulated proofs backend"):
        rust_filecoin.seal_pre_commit_phase2(p1, tmp_path / "fc-cache", tmp_path / "fc-sealed")
    comm_r, comm_d = rust_core.seal_pre_commit_phase2(p1, tmp_path / "cache", tmp_path / "sealed")
    c1 = rust_core.seal_commit_phase1(
        SIZE, tmp_path / "cache", tmp_path / "sealed", PROVER, s.number, TICKET, SEED, s.pieces, comm_r, comm_d
    )
    with pytest.raises(rust_filecoin.BackendMismatch, match="C1"):
        rust_filecoin.seal_commit_phase2(c1, PROVER, s.number)
    emulated_proof = rust_core.seal_commit_phase2(c1, PROVER, s.number)
    with pytest.raises(rust_filecoin.BackendMismatch, match="seal proof"):
        rust_filecoin.verify_seal(SIZE, comm_r, comm_d, PROVER, s.number, TICKET, SEED, emulated_proof)
    # The emulated backend does not accept this backend's proof either (a malformed proof to it:
    # False; the services' start-up check is what names the mismatch, docs/filecoin-backend.md).
    assert not rust_core.verify_seal(SIZE, s.comm_r, s.comm_d, PROVER, s.number, TICKET, SEED, proof)


def test_bad_input_gets_clear_errors(configured: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported sector size 4096"):
        rust_filecoin.verify_seal(4096, bytes(32), bytes(32), PROVER, 1, TICKET, SEED, b"")
    with pytest.raises(ValueError, match="ticket must be 32 bytes"):
        rust_filecoin.seal_pre_commit_phase1(SIZE, tmp_path, tmp_path / "u", tmp_path / "s", PROVER, 1, b"x", [])
    with pytest.raises(ValueError, match="127"):
        rust_filecoin.add_piece(SIZE, tmp_path / "nope", tmp_path / "u", 2000)
    with pytest.raises(OSError, match="cannot open piece"):
        rust_filecoin.add_piece(SIZE, tmp_path / "nope", tmp_path / "u", 2032)
    with pytest.raises(ValueError, match="not a power of two"):
        rust_filecoin.seal_pre_commit_phase1(
            SIZE, tmp_path, tmp_path / "u", tmp_path / "s", PROVER, 1, TICKET, [(100, bytes(32))]
        )
    with pytest.raises(ValueError, match="circuit"):
        rust_filecoin.ensure_parameters(SIZE, "pc1")
    # Another parameter cache once the library has settled on one.
    with pytest.raises(ValueError, match="cannot switch"):
        rust_filecoin.configure(tmp_path / "other")


def test_missing_parameters_name_the_file_and_size(configured: Path) -> None:
    # 64 GiB: the network's files only, never generated, so never in the tests' cache.
    params, _vk = rust_filecoin.parameter_files(64 << 30, "seal")
    assert not Path(params).exists(), f"{params} is in the tests' parameter cache"
    with pytest.raises(rust_filecoin.MissingParameters) as err:
        rust_filecoin.ensure_parameters(64 << 30, "seal")
    message = str(err.value)
    assert params in message and "64 GiB" in message and "\n" not in message


def test_concurrent_verifications_agree(sector: tuple[Sealed, bytes]) -> None:
    """verify_seal from many threads at once (the GIL is released): each answer is its own."""
    s, proof = sector
    bad = bytearray(proof)
    bad[40] ^= 0x01
    cases = [(proof, SEED, True), (bytes(bad), SEED, False), (proof, bytes([0x23] * 32), False)] * 8
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda case: verify(s, case[0], seed=case[1]), cases))
    assert answers == [expected for _, _, expected in cases]


def test_post_made_from_vanilla_proofs(configured: Path, tmp_path: Path) -> None:
    """The split PoSt the fleet runs: each sector's vanilla proof where the sector is (a worker),
    the SNARK made from them elsewhere (the manager). It verifies like a PoSt made in one call;
    the library refuses to make a vanilla proof over a corrupted challenged leaf; an emulated
    vanilla proof is a BackendMismatch."""
    a, b = seal_to_pc2(tmp_path, 11), seal_to_pc2(tmp_path, 12)
    sectors = [(s.number, s.comm_r, s.sealed, s.cache) for s in (a, b)]
    public = [(s.number, s.comm_r) for s in (a, b)]
    vanilla = [rust_filecoin.generate_single_vanilla_proof("window", SIZE, RANDOMNESS, PROVER, s) for s in sectors]
    assert all(v[:4] == b"FCPV" and rust_filecoin.blob_backend(v) == "filecoin" for v in vanilla)
    proof = rust_filecoin.generate_post_with_vanilla("window", SIZE, RANDOMNESS, PROVER, vanilla)
    assert rust_filecoin.verify_window_post(SIZE, RANDOMNESS, PROVER, public, proof)
    assert not rust_filecoin.verify_window_post(SIZE, bytes([0x34] * 32), PROVER, public, proof)

    eligible = rust_filecoin.generate_winning_post_sector_challenge(SIZE, RANDOMNESS, PROVER, 2)
    chosen = [sectors[i] for i in eligible]
    won = rust_filecoin.generate_post_with_vanilla(
        "winning",
        SIZE,
        RANDOMNESS,
        PROVER,
        [rust_filecoin.generate_single_vanilla_proof("winning", SIZE, RANDOMNESS, PROVER, s) for s in chosen],
    )
    assert rust_filecoin.verify_winning_post(SIZE, RANDOMNESS, PROVER, [(s[0], s[1]) for s in chosen], won)

    emulated = b"SSPV" + bytes(40)
    with pytest.raises(rust_filecoin.BackendMismatch):
        rust_filecoin.generate_post_with_vanilla("window", SIZE, RANDOMNESS, PROVER, [vanilla[0], emulated])
    with pytest.raises(ValueError, match="no vanilla proofs"):
        rust_filecoin.generate_post_with_vanilla("window", SIZE, RANDOMNESS, PROVER, [])

    leaf = rust_filecoin.sector_challenges("window", SIZE, RANDOMNESS, PROVER, [b.number])[b.number][0]
    with open(b.sealed, "r+b") as f:
        f.seek(leaf * 32)
        byte = f.read(1)
        f.seek(leaf * 32)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(OSError, match="is invalid"):
        rust_filecoin.generate_single_vanilla_proof("window", SIZE, RANDOMNESS, PROVER, sectors[1])
    # The proof read before the damage still makes a valid PoSt (it carries its own leaves).
    again = rust_filecoin.generate_post_with_vanilla("window", SIZE, RANDOMNESS, PROVER, vanilla)
    assert rust_filecoin.verify_window_post(SIZE, RANDOMNESS, PROVER, public, again)


def _tree_r_last_on_disk(cache: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in cache.iterdir() if "tree-r-last" in p.name}


def _oct_cache_bytes(sector_size: int) -> int:
    """One 8-ary tree over the sector's 32-byte nodes, stored without its leaves (the sealed
    file) and the two rows above them (the library's default rows to discard; at most the one
    row between leaves and root for a 3-row tree): counted row by row, independently of the
    library's functions."""
    height = (sector_size // 32).bit_length() // 3
    kept = max(height - 1 - 2, 0)
    return sum(8**k for k in range(kept + 1)) * 32


def test_tree_r_last_files_are_what_pc2_writes(configured: Path, tmp_path: Path) -> None:
    """The listed tree-r-last files are exactly those a sealed 2 KiB cache holds, with their
    sizes, before and after clear_cache; a shorter one is a fault the library sees too."""
    listed = rust_filecoin.tree_r_last_files(SIZE)
    assert listed == [("sc-02-data-tree-r-last.dat", _oct_cache_bytes(SIZE))]
    s = seal_to_pc2(tmp_path, 21)
    assert _tree_r_last_on_disk(s.cache) == dict(listed)
    rust_filecoin.clear_cache(s.cache)
    assert _tree_r_last_on_disk(s.cache) == dict(listed)
    sector = (s.number, s.comm_r, s.sealed, s.cache)
    assert rust_filecoin.check_provable(SIZE, PROVER, [sector]) == {s.number: None}
    name, size = listed[0]
    with open(s.cache / name, "r+b") as f:
        f.truncate(size - 32)
    fault = rust_filecoin.check_provable(SIZE, PROVER, [sector])[s.number]
    assert fault is not None and "tree" in fault.lower(), fault


def test_tree_r_last_files_of_each_served_size(configured: Path) -> None:
    for size in (2048, 8 << 20, 512 << 20):
        assert rust_filecoin.tree_r_last_files(size) == [("sc-02-data-tree-r-last.dat", _oct_cache_bytes(size))]
    assert _oct_cache_bytes(8 << 20) == 18_720 and _oct_cache_bytes(512 << 20) == 1_198_368
    # The production sizes: 8 and 16 base trees of 9 586 976 bytes (Lotus' caches).
    assert rust_filecoin.tree_r_last_files(32 << 30) == [
        (f"sc-02-data-tree-r-last-{k}.dat", 9_586_976) for k in range(8)
    ]
    assert len(rust_filecoin.tree_r_last_files(64 << 30)) == 16
    assert rust_filecoin.supported_sector_sizes() == [2048, 8 << 20, 512 << 20, 32 << 30, 64 << 30]
    for bad in (0, 4096, 16 << 30):
        with pytest.raises(ValueError, match=f"unsupported sector size {bad}"):
            rust_filecoin.tree_r_last_files(bad)
