//! AVX2 kernels of fr32 pad and unpad (selected at run time; `fr32` keeps the portable `u64`
//! lane code as fallback and as the reference of the tests).
//!
//! A 127-byte block is four 254-bit nodes; node `k` starts at bit `254·k` = byte `31·k` + bit
//! `s`, s = 0, 6, 4, 2. So each node is a 256-bit load at byte `31·k` shifted right by `s` bits:
//! per 64-bit lane `(v >> s) | (w << (8 - s))` with `w` the load one byte further (the bits `w`
//! adds are the same ones `v` has, plus the `s` bits `v`'s top lane lacks), top two bits masked.
//! Unpad is the inverse: output bytes `32k..32k+32` are the padded bytes there shifted right by
//! `2k` bits, except their top `2k + 2` bits, which come shifted by `2k + 2` (the next node starts
//! two pad bits later). About 25 vector instructions per block against ~60 scalar ones.
//!
//! Every load stays inside the block (the kernels never read past the input), except where said;
//! the unpad kernel writes 128 bytes per block (the last byte is the next block's first, written
//! again by the next block), so its caller gives it room or keeps the last block scalar.

use core::arch::x86_64::*;

/// Whether the CPU runs these kernels (std caches the answer).
#[inline]
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Lane mask keeping the 254 data bits of a node.
#[inline(always)]
unsafe fn node_mask() -> __m256i {
    _mm256_set_epi64x(0x3fff_ffff_ffff_ffff, -1, -1, -1)
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p.cast())
}

/// The four padded nodes of the 127-byte block at `src` (127 readable bytes; no byte after the
/// block is read).
#[inline(always)]
unsafe fn pad4(src: *const u8) -> [__m256i; 4] {
    let m = node_mask();
    let n0 = load(src);
    let (v1, w1) = (load(src.add(31)), load(src.add(32)));
    let (v2, w2) = (load(src.add(63)), load(src.add(64)));
    // Node 3 (s = 2): bytes 95..127, the next lane's low bits by a permute instead of a load at
    // byte 96 (which would read byte 127, past the block). Lane 3 needs no next lane: its bits
    // above 62 are masked.
    let v3 = load(src.add(95));
    let next3 = _mm256_permute4x64_epi64(v3, 0b11_11_10_01);
    [
        _mm256_and_si256(n0, m),
        _mm256_and_si256(
            _mm256_or_si256(_mm256_srli_epi64(v1, 6), _mm256_slli_epi64(w1, 2)),
            m,
        ),
        _mm256_and_si256(
            _mm256_or_si256(_mm256_srli_epi64(v2, 4), _mm256_slli_epi64(w2, 4)),
            m,
        ),
        _mm256_and_si256(
            _mm256_or_si256(_mm256_srli_epi64(v3, 2), _mm256_slli_epi64(next3, 62)),
            m,
        ),
    ]
}

/// Pads `blocks` whole blocks from `input` into `out`. `streaming` writes around the caches
/// (`MOVNTDQ`, 32- or 16-byte, as `out`'s alignment allows; plain stores otherwise); the caller
/// fences.
///
/// # Safety
/// The CPU has AVX2 (see [`available`]); `input` holds `127·blocks` bytes and `out`
/// `128·blocks` (checked by the caller).
#[target_feature(enable = "avx2")]
pub unsafe fn pad(input: &[u8], out: &mut [u8], streaming: bool) {
    let blocks = (input.len() / 127).min(out.len() / 128);
    let (src, dst) = (input.as_ptr(), out.as_mut_ptr());
    let align = dst as usize % 32;
    for b in 0..blocks {
        // In bounds: block b reads [127b, 127b + 127) and writes [128b, 128b + 128).
        let nodes = pad4(src.add(127 * b));
        let d = dst.add(128 * b);
        if streaming && align == 0 {
            for (k, n) in nodes.iter().enumerate() {
                _mm256_stream_si256(d.add(32 * k).cast(), *n);
            }
        } else if streaming && align == 16 {
            for (k, n) in nodes.iter().enumerate() {
                _mm_stream_si128(d.add(32 * k).cast(), _mm256_castsi256_si128(*n));
                _mm_stream_si128(d.add(32 * k + 16).cast(), _mm256_extracti128_si256(*n, 1));
            }
        } else {
            for (k, n) in nodes.iter().enumerate() {
                _mm256_storeu_si256(d.add(32 * k).cast(), *n);
            }
        }
    }
}

