//! Binary Merkle trees in memory, and inclusion-path verification.
//!
//! Every tree of the emulation (tree_d, tree_c, tree_r_last, the C2 witness tree) is a plain
//! binary tree with the node hash `H` of `crate::hash`. A path is the list of sibling nodes from
//! the leaf's level up to (not including) the root; the leaf index gives the side at each level
//! (bit k of the index = 1 means the node is the right child at level k), so no direction bits
//! are stored.

use crate::hash::{hash_level, hash_pair, Node};

/// All levels of a tree over `leaves` (a power-of-two count), leaves first, root last.
pub fn build_levels(leaves: Vec<Node>) -> Vec<Vec<Node>> {
    let mut levels = vec![leaves];
    while levels.last().map_or(0, Vec::len) > 1 {
        let prev = levels.last().map(Vec::as_slice).unwrap_or_default();
        let mut next = vec![[0u8; 32]; prev.len() / 2];
        hash_level(&prev[..2 * next.len()], &mut next);
        levels.push(next);
    }
    levels
}

/// Root of a tree over a power-of-two count of leaves (the all-zero node for none).
pub fn root(leaves: Vec<Node>) -> Node {
    build_levels(leaves)
        .last()
        .and_then(|l| l.first().copied())
        .unwrap_or([0u8; 32])
}

/// Sibling path of leaf `index` from levels produced by [`build_levels`].
pub fn path_from_levels(levels: &[Vec<Node>], index: u64) -> Vec<Node> {
    let mut path = Vec::with_capacity(levels.len().saturating_sub(1));
    for (k, level) in levels
        .iter()
        .enumerate()
        .take(levels.len().saturating_sub(1))
    {
        let sibling = ((index >> k) ^ 1) as usize;
        if let Some(n) = level.get(sibling) {
            path.push(*n);
        }
    }
    path
}

/// Hashes a leaf up its path; returns the root it implies.
pub fn root_from_path(leaf: &Node, index: u64, path: &[Node]) -> Node {
    let mut cur = *leaf;
    for (k, sibling) in path.iter().enumerate() {
        cur = if (index >> k) & 1 == 0 {
            hash_pair(&cur, sibling)
        } else {
            hash_pair(sibling, &cur)
        };
    }
    cur
}

/// True when `leaf` sits at `index` of the tree with `root` (the index must fit the path length).
pub fn verify_path(leaf: &Node, index: u64, path: &[Node], root: &Node) -> bool {
    let fits = path.len() >= 64 || index >> path.len() == 0;
    fits && root_from_path(leaf, index, path) == *root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_proves_and_wrong_index_or_sibling_fails() {
        let leaves: Vec<Node> = (0..16u8).map(|i| [i; 32]).collect();
        let levels = build_levels(leaves.clone());
        let r = levels[4][0];
        for i in 0..16u64 {
            let p = path_from_levels(&levels, i);
            assert_eq!(p.len(), 4);
            assert!(verify_path(&leaves[i as usize], i, &p, &r));
            assert!(!verify_path(&leaves[i as usize], i ^ 1, &p, &r));
            assert!(!verify_path(&leaves[i as usize], i + 16, &p, &r));
            let mut bad = p.clone();
            bad[2][0] ^= 1;
            assert!(!verify_path(&leaves[i as usize], i, &bad, &r));
        }
    }

    #[test]
    fn zero_tree_root_matches_published_2k_zero_commitment() {
        let hex: String = root(vec![[0u8; 32]; 64])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"
        );
    }
}
