//! Window and Winning PoSt through filecoin-proofs-api, with the sector challenges.

use std::collections::BTreeMap;
use std::path::PathBuf;

use filecoin_proofs_api::post;
use filecoin_proofs_api::{PrivateReplicaInfo, PublicReplicaInfo, RegisteredPoStProof, SectorId};

use crate::blob::{self, Kind};
use crate::error::{Error, Result};
use crate::params::{self, Circuit};
use crate::seal::Bytes32;
use crate::sizes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostKind {
    Window,
    Winning,
}

impl PostKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "window" => Ok(PostKind::Window),
            "winning" => Ok(PostKind::Winning),
            other => Err(Error::Invalid(format!(
                "PoSt kind {other:?}: expected \"window\" or \"winning\""
            ))),
        }
    }

    pub fn proof(self, sector_size: u64) -> Result<RegisteredPoStProof> {
        match self {
            PostKind::Window => sizes::window_post_proof(sector_size),
            PostKind::Winning => sizes::winning_post_proof(sector_size),
        }
    }
}

/// A sector the prover holds: (sector number, comm_r, sealed file, cache directory).
pub type ProvingSector = (u64, Bytes32, PathBuf, PathBuf);
/// A sector as the verifier knows it: (sector number, comm_r).
pub type PublicSector = (u64, Bytes32);

fn private_replicas(
    proof: RegisteredPoStProof,
    sectors: &[ProvingSector],
) -> Result<BTreeMap<SectorId, PrivateReplicaInfo>> {
    if sectors.is_empty() {
        return Err(Error::Invalid("no sectors to prove".into()));
    }
    let mut map = BTreeMap::new();
    for (number, comm_r, sealed, cache) in sectors {
        let info = PrivateReplicaInfo::new(proof, *comm_r, cache.clone(), sealed.clone());
        if map.insert(SectorId::from(*number), info).is_some() {
            return Err(Error::Invalid(format!("sector {number} is listed twice")));
        }
    }
    Ok(map)
}

fn public_replicas(
    proof: RegisteredPoStProof,
    sectors: &[PublicSector],
) -> Result<BTreeMap<SectorId, PublicReplicaInfo>> {
    if sectors.is_empty() {
        return Err(Error::Invalid("no sectors to verify".into()));
    }
    let mut map = BTreeMap::new();
    for (number, comm_r) in sectors {
        if map
            .insert(
                SectorId::from(*number),
                PublicReplicaInfo::new(proof, *comm_r),
            )
            .is_some()
        {
            return Err(Error::Invalid(format!("sector {number} is listed twice")));
        }
    }
    Ok(map)
}

/// A PoSt over `sectors` (all of them for Window PoSt; those picked by
/// `winning_post_sector_challenge` for Winning PoSt). Tagged proof bytes. A sector whose
/// challenged leaves do not verify makes it fail with the library's "faulty sectors" error.
pub fn generate(
    kind: PostKind,
    sector_size: u64,
    randomness: Bytes32,
    prover_id: Bytes32,
    sectors: &[ProvingSector],
) -> Result<Vec<u8>> {
    let proof = kind.proof(sector_size)?;
    let replicas = private_replicas(proof, sectors)?;
    params::ensure(Circuit::Post(proof), true)?;
    let proofs = match kind {
        PostKind::Window => post::generate_window_post(&randomness, &replicas, prover_id)?,
        PostKind::Winning => post::generate_winning_post(&randomness, &replicas, prover_id)?,
    };
    match proofs.as_slice() {
        [(_, bytes)] => Ok(blob::wrap(Kind::PostProof, bytes)),
        other => Err(Error::Proofs(format!(
            "expected one PoSt proof, the library returned {}",
            other.len()
        ))),
    }
}

/// True when the proof checks against the sectors' comm_r. Malformed proofs are false; a proof
/// of the other backend or a missing verifying key is an error.
pub fn verify(
    kind: PostKind,
    sector_size: u64,
    randomness: Bytes32,
    prover_id: Bytes32,
    sectors: &[PublicSector],
    proof_blob: &[u8],
) -> Result<bool> {
    let proof = kind.proof(sector_size)?;
    let replicas = public_replicas(proof, sectors)?;
    let raw = match blob::unwrap(Kind::PostProof, proof_blob) {
        Ok(raw) => raw,
        Err(e @ Error::BackendMismatch { .. }) => return Err(e),
        Err(_) => return Ok(false),
    };
    params::ensure(Circuit::Post(proof), false)?;
    let result = match kind {
        PostKind::Window => {
            post::verify_window_post(&randomness, &[(proof, raw)], &replicas, prover_id)
        }
        PostKind::Winning => post::verify_winning_post(&randomness, raw, &replicas, prover_id),
    };
    // Errors here are bytes that do not decode as a proof (see seal::verify_seal).
    Ok(result.unwrap_or(false))
}

