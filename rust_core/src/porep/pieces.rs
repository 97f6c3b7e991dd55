//! The `pieces` argument of PC1/C1 — (padded size, commP) pairs — checked against tree_d, the
//! Merkle tree over the unsealed file.
//!
//! Pieces are laid left to right, each aligned to a multiple of its own padded size; gaps and the
//! tail are zero. A piece of size s at padded offset o is then exactly node o/s at level
//! log2(s/32) of tree_d, so checking each piece (and each aligned zero run) against that node
//! proves that the commD computed from the pieces equals tree_d's root, and names the first
//! piece that does not match when it does not. [`check_pieces`] runs the fr32 branch's
//! `unsealed_commitment` first and uses this comparison to explain a mismatch.

use crate::error::{Error, Result};
use crate::hash::{hash_pair, Node, NODE_SIZE};
use crate::porep::params::SectorParams;
use crate::porep::tree_file::StoredTree;

/// One piece of the sector: its padded size and piece commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub padded_size: u64,
    pub comm_p: Node,
}

/// A run of the sector: a piece, or an aligned run of zeros (a filler piece).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Piece {
        index: usize,
        offset: u64,
        piece: Piece,
    },
    Zero {
        offset: u64,
        size: u64,
    },
}

/// Aligned zero runs covering [from, to): largest aligned power of two first, as filler pieces.
fn zero_runs(mut from: u64, to: u64, out: &mut Vec<Run>) {
    while from < to {
        let align = if from == 0 {
            u64::MAX
        } else {
            1u64 << from.trailing_zeros()
        };
        let mut size = align.min((to - from).next_power_of_two());
        while size > to - from {
            size /= 2;
        }
        out.push(Run::Zero { offset: from, size });
        from += size;
    }
}

fn layout(params: &SectorParams, pieces: &[Piece]) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    let mut offset = 0u64;
    for (index, piece) in pieces.iter().enumerate() {
        let s = piece.padded_size;
        if !s.is_power_of_two() || s < 128 || s > params.sector_size {
            return Err(Error::invalid(format!(
                "piece {index}: padded size {s} is not a power of two in [128, {}]",
                params.sector_size
            )));
        }
        let aligned = offset.div_ceil(s) * s;
        zero_runs(offset, aligned, &mut runs);
        if aligned + s > params.sector_size {
            return Err(Error::invalid(format!(
                "pieces do not fit the sector: piece {index} ({s} bytes) would end at {} > {}",
                aligned + s,
                params.sector_size
            )));
        }
        runs.push(Run::Piece {
            index,
            offset: aligned,
            piece: *piece,
        });
        offset = aligned + s;
    }
    zero_runs(offset, params.sector_size, &mut runs);
    Ok(runs)
}

fn hex(n: &Node) -> String {
    n.iter().map(|b| format!("{b:02x}")).collect()
}

/// The PC1/C1 pieces check: commD computed from `pieces` (`commd::unsealed_commitment`) must
/// equal tree_d's root. When it does not, the per-piece comparison below names the culprit.
pub fn check_pieces(params: &SectorParams, pieces: &[Piece], tree_d: &StoredTree) -> Result<()> {
    let pairs: Vec<(u64, Node)> = pieces.iter().map(|p| (p.padded_size, p.comm_p)).collect();
    let comm_d = crate::commitments::commd::unsealed_commitment(params.sector_size, &pairs)?;
    let root = tree_d.root()?;
    if comm_d == root {
        return Ok(());
    }
    check_against_tree_d(params, pieces, tree_d)?;
    Err(Error::invalid(format!(
        "commD of the pieces {} does not match the unsealed file's {}",
        hex(&comm_d),
        hex(&root)
    )))
}

/// Checks every piece (and zero run) against tree_d; `Ok` means the commD of `pieces` equals
/// tree_d's root.
pub fn check_against_tree_d(
    params: &SectorParams,
    pieces: &[Piece],
    tree_d: &StoredTree,
) -> Result<()> {
    let mut zero = vec![[0u8; 32]];
    for k in 0..params.tree_height() as usize {
        let z = hash_pair(&zero[k], &zero[k]);
        zero.push(z);
    }
    for run in layout(params, pieces)? {
        let (offset, size) = match run {
            Run::Piece { offset, piece, .. } => (offset, piece.padded_size),
            Run::Zero { offset, size } => (offset, size),
        };
        let level = (size / NODE_SIZE as u64).trailing_zeros();
        let have = tree_d.node(level, offset / size)?;
        match run {
            Run::Piece { index, piece, .. } if have != piece.comm_p => {
                return Err(Error::invalid(format!(
                    "piece {index} ({size} bytes at padded offset {offset}): commP {} does not \
                     match the unsealed file, whose data there has commP {}",
                    hex(&piece.comm_p),
                    hex(&have)
                )))
            }
            Run::Zero { .. } if Some(&have) != zero.get(level as usize) => {
                return Err(Error::invalid(format!(
                    "unsealed file has non-zero data in {size} bytes at padded offset {offset}, \
                     outside every piece (commD of the pieces would not match the file)"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(size: u64) -> Piece {
        Piece {
            padded_size: size,
            comm_p: [0; 32],
        }
    }

    #[test]
    fn layout_aligns_pieces_and_fills_gaps_with_aligned_zero_runs() {
        let params = SectorParams::lookup(2048).unwrap();
        let runs = layout(params, &[p(128), p(512), p(256)]).unwrap();
        let spans: Vec<(u64, u64, bool)> = runs
            .iter()
            .map(|r| match r {
                Run::Piece { offset, piece, .. } => (*offset, piece.padded_size, true),
                Run::Zero { offset, size } => (*offset, *size, false),
            })
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, 128, true),
                (128, 128, false),
                (256, 256, false),
                (512, 512, true),
                (1024, 256, true),
                (1280, 256, false),
                (1536, 512, false)
            ]
        );
        let total: u64 = spans.iter().map(|s| s.1).sum();
        assert_eq!(total, 2048);
    }

    #[test]
    fn bad_sizes_and_overflow_are_named() {
        let params = SectorParams::lookup(2048).unwrap();
        assert!(layout(params, &[p(100)])
            .unwrap_err()
            .to_string()
            .contains("piece 0"));
        let e = layout(params, &[p(1024), p(2048)]).unwrap_err().to_string();
        assert!(e.contains("piece 1"), "{e}");
        assert_eq!(
            layout(params, &[]).unwrap(),
            vec![Run::Zero {
                offset: 0,
                size: 2048
            }]
        );
    }
}
