"""Go's math/rand source (``rand.New(rand.NewSource(seed))``, the Go 1 stream) for test inputs.

lotus' sealer tests read their piece data from seed 0x7e5 (``TestAddPiece512M``). The generator
is additive lagged Fibonacci over 64-bit words, ``s[n] = s[n-607] + s[n-273]``; seeding mixes a
Lehmer sequence with ``rngCooked``, the state 7.8e12 steps after the seed-1 state (Go's
``gen_cooked.go``). That table is recomputed here by polynomial jump-ahead (the recurrence is
linear: 7.8e12 steps are ``x^7.8e12 mod (x^607 - x^334 - 1)``), not copied; the published
2032-byte sample in the vectors directory checks all of it. Same construction as
``rust_core/tests/support/go_math_rand.rs``.

Speed: the stream is made 273 words at a time (the lag makes them independent), each batch one
big-integer addition with carries cut at word boundaries, so 512 MiB takes seconds, not minutes.
"""

from collections.abc import Iterator
from functools import lru_cache

_LEN, _TAP = 607, 273
_M64 = (1 << 64) - 1
_INT32_MAX = (1 << 31) - 1
_COOKED_STEPS = 7_800_000_000_000
_SLOT = 18  # bytes per coefficient when packing polynomials into one integer (≥ 138 bits)


def _seedrand(x: int) -> int:
    hi, lo = divmod(x, 44488)
    x = 48271 * lo - 3399 * hi
    return x + _INT32_MAX if x < 0 else x


def _seed_words(seed: int, shifts: tuple[int, int]) -> list[int]:
    seed %= _INT32_MAX
    if seed == 0:
        seed = 89482311
    x, words = seed, []
    for i in range(-20, _LEN):
        x = _seedrand(x)
        if i >= 0:
            u = x << shifts[0]
            x = _seedrand(x)
            u ^= x << shifts[1]
            x = _seedrand(x)
            words.append((u ^ x) & _M64)
    return words


def _mul_mod(a: list[int], b: list[int]) -> list[int]:
    """a·b mod (x^607 - x^334 - 1), coefficients mod 2^64, via one big-integer product."""
    pa = int.from_bytes(b"".join(c.to_bytes(_SLOT, "little") for c in a), "little")
    pb = pa if a is b else int.from_bytes(b"".join(c.to_bytes(_SLOT, "little") for c in b), "little")
    raw = (pa * pb).to_bytes(_SLOT * (2 * _LEN) + 8, "little")
    prod = [int.from_bytes(raw[_SLOT * i : _SLOT * i + 8], "little") for i in range(2 * _LEN - 1)]
    for d in range(2 * _LEN - 2, _LEN - 1, -1):  # x^d = x^(d-273) + x^(d-607)
        c = prod[d]
        prod[d - _TAP] = (prod[d - _TAP] + c) & _M64
        prod[d - _LEN] = (prod[d - _LEN] + c) & _M64
    return prod[:_LEN]


def _advance(ring: list[int], steps: int) -> list[int]:
    """The ring after ``steps`` steps; it holds s[j] at index (334 - j) mod 607."""
    start = [ring[(334 - (t - 606)) % _LEN] for t in range(_LEN)]
    power, base, n = [1] + [0] * (_LEN - 1), [0, 1] + [0] * (_LEN - 2), steps
    while n:
        if n & 1:
            power = _mul_mod(power, base)
        n >>= 1
        if n:
            base = _mul_mod(base, base)
    out = [0] * _LEN
    for i in range(_LEN):
        out[(334 - (steps - 606 + i)) % _LEN] = sum(c * s for c, s in zip(power, start)) & _M64
        top = power[-1]
        power = [top] + power[:-1]
        power[_LEN - _TAP] = (power[_LEN - _TAP] + top) & _M64
    return out


@lru_cache(maxsize=1)
def cooked() -> tuple[int, ...]:
    """Go's ``rngCooked`` table."""
    return tuple(_advance(_seed_words(1, (20, 10)), _COOKED_STEPS))


def stream(seed: int, length: int, chunk: int = 16 << 20) -> Iterator[bytes]:
    """The first ``length`` bytes of ``Rand.Read``, in pieces of about ``chunk`` bytes."""
    ring = [w ^ c for w, c in zip(_seed_words(seed, (40, 20)), cooked())]
    # Sequence form: s[-606..0] as little-endian words; each new word is s[n-607] + s[n-273].
    seq = bytearray(b"".join(ring[(334 - j) % _LEN].to_bytes(8, "little") for j in range(-606, 1)))
    high = int.from_bytes(b"\x00\x00\x00\x00\x00\x00\x00\x80" * _TAP, "little")
    low = ((1 << (64 * _TAP)) - 1) ^ high
    width = 8 * _TAP
    per_chunk = max(1, chunk // (7 * _TAP))
    produced = 0
    while produced < length:
        start = len(seq)
        for _ in range(per_chunk):
            end = len(seq)
            a = int.from_bytes(seq[end - 8 * _LEN : end - 8 * _LEN + width], "little")
            b = int.from_bytes(seq[end - width : end], "little")
            seq += (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(width, "little")
        words = seq[start:]
        out = bytearray(len(words) // 8 * 7)
        for j in range(7):  # Read takes the low 7 bytes of each Int63
            out[j::7] = words[j::8]
        take = min(len(out), length - produced)
        yield bytes(out[:take])
        produced += take
        del seq[: len(seq) - 8 * _LEN]
