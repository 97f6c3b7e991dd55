//! The streaming fr32 unpad with AVX-512 (F, VL, VBMI2), selected at run time: no staging buffer,
//! every 32-byte output word is built in registers and written with a non-temporal store.
//!
//! 32 blocks (128 nodes, 4096 padded bytes) unpad to 4064 bytes = 127 whole 32-byte words: a
//! cycle. Output word `w` of a cycle (bits `256w..256w + 256` of its output) is node `w` without
//! its two pad bits followed by node `w + 1`, shifted right by `2w` bits. Per 64-bit lane `j` of
//! the word that is a funnel shift of two lanes of the pair (node `w`, node `w + 1`): the lanes
//! at `q`, `q + 1` and the count `c`, with `p = 64j + 2w` (plus 2 when the lane reaches past bit
//! 254, where node `w + 1` starts two pad bits later), `q = p / 64`, `c = p % 64`. The lane pair
//! comes from two `vpermi2q` (a two-table permute, one instruction on 8 lanes) and the shift is
//! one `vpshrdvq` (a variable two-register funnel shift, AVX512_VBMI2). The lane that straddles
//! the pad bits takes node `w`'s top lane shifted left by 2 (the pad bits fall out) as its low
//! half, with the count raised by 2, so the pad bits never need a mask: the low table has that
//! lane pre-shifted, the high table the node as loaded. Three vector instructions per word and
//! one shift per node; no staging buffer (the AVX2 kernel's staging copy is what held unpad at
//! ~0.7x of `memcpy`). Four runs of the input are unpadded in lockstep and each 64-byte output
//! line is written by two non-temporal stores together, as the streaming pad does: ~1.0x of
//! `memcpy` on 256 MiB, one thread (docs/benchmarks.md, issue 20, third round).
//!
//! The AVX-512 instructions are written with `asm!` on ordinary `ymm` operands (the crate's
//! MSRV, 1.80, predates their intrinsics and `const` asm operands), everything else is AVX2
//! intrinsics, as in the commP kernel (`hash::sha256_mb::vl`).
// The per-stream loops index several arrays (pointers, nodes, words) by the stream.
#![allow(clippy::needless_range_loop)]

use core::arch::asm;
use core::arch::x86_64::*;

/// Blocks in a cycle: their output is a whole number of 32-byte words.
pub const CYCLE_BLOCKS: usize = 32;
/// Output words in a cycle (4064 bytes).
const WORDS: usize = 127;

/// Whether the CPU runs this kernel (std caches the answers).
#[inline]
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vbmi2")
}

/// Per output word of a cycle: the lane indices of the low and high halves of the funnel shift
/// (`vpermi2q`: 0-3 node `w`, 4-7 node `w + 1`) and its counts.
#[repr(C, align(32))]
struct Plan([[[u64; 4]; 3]; WORDS]);

const fn plan() -> Plan {
    let mut t = [[[0u64; 4]; 3]; WORDS];
    let mut w = 0;
    while w < WORDS {
        let mut j = 0;
        while j < 4 {
            let mut p = 64 * j + 2 * w;
            // The lane reaches bit 254, where node w + 1 starts: its bits sit two further on
            // in the pair (past node w's pad bits).
            if p + 64 > 254 {
                p += 2;
            }
            t[w][0][j] = (p / 64) as u64;
            t[w][1][j] = (p / 64 + 1) as u64;
            t[w][2][j] = (p % 64) as u64;
            j += 1;
        }
        w += 1;
    }
    Plan(t)
}

static PLAN: Plan = plan();

/// `vpermi2q`: lane `idx[j] & 7` of the eight lanes of `t0` (0-3) and `t1` (4-7).
#[inline]
#[target_feature(enable = "avx,avx2")]
unsafe fn perm2(idx: __m256i, t0: __m256i, t1: __m256i) -> __m256i {
    let mut i = idx;
    asm!("vpermi2q {i}, {a}, {b}", i = inout(ymm_reg) i, a = in(ymm_reg) t0, b = in(ymm_reg) t1,
         options(pure, nomem, nostack, preserves_flags));
    i
}

