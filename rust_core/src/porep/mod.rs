//! The PoRep emulation: Filecoin's sealing pipeline (PC1, PC2, C1, C2), seal verification,
//! unsealing and PoSt, with the same structure and cost shape as `StackedDrg*V1_1` but SHA-256
//! everywhere and no SNARK parameters. The exact construction is in `docs/porep-emulation.md`.
//!
//! One module per job: `params` (the per-size table), `ids` (replica_id, challenges), `graph` and
//! `parents_cache` (the parent graph), `labels` (SDR labeling), `field` (encoding arithmetic),
//! `binary_tree` / `tree_file` / `replica_tree` (trees and paths), `pieces` (commD check), `codec`
//! (blob byte layouts), and one module per step.

pub mod binary_tree;
pub mod c1;
pub mod c2;
pub mod codec;
pub mod field;
pub mod files;
pub mod graph;
pub mod ids;
pub mod labels;
pub mod labels_vl8;
pub mod params;
pub mod parents_cache;
pub mod pc1;
pub mod pc1_batch;
pub mod pc2;
pub mod pieces;
pub mod post;
pub mod replica_tree;
pub mod tree_file;
pub mod unseal;
pub mod vanilla;

use std::path::Path;

use crate::error::{Error, Result};

/// FinalizeSector's cache cleanup: removes the layer files, tree_d and tree_c, keeping what PoSt
/// and unsealing need (`p_aux`, the tree_r_last files). Missing files are not an error, so it can
/// be repeated.
pub fn clear_cache(cache_dir: &Path, sector_size: u64) -> Result<()> {
    let params = params::SectorParams::lookup(sector_size)?;
    let mut doomed: Vec<_> = (1..=params.layers as u32)
        .map(|l| files::layer_path(cache_dir, l))
        .collect();
    doomed.push(cache_dir.join(files::TREE_D));
    doomed.push(cache_dir.join(files::TREE_C));
    for path in doomed {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }
    Ok(())
}
