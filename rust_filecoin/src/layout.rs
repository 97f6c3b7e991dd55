//! The tree-r-last files the library leaves in a sector's cache (PC2 writes them, `clear_cache`
//! keeps them, PoSt reads them), so that CheckProvable can tell a truncated or missing one from
//! the file sizes alone, before any proof is tried.
//!
//! Everything comes from the library's own layout functions for the size's tree shape, the ones
//! its PC2 uses to write the files (storage-proofs-porep's `transform_and_replicate_layers`):
//! the number of base trees (`get_base_tree_count`, 1 for the base shape, sub × top arity
//! otherwise), the file name of each (`split_config` over the `CacheKey::CommRLastTree` store
//! config, `StoreConfig::data_path`), the rows of each base tree that are not stored
//! (`default_rows_to_discard`, which follows `FIL_PROOFS_ROWS_TO_DISCARD` as PC2 does) and the
//! nodes kept on disk (merkletree's `get_merkle_tree_cache_size`: a level-cache store holds only
//! the cached rows, the leaves being the sealed file).

use std::mem::size_of;
use std::path::{Path, PathBuf};

use filecoin_hashers::Hasher;
use filecoin_proofs::{MerkleTreeTrait, StoreConfig};
use merkletree::merkle::{get_merkle_tree_cache_size, get_merkle_tree_len};
use storage_proofs_core::cache_key::CacheKey;
use storage_proofs_core::merkle::{get_base_tree_count, split_config};
use storage_proofs_core::util::default_rows_to_discard;
use typenum::Unsigned;

use crate::error::{Error, Result};

/// `(file name, size in bytes)` of each tree-r-last file of a sector of `sector_size`, in the
/// order of the base trees; `Error::Invalid` for a size this backend does not serve.
pub fn tree_r_last_files(sector_size: u64) -> Result<Vec<(String, u64)>> {
    crate::with_sizes!(sector_size, files_for_shape, sector_size)?
}

/// [`tree_r_last_files`] for a tree shape (public so that tests can show the layout of the
/// production shapes this backend does not serve).
pub fn files_for_shape<Tree: MerkleTreeTrait>(sector_size: u64) -> Result<Vec<(String, u64)>> {
    let node = size_of::<<Tree::Hasher as Hasher>::Domain>();
    let arity = Tree::Arity::to_usize();
    let trees = get_base_tree_count::<Tree>();
    let leaves = usize::try_from(sector_size)
        .map_err(|_| Error::Invalid(format!("sector size {sector_size} does not fit in memory")))?
        / node;
    let base_leaves = leaves / trees;
    let layout = |e: anyhow::Error| Error::Proofs(format!("tree-r-last layout: {e:#}"));
    let config = StoreConfig {
        path: PathBuf::new(),
        id: CacheKey::CommRLastTree.to_string(),
        size: Some(get_merkle_tree_len(base_leaves, arity).map_err(layout)?),
        rows_to_discard: default_rows_to_discard(base_leaves, arity),
    };
    let bytes = get_merkle_tree_cache_size(base_leaves, arity, config.rows_to_discard)
        .map_err(layout)?
        * node;
    let configs = split_config(config, trees).map_err(layout)?;
    configs
        .iter()
        .map(|c| {
            let path = StoreConfig::data_path(Path::new(""), &c.id);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::Proofs(format!("tree-r-last file name {path:?}")))?;
            Ok((name.to_string(), bytes as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use filecoin_proofs::{SectorShape32GiB, SectorShape64GiB};

    use super::*;
    use crate::sizes::{SIZE_2KIB, SIZE_512MIB, SIZE_8MIB};

    /// The bytes of the rows one 8-ary base tree of `leaves` leaves keeps on disk when the
    /// `discarded` rows above the leaves are not stored (nor the leaves: the sealed file),
    /// counted row by row: an independent statement of what the library's functions compute.
    fn oct_cache_bytes(leaves: u64, discarded: u32) -> u64 {
        let height = leaves.trailing_zeros() / 3;
        let kept = height.saturating_sub(1 + discarded);
        (0..=kept).map(|k| 8u64.pow(k)).sum::<u64>() * 32
    }

    #[test]
    fn the_served_sizes_have_one_file() {
        // 2 KiB: 64 leaves, 3 rows: only the row above the leaves can be discarded.
        assert_eq!(
            tree_r_last_files(SIZE_2KIB).unwrap(),
            vec![("sc-02-data-tree-r-last.dat".to_string(), 32)]
        );
        for (size, want) in [
            (SIZE_8MIB, oct_cache_bytes(SIZE_8MIB / 32, 2)),
            (SIZE_512MIB, oct_cache_bytes(SIZE_512MIB / 32, 2)),
        ] {
            assert_eq!(
                tree_r_last_files(size).unwrap(),
                vec![("sc-02-data-tree-r-last.dat".to_string(), want)]
            );
        }
        assert_eq!(oct_cache_bytes(SIZE_8MIB / 32, 2), 18_720);
        assert_eq!(oct_cache_bytes(SIZE_512MIB / 32, 2), 1_198_368);
    }

    #[test]
    fn the_production_shapes_split_into_base_trees() {
        // Lotus' layout: 8 files of 9 586 976 bytes for 32 GiB, 16 for 64 GiB.
        let files = files_for_shape::<SectorShape32GiB>(32 << 30).unwrap();
        assert_eq!(tree_r_last_files(32 << 30).unwrap(), files);
        let names: Vec<String> = (0..8)
            .map(|k| format!("sc-02-data-tree-r-last-{k}.dat"))
            .collect();
        assert_eq!(files.iter().map(|f| f.0.clone()).collect::<Vec<_>>(), names);
        assert!(files.iter().all(|f| f.1 == 9_586_976));
        assert_eq!(oct_cache_bytes((32 << 30) / 32 / 8, 2), 9_586_976);
        let files = files_for_shape::<SectorShape64GiB>(64 << 30).unwrap();
        assert_eq!(files.len(), 16);
        assert_eq!(files[15].0, "sc-02-data-tree-r-last-15.dat");
        assert!(files.iter().all(|f| f.1 == 9_586_976));
        assert_eq!(tree_r_last_files(64 << 30).unwrap(), files);
    }

    #[test]
    fn other_sizes_are_refused() {
        for size in [0, 4096, 16 << 30] {
            let err = tree_r_last_files(size).unwrap_err();
            assert!(matches!(err, Error::Invalid(_)), "{err}");
        }
    }
}
