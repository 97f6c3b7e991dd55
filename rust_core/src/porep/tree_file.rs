//! Binary Merkle trees stored in files, built in bounded memory, with inclusion paths.
//!
//! File layout: the stored levels bottom-up, concatenated, each level's nodes in index order.
//! A tree may discard its lowest `skip` levels (Filecoin's `rows_to_discard`): then the file
//! starts at level `skip`, and a path rebuilds the discarded part from the 2^skip leaves of the
//! leaf's block, which the caller reads from where the leaves live (for tree_r_last: the sealed
//! file). With `skip = 0` the file holds every level, leaves first (tree_d, tree_c): 2N − 1 nodes.
//!
//! Building streams the leaves in chunks of up to 2^20 nodes (32 MiB), hashes each chunk down to
//! its root with the selected backend, writes every stored level of the chunk at its final
//! position, and finishes the levels above the chunks in memory. The cancel flag is checked before
//! each chunk's leaves and each level (and inside the backend), and a build that fails or is
//! cancelled removes its half-written file.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::cancel::{Cancel, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Backend;
use crate::hash::{hash_level, Node, NODE_SIZE};
use crate::porep::binary_tree;
use crate::porep::files;

/// Leaves hashed per chunk while building.
const BUILD_CHUNK_LOG2: u32 = 20;

/// Shape of a stored tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Leaf count (a power of two).
    pub leaves: u64,
    /// Lowest levels not stored.
    pub skip: u32,
}

impl Layout {
    pub fn height(&self) -> u32 {
        self.leaves.trailing_zeros()
    }

    /// Node offset of `level` (≥ skip) in the file.
    pub fn level_offset(&self, level: u32) -> u64 {
        (self.skip..level).map(|j| self.leaves >> j).sum()
    }

    /// File size in bytes.
    pub fn file_len(&self) -> u64 {
        self.level_offset(self.height() + 1) * NODE_SIZE as u64
    }
}

/// Builds a tree file and returns its root. `fill(first, buf)` must write leaves
/// `first .. first + buf.len()` into `buf`; it is called in increasing order of `first`. On an
/// error or a cancellation the file is removed.
pub fn build(
    path: &Path,
    layout: Layout,
    backend: &dyn Backend,
    cancel: &Cancel,
    fill: impl FnMut(u64, &mut [Node]) -> Result<()>,
) -> Result<Node> {
    let mut scratch = Scratch::new();
    scratch.add(path);
    let root = build_file(path, layout, backend, cancel, fill)?;
    scratch.keep();
    Ok(root)
}

