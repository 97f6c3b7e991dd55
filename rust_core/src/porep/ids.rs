//! Identifiers and challenges derived from public inputs: replica_id, the per-size graph seed,
//! PoRep challenges (from the interactive seed) and PoSt challenges (from chain randomness).
//!
//! Each derivation hashes an ASCII domain tag first, so no two derivations can collide on the
//! same input bytes.

use sha2::{Digest, Sha256};

use crate::hash::{trim_to_fr32, Node};

/// SHA-256 over the concatenation of `parts`, untrimmed.
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA-256 over the concatenation of `parts`, trimmed to 254 bits (a field element).
pub fn hash_parts_trunc254(parts: &[&[u8]]) -> Node {
    let mut out = sha256_parts(parts);
    trim_to_fr32(&mut out);
    out
}

/// First 8 bytes of a digest as a little-endian u64.
pub fn le_u64(digest: &[u8; 32]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(w)
}

/// The emulation's stand-in for Filecoin's porep_id: ties a replica to this proof system and size.
/// Layout: ASCII "ssporep1" ‖ sector_size (u64 LE) ‖ 16 zero bytes.
pub fn porep_id(sector_size: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(b"ssporep1");
    id[8..16].copy_from_slice(&sector_size.to_le_bytes());
    id
}

/// replica_id = SHA-256("sectorstorage/porep/v1/replica-id" ‖ prover_id ‖ sector_number (u64 LE)
/// ‖ ticket ‖ comm_d ‖ porep_id), trimmed to 254 bits.
pub fn replica_id(
    sector_size: u64,
    prover_id: &[u8; 32],
    sector_number: u64,
    ticket: &[u8; 32],
    comm_d: &Node,
) -> Node {
    hash_parts_trunc254(&[
        b"sectorstorage/porep/v1/replica-id",
        prover_id,
        &sector_number.to_le_bytes(),
        ticket,
        comm_d,
        &porep_id(sector_size),
    ])
}

/// Graph seed of a sector size: SHA-256("sectorstorage/porep/v1/graph-seed" ‖ sector_size LE).
pub fn graph_seed(sector_size: u64) -> [u8; 32] {
    sha256_parts(&[
        b"sectorstorage/porep/v1/graph-seed",
        &sector_size.to_le_bytes(),
    ])
}

/// The `index`-th PoRep challenge: 1 + (LE64(SHA-256("sectorstorage/porep/v1/challenge" ‖
/// replica_id ‖ seed ‖ index (u64 LE))[0..8]) mod (nodes − 1)). Node 0 is never challenged: it
/// has no parents, so its label proves no sequential work.
pub fn porep_challenge(replica_id: &Node, seed: &[u8; 32], index: u64, nodes: u64) -> u64 {
    let d = sha256_parts(&[
        b"sectorstorage/porep/v1/challenge",
        replica_id,
        seed,
        &index.to_le_bytes(),
    ]);
    1 + le_u64(&d) % (nodes - 1)
}

/// PoSt randomness with the top two bits of byte 31 cleared, as Lotus masks it.
pub fn mask_randomness(randomness: &[u8; 32]) -> [u8; 32] {
    let mut r = *randomness;
    trim_to_fr32(&mut r);
    r
}

/// The `index`-th PoSt challenge of a sector: LE64(SHA-256("sectorstorage/porep/v1/post-challenge"
/// ‖ masked randomness ‖ prover_id ‖ sector_number (u64 LE) ‖ index (u64 LE))[0..8]) mod nodes.
pub fn post_challenge(
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    sector_number: u64,
    index: u64,
    nodes: u64,
) -> u64 {
    let d = sha256_parts(&[
        b"sectorstorage/porep/v1/post-challenge",
        &mask_randomness(randomness),
        prover_id,
        &sector_number.to_le_bytes(),
        &index.to_le_bytes(),
    ]);
    le_u64(&d) % nodes
}

/// Which of `sector_count` eligible sectors the `index`-th Winning PoSt slot proves:
/// LE64(SHA-256("sectorstorage/porep/v1/winning-sector" ‖ masked randomness ‖ prover_id ‖
/// index (u64 LE))[0..8]) mod sector_count.
pub fn winning_sector_index(
    randomness: &[u8; 32],
    prover_id: &[u8; 32],
    index: u64,
    sector_count: u64,
) -> u64 {
    let d = sha256_parts(&[
        b"sectorstorage/porep/v1/winning-sector",
        &mask_randomness(randomness),
        prover_id,
        &index.to_le_bytes(),
    ]);
    le_u64(&d) % sector_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_id_depends_on_every_input_and_is_trimmed() {
        let base = replica_id(2048, &[1; 32], 7, &[2; 32], &[3; 32]);
        assert_eq!(base[31] & 0xc0, 0);
        assert_ne!(base, replica_id(4096, &[1; 32], 7, &[2; 32], &[3; 32]));
        assert_ne!(base, replica_id(2048, &[9; 32], 7, &[2; 32], &[3; 32]));
        assert_ne!(base, replica_id(2048, &[1; 32], 8, &[2; 32], &[3; 32]));
        assert_ne!(base, replica_id(2048, &[1; 32], 7, &[9; 32], &[3; 32]));
        assert_ne!(base, replica_id(2048, &[1; 32], 7, &[2; 32], &[9; 32]));
    }

    #[test]
    fn porep_challenges_skip_node_zero() {
        for i in 0..1000 {
            let c = porep_challenge(&[5; 32], &[6; 32], i, 64);
            assert!((1..64).contains(&c));
        }
    }

    #[test]
    fn post_challenges_in_range_and_randomness_masked() {
        let mut r = [0u8; 32];
        r[31] = 0xc0;
        assert_eq!(
            post_challenge(&r, &[1; 32], 3, 0, 64),
            post_challenge(&[0; 32], &[1; 32], 3, 0, 64)
        );
        for i in 0..100 {
            assert!(post_challenge(&[7; 32], &[1; 32], 3, i, 64) < 64);
        }
    }
}
