//! The SDR-style parent graph: for node `i` of a layer, 6 base parents in the same layer (all
//! earlier than `i`) and 8 expander parents in the previous layer.
//!
//! Base parents: parent 0 is `i − 1` (the chain that makes labeling sequential); parents 1..5 are
//! sampled with a bucket-sampling-style rule: a distance drawn log-uniformly, so that every scale
//! of "how far back" is equally likely, as in the DRG of Ben-Fisch et al. Expander parents come
//! from a keyed Feistel permutation of the 8·N edge slots, so every node of the previous layer is
//! the expander parent of exactly 8 slots (a bipartite expander), as in SDR.
//!
//! Everything is a pure function of the per-size graph seed and the node index, so the verifier
//! computes a challenged node's parents directly, and the prover reads them from the parents
//! cache (see `parents_cache.rs`) generated once per size.

use crate::porep::ids::{graph_seed, sha256_parts};
use crate::porep::params::{BASE_DEGREE, EXPANDER_DEGREE, TOTAL_PARENTS};

/// Feistel rounds of the expander permutation.
const FEISTEL_ROUNDS: usize = 3;

/// The parent graph of one sector size.
#[derive(Clone)]
pub struct Graph {
    seed: [u8; 32],
    nodes: u64,
    feistel_keys: [u64; FEISTEL_ROUNDS],
    /// Bits of each Feistel half; the permutation acts on 2^(2·half_bits) ≥ 8·nodes slots.
    half_bits: u32,
}

impl Graph {
    /// The graph of `sector_size` (a power of two; `nodes = sector_size / 32`).
    pub fn new(sector_size: u64) -> Self {
        let seed = graph_seed(sector_size);
        let nodes = sector_size / 32;
        let mut feistel_keys = [0u64; FEISTEL_ROUNDS];
        for (r, key) in feistel_keys.iter_mut().enumerate() {
            let d = sha256_parts(&[b"sectorstorage/porep/v1/feistel", &seed, &[r as u8]]);
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[..8]);
            *key = u64::from_le_bytes(w);
        }
        let slot_bits = (nodes * EXPANDER_DEGREE as u64).trailing_zeros();
        Self {
            seed,
            nodes,
            feistel_keys,
            half_bits: slot_bits.div_ceil(2),
        }
    }

    pub fn nodes(&self) -> u64 {
        self.nodes
    }

    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// Base parents of node `i ≥ 1` (node 0 has none; callers never ask for it).
    ///
    /// h = SHA-256("sectorstorage/porep/v1/drg" ‖ seed ‖ i (u64 LE)); parent 0 = i − 1; for
    /// k = 1..5: x = the 48-bit little-endian integer at h[6(k−1)..6k], b = bitlen(i),
    /// e = (x mod 64) mod b, span = min(i, 2^(e+1)), parent k = i − 1 − ((x >> 6) mod span).
    pub fn base_parents(&self, i: u64) -> [u64; BASE_DEGREE] {
        let mut out = [0u64; BASE_DEGREE];
        if i == 0 {
            return out;
        }
        out[0] = i - 1;
        let h = sha256_parts(&[b"sectorstorage/porep/v1/drg", &self.seed, &i.to_le_bytes()]);
        let bitlen = u64::from(64 - i.leading_zeros());
        for (k, parent) in out.iter_mut().enumerate().skip(1) {
            let mut w = [0u8; 8];
            w[..6].copy_from_slice(&h[6 * (k - 1)..6 * k]);
            let x = u64::from_le_bytes(w);
            let e = (x & 63) % bitlen;
            let span = i.min(1u64 << (e + 1));
            *parent = i - 1 - ((x >> 6) % span);
        }
        out
    }

    /// Expander parents of node `i` (in the previous layer): parent k = π(8i + k) / 8, where π is
    /// the Feistel permutation of the 8·nodes edge slots.
    pub fn expander_parents(&self, i: u64) -> [u64; EXPANDER_DEGREE] {
        let mut out = [0u64; EXPANDER_DEGREE];
        for (k, parent) in out.iter_mut().enumerate() {
            let slot = i * EXPANDER_DEGREE as u64 + k as u64;
            *parent = self.permute(slot) / EXPANDER_DEGREE as u64;
        }
        out
    }

    /// All 14 parents: base parents then expander parents (the parents-cache record order).
    pub fn parents(&self, i: u64) -> [u64; TOTAL_PARENTS] {
        let mut out = [0u64; TOTAL_PARENTS];
        out[..BASE_DEGREE].copy_from_slice(&self.base_parents(i));
        out[BASE_DEGREE..].copy_from_slice(&self.expander_parents(i));
        out
    }

    /// The Feistel permutation of [0, 8·nodes): a balanced Feistel network on 2·half_bits bits,
    /// cycle-walked (re-applied until the value falls inside the domain) when 8·nodes is an odd
    /// power of two.
    fn permute(&self, slot: u64) -> u64 {
        let domain = self.nodes * EXPANDER_DEGREE as u64;
        let mut x = self.feistel(slot);
        while x >= domain {
            x = self.feistel(x);
        }
        x
    }

    fn feistel(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let mut left = x >> self.half_bits;
        let mut right = x & mask;
        for key in self.feistel_keys {
            let next = left ^ (mix64(right ^ key) & mask);
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }
}

/// The splitmix64 finalizer: the Feistel round function (fast and well mixed; the permutation
/// needs no cryptographic strength, only determinism and spread).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_per_size_and_different_across_sizes() {
        let a = Graph::new(2048);
        let b = Graph::new(2048);
        let c = Graph::new(8 << 20);
        for i in 1..64 {
            assert_eq!(a.parents(i), b.parents(i));
        }
        assert_ne!(a.seed(), c.seed());
    }

    #[test]
    fn base_parents_are_earlier_nodes_with_chain_parent_first() {
        let g = Graph::new(8 << 20);
        for i in 1..g.nodes() {
            let p = g.base_parents(i);
            assert_eq!(p[0], i - 1);
            assert!(p.iter().all(|&x| x < i), "node {i}: {p:?}");
        }
        assert_eq!(g.base_parents(1), [0; 6]);
    }

    #[test]
    fn base_parents_reach_far_back() {
        // Log-uniform distances: a good share of parents sit more than half the way back.
        let g = Graph::new(8 << 20);
        let i = g.nodes() - 1;
        let far = (1..2000)
            .flat_map(|j| g.base_parents(i - j)[1..].to_vec())
            .filter(|&p| p < i / 2)
            .count();
        assert!(far > 100, "only {far} far parents");
    }

    #[test]
    fn expander_is_a_permutation_so_every_node_has_in_degree_8() {
        for size in [2048u64, 4096, 8 << 20] {
            let g = Graph::new(size);
            let mut indegree = vec![0u32; g.nodes() as usize];
            for i in 0..g.nodes() {
                for p in g.expander_parents(i) {
                    indegree[p as usize] += 1;
                }
            }
            assert!(indegree.iter().all(|&d| d == 8), "size {size}");
        }
    }
}
