//! The CPU backend: the same hashes with rayon across all cores. Always built; the reference the
//! CUDA backend must match byte for byte.

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::gpu::{witness_leaf, Backend};
use crate::hash::{hash_level, hash_level_in_place, trim_to_fr32, Node};

/// Items per rayon task: small enough to balance, large enough to amortise scheduling. Each task
/// checks the cancel flag first, so a cancelled call stops within one task per core (4096 hashes).
const MIN_PER_TASK: usize = 1 << 12;

pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".to_string()
    }

    fn hash_level(&self, children: &[Node], out: &mut [Node], cancel: &Cancel) -> Result<()> {
        if children.len() != out.len() * 2 {
            return Err(Error::invalid(format!(
                "hash_level: {} children for {} parents",
                children.len(),
                out.len()
            )));
        }
        out.par_chunks_mut(MIN_PER_TASK)
            .zip(children.par_chunks(2 * MIN_PER_TASK))
            .try_for_each(|(parents, kids)| {
                cancel.check()?;
                hash_level(kids, parents);
                Ok(())
            })
    }

    fn hash_columns(&self, layers: &[&[Node]], out: &mut [Node], cancel: &Cancel) -> Result<()> {
        if layers.iter().any(|l| l.len() != out.len()) {
            return Err(Error::invalid(
                "hash_columns: layer slices differ in length",
            ));
        }
        out.par_chunks_mut(MIN_PER_TASK)
            .enumerate()
            .try_for_each(|(c, cols)| {
                cancel.check()?;
                let base = c * MIN_PER_TASK;
                for (k, col) in cols.iter_mut().enumerate() {
                    *col = column_hash(layers.iter().map(|l| &l[base + k]));
                }
                Ok(())
            })
    }

    fn witness_chunk_roots(
        &self,
        transcript: &[u8; 32],
        chunk_log2: u32,
        first_chunk: u64,
        out: &mut [Node],
        cancel: &Cancel,
    ) -> Result<()> {
        // One chunk (2^16 leaves for PoRep sizes) per check: a few milliseconds of hashing.
        out.par_iter_mut().enumerate().try_for_each(|(m, root)| {
            cancel.check()?;
            let chunk = first_chunk + m as u64;
            *root = witness_chunk_root(transcript, chunk_log2, chunk);
            Ok(())
        })
    }
}

/// Column hash over the labels of one node in every layer.
pub fn column_hash<'a>(labels: impl Iterator<Item = &'a Node>) -> Node {
    let mut h = Sha256::new();
    for l in labels {
        h.update(l);
    }
    let mut out: Node = h.finalize().into();
    trim_to_fr32(&mut out);
    out
}

/// Root of one witness chunk, computed with O(chunk) scratch in place.
pub fn witness_chunk_root(transcript: &[u8; 32], chunk_log2: u32, chunk: u64) -> Node {
    let n = 1usize << chunk_log2;
    let base = chunk << chunk_log2;
    let mut level: Vec<Node> = (0..n as u64)
        .map(|j| witness_leaf(transcript, base + j))
        .collect();
    let mut len = n;
    while len > 1 {
        hash_level_in_place(&mut level, len);
        len /= 2;
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_pair;
    use crate::porep::binary_tree;

    #[test]
    fn level_and_columns_match_the_scalar_definitions() {
        let children: Vec<Node> = (0..(1 << 13))
            .map(|i: u32| {
                let mut n = [0u8; 32];
                n[..4].copy_from_slice(&i.to_le_bytes());
                n
            })
            .collect();
        let mut out = vec![[0u8; 32]; children.len() / 2];
        CpuBackend
            .hash_level(&children, &mut out, &Cancel::default())
            .unwrap();
        for (i, p) in out.iter().enumerate() {
            assert_eq!(*p, hash_pair(&children[2 * i], &children[2 * i + 1]));
        }
        let a = &children[..100];
        let b = &children[100..200];
        let mut cols = vec![[0u8; 32]; 100];
        CpuBackend
            .hash_columns(&[a, b], &mut cols, &Cancel::default())
            .unwrap();
        assert_eq!(cols[7], hash_pair(&a[7], &b[7]));
        assert!(CpuBackend
            .hash_level(&children[..3], &mut out[..1], &Cancel::default())
            .is_err());
    }

    #[test]
    fn witness_chunk_root_is_the_merkle_root_of_its_leaves() {
        let t = [5u8; 32];
        let mut roots = vec![[0u8; 32]; 3];
        CpuBackend
            .witness_chunk_roots(&t, 4, 2, &mut roots, &Cancel::default())
            .unwrap();
        for (m, r) in roots.iter().enumerate() {
            let base = (2 + m as u64) * 16;
            let leaves = (0..16).map(|j| witness_leaf(&t, base + j)).collect();
            assert_eq!(*r, binary_tree::root(leaves));
        }
    }

    #[test]
    fn a_set_flag_stops_every_method() {
        let c = Cancel::new();
        c.cancel();
        let kids = vec![[1u8; 32]; 1 << 14];
        let mut out = vec![[0u8; 32]; 1 << 13];
        let is_cancelled = |r: Result<()>| matches!(r, Err(Error::Cancelled));
        assert!(is_cancelled(CpuBackend.hash_level(&kids, &mut out, &c)));
        assert!(is_cancelled(CpuBackend.hash_columns(
            &[&kids[..1 << 13]],
            &mut out,
            &c
        )));
        assert!(is_cancelled(CpuBackend.witness_chunk_roots(
            &[0; 32],
            4,
            0,
            &mut out[..4],
            &c
        )));
    }
}
