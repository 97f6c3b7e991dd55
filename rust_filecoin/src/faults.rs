//! CheckProvable with the real proofs: for each sector, whether a Window PoSt could prove it now,
//! and if not, why (one line). The checks are the library's own, one sector at a time: the sealed
//! file, p_aux and tree_r_last load (`PrivateReplicaInfo::new`, `merkle_tree`), comm_r is the hash
//! of p_aux's comm_c and comm_r_last (what PoSt verification checks), and a vanilla proof of the
//! sector's challenges verifies against comm_r_last (`fallback::vanilla_proof` validates each
//! inclusion path: a corrupted challenged replica byte fails here).

use std::collections::BTreeMap;
use std::fs;

use filecoin_hashers::{HashFunction, Hasher};
use filecoin_proofs::{
    generate_fallback_sector_challenges, generate_single_vanilla_proof, MerkleTreeTrait,
    PrivateReplicaInfo,
};
use filecoin_proofs_api::{RegisteredPoStProof, SectorId};

use crate::error::{Error, Result};
use crate::post::{PostKind, ProvingSector};
use crate::seal::Bytes32;

/// `{sector_number: None | reason}` for the sectors, with the Window PoSt challenges that
/// `randomness` draws.
pub fn check_provable(
    sector_size: u64,
    prover_id: Bytes32,
    sectors: &[ProvingSector],
    randomness: Bytes32,
) -> Result<BTreeMap<u64, Option<String>>> {
    let proof = PostKind::Window.proof(sector_size)?;
    let mut out = BTreeMap::new();
    for sector in sectors {
        let reason =
            crate::with_sizes!(sector_size, check_one, proof, sector, prover_id, randomness)??;
        out.insert(sector.0, reason);
    }
    Ok(out)
}

fn check_one<Tree: 'static + MerkleTreeTrait>(
    proof: RegisteredPoStProof,
    sector: &ProvingSector,
    prover_id: Bytes32,
    randomness: Bytes32,
) -> Result<Option<String>> {
    let (number, comm_r, sealed, cache) = sector;
    let expect = u64::from(proof.sector_size());
    let fault = match fs::metadata(sealed) {
        Err(e) => Some(format!("sealed file {}: {e}", sealed.display())),
        Ok(m) if m.len() != expect => Some(format!(
            "sealed file {}: got {} bytes, expect {expect}",
            sealed.display(),
            m.len()
        )),
        Ok(_) => None,
    };
    if fault.is_some() {
        return Ok(fault);
    }
    let info = match PrivateReplicaInfo::<Tree>::new(sealed.clone(), *comm_r, cache.clone()) {
        Ok(info) => info,
        Err(e) => return Ok(Some(format!("cache {}: {e:#}", cache.display()))),
    };
    let comm_r_domain = match info.safe_comm_r() {
        Ok(d) => d,
        Err(e) => return Ok(Some(format!("comm_r: {e:#}"))),
    };
    let derived =
        <Tree::Hasher as Hasher>::Function::hash2(&info.safe_comm_c(), &info.safe_comm_r_last());
    if derived != comm_r_domain {
        let why = format!("p_aux in {} does not hash to comm_r", cache.display());
        return Ok(Some(why));
    }
    let config = proof.as_v1_config();
    let id = SectorId::from(*number);
    let challenges =
        match generate_fallback_sector_challenges::<Tree>(&config, &randomness, &[id], prover_id) {
            Ok(mut map) => map.remove(&id).unwrap_or_default(),
            // The randomness is the caller's: not a fault of this sector.
            Err(e) => return Err(Error::Invalid(format!("randomness: {e:#}"))),
        };
    Ok(
        match generate_single_vanilla_proof::<Tree>(&config, id, &info, &challenges) {
            Ok(_) => None,
            Err(e) => Some(format!("corrupt: {e:#}")),
        },
    )
}
