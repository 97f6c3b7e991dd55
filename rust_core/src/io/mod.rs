//! Small I/O helpers shared by the streaming forms of fr32 and commP, and the cache-bypassing
//! stores of the fr32 kernels (`stream_store`).

pub mod stream_store;

use std::io::{ErrorKind, Read};

/// Reads until `buf` is full or the reader ends; returns the number of bytes read. Unlike
/// `read_exact`, a short final read is not an error: streams end wherever they end.
pub fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(free) = buf.get_mut(filled..).filter(|free| !free.is_empty()) {
        match reader.read(free) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields one byte per read, to exercise the refill loop.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn fills_across_short_reads_and_stops_at_end() {
        let mut buf = [0u8; 4];
        assert_eq!(read_full(&mut Trickle(b"abcdef"), &mut buf).ok(), Some(4));
        assert_eq!(&buf, b"abcd");
        assert_eq!(read_full(&mut Trickle(b"xy"), &mut buf).ok(), Some(2));
    }
}
