"""Typed interface of the rust_core extension (sectorstorage hot path).

Sizes are bytes. A piece has an unpadded size (127·2^k, what the client sends) and a padded size
(128·2^k, what it occupies in a sector after fr32 padding). Commitments are 32 raw bytes.

``pad_to`` (where accepted): ``None`` means the data must already have the right length; ``True``
zero-extends to the smallest piece that holds the data; an int zero-extends to that piece size,
given either as a padded size (a power of two ≥ 128) or as an unpadded size (127·2^k).

Invalid input raises ValueError with a message naming the problem; I/O failures raise OSError.
Heavy functions release the GIL and use all cores; results do not depend on the thread count.
"""

import os
from typing import BinaryIO, Sequence

__version__: str

_Bytes = bytes | bytearray
_Path = str | os.PathLike[str]
_PadTo = int | bool | None

# fr32 padding: every 127 bytes become 128 (four 32-byte nodes, top two bits of each zero).

def fr32_pad(data: _Bytes, pad_to: _PadTo = None) -> bytes:
    """Pads ``data``: a multiple of 127 bytes unless ``pad_to`` zero-extends it."""

def fr32_unpad(data: _Bytes, strict: bool = True) -> bytes:
    """Inverse of fr32_pad: ``data`` is a multiple of 128 bytes whose pad bits are all zero.

    Set pad bits raise ValueError; ``strict=False`` ignores them instead, as Lotus' Unpad does.
    """

def fr32_pad_file(
    src: _Path, dst: _Path, pad_to: _PadTo = None, dst_offset: int | None = None
) -> int:
    """Pads file ``src`` into ``dst``; returns the padded bytes written.

    ``dst_offset=None`` creates or truncates ``dst``; an offset (a multiple of 128) writes the
    padded bytes there and keeps the rest of ``dst`` (a piece inside an unsealed sector file).
    """

def fr32_pad_stream(reader: BinaryIO, writer: BinaryIO, pad_to: _PadTo = None) -> int:
    """Pads everything ``reader.read()`` yields into ``writer.write()``; returns bytes written."""

def fr32_unpad_range(path: _Path, offset: int, length: int) -> bytes:
    """Unpadded bytes ``[offset, offset + length)`` of a padded file, reading only their blocks.

    Offsets are unpadded and need not be multiples of 127. A file too short for the range
    (truncated) or a block with non-zero pad bits raises ValueError.
    """

def fr32_unpad_file(
    src: _Path, dst: _Path, offset: int | None = None, length: int | None = None
) -> int:
    """Writes unpadded bytes ``[offset, offset + length)`` of padded ``src`` into ``dst``.

    ``offset`` defaults to 0, ``length`` to the end of ``src``. Returns the bytes written.
    """

# Piece commitment (commP): Merkle root of the fr32-padded piece, SHA-256 trimmed to 254 bits.

def piece_commitment(data: _Bytes, pad_to: _PadTo = None) -> bytes:
    """commP of unpadded ``data`` (127·2^k bytes unless ``pad_to`` zero-extends it)."""

def piece_commitment_file(path: _Path, pad_to: _PadTo = None) -> bytes:
    """commP of a file's contents, with constant memory."""

def piece_commitment_stream(reader: BinaryIO, pad_to: _PadTo = None) -> bytes:
    """commP of everything ``reader.read()`` yields, with constant memory."""

class PieceHasher:
    """Incremental commP with constant memory: ``update`` in any slices, then ``finish``."""

    def __init__(self) -> None: ...
    def update(self, data: _Bytes) -> None:
        """Feeds more unpadded bytes."""

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
