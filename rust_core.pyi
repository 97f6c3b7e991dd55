"""Typed interface of the rust_core extension (sectorstorage hot path).

Sizes are bytes. A piece has an unpadded size (127·2^k, what the client sends) and a padded size
(128·2^k, what it occupies in a sector after fr32 padding). Commitments are 32 raw bytes.

``pad_to`` (where accepted): ``None`` means the data must already have the right length; ``True``
zero-extends to the smallest piece that holds the data; an int zero-extends to that piece size,
given either as a padded size (a power of two ≥ 128) or as an unpadded size (127·2^k).

Invalid input raises ValueError with a message naming the problem; I/O failures raise OSError.
Heavy functions release the GIL and use all cores; results do not depend on the thread count.

Every long call takes a keyword-only ``cancel`` (a CancelToken, default None). Once the token is
cancelled (from any thread) the call raises Cancelled within 100 ms, whatever the sector size,
having removed what it half-wrote (see each function). "Removed" means renamed at once to a
``.trash.`` name in the same directory and deleted by a background thread (``discard``), so the
call does not wait for the kernel to finish writing back files it has just written.
"""

import os
from typing import Callable, Protocol, Sequence, TypedDict, final

from typing_extensions import Buffer

__version__: str

_Bytes = bytes | bytearray
# Any C-contiguous buffer-protocol object (bytes, bytearray, memoryview, mmap, array, numpy…),
# read (or written, for a ``dst``) in place without a copy; the GIL is released meanwhile, so
# another thread must not write the same memory during the call.
_Buffer = Buffer
_Path = str | os.PathLike[str]
_PadTo = int | bool | None

class _Reader(Protocol):
    """Any binary source: ``read(n)`` returns at most n bytes, b"" (or None) at the end."""

    def read(self, n: int, /) -> bytes | bytearray | None: ...

class _Writer(Protocol):
    """Any binary sink: ``write(b)`` takes bytes (returning the count written, or None)."""

    def write(self, b: bytes, /) -> int | None: ...

class Cancelled(Exception):
    """A call was cancelled through its CancelToken; its half-written output was removed."""

