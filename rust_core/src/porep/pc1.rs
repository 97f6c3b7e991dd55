//! PreCommit phase 1: tree_d over the unsealed file, the pieces check (commD), replica_id, and
//! the SDR labeling of every layer into the cache directory.
//!
//! Phase-1 output blob ("SSP1", version 1), little-endian:
//! magic "SSP1" (4) ‖ version u16 = 1 ‖ sector_size u64 ‖ prover_id (32) ‖ sector_number u64 ‖
//! ticket (32) ‖ comm_d (32) ‖ replica_id (32) ‖ piece count u32 ‖ pieces (padded_size u64 ‖
//! comm_p (32)) each. replica_id is redundant on purpose: PC2 re-derives it from the other fields
//! and rejects a blob whose fields were changed.

use std::path::Path;

use crate::cancel::{Cancel, Scratch};
use crate::error::{Error, Result};
use crate::gpu::cpu::CpuBackend;
use crate::hash::Node;
use crate::porep::codec::{Reader, Writer};
use crate::porep::files;
use crate::porep::ids::replica_id;
use crate::porep::labels::label_all_layers;
use crate::porep::params::SectorParams;
pub use crate::porep::pc1_batch::{
    seal_pre_commit_phase1_batch, seal_pre_commit_phase1_batch_stoppable,
    seal_pre_commit_phase1_batch_using, BatchLanes, LaneStops, MAX_BATCH, MAX_SHANI_LANES,
    MIN_VL8_BATCH,
};
use crate::porep::pieces::{check_pieces, Piece};
use crate::porep::tree_file::{self, Layout, StoredTree};

const MAGIC: &[u8; 4] = b"SSP1";
const VERSION: u16 = 1;
/// More pieces than 2 KiB-sector nodes cannot fit any sector; bounds the allocation on decode.
const MAX_PIECES: usize = 1 << 24;

/// Parsed phase-1 output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase1Output {
    pub sector_size: u64,
    pub prover_id: [u8; 32],
    pub sector_number: u64,
    pub ticket: [u8; 32],
    pub comm_d: Node,
    pub replica_id: Node,
    pub pieces: Vec<Piece>,
}

impl Phase1Output {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(MAGIC)
            .u16(VERSION)
            .u64(self.sector_size)
            .bytes(&self.prover_id)
            .u64(self.sector_number)
            .bytes(&self.ticket)
            .node(&self.comm_d)
            .node(&self.replica_id)
            .u32(self.pieces.len() as u32);
        for p in &self.pieces {
            w.u64(p.padded_size).node(&p.comm_p);
        }
        w.into_bytes()
    }

    /// Parses and checks a blob: known size, replica_id consistent with the other fields.
    pub fn decode(blob: &[u8]) -> Result<Self> {
        let mut r = Reader::new("phase-1 output", blob);
        r.header(MAGIC, VERSION)?;
        let sector_size = r.u64("sector_size")?;
        let prover_id = r.node("prover_id")?;
        let sector_number = r.u64("sector_number")?;
        let ticket = r.node("ticket")?;
        let comm_d = r.node("comm_d")?;
        let rid = r.node("replica_id")?;
        let n = r.count("piece count", MAX_PIECES)?;
        let mut pieces = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            pieces.push(Piece {
                padded_size: r.u64("piece size")?,
                comm_p: r.node("piece commP")?,
            });
        }
        r.finish()?;
        SectorParams::lookup(sector_size)?;
        if rid != replica_id(sector_size, &prover_id, sector_number, &ticket, &comm_d) {
            return Err(Error::invalid(
                "phase-1 output is corrupt: its replica_id does not match its other fields",
            ));
        }
        Ok(Self {
            sector_size,
            prover_id,
            sector_number,
            ticket,
            comm_d,
            replica_id: rid,
            pieces,
        })
    }
}

/// Layout of tree_d: every level stored, leaves = the padded unsealed data.
pub fn tree_d_layout(params: &SectorParams) -> Layout {
    Layout {
        leaves: params.nodes(),
        skip: 0,
    }
}

