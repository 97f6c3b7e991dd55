"""Typed interface of the rust_filecoin extension: the optional real Filecoin proofs backend.

Built by ``make develop-filecoin`` (not by the default build); see docs/filecoin-backend.md.
Thin bindings over filecoin-proofs-api 19.1 (CPU only) for 2 KiB, 8 MiB, 512 MiB, 32 GiB and 64 GiB sectors.

Sizes are bytes; commitments, ids, tickets, seeds and randomness are 32 raw bytes. A piece is
``(padded size, commP)`` as in rust_core. Every blob that travels between processes (PC1 and C1
outputs, seal and PoSt proofs) starts with this backend's tag (``FCP1``, ``FCC1``, ``FCPF``,
``FCPT``, then a u16 version); one made by the emulated backend (rust_core) raises
BackendMismatch. Invalid input raises ValueError; I/O and the proofs library's failures raise
OSError (a panic inside the library too). Every call releases the GIL.

Groth16 parameters: proving needs the circuit's ``.params`` file, verifying its ``.vk`` file, in
the parameter cache (``configure``). A missing file raises MissingParameters naming it, unless
``configure(generate_up_to=...)`` allows generating random parameters for that sector size:
real proofs, but NOT the network's trusted setup.
"""

import os

_Path = str | os.PathLike[str]
_Piece = tuple[int, bytes]
_ProvingSector = tuple[int, bytes, _Path, _Path]  # (sector_number, comm_r, sealed_path, cache_dir)
_PublicSector = tuple[int, bytes]  # (sector_number, comm_r)

BACKEND: str
PROOFS_API_VERSION: str

class BackendMismatch(ValueError):
    """A blob made by the other proofs backend (the fleet mixes backends)."""

class MissingParameters(OSError):
    """A Groth16 parameter or verifying-key file is missing and may not be generated here."""

def configure(
    parameter_cache: _Path | None = None, parent_cache: _Path | None = None, generate_up_to: int = 0
) -> str:
    """Sets FIL_PROOFS_PARAMETER_CACHE / FIL_PROOFS_PARENT_CACHE (created if missing) and the
    largest sector size whose parameters may be generated (0: never). The library reads its
    settings once per process: asking later for another parameter cache raises ValueError.
    Returns the parameter cache in use."""

def parameter_files(sector_size: int, circuit_name: str) -> tuple[str, str]:
    """(params path, verifying key path) of circuit ``"seal"``, ``"window"`` or ``"winning"``."""

def ensure_parameters(sector_size: int, circuit_name: str, proving: bool = True) -> float | None:
    """Makes sure the circuit's parameters (``proving``) or verifying key exist, generating them
    when allowed. Returns the seconds generation took, None when they were there."""

def supported_sector_sizes() -> list[int]:
    """2 KiB, 8 MiB, 512 MiB (the test sizes, whose parameters may be generated) and 32 GiB,
    64 GiB (the network's: its parameter files only)."""

def tree_r_last_files(sector_size: int) -> list[tuple[str, int]]:
    """(file name, size in bytes) of each tree-r-last file PC2 leaves in a sector's cache (and
    clear_cache keeps), by the library's own layout functions for the size's tree shape; one
    file at the sizes served here. ValueError for an unsupported size."""

def blob_backend(blob: bytes) -> str | None:
    """"filecoin" or "emulated" from a blob's tag; None for neither."""

def add_piece(sector_size: int, src: _Path, dst: _Path, piece_size: int, existing: list[int] = ...) -> tuple[int, bytes]:
    """Appends the fr32-padded piece file ``src`` (``piece_size`` = 127·2^k unpadded bytes) to the
    unsealed file ``dst`` after the alignment that the ``existing`` pieces (unpadded sizes) need.
    Returns (padded size, commP)."""

def seal_pre_commit_phase1(
    sector_size: int,
    cache_dir: _Path,
    unsealed_path: _Path,
    sealed_path: _Path,
    prover_id: bytes,
    sector_number: int,
    ticket: bytes,
    pieces: list[_Piece],
) -> bytes:
    """PC1: copies the unsealed file to ``sealed_path`` (created if missing) and labels it in
    ``cache_dir``. Returns the tagged phase-1 blob."""

