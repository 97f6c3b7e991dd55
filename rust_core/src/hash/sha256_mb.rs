//! Multi-buffer SHA-256: several independent messages hashed at once on one core.
//!
//! SHA-NI's rounds instruction (`sha256rnds2`) has a latency of several cycles but issues about
//! once per cycle, and every round of one message depends on the previous one. A single message
//! therefore leaves the SHA unit idle most of the time; interleaving the rounds of `N`
//! independent messages (`N` = 2 to 4) fills it. Merkle tree levels are made of independent node
//! pairs, and PC1 labels of different sectors are independent, so both can use it.
//!
//! Two entry points:
//! - [`hash_nodes`]: the tree node hash (`hash::hash_block`) of many 64-byte messages. The second
//!   block of every such message is the constant padding block, whose message schedule plus round
//!   constants (`W + K`) are computed at compile time, so that block costs the 32 round
//!   instructions only. Where the CPU has AVX-512VL, batches of 8 messages go through a software
//!   kernel instead (one message per 32-bit lane, `vprord` and `vpternlogd`), which outruns the
//!   SHA unit (1.6x the single-stream limit against 1.2x; docs/benchmarks.md, issue 20).
//! - [`compress_lanes`]: `N` independent `compress256` calls of equal block counts (labeling).
//!
//! The SHA-NI kernels are selected at run time (`is_x86_feature_detected!("sha")`, plus the SSE
//! levels they use); everywhere else the portable path is the `sha2` crate one message at a
//! time, which is also the reference the tests compare against bit for bit.

use sha2::digest::generic_array::GenericArray;

use crate::hash::{trim_to_fr32, Node, PAD_BLOCK_64, SHA256_IV};

/// Messages interleaved by [`hash_nodes`]. SHA-NI has no VEX form, so its kernels can use only
/// xmm0-15: with 4 lanes the data block's schedule spills a few registers to the stack, which
/// costs less than the idle rounds it removes (docs/benchmarks.md has the 2/3/4-lane figures).
pub const NODE_LANES: usize = 4;

