//! fr32 over streams and files, for AddPiece (pad a piece into the unsealed sector file) and
//! ReadPiece (unpad a byte range of it). Memory is one batch of [`BATCH_BLOCKS`] blocks whatever
//! the size; a range read touches only the 128-byte blocks that hold the range. Every function
//! takes a [`Cancel`] flag, checked once per batch (8 MiB padded): a cancelled call returns
//! [`Error::Cancelled`], and a file it created (`dst` without an offset) is removed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::cancel::{Cancel, Scratch};
use crate::commitments::commp::PieceHasher;
use crate::commitments::piece_size::PieceTarget;
use crate::error::{Error, Result};
use crate::fr32::{pad_into, unpad_into_at, PADDED_BLOCK, UNPADDED_BLOCK};
use crate::hash::Node;
use crate::io::read_full;

/// Blocks per batch: 2^14 blocks, 2 MiB padded (also the cancellation step: a batch takes about
/// 10 ms of hashing, and a write the kernel throttles under writeback stays well below 100 ms).
pub const BATCH_BLOCKS: usize = 1 << 14;
const BATCH_UNPADDED: usize = BATCH_BLOCKS * UNPADDED_BLOCK;
const BATCH_PADDED: usize = BATCH_BLOCKS * PADDED_BLOCK;

fn padded(unpadded: u64) -> u64 {
    unpadded / UNPADDED_BLOCK as u64 * PADDED_BLOCK as u64
}

/// Pads everything `reader` yields into `writer`, zero-extended as `target` says (with
/// [`PieceTarget::Exact`] the stream must be a multiple of 127 bytes; this is known only at its
/// end, after the whole blocks before it were written). Returns the padded bytes written.
/// `what` names the source and destination in I/O errors.
pub fn pad_stream(
    reader: &mut impl Read,
    writer: &mut (impl Write + Send),
    target: PieceTarget,
    what: &str,
    cancel: &Cancel,
) -> Result<u64> {
    pad_and_hash(reader, writer, target, what, None, cancel)
}

/// AddPiece in one pass: pads the stream into `writer` like [`pad_stream`] and computes the
/// piece's commP from the same reads, hashing each batch while the previous one is padded and
/// written. The stream must make a whole piece (`127·2^k` bytes) or be zero-extended by
/// `target`. Returns (padded bytes written, commP).
pub fn add_piece_stream(
    reader: &mut impl Read,
    writer: &mut (impl Write + Send),
    target: PieceTarget,
    what: &str,
    cancel: &Cancel,
) -> Result<(u64, Node)> {
    let mut hasher = PieceHasher::new();
    let written = pad_and_hash(reader, writer, target, what, Some(&mut hasher), cancel)?;
    Ok((written, hasher.finish(target)?))
}

fn pad_and_hash(
    reader: &mut impl Read,
    writer: &mut (impl Write + Send),
    target: PieceTarget,
    what: &str,
    mut hasher: Option<&mut PieceHasher>,
    cancel: &Cancel,
) -> Result<u64> {
    let mut input = vec![0u8; BATCH_UNPADDED];
    let mut output = vec![0u8; BATCH_PADDED];
    let mut total = 0u64;
    loop {
        cancel.check()?;
        let n =
            read_full(reader, &mut input).map_err(|e| Error::io(format!("reading {what}"), e))?;
        total += n as u64;
        let last = n < BATCH_UNPADDED;
        let final_len = if last {
            let final_len = target.fr32_len(total)?;
            if hasher.is_some() {
                target.piece_size(total)?;
            }
            Some(final_len)
        } else {
            None
        };
        // Zero-fill the last block; the hasher sees only the real bytes.
        let whole = n.div_ceil(UNPADDED_BLOCK) * UNPADDED_BLOCK;
        input[n..whole].fill(0);
        let (hashed, written) = rayon::join(
            || hasher.as_mut().map_or(Ok(()), |h| h.update(&input[..n])),
            || {
                let out = &mut output[..whole / UNPADDED_BLOCK * PADDED_BLOCK];
                pad_into(&input[..whole], out)?;
                write(writer, out, what)
            },
        );
        hashed?;
        written?;
        if let Some(final_len) = final_len {
            let written = padded(total - n as u64 + whole as u64);
            write_zeros(
                writer,
                padded(final_len) - written,
                &mut output,
                what,
                cancel,
            )?;
            return Ok(padded(final_len));
        }
    }
}