def seal_pre_commit_phase2(phase1_output: bytes, cache_dir: _Path, sealed_path: _Path) -> tuple[bytes, bytes]:
    """PC2: tree_c, the replica, tree_r_last. Returns (comm_r, comm_d)."""

def seal_commit_phase1(
    sector_size: int,
    cache_dir: _Path,
    sealed_path: _Path,
    prover_id: bytes,
    sector_number: int,
    ticket: bytes,
    seed: bytes,
    pieces: list[_Piece],
    comm_r: bytes,
    comm_d: bytes,
) -> bytes:
    """C1: the vanilla proofs of the seed's challenges (tagged blob)."""

def seal_commit_phase2(phase1_output: bytes, prover_id: bytes, sector_number: int) -> bytes:
    """C2: the tagged Groth16 seal proof (192 bytes per partition inside)."""

def groth16_proof(proof: bytes) -> bytes:
    """The Groth16 proof bytes inside a tagged seal proof (what goes on chain)."""

def verify_seal(
    sector_size: int,
    comm_r: bytes,
    comm_d: bytes,
    prover_id: bytes,
    sector_number: int,
    ticket: bytes,
    seed: bytes,
    proof: bytes,
) -> bool:
    """True when the proof checks; False for an invalid or malformed one. BackendMismatch for an
    emulated proof, MissingParameters without the verifying key."""

def unseal_range(
    sector_size: int,
    cache_dir: _Path,
    sealed_path: _Path,
    out_path: _Path,
    prover_id: bytes,
    sector_number: int,
    comm_d: bytes,
    ticket: bytes,
    offset: int,
    length: int,
) -> int:
    """Writes the original (unpadded) bytes [offset, offset+length) into ``out_path`` (created or
    truncated); returns the bytes written. Costs a relabelling of the sector."""

def clear_cache(cache_dir: _Path) -> None:
    """Removes the sealing scratch files, keeping what PoSt needs (p_aux, tree_r_last)."""

def generate_window_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_ProvingSector]
) -> bytes:
    """Tagged Window PoSt proof; OSError naming the faulty sectors if a challenged leaf fails."""

def verify_window_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_PublicSector], proof: bytes
) -> bool: ...
def generate_winning_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_ProvingSector]
) -> bytes:
    """Tagged Winning PoSt proof over the sectors picked by generate_winning_post_sector_challenge."""

def verify_winning_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_PublicSector], proof: bytes
) -> bool: ...
def generate_winning_post_sector_challenge(
    sector_size: int, randomness: bytes, prover_id: bytes, eligible_count: int
) -> list[int]:
    """Indices into the eligible sector list that the Winning PoSt must prove."""

def sector_challenges(
    kind: str, sector_size: int, randomness: bytes, prover_id: bytes, sector_numbers: list[int]
) -> dict[int, list[int]]:
    """The leaf (node) indices each sector is challenged at by a ``"window"`` or ``"winning"`` PoSt."""

def generate_single_vanilla_proof(
    kind: str, sector_size: int, randomness: bytes, prover_id: bytes, sector: _ProvingSector
) -> bytes:
    """One sector's tagged (``FCPV``) vanilla proof for a ``"window"`` or ``"winning"`` PoSt of
    this randomness: what a worker holding the sector sends. OSError ("... is invalid") when a
    challenged leaf does not verify (a corrupted sector)."""

def generate_post_with_vanilla(
    kind: str, sector_size: int, randomness: bytes, prover_id: bytes, vanilla_proofs: list[bytes]
) -> bytes:
    """The tagged PoSt proof (as generate_window_post / generate_winning_post give) made of the
    sectors' vanilla proofs in ascending sector number. OSError ("partitioned vanilla proofs
    failed to verify") when one does not verify; BackendMismatch for an emulated one."""

def check_provable(
    sector_size: int, prover_id: bytes, sectors: list[_ProvingSector], randomness: bytes | None = None
) -> dict[int, str | None]:
    """For each sector number: None when a Window PoSt could prove it, else the fault (sealed file
    missing or of the wrong size, p_aux/tree_r_last unreadable, p_aux not hashing to comm_r,
    ``corrupt: ...`` when a challenged leaf does not verify). ``randomness`` None: fresh."""
