//! PreCommit phase 2: tree_c over the column hashes, the encoding (replica = data + key in the
//! BLS12-381 scalar field) written to the sealed file, tree_r_last over the replica, and
//! comm_r = H(comm_c, comm_r_last). The GPU-eligible step: all bulk hashing goes through the
//! selected [`Backend`].

use std::path::Path;

use crate::cancel::{Cancel, Scratch};
use crate::error::{Error, Result};
use crate::gpu::Backend;
use crate::hash::{hash_pair, Node};
use crate::porep::binary_tree;
use crate::porep::field;
use crate::porep::files;
use crate::porep::params::SectorParams;
use crate::porep::pc1::{tree_d_layout, Phase1Output};
use crate::porep::tree_file::{self, Layout, StoredTree};

/// Layout of tree_c: every level stored, leaves = column hashes.
pub fn tree_c_layout(params: &SectorParams) -> Layout {
    Layout {
        leaves: params.nodes(),
        skip: 0,
    }
}

/// Layout of one tree_r_last part file.
pub fn tree_r_last_part_layout(params: &SectorParams) -> Layout {
    Layout {
        leaves: params.nodes() / params.tree_r_last_parts as u64,
        skip: params.tree_r_rows_to_discard,
    }
}

fn open_sized(path: &Path, want: u64, what: &str) -> Result<std::fs::File> {
    match files::file_len(path) {
        None => Err(Error::invalid(format!(
            "{what} {} is missing (run PC1 first, and before clear_cache)",
            path.display()
        ))),
        Some(len) if len != want => Err(Error::invalid(format!(
            "{what} {} is {len} bytes, expected {want}",
            path.display()
        ))),
        Some(_) => files::open_read(path),
    }
}

/// Runs PC2; returns (comm_r, comm_d). Cancellable (`cancel`, checked every tree chunk and
/// level and inside the backend); a cancelled or failed PC2 removes what it wrote (tree_c, the
/// tree_r_last files, p_aux, the sealed file) and leaves PC1's tree_d and layers untouched, so
/// PC2 can run again on the same cache.
pub fn seal_pre_commit_phase2(
    phase1_output: &[u8],
    cache_dir: &Path,
    sealed_path: &Path,
    backend: &dyn Backend,
    cancel: &Cancel,
) -> Result<(Node, Node)> {
    let p1 = Phase1Output::decode(phase1_output)?;
    cancel.check()?;
    let params = SectorParams::lookup(p1.sector_size)?;
    let nodes = params.nodes();

    let tree_d_path = cache_dir.join(files::TREE_D);
    let tree_d_file = open_sized(&tree_d_path, tree_d_layout(params).file_len(), "tree_d")?;
    if StoredTree::open(&tree_d_path, tree_d_layout(params))?.root()? != p1.comm_d {
        return Err(Error::invalid(format!(
            "{} does not match the phase-1 output's comm_d (cache from another sector?)",
            tree_d_path.display()
        )));
    }
    let layer_paths: Vec<_> = (1..=params.layers as u32)
        .map(|l| files::layer_path(cache_dir, l))
        .collect();
    let layer_files = layer_paths
        .iter()
        .map(|p| open_sized(p, params.sector_size, "layer file"))
        .collect::<Result<Vec<_>>>()?;

    let mut scratch = Scratch::new();
    let tree_c_path = cache_dir.join(files::TREE_C);
    scratch.add(&tree_c_path);
    scratch.add(sealed_path);
    scratch.add(cache_dir.join(files::P_AUX));
    let part_paths = files::tree_r_last_paths(cache_dir, params);
    for p in &part_paths {
        scratch.add(p);
    }

    // tree_c over column hashes.
    let mut columns: Vec<Vec<Node>> = Vec::new();
    let comm_c = tree_file::build(
        &tree_c_path,
        tree_c_layout(params),
        backend,
        cancel,
        |first, buf| {
            columns.resize(layer_files.len(), Vec::new());
            for ((col, f), p) in columns.iter_mut().zip(&layer_files).zip(&layer_paths) {
                cancel.check()?;
                col.resize(buf.len(), [0u8; 32]);
                files::read_nodes_at_cancellable(f, p, first, col, cancel)?;
            }
            let refs: Vec<&[Node]> = columns.iter().map(Vec::as_slice).collect();
            backend.hash_columns(&refs, buf, cancel)
        },
    )?;
    drop(columns);

    // Encoding and tree_r_last.
    let sealed = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(sealed_path)
        .map_err(|e| Error::io(format!("create sealed file {}", sealed_path.display()), e))?;
    sealed
        .set_len(params.sector_size)
        .map_err(|e| Error::io(format!("size sealed file {}", sealed_path.display()), e))?;
    let key_file = layer_files
        .last()
        .ok_or_else(|| Error::invalid("sector has no layers"))?;
    let key_path = &layer_paths[layer_paths.len() - 1];
    let part_layout = tree_r_last_part_layout(params);
    let mut part_roots = Vec::with_capacity(params.tree_r_last_parts);
    let mut key = Vec::new();
    for (k, part_path) in part_paths.iter().enumerate() {
        let base = k as u64 * part_layout.leaves;
        let root = tree_file::build(part_path, part_layout, backend, cancel, |first, buf| {
            let at = base + first;
            files::read_nodes_at_cancellable(&tree_d_file, &tree_d_path, at, buf, cancel)?;
            key.resize(buf.len(), [0u8; 32]);
            files::read_nodes_at_cancellable(key_file, key_path, at, &mut key, cancel)?;
            cancel.check()?;
            for (d, k) in buf.iter_mut().zip(&key) {
                *d = field::add(d, k);
            }
            files::write_nodes_at_cancellable(&sealed, sealed_path, at, buf, cancel)
        })?;
        part_roots.push(root);
    }
    debug_assert_eq!(part_roots.len() as u64 * part_layout.leaves, nodes);
    // Bounded by the cancel flag: a stop does not wait for the replica's writeback.
    files::sync_cancellable(&sealed, sealed_path, cancel)?;
    cancel.check()?;
    let comm_r_last = binary_tree::root(part_roots);
    files::write_p_aux(cache_dir, &comm_c, &comm_r_last)?;
    scratch.keep();
    Ok((hash_pair(&comm_c, &comm_r_last), p1.comm_d))
}
