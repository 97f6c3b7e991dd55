//! Cache-bypassing ("non-temporal") stores for outputs far larger than the caches. A normal store
//! first reads the destination line into the cache (read-for-ownership), so writing a buffer costs
//! a read and a write of it; a streaming store writes the line straight to memory. For fr32 of a
//! large buffer that removes a third of the memory traffic. The one `unsafe` of the crate lives
//! here, behind checks that make it sound; other targets get plain stores.

/// Copies `bytes` over `out`, bypassing the caches when `out` is exactly `M` bytes, `M` is a
/// multiple of 16 and `out` is 16-byte aligned; otherwise with a plain copy. Call [`fence`] once
/// the run of streaming stores is complete. `bytes` is a small staging buffer (in L1).
#[inline(always)]
pub fn store<const M: usize>(out: &mut [u8], bytes: &[u8; M]) {
    #[cfg(target_arch = "x86_64")]
    if M % 16 == 0 && out.len() == M && out.as_ptr().align_offset(16) == 0 {
        use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
        let dst = out.as_mut_ptr().cast::<__m128i>();
        let src = bytes.as_ptr().cast::<__m128i>();
        for i in 0..M / 16 {
            // SAFETY: both buffers are M = 16·(M/16) bytes long, so for i < M/16 `src.add(i)` and
            // `dst.add(i)` are 16-byte slots inside them; MOVDQU reads any alignment, MOVNTDQ
            // writes to `dst`, which is 16-byte aligned (checked above) and exclusively ours
            // (`&mut`). Both need only SSE2, which every x86_64 CPU has.
            unsafe { _mm_stream_si128(dst.add(i), _mm_loadu_si128(src.add(i))) };
        }
        return;
    }
    out.copy_from_slice(bytes);
}

/// Makes the streaming stores so far visible before any later store (and so before the thread
/// signals that its part of the output is done).
#[inline]
pub fn fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SFENCE has no preconditions; SSE is part of every x86_64 CPU.
    unsafe {
        core::arch::x86_64::_mm_sfence()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_bytes_aligned_or_not() {
        let bytes: [u8; 32] = core::array::from_fn(|i| (i * 7 + 1) as u8);
        let mut buf = [0u8; 64];
        let aligned = buf.as_ptr().align_offset(16);
        for offset in [aligned, aligned + 1, aligned + 8, aligned + 16] {
            let out = &mut buf[offset..offset + 32];
            out.fill(0);
            store(out, &bytes);
            fence();
            assert_eq!(out, &bytes[..], "offset {offset}");
        }
    }
}
