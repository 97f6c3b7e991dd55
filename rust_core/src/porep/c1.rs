//! Commit phase 1: the seed picks the challenges; for each, the vanilla proof (inclusion paths in
//! tree_d, tree_r_last and tree_c, and the columns of the node and of its 14 parents).
//!
//! Phase-1 (commit) output blob ("SSC1", version 1), little-endian:
//! magic "SSC1" ‖ version u16 = 1 ‖ sector_size u64 ‖ prover_id (32) ‖ sector_number u64 ‖
//! ticket (32) ‖ seed (32) ‖ comm_d ‖ comm_r ‖ comm_c ‖ comm_r_last (32 each) ‖
//! challenge count u32 (= the size's porep_challenges) ‖ the challenge proofs (`vanilla.rs`).

use std::path::Path;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::hash::{hash_pair, Node};
use crate::porep::codec::{Reader, Writer};
use crate::porep::files;
use crate::porep::graph::Graph;
use crate::porep::ids::{porep_challenge, replica_id};
use crate::porep::params::SectorParams;
use crate::porep::pc1::tree_d_layout;
use crate::porep::pc2::tree_c_layout;
use crate::porep::pieces::{check_pieces, Piece};
use crate::porep::replica_tree::ReplicaTree;
use crate::porep::tree_file::StoredTree;
use crate::porep::vanilla::{ChallengeProof, ColumnProof};

const MAGIC: &[u8; 4] = b"SSC1";
const VERSION: u16 = 1;

/// Parsed C1 output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit1Output {
    pub sector_size: u64,
    pub prover_id: [u8; 32],
    pub sector_number: u64,
    pub ticket: [u8; 32],
    pub seed: [u8; 32],
    pub comm_d: Node,
    pub comm_r: Node,
    pub comm_c: Node,
    pub comm_r_last: Node,
    pub proofs: Vec<ChallengeProof>,
}

impl Commit1Output {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(MAGIC)
            .u16(VERSION)
            .u64(self.sector_size)
            .bytes(&self.prover_id)
            .u64(self.sector_number)
            .bytes(&self.ticket)
            .bytes(&self.seed)
            .node(&self.comm_d)
            .node(&self.comm_r)
            .node(&self.comm_c)
            .node(&self.comm_r_last)
            .u32(self.proofs.len() as u32);
        for p in &self.proofs {
            p.encode(&mut w);
        }
        w.into_bytes()
    }

    pub fn decode(blob: &[u8]) -> Result<Self> {
        let mut r = Reader::new("commit phase-1 output", blob);
        r.header(MAGIC, VERSION)?;
        let sector_size = r.u64("sector_size")?;
        let params = SectorParams::lookup(sector_size)?;
        let mut out = Self {
            sector_size,
            prover_id: r.node("prover_id")?,
            sector_number: r.u64("sector_number")?,
            ticket: r.node("ticket")?,
            seed: r.node("seed")?,
            comm_d: r.node("comm_d")?,
            comm_r: r.node("comm_r")?,
            comm_c: r.node("comm_c")?,
            comm_r_last: r.node("comm_r_last")?,
            proofs: Vec::new(),
        };
        let n = r.count("challenge count", params.porep_challenges)?;
        if n != params.porep_challenges {
            return Err(r.bad(format!(
                "{n} challenge proofs, expected {}",
                params.porep_challenges
            )));
        }
        for _ in 0..n {
            out.proofs.push(ChallengeProof::decode(&mut r, params)?);
        }
        r.finish()?;
        Ok(out)
    }
}

/// Reads the column of `node` (its label in every layer) and its tree_c path.
fn column_proof(
    layers: &[(std::fs::File, std::path::PathBuf)],
    tree_c: &StoredTree,
    node: u64,
) -> Result<ColumnProof> {
    let mut labels = Vec::with_capacity(layers.len());
    for (f, p) in layers {
        let mut n = [[0u8; 32]];
        files::read_nodes_at(f, p, node, &mut n)?;
        labels.push(n[0]);
    }
    let (_, path) = tree_c.path(node, |_, _| Ok(()))?;
    Ok(ColumnProof { labels, path })
}

