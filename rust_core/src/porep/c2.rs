//! Commit phase 2 and seal verification.
//!
//! A real C2 turns the vanilla proofs into a Groth16 SNARK: a large, GPU-friendly computation
//! whose result is small and checkable from public inputs. The emulation keeps the vanilla
//! proofs in the final proof (so every check is real) and adds the workload: a Fiat–Shamir
//! transcript T over the public inputs and the vanilla proofs, a witness tree of 2^w leaves
//! `leaf_j = SHA-256(T ‖ j)` (w per size in the params table, 2^30 for 32 GiB), and openings of 16
//! leaves at positions drawn from T and the witness root. The tree is the GPU-eligible part.
//!
//! Final proof ("SSPF", version 1), little-endian:
//! magic "SSPF" ‖ version u16 = 1 ‖ sector_size u64 ‖ comm_c ‖ comm_r_last ‖ challenge count u32
//! ‖ challenge proofs (`vanilla.rs`) ‖ witness_root ‖ 16 witness paths of w nodes each.

use rayon::prelude::*;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::gpu::{witness_leaf, Backend};
use crate::hash::{hash_pair, Node};
use crate::porep::binary_tree;
use crate::porep::c1::Commit1Output;
use crate::porep::codec::{Reader, Writer};
use crate::porep::graph::Graph;
use crate::porep::ids::{le_u64, porep_challenge, replica_id, sha256_parts};
use crate::porep::params::{SectorParams, C2_CHUNK_LOG2, C2_SPOT_CHECKS};
use crate::porep::vanilla::ChallengeProof;

const MAGIC: &[u8; 4] = b"SSPF";
const VERSION: u16 = 1;
/// Witness chunks per backend call (bounds host and device memory: 2^8 · 2^16 leaves).
const CHUNKS_PER_CALL: u64 = 1 << 8;

/// Public inputs of a seal proof.
pub struct SealPublic<'a> {
    pub sector_size: u64,
    pub comm_r: &'a Node,
    pub comm_d: &'a Node,
    pub prover_id: &'a [u8; 32],
    pub sector_number: u64,
    pub ticket: &'a [u8; 32],
    pub seed: &'a [u8; 32],
}

/// T = SHA-256("sectorstorage/porep/v1/c2-transcript" ‖ sector_size (u64 LE) ‖ prover_id ‖
/// sector_number (u64 LE) ‖ ticket ‖ seed ‖ comm_d ‖ comm_r ‖ comm_c ‖ comm_r_last ‖
/// SHA-256(the challenge-proofs bytes)).
fn transcript(public: &SealPublic, comm_c: &Node, comm_r_last: &Node, vanilla: &[u8]) -> [u8; 32] {
    let vanilla_digest = sha256_parts(&[vanilla]);
    sha256_parts(&[
        b"sectorstorage/porep/v1/c2-transcript",
        &public.sector_size.to_le_bytes(),
        public.prover_id,
        &public.sector_number.to_le_bytes(),
        public.ticket,
        public.seed,
        public.comm_d,
        public.comm_r,
        comm_c,
        comm_r_last,
        &vanilla_digest,
    ])
}

/// Spot position s: LE64(SHA-256("sectorstorage/porep/v1/c2-spot" ‖ T ‖ witness_root ‖
/// s (u32 LE))[0..8]) mod 2^w.
fn spot_position(t: &[u8; 32], witness_root: &Node, s: u32, witness_log2: u32) -> u64 {
    let d = sha256_parts(&[
        b"sectorstorage/porep/v1/c2-spot",
        t,
        witness_root,
        &s.to_le_bytes(),
    ]);
    le_u64(&d) & ((1u64 << witness_log2) - 1)
}

fn chunk_log2(params: &SectorParams) -> u32 {
    C2_CHUNK_LOG2.min(params.c2_witness_log2)
}

/// Roots of all witness chunks, computed by the backend a batch at a time.
fn witness_chunk_roots(
    params: &SectorParams,
    t: &[u8; 32],
    backend: &dyn Backend,
    cancel: &Cancel,
) -> Result<Vec<Node>> {
    let c = chunk_log2(params);
    let chunks = 1u64 << (params.c2_witness_log2 - c);
    let mut roots = vec![[0u8; 32]; chunks as usize];
    for (b, out) in roots.chunks_mut(CHUNKS_PER_CALL as usize).enumerate() {
        cancel.check()?;
        backend.witness_chunk_roots(t, c, b as u64 * CHUNKS_PER_CALL, out, cancel)?;
    }
    Ok(roots)
}

/// Path of witness leaf `pos`: within its chunk (regenerated on the CPU), then the chunk tree.
fn witness_path(params: &SectorParams, t: &[u8; 32], top: &[Vec<Node>], pos: u64) -> Vec<Node> {
    let c = chunk_log2(params);
    let chunk = pos >> c;
    let leaves = (0..1u64 << c)
        .into_par_iter()
        .map(|j| witness_leaf(t, (chunk << c) + j))
        .collect();
    let mut path =
        binary_tree::path_from_levels(&binary_tree::build_levels(leaves), pos & ((1 << c) - 1));
    path.extend(binary_tree::path_from_levels(top, chunk));
    path
}

