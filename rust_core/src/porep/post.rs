//! Proofs of Spacetime: challenged leaves of each sealed replica proven against comm_r, and the
//! CheckProvable fault scan built on them.
//!
//! Per sector, challenge j (j < the size's window or winning challenge count) is leaf
//! `ids::post_challenge(randomness, prover_id, sector_number, j)`; its proof is the replica leaf
//! and its tree_r_last path. The sector section carries comm_c and comm_r_last, which must hash to
//! the public comm_r.
//!
//! Sector section: sector_number u64 ‖ comm_c ‖ comm_r_last ‖ challenge count u32 ‖ per challenge:
//! leaf (32) ‖ path (h nodes).
//! PoSt proof: magic "SSPT" ‖ version u16 = 1 ‖ kind u8 (1 window, 2 winning) ‖ sector_size u64
//! ‖ sector count u32 ‖ sector sections, in the order of the public sector list.
//! Single vanilla proof: magic "SSPV" ‖ version u16 = 1 ‖ kind u8 ‖ sector_size u64 ‖ one section.
//! A PoSt proof is therefore its sectors' vanilla proofs, headers swapped ([`assemble_post`]):
//! the node that aggregates needs no sector files. This module is the only place that writes or
//! reads these layouts (the manager assembles through `rust_core.assemble_post`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::hash::{hash_pair, Node};
use crate::porep::binary_tree::verify_path;
use crate::porep::codec::{Reader, Writer};
use crate::porep::files;
use crate::porep::ids::{post_challenge, sha256_parts, winning_sector_index};
use crate::porep::params::SectorParams;
use crate::porep::pc2::tree_r_last_part_layout;
use crate::porep::replica_tree::ReplicaTree;

const POST_MAGIC: &[u8; 4] = b"SSPT";
const VANILLA_MAGIC: &[u8; 4] = b"SSPV";
const VERSION: u16 = 1;
/// Bytes of the header both proofs start with: magic ‖ version ‖ kind ‖ sector_size.
const HEADER_LEN: usize = 4 + 2 + 1 + 8;
/// Upper bound on sectors in one proof, checked before allocating on decode.
const MAX_SECTORS: usize = 1 << 20;

/// Window or Winning PoSt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostKind {
    Window,
    Winning,
}

impl PostKind {
    fn code(self) -> u8 {
        match self {
            PostKind::Window => 1,
            PostKind::Winning => 2,
        }
    }
    /// "window" or "winning".
    pub fn name(self) -> &'static str {
        match self {
            PostKind::Window => "window",
            PostKind::Winning => "winning",
        }
    }
    fn challenges(self, params: &SectorParams) -> usize {
        match self {
            PostKind::Window => params.window_post_challenges,
            PostKind::Winning => params.winning_post_challenges,
        }
    }
    /// Parses "window" / "winning".
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "window" => Ok(PostKind::Window),
            "winning" => Ok(PostKind::Winning),
            _ => Err(Error::invalid(format!(
                "unknown PoSt kind {s:?}: expected \"window\" or \"winning\""
            ))),
        }
    }
}

/// A sector to prove: its number, comm_r, and where its files are.
#[derive(Debug, Clone)]
pub struct ProvingSector {
    pub sector_number: u64,
    pub comm_r: Node,
    pub sealed_path: PathBuf,
    pub cache_dir: PathBuf,
}

/// Public side of a sector in a PoSt.
#[derive(Debug, Clone, Copy)]
pub struct PublicSector {
    pub sector_number: u64,
    pub comm_r: Node,
}

/// The proof of one sector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectorProof {
    pub sector_number: u64,
    pub comm_c: Node,
    pub comm_r_last: Node,
    pub leaves: Vec<(Node, Vec<Node>)>,
}