fn write(writer: &mut impl Write, bytes: &[u8], what: &str) -> Result<()> {
    writer
        .write_all(bytes)
        .map_err(|e| Error::io(format!("writing the padding of {what}"), e))
}

/// Writes `len` zero bytes (fr32 of zeros is zeros) using `scratch` as the source.
fn write_zeros(
    writer: &mut impl Write,
    mut len: u64,
    scratch: &mut [u8],
    what: &str,
    cancel: &Cancel,
) -> Result<()> {
    scratch.fill(0);
    while len > 0 {
        cancel.check()?;
        let n = len.min(scratch.len() as u64) as usize;
        write(writer, &scratch[..n], what)?;
        len -= n as u64;
    }
    Ok(())
}

/// Pads file `src` into file `dst`, zero-extended as `target` says; returns the padded bytes
/// written. With `dst_offset` = `None`, `dst` is created or truncated; with `Some(offset)` (a
/// multiple of 128) the padded bytes go there and the rest of `dst` is kept, so a piece can be
/// written into an existing unsealed sector file. The source length is checked before `dst` is
/// touched.
pub fn pad_file(
    src: &Path,
    dst: &Path,
    target: PieceTarget,
    dst_offset: Option<u64>,
    cancel: &Cancel,
) -> Result<u64> {
    let (mut reader, mut writer, what) =
        open_pair(src, dst, dst_offset, |len| target.fr32_len(len))?;
    let scratch = created(dst, dst_offset);
    let n = pad_stream(&mut reader, &mut writer, target, &what, cancel)?;
    scratch.keep();
    Ok(n)
}

/// Removes `dst` on failure when this call created (or truncated) it, i.e. without an offset;
/// bytes written into an existing file at an offset are left (the caller marks ranges valid).
fn created(dst: &Path, dst_offset: Option<u64>) -> Scratch {
    let mut scratch = Scratch::new();
    if dst_offset.is_none() {
        scratch.add(dst);
    }
    scratch
}

/// [`pad_file`] that also returns the piece's commP, computed from the same reads (AddPiece).
pub fn add_piece_file(
    src: &Path,
    dst: &Path,
    target: PieceTarget,
    dst_offset: Option<u64>,
    cancel: &Cancel,
) -> Result<(u64, Node)> {
    let (mut reader, mut writer, what) =
        open_pair(src, dst, dst_offset, |len| target.piece_size(len))?;
    let scratch = created(dst, dst_offset);
    let out = add_piece_stream(&mut reader, &mut writer, target, &what, cancel)?;
    scratch.keep();
    Ok(out)
}

/// Opens `src` and `dst` for padding after `check` accepts the source length and `dst_offset`
/// is block-aligned, so that bad input fails before `dst` is created or truncated.
fn open_pair(
    src: &Path,
    dst: &Path,
    dst_offset: Option<u64>,
    check: impl FnOnce(u64) -> Result<u64>,
) -> Result<(File, File, String)> {
    let reader = File::open(src).map_err(|e| Error::io(format!("opening {}", src.display()), e))?;
    let len = reader
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {}", src.display()), e))?
        .len();
    check(len).map_err(|e| Error::invalid(format!("{}: {e}", src.display())))?;
    if let Some(offset) = dst_offset {
        if offset % PADDED_BLOCK as u64 != 0 {
            return Err(Error::invalid(format!(
                "dst_offset {offset} is not a multiple of 128: padded data is laid out in \
                 128-byte blocks"
            )));
        }
    }
    let mut writer = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(dst_offset.is_none())
        .open(dst)
        .map_err(|e| Error::io(format!("opening {}", dst.display()), e))?;
    writer
        .seek(SeekFrom::Start(dst_offset.unwrap_or(0)))
        .map_err(|e| Error::io(format!("seeking in {}", dst.display()), e))?;
    Ok((
        reader,
        writer,
        format!("{} into {}", src.display(), dst.display()),
    ))
}