/// Whether the SHA-NI multi-buffer kernels run on this CPU (checked once by std, then cached).
#[inline]
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[i] = hash_block(msgs[i])`: the trimmed SHA-256 of each 64-byte message, 8 at a time
/// with the AVX-512VL software kernel when the CPU has it (faster than SHA-NI here: see
/// docs/benchmarks.md, issue 20), else `NODE_LANES` at a time with SHA-NI when the CPU has it. `msgs` is a byte slice of `64 · out.len()` bytes (two
/// children side by side per parent, as a tree level lies in memory). Panics never; a length
/// mismatch hashes `min(msgs.len() / 64, out.len())` messages (callers check lengths first).
#[inline]
pub fn hash_nodes(msgs: &[u8], out: &mut [Node]) {
    #[cfg(target_arch = "x86_64")]
    if out.len() >= vl::LANES && msgs.len() >= 64 * vl::LANES && vl_available() {
        hash_nodes_vl(msgs, out);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU has SHA-NI, SSE2, SSSE3 and SSE4.1 (checked just above), which is all
        // the target features of `shani::hash_nodes` require.
        unsafe { shani::hash_nodes::<NODE_LANES>(msgs, out) };
        return;
    }
    hash_nodes_portable(msgs, out);
}

/// [`hash_nodes`] with a given lane count (1 to 4) on the SHA-NI path, or the portable path when
/// the CPU lacks SHA-NI. For benchmarks and tests of the lane counts.
pub fn hash_nodes_lanes(lanes: usize, msgs: &[u8], out: &mut [Node]) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: as in `hash_nodes`: the features were checked just above.
        unsafe {
            match lanes {
                1 => shani::hash_nodes::<1>(msgs, out),
                2 => shani::hash_nodes::<2>(msgs, out),
                3 => shani::hash_nodes::<3>(msgs, out),
                _ => shani::hash_nodes::<4>(msgs, out),
            }
        }
        return;
    }
    let _ = lanes;
    hash_nodes_portable(msgs, out);
}

/// Whether the 8-lane AVX-512VL software kernel runs on this CPU (AVX2, AVX-512F, AVX-512VL).
#[inline]
pub fn vl_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`hash_nodes`] through the 8-lane AVX-512VL software kernel, whole batches of 8, the rest
/// through the SHA-NI kernel (or the portable path); the SHA-NI kernel alone where the CPU lacks
/// AVX-512VL. For benchmarks and tests.
pub fn hash_nodes_vl(msgs: &[u8], out: &mut [Node]) {
    let count = (msgs.len() / 64).min(out.len());
    #[cfg(target_arch = "x86_64")]
    let done = if vl_available() {
        // SAFETY: AVX2, AVX-512F and AVX-512VL were checked just above.
        unsafe { vl::hash_nodes(msgs, out) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let done = 0;
    hash_nodes_lanes(
        NODE_LANES,
        &msgs[64 * done..64 * count],
        &mut out[done..count],
    );
}

/// The portable path of [`hash_nodes`]: one message after another through `sha2` (which itself
/// uses single-stream SHA-NI when available). The reference of the bit-exactness tests.
pub fn hash_nodes_portable(msgs: &[u8], out: &mut [Node]) {
    let pad = GenericArray::from(PAD_BLOCK_64);
    for (msg, node) in msgs.chunks_exact(64).zip(out.iter_mut()) {
        let mut state = SHA256_IV;
        sha2::compress256(&mut state, &[*GenericArray::from_slice(msg), pad]);
        *node = digest_bytes(&state);
        trim_to_fr32(node);
    }
}

/// `N` independent SHA-256 compressions: `states[l]` absorbs `blocks[l]`, all of the same number
/// of 64-byte blocks (lanes with fewer blocks than the first are hashed one by one, so the
/// result is always that of `sha2::compress256` per lane). SHA-NI, interleaved, when available.
pub fn compress_lanes<const N: usize>(states: &mut [[u32; 8]; N], blocks: [&[[u8; 64]]; N]) {
    let count = blocks.first().map_or(0, |b| b.len());
    #[cfg(target_arch = "x86_64")]
    if available() && blocks.iter().all(|b| b.len() == count) {
        // SAFETY: the CPU features were checked just above; every lane has `count` blocks.
        unsafe { shani::compress_lanes::<N>(states, blocks, count) };
        return;
    }
    let _ = count;
    compress_lanes_portable(states, blocks);
}

/// The portable path of [`compress_lanes`]: `sha2::compress256` lane by lane.
pub fn compress_lanes_portable<const N: usize>(
    states: &mut [[u32; 8]; N],
    blocks: [&[[u8; 64]]; N],
) {
    for (state, lane) in states.iter_mut().zip(blocks) {
        for block in lane {
            sha2::compress256(state, &[GenericArray::from(*block)]);
        }
    }
}

/// [`compress_lanes`] with each lane's `B` blocks given by reference, so a message whose blocks
/// repeat (a PoRep label's parent slots) is hashed without copying them into place.
pub fn compress_lanes_refs<const N: usize, const B: usize>(
    states: &mut [[u32; 8]; N],
    blocks: &[[&[u8; 64]; B]; N],
) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the CPU features were checked just above.
        unsafe { shani::compress_lanes_refs::<N, B>(states, blocks) };
        return;
    }
    for (state, lane) in states.iter_mut().zip(blocks) {
        for block in lane {
            sha2::compress256(state, &[GenericArray::from(**block)]);
        }
    }
}

/// Big-endian bytes of a SHA-256 state: the digest.
#[inline]
pub fn digest_bytes(state: &[u32; 8]) -> Node {
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// SHA-256 round constants (FIPS 180-4 §4.2.2).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// `W[t] + K[t]` of the constant padding block of a 64-byte message, for t = 0..64, then two
/// zeros so that an unaligned 16-byte load at `t = 62` stays inside the table.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const PAD_WK: [u32; 66] = {
    let mut w = [0u32; 64];
    let mut t = 0;
    while t < 16 {
        let b = 4 * t;
        w[t] = u32::from_be_bytes([
            PAD_BLOCK_64[b],
            PAD_BLOCK_64[b + 1],
            PAD_BLOCK_64[b + 2],
            PAD_BLOCK_64[b + 3],
        ]);
        t += 1;
    }
    while t < 64 {
        let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
        let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16]
            .wrapping_add(s0)
            .wrapping_add(w[t - 7])
            .wrapping_add(s1);
        t += 1;
    }
    let mut wk = [0u32; 66];
    let mut t = 0;
    while t < 64 {
        wk[t] = w[t].wrapping_add(K[t]);
        t += 1;
    }
    wk
};

#[cfg(target_arch = "x86_64")]
mod shani {
    //! The SHA-NI kernels. Every function here is `unsafe` only because it needs the CPU
    //! features named in its `target_feature`; the callers check them with `available()`.
    //! Memory is only touched through references and in-bounds unaligned loads/stores.
    // Lane loops index several per-lane arrays in lockstep (and must unroll to registers).
    #![allow(clippy::needless_range_loop)]

    use core::arch::x86_64::*;

    use super::{K, PAD_WK};
    use crate::hash::{Node, SHA256_IV};

    /// Byte order of a big-endian word in each 32-bit lane.
    #[inline(always)]
    unsafe fn bswap_mask() -> __m128i {
        _mm_set_epi64x(
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
        )
    }

    /// One message-schedule step: `W[t..t+4]` from the previous 16 words.
    #[inline(always)]
    unsafe fn schedule(v0: __m128i, v1: __m128i, v2: __m128i, v3: __m128i) -> __m128i {
        let t1 = _mm_sha256msg1_epu32(v0, v1);
        let t2 = _mm_alignr_epi8(v3, v2, 4);
        _mm_sha256msg2_epu32(_mm_add_epi32(t1, t2), v3)
    }

    /// Loads `K[4g..4g+4]` (unaligned load of a constant table, in bounds for g < 16).
    #[inline(always)]
    unsafe fn k4(g: usize) -> __m128i {
        _mm_loadu_si128(K.as_ptr().add(4 * g).cast())
    }

    /// Four rounds of every lane: `wk[l]` holds `W + K` of the four rounds of lane `l`.
    #[inline(always)]
    unsafe fn rounds4<const N: usize>(
        abef: &mut [__m128i; N],
        cdgh: &mut [__m128i; N],
        wk: &[__m128i; N],
    ) {
        for l in 0..N {
            cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], wk[l]);
        }
        for l in 0..N {
            abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32(wk[l], 0x0E));
        }
    }

    /// One 64-byte block of every lane, message schedule included: the rounds of the `N` lanes
    /// are interleaved group by group, so `N` independent dependency chains are in flight.
    #[inline(always)]
    unsafe fn block<const N: usize>(
        abef: &mut [__m128i; N],
        cdgh: &mut [__m128i; N],
        data: [*const u8; N],
    ) {
        let mask = bswap_mask();
        let (abef0, cdgh0) = (*abef, *cdgh);
        let mut w = [[_mm_setzero_si128(); 4]; N];
        for (l, lane) in w.iter_mut().enumerate() {
            for (j, word) in lane.iter_mut().enumerate() {
                *word = _mm_shuffle_epi8(_mm_loadu_si128(data[l].add(16 * j).cast()), mask);
            }
        }
        macro_rules! group {
            ($g:expr, $new:expr, $a:expr, $b:expr, $c:expr) => {{
                let k = k4($g);
                let mut wk = [_mm_setzero_si128(); N];
                for l in 0..N {
                    if $g >= 4 {
                        w[l][$new] = schedule(w[l][$new], w[l][$a], w[l][$b], w[l][$c]);
                    }
                    wk[l] = _mm_add_epi32(w[l][$new], k);
                }
                rounds4(abef, cdgh, &wk);
            }};
        }
        // Group g uses W[4g..4g+4] in ring slot g % 4; for g ≥ 4 it replaces W[4g-16..] there.
        group!(0, 0, 1, 2, 3);
        group!(1, 1, 2, 3, 0);
        group!(2, 2, 3, 0, 1);
        group!(3, 3, 0, 1, 2);
        group!(4, 0, 1, 2, 3);
        group!(5, 1, 2, 3, 0);
        group!(6, 2, 3, 0, 1);
        group!(7, 3, 0, 1, 2);
        group!(8, 0, 1, 2, 3);
        group!(9, 1, 2, 3, 0);
        group!(10, 2, 3, 0, 1);
        group!(11, 3, 0, 1, 2);
        group!(12, 0, 1, 2, 3);
        group!(13, 1, 2, 3, 0);
        group!(14, 2, 3, 0, 1);
        group!(15, 3, 0, 1, 2);
        for l in 0..N {
            abef[l] = _mm_add_epi32(abef[l], abef0[l]);
            cdgh[l] = _mm_add_epi32(cdgh[l], cdgh0[l]);
        }
    }

    /// The constant padding block of a 64-byte message in every lane: only the rounds, with the
    /// precomputed `W + K` (the same for all lanes).
    #[inline(always)]
    unsafe fn pad_block<const N: usize>(abef: &mut [__m128i; N], cdgh: &mut [__m128i; N]) {
        let (abef0, cdgh0) = (*abef, *cdgh);
        let wk = PAD_WK.as_ptr();
        for g in 0..16 {
            let lo = _mm_loadu_si128(wk.add(4 * g).cast());
            let hi = _mm_loadu_si128(wk.add(4 * g + 2).cast());
            for l in 0..N {
                cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], lo);
            }
            for l in 0..N {
                abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], hi);
            }
        }
        for l in 0..N {
            abef[l] = _mm_add_epi32(abef[l], abef0[l]);
            cdgh[l] = _mm_add_epi32(cdgh[l], cdgh0[l]);
        }
    }

    /// `(ABEF, CDGH)`, the register layout of SHA-NI, from a state `[a, b, …, h]`.
    #[inline(always)]
    unsafe fn to_abef(state: &[u32; 8]) -> (__m128i, __m128i) {
        let dcba = _mm_loadu_si128(state.as_ptr().cast());
        let hgfe = _mm_loadu_si128(state.as_ptr().add(4).cast());
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        (
            _mm_alignr_epi8(cdab, efgh, 8),
            _mm_blend_epi16(efgh, cdab, 0xF0),
        )
    }

    /// Back from `(ABEF, CDGH)` to the two halves `[a, b, c, d]`, `[e, f, g, h]` (as vectors).
    #[inline(always)]
    unsafe fn from_abef(abef: __m128i, cdgh: __m128i) -> (__m128i, __m128i) {
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        (
            _mm_blend_epi16(feba, dchg, 0xF0),
            _mm_alignr_epi8(dchg, feba, 8),
        )
    }

    /// Node hashes of `N` messages at `msgs` (each 64 readable bytes).
    #[inline(always)]
    unsafe fn nodes<const N: usize>(msgs: [*const u8; N]) -> [[__m128i; 2]; N] {
        let (iv_abef, iv_cdgh) = to_abef(&SHA256_IV);
        let mut abef = [iv_abef; N];
        let mut cdgh = [iv_cdgh; N];
        block(&mut abef, &mut cdgh, msgs);
        pad_block(&mut abef, &mut cdgh);
        let mask = bswap_mask();
        // Clears the top two bits of byte 31 (byte 15 of the second half).
        let trim = _mm_set_epi64x(0x3fff_ffff_ffff_ffffu64 as i64, -1);
        let mut out = [[_mm_setzero_si128(); 2]; N];
        for l in 0..N {
            let (abcd, efgh) = from_abef(abef[l], cdgh[l]);
            out[l] = [
                _mm_shuffle_epi8(abcd, mask),
                _mm_and_si128(_mm_shuffle_epi8(efgh, mask), trim),
            ];
        }
        out
    }

    #[inline(always)]
    unsafe fn store(node: &mut Node, halves: [__m128i; 2]) {
        let p = node.as_mut_ptr();
        _mm_storeu_si128(p.cast(), halves[0]);
        _mm_storeu_si128(p.add(16).cast(), halves[1]);
    }

    /// `out[i] = hash_block(msgs[64i..64i+64])`, `N` messages interleaved, the rest one by one.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn hash_nodes<const N: usize>(msgs: &[u8], out: &mut [Node]) {
        let count = (msgs.len() / 64).min(out.len());
        let base = msgs.as_ptr();
        let mut i = 0;
        while i + N <= count {
            // In bounds: message i + l < count ends at 64·count ≤ msgs.len().
            let ptrs: [*const u8; N] = core::array::from_fn(|l| base.add(64 * (i + l)));
            let hashed = nodes::<N>(ptrs);
            for (node, halves) in out[i..i + N].iter_mut().zip(hashed) {
                store(node, halves);
            }
            i += N;
        }
        while i < count {
            let [halves] = nodes::<1>([base.add(64 * i)]);
            store(&mut out[i], halves);
            i += 1;
        }
    }

    /// `N` lanes of `count` blocks each, interleaved; `states` updated in place.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress_lanes<const N: usize>(
        states: &mut [[u32; 8]; N],
        blocks: [&[[u8; 64]]; N],
        count: usize,
    ) {
        let mut abef = [_mm_setzero_si128(); N];
        let mut cdgh = [_mm_setzero_si128(); N];
        for l in 0..N {
            (abef[l], cdgh[l]) = to_abef(&states[l]);
        }
        for b in 0..count {
            // In bounds: every lane has `count` blocks (checked by the caller).
            let ptrs: [*const u8; N] = core::array::from_fn(|l| blocks[l][b].as_ptr());
            block(&mut abef, &mut cdgh, ptrs);
        }
        for l in 0..N {
            let (abcd, efgh) = from_abef(abef[l], cdgh[l]);
            let p = states[l].as_mut_ptr();
            _mm_storeu_si128(p.cast(), abcd);
            _mm_storeu_si128(p.add(4).cast(), efgh);
        }
    }

    /// [`super::compress_lanes_refs`] on SHA-NI.
    ///
    /// # Safety
    /// The CPU has SHA-NI and SSE4.1 (see [`super::available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress_lanes_refs<const N: usize, const B: usize>(
        states: &mut [[u32; 8]; N],
        blocks: &[[&[u8; 64]; B]; N],
    ) {
        let mut abef = [_mm_setzero_si128(); N];
        let mut cdgh = [_mm_setzero_si128(); N];
        for l in 0..N {
            (abef[l], cdgh[l]) = to_abef(&states[l]);
        }
        for b in 0..B {
            let ptrs: [*const u8; N] = core::array::from_fn(|l| blocks[l][b].as_ptr());
            block(&mut abef, &mut cdgh, ptrs);
        }
        for l in 0..N {
            let (abcd, efgh) = from_abef(abef[l], cdgh[l]);
            let p = states[l].as_mut_ptr();
            _mm_storeu_si128(p.cast(), abcd);
            _mm_storeu_si128(p.add(4).cast(), efgh);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod vl {
    //! Software SHA-256 of 8 messages at once, one per 32-bit lane of a 256-bit register, with
    //! two AVX-512VL instructions: `vprord` (a rotation in one instruction, AVX2 needs three)
    //! and `vpternlogd` (any function of three inputs: `Ch`, `Maj`, a three-way `xor`). About
    //! 16 vector instructions a round for 8 messages, against 34 with plain AVX2; on this CPU
    //! it outruns the SHA-NI unit (docs/benchmarks.md, issue 20, third round).
    //!
    //! The two instructions are written with `asm!` (the crate's MSRV, 1.80, predates the
    //! AVX-512 intrinsics); their operands are ordinary `ymm` registers (ymm0-15, which EVEX
    //! encodes like VEX), so everything else is AVX2 intrinsics. Callers check
    //! [`super::vl_available`] (AVX2, AVX-512F and AVX-512VL) first. No SHA-NI instruction
    //! runs in this kernel: SHA-NI is legacy SSE only, and on this CPU legacy SSE next to dirty
    //! 256-bit registers is 25-100x slower (see the docs).
    #![allow(clippy::needless_range_loop)]

    use core::arch::asm;
    use core::arch::x86_64::*;

    use super::{K, PAD_WK};
    use crate::hash::{Node, SHA256_IV};

    /// Messages per batch.
    pub const LANES: usize = 8;

    // Immediates are spliced into the template as literals: `const` operands of `asm!` need
    // Rust 1.82, above the crate's MSRV.
    macro_rules! vl_fns {
        ($($ror:ident = $r:literal),*; $($tern:ident = $imm:literal),*) => {
            $(
                /// Rotation right of every 32-bit lane (`vprord`).
                #[inline]
                #[target_feature(enable = "avx,avx2")]
                pub(crate) unsafe fn $ror(x: __m256i) -> __m256i {
                    let out: __m256i;
                    asm!(concat!("vprord {o}, {i}, ", $r), o = lateout(ymm_reg) out,
                         i = in(ymm_reg) x, options(pure, nomem, nostack, preserves_flags));
                    out
                }
            )*
            $(
                /// A bitwise function of three vectors (`vpternlogd`, `a` is bit 2 of the
                /// truth table's index, `c` bit 0).
                #[inline]
                #[target_feature(enable = "avx,avx2")]
                pub(crate) unsafe fn $tern(a: __m256i, b: __m256i, c: __m256i) -> __m256i {
                    let mut a = a;
                    asm!(concat!("vpternlogd {a}, {b}, {c}, ", $imm), a = inout(ymm_reg) a,
                         b = in(ymm_reg) b, c = in(ymm_reg) c,
                         options(pure, nomem, nostack, preserves_flags));
                    a
                }
            )*
        };
    }
    vl_fns!(
        ror2 = "2", ror6 = "6", ror7 = "7", ror11 = "11", ror13 = "13", ror17 = "17",
        ror18 = "18", ror19 = "19", ror22 = "22", ror25 = "25";
        xor3 = "0x96", ch = "0xCA", maj = "0xE8"
    );

    #[inline(always)]
    pub(crate) unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(a, b)
    }

    /// One SHA-256 round of all 8 lanes; `wk` is `W[t] + K[t]`.
    #[inline(always)]
    pub(crate) unsafe fn round(s: &mut [__m256i; 8], wk: __m256i) {
        let [a, b, c, d, e, f, g, h] = *s;
        let s1 = xor3(ror6(e), ror11(e), ror25(e));
        let t1 = add(add(h, s1), add(ch(e, f, g), wk));
        let s0 = xor3(ror2(a), ror13(a), ror22(a));
        let t2 = add(s0, maj(a, b, c));
        *s = [add(t1, t2), a, b, c, add(d, t1), e, f, g];
    }

    /// Big-endian words `w[t]` of 8 messages (64 readable bytes each at `msgs[l]`), transposed.
    #[inline(always)]
    unsafe fn load(msgs: [*const u8; LANES]) -> [__m256i; 16] {
        let mask = _mm256_set_epi64x(
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
        );
        let mut w = [_mm256_setzero_si256(); 16];
        for half in 0..2 {
            let r: [__m256i; 8] =
                core::array::from_fn(|l| _mm256_loadu_si256(msgs[l].add(32 * half).cast()));
            let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
            let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
            let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
            let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
            let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
            let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
            let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
            let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
            let u0 = _mm256_unpacklo_epi64(t0, t2);
            let u1 = _mm256_unpackhi_epi64(t0, t2);
            let u2 = _mm256_unpacklo_epi64(t1, t3);
            let u3 = _mm256_unpackhi_epi64(t1, t3);
            let u4 = _mm256_unpacklo_epi64(t4, t6);
            let u5 = _mm256_unpackhi_epi64(t4, t6);
            let u6 = _mm256_unpacklo_epi64(t5, t7);
            let u7 = _mm256_unpackhi_epi64(t5, t7);
            let cols = [
                _mm256_permute2x128_si256::<0x20>(u0, u4),
                _mm256_permute2x128_si256::<0x20>(u1, u5),
                _mm256_permute2x128_si256::<0x20>(u2, u6),
                _mm256_permute2x128_si256::<0x20>(u3, u7),
                _mm256_permute2x128_si256::<0x31>(u0, u4),
                _mm256_permute2x128_si256::<0x31>(u1, u5),
                _mm256_permute2x128_si256::<0x31>(u2, u6),
                _mm256_permute2x128_si256::<0x31>(u3, u7),
            ];
            for (j, col) in cols.into_iter().enumerate() {
                w[8 * half + j] = _mm256_shuffle_epi8(col, mask);
            }
        }
        w
    }

    /// Node hashes of 8 messages, written to `out[..8]` (big-endian, top two bits cleared).
    #[inline(always)]
    unsafe fn nodes(msgs: [*const u8; LANES], out: &mut [Node]) {
        let mut w = load(msgs);
        let iv: [__m256i; 8] = core::array::from_fn(|i| _mm256_set1_epi32(SHA256_IV[i] as i32));
        let mut s = iv;
        // Unrolled by 16 (data block: the schedule ring's indices become constants) and by 8
        // (padding block), so the state's rotation is register renaming, not moves.
        macro_rules! unrolled {
            ($m:ident; $($j:literal)*) => { $($m!($j);)* };
        }
        for g in 0..4 {
            macro_rules! data_round {
                ($j:literal) => {{
                    let t = 16 * g + $j;
                    if g > 0 {
                        let w15 = w[($j + 1) & 15];
                        let w2 = w[($j + 14) & 15];
                        let s0 = xor3(ror7(w15), ror18(w15), _mm256_srli_epi32::<3>(w15));
                        let s1 = xor3(ror17(w2), ror19(w2), _mm256_srli_epi32::<10>(w2));
                        w[$j] = add(add(w[$j], s0), add(w[($j + 9) & 15], s1));
                    }
                    round(&mut s, add(w[$j], _mm256_set1_epi32(K[t] as i32)));
                }};
            }
            unrolled!(data_round; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        for i in 0..8 {
            s[i] = add(s[i], iv[i]);
        }
        let mid = s;
        for g in 0..8 {
            macro_rules! pad_round {
                ($j:literal) => {
                    round(&mut s, _mm256_set1_epi32(PAD_WK[8 * g + $j] as i32))
                };
            }
            unrolled!(pad_round; 0 1 2 3 4 5 6 7);
        }
        let mask = _mm256_set_epi64x(
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
        );
        let mut words = [[0u32; LANES]; 8];
        for i in 0..8 {
            let v = _mm256_shuffle_epi8(add(s[i], mid[i]), mask);
            _mm256_storeu_si256(words[i].as_mut_ptr().cast(), v);
        }
        for (l, node) in out.iter_mut().enumerate().take(LANES) {
            for i in 0..8 {
                node[4 * i..4 * i + 4].copy_from_slice(&words[i][l].to_ne_bytes());
            }
            node[31] &= 0x3f;
        }
    }

    /// `out[i] = hash_block(msgs[64i..64i+64])` for whole batches of 8 messages; returns how
    /// many messages it hashed (a multiple of 8; the caller hashes the rest).
    ///
    /// # Safety
    /// The CPU has AVX2, AVX-512F and AVX-512VL.
    #[target_feature(enable = "avx,avx2")]
    pub unsafe fn hash_nodes(msgs: &[u8], out: &mut [Node]) -> usize {
        let count = (msgs.len() / 64).min(out.len());
        let base = msgs.as_ptr();
        let mut i = 0;
        while i + LANES <= count {
            // In bounds: message i + l < count ends at 64·count ≤ msgs.len().
            let ptrs: [*const u8; LANES] = core::array::from_fn(|l| base.add(64 * (i + l)));
            nodes(ptrs, &mut out[i..i + LANES]);
            i += LANES;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_block;
    use crate::test_data::pseudo_random;

    #[test]
    fn pad_schedule_is_the_padding_block() {
        // Hashing with the precomputed pad schedule equals sha2 of the 64-byte message.
        let msgs = pseudo_random(64 * 9, 3);
        let mut out = vec![[0u8; 32]; 9];
        hash_nodes(&msgs, &mut out);
        for (msg, node) in msgs.chunks_exact(64).zip(&out) {
            let block: [u8; 64] = msg.try_into().unwrap_or([0; 64]);
            assert_eq!(*node, hash_block(&block));
        }
    }

    #[test]
    fn every_lane_count_equals_portable() {
        for count in [0, 1, 2, 3, 4, 5, 7, 8, 13, 64] {
            let msgs = pseudo_random(64 * count, count as u64 + 1);
            let mut want = vec![[0u8; 32]; count];
            hash_nodes_portable(&msgs, &mut want);
            for lanes in 1..=4 {
                let mut got = vec![[1u8; 32]; count];
                hash_nodes_lanes(lanes, &msgs, &mut got);
                assert_eq!(got, want, "{count} messages, {lanes} lanes");
            }
        }
    }

    #[test]
    fn vl_kernel_equals_portable() {
        // Whole batches of 8 and every remainder, through the AVX-512VL kernel where the CPU
        // has it (the SHA-NI or portable path elsewhere: then this compares those).
        for count in (0..=41).chain([64, 100, 257]) {
            let msgs = pseudo_random(64 * count, 1000 + count as u64);
            let mut want = vec![[0u8; 32]; count];
            hash_nodes_portable(&msgs, &mut want);
            let mut got = vec![[1u8; 32]; count];
            hash_nodes_vl(&msgs, &mut got);
            assert_eq!(got, want, "{count} messages");
            let mut got = vec![[2u8; 32]; count];
            hash_nodes(&msgs, &mut got);
            assert_eq!(got, want, "{count} messages, hash_nodes");
        }
        // All-zero, all-one and single-bit messages in every one of the 8 lanes.
        for lane in 0..8 {
            for fill in [0x00u8, 0xff] {
                let mut msgs = pseudo_random(64 * 8, lane as u64 + 7);
                msgs[64 * lane..64 * lane + 64].fill(fill);
                msgs[64 * ((lane + 1) % 8)..64 * ((lane + 1) % 8) + 64].fill(0);
                msgs[64 * ((lane + 1) % 8) + lane] = 1 << (lane % 8);
                let mut want = vec![[0u8; 32]; 8];
                hash_nodes_portable(&msgs, &mut want);
                let mut got = vec![[0u8; 32]; 8];
                hash_nodes_vl(&msgs, &mut got);
                assert_eq!(got, want, "lane {lane}, fill {fill:#x}");
                assert!(got.iter().all(|n| n[31] & 0xc0 == 0));
            }
        }
        // A length mismatch hashes min(msgs / 64, out) messages, as the other paths do.
        let msgs = pseudo_random(64 * 20, 5);
        let mut want = vec![[0u8; 32]; 12];
        hash_nodes_portable(&msgs[..64 * 12], &mut want);
        let mut got = vec![[0u8; 32]; 12];
        hash_nodes(&msgs, &mut got);
        assert_eq!(got, want);
        let mut got = vec![[3u8; 32]; 20];
        hash_nodes(&msgs[..64 * 9], &mut got);
        assert_eq!(
            got[..9],
            {
                let mut w = vec![[0u8; 32]; 9];
                hash_nodes_portable(&msgs[..64 * 9], &mut w);
                w
            }[..]
        );
        assert!(got[9..].iter().all(|n| *n == [3u8; 32]));
    }

    #[test]
    fn extreme_messages() {
        // All-zero, all-one and single-bit messages in every lane position.
        let mut msgs = vec![0u8; 64 * 4];
        msgs[64..128].fill(0xff);
        msgs[128] = 1;
        msgs[255] = 0x80;
        let mut want = vec![[0u8; 32]; 4];
        hash_nodes_portable(&msgs, &mut want);
        let mut got = vec![[0u8; 32]; 4];
        hash_nodes(&msgs, &mut got);
        assert_eq!(got, want);
        assert!(got.iter().all(|n| n[31] & 0xc0 == 0));
    }

    #[test]
    fn compress_lanes_equals_sha2() {
        let data = pseudo_random(64 * 20 * 4, 9);
        let blocks: Vec<[u8; 64]> = data
            .chunks_exact(64)
            .map(|c| c.try_into().unwrap_or([0; 64]))
            .collect();
        let mut states = [SHA256_IV, [7u32; 8], SHA256_IV, [0u32; 8]];
        let mut want = states;
        let lanes = [
            &blocks[0..20],
            &blocks[20..40],
            &blocks[40..60],
            &blocks[60..80],
        ];
        compress_lanes(&mut states, lanes);
        compress_lanes_portable(&mut want, lanes);
        assert_eq!(states, want);
        let mut two = [SHA256_IV; 2];
        let mut two_want = two;
        compress_lanes(&mut two, [&blocks[..3], &blocks[5..8]]);
        compress_lanes_portable(&mut two_want, [&blocks[..3], &blocks[5..8]]);
        assert_eq!(two, two_want);
        // Unequal lanes take the portable path and still give each lane's own result.
        let mut uneven = [SHA256_IV; 2];
        compress_lanes(&mut uneven, [&blocks[..3], &blocks[..1]]);
        let mut one = SHA256_IV;
        sha2::compress256(&mut one, &[GenericArray::from(blocks[0])]);
        assert_eq!(uneven[1], one);
    }

    #[test]
    fn compress_lanes_refs_equals_sha2() {
        // Lanes of repeated and shared block references, 1 to 4 lanes, against sha2 per lane.
        let data = pseudo_random(64 * 8, 11);
        let blocks: Vec<[u8; 64]> = data
            .chunks_exact(64)
            .map(|c| c.try_into().unwrap_or([0; 64]))
            .collect();
        fn check<const N: usize>(blocks: &[[u8; 64]]) {
            let refs: [[&[u8; 64]; 20]; N] =
                std::array::from_fn(|l| std::array::from_fn(|b| &blocks[(b * (l + 1) + l) % 8]));
            let mut states: [[u32; 8]; N] = std::array::from_fn(|l| [l as u32 + 1; 8]);
            let mut want = states;
            compress_lanes_refs(&mut states, &refs);
            for (state, lane) in want.iter_mut().zip(&refs) {
                for block in lane {
                    sha2::compress256(state, &[GenericArray::from(**block)]);
                }
            }
            assert_eq!(states, want, "{N} lanes");
        }
        check::<1>(&blocks);
        check::<2>(&blocks);
        check::<3>(&blocks);
        check::<4>(&blocks);
    }

    /// Root of a tree, level by level, one `hash_pair` (the sha2 crate) per node.
    fn root_portable(leaves: &[Node]) -> Node {
        let mut level = leaves.to_vec();
        while level.len() > 1 {
            level = level
                .chunks_exact(2)
                .map(|p| crate::hash::hash_pair(&p[0], &p[1]))
                .collect();
        }
        level.first().copied().unwrap_or_default()
    }

    #[test]
    fn random_trees_equal_portable() {
        // Property test: random leaf counts (powers of two) and random leaves, through every
        // lane count, the level API and the in-place level API.
        let mut seed = 0x1234_5678_9abc_def1u64;
        for case in 0..40 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let height = (seed >> 59) as usize % 12;
            let leaves: Vec<Node> = pseudo_random(32 << height, seed)
                .chunks_exact(32)
                .map(|c| {
                    let mut n: Node = c.try_into().unwrap_or_default();
                    if case % 2 == 0 {
                        trim_to_fr32(&mut n);
                    }
                    n
                })
                .collect();
            let want = root_portable(&leaves);
            for lanes in 1..=4 {
                let mut level = leaves.clone();
                while level.len() > 1 {
                    let mut next = vec![[0u8; 32]; level.len() / 2];
                    hash_nodes_lanes(lanes, level.as_flattened(), &mut next);
                    level = next;
                }
                assert_eq!(
                    level[0], want,
                    "case {case}, height {height}, {lanes} lanes"
                );
            }
            let mut level = leaves.clone();
            let mut n = level.len();
            while n > 1 {
                crate::hash::hash_level_in_place(&mut level, n);
                n /= 2;
            }
            assert_eq!(level[0], want, "in place, case {case}");
        }
    }
}
