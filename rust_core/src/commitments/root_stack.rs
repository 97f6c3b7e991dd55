//! Merkle roots built left to right from subtree roots: the one mechanism behind streaming commP
//! (chunk roots as they are hashed), zero-extension of a piece, and commD (piece commitments plus
//! zero pieces). Only O(log n) roots are held, one per set bit of the position, like a binary
//! counter: pushing a subtree merges it with the top while both have the same height.

use crate::commitments::zero_comm::zero_root;
use crate::hash::{hash_pair, Node};

/// Pending subtree roots, heights strictly decreasing from bottom to top.
#[derive(Clone, Debug, Default)]
pub struct MerkleStack {
    entries: Vec<(u32, Node)>,
}

impl MerkleStack {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the root of a subtree of `2^height` leaves. The subtree must start at a multiple of
    /// its own size, i.e. `height` must not exceed the height of the current top; callers
    /// guarantee it by construction (equal chunks, or commD's alignment rule).
    pub fn push(&mut self, height: u32, node: Node) {
        debug_assert!(self.entries.last().map_or(true, |&(h, _)| h >= height));
        let (mut height, mut node) = (height, node);
        while let Some(&(top_height, top)) = self.entries.last() {
            if top_height != height {
                break;
            }
            self.entries.pop();
            node = hash_pair(&top, &node);
            height += 1;
        }
        self.entries.push((height, node));
    }

    /// Completes the tree to `2^height` leaves with zero subtrees and returns its root, or `None`
    /// if what was pushed does not fit in a tree of that height.
    pub fn root_zero_padded(&self, height: u32) -> Option<Node> {
        let mut stack = self.clone();
        loop {
            match stack.entries.as_slice() {
                [] => return zero_root(height).copied(),
                [(h, node)] if *h == height => return Some(*node),
                [.., (h, _)] if *h >= height => return None,
                [.., (h, _)] => {
                    let h = *h;
                    stack.push(h, *zero_root(h)?);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commitments::zero_comm::ZERO_COMMITMENTS;

    fn leaf(i: u8) -> Node {
        [i; 32]
    }

    #[test]
    fn equals_level_by_level_tree() {
        let leaves: Vec<Node> = (0..8).map(leaf).collect();
        let mut level = leaves.clone();
        while level.len() > 1 {
            level = level.chunks(2).map(|p| hash_pair(&p[0], &p[1])).collect();
        }
        let mut stack = MerkleStack::new();
        for l in &leaves {
            stack.push(0, *l);
        }
        assert_eq!(stack.root_zero_padded(3), Some(level[0]));
        assert_eq!(stack.root_zero_padded(2), None);
    }

    #[test]
    fn zero_padding() {
        let mut stack = MerkleStack::new();
        assert_eq!(stack.root_zero_padded(4), Some(ZERO_COMMITMENTS[4]));
        stack.push(0, leaf(1));
        let z = ZERO_COMMITMENTS;
        let want = hash_pair(&hash_pair(&hash_pair(&leaf(1), &z[0]), &z[1]), &z[2]);
        assert_eq!(stack.root_zero_padded(3), Some(want));
        assert_eq!(stack.root_zero_padded(0), Some(leaf(1)));
    }
}