fn build_file(
    path: &Path,
    layout: Layout,
    backend: &dyn Backend,
    cancel: &Cancel,
    mut fill: impl FnMut(u64, &mut [Node]) -> Result<()>,
) -> Result<Node> {
    let height = layout.height();
    let chunk_log2 = BUILD_CHUNK_LOG2.min(height);
    let chunk = 1usize << chunk_log2;
    let file =
        File::create(path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    file.set_len(layout.file_len())
        .map_err(|e| Error::io(format!("size {}", path.display()), e))?;
    let mut cur = vec![[0u8; 32]; chunk];
    let mut next = vec![[0u8; 32]; chunk / 2];
    let mut chunk_roots = Vec::with_capacity((layout.leaves >> chunk_log2) as usize);
    for m in 0..layout.leaves >> chunk_log2 {
        let first = m << chunk_log2;
        cancel.check()?;
        fill(first, &mut cur)?;
        let mut len = chunk;
        for level in 0..=chunk_log2 {
            cancel.check()?;
            if level >= layout.skip {
                let at = layout.level_offset(level) + (first >> level);
                files::write_nodes_at_cancellable(&file, path, at, &cur[..len], cancel)?;
            }
            if len > 1 {
                backend.hash_level(&cur[..len], &mut next[..len / 2], cancel)?;
                std::mem::swap(&mut cur, &mut next);
                len /= 2;
            }
        }
        chunk_roots.push(cur[0]);
        // `cur` and `next` were swapped an odd or even number of times; restore full lengths.
        if cur.len() < chunk {
            std::mem::swap(&mut cur, &mut next);
        }
    }
    let mut level_nodes = chunk_roots;
    for level in chunk_log2 + 1..=height {
        cancel.check()?;
        let mut parents = vec![[0u8; 32]; level_nodes.len() / 2];
        hash_level(&level_nodes[..2 * parents.len()], &mut parents);
        if level >= layout.skip {
            files::write_nodes_at_cancellable(
                &file,
                path,
                layout.level_offset(level),
                &parents,
                cancel,
            )?;
        }
        level_nodes = parents;
    }
    level_nodes
        .first()
        .copied()
        .ok_or_else(|| Error::invalid(format!("tree {} has no leaves", path.display())))
}

/// A tree file opened for proofs.
pub struct StoredTree {
    file: File,
    path: PathBuf,
    layout: Layout,
}

impl StoredTree {
    /// Opens a tree file and checks its size against the layout.
    pub fn open(path: &Path, layout: Layout) -> Result<Self> {
        let file = files::open_read(path)?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        if len != layout.file_len() {
            return Err(Error::invalid(format!(
                "{} is {len} bytes, expected {} for a tree of {} leaves",
                path.display(),
                layout.file_len(),
                layout.leaves
            )));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            layout,
        })
    }

    /// Node `index` of a stored `level`.
    pub fn node(&self, level: u32, index: u64) -> Result<Node> {
        let mut n = [[0u8; 32]];
        let at = self.layout.level_offset(level) + index;
        files::read_nodes_at(&self.file, &self.path, at, &mut n)?;
        Ok(n[0])
    }

    pub fn root(&self) -> Result<Node> {
        self.node(self.layout.height(), 0)
    }

    /// Leaf `index` and its sibling path. With discarded rows, `read_block(first, buf)` supplies
    /// the 2^skip leaves of the leaf's block (ignored when skip = 0).
    pub fn path(
        &self,
        index: u64,
        mut read_block: impl FnMut(u64, &mut [Node]) -> Result<()>,
    ) -> Result<(Node, Vec<Node>)> {
        let Layout { leaves, skip } = self.layout;
        if index >= leaves {
            return Err(Error::invalid(format!(
                "leaf {index} out of range for a tree of {leaves} leaves"
            )));
        }
        let mut path = Vec::with_capacity(self.layout.height() as usize);
        let leaf = if skip == 0 {
            self.node(0, index)?
        } else {
            let first = index >> skip << skip;
            let mut block = vec![[0u8; 32]; 1 << skip];
            read_block(first, &mut block)?;
            let levels = binary_tree::build_levels(block);
            path.extend(binary_tree::path_from_levels(&levels, index - first));
            levels
                .first()
                .and_then(|l| l.get((index - first) as usize))
                .copied()
                .unwrap_or_default()
        };
        for level in skip..self.layout.height() {
            path.push(self.node(level, (index >> level) ^ 1)?);
        }
        Ok((leaf, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::cpu::CpuBackend;

    fn leaves(n: u64) -> Vec<Node> {
        (0..n)
            .map(|i| {
                let mut x = [0u8; 32];
                x[..8].copy_from_slice(&(i * 2654435761).to_le_bytes());
                x
            })
            .collect()
    }

    #[test]
    fn stored_tree_paths_verify_with_and_without_discarded_rows() {
        let dir = std::env::temp_dir().join(format!("ss-tree-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = leaves(256);
        let want_root = binary_tree::root(data.clone());
        for skip in [0u32, 3, 8] {
            let layout = Layout { leaves: 256, skip };
            let path = dir.join(format!("t{skip}"));
            let root = build(
                &path,
                layout,
                &CpuBackend,
                &Cancel::default(),
                |first, buf| {
                    buf.copy_from_slice(&data[first as usize..first as usize + buf.len()]);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(root, want_root);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), layout.file_len());
            let t = StoredTree::open(&path, layout).unwrap();
            assert_eq!(t.root().unwrap(), want_root);
            for i in [0u64, 1, 77, 255] {
                let (leaf, p) = t
                    .path(i, |first, buf| {
                        buf.copy_from_slice(&data[first as usize..first as usize + buf.len()]);
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(leaf, data[i as usize]);
                assert!(binary_tree::verify_path(&leaf, i, &p, &want_root));
            }
            assert!(t.path(256, |_, _| Ok(())).is_err());
            let wrong = Layout { leaves: 512, skip };
            assert!(StoredTree::open(&path, wrong).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cancelled_build_stops_and_removes_its_file() {
        let dir = std::env::temp_dir().join(format!("ss-tree-cancel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t");
        let cancel = Cancel::new();
        let mut calls = 0;
        // 2^22 leaves: 4 chunks; cancelled during the second chunk's fill.
        let layout = Layout {
            leaves: 1 << 22,
            skip: 0,
        };
        let r = build(&path, layout, &CpuBackend, &cancel, |_, buf| {
            calls += 1;
            if calls == 2 {
                cancel.cancel();
            }
            buf.fill([1; 32]);
            Ok(())
        });
        assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
        assert_eq!(calls, 2);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
