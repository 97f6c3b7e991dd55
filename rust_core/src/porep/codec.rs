//! Little-endian byte writer and bounds-checked reader for the versioned blobs (phase-1 outputs,
//! proofs). Hand-written rather than serde so that the byte layout is exactly the one documented
//! in `docs/porep-emulation.md` and a client in another language can parse it.
//!
//! The reader never panics: every read past the end is an `InvalidInput` naming the blob and the
//! field, and `finish` rejects trailing bytes, so one layout has exactly one encoding.

use crate::error::{Error, Result};
use crate::hash::Node;

/// Appends fields to a growing buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn node(&mut self, n: &Node) -> &mut Self {
        self.bytes(n)
    }
    pub fn nodes(&mut self, ns: &[Node]) -> &mut Self {
        for n in ns {
            self.node(n);
        }
        self
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fields from a blob, front to back.
pub struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// `what` names the blob in error messages ("phase-1 output", "seal proof", ...).
    pub fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Self { what, buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn bytes(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            None => Err(Error::invalid(format!(
                "{}: truncated at byte {} reading {field} ({} bytes total)",
                self.what,
                self.pos,
                self.buf.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }
    pub fn u16(&mut self, field: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    pub fn u32(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    pub fn node(&mut self, field: &str) -> Result<Node> {
        self.array(field)
    }
    pub fn nodes(&mut self, count: usize, field: &str) -> Result<Vec<Node>> {
        (0..count).map(|_| self.node(field)).collect()
    }

    /// Checks a fixed tag (magic bytes) and a version number.
    pub fn header(&mut self, magic: &[u8; 4], version: u16) -> Result<()> {
        let got = self.bytes(4, "magic")?;
        if got != magic {
            return Err(Error::invalid(format!(
                "{}: bad magic {:?}, expected {:?}",
                self.what,
                String::from_utf8_lossy(got),
                String::from_utf8_lossy(magic)
            )));
        }
        let v = self.u16("version")?;
        if v != version {
            return Err(Error::invalid(format!(
                "{}: unsupported version {v}, this build reads version {version}",
                self.what
            )));
        }
        Ok(())
    }

    /// Reads a count and rejects one above `max` before anything is allocated for it.
    pub fn count(&mut self, field: &str, max: usize) -> Result<usize> {
        let n = self.u32(field)? as usize;
        if n > max {
            return Err(Error::invalid(format!(
                "{}: {field} is {n}, at most {max} allowed",
                self.what
            )));
        }
        Ok(n)
    }

    /// Ends the read: trailing bytes are an error.
    pub fn finish(self) -> Result<()> {
        if self.pos != self.buf.len() {
            return Err(Error::invalid(format!(
                "{}: {} unexpected trailing bytes after byte {}",
                self.what,
                self.buf.len() - self.pos,
                self.pos
            )));
        }
        Ok(())
    }

    /// The error for a field whose value is out of range.
    pub fn bad(&self, msg: impl std::fmt::Display) -> Error {
        Error::invalid(format!("{}: {msg}", self.what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let mut w = Writer::new();
        w.bytes(b"TEST")
            .u16(1)
            .u8(7)
            .u32(9)
            .u64(u64::MAX)
            .node(&[3u8; 32]);
        let buf = w.into_bytes();
        let mut r = Reader::new("test blob", &buf);
        r.header(b"TEST", 1).unwrap();
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u32("b").unwrap(), 9);
        assert_eq!(r.u64("c").unwrap(), u64::MAX);
        assert_eq!(r.node("d").unwrap(), [3u8; 32]);
        r.finish().unwrap();

        let mut longer = buf.clone();
        longer.push(0);
        let mut r = Reader::new("test blob", &longer);
        r.bytes(buf.len(), "all").unwrap();
        assert!(r.finish().unwrap_err().to_string().contains("trailing"));
    }

    #[test]
    fn truncation_magic_version_and_counts_are_errors() {
        let mut r = Reader::new("test blob", b"TES");
        assert!(r
            .header(b"TEST", 1)
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut r = Reader::new("test blob", b"XXXX\x01\x00");
        assert!(r
            .header(b"TEST", 1)
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
        let mut r = Reader::new("test blob", b"TEST\x02\x00");
        assert!(r
            .header(b"TEST", 1)
            .unwrap_err()
            .to_string()
            .contains("version 2"));
        let mut r = Reader::new("test blob", &[0xff, 0xff, 0xff, 0xff]);
        assert!(r
            .count("pieces", 10)
            .unwrap_err()
            .to_string()
            .contains("at most 10"));
    }
}
