//! Filecoin's tree node hash, "sha2-256-trunc254-padded": SHA-256 of the two 32-byte children,
//! with the top two bits of the last byte cleared so that every node is a valid BLS12-381 field
//! element (fits in 254 bits). The `sha2` crate picks SHA-NI at run time when the CPU has it.

pub mod sha256_mb;

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
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(left);
    block[32..].copy_from_slice(right);
    hash_block(&block)
}

/// SHA-256 initial state (FIPS 180-4 §5.3.3).
pub const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The padding block of every 64-byte message: `0x80`, zeros, then the bit length 512 big-endian.
pub const PAD_BLOCK_64: [u8; 64] = {
    let mut block = [0u8; 64];
    block[0] = 0x80;
    block[62] = 0x02;
    block
};

/// `H` of one 64-byte message (two nodes side by side). Every tree node is exactly this, so the
/// message and its constant padding block go straight to the compression function (SHA-NI when
/// the CPU has it): two compressions, no hasher state to set up or finalize.
#[inline]
pub fn hash_block(block: &[u8; 64]) -> Node {
    let mut state = SHA256_IV;
    sha2::compress256(
        &mut state,
        &[GenericArray::from(*block), GenericArray::from(PAD_BLOCK_64)],
    );
    let mut out: Node = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    trim_to_fr32(&mut out);
    out
}

/// SHA-256 over arbitrary bytes, trimmed to 254 bits (for labels and derived ids).
#[inline]
pub fn hash_trunc254(data: &[u8]) -> Node {
    let mut hasher = Sha256::new();
    hasher.update(data);
    finish(hasher)
}

/// Parents of many node pairs at once: `out[i] = H(children[2i], children[2i+1])`.
/// `children.len()` must be `2 * out.len()` nodes (extra children are ignored). The pairs are
/// independent, so they go through the multi-buffer kernel (`sha256_mb`: 8 messages at once with
/// AVX-512VL, else several interleaved with SHA-NI, else the `sha2` crate one by one); bit-exact with
/// [`hash_pair`] either way.
#[inline]
pub fn hash_level(children: &[Node], out: &mut [Node]) {
    debug_assert_eq!(children.len(), out.len() * 2);
    sha256_mb::hash_nodes(children.as_flattened(), out);
}

/// One tree level in place: the first `n / 2` nodes of `level` become the parents of its first
/// `n` nodes (`n` even, at most `level.len()`). Safe in place because parent `i` is written only
/// after the children `2i, 2i + 1` (and all before them) have been read; the kernel hashes a
/// bounded run of pairs from a copy, then writes their parents.
pub fn hash_level_in_place(level: &mut [Node], n: usize) {
    const RUN: usize = 32;
    let n = n.min(level.len()) / 2 * 2;
    let mut scratch = [[0u8; 32]; 2 * RUN];
    let mut parents = [[0u8; 32]; RUN];
    let mut done = 0;
    while done < n / 2 {
        let k = RUN.min(n / 2 - done);
        scratch[..2 * k].copy_from_slice(&level[2 * done..2 * (done + k)]);
        hash_level(&scratch[..2 * k], &mut parents[..k]);
        level[done..done + k].copy_from_slice(&parents[..k]);
        done += k;
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
    fn block_hash_equals_generic_sha256() {
        let mut block = [0u8; 64];
        for (i, b) in block.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        assert_eq!(hash_block(&block), hash_trunc254(&block));
        let (l, r) = block.split_at(32);
        let (l, r): (Node, Node) = (l.try_into().unwrap(), r.try_into().unwrap());
        assert_eq!(hash_pair(&l, &r), hash_trunc254(&block));
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
