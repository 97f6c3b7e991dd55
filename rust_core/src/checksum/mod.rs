//! CRC32C (Castagnoli, the iSCSI / ext4 / SCTP checksum): the checksum a serving worker sends at
//! the end of a fetch and the fetching worker recomputes over what it received, so a transfer
//! corrupted in flight is refused (services/worker/checksum.py).
//!
//! On x86-64 with SSE4.2 (detected at run time) the `crc32` instruction does the work, three
//! independent streams at once over large buffers (the instruction has a latency of three cycles
//! and a throughput of one: one stream leaves two thirds of the unit idle); elsewhere a portable
//! slicing-by-8 table. Both give the standard CRC32C bit for bit (reflected polynomial
//! 0x82F63B78, initial value and final xor all ones).
//!
//! `crc32c(data, seed)` chains: `crc32c(b, crc32c(a, 0)) == crc32c(a ++ b, 0)`, so a stream is
//! checksummed chunk by chunk.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// Slicing-by-8 tables: `TABLES[0]` is the byte-at-a-time table, `TABLES[k][b]` the register
/// contribution of byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            b += 1;
        }
        k += 1;
    }
    t
}

/// The raw register (no inversion) after `data`, portable.
fn update_table(mut reg: u32, data: &[u8]) -> u32 {
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ reg;
        reg = TABLES[7][(lo & 0xff) as usize]
            ^ TABLES[6][((lo >> 8) & 0xff) as usize]
            ^ TABLES[5][((lo >> 16) & 0xff) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][w[4] as usize]
            ^ TABLES[2][w[5] as usize]
            ^ TABLES[1][w[6] as usize]
            ^ TABLES[0][w[7] as usize];
    }
    for &b in words.remainder() {
        reg = (reg >> 8) ^ TABLES[0][((reg ^ b as u32) & 0xff) as usize];
    }
    reg
}

/// CRC32C of `data`, continuing from `seed` (the CRC32C of what came before; 0 to start).
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    !update(!seed, data)
}

/// The portable form of [`crc32c`] (for tests and benchmarks against the hardware path).
pub fn crc32c_portable(seed: u32, data: &[u8]) -> u32 {
    !update_table(!seed, data)
}

fn update(reg: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2, checked just above.
            return unsafe { hw::update(reg, data) };
        }
    }
    update_table(reg, data)
}

/// Bytes per file read in [`crc32c_file`]: large enough that the system calls cost nothing
/// next to the checksum, small enough to stay in L2.
const FILE_CHUNK: usize = 1 << 20;

/// CRC32C of `length` bytes of the file at `path` from `offset` (continuing from `seed`). A file
/// that ends before `offset + length` is an error, not a shorter checksum.
pub fn crc32c_file(path: &Path, offset: u64, length: u64, seed: u32) -> Result<u32> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("checksumming {}", path.display()), e))?;
    crc32c_open_file(&file, &path.display().to_string(), offset, length, seed)
}

/// As [`crc32c_file`], of a file already open (`name` is for error messages). Reads with
/// `pread`: the file position is left alone.
pub fn crc32c_open_file(
    file: &File,
    name: &str,
    offset: u64,
    length: u64,
    seed: u32,
) -> Result<u32> {
    let context = || format!("checksumming {name}");
    let end = offset
        .checked_add(length)
        .ok_or_else(|| Error::invalid("offset + length overflows"))?;
    let mut buf = vec![
        0u8;
        FILE_CHUNK
            .min(usize::try_from(length).unwrap_or(FILE_CHUNK))
            .max(1)
    ];
    let mut reg = !seed;
    let mut at = offset;
    while at < end {
        let want = usize::try_from(end - at).map_or(buf.len(), |left| left.min(buf.len()));
        let part = buf.get_mut(..want).unwrap_or_default();
        let n = loop {
            match file.read_at(part, at) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other.map_err(|e| Error::io(context(), e))?,
            }
        };
        if n == 0 {
            return Err(Error::io(
                context(),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the file ends at {at}, before {end}"),
                ),
            ));
        }
        reg = update(reg, part.get(..n).unwrap_or_default());
        at += n as u64;
    }
    Ok(!reg)
}

#[cfg(target_arch = "x86_64")]
mod hw {
    //! The SSE4.2 path: one `crc32` instruction per 8 bytes, three streams interleaved over
    //! blocks of `3 * LANE` bytes and joined with the zero-extension operator (`Shift`).

    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    use std::sync::OnceLock;

    /// Bytes per lane of an interleaved block.
    const LANE: usize = 8 << 10;

    /// The register after `LANE` zero bytes, as a linear map of the register before (CRC is
    /// linear over GF(2)): four 256-entry tables, one per byte of the register.
    struct Shift([[u32; 256]; 4]);

    impl Shift {
        fn new() -> Self {
            let zeros = [0u8; LANE];
            let mut basis = [0u32; 32];
            for (bit, slot) in basis.iter_mut().enumerate() {
                *slot = super::update_table(1 << bit, &zeros);
            }
            let mut t = [[0u32; 256]; 4];
            for (k, table) in t.iter_mut().enumerate() {
                for (b, entry) in table.iter_mut().enumerate() {
                    *entry = (0..8)
                        .filter(|i| b >> i & 1 != 0)
                        .fold(0, |acc, i| acc ^ basis[8 * k + i]);
                }
            }
            Shift(t)
        }