/// `(v >> s) | (w << (8 - s))` per lane: 256 bits starting `s` bits into `v`'s first byte, `w`
/// being the load one byte after `v`.
#[inline(always)]
unsafe fn shr_bits<const S: i32, const T: i32>(v: __m256i, w: __m256i) -> __m256i {
    _mm256_or_si256(_mm256_srli_epi64(v, S), _mm256_slli_epi64(w, T))
}

/// Unpads the 128-byte block at `src` into 128 bytes at `dst`: the 127 data bytes, then one byte
/// of no meaning (the caller overwrites it or has room for it). Returns the OR of the four
/// nodes' top lanes, whose top two bits are the pad bits.
#[inline(always)]
unsafe fn unpad4(src: *const u8, dst: *mut u8) -> __m256i {
    // Top 2k + 2 bits of region k: they come from node k + 1.
    let top = |bits: i64| _mm256_set_epi64x(!((1i64 << (64 - bits)) - 1), 0, 0, 0);
    let v0 = load(src);
    let w0 = load(src.add(1));
    let v1 = load(src.add(32));
    let w1 = load(src.add(33));
    let v2 = load(src.add(64));
    let w2 = load(src.add(65));
    let v3 = load(src.add(96));
    // Region 0: the node as is, its top 2 bits from byte 32 (w0's top lane shifted left by 6).
    let r0 = {
        let m = top(2);
        _mm256_or_si256(
            _mm256_andnot_si256(m, v0),
            _mm256_and_si256(m, _mm256_slli_epi64(w0, 6)),
        )
    };
    let r1 = {
        let m = top(4);
        _mm256_or_si256(
            _mm256_andnot_si256(m, shr_bits::<2, 6>(v1, w1)),
            _mm256_and_si256(m, shr_bits::<4, 4>(v1, w1)),
        )
    };
    let r2 = {
        let m = top(6);
        _mm256_or_si256(
            _mm256_andnot_si256(m, shr_bits::<4, 4>(v2, w2)),
            _mm256_and_si256(m, shr_bits::<6, 2>(v2, w2)),
        )
    };
    // Region 3 (31 bytes): shifted by 6; the next lane by a permute (no read past the block),
    // the top byte is the meaningless 128th.
    let next3 = _mm256_permute4x64_epi64(v3, 0b11_11_10_01);
    let r3 = _mm256_or_si256(_mm256_srli_epi64(v3, 6), _mm256_slli_epi64(next3, 58));
    _mm256_storeu_si256(dst.cast(), r0);
    _mm256_storeu_si256(dst.add(32).cast(), r1);
    _mm256_storeu_si256(dst.add(64).cast(), r2);
    _mm256_storeu_si256(dst.add(96).cast(), r3);
    _mm256_or_si256(_mm256_or_si256(v0, v1), _mm256_or_si256(v2, v3))
}

/// Bytes of input prefetched ahead by [`unpad`]: 512-2048 measured +5-8 % on 256 MiB (one
/// thread, Intel, docs/benchmarks.md); pad gained nothing from it.
const UNPAD_PREFETCH: usize = 1024;

/// Unpads `blocks` whole blocks, writing `127·blocks + 1` bytes at `out` (the last one of no
/// meaning). Returns the eight pad bits of all blocks ORed (zero for fr32 data).
///
/// # Safety
/// The CPU has AVX2; `input` holds `128·blocks` bytes and `out` at least `127·blocks + 1`.
#[target_feature(enable = "avx2")]
pub unsafe fn unpad(input: &[u8], out: &mut [u8]) -> u64 {
    let blocks = (input.len() / 128).min(out.len().saturating_sub(1) / 127);
    let (src, dst) = (input.as_ptr(), out.as_mut_ptr());
    let mut acc = _mm256_setzero_si256();
    for b in 0..blocks {
        // In bounds: reads [128b, 128b + 128), writes [127b, 127b + 128) ⊆ out.
        // A hint only (no access, any address): the input 8 blocks ahead.
        _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(128 * b + UNPAD_PREFETCH).cast());
        acc = _mm256_or_si256(acc, unpad4(src.add(128 * b), dst.add(127 * b)));
    }
    (_mm256_extract_epi64(acc, 3) as u64) >> 62
}
