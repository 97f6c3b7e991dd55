//! PoRep vanilla proofs: what C1 produces for each challenged node and what the verifier checks.
//!
//! One challenge proof, for challenge c in a sector of N = 2^h nodes and L layers (h sibling
//! nodes per path), in this order:
//! `c (u64 LE)` ‖ `data_c` ‖ tree_d path (h) ‖ `replica_c` ‖ tree_r_last path (h) ‖
//! column of c: L labels ‖ tree_c path (h) ‖ then 14 parent columns (base parents 0..5, expander
//! parents 0..7 of `graph::parents(c)`), each L labels ‖ tree_c path (h).
//! Size: 8 + 32·(2(1 + h) + 15(L + h)) bytes.

use crate::error::Result;
use crate::gpu::cpu::column_hash;
use crate::hash::Node;
use crate::porep::binary_tree::verify_path;
use crate::porep::codec::{Reader, Writer};
use crate::porep::field;
use crate::porep::graph::Graph;
use crate::porep::labels::label_from_parents;
use crate::porep::params::{SectorParams, BASE_DEGREE, EXPANDER_DEGREE, TOTAL_PARENTS};

/// Labels of one node in every layer, with the tree_c path of its column hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnProof {
    pub labels: Vec<Node>,
    pub path: Vec<Node>,
}

/// Everything needed to check one challenged node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeProof {
    pub challenge: u64,
    pub data: Node,
    pub data_path: Vec<Node>,
    pub replica: Node,
    pub replica_path: Vec<Node>,
    pub column: ColumnProof,
    /// 14 columns, in `graph::parents` order.
    pub parents: Vec<ColumnProof>,
}

impl ColumnProof {
    fn encode(&self, w: &mut Writer) {
        w.nodes(&self.labels).nodes(&self.path);
    }
    fn decode(r: &mut Reader, params: &SectorParams) -> Result<Self> {
        Ok(Self {
            labels: r.nodes(params.layers, "column label")?,
            path: r.nodes(params.tree_height() as usize, "tree_c path")?,
        })
    }
    fn hash(&self) -> Node {
        column_hash(self.labels.iter())
    }
}

impl ChallengeProof {
    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.challenge)
            .node(&self.data)
            .nodes(&self.data_path)
            .node(&self.replica)
            .nodes(&self.replica_path);
        self.column.encode(w);
        for p in &self.parents {
            p.encode(w);
        }
    }

    pub fn decode(r: &mut Reader, params: &SectorParams) -> Result<Self> {
        let h = params.tree_height() as usize;
        Ok(Self {
            challenge: r.u64("challenge")?,
            data: r.node("data leaf")?,
            data_path: r.nodes(h, "tree_d path")?,
            replica: r.node("replica leaf")?,
            replica_path: r.nodes(h, "tree_r_last path")?,
            column: ColumnProof::decode(r, params)?,
            parents: (0..TOTAL_PARENTS)
                .map(|_| ColumnProof::decode(r, params))
                .collect::<Result<_>>()?,
        })
    }

    /// Checks this proof for challenge `expected` against the commitments. Returns the first
    /// failed check's description, for diagnostics; the public API reduces it to a bool.
    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        params: &SectorParams,
        graph: &Graph,
        replica_id: &Node,
        expected: u64,
        comm_d: &Node,
        comm_c: &Node,
        comm_r_last: &Node,
    ) -> std::result::Result<(), String> {
        let c = self.challenge;
        if c != expected {
            return Err(format!("challenge is {c}, expected {expected}"));
        }
        if !verify_path(&self.data, c, &self.data_path, comm_d) {
            return Err(format!("tree_d path of node {c} does not reach comm_d"));
        }
        if !verify_path(&self.replica, c, &self.replica_path, comm_r_last) {
            return Err(format!(
                "tree_r_last path of node {c} does not reach comm_r_last"
            ));
        }
        if !verify_path(&self.column.hash(), c, &self.column.path, comm_c) {
            return Err(format!("column of node {c} does not reach comm_c"));
        }
        let parents = graph.parents(c);
        for (k, (col, &p)) in self.parents.iter().zip(parents.iter()).enumerate() {
            if !verify_path(&col.hash(), p, &col.path, comm_c) {
                return Err(format!(
                    "column of parent {k} (node {p}) does not reach comm_c"
                ));
            }
        }
        for layer in 1..=params.layers {
            let base: [Node; BASE_DEGREE] =
                std::array::from_fn(|k| self.parents[k].labels[layer - 1]);
            let expander: [Node; EXPANDER_DEGREE] = std::array::from_fn(|k| {
                // Layer 1 has no previous layer; its label ignores expander parents.
                self.parents[BASE_DEGREE + k].labels[layer.saturating_sub(2)]
            });
            let label = label_from_parents(replica_id, layer as u32, c, &base, &expander);
            if label != self.column.labels[layer - 1] {
                return Err(format!(
                    "label of node {c} in layer {layer} does not recompute"
                ));
            }
        }
        let key = &self.column.labels[params.layers - 1];
        let canonical = field::is_canonical(&self.data)
            && field::is_canonical(&self.replica)
            && field::is_canonical(key);
        if !canonical || field::add(&self.data, key) != self.replica {
            return Err(format!("replica node {c} is not data + key"));
        }
        Ok(())
    }
}