impl SectorProof {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.sector_number)
            .node(&self.comm_c)
            .node(&self.comm_r_last)
            .u32(self.leaves.len() as u32);
        for (leaf, path) in &self.leaves {
            w.node(leaf).nodes(path);
        }
    }

    fn decode(r: &mut Reader, params: &SectorParams, kind: PostKind) -> Result<Self> {
        let sector_number = r.u64("sector_number")?;
        let comm_c = r.node("comm_c")?;
        let comm_r_last = r.node("comm_r_last")?;
        let n = r.count("challenge count", kind.challenges(params))?;
        if n != kind.challenges(params) {
            return Err(r.bad(format!(
                "{n} challenges, expected {}",
                kind.challenges(params)
            )));
        }
        let h = params.tree_height() as usize;
        let leaves = (0..n)
            .map(|_| Ok((r.node("leaf")?, r.nodes(h, "tree_r_last path")?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            sector_number,
            comm_c,
            comm_r_last,
            leaves,
        })
    }

    /// Checks against the public sector; the error names the first failing check.
    pub fn check(
        &self,
        params: &SectorParams,
        kind: PostKind,
        randomness: &[u8; 32],
        prover_id: &[u8; 32],
        public: &PublicSector,
    ) -> std::result::Result<(), String> {
        if self.sector_number != public.sector_number {
            return Err(format!(
                "proof is for sector {}, expected {}",
                self.sector_number, public.sector_number
            ));
        }
        if self.leaves.len() != kind.challenges(params) {
            return Err(format!(
                "{} challenges proven, expected {}",
                self.leaves.len(),
                kind.challenges(params)
            ));
        }
        if hash_pair(&self.comm_c, &self.comm_r_last) != public.comm_r {
            return Err("p_aux (comm_c, comm_r_last) does not hash to comm_r".into());
        }
        for (j, (leaf, path)) in self.leaves.iter().enumerate() {
            let c = post_challenge(
                randomness,
                prover_id,
                self.sector_number,
                j as u64,
                params.nodes(),
            );
            if !verify_path(leaf, c, path, &self.comm_r_last) {
                return Err(format!(
                    "corrupt: challenged leaf {c} does not verify against comm_r_last"
                ));
            }
        }
        Ok(())
    }
}

