//! tree_r_last as the provers see it: the binary tree over all replica nodes, stored as
//! `tree_r_last_parts` part files (each the tree over its slice of the sector, bottom
//! `rows_to_discard` levels dropped) plus the few levels above the part roots, recomputed on
//! open. A path rebuilds its discarded levels from the sealed file, so a changed byte of the
//! replica in the challenged leaf's 2 KiB block changes the path's root.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hash::Node;
use crate::porep::binary_tree;
use crate::porep::files;
use crate::porep::params::SectorParams;
use crate::porep::pc2::tree_r_last_part_layout;
use crate::porep::tree_file::StoredTree;

pub struct ReplicaTree {
    parts: Vec<StoredTree>,
    /// Levels of the small tree over the part roots.
    top: Vec<Vec<Node>>,
    part_leaves: u64,
    sealed: File,
    sealed_path: PathBuf,
}

impl ReplicaTree {
    /// Opens the part files and the sealed file, checking their sizes.
    pub fn open(params: &SectorParams, cache_dir: &Path, sealed_path: &Path) -> Result<Self> {
        let layout = tree_r_last_part_layout(params);
        let parts = files::tree_r_last_paths(cache_dir, params)
            .iter()
            .map(|p| StoredTree::open(p, layout))
            .collect::<Result<Vec<_>>>()?;
        let roots = parts
            .iter()
            .map(StoredTree::root)
            .collect::<Result<Vec<_>>>()?;
        let len = files::file_len(sealed_path).ok_or_else(|| {
            Error::invalid(format!("sealed file {} is missing", sealed_path.display()))
        })?;
        if len != params.sector_size {
            return Err(Error::invalid(format!(
                "sealed file {} is {len} bytes, expected {}",
                sealed_path.display(),
                params.sector_size
            )));
        }
        Ok(Self {
            parts,
            top: binary_tree::build_levels(roots),
            part_leaves: layout.leaves,
            sealed: files::open_read(sealed_path)?,
            sealed_path: sealed_path.to_path_buf(),
        })
    }

    /// comm_r_last as stored (the root over the part roots).
    pub fn root(&self) -> Node {
        self.top
            .last()
            .and_then(|l| l.first().copied())
            .unwrap_or_default()
    }

    /// Replica leaf `index` (read from the sealed file) and its path to comm_r_last.
    pub fn path(&self, index: u64) -> Result<(Node, Vec<Node>)> {
        let k = index / self.part_leaves;
        let part = self
            .parts
            .get(k as usize)
            .ok_or_else(|| Error::invalid(format!("replica node {index} is outside the sector")))?;
        let base = k * self.part_leaves;
        let (leaf, mut path) = part.path(index - base, |first, buf| {
            files::read_nodes_at(&self.sealed, &self.sealed_path, base + first, buf)
        })?;
        path.extend(binary_tree::path_from_levels(&self.top, k));
        Ok((leaf, path))
    }
}