/// `vpshrdvq`: per lane, `(lo >> c) | (hi << (64 - c))` (`lo` when `c` = 0).
#[inline]
#[target_feature(enable = "avx,avx2")]
unsafe fn shrdv(lo: __m256i, hi: __m256i, c: __m256i) -> __m256i {
    let mut d = lo;
    asm!("vpshrdvq {d}, {h}, {c}", d = inout(ymm_reg) d, h = in(ymm_reg) hi, c = in(ymm_reg) c,
         options(pure, nomem, nostack, preserves_flags));
    d
}

// `valignq`: the 32 bytes `8·k` bytes into `lo` then `hi` (immediates spliced as literals).
macro_rules! align_fns {
    ($($name:ident = $k:literal),*) => {
        $(
            #[inline]
            #[target_feature(enable = "avx,avx2")]
            unsafe fn $name(lo: __m256i, hi: __m256i) -> __m256i {
                let out: __m256i;
                asm!(concat!("valignq {o}, {h}, {l}, ", $k), o = lateout(ymm_reg) out,
                     h = in(ymm_reg) hi, l = in(ymm_reg) lo,
                     options(pure, nomem, nostack, preserves_flags));
                out
            }
        )*
    };
}
align_fns!(align1 = "1", align2 = "2", align3 = "3");

/// The 32 bytes written at the 32-byte boundary that lies `D` bytes before word `hi`: the last
/// `D` bytes of the previous word `lo`, then the first `32 - D` of `hi` (`hi` itself for 0).
#[inline(always)]
unsafe fn straddle<const D: usize>(lo: __m256i, hi: __m256i) -> __m256i {
    match D {
        0 => hi,
        8 => align3(lo, hi),
        16 => align2(lo, hi),
        _ => align1(lo, hi),
    }
}

/// Unpads `cycles` whole cycles from `src` to `dst`, `dst % 32 == D` (0, 8, 16 or 24); returns
/// the OR of all nodes (its top lane's top two bits are the pad bits).
///
/// # Safety
/// AVX2, AVX-512F/VL/VBMI2; `src` holds `4096·cycles` readable bytes, `dst` `4064·cycles`
/// writable ones; `cycles ≥ 1`.
#[target_feature(enable = "avx2")]
unsafe fn run<const D: usize>(src: *const u8, dst: *mut u8, cycles: usize) -> __m256i {
    let shift_top = _mm256_set_epi64x(2, 0, 0, 0);
    let mut acc = _mm256_setzero_si256();
    let mut prev = _mm256_setzero_si256();
    let mut out = dst;
    for c in 0..cycles {
        // In bounds: a cycle reads [4096c, 4096c + 4096).
        let base = src.add(4096 * c);
        let mut n = load(base);
        acc = _mm256_or_si256(acc, n);
        for (w, plan) in PLAN.0.iter().enumerate() {
            let m = load(base.add(32 * (w + 1)));
            acc = _mm256_or_si256(acc, m);
            let np = _mm256_sllv_epi64(n, shift_top);
            let lo = perm2(load(plan[0].as_ptr().cast()), np, m);
            let hi = perm2(load(plan[1].as_ptr().cast()), n, m);
            let word = shrdv(lo, hi, load(plan[2].as_ptr().cast()));
            // Output word g = 127c + w lies at [32g, 32g + 32) of the output.
            if D == 0 {
                _mm256_stream_si256(out.cast(), word);
            } else if c == 0 && w == 0 {
                _mm256_storeu_si256(out.cast(), word);
            } else {
                // In bounds: [32g - D, 32g - D + 32) with g ≥ 1, inside [0, 32g + 32).
                _mm256_stream_si256(out.sub(D).cast(), straddle::<D>(prev, word));
            }
            prev = word;
            out = out.add(32);
            n = m;
        }
    }
    if D != 0 {
        // The last word's final D bytes (the word again, with a plain store).
        _mm256_storeu_si256(out.sub(32).cast(), prev);
    }
    acc
}