        fn apply(&self, reg: u32) -> u32 {
            let [b0, b1, b2, b3] = reg.to_le_bytes();
            self.0[0][b0 as usize]
                ^ self.0[1][b1 as usize]
                ^ self.0[2][b2 as usize]
                ^ self.0[3][b3 as usize]
        }
    }

    static SHIFT: OnceLock<Shift> = OnceLock::new();

    #[target_feature(enable = "sse4.2")]
    unsafe fn words(mut reg: u64, data: &[u8]) -> u64 {
        for w in data.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            reg = _mm_crc32_u64(reg, u64::from_le_bytes(word));
        }
        reg
    }

    /// The raw register after `data`.
    ///
    /// # Safety
    /// The CPU must support SSE4.2.
    #[target_feature(enable = "sse4.2")]
    pub unsafe fn update(reg: u32, data: &[u8]) -> u32 {
        let mut reg = u64::from(reg);
        let mut blocks = data.chunks_exact(3 * LANE);
        if blocks.len() > 0 {
            let shift = SHIFT.get_or_init(Shift::new);
            for block in &mut blocks {
                let (a, rest) = block.split_at(LANE);
                let (b, c) = rest.split_at(LANE);
                let (mut ra, mut rb, mut rc) = (reg, 0u64, 0u64);
                for ((wa, wb), wc) in a
                    .chunks_exact(8)
                    .zip(b.chunks_exact(8))
                    .zip(c.chunks_exact(8))
                {
                    let mut x = [0u8; 8];
                    let mut y = [0u8; 8];
                    let mut z = [0u8; 8];
                    x.copy_from_slice(wa);
                    y.copy_from_slice(wb);
                    z.copy_from_slice(wc);
                    ra = _mm_crc32_u64(ra, u64::from_le_bytes(x));
                    rb = _mm_crc32_u64(rb, u64::from_le_bytes(y));
                    rc = _mm_crc32_u64(rc, u64::from_le_bytes(z));
                }
                // The registers fit in 32 bits (the instruction zero-extends its result).
                let ab = shift.apply(ra as u32) ^ rb as u32;
                reg = u64::from(shift.apply(ab) ^ rc as u32);
            }
        }
        let tail = blocks.remainder();
        reg = words(reg, tail);
        let mut reg = reg as u32;
        for &b in tail.chunks_exact(8).remainder() {
            reg = _mm_crc32_u8(reg, b);
        }
        reg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::pseudo_random as pattern;

    /// Bit by bit, straight from the definition.
    fn reference(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn known_answers() {
        for f in [crc32c, crc32c_portable] {
            assert_eq!(f(0, b""), 0);
            assert_eq!(f(0, b"123456789"), 0xE306_9283);
            assert_eq!(f(0, &[0u8; 32]), 0x8A91_36AA);
            assert_eq!(f(0, &[0xffu8; 32]), 0x62A8_AB43);
        }
    }

    #[test]
    fn fast_paths_match_the_definition_at_every_alignment_and_length() {
        let data = pattern(3 * 3 * 8192 + 1000, 7);
        for len in [
            0,
            1,
            7,
            8,
            9,
            63,
            64,
            65,
            1000,
            24_575,
            24_576,
            24_577,
            49_152,
            data.len() - 3,
        ] {
            for start in [0, 1, 3] {
                let part = &data[start..start + len];
                let want = reference(part);
                assert_eq!(crc32c(0, part), want, "len {len} start {start}");
                assert_eq!(crc32c_portable(0, part), want, "len {len} start {start}");
            }
        }
    }

    #[test]
    fn chains_across_chunks() {
        let data = pattern(100_000, 3);
        let whole = crc32c(0, &data);
        for cut in [0, 1, 4096, 24_576, 50_001, data.len()] {
            let (a, b) = data.split_at(cut);
            assert_eq!(crc32c(crc32c(0, a), b), whole, "cut at {cut}");
            assert_eq!(crc32c_portable(crc32c(0, a), b), whole, "cut at {cut}");
        }
    }

    #[test]
    fn file_ranges() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("crc32c-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("mkdir", e))?;
        let path = dir.join("data");
        let data = pattern(3 << 20 | 123, 11);
        std::fs::write(&path, &data).map_err(|e| Error::io("write", e))?;
        assert_eq!(
            crc32c_file(&path, 0, data.len() as u64, 0)?,
            crc32c(0, &data)
        );
        assert_eq!(
            crc32c_file(&path, 5, 1 << 20, 0)?,
            crc32c(0, &data[5..5 + (1 << 20)])
        );
        assert_eq!(crc32c_file(&path, 9, 0, 0x1234)?, 0x1234);
        let seed = crc32c(0, b"head");
        assert_eq!(
            crc32c_file(&path, 0, 100, seed)?,
            crc32c(seed, &data[..100])
        );
        let short = crc32c_file(&path, data.len() as u64 - 10, 11, 0);
        assert!(matches!(short, Err(Error::Io { .. })));
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("rm", e))?;
        Ok(())
    }
}
