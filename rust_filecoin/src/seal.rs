//! Sealing through filecoin-proofs-api: AddPiece, PC1, PC2, C1, C2, verify_seal, unseal.
//!
//! Inputs are checked here (sizes, lengths, blobs) so the library's panics and asserts are not
//! reached with bad input; its own errors come back as `Error::Proofs` with their context.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::Path;

use filecoin_proofs_api::seal::{
    self, SealCommitPhase1Output, SealPreCommitPhase1Output, SealPreCommitPhase2Output,
};
use filecoin_proofs_api::{
    Commitment, PaddedBytesAmount, PieceInfo, RegisteredSealProof, SectorId, UnpaddedByteIndex,
    UnpaddedBytesAmount,
};

use crate::blob::{self, Kind};
use crate::error::{Error, Result};
use crate::params::{self, Circuit};
use crate::sizes;

pub type Bytes32 = [u8; 32];

/// A piece as the rest of the project names it: (padded size, commP).
pub type Piece = (u64, Bytes32);

fn piece_infos(sector_size: u64, pieces: &[Piece]) -> Result<Vec<PieceInfo>> {
    let mut total = 0u64;
    let mut out = Vec::with_capacity(pieces.len());
    for (i, (padded, comm_p)) in pieces.iter().enumerate() {
        if *padded < 128 || !padded.is_power_of_two() {
            return Err(Error::Invalid(format!(
                "piece {i}: padded size {padded} is not a power of two >= 128"
            )));
        }
        total = total.saturating_add(*padded);
        let info = PieceInfo::new(
            *comm_p,
            UnpaddedBytesAmount::from(PaddedBytesAmount(*padded)),
        )
        .map_err(|e| Error::Invalid(format!("piece {i}: {e}")))?;
        out.push(info);
    }
    if total > sector_size {
        return Err(Error::Invalid(format!(
            "the pieces add up to {total} padded bytes, more than the {sector_size}-byte sector"
        )));
    }
    Ok(out)
}

fn json<T: serde::Serialize>(kind: Kind, value: &T) -> Result<Vec<u8>> {
    let payload = serde_json::to_vec(value)
        .map_err(|e| Error::Proofs(format!("cannot encode the {}: {e}", kind.what())))?;
    Ok(blob::wrap(kind, &payload))
}

fn from_json<T: serde::de::DeserializeOwned>(kind: Kind, data: &[u8]) -> Result<T> {
    let payload = blob::unwrap(kind, data)?;
    serde_json::from_slice(payload)
        .map_err(|e| Error::Invalid(format!("malformed {}: {e}", kind.what())))
}

/// AddPiece: appends the fr32-padded piece read from `src` (`piece_size` unpadded bytes,
/// 127·2^k) to the unsealed file `dst`, after the alignment padding that the pieces already there
/// (`existing`, unpadded sizes) call for. Returns (padded size of the piece, commP).
pub fn add_piece(
    sector_size: u64,
    src: &Path,
    dst: &Path,
    piece_size: u64,
    existing: &[u64],
) -> Result<(u64, Bytes32)> {
    let proof = sizes::seal_proof(sector_size)?;
    let padded = PaddedBytesAmount::from(UnpaddedBytesAmount(piece_size)).0;
    if piece_size == 0
        || !padded.is_power_of_two()
        || padded < 128
        || !piece_size.is_multiple_of(127)
    {
        return Err(Error::Invalid(format!(
            "piece size {piece_size} is not 127·2^k unpadded bytes (k >= 0)"
        )));
    }
    let used: u64 = existing
        .iter()
        .map(|u| PaddedBytesAmount::from(UnpaddedBytesAmount(*u)).0)
        .sum();
    if used + padded > sector_size {
        return Err(Error::Invalid(format!(
            "a {padded}-byte piece does not fit after {used} padded bytes in a {sector_size}-byte sector"
        )));
    }
    let source = File::open(src)
        .map_err(|e| Error::Proofs(format!("cannot open piece {}: {e}", src.display())))?;
    let len = source.metadata()?.len();
    if len != piece_size {
        return Err(Error::Invalid(format!(
            "piece file {} has {len} bytes, expected {piece_size}",
            src.display()
        )));
    }
    let mut target = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dst)
        .map_err(|e| Error::Proofs(format!("cannot open unsealed file {}: {e}", dst.display())))?;
    target.seek(SeekFrom::End(0))?;
    let lengths: Vec<UnpaddedBytesAmount> =
        existing.iter().map(|u| UnpaddedBytesAmount(*u)).collect();
    let (info, _written) = seal::add_piece(
        proof,
        source,
        &mut target,
        UnpaddedBytesAmount(piece_size),
        &lengths,
    )?;
    Ok((PaddedBytesAmount::from(info.size).0, info.commitment))
}

/// PC1: copies the unsealed file to `sealed_path` and computes the SDR labels in `cache_dir`.
/// Returns the tagged phase-1 blob (the library's JSON, as Lotus stores it).
#[allow(clippy::too_many_arguments)]
pub fn pre_commit_phase1(
    sector_size: u64,
    cache_dir: &Path,
    unsealed_path: &Path,
    sealed_path: &Path,
    prover_id: Bytes32,
    sector_number: u64,
    ticket: Bytes32,
    pieces: &[Piece],
) -> Result<Vec<u8>> {
    let proof = sizes::seal_proof(sector_size)?;
    let infos = piece_infos(sector_size, pieces)?;
    fs::create_dir_all(cache_dir)?;
    if !sealed_path.exists() {
        File::create(sealed_path)?;
    }
    let out = seal::seal_pre_commit_phase1(
        proof,
        cache_dir,
        unsealed_path,
        sealed_path,
        prover_id,
        SectorId::from(sector_number),
        ticket,
        &infos,
    )?;
    json(Kind::Phase1, &out)
}