/// Output streams the streaming unpad interleaves (as the streaming pad does, see `avx2`).
const STREAMS: usize = 4;

/// The input side of [`run_streams`]: `STREAMS` runs of `per` cycles read in lockstep.
struct Lockstep {
    srcs: [*const u8; STREAMS],
    /// Each run's current node (node `w` of its cycle at `off`), as loaded.
    n: [__m256i; STREAMS],
    /// The OR of all nodes read so far.
    acc: __m256i,
    /// Byte offset of the current cycle in each run, and the next word's index in it.
    off: usize,
    w: usize,
    per: usize,
}

impl Lockstep {
    /// # Safety
    /// AVX2; `src` holds `4096·STREAMS·per` readable bytes, `per ≥ 1`.
    #[inline(always)]
    unsafe fn new(src: *const u8, per: usize) -> Self {
        let srcs: [*const u8; STREAMS] = core::array::from_fn(|s| src.add(4096 * per * s));
        let n: [__m256i; STREAMS] = core::array::from_fn(|s| load(srcs[s]));
        Lockstep {
            srcs,
            n,
            acc: n
                .iter()
                .fold(_mm256_setzero_si256(), |a, &b| _mm256_or_si256(a, b)),
            off: 0,
            w: 0,
            per,
        }
    }

    /// The next output word of every run; at most `127·per` calls.
    ///
    /// # Safety
    /// AVX2, AVX-512F/VL/VBMI2.
    #[inline(always)]
    unsafe fn next(&mut self) -> [__m256i; STREAMS] {
        let shift_top = _mm256_set_epi64x(2, 0, 0, 0);
        // In bounds: w < WORDS (reset below when it reaches it).
        let plan = &*PLAN.0.as_ptr().add(self.w);
        let (ia, ib, cnt) = (
            load(plan[0].as_ptr().cast()),
            load(plan[1].as_ptr().cast()),
            load(plan[2].as_ptr().cast()),
        );
        let mut word = [_mm256_setzero_si256(); STREAMS];
        for s in 0..STREAMS {
            // In bounds: node w + 1 ≤ 127 of the cycle at `off` < 4096·per of run s.
            let m = load(self.srcs[s].add(self.off + 32 * (self.w + 1)));
            self.acc = _mm256_or_si256(self.acc, m);
            let n = self.n[s];
            let np = _mm256_sllv_epi64(n, shift_top);
            word[s] = shrdv(perm2(ia, np, m), perm2(ib, n, m), cnt);
            self.n[s] = m;
        }
        self.w += 1;
        if self.w == WORDS {
            self.w = 0;
            self.off += 4096;
            if self.off < 4096 * self.per {
                for s in 0..STREAMS {
                    self.n[s] = load(self.srcs[s].add(self.off));
                    self.acc = _mm256_or_si256(self.acc, self.n[s]);
                }
            }
        }
        word
    }
}