/// One sector's vanilla proof for a PoSt of this kind and randomness: the Merkle paths of its
/// challenged leaves, what a worker holding the sector sends to whoever makes the SNARK
/// (`from_vanilla`). Tagged (`FCPV`). The library checks the proof it made: a corrupted
/// challenged leaf fails here ("Generated vanilla proof for sector ... is invalid").
pub fn single_vanilla_proof(
    kind: PostKind,
    sector_size: u64,
    randomness: Bytes32,
    prover_id: Bytes32,
    sector: &ProvingSector,
) -> Result<Vec<u8>> {
    let proof = kind.proof(sector_size)?;
    let (number, comm_r, sealed, cache) = sector;
    let id = SectorId::from(*number);
    let replica = PrivateReplicaInfo::new(proof, *comm_r, cache.clone(), sealed.clone());
    let challenges =
        post::generate_fallback_sector_challenges(proof, &randomness, &[id], prover_id)?;
    let mine = challenges.get(&id).ok_or_else(|| {
        Error::Proofs(format!(
            "the library gave no challenges for sector {number}"
        ))
    })?;
    let bytes = post::generate_single_vanilla_proof(proof, id, &replica, mine)?;
    Ok(blob::wrap(Kind::VanillaProof, &bytes))
}

/// The PoSt SNARK made of the sectors' vanilla proofs (`single_vanilla_proof`, same kind and
/// randomness), given in ascending sector number as the verifier orders the sectors. The library
/// checks every vanilla proof first: one that does not verify fails the whole call ("partitioned
/// vanilla proofs failed to verify"). Tagged PoSt proof, as `generate` returns.
pub fn from_vanilla(
    kind: PostKind,
    sector_size: u64,
    randomness: Bytes32,
    prover_id: Bytes32,
    vanilla: &[Vec<u8>],
) -> Result<Vec<u8>> {
    let proof = kind.proof(sector_size)?;
    if vanilla.is_empty() {
        return Err(Error::Invalid("no vanilla proofs to make a PoSt of".into()));
    }
    let raw = vanilla
        .iter()
        .map(|b| blob::unwrap(Kind::VanillaProof, b).map(<[u8]>::to_vec))
        .collect::<Result<Vec<_>>>()?;
    params::ensure(Circuit::Post(proof), true)?;
    let proofs = match kind {
        PostKind::Window => {
            post::generate_window_post_with_vanilla(proof, &randomness, prover_id, &raw)?
        }
        PostKind::Winning => {
            post::generate_winning_post_with_vanilla(proof, &randomness, prover_id, &raw)?
        }
    };
    match proofs.as_slice() {
        [(_, bytes)] => Ok(blob::wrap(Kind::PostProof, bytes)),
        other => Err(Error::Proofs(format!(
            "expected one PoSt proof, the library returned {}",
            other.len()
        ))),
    }
}

/// Indices into the eligible sector list that a Winning PoSt must prove.
pub fn winning_post_sector_challenge(
    sector_size: u64,
    randomness: Bytes32,
    prover_id: Bytes32,
    eligible_count: u64,
) -> Result<Vec<u64>> {
    if eligible_count == 0 {
        return Err(Error::Invalid("no eligible sectors".into()));
    }
    let proof = sizes::winning_post_proof(sector_size)?;
    Ok(post::generate_winning_post_sector_challenge(
        proof,
        &randomness,
        eligible_count,
        prover_id,
    )?)
}

/// The leaf (node) indices each sector is challenged at, for a PoSt of this kind and randomness.
pub fn sector_challenges(
    kind: PostKind,
    sector_size: u64,
    randomness: Bytes32,
    prover_id: Bytes32,
    sector_numbers: &[u64],
) -> Result<BTreeMap<u64, Vec<u64>>> {
    let proof = kind.proof(sector_size)?;
    let ids: Vec<SectorId> = sector_numbers.iter().map(|n| SectorId::from(*n)).collect();
    let map = post::generate_fallback_sector_challenges(proof, &randomness, &ids, prover_id)?;
    Ok(map.into_iter().map(|(id, c)| (u64::from(id), c)).collect())
}