@final
class CancelToken:
    """A cancellation flag for one or more calls: pass it as ``cancel=``, then ``cancel()``."""

    def __init__(self) -> None: ...
    def cancel(self) -> None:
        """Asks every call holding this token to stop; idempotent, never blocks."""

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called (a token stays cancelled)."""

TRASH_PREFIX: str
"""What the names of discarded files start with (``<dir>/.trash.<name>.<pid>.<seq>``)."""

def discard(path: _Path) -> bool:
    """Removes a file or directory tree without waiting: renamed to a TRASH_PREFIX name in its
    directory at once (the space stays in use until the background thread has deleted it), then
    deleted by a background thread. A path already named TRASH_PREFIX... is only queued. False
    when there was nothing at ``path``."""

def trash_pending() -> int:
    """Discarded entries the background thread has not deleted yet."""

def wait_trash(timeout_s: float) -> bool:
    """Waits until every discarded entry is deleted, at most ``timeout_s``; whether they all are."""

# fr32 padding: every 127 bytes become 128 (four 32-byte nodes, top two bits of each zero).

def fr32_pad(data: _Buffer, pad_to: _PadTo = None) -> bytes:
    """Pads ``data``: a multiple of 127 bytes unless ``pad_to`` zero-extends it."""

def fr32_pad_into(src: _Buffer, dst: _Buffer, pad_to: _PadTo = None) -> int:
    """Pads ``src`` into the start of writable ``dst`` without allocating; returns bytes written.

    ``dst`` (bytearray, writable memoryview, mmap, ...) needs at least the padded size; the rest
    of it is left as it was. A read-only or too small ``dst`` raises TypeError / ValueError, and
    so do ``src`` and ``dst`` sharing memory (no in-place fr32).
    """

def fr32_unpad(data: _Buffer, strict: bool = True) -> bytes:
    """Inverse of fr32_pad: ``data`` is a multiple of 128 bytes whose pad bits are all zero.

    Set pad bits raise ValueError; ``strict=False`` ignores them instead, as Lotus' Unpad does.
    """

def fr32_unpad_into(src: _Buffer, dst: _Buffer, strict: bool = True) -> int:
    """Unpads ``src`` into the start of writable ``dst``; returns the bytes written.

    As fr32_unpad (``strict``) and fr32_pad_into (``dst`` requirements).
    """

def fr32_pad_file(
    src: _Path,
    dst: _Path,
    pad_to: _PadTo = None,
    dst_offset: int | None = None,
    *,
    cancel: CancelToken | None = None,
) -> int:
    """Pads file ``src`` into ``dst``; returns the padded bytes written.

    ``dst_offset=None`` creates or truncates ``dst``; an offset (a multiple of 128) writes the
    padded bytes there and keeps the rest of ``dst`` (a piece inside an unsealed sector file).
    Cancelled or failed, a ``dst`` it created is removed (one written at an offset is kept).
    """

def fr32_pad_stream(
    reader: _Reader, writer: _Writer, pad_to: _PadTo = None, *, cancel: CancelToken | None = None
) -> int:
    """Pads everything ``reader.read()`` yields into ``writer.write()``; returns bytes written."""

def add_piece_file(
    src: _Path,
    dst: _Path,
    pad_to: _PadTo = None,
    dst_offset: int | None = None,
    *,
    cancel: CancelToken | None = None,
) -> tuple[int, bytes]:
    """AddPiece in one pass: fr32_pad_file plus the piece's commP from the same reads.

    Returns ``(padded bytes written, commP)``. ``src`` must be a whole piece (127·2^k bytes)
    unless ``pad_to`` zero-extends it; ``dst`` and ``dst_offset`` as for fr32_pad_file.
    """

def add_piece_stream(
    reader: _Reader, writer: _Writer, pad_to: _PadTo = None, *, cancel: CancelToken | None = None
) -> tuple[int, bytes]:
    """add_piece_file for file-like objects: ``(padded bytes written, commP)``."""

def fr32_unpad_range(
    path: _Path, offset: int, length: int, *, cancel: CancelToken | None = None
) -> bytes:
    """Unpadded bytes ``[offset, offset + length)`` of a padded file, reading only their blocks.

    Offsets are unpadded and need not be multiples of 127. A file too short for the range
    (truncated) or a block with non-zero pad bits raises ValueError.
    """

def fr32_unpad_file(
    src: _Path,
    dst: _Path,
    offset: int | None = None,
    length: int | None = None,
    *,
    cancel: CancelToken | None = None,
) -> int:
    """Writes unpadded bytes ``[offset, offset + length)`` of padded ``src`` into ``dst``.

    ``offset`` defaults to 0, ``length`` to the end of ``src``. Returns the bytes written.
    """

# Piece commitment (commP): Merkle root of the fr32-padded piece, SHA-256 trimmed to 254 bits.

def piece_commitment(data: _Buffer, pad_to: _PadTo = None) -> bytes:
    """commP of unpadded ``data`` (127·2^k bytes unless ``pad_to`` zero-extends it).

    ``data`` is read in place (any bytes-like object: bytearray, memoryview, mmap, ...).
    """

def piece_commitment_file(path: _Path, pad_to: _PadTo = None, *, cancel: CancelToken | None = None) -> bytes:
    """commP of a file's contents, with constant memory. Cancellable (checked every 16 MiB)."""

def piece_commitment_stream(reader: _Reader, pad_to: _PadTo = None) -> bytes:
    """commP of everything ``reader.read()`` yields, with constant memory."""

@final
class PieceHasher:
    """Incremental commP with constant memory: ``update`` in any slices, then ``finish``."""

    def __init__(self) -> None: ...
    def update(self, data: _Buffer) -> None:
        """Feeds more unpadded bytes (any bytes-like object, read in place)."""

    def finish(self, pad_to: _PadTo = None) -> bytes:
        """commP of the bytes fed so far; the hasher stays usable (more updates may follow)."""

    @property
    def payload_size(self) -> int:
        """Unpadded bytes fed so far."""

def zero_piece_commitment(padded_size: int) -> bytes:
    """Commitment of an all-zero piece of ``padded_size`` bytes (a power of two, 32 B … 2^63 B)."""

