//! The CPU backend: the same hashes with rayon across all cores. Always built; the reference the
//! CUDA backend must match byte for byte.

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::gpu::{witness_leaf, Backend};
use crate::hash::{hash_pair, trim_to_fr32, Node};

/// Items per rayon task: small enough to balance, large enough to amortise scheduling.
const MIN_PER_TASK: usize = 1 << 12;

pub struct CpuBackend;

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".to_string()
    }

    fn hash_level(&self, children: &[Node], out: &mut [Node]) -> Result<()> {
        if children.len() != out.len() * 2 {
            return Err(Error::invalid(format!(
                "hash_level: {} children for {} parents",
                children.len(),
                out.len()
            )));
        }
        out.par_iter_mut()
            .with_min_len(MIN_PER_TASK)
            .zip(children.par_chunks_exact(2).with_min_len(MIN_PER_TASK))
            .for_each(|(parent, pair)| *parent = hash_pair(&pair[0], &pair[1]));
        Ok(())
    }

    fn hash_columns(&self, layers: &[&[Node]], out: &mut [Node]) -> Result<()> {
        if layers.iter().any(|l| l.len() != out.len()) {
            return Err(Error::invalid(
                "hash_columns: layer slices differ in length",
            ));
        }
        out.par_iter_mut()
            .with_min_len(MIN_PER_TASK)
            .enumerate()
            .for_each(|(i, col)| *col = column_hash(layers.iter().map(|l| &l[i])));
        Ok(())
    }

    fn witness_chunk_roots(
        &self,
        transcript: &[u8; 32],
        chunk_log2: u32,
        first_chunk: u64,
        out: &mut [Node],
    ) -> Result<()> {
        out.par_iter_mut().enumerate().for_each(|(m, root)| {
            let chunk = first_chunk + m as u64;
            *root = witness_chunk_root(transcript, chunk_log2, chunk);
        });
        Ok(())
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
        for i in 0..len / 2 {
            level[i] = hash_pair(&level[2 * i], &level[2 * i + 1]);
        }
        len /= 2;
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::porep::merkle;

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
        CpuBackend.hash_level(&children, &mut out).unwrap();
        for (i, p) in out.iter().enumerate() {
            assert_eq!(*p, hash_pair(&children[2 * i], &children[2 * i + 1]));
        }
        let a = &children[..100];
        let b = &children[100..200];
        let mut cols = vec![[0u8; 32]; 100];
        CpuBackend.hash_columns(&[a, b], &mut cols).unwrap();
        assert_eq!(cols[7], hash_pair(&a[7], &b[7]));
        assert!(CpuBackend
            .hash_level(&children[..3], &mut out[..1])
            .is_err());
    }

    #[test]
    fn witness_chunk_root_is_the_merkle_root_of_its_leaves() {
        let t = [5u8; 32];
        let mut roots = vec![[0u8; 32]; 3];
        CpuBackend
            .witness_chunk_roots(&t, 4, 2, &mut roots)
            .unwrap();
        for (m, r) in roots.iter().enumerate() {
            let base = (2 + m as u64) * 16;
            let leaves = (0..16).map(|j| witness_leaf(&t, base + j)).collect();
            assert_eq!(*r, merkle::root(leaves));
        }
    }
}
