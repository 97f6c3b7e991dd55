//! Unsealed sector commitment (commD) from the sector's pieces, without their data: the root of the
//! tree over the whole padded sector, which is made of the pieces' own trees and zero subtrees.
//!
//! Filecoin's layout rule: pieces are laid out left to right in the given order, each starting at
//! a multiple of its own padded size; the gaps this leaves and the tail of the sector are zeros.
//! Every gap decomposes into aligned zero subtrees (take the largest power of two that divides the
//! current offset), so everything is pushed onto one [`MerkleStack`] and the result equals the root
//! of the full padded sector.

use crate::commitments::piece_size::{check_padded, tree_height};
use crate::commitments::root_stack::MerkleStack;
use crate::commitments::zero_comm::zero_root;
use crate::error::{Error, Result};
use crate::hash::Node;

/// commD of a sector of `sector_size` padded bytes holding `pieces` = (padded size, commP) in
/// order. Fails if a size is not a valid padded piece size or the pieces, aligned, overflow the
/// sector.
pub fn unsealed_commitment(sector_size: u64, pieces: &[(u64, Node)]) -> Result<Node> {
    check_padded(sector_size).map_err(|e| Error::invalid(format!("sector size: {e}")))?;
    let mut stack = MerkleStack::new();
    let mut offset = 0u64;
    for (i, &(size, commitment)) in pieces.iter().enumerate() {
        check_padded(size).map_err(|e| Error::invalid(format!("piece {i}: {e}")))?;
        if size > sector_size {
            return Err(Error::invalid(format!(
                "piece {i} of {size} padded bytes is larger than the sector ({sector_size} bytes)"
            )));
        }
        // offset ≤ sector_size and size divides sector_size, so this cannot overflow.
        let start = offset.div_ceil(size) * size;
        if start + size > sector_size {
            return Err(Error::invalid(format!(
                "piece {i} of {size} padded bytes does not fit: pieces are placed in order, each \
                 at a multiple of its own size, so it would start at padded offset {start} and end \
                 past the sector size {sector_size} (the pieces before it end at {offset})"
            )));
        }
        push_zeros(&mut stack, offset, start)?;
        stack.push(tree_height(size), commitment);
        offset = start + size;
    }
    push_zeros(&mut stack, offset, sector_size)?;
    stack
        .root_zero_padded(tree_height(sector_size))
        .ok_or_else(|| Error::invalid("pieces do not fill a single tree"))
}

/// Pushes zero subtrees covering padded bytes `[from, to)`: at each step the largest aligned
/// power of two that starts at `from` and does not pass `to`.
fn push_zeros(stack: &mut MerkleStack, mut from: u64, to: u64) -> Result<()> {
    while from < to {
        let room = 1u64 << (63 - (to - from).leading_zeros());
        let align = if from == 0 {
            room
        } else {
            from & from.wrapping_neg()
        };
        let size = room.min(align);
        let height = tree_height(size);
        let zero = zero_root(height)
            .ok_or_else(|| Error::invalid(format!("no zero commitment for {size} bytes")))?;
        stack.push(height, *zero);
        from += size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commitments::commp::piece_commitment;
    use crate::commitments::piece_size::PieceTarget;
    use crate::commitments::zero_comm::ZERO_COMMITMENTS;

    #[test]
    fn empty_sector_is_zero_commitment() {
        assert_eq!(
            unsealed_commitment(2048, &[]).ok(),
            Some(ZERO_COMMITMENTS[6])
        );
        assert_eq!(
            unsealed_commitment(128, &[]).ok(),
            Some(ZERO_COMMITMENTS[2])
        );
    }

    #[test]
    fn equals_commp_of_laid_out_sector() {
        // 127-byte piece at 0, 508-byte piece aligned to padded 512, 254 at 1024: 2 KiB sector.
        let a: Vec<u8> = (0..127u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..508u32).map(|i| (i * 7) as u8).collect();
        let c: Vec<u8> = (0..254u32).map(|i| (i * 13 + 1) as u8).collect();
        let commp = |d: &[u8]| piece_commitment(d, PieceTarget::Exact).unwrap_or_default();
        let mut sector = vec![0u8; 2032];
        sector[..127].copy_from_slice(&a);
        sector[508..1016].copy_from_slice(&b);
        sector[1016..1270].copy_from_slice(&c);
        let pieces = [(128, commp(&a)), (512, commp(&b)), (256, commp(&c))];
        assert_eq!(
            unsealed_commitment(2048, &pieces).ok(),
            Some(commp(&sector))
        );
    }

    #[test]
    fn one_full_piece_is_its_own_commitment() {
        let p = [7u8; 32];
        assert_eq!(unsealed_commitment(1 << 35, &[(1 << 35, p)]).ok(), Some(p));
    }

    #[test]
    fn rejects_bad_layouts() {
        let p = [1u8; 32];
        let err = |s, pieces: &[(u64, Node)]| {
            unsealed_commitment(s, pieces)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err(2000, &[]).contains("sector size"));
        assert!(err(2048, &[(100, p)]).contains("piece 0"));
        assert!(err(2048, &[(127, p)]).contains("unpadded size; padded it is 128"));
        assert!(err(2048, &[(1000, p)]).contains("power of two"));
        assert!(err(2048, &[(4096, p)]).contains("larger than the sector"));
        let msg = err(2048, &[(128, p), (1024, p), (1024, p)]);
        assert!(
            msg.contains("piece 2") && msg.contains("does not fit"),
            "{msg}"
        );
        assert!(unsealed_commitment(2048, &[(1024, p), (1024, p)]).is_ok());
    }
}