/// [`run`] over `STREAMS` runs of `per` cycles at once (`per` even, so every run starts at the
/// same offset within a 64-byte line), one word of each per step in lockstep, each line's two
/// 32-byte halves stored together. Returns the OR of all nodes.
///
/// # Safety
/// As [`run`], with `STREAMS·per` cycles; `per ≥ 2` and even.
#[target_feature(enable = "avx2")]
unsafe fn run_streams<const D: usize>(src: *const u8, dst: *mut u8, per: usize) -> __m256i {
    let outs: [*mut u8; STREAMS] = core::array::from_fn(|s| dst.add(4064 * per * s));
    let mut lock = Lockstep::new(src, per);
    let words = WORDS * per;
    // Word t of stream s lies at outs[s] + 32t; from t = 1 on it is stored (with the previous
    // word's last D bytes) at the 32-byte boundary outs[s] + 32t - D.
    let mut prev = lock.next();
    for s in 0..STREAMS {
        _mm256_storeu_si256(outs[s].cast(), prev[s]);
    }
    let at = |s: usize, t: usize| outs[s].add(32 * t - D);
    let mut t = 1;
    // Single steps until the store of word t starts a 64-byte line (the same t for every
    // stream: per is even, so the streams' outputs are 4064·per ≡ 0 mod 64 apart).
    while t < words && at(0, t) as usize % 64 != 0 {
        let word = lock.next();
        for s in 0..STREAMS {
            _mm256_stream_si256(at(s, t).cast(), straddle::<D>(prev[s], word[s]));
        }
        prev = word;
        t += 1;
    }
    while t + 1 < words {
        let a = lock.next();
        let b = lock.next();
        for s in 0..STREAMS {
            _mm256_stream_si256(at(s, t).cast(), straddle::<D>(prev[s], a[s]));
            _mm256_stream_si256(at(s, t + 1).cast(), straddle::<D>(a[s], b[s]));
        }
        prev = b;
        t += 2;
    }
    while t < words {
        let word = lock.next();
        for s in 0..STREAMS {
            _mm256_stream_si256(at(s, t).cast(), straddle::<D>(prev[s], word[s]));
        }
        prev = word;
        t += 1;
    }
    if D != 0 {
        for s in 0..STREAMS {
            _mm256_storeu_si256(outs[s].add(32 * (words - 1)).cast(), prev[s]);
        }
    }
    lock.acc
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p.cast())
}

/// [`run_streams`] over `STREAMS·per` cycles (none when `per` is 0), then [`run`] over `rest`.
#[inline(always)]
unsafe fn both<const D: usize>(
    src: *const u8,
    dst: *mut u8,
    per: usize,
    rest_src: *const u8,
    rest_dst: *mut u8,
    rest: usize,
) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    if per > 0 {
        acc = run_streams::<D>(src, dst, per);
    }
    if rest > 0 {
        acc = _mm256_or_si256(acc, run::<D>(rest_src, rest_dst, rest));
    }
    acc
}

/// Unpads the whole cycles (32 blocks) at the start of `input` into `out` with non-temporal
/// stores and returns the blocks done (a multiple of [`CYCLE_BLOCKS`], 0 when `out` is not at a
/// multiple of 8 bytes) and their pad bits ORed (zero for fr32 data). The caller does the rest
/// and fences.
///
/// # Safety
/// The CPU has what [`available`] checks; `out` holds at least `127/128` of `input`.
#[target_feature(enable = "avx2")]
pub unsafe fn unpad_streaming(input: &[u8], out: &mut [u8]) -> (usize, u64) {
    let cycles = (input.len() / 4096).min(out.len() / 4064);
    let (src, dst) = (input.as_ptr(), out.as_mut_ptr());
    if cycles == 0 {
        return (0, 0);
    }
    // STREAMS runs of an even number of cycles, the rest (fewer than 2·STREAMS) as one run.
    let per = cycles / STREAMS / 2 * 2;
    let (rest_src, rest_dst) = (src.add(4096 * STREAMS * per), dst.add(4064 * STREAMS * per));
    let rest = cycles - STREAMS * per;
    let acc = match dst as usize % 32 {
        0 => both::<0>(src, dst, per, rest_src, rest_dst, rest),
        8 => both::<8>(src, dst, per, rest_src, rest_dst, rest),
        16 => both::<16>(src, dst, per, rest_src, rest_dst, rest),
        24 => both::<24>(src, dst, per, rest_src, rest_dst, rest),
        _ => return (0, 0),
    };
    (
        cycles * CYCLE_BLOCKS,
        (_mm256_extract_epi64(acc, 3) as u64) >> 62,
    )
}