/// Writes unpadded bytes `[offset, offset + len)` of the padded file at `path` into `out`,
/// reading only the blocks that hold them. Fails if the file is too short for the range or a
/// block has non-zero pad bits.
pub fn unpad_range_to(
    path: &Path,
    offset: u64,
    len: u64,
    out: &mut impl Write,
    cancel: &Cancel,
) -> Result<()> {
    let name = path.display();
    let end = offset
        .checked_add(len)
        .ok_or_else(|| Error::invalid(format!("range {offset} + {len} overflows")))?;
    let block = UNPADDED_BLOCK as u64;
    let first = offset / block;
    let last = end.div_ceil(block);
    let padded_end = last
        .checked_mul(PADDED_BLOCK as u64)
        .ok_or_else(|| Error::invalid(format!("range end {end} is too large")))?;
    let mut file = File::open(path).map_err(|e| Error::io(format!("opening {name}"), e))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {name}"), e))?
        .len();
    if len > 0 && file_len < padded_end {
        return Err(Error::invalid(format!(
            "{name} is truncated: unpadded bytes {offset}..{end} need padded bytes up to \
             {padded_end}, but the file has {file_len}"
        )));
    }
    if len == 0 {
        return Ok(());
    }
    let mut pos = first * PADDED_BLOCK as u64;
    file.seek(SeekFrom::Start(pos))
        .map_err(|e| Error::io(format!("seeking in {name}"), e))?;
    let mut padded_buf = vec![0u8; BATCH_PADDED.min((padded_end - pos) as usize)];
    let mut unpadded_buf = vec![0u8; padded_buf.len() / PADDED_BLOCK * UNPADDED_BLOCK];
    let mut skip = (offset % block) as usize;
    let mut remaining = len;
    while remaining > 0 {
        cancel.check()?;
        let n = padded_buf.len().min((padded_end - pos) as usize);
        let (src, dst) = (
            &mut padded_buf[..n],
            &mut unpadded_buf[..n / PADDED_BLOCK * UNPADDED_BLOCK],
        );
        file.read_exact(src)
            .map_err(|e| Error::io(format!("reading {name} at padded offset {pos}"), e))?;
        unpad_into_at(src, dst, pos).map_err(|e| Error::invalid(format!("{name}: {e}")))?;
        let take = ((dst.len() - skip) as u64).min(remaining) as usize;
        out.write_all(&dst[skip..skip + take])
            .map_err(|e| Error::io(format!("writing the unpadded range of {name}"), e))?;
        remaining -= take as u64;
        skip = 0;
        pos += n as u64;
    }
    Ok(())
}

/// Unpadded bytes `[offset, offset + len)` of the padded file at `path`.
pub fn unpad_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    unpad_range_to(path, offset, len, &mut out, &Cancel::default())?;
    Ok(out)
}

