//! Cache-bypassing ("non-temporal") stores for outputs far larger than the caches. A normal store
//! first reads the destination line into the cache (read-for-ownership), so writing a buffer costs
//! a read and a write of it; a streaming store writes the line straight to memory. For fr32 of a
//! large buffer that removes a third of the memory traffic. The one `unsafe` of the crate lives
//! here, behind checks that make it sound; other targets get plain stores.

/// Writes `words` (little-endian) over `out`, bypassing the caches when `out` is exactly
/// `8 * N` bytes and 8-byte aligned; otherwise with plain stores. Call [`fence`] once the run of
/// streaming stores is complete.
#[inline(always)]
pub fn store<const N: usize>(out: &mut [u8], words: &[u64; N]) {
    #[cfg(target_arch = "x86_64")]
    if out.len() == 8 * N && out.as_ptr().align_offset(8) == 0 {
        let ptr = out.as_mut_ptr().cast::<i64>();
        for (i, &word) in words.iter().enumerate() {
            // SAFETY: `out` is 8·N bytes long and 8-byte aligned (checked above), so for i < N
            // `ptr.add(i)` is an aligned i64 inside it that we hold exclusively (`&mut`). MOVNTI
            // needs SSE2, which every x86_64 CPU has; x86_64 is little-endian, as `words` are.
            unsafe { core::arch::x86_64::_mm_stream_si64(ptr.add(i), word as i64) };
        }
        return;
    }
    for (bytes, word) in out.chunks_exact_mut(8).zip(words) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
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
    fn writes_the_words_aligned_or_not() {
        let words: [u64; 3] = [0x0102030405060708, u64::MAX, 7];
        let want: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut buf = [0u8; 48];
        let aligned = buf.as_ptr().align_offset(8);
        for offset in [aligned, aligned + 1, aligned + 3, aligned + 8] {
            let out = &mut buf[offset..offset + 24];
            out.fill(0);
            store(out, &words);
            fence();
            assert_eq!(out, &want[..], "offset {offset}");
        }
    }
}
