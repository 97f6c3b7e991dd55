"""RLE+ (go-bitfield's run-length encoding), the format of a partial file's trailer.

Bits are packed LSB-first. Header: 2-bit version 00, then 1 bit = value of the first run. Each
run length: `1` -> 1; `01` + 4 bits -> 2..15; `00` + unsigned LEB128 varint (each byte as 8
bits) -> 16 and more. Runs alternate in value; a trailing run of zeros is omitted; trailing zero
bytes are trimmed, so the empty set encodes to zero bytes.

Sets are kept as sorted, disjoint, non-adjacent half-open runs [start, end) of set bits.
"""

from __future__ import annotations

Runs = list[tuple[int, int]]


class RlePlusError(ValueError):
    pass


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.bits = 0

    def put(self, value: int, width: int) -> None:
        for i in range(width):
            if self.bits % 8 == 0:
                self.out.append(0)
            if (value >> i) & 1:
                self.out[-1] |= 1 << (self.bits % 8)
            self.bits += 1


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.total = len(data) * 8

    def get(self, width: int) -> int:
        """Bits past the end read as zeros: the encoder trims trailing zero bytes, which may
        hold the high zero bits of the last run length."""
        value = 0
        for i in range(width):
            bit = self.pos + i
            if bit >= self.total:
                break
            value |= ((self.data[bit // 8] >> (bit % 8)) & 1) << i
        self.pos += width
        return value

    def rest_is_zero(self) -> bool:
        if self.pos >= self.total:
            return True
        first = self.pos // 8
        head = self.data[first] >> (self.pos % 8)
        return head == 0 and not any(self.data[first + 1 :])


def normalize(runs: Runs) -> Runs:
    """Sorted, merged runs without empty ones."""
    out: Runs = []
    for start, end in sorted(r for r in runs if r[1] > r[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def encode(runs: Runs) -> bytes:
    runs = normalize(runs)
    if not runs:
        return b""
    w = _BitWriter()
    w.put(0, 2)
    lengths: list[int] = []
    pos = 0
    first_value = 1 if runs[0][0] == 0 else 0
    for start, end in runs:
        if start > pos:
            lengths.append(start - pos)
        lengths.append(end - start)
        pos = end
    w.put(first_value, 1)
    for length in lengths:
        if length == 1:
            w.put(1, 1)
        elif length < 16:
            w.put(0b10, 2)
            w.put(length, 4)
        else:
            w.put(0, 2)
            while True:
                byte = length & 0x7F
                length >>= 7
                w.put(byte | (0x80 if length else 0), 8)
                if not length:
                    break
    out = bytes(w.out)
    return out.rstrip(b"\0")


def decode(data: bytes, max_bits: int | None = None) -> Runs:
    """Runs of a non-empty encoding; rejects other versions, trailing zero bytes (not minimal),
    and runs beyond max_bits."""
    if not data:
        return []
    if data[-1] == 0:
        raise RlePlusError("RLE+ data ends with a zero byte (not minimally encoded)")
    r = _BitReader(data)
    if r.get(2) != 0:
        raise RlePlusError("unknown RLE+ version")
    value = r.get(1)
    runs: Runs = []
    pos = 0
    while not r.rest_is_zero():
        if r.get(1) == 1:
            length = 1
        elif r.get(1) == 1:
            length = r.get(4)
            if length < 2:
                raise RlePlusError("RLE+ short run of length < 2")
        else:
            length = 0
            shift = 0
            while True:
                byte = r.get(8)
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
                if shift > 63:
                    raise RlePlusError("RLE+ varint too long")
            if length < 16:
                raise RlePlusError("RLE+ long run shorter than 16 (not minimal)")
        if value:
            runs.append((pos, pos + length))
        pos += length
        value ^= 1
        if max_bits is not None and pos > max_bits and value == 0:
            raise RlePlusError(f"RLE+ set reaches bit {pos}, beyond {max_bits}")
    return runs


def intersect_len(runs: Runs, start: int, end: int) -> int:
    total = 0
    for a, b in runs:
        lo, hi = max(a, start), min(b, end)
        if hi > lo:
            total += hi - lo
    return total


def subtract(runs: Runs, start: int, end: int) -> Runs:
    out: Runs = []
    for a, b in runs:
        if b <= start or a >= end:
            out.append((a, b))
            continue
        if a < start:
            out.append((a, start))
        if b > end:
            out.append((end, b))
    return out


def complement(runs: Runs, start: int, end: int) -> Runs:
    """The parts of [start, end) not covered by runs."""
    out: Runs = []
    pos = start
    for a, b in normalize(runs):
        if b <= pos:
            continue
        if a >= end:
            break
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < end:
        out.append((pos, end))
    return out