# Unsealed sector commitment (commD).

def unsealed_commitment(sector_size: int, pieces: Sequence[tuple[int, _Bytes]]) -> bytes:
    """commD of a sector from its pieces, ``(padded size, commP)`` in order.

    Each piece starts at a multiple of its own padded size; gaps and the tail are zero pieces.
    Sizes that are not powers of two ≥ 128, or pieces that do not fit in order, raise ValueError.
    """

# CIDs.

def piece_cid(commp: _Bytes) -> str:
    """Piece CID v1 (``baga6ea4seaq…``) of a commP; also the CID of a commD."""

def commp_from_cid(cid: str) -> bytes:
    """The commP inside a piece CID (v1, or v2 per FRC-0069)."""

def sealed_cid(commr: _Bytes) -> str:
    """Sealed-sector CID (``bagboea4b5abc…``) of a commR."""

def commr_from_cid(cid: str) -> bytes:
    """The commR inside a sealed-sector CID."""

def piece_cid_v2(commp: _Bytes, payload_size: int) -> str:
    """Piece CID v2 (FRC-0069, ``bafkzcib…``): commP plus tree height and padding."""

def piece_cid_v2_info(cid: str) -> tuple[bytes, int, int]:
    """``(commp, payload_size, padded_size)`` of a piece CID v2."""

# Piece sizes.

def unpadded_to_padded(size: int) -> int:
    """Padded size of an unpadded piece size (127·2^k → 128·2^k)."""

def padded_to_unpadded(size: int) -> int:
    """Unpadded size of a padded piece size (128·2^k → 127·2^k)."""

def padded_size_for_payload(payload_size: int) -> int:
    """Padded size of the smallest piece that holds ``payload_size`` bytes (at least 128)."""

# --- checksums (fetch transfers) --------------------------------------------------------------

def crc32c(data: _Buffer, seed: int = 0) -> int:
    """CRC32C (Castagnoli) of ``data``, read in place, continuing from ``seed``.

    ``crc32c(b, crc32c(a)) == crc32c(a + b)``: a stream is checksummed chunk by chunk. The SSE4.2
    ``crc32`` instruction where the CPU has it, a table elsewhere; the same values either way.
    """

def crc32c_file(path: _Path | int, offset: int, length: int, seed: int = 0) -> int:
    """CRC32C of ``length`` bytes of the file at ``path`` from ``offset``, continuing from ``seed``.

    ``path`` may also be an open file descriptor (read with pread, never closed by the call).
    Read in 1 MiB chunks with the GIL released. A file that ends before ``offset + length``
    raises OSError.
    """

# --- PoRep emulation and GPU dispatch (docs/porep-emulation.md) ---------------------------------
# Ids, tickets, seeds, randomness and commitments are 32-byte `bytes`; a wrong length is a
# ValueError. Paths are str or os.PathLike. Heavy calls release the GIL.

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
    *,
    cancel: CancelToken | None = None,
) -> bytes:
    """PC1: tree_d, commD check against `pieces` (padded size, commP), labeling. Returns the phase-1 blob.

    Cancelled or failed, it removes the tree_d and layer files it wrote."""

def seal_pre_commit_phase1_batch(
    sector_size: int,
    sectors: list[tuple[_Path, _Path, bytes, int, bytes, list[tuple[int, bytes]]]],
    *,
    cancel: CancelToken | None = None,
    lane_cancels: list[CancelToken] | None = None,
    on_lane_stopped: Callable[[int], object] | None = None,
) -> list[bytes | None]:
    """PC1 of 1 to 8 sectors of one size as one call, their labeling interleaved on one core.

    2-4 sectors: SHA-NI lanes; 8: the 8-lane AVX-512VL software kernel where the CPU has it;
    5-7 (and 8 without AVX-512VL): SHA-NI groups of up to 4. Memory: two layers per sector.

    Each entry of `sectors` is (cache_dir, unsealed_path, prover_id, sector_number, ticket,
    pieces), the single call's arguments; returns one phase-1 blob per entry, in order. Every
    file and blob equals what `seal_pre_commit_phase1` gives for that sector alone. A bad entry
    fails the whole call (ValueError or OSError starting "sectors[i] (sector number n)");
    cancelled or failed, it removes every file it wrote for every sector.

    `lane_cancels` (one token per sector) stops one sector without the others: within 100 ms
    the labeling is interrupted, that sector's files are removed and its memory freed, then
    `on_lane_stopped(i)` is called (once, from a thread of the call, holding the GIL; it must
    not block; an exception there is reported as unraisable) and the others resume at the layer
    they were labeling (a sector the running labeling does not work on, in a later SHA-NI
    group or done, is taken out without interrupting it).
    A stopped sector's entry in the result is None; the others' are as without the stop."""