/// Runs PC1 and returns the phase-1 output blob. Cancellable (`cancel`, checked every 4096
/// labels and every tree chunk and level); a cancelled or failed PC1 removes the tree_d and layer
/// files it wrote, so the cache holds no half-written layer.
#[allow(clippy::too_many_arguments)]
pub fn seal_pre_commit_phase1(
    sector_size: u64,
    cache_dir: &Path,
    unsealed_path: &Path,
    prover_id: &[u8; 32],
    sector_number: u64,
    ticket: &[u8; 32],
    pieces: &[Piece],
    cancel: &Cancel,
) -> Result<Vec<u8>> {
    let input = Pc1Input {
        cache_dir,
        unsealed_path,
        prover_id: *prover_id,
        sector_number,
        ticket: *ticket,
        pieces,
    };
    let params = SectorParams::lookup(sector_size)?;
    let mut scratch = Scratch::new();
    let out = prepare(params, &input, cancel, &mut scratch)?;
    label_all_layers(params, &out.replica_id, Some(cache_dir), cancel)?;
    scratch.keep();
    Ok(out.encode())
}

/// One sector's PC1 arguments (all but the size, which a batch shares).
#[derive(Debug, Clone)]
pub struct Pc1Input<'a> {
    pub cache_dir: &'a Path,
    pub unsealed_path: &'a Path,
    pub prover_id: [u8; 32],
    pub sector_number: u64,
    pub ticket: [u8; 32],
    pub pieces: &'a [Piece],
}

/// The part of PC1 before the labeling: the cache directory, tree_d over the unsealed file (into
/// `scratch`, removed if the call fails later), the pieces check and replica_id.
pub(crate) fn prepare(
    params: &SectorParams,
    input: &Pc1Input<'_>,
    cancel: &Cancel,
    scratch: &mut Scratch,
) -> Result<Phase1Output> {
    let (cache_dir, unsealed_path) = (input.cache_dir, input.unsealed_path);
    let sector_size = params.sector_size;
    cancel.check()?;
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| Error::io(format!("create cache dir {}", cache_dir.display()), e))?;
    let unsealed = files::open_read(unsealed_path)?;
    let len = files::file_len(unsealed_path).unwrap_or(0);
    if len < sector_size {
        return Err(Error::invalid(format!(
            "unsealed file {} is {len} bytes, expected at least the sector size {sector_size}",
            unsealed_path.display()
        )));
    }
    let tree_d_path = cache_dir.join(files::TREE_D);
    scratch.add(&tree_d_path);
    let layout = tree_d_layout(params);
    let comm_d = tree_file::build(&tree_d_path, layout, &CpuBackend, cancel, |first, buf| {
        files::read_nodes_at_cancellable(&unsealed, unsealed_path, first, buf, cancel)?;
        match buf.iter().position(|n| n[31] & 0xc0 != 0) {
            Some(k) => Err(Error::invalid(format!(
                "unsealed file {} is not fr32-padded: node {} has its top two bits set",
                unsealed_path.display(),
                first + k as u64
            ))),
            None => Ok(()),
        }
    })?;
    let tree_d = StoredTree::open(&tree_d_path, layout)?;
    check_pieces(params, input.pieces, &tree_d)?;
    let rid = replica_id(
        sector_size,
        &input.prover_id,
        input.sector_number,
        &input.ticket,
        &comm_d,
    );
    Ok(Phase1Output {
        sector_size,
        prover_id: input.prover_id,
        sector_number: input.sector_number,
        ticket: input.ticket,
        comm_d,
        replica_id: rid,
        pieces: input.pieces.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trips_and_rejects_changed_fields() {
        let out = Phase1Output {
            sector_size: 2048,
            prover_id: [1; 32],
            sector_number: 9,
            ticket: [2; 32],
            comm_d: [3; 32],
            replica_id: replica_id(2048, &[1; 32], 9, &[2; 32], &[3; 32]),
            pieces: vec![Piece {
                padded_size: 2048,
                comm_p: [3; 32],
            }],
        };
        let blob = out.encode();
        assert_eq!(Phase1Output::decode(&blob).unwrap(), out);
        let mut changed = blob.clone();
        changed[50] ^= 1; // inside sector_number
        let e = Phase1Output::decode(&changed).unwrap_err().to_string();
        assert!(e.contains("replica_id"), "{e}");
        assert!(Phase1Output::decode(&blob[..blob.len() - 1]).is_err());
        let mut bad_size = blob.clone();
        bad_size[6..14].copy_from_slice(&4096u64.to_le_bytes());
        assert!(Phase1Output::decode(&bad_size)
            .unwrap_err()
            .to_string()
            .contains("unsupported sector size"));
    }
}
