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

/// Output streams the streaming pad interleaves (see [`pad`]).
const PAD_STREAMS: usize = 4;

#[inline(always)]
unsafe fn store_block(dst: *mut u8, nodes: &[__m256i; 4]) {
    for (k, n) in nodes.iter().enumerate() {
        _mm256_storeu_si256(dst.add(32 * k).cast(), *n);
    }
}

/// `a`'s high 16 bytes then `b`'s low 16.
#[inline(always)]
unsafe fn cat(a: __m256i, b: __m256i) -> __m256i {
    _mm256_permute2x128_si256::<0x21>(a, b)
}

/// A non-temporal 32-byte store; `p` is 32-byte aligned.
#[inline(always)]
unsafe fn nt(p: *mut u8, v: __m256i) {
    _mm256_stream_si256(p.cast(), v);
}

/// Writes the whole 64-byte lines from `16·D` bytes into a block (`prev`, output at `p`) to
/// `16·D` bytes into the next one (`next`, at `p + 128`), with non-temporal stores; `p + 16·D` is
/// 64-byte aligned. Each line is two 32-byte stores of one call, so a write-combining buffer
/// always fills at once; successive calls cover the output without gap.
#[inline(always)]
unsafe fn store_lines<const D: usize>(p: *mut u8, prev: &[__m256i; 4], next: &[__m256i; 4]) {
    let (c, n) = (prev, next);
    match D {
        0 => {
            nt(p, c[0]);
            nt(p.add(32), c[1]);
            nt(p.add(64), c[2]);
            nt(p.add(96), c[3]);
        }
        1 => {
            nt(p.add(16), cat(c[0], c[1]));
            nt(p.add(48), cat(c[1], c[2]));
            nt(p.add(80), cat(c[2], c[3]));
            nt(p.add(112), cat(c[3], n[0]));
        }
        2 => {
            nt(p.add(32), c[1]);
            nt(p.add(64), c[2]);
            nt(p.add(96), c[3]);
            nt(p.add(128), n[0]);
        }
        _ => {
            nt(p.add(48), cat(c[1], c[2]));
            nt(p.add(80), cat(c[2], c[3]));
            nt(p.add(112), cat(c[3], n[0]));
            nt(p.add(144), cat(n[0], n[1]));
        }
    }
}

/// The streaming pad of `PAD_STREAMS · per` blocks: stream `s` is blocks `[s·per, (s+1)·per)`,
/// and each step pads the next block of every stream. Each block's lines are written once the
/// next block of its stream is padded (a line straddles two blocks unless the output is 64-byte
/// aligned); a stream's first and last blocks are written with plain stores.
///
/// # Safety
/// AVX2; `src` holds `127·PAD_STREAMS·per` readable bytes, `dst` `128·PAD_STREAMS·per` writable
/// ones with `dst + 16·D` 64-byte aligned; `per ≥ 1`.
#[target_feature(enable = "avx2")]
unsafe fn pad_streams<const D: usize>(src: *const u8, dst: *mut u8, per: usize) {
    let mut prev = [[_mm256_setzero_si256(); 4]; PAD_STREAMS];
    for (s, p) in prev.iter_mut().enumerate() {
        let b = s * per;
        *p = pad4(src.add(127 * b));
        store_block(dst.add(128 * b), p);
    }
    for i in 1..per {
        for (s, p) in prev.iter_mut().enumerate() {
            // In bounds: block b reads [127b, 127b + 127); the lines written lie in blocks
            // b - 1 and b, i.e. [128(b - 1), 128b + 128).
            let b = s * per + i;
            let next = pad4(src.add(127 * b));
            store_lines::<D>(dst.add(128 * (b - 1)), p, &next);
            *p = next;
        }
    }
    for (s, p) in prev.iter().enumerate() {
        store_block(dst.add(128 * (s * per + per - 1)), p);
    }
}

/// Pads `blocks` whole blocks from `input` into `out`. `streaming` (for outputs far larger than
/// the caches) writes around the caches with non-temporal stores of whole 64-byte lines, and
/// pads [`PAD_STREAMS`] separate runs of the input at once, which keeps more memory reads in
/// flight than one sequential run (as glibc's large `memcpy` does with four pages): on one core
/// that raised the 256 MiB pad from ~0.7x to ~1x of `memcpy` (docs/benchmarks.md, issue 20).
/// Plain stores otherwise, or when `out` is not 16-byte aligned. The caller fences.
///
/// # Safety
/// The CPU has AVX2 (see [`available`]); `input` holds `127·blocks` bytes and `out`
/// `128·blocks` (checked by the caller).
#[target_feature(enable = "avx2")]
pub unsafe fn pad(input: &[u8], out: &mut [u8], streaming: bool) {
    let blocks = (input.len() / 127).min(out.len() / 128);
    let (src, dst) = (input.as_ptr(), out.as_mut_ptr());
    let mut done = 0;
    if streaming && dst as usize % 16 == 0 {
        let per = blocks / PAD_STREAMS;
        if per > 0 {
            // 16-byte units from the output's start to its first 64-byte boundary; every block
            // starts at the same offset within a line (128 is two lines).
            match (64 - dst as usize % 64) % 64 / 16 {
                0 => pad_streams::<0>(src, dst, per),
                1 => pad_streams::<1>(src, dst, per),
                2 => pad_streams::<2>(src, dst, per),
                _ => pad_streams::<3>(src, dst, per),
            }
            done = PAD_STREAMS * per;
        }
    }
    for b in done..blocks {
        // In bounds: block b reads [127b, 127b + 127) and writes [128b, 128b + 128).
        store_block(dst.add(128 * b), &pad4(src.add(127 * b)));
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
