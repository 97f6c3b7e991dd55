//! The one table of per-sector-size parameters of the PoRep emulation.
//!
//! Every other module asks this table instead of hard-coding a number, so that the services'
//! resource table, the prover and the verifier can never disagree. The counts follow Filecoin's
//! `StackedDrg*V1_1` proofs where they exist (layers, PoRep challenges, PoSt challenge and sector
//! counts); `c2_witness_log2` and `tree_r_rows_to_discard` are the emulation's own cost knobs.

use crate::error::{Error, Result};
use crate::hash::NODE_SIZE;

/// Base (same-layer) parents of every node but node 0.
pub const BASE_DEGREE: usize = 6;
/// Expander (previous-layer) parents of every node in layers 2 and up.
pub const EXPANDER_DEGREE: usize = 8;
/// Base + expander parents: one parents-cache record.
pub const TOTAL_PARENTS: usize = BASE_DEGREE + EXPANDER_DEGREE;
/// Parent-label slots hashed into each label (parents repeat cyclically to fill them), which makes
/// every label of a node with parents exactly 20 SHA-256 compressions, as in SDR.
pub const LABEL_PARENT_SLOTS: usize = 37;
/// Spot checks of the C2 witness tree opened in a final proof.
pub const C2_SPOT_CHECKS: usize = 16;
/// Leaves per C2 witness chunk (2^16): the unit of work handed to a GPU backend in one call.
pub const C2_CHUNK_LOG2: u32 = 16;

/// Parameters of one sector size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectorParams {
    /// Sector size in bytes (padded, i.e. what the sealed file holds).
    pub sector_size: u64,
    /// SDR layers; the last one is the encoding key.
    pub layers: usize,
    /// Challenged nodes in one PoRep proof (Filecoin's minimum challenges for the size).
    pub porep_challenges: usize,
    /// Filecoin's partition count for the size (informational: we prove all challenges at once).
    pub porep_partitions: usize,
    /// Challenged leaves per sector in a Window PoSt.
    pub window_post_challenges: usize,
    /// Sectors per Window PoSt partition (informational, for the scheduler).
    pub window_post_sector_count: usize,
    /// Challenged leaves per sector in a Winning PoSt.
    pub winning_post_challenges: usize,
    /// Sectors proven in one Winning PoSt.
    pub winning_post_sector_count: usize,
    /// Files tree_r_last is split into (`sc-02-data-tree-r-last[-k].dat`), as Lotus lays them out.
    pub tree_r_last_parts: usize,
    /// Bottom levels of tree_r_last not stored; proofs rebuild them from the sealed file.
    pub tree_r_rows_to_discard: u32,
    /// log2 of the number of leaves of the C2 witness tree (the emulated SNARK workload): chosen
    /// so that C2 costs about as much as PC2 on the CPU backend, as in CPU-only lotus-bench runs
    /// (PC2 2h18m, C2 2h42m for 32 GiB); a GPU backend then shortens it the way GPUs do.
    pub c2_witness_log2: u32,
}

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// The table, smallest size first.
pub const SECTOR_PARAMS: [SectorParams; 5] = [
    SectorParams {
        sector_size: 2 * KIB,
        layers: 2,
        porep_challenges: 2,
        porep_partitions: 1,
        window_post_challenges: 10,
        window_post_sector_count: 2,
        winning_post_challenges: 66,
        winning_post_sector_count: 1,
        tree_r_last_parts: 1,
        tree_r_rows_to_discard: 6,
        c2_witness_log2: 10,
    },
    SectorParams {
        sector_size: 8 * MIB,
        layers: 2,
        porep_challenges: 2,
        porep_partitions: 1,
        window_post_challenges: 10,
        window_post_sector_count: 2,
        winning_post_challenges: 66,
        winning_post_sector_count: 1,
        tree_r_last_parts: 1,
        tree_r_rows_to_discard: 6,
        c2_witness_log2: 14,
    },
    SectorParams {
        sector_size: 512 * MIB,
        layers: 2,
        porep_challenges: 2,
        porep_partitions: 1,
        window_post_challenges: 10,
        window_post_sector_count: 2,
        winning_post_challenges: 66,
        winning_post_sector_count: 1,
        tree_r_last_parts: 1,
        tree_r_rows_to_discard: 6,
        c2_witness_log2: 26,
    },
    SectorParams {
        sector_size: 32 * GIB,
        layers: 11,
        porep_challenges: 176,
        porep_partitions: 10,
        window_post_challenges: 10,
        window_post_sector_count: 2349,
        winning_post_challenges: 66,
        winning_post_sector_count: 1,
        tree_r_last_parts: 8,
        tree_r_rows_to_discard: 6,
        c2_witness_log2: 33,
    },
    SectorParams {
        sector_size: 64 * GIB,
        layers: 11,
        porep_challenges: 176,
        porep_partitions: 10,
        window_post_challenges: 10,
        window_post_sector_count: 2300,
        winning_post_challenges: 66,
        winning_post_sector_count: 1,
        tree_r_last_parts: 16,
        tree_r_rows_to_discard: 6,
        c2_witness_log2: 33,
    },
];

impl SectorParams {
    /// Looks a size up; any other size is an input error naming the supported ones.
    pub fn lookup(sector_size: u64) -> Result<&'static SectorParams> {
        SECTOR_PARAMS
            .iter()
            .find(|p| p.sector_size == sector_size)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unsupported sector size {sector_size}: expected one of {}",
                    SECTOR_PARAMS
                        .iter()
                        .map(|p| p.sector_size.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Nodes (32-byte leaves) in the sector.
    pub fn nodes(&self) -> u64 {
        self.sector_size / NODE_SIZE as u64
    }

    /// Height of every binary tree over the sector's nodes (number of sibling nodes in a path).
    pub fn tree_height(&self) -> u32 {
        self.nodes().trailing_zeros()
    }

    /// Bytes of unpadded data a sector holds (127/128 of its size).
    pub fn unpadded_size(&self) -> u64 {
        self.sector_size / 128 * 127
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_is_a_power_of_two_with_consistent_counts() {
        for p in SECTOR_PARAMS {
            assert!(p.sector_size.is_power_of_two());
            assert!(p.nodes() >= 64);
            assert!(p.tree_r_last_parts.is_power_of_two());
            assert!(p.nodes() / p.tree_r_last_parts as u64 >= 1 << p.tree_r_rows_to_discard);
            assert!(p.c2_witness_log2 >= 4);
            assert_eq!(p.layers, if p.sector_size <= 512 * MIB { 2 } else { 11 });
        }
    }

    #[test]
    fn unknown_size_is_an_input_error() {
        let err = SectorParams::lookup(4096).unwrap_err();
        assert!(err.to_string().contains("unsupported sector size 4096"));
        assert_eq!(SectorParams::lookup(2048).unwrap().tree_height(), 6);
    }
}
