"""Typed interface of the rust_core extension (sectorstorage hot path)."""

__version__: str

# --- PoRep emulation and GPU dispatch (docs/porep-emulation.md) ---------------------------------
# Ids, tickets, seeds, randomness and commitments are 32-byte `bytes`; a wrong length is a
# ValueError. Paths are str or os.PathLike. Heavy calls release the GIL.

from os import PathLike
from typing import TypedDict

_Path = str | PathLike[str]

class SectorParams(TypedDict):
    sector_size: int
    nodes: int
    node_size: int
    layers: int
    porep_challenges: int
    porep_partitions: int
    window_post_challenges: int
    window_post_sector_count: int
    winning_post_challenges: int
    winning_post_sector_count: int
    tree_r_last_parts: int
    tree_r_rows_to_discard: int
    c2_witness_log2: int
    unpadded_size: int

class GpuDevice(TypedDict):
    ordinal: int
    name: str
    memory_bytes: int

def sector_params(sector_size: int) -> SectorParams:
    """The parameters-table row of a sector size; ValueError for an unsupported size."""

def supported_sector_sizes() -> list[int]:
    """2 KiB, 8 MiB, 512 MiB, 32 GiB, 64 GiB."""

def seal_pre_commit_phase1(
    sector_size: int,
    cache_dir: _Path,
    unsealed_path: _Path,
    prover_id: bytes,
    sector_number: int,
    ticket: bytes,
    pieces: list[tuple[int, bytes]],
) -> bytes:
    """PC1: tree_d, commD check against `pieces` (padded size, commP), labeling. Returns the phase-1 blob."""

def seal_pre_commit_phase2(
    phase1_output: bytes, cache_dir: _Path, sealed_path: _Path, backend: str = "auto"
) -> tuple[bytes, bytes]:
    """PC2: tree_c, encoding into the sealed file, tree_r_last. Returns (comm_r, comm_d)."""

def seal_commit_phase1(
    sector_size: int,
    cache_dir: _Path,
    sealed_path: _Path,
    prover_id: bytes,
    sector_number: int,
    ticket: bytes,
    seed: bytes,
    pieces: list[tuple[int, bytes]],
    comm_r: bytes,
    comm_d: bytes,
) -> bytes:
    """C1: the vanilla proofs of the seed's challenges (opaque versioned blob)."""

def seal_commit_phase2(
    phase1_output: bytes, prover_id: bytes, sector_number: int, backend: str = "auto"
) -> bytes:
    """C2: the final seal proof (GPU-eligible)."""

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
    """True when the proof checks; False for any invalid or malformed proof."""

def unseal_range(
    sector_size: int,
    cache_dir: _Path,
    sealed_path: _Path,
    unsealed_out: _Path,
    prover_id: bytes,
    sector_number: int,
    ticket: bytes,
    comm_d: bytes,
    offset: int,
    length: int,
) -> None:
    """Writes the fr32-padded data of unpadded bytes [offset, offset+length) (multiples of 127)
    at the padded offset of `unsealed_out`."""

def clear_cache(cache_dir: _Path, sector_size: int) -> None:
    """Removes layers, tree_d and tree_c; keeps p_aux and tree_r_last."""

_ProvingSector = tuple[int, bytes, _Path, _Path]  # (sector_number, comm_r, sealed_path, cache_dir)
_PublicSector = tuple[int, bytes]  # (sector_number, comm_r)

def generate_window_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_ProvingSector]
) -> bytes: ...
def verify_window_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_PublicSector], proof: bytes
) -> bool: ...
def generate_winning_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_ProvingSector]
) -> bytes: ...
def verify_winning_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_PublicSector], proof: bytes
) -> bool: ...
def generate_winning_post_sector_challenge(
    sector_size: int, randomness: bytes, prover_id: bytes, eligible_count: int
) -> list[int]:
    """Indices into the eligible sector list that the Winning PoSt must prove."""

def generate_single_vanilla_proof(
    sector_size: int,
    randomness: bytes,
    prover_id: bytes,
    sector: _ProvingSector,
    kind: str = "window",
) -> bytes: ...
def verify_single_vanilla_proof(
    sector_size: int,
    randomness: bytes,
    prover_id: bytes,
    sector: _PublicSector,
    proof: bytes,
    kind: str = "window",
) -> bool: ...
def check_provable(
    sector_size: int,
    prover_id: bytes,
    sectors: list[tuple[int, bytes | None, _Path, _Path]],
    randomness: bytes | None = None,
) -> dict[int, str | None]:
    """For each sector number: None when provable, else the fault reason."""

def gpu_devices() -> list[GpuDevice]:
    """CUDA devices visible to this process (empty without the `cuda` build feature or a GPU)."""

def gpu_backend(spec: str = "auto") -> str:
    """The backend `spec` ("auto", "cpu", "cuda", "cuda:N") selects: "cpu" or "cuda:N"."""
