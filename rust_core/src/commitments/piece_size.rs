//! Piece sizes. A piece is fr32-padded before it is hashed or stored, so it has two sizes: the
//! unpadded size the client sends, `127·2^k` bytes, and the padded size it occupies in a sector,
//! `128·2^k` bytes (a power of two). Lotus calls them `UnpaddedPieceSize` and `PaddedPieceSize`;
//! every size that crosses the API is checked here so the rest of the crate can trust it.

use crate::error::{Error, Result};

/// Smallest padded piece: one fr32 block, four 32-byte nodes.
pub const MIN_PADDED: u64 = 128;
/// Smallest unpadded piece: the 127 bytes that fill one fr32 block.
pub const MIN_UNPADDED: u64 = 127;
/// Largest padded size a `u64` can hold (2^63 bytes).
pub const MAX_PADDED: u64 = 1 << 63;
/// Largest unpadded size, the one that pads to [`MAX_PADDED`].
pub const MAX_UNPADDED: u64 = MAX_PADDED / 128 * 127;

/// Checks that `size` is a valid padded piece size: a power of two of at least 128 bytes.
pub fn check_padded(size: u64) -> Result<()> {
    let problem = if size < MIN_PADDED {
        format!("is smaller than the smallest piece ({MIN_PADDED} bytes)")
    } else if !size.is_power_of_two() {
        "is not a power of two".to_string()
    } else {
        return Ok(());
    };
    let hint = match check_unpadded(size) {
        Ok(()) => format!(
            " ({size} is an unpadded size; padded it is {})",
            size / 127 * 128
        ),
        Err(_) => String::new(),
    };
    Err(Error::invalid(format!(
        "padded piece size {size} {problem}{hint}"
    )))
}

/// Checks that `size` is a valid unpadded piece size: `127·2^k` bytes.
pub fn check_unpadded(size: u64) -> Result<()> {
    if size < MIN_UNPADDED || size % 127 != 0 || !(size / 127).is_power_of_two() {
        return Err(Error::invalid(format!(
            "unpadded piece size {size} is not 127·2^k bytes (127, 254, 508, …)"
        )));
    }
    Ok(())
}

/// Padded size of a valid unpadded piece size (`u + u/127`).
pub fn unpadded_to_padded(unpadded: u64) -> Result<u64> {
    check_unpadded(unpadded)?;
    Ok(unpadded + unpadded / 127)
}

/// Unpadded size of a valid padded piece size (`p - p/128`).
pub fn padded_to_unpadded(padded: u64) -> Result<u64> {
    check_padded(padded)?;
    Ok(padded - padded / 128)
}

/// Smallest unpadded piece size that holds `payload` bytes (at least 127).
pub fn unpadded_size_for(payload: u64) -> Result<u64> {
    if payload > MAX_UNPADDED {
        return Err(Error::invalid(format!(
            "payload of {payload} bytes exceeds the largest piece ({MAX_UNPADDED} unpadded bytes)"
        )));
    }
    // payload ≤ 127·2^56, so the power of two below cannot overflow.
    Ok(127 * payload.div_ceil(127).max(1).next_power_of_two())
}

/// A piece size given either way: a power of two is read as a padded size, `127·2^k` as an
/// unpadded size (no number is both). Returns the unpadded size.
pub fn parse_piece_size(size: u64) -> Result<u64> {
    if size.is_power_of_two() {
        padded_to_unpadded(size)
    } else if check_unpadded(size).is_ok() {
        Ok(size)
    } else {
        Err(Error::invalid(format!(
            "piece size {size} is neither a padded size (a power of two ≥ 128) nor an unpadded \
             size (127·2^k)"
        )))
    }
}

/// Tree height of a padded size: log2 of its number of 32-byte leaves.
pub fn tree_height(padded: u64) -> u32 {
    padded.trailing_zeros().saturating_sub(5)
}

/// How far a payload is zero-extended before it is padded or hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceTarget {
    /// No extension: the payload must already have the right length.
    Exact,
    /// Up to the smallest piece that holds the payload.
    Smallest,
    /// Up to this unpadded piece size (`127·2^k`), which must hold the payload.
    Unpadded(u64),
}

impl PieceTarget {
    /// From an optional size given as padded or unpadded (see [`parse_piece_size`]).
    pub fn from_size(size: Option<u64>) -> Result<Self> {
        match size {
            None => Ok(PieceTarget::Exact),
            Some(size) => Ok(PieceTarget::Unpadded(parse_piece_size(size)?)),
        }
    }