/// Runs C1 and returns its output blob. Cancellable between challenges and parent columns; it
/// writes no file.
#[allow(clippy::too_many_arguments)]
pub fn seal_commit_phase1(
    sector_size: u64,
    cache_dir: &Path,
    sealed_path: &Path,
    prover_id: &[u8; 32],
    sector_number: u64,
    ticket: &[u8; 32],
    seed: &[u8; 32],
    pieces: &[Piece],
    comm_r: &Node,
    comm_d: &Node,
    cancel: &Cancel,
) -> Result<Vec<u8>> {
    let params = SectorParams::lookup(sector_size)?;
    cancel.check()?;
    let tree_d = StoredTree::open(&cache_dir.join(files::TREE_D), tree_d_layout(params))?;
    if tree_d.root()? != *comm_d {
        return Err(Error::invalid(
            "comm_d does not match the cache's tree_d (wrong sector or cache)",
        ));
    }
    check_pieces(params, pieces, &tree_d)?;
    let (comm_c, comm_r_last) = files::read_p_aux(cache_dir)?;
    if hash_pair(&comm_c, &comm_r_last) != *comm_r {
        return Err(Error::invalid(
            "comm_r does not match the cache's p_aux (H(comm_c, comm_r_last))",
        ));
    }
    let tree_c = StoredTree::open(&cache_dir.join(files::TREE_C), tree_c_layout(params))?;
    let replica_tree = ReplicaTree::open(params, cache_dir, sealed_path)?;
    let layers = (1..=params.layers as u32)
        .map(|l| {
            let p = files::layer_path(cache_dir, l);
            files::open_read(&p).map(|f| (f, p))
        })
        .collect::<Result<Vec<_>>>()?;
    let graph = Graph::new(sector_size);
    let rid = replica_id(sector_size, prover_id, sector_number, ticket, comm_d);
    let mut proofs = Vec::with_capacity(params.porep_challenges);
    for j in 0..params.porep_challenges as u64 {
        cancel.check()?;
        let c = porep_challenge(&rid, seed, j, params.nodes());
        let (data, data_path) = tree_d.path(c, |_, _| Ok(()))?;
        let (replica, replica_path) = replica_tree.path(c)?;
        let column = column_proof(&layers, &tree_c, c)?;
        let parents = graph
            .parents(c)
            .iter()
            .map(|&p| {
                cancel.check()?;
                column_proof(&layers, &tree_c, p)
            })
            .collect::<Result<Vec<_>>>()?;
        proofs.push(ChallengeProof {
            challenge: c,
            data,
            data_path,
            replica,
            replica_path,
            column,
            parents,
        });
    }
    Ok(Commit1Output {
        sector_size,
        prover_id: *prover_id,
        sector_number,
        ticket: *ticket,
        seed: *seed,
        comm_d: *comm_d,
        comm_r: *comm_r,
        comm_c,
        comm_r_last,
        proofs,
    }
    .encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(params: &SectorParams, v: u8) -> ColumnProof {
        ColumnProof {
            labels: vec![[v; 32]; params.layers],
            path: vec![[v + 1; 32]; params.tree_height() as usize],
        }
    }

    fn sample() -> Commit1Output {
        let params = SectorParams::lookup(2048).unwrap();
        let h = params.tree_height() as usize;
        let proof = ChallengeProof {
            challenge: 5,
            data: [1; 32],
            data_path: vec![[2; 32]; h],
            replica: [3; 32],
            replica_path: vec![[4; 32]; h],
            column: column(params, 5),
            parents: (0..14).map(|k| column(params, 10 + k)).collect(),
        };
        Commit1Output {
            sector_size: 2048,
            prover_id: [7; 32],
            sector_number: 9,
            ticket: [8; 32],
            seed: [9; 32],
            comm_d: [10; 32],
            comm_r: [11; 32],
            comm_c: [12; 32],
            comm_r_last: [13; 32],
            proofs: vec![proof.clone(), proof],
        }
    }

    #[test]
    fn blob_round_trips_with_the_documented_size() {
        let out = sample();
        let blob = out.encode();
        // header 4+2+8+32+8+32+32 + 4 commitments + count, then 2 × (8 + 32·(2·7 + 15·8)).
        assert_eq!(blob.len(), 118 + 128 + 4 + 2 * (8 + 32 * (14 + 120)));
        assert_eq!(Commit1Output::decode(&blob).unwrap(), out);
    }

    #[test]
    fn malformed_blobs_are_input_errors() {
        let blob = sample().encode();
        for cut in [0, 3, 10, 200, blob.len() - 1] {
            let e = Commit1Output::decode(&blob[..cut]).unwrap_err().to_string();
            assert!(e.contains("commit phase-1 output"), "{e}");
        }
        let mut long = blob.clone();
        long.push(0);
        assert!(Commit1Output::decode(&long).is_err());
        let mut wrong_count = blob.clone();
        wrong_count[246..250].copy_from_slice(&3u32.to_le_bytes());
        assert!(Commit1Output::decode(&wrong_count)
            .unwrap_err()
            .to_string()
            .contains("at most 2"));
        let mut magic = blob;
        magic[0] = b'X';
        assert!(Commit1Output::decode(&magic)
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
    }
}