/// PC2: tree_c, the encoded replica in `sealed_path`, tree_r_last. Returns (comm_r, comm_d).
pub fn pre_commit_phase2(
    phase1: &[u8],
    cache_dir: &Path,
    sealed_path: &Path,
) -> Result<(Bytes32, Bytes32)> {
    let p1: SealPreCommitPhase1Output = from_json(Kind::Phase1, phase1)?;
    let out = seal::seal_pre_commit_phase2(p1, cache_dir, sealed_path)?;
    Ok((out.comm_r, out.comm_d))
}

/// C1: the vanilla proofs for the seed's challenges. Returns the tagged C1 blob.
#[allow(clippy::too_many_arguments)]
pub fn commit_phase1(
    sector_size: u64,
    cache_dir: &Path,
    sealed_path: &Path,
    prover_id: Bytes32,
    sector_number: u64,
    ticket: Bytes32,
    seed: Bytes32,
    pieces: &[Piece],
    comm_r: Bytes32,
    comm_d: Bytes32,
) -> Result<Vec<u8>> {
    let proof = sizes::seal_proof(sector_size)?;
    let infos = piece_infos(sector_size, pieces)?;
    let pre = SealPreCommitPhase2Output {
        registered_proof: proof,
        comm_r,
        comm_d,
    };
    let out = seal::seal_commit_phase1(
        cache_dir,
        sealed_path,
        prover_id,
        SectorId::from(sector_number),
        ticket,
        seed,
        pre,
        &infos,
    )?;
    json(Kind::Commit1, &out)
}

/// C2: the Groth16 proof (192 bytes per partition), tagged.
pub fn commit_phase2(commit1: &[u8], prover_id: Bytes32, sector_number: u64) -> Result<Vec<u8>> {
    let c1: SealCommitPhase1Output = from_json(Kind::Commit1, commit1)?;
    params::ensure(Circuit::Seal(c1.registered_proof), true)?;
    let out = seal::seal_commit_phase2(c1, prover_id, SectorId::from(sector_number))?;
    Ok(blob::wrap(Kind::SealProof, &out.proof))
}

/// The Groth16 proof bytes inside a tagged seal proof.
pub fn raw_seal_proof(proof: &[u8]) -> Result<&[u8]> {
    blob::unwrap(Kind::SealProof, proof)
}

/// True when the proof checks. A malformed or wrong-length proof is false (as an invalid one);
/// a proof of the other backend, or a missing verifying key, is an error.
#[allow(clippy::too_many_arguments)]
pub fn verify_seal(
    sector_size: u64,
    comm_r: Commitment,
    comm_d: Commitment,
    prover_id: Bytes32,
    sector_number: u64,
    ticket: Bytes32,
    seed: Bytes32,
    proof: &[u8],
) -> Result<bool> {
    let registered = sizes::seal_proof(sector_size)?;
    let raw = match blob::unwrap(Kind::SealProof, proof) {
        Ok(raw) => raw,
        Err(e @ Error::BackendMismatch { .. }) => return Err(e),
        Err(_) => return Ok(false),
    };
    if raw.len() != expected_proof_len(registered) {
        return Ok(false);
    }
    params::ensure(Circuit::Seal(registered), false)?;
    // The library errs (rather than returning false) for bytes that are not curve points or a
    // commitment that is not a field element: for a verifier those are invalid proofs too.
    Ok(seal::verify_seal(
        registered,
        comm_r,
        comm_d,
        prover_id,
        SectorId::from(sector_number),
        ticket,
        seed,
        raw,
    )
    .unwrap_or(false))
}

/// 192 bytes per partition.
pub fn expected_proof_len(proof: RegisteredSealProof) -> usize {
    proof.single_partition_proof_len() * usize::from(proof.partitions())
}

/// Unseals unpadded bytes [offset, offset + length) of the sector into `out_path` (created or
/// truncated): the original piece bytes, without fr32 padding. Relabels the sector (PC1's cost).
#[allow(clippy::too_many_arguments)]
pub fn unseal_range(
    sector_size: u64,
    cache_dir: &Path,
    sealed_path: &Path,
    out_path: &Path,
    prover_id: Bytes32,
    sector_number: u64,
    comm_d: Bytes32,
    ticket: Bytes32,
    offset: u64,
    length: u64,
) -> Result<u64> {
    let proof = sizes::seal_proof(sector_size)?;
    let capacity = UnpaddedBytesAmount::from(PaddedBytesAmount(sector_size)).0;
    if offset.checked_add(length).is_none_or(|end| end > capacity) || length == 0 {
        return Err(Error::Invalid(format!(
            "range [{offset}, {offset}+{length}) is empty or beyond the sector's {capacity} unpadded bytes"
        )));
    }
    let sealed = File::open(sealed_path).map_err(|e| {
        Error::Proofs(format!(
            "cannot open sealed file {}: {e}",
            sealed_path.display()
        ))
    })?;
    let out = File::create(out_path)
        .map_err(|e| Error::Proofs(format!("cannot create {}: {e}", out_path.display())))?;
    let n = seal::unseal_range(
        proof,
        cache_dir,
        sealed,
        out,
        prover_id,
        SectorId::from(sector_number),
        comm_d,
        ticket,
        UnpaddedByteIndex(offset),
        UnpaddedBytesAmount(length),
    )?;
    Ok(n.0)
}

/// Removes PC1/PC2 scratch files (layers, tree_d, tree_c), keeping what PoSt needs.
pub fn clear_cache(cache_dir: &Path) -> Result<()> {
    Ok(seal::clear_cache(cache_dir)?)
}