/// Writes unpadded bytes `[offset, offset + len)` of padded file `src` into file `dst` (created or
/// truncated). `len` = `None` means up to the end of `src`, whose size must then be a multiple of
/// 128. Returns the bytes written.
pub fn unpad_file(
    src: &Path,
    dst: &Path,
    offset: u64,
    len: Option<u64>,
    cancel: &Cancel,
) -> Result<u64> {
    let len = match len {
        Some(len) => len,
        None => {
            let size = std::fs::metadata(src)
                .map_err(|e| Error::io(format!("reading the size of {}", src.display()), e))?
                .len();
            if size % PADDED_BLOCK as u64 != 0 {
                return Err(Error::invalid(format!(
                    "{} is {size} bytes, not a multiple of 128: truncated padded file",
                    src.display()
                )));
            }
            let total = size / PADDED_BLOCK as u64 * UNPADDED_BLOCK as u64;
            total.checked_sub(offset).ok_or_else(|| {
                Error::invalid(format!(
                    "offset {offset} is past the end of {} ({total} unpadded bytes)",
                    src.display()
                ))
            })?
        }
    };
    let mut writer = std::io::BufWriter::with_capacity(
        1 << 20,
        File::create(dst).map_err(|e| Error::io(format!("creating {}", dst.display()), e))?,
    );
    let scratch = created(dst, None);
    unpad_range_to(src, offset, len, &mut writer, cancel)?;
    writer
        .flush()
        .map_err(|e| Error::io(format!("writing {}", dst.display()), e))?;
    scratch.keep();
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fr32;
    use std::path::PathBuf;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 + i / 509) as u8).collect()
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("rust_core_{name}_{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            TempDir(dir)
        }
        fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let p = self.0.join(name);
            let _ = std::fs::write(&p, bytes);
            p
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn pad_stream_matches_in_memory_across_batches() {
        let input = data(BATCH_UNPADDED * 2 + 127 * 3);
        let mut out = Vec::new();
        let n = pad_stream(
            &mut input.as_slice(),
            &mut out,
            PieceTarget::Exact,
            "t",
            &Cancel::default(),
        );
        assert_eq!(n.ok(), Some(out.len() as u64));
        assert!(fr32::pad(&input).ok() == Some(out));
    }

    #[test]
    fn pad_stream_zero_extends() {
        let input = data(300);
        let mut out = Vec::new();
        let n = pad_stream(
            &mut input.as_slice(),
            &mut out,
            PieceTarget::Smallest,
            "t",
            &Cancel::default(),
        )
        .ok();
        assert_eq!(n, Some(512));
        let mut full = input.clone();
        full.resize(508, 0);
        assert_eq!(fr32::pad(&full).ok(), Some(out));
        let mut out = Vec::new();
        let err = pad_stream(
            &mut input.as_slice(),
            &mut out,
            PieceTarget::Exact,
            "t",
            &Cancel::default(),
        );
        assert!(err.is_err());
    }

    #[test]
    fn files_and_ranges() {
        let dir = TempDir::new("fr32_file");
        let input = data(127 * 1000);
        let src = dir.file("src", &input);
        let dst = dir.0.join("dst");
        assert_eq!(
            pad_file(&src, &dst, PieceTarget::Exact, None, &Cancel::default()).ok(),
            Some(128_000)
        );
        for (off, len) in [
            (0, 1),
            (5, 300),
            (126, 2),
            (127, 127),
            (1000, 50_000),
            (126_999, 1),
        ] {
            let got = unpad_range(&dst, off, len).ok();
            assert_eq!(
                got.as_deref(),
                Some(&input[off as usize..(off + len) as usize])
            );
        }
        assert_eq!(unpad_range(&dst, 127_000, 0).ok(), Some(vec![]));
        let msg = unpad_range(&dst, 126_999, 2).err().map(|e| e.to_string());
        assert!(msg.unwrap_or_default().contains("truncated"));
        let back = dir.0.join("back");
        assert_eq!(
            unpad_file(&dst, &back, 10, None, &Cancel::default()).ok(),
            Some(126_990)
        );
        assert!(std::fs::read(&back).ok().as_deref() == Some(&input[10..]));
        // Write into an existing file at an offset.
        let sector = dir.file("sector", &[0u8; 4096]);
        let small = dir.file("small", &data(127));
        assert!(pad_file(
            &small,
            &sector,
            PieceTarget::Exact,
            Some(1024),
            &Cancel::default()
        )
        .is_ok());
        assert_eq!(std::fs::metadata(&sector).map(|m| m.len()).ok(), Some(4096));
        assert_eq!(unpad_range(&sector, 1016, 127).ok(), Some(data(127)));
        assert!(pad_file(
            &small,
            &sector,
            PieceTarget::Exact,
            Some(100),
            &Cancel::default()
        )
        .is_err());
    }

    #[test]
    fn add_piece_pads_and_hashes_in_one_pass() {
        let dir = TempDir::new("add_piece");
        for (len, target) in [
            (127 << 18, PieceTarget::Exact),
            (1000, PieceTarget::Smallest),
            (5, PieceTarget::Unpadded(127 * 1024)),
        ] {
            let input = data(len);
            let src = dir.file("src", &input);
            let dst = dir.0.join("dst");
            let (written, commp) =
                add_piece_file(&src, &dst, target, None, &Cancel::default()).unwrap_or_default();
            let piece = target.piece_size(len as u64).unwrap_or_default();
            assert_eq!(written, piece / 127 * 128);
            let padded = std::fs::read(&dst).unwrap_or_default();
            let mut full = input.clone();
            full.resize(piece as usize, 0);
            assert!(fr32::pad(&full).ok() == Some(padded));
            let want = crate::commitments::commp::piece_commitment(&input, target).ok();
            assert_eq!(Some(commp), want);
        }
        let src = dir.file("src", &data(127 * 3));
        let err = add_piece_file(
            &src,
            &dir.0.join("x"),
            PieceTarget::Exact,
            None,
            &Cancel::default(),
        );
        assert!(err.is_err() && !dir.0.join("x").exists());
        let mut sink = Vec::new();
        let input = data(127 * 3);
        let err = add_piece_stream(
            &mut input.as_slice(),
            &mut sink,
            PieceTarget::Exact,
            "t",
            &Cancel::default(),
        );
        assert!(err.is_err());
    }

    #[test]
    fn range_rejects_bad_pad_bits_with_file_offset() {
        let dir = TempDir::new("fr32_bad");
        let mut padded = vec![0u8; 128 * 10];
        padded[128 * 7 + 31] = 0xff;
        let path = dir.file("bad", &padded);
        let msg = unpad_range(&path, 127 * 6, 300)
            .err()
            .map(|e| e.to_string());
        assert!(msg.unwrap_or_default().contains("padded offset 896"));
        assert!(unpad_range(&path, 0, 127 * 6).is_ok());
    }
}