/// Runs C2: checks the C1 output belongs to this sector, then builds the final proof.
/// Cancellable (checked per witness chunk in the backend and per spot check); writes no file.
pub fn seal_commit_phase2(
    c1_output: &[u8],
    prover_id: &[u8; 32],
    sector_number: u64,
    backend: &dyn Backend,
    cancel: &Cancel,
) -> Result<Vec<u8>> {
    let c1 = Commit1Output::decode(c1_output)?;
    if c1.prover_id != *prover_id || c1.sector_number != sector_number {
        return Err(Error::invalid(format!(
            "commit phase-1 output was made for sector {} of another prover or number, not {sector_number}",
            c1.sector_number
        )));
    }
    let params = SectorParams::lookup(c1.sector_size)?;
    let mut vw = Writer::new();
    for p in &c1.proofs {
        p.encode(&mut vw);
    }
    let vanilla = vw.into_bytes();
    let public = SealPublic {
        sector_size: c1.sector_size,
        comm_r: &c1.comm_r,
        comm_d: &c1.comm_d,
        prover_id,
        sector_number,
        ticket: &c1.ticket,
        seed: &c1.seed,
    };
    let t = transcript(&public, &c1.comm_c, &c1.comm_r_last, &vanilla);
    let top = binary_tree::build_levels(witness_chunk_roots(params, &t, backend, cancel)?);
    let witness_root = top
        .last()
        .and_then(|l| l.first().copied())
        .ok_or_else(|| Error::invalid("empty witness tree"))?;
    let mut w = Writer::new();
    w.bytes(MAGIC)
        .u16(VERSION)
        .u64(c1.sector_size)
        .node(&c1.comm_c)
        .node(&c1.comm_r_last)
        .u32(c1.proofs.len() as u32)
        .bytes(&vanilla)
        .node(&witness_root);
    for s in 0..C2_SPOT_CHECKS as u32 {
        cancel.check()?;
        let pos = spot_position(&t, &witness_root, s, params.c2_witness_log2);
        w.nodes(&witness_path(params, &t, &top, pos));
    }
    Ok(w.into_bytes())
}

/// Why a proof does not verify (internal; the API returns a bool).
pub fn check_seal(public: &SealPublic, proof: &[u8]) -> std::result::Result<(), String> {
    let params = SectorParams::lookup(public.sector_size).map_err(|e| e.to_string())?;
    let mut r = Reader::new("seal proof", proof);
    r.header(MAGIC, VERSION).map_err(|e| e.to_string())?;
    let size = r.u64("sector_size").map_err(|e| e.to_string())?;
    if size != public.sector_size {
        return Err(format!("proof is for sector size {size}"));
    }
    let comm_c = r.node("comm_c").map_err(|e| e.to_string())?;
    let comm_r_last = r.node("comm_r_last").map_err(|e| e.to_string())?;
    let n = r
        .count("challenge count", params.porep_challenges)
        .map_err(|e| e.to_string())?;
    if n != params.porep_challenges {
        return Err(format!(
            "{n} challenge proofs, expected {}",
            params.porep_challenges
        ));
    }
    let vanilla_start = r.position();
    let proofs = (0..n)
        .map(|_| ChallengeProof::decode(&mut r, params))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    let vanilla_end = r.position();
    let witness_root = r.node("witness_root").map_err(|e| e.to_string())?;
    let paths = (0..C2_SPOT_CHECKS)
        .map(|_| r.nodes(params.c2_witness_log2 as usize, "witness path"))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;

    if hash_pair(&comm_c, &comm_r_last) != *public.comm_r {
        return Err("comm_r is not H(comm_c, comm_r_last)".into());
    }
    let rid = replica_id(
        public.sector_size,
        public.prover_id,
        public.sector_number,
        public.ticket,
        public.comm_d,
    );
    let graph = Graph::new(public.sector_size);
    for (j, p) in proofs.iter().enumerate() {
        let expected = porep_challenge(&rid, public.seed, j as u64, params.nodes());
        p.verify(
            params,
            &graph,
            &rid,
            expected,
            public.comm_d,
            &comm_c,
            &comm_r_last,
        )
        .map_err(|e| format!("challenge {j}: {e}"))?;
    }
    let vanilla = proof.get(vanilla_start..vanilla_end).unwrap_or_default();
    let t = transcript(public, &comm_c, &comm_r_last, vanilla);
    for (s, path) in paths.iter().enumerate() {
        let pos = spot_position(&t, &witness_root, s as u32, params.c2_witness_log2);
        if !binary_tree::verify_path(&witness_leaf(&t, pos), pos, path, &witness_root) {
            return Err(format!("witness opening {s} (leaf {pos}) does not verify"));
        }
    }
    Ok(())
}

/// verify_seal: true when the proof checks against the public inputs. A malformed proof is an
/// invalid proof (false); only an unsupported sector size is an error.
pub fn verify_seal(public: &SealPublic, proof: &[u8]) -> Result<bool> {
    SectorParams::lookup(public.sector_size)?;
    Ok(check_seal(public, proof).is_ok())
}
