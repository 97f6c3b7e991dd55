"""How `sectors seal` turns files into a sector's pieces: each file padded with zeros to the next
unpadded piece size (127*2^k bytes), placed at the next offset aligned to its padded size (as the
manager's AddPiece places it), with zero pieces filling alignment gaps and the sector's end, so
the padded sizes add up to the sector size as PreCommit1 requires."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from services.cli import render
from services.cli.sealing import CHUNK, PieceSource

MIN_PIECE = 127


class DoesNotFit(ValueError):
    pass


@dataclass(frozen=True)
class Slot:
    """One piece of the layout: a file (index into the files) or padding (file None)."""

    file: int | None
    padded: int

    @property
    def unpadded(self) -> int:
        return self.padded // 128 * 127


def piece_size_for(data_size: int) -> int:
    """The smallest unpadded piece size (127*2^k) holding data_size bytes."""
    size = MIN_PIECE
    while size < data_size:
        size *= 2
    return size


def _padding(start: int, end: int) -> list[Slot]:
    """Zero pieces covering [start, end) in padded bytes, each aligned to its own size (the
    lowest set bit of the offset, bounded by what is left)."""
    out = []
    while start < end:
        size = start & -start if start else end
        while start + size > end:
            size //= 2
        out.append(Slot(None, size))
        start += size
    return out


def layout(data_sizes: Sequence[int], sector_size: int) -> list[Slot]:
    """The pieces for files of these sizes, in order, filling a sector; DoesNotFit otherwise."""
    slots: list[Slot] = []
    offset = 0
    for i, n in enumerate(data_sizes):
        padded = piece_size_for(n) // 127 * 128
        start = -(-offset // padded) * padded
        slots += _padding(offset, start)
        offset = start + padded
        if offset > sector_size:
            need = sum(piece_size_for(m) // 127 * 128 for m in data_sizes)
            raise DoesNotFit(
                f"the files don't fit in a {render.size(sector_size)} sector: as pieces (each padded to 127*2^k bytes, "
                f"then fr32 to 2^k) they take {render.size(need)} or more (file {i + 1} alone, {n} bytes, becomes a "
                f"{render.size(padded)} piece); the most one sector holds is {sector_size // 128 * 127} bytes of data: "
                "use a larger --size or fewer files"
            )
        slots.append(Slot(i, padded))
    slots += _padding(offset, sector_size)
    return slots


def _file_chunks(path: Path, size: int) -> Iterator[bytes]:
    """The file's bytes, then zeros up to `size`."""
    sent = 0
    with path.open("rb") as f:
        while sent < size:
            data = f.read(min(CHUNK, size - sent))
            if not data:
                break
            sent += len(data)
            yield data
    while sent < size:
        n = min(CHUNK, size - sent)
        sent += n
        yield bytes(n)


def _zeros(size: int) -> Iterator[bytes]:
    for start in range(0, size, CHUNK):
        yield bytes(min(CHUNK, size - start))


def sources(files: Sequence[Path], sector_size: int) -> list[PieceSource]:
    sizes = [f.stat().st_size for f in files]
    out = []
    for slot in layout(sizes, sector_size):
        if slot.file is None:
            out.append(
                PieceSource(
                    f"AddPiece (padding {render.size(slot.padded)})", slot.unpadded, partial(_zeros, slot.unpadded)
                )
            )
        else:
            path = files[slot.file]
            out.append(
                PieceSource(
                    f"AddPiece {path.name}",
                    slot.unpadded,
                    partial(_file_chunks, path, slot.unpadded),
                    data_size=sizes[slot.file],
                )
            )
    return out