/// Checks that a sector's files are present with the sizes PoSt needs (CheckProvable's stat step).
pub fn check_files(
    params: &SectorParams,
    sealed_path: &Path,
    cache_dir: &Path,
) -> std::result::Result<(), String> {
    match files::file_len(sealed_path) {
        None => return Err(format!("sealed file {} is missing", sealed_path.display())),
        Some(len) if len != params.sector_size => {
            return Err(format!(
                "sealed file {} is wrong size (got {len}, expect {})",
                sealed_path.display(),
                params.sector_size
            ))
        }
        Some(_) => {}
    }
    let mut expected = vec![(cache_dir.join(files::P_AUX), 64u64)];
    let tree_len = tree_r_last_part_layout(params).file_len();
    for p in files::tree_r_last_paths(cache_dir, params) {
        expected.push((p, tree_len));
    }
    for (path, want) in expected {
        match files::file_len(&path) {
            None => return Err(format!("cache file {} is missing", path.display())),
            Some(len) if len != want => {
                return Err(format!(
                    "cache file {} is wrong size (got {len}, expect {want})",
                    path.display()
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Proves one sector (reads p_aux, tree_r_last and the sealed file); cancellable per challenge.
pub fn prove_sector(
    params: &SectorParams,
    kind: PostKind,
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    sector: &ProvingSector,
    cancel: &Cancel,
) -> Result<SectorProof> {
    cancel.check()?;
    let fail = |msg: String| Error::invalid(format!("sector {}: {msg}", sector.sector_number));
    check_files(params, &sector.sealed_path, &sector.cache_dir).map_err(fail)?;
    let (comm_c, comm_r_last) = files::read_p_aux(&sector.cache_dir)?;
    if hash_pair(&comm_c, &comm_r_last) != sector.comm_r {
        return Err(fail("p_aux does not match comm_r".into()));
    }
    let tree = ReplicaTree::open(params, &sector.cache_dir, &sector.sealed_path)?;
    let leaves = (0..kind.challenges(params) as u64)
        .map(|j| {
            cancel.check()?;
            let c = post_challenge(
                randomness,
                prover_id,
                sector.sector_number,
                j,
                params.nodes(),
            );
            tree.path(c)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SectorProof {
        sector_number: sector.sector_number,
        comm_c,
        comm_r_last,
        leaves,
    })
}

fn check_sector_count(params: &SectorParams, kind: PostKind, n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid("a PoSt needs at least one sector"));
    }
    if kind == PostKind::Winning && n > params.winning_post_sector_count {
        return Err(Error::invalid(format!(
            "winning PoSt proves at most {} sector(s), got {n}",
            params.winning_post_sector_count
        )));
    }
    Ok(())
}

/// A writer holding the header of a proof: `magic` ‖ version ‖ kind ‖ sector_size.
fn header(magic: &[u8; 4], kind: PostKind, sector_size: u64) -> Writer {
    let mut w = Writer::new();
    w.bytes(magic).u16(VERSION).u8(kind.code()).u64(sector_size);
    w
}

/// The PoSt proof made of per-sector vanilla proofs (from [`generate_single_vanilla_proof`]
/// with the same kind, sector size and randomness), in order: their sector sections under one
/// PoSt header. Equal to [`generate_post`] over the same sectors. Only the headers are checked
/// here (InvalidInput naming the first bad proof); [`verify_post`] checks the rest.
pub fn assemble_post(sector_size: u64, kind: PostKind, vanilla: &[&[u8]]) -> Result<Vec<u8>> {
    if vanilla.len() > MAX_SECTORS {
        return Err(Error::invalid(format!(
            "{} vanilla proofs, at most {MAX_SECTORS} fit in one PoSt",
            vanilla.len()
        )));
    }
    let want = header(VANILLA_MAGIC, kind, sector_size).into_bytes();
    let mut w = header(POST_MAGIC, kind, sector_size);
    w.u32(vanilla.len() as u32);
    for (i, proof) in vanilla.iter().enumerate() {
        let (head, section) = proof
            .split_at_checked(HEADER_LEN)
            .ok_or_else(|| Error::invalid(format!("vanilla proof {i} is truncated")))?;
        if head != want.as_slice() {
            return Err(Error::invalid(format!(
                "vanilla proof {i} is not a {} proof for {sector_size}-byte sectors",
                kind.name()
            )));
        }
        w.bytes(section);
    }
    Ok(w.into_bytes())
}

/// Generates a Window or Winning PoSt over `sectors`, in parallel across sectors; cancellable per
/// sector and challenge.
pub fn generate_post(
    sector_size: u64,
    kind: PostKind,
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    sectors: &[ProvingSector],
    cancel: &Cancel,
) -> Result<Vec<u8>> {
    let params = SectorParams::lookup(sector_size)?;
    check_sector_count(params, kind, sectors.len())?;
    let proofs = sectors
        .par_iter()
        .map(|s| prove_sector(params, kind, randomness, prover_id, s, cancel))
        .collect::<Result<Vec<_>>>()?;
    let mut w = header(POST_MAGIC, kind, sector_size);
    w.u32(proofs.len() as u32);
    for p in &proofs {
        p.encode(&mut w);
    }
    Ok(w.into_bytes())
}

fn check_post(
    sector_size: u64,
    kind: PostKind,
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    sectors: &[PublicSector],
    proof: &[u8],
) -> std::result::Result<(), String> {
    let params = SectorParams::lookup(sector_size).map_err(|e| e.to_string())?;
    let mut r = Reader::new("PoSt proof", proof);
    r.header(POST_MAGIC, VERSION).map_err(|e| e.to_string())?;
    if r.u8("kind").map_err(|e| e.to_string())? != kind.code() {
        return Err("proof is of the other PoSt kind".into());
    }
    if r.u64("sector_size").map_err(|e| e.to_string())? != sector_size {
        return Err("proof is for another sector size".into());
    }
    let n = r
        .count("sector count", MAX_SECTORS)
        .map_err(|e| e.to_string())?;
    if n != sectors.len() {
        return Err(format!("proof has {n} sectors, expected {}", sectors.len()));
    }
    let proofs = (0..n)
        .map(|_| SectorProof::decode(&mut r, params, kind))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    for (p, s) in proofs.iter().zip(sectors) {
        p.check(params, kind, randomness, prover_id, s)
            .map_err(|e| format!("sector {}: {e}", s.sector_number))?;
    }
    Ok(())
}

/// Verifies a PoSt: false for any invalid or malformed proof; an error only for an unsupported
/// size or a sector list the kind does not allow.
pub fn verify_post(
    sector_size: u64,
    kind: PostKind,
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    sectors: &[PublicSector],
    proof: &[u8],
) -> Result<bool> {
    let params = SectorParams::lookup(sector_size)?;
    check_sector_count(params, kind, sectors.len())?;
    Ok(check_post(sector_size, kind, randomness, prover_id, sectors, proof).is_ok())
}

/// Indices (into the eligible sector list) that a Winning PoSt must prove.
pub fn winning_sector_challenge(
    sector_size: u64,
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    eligible: u64,
) -> Result<Vec<u64>> {
    let params = SectorParams::lookup(sector_size)?;
    if eligible == 0 {
        return Err(Error::invalid("no eligible sectors"));
    }
    Ok((0..params.winning_post_sector_count as u64)
        .map(|k| winning_sector_index(randomness, prover_id, k, eligible))
        .collect())
}

/// One sector's vanilla proof (what a PoSt worker returns to the node that aggregates).
pub fn generate_single_vanilla_proof(
    sector_size: u64,
    kind: PostKind,
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    sector: &ProvingSector,
    cancel: &Cancel,
) -> Result<Vec<u8>> {
    let params = SectorParams::lookup(sector_size)?;
    let p = prove_sector(params, kind, randomness, prover_id, sector, cancel)?;
    let mut w = header(VANILLA_MAGIC, kind, sector_size);
    p.encode(&mut w);
    Ok(w.into_bytes())
}

fn check_single(
    sector_size: u64,
    kind: PostKind,
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    sector: &PublicSector,
    proof: &[u8],
) -> std::result::Result<(), String> {
    let params = SectorParams::lookup(sector_size).map_err(|e| e.to_string())?;
    let mut r = Reader::new("vanilla PoSt proof", proof);
    r.header(VANILLA_MAGIC, VERSION)
        .map_err(|e| e.to_string())?;
    if r.u8("kind").map_err(|e| e.to_string())? != kind.code() {
        return Err("proof is of the other PoSt kind".into());
    }
    if r.u64("sector_size").map_err(|e| e.to_string())? != sector_size {
        return Err("proof is for another sector size".into());
    }
    let p = SectorProof::decode(&mut r, params, kind).map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    p.check(params, kind, randomness, prover_id, sector)
}

/// Verifies a single vanilla proof.
pub fn verify_single_vanilla_proof(
    sector_size: u64,
    kind: PostKind,
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    sector: &PublicSector,
    proof: &[u8],
) -> Result<bool> {
    SectorParams::lookup(sector_size)?;
    Ok(check_single(sector_size, kind, randomness, prover_id, sector, proof).is_ok())
}

/// A sector for CheckProvable: comm_r is optional (without it, p_aux is taken as the truth and
/// only the files' consistency with it is checked).
#[derive(Debug, Clone)]
pub struct CheckSector {
    pub sector_number: u64,
    pub comm_r: Option<Node>,
    pub sealed_path: PathBuf,
    pub cache_dir: PathBuf,
}

/// Fresh randomness for CheckProvable's vanilla proof when the caller gives none.
fn fresh_randomness() -> [u8; 32] {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    sha256_parts(&[
        b"sectorstorage/porep/v1/check-provable",
        &now.to_le_bytes(),
        &std::process::id().to_le_bytes(),
        &call.to_le_bytes(),
    ])
}

/// CheckProvable: for each sector, None when provable, else the fault reason (missing or
/// wrong-size sealed file, missing or wrong-size cache files, p_aux not matching comm_r, or a
/// challenged leaf that does not verify). Sectors are checked in parallel; no fault aborts the
/// scan, but a cancellation does: the whole call then returns [`Error::Cancelled`].
pub fn check_provable(
    sector_size: u64,
    prover_id: &[u8; 32],
    sectors: &[CheckSector],
    randomness: Option<&[u8; 32]>,
    cancel: &Cancel,
) -> Result<Vec<(u64, Option<String>)>> {
    let params = SectorParams::lookup(sector_size)?;
    let randomness = randomness.copied().unwrap_or_else(fresh_randomness);
    let results = sectors
        .par_iter()
        .map(|s| {
            cancel.check()?;
            let reason = check_one(params, prover_id, &randomness, s, cancel).err();
            Ok((s.sector_number, reason))
        })
        .collect::<Result<Vec<_>>>()?;
    // A proof cut short by the flag reads as a fault above: the flag decides.
    cancel.check()?;
    Ok(results)
}

fn check_one(
    params: &SectorParams,
    prover_id: &[u8; 32],
    randomness: &[u8; 32],
    s: &CheckSector,
    cancel: &Cancel,
) -> std::result::Result<(), String> {
    check_files(params, &s.sealed_path, &s.cache_dir)?;
    let (comm_c, comm_r_last) = files::read_p_aux(&s.cache_dir).map_err(|e| e.to_string())?;
    let comm_r = s.comm_r.unwrap_or_else(|| hash_pair(&comm_c, &comm_r_last));
    let sector = ProvingSector {
        sector_number: s.sector_number,
        comm_r,
        sealed_path: s.sealed_path.clone(),
        cache_dir: s.cache_dir.clone(),
    };
    let proof = prove_sector(
        params,
        PostKind::Window,
        randomness,
        prover_id,
        &sector,
        cancel,
    )
    .map_err(|e| format!("generating vanilla proof: {e}"))?;
    let public = PublicSector {
        sector_number: s.sector_number,
        comm_r,
    };
    proof.check(params, PostKind::Window, randomness, prover_id, &public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vanilla(kind: PostKind, sector_size: u64, section: &[u8]) -> Vec<u8> {
        let mut w = header(VANILLA_MAGIC, kind, sector_size);
        w.bytes(section);
        w.into_bytes()
    }

    #[test]
    fn assemble_post_concatenates_sections_under_one_header() {
        let (a, b) = (
            vanilla(PostKind::Window, 2048, b"first"),
            vanilla(PostKind::Window, 2048, b"2"),
        );
        let out = assemble_post(2048, PostKind::Window, &[&a, &b]).unwrap();
        let mut want = b"SSPT".to_vec();
        want.extend_from_slice(&1u16.to_le_bytes());
        want.push(1);
        want.extend_from_slice(&2048u64.to_le_bytes());
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(b"first2");
        assert_eq!(out, want);
        let empty = assemble_post(2048, PostKind::Winning, &[]).unwrap();
        assert_eq!(empty.len(), HEADER_LEN + 4);
        assert_eq!(empty[6], 2);
    }

    #[test]
    fn assemble_post_names_the_first_bad_vanilla_proof() {
        let good = vanilla(PostKind::Window, 2048, b"x");
        let err = |proofs: &[&[u8]]| match assemble_post(2048, PostKind::Window, proofs) {
            Err(Error::InvalidInput(msg)) => msg,
            other => panic!("expected InvalidInput, got {other:?}"),
        };
        assert_eq!(
            err(&[&good, &good[..HEADER_LEN - 1]]),
            "vanilla proof 1 is truncated"
        );
        let other_kind = vanilla(PostKind::Winning, 2048, b"x");
        let other_size = vanilla(PostKind::Window, 4096, b"x");
        let mut other_version = good.clone();
        other_version[4] = 2;
        let mut post_magic = good.clone();
        post_magic[..4].copy_from_slice(POST_MAGIC);
        for bad in [&other_kind, &other_size, &other_version, &post_magic] {
            assert_eq!(
                err(&[bad]),
                "vanilla proof 0 is not a window proof for 2048-byte sectors"
            );
        }
    }
}