    /// Unpadded piece size that a payload of `len` bytes is hashed as. [`PieceTarget::Exact`]
    /// requires `len` to be a valid unpadded piece size itself.
    pub fn piece_size(self, len: u64) -> Result<u64> {
        match self {
            PieceTarget::Exact => check_unpadded(len).map(|()| len).map_err(|_| {
                Error::invalid(format!(
                    "data length {len} is not an unpadded piece size (127·2^k bytes); \
                         pass pad_to to zero-extend it"
                ))
            }),
            PieceTarget::Smallest => unpadded_size_for(len),
            PieceTarget::Unpadded(size) => fits(len, size),
        }
    }

    /// Unpadded length that fr32 padding of `len` bytes produces output for. Unlike
    /// [`PieceTarget::piece_size`], [`PieceTarget::Exact`] accepts any multiple of 127.
    pub fn fr32_len(self, len: u64) -> Result<u64> {
        match self {
            PieceTarget::Exact if len % 127 == 0 => Ok(len),
            PieceTarget::Exact => Err(Error::invalid(format!(
                "data length {len} is not a multiple of 127 bytes; pass pad_to to zero-extend it"
            ))),
            other => other.piece_size(len),
        }
    }
}

fn fits(len: u64, unpadded: u64) -> Result<u64> {
    check_unpadded(unpadded)?;
    if len > unpadded {
        return Err(Error::invalid(format!(
            "data of {len} bytes does not fit in a piece of {unpadded} unpadded bytes"
        )));
    }
    Ok(unpadded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        for k in 0..57 {
            let u = 127u64 << k;
            let p = 128u64 << k;
            assert_eq!(unpadded_to_padded(u).ok(), Some(p));
            assert_eq!(padded_to_unpadded(p).ok(), Some(u));
            assert_eq!(parse_piece_size(p).ok(), Some(u));
            assert_eq!(parse_piece_size(u).ok(), Some(u));
        }
        assert_eq!(unpadded_to_padded(MAX_UNPADDED).ok(), Some(MAX_PADDED));
    }

    #[test]
    fn rejects_invalid_sizes() {
        for bad in [0, 1, 64, 100, 127 * 3, 129, 1000, 1024 + 1] {
            assert!(check_padded(bad).is_err(), "{bad}");
        }
        for bad in [0, 126, 128, 127 * 3, 127 * 6, 1016 + 127] {
            assert!(check_unpadded(bad).is_err(), "{bad}");
        }
        assert!(parse_piece_size(64).is_err());
        assert!(parse_piece_size(1000).is_err());
        let msg = check_padded(1000)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("1000") && msg.contains("power of two"),
            "{msg}"
        );
        let msg = check_padded(64).err().map(|e| e.to_string());
        assert!(msg.unwrap_or_default().contains("smallest piece"));
    }

    #[test]
    fn smallest_piece_for_payload() {
        let cases = [
            (0, 127),
            (1, 127),
            (127, 127),
            (128, 254),
            (254, 254),
            (255, 508),
        ];
        for (payload, want) in cases {
            assert_eq!(unpadded_size_for(payload).ok(), Some(want), "{payload}");
        }
        assert_eq!(unpadded_size_for(1017).ok(), Some(2032));
        assert_eq!(unpadded_size_for(MAX_UNPADDED).ok(), Some(MAX_UNPADDED));
        assert!(unpadded_size_for(MAX_UNPADDED + 1).is_err());
    }

    #[test]
    fn targets() {
        assert!(PieceTarget::Exact.piece_size(127 * 4).is_ok());
        assert!(PieceTarget::Exact.piece_size(127 * 3).is_err());
        assert_eq!(PieceTarget::Exact.fr32_len(127 * 3).ok(), Some(381));
        assert!(PieceTarget::Exact.fr32_len(100).is_err());
        assert_eq!(PieceTarget::Smallest.fr32_len(32).ok(), Some(127));
        let t = PieceTarget::from_size(Some(1024)).ok();
        assert_eq!(t, Some(PieceTarget::Unpadded(1016)));
        assert_eq!(PieceTarget::Unpadded(1016).piece_size(509).ok(), Some(1016));
        assert!(PieceTarget::Unpadded(1016).piece_size(1017).is_err());
        assert_eq!(tree_height(128), 2);
        assert_eq!(tree_height(32 << 30), 30);
    }
}