def seal_pre_commit_phase2(
    phase1_output: bytes,
    cache_dir: _Path,
    sealed_path: _Path,
    backend: str = "auto",
    *,
    cancel: CancelToken | None = None,
) -> tuple[bytes, bytes]:
    """PC2: tree_c, encoding into the sealed file, tree_r_last. Returns (comm_r, comm_d).

    Cancelled or failed, it removes tree_c, tree_r_last, p_aux and the sealed file, and leaves
    PC1's tree_d and layers untouched (PC2 can run again)."""

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
    *,
    cancel: CancelToken | None = None,
) -> bytes:
    """C1: the vanilla proofs of the seed's challenges (opaque versioned blob)."""

def seal_commit_phase2(
    phase1_output: bytes,
    prover_id: bytes,
    sector_number: int,
    backend: str = "auto",
    *,
    cancel: CancelToken | None = None,
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
    *,
    cancel: CancelToken | None = None,
) -> None:
    """Writes the fr32-padded data of unpadded bytes [offset, offset+length) (multiples of 127)
    at the padded offset of `unsealed_out` (nothing is written before the key is complete, so a
    cancelled unseal leaves the file as it was)."""

def clear_cache(cache_dir: _Path, sector_size: int) -> None:
    """Removes layers, tree_d and tree_c; keeps p_aux and tree_r_last."""

_ProvingSector = tuple[int, bytes, _Path, _Path]  # (sector_number, comm_r, sealed_path, cache_dir)
_PublicSector = tuple[int, bytes]  # (sector_number, comm_r)

def generate_window_post(
    sector_size: int,
    randomness: bytes,
    prover_id: bytes,
    sectors: list[_ProvingSector],
    *,
    cancel: CancelToken | None = None,
) -> bytes: ...
def verify_window_post(
    sector_size: int, randomness: bytes, prover_id: bytes, sectors: list[_PublicSector], proof: bytes
) -> bool: ...
def generate_winning_post(
    sector_size: int,
    randomness: bytes,
    prover_id: bytes,
    sectors: list[_ProvingSector],
    *,
    cancel: CancelToken | None = None,
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
    *,
    cancel: CancelToken | None = None,
) -> bytes: ...
def verify_single_vanilla_proof(
    sector_size: int,
    randomness: bytes,
    prover_id: bytes,
    sector: _PublicSector,
    proof: bytes,
    kind: str = "window",
) -> bool: ...
def assemble_post(kind: str, sector_size: int, vanilla_proofs: list[bytes]) -> bytes:
    """The PoSt proof made of per-sector vanilla proofs (from generate_single_vanilla_proof, same
    kind, sector size and randomness), in order: their sections under one PoSt header. ValueError
    names the first proof whose header does not match; verify_*_post checks the rest."""

def check_provable(
    sector_size: int,
    prover_id: bytes,
    sectors: list[tuple[int, bytes | None, _Path, _Path]],
    randomness: bytes | None = None,
    *,
    cancel: CancelToken | None = None,
) -> dict[int, str | None]:
    """For each sector number: None when provable, else the fault reason (Cancelled when
    cancelled, not a reason per sector)."""

def gpu_devices() -> list[GpuDevice]:
    """CUDA devices visible to this process (empty without the `cuda` build feature or a GPU)."""

def gpu_backend(spec: str = "auto") -> str:
    """The backend `spec` ("auto", "cpu", "cuda", "cuda:N") selects: "cpu" or "cuda:N"."""
