//! Names of the files in a sector's cache directory (Lotus's names, so operators recognise them)
//! and the node-array read/write helpers every step uses.
//!
//! | file | written by | kept by clear_cache |
//! |---|---|---|
//! | `sc-02-data-layer-<l>.dat` (l = 1..layers) | PC1 | no |
//! | `sc-02-data-tree-d.dat` | PC1 | no |
//! | `sc-02-data-tree-c.dat` | PC2 | no |
//! | `sc-02-data-tree-r-last.dat` or `sc-02-data-tree-r-last-<k>.dat` | PC2 | yes |
//! | `p_aux` (comm_c ‖ comm_r_last) | PC2 | yes |

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::hash::{Node, NODE_SIZE};
use crate::porep::params::SectorParams;

pub const P_AUX: &str = "p_aux";
pub const TREE_D: &str = "sc-02-data-tree-d.dat";
pub const TREE_C: &str = "sc-02-data-tree-c.dat";

pub fn layer_path(cache_dir: &Path, layer: u32) -> PathBuf {
    cache_dir.join(format!("sc-02-data-layer-{layer}.dat"))
}

/// tree_r_last file names: one file when the size has one part, else `-0` … `-(parts−1)`.
pub fn tree_r_last_paths(cache_dir: &Path, params: &SectorParams) -> Vec<PathBuf> {
    if params.tree_r_last_parts == 1 {
        vec![cache_dir.join("sc-02-data-tree-r-last.dat")]
    } else {
        (0..params.tree_r_last_parts)
            .map(|k| cache_dir.join(format!("sc-02-data-tree-r-last-{k}.dat")))
            .collect()
    }
}

/// Writes `nodes` as a whole file (created or truncated).
pub fn write_nodes(path: &Path, nodes: &[Node]) -> Result<()> {
    let mut f =
        File::create(path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    f.write_all(nodes.as_flattened())
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Bytes per write of the cancellable writers. A write can block for long when the kernel
/// throttles a writer that dirtied more than the disk takes (balance_dirty_pages pauses up to
/// 200 ms at a time, a 32 MiB write was seen to block for 1.7 s on a busy shared disk); a cancel
/// check between 1 MiB writes bounds what a stop waits for.
pub const WRITE_STEP: usize = 1 << 20;

/// [`write_nodes`] in [`WRITE_STEP`] writes with a look at `cancel` before each (a 32 GiB layer
/// is seconds of writing).
pub fn write_nodes_cancellable(
    path: &Path,
    nodes: &[Node],
    cancel: &crate::cancel::Cancel,
) -> Result<()> {
    let mut f =
        File::create(path).map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    for part in nodes.as_flattened().chunks(WRITE_STEP) {
        cancel.check()?;
        f.write_all(part)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    }
    Ok(())
}

/// [`read_nodes_at`] in [`WRITE_STEP`] reads with a look at `cancel` before each (a read from a
/// disk busy with writeback can take as long as a throttled write).
pub fn read_nodes_at_cancellable(
    f: &File,
    path: &Path,
    first: u64,
    out: &mut [Node],
    cancel: &crate::cancel::Cancel,
) -> Result<()> {
    let step = WRITE_STEP / NODE_SIZE;
    for (k, part) in out.chunks_mut(step).enumerate() {
        cancel.check()?;
        read_nodes_at(f, path, first + (k * step) as u64, part)?;
    }
    Ok(())
}

/// [`write_nodes_at`] in [`WRITE_STEP`] writes with a look at `cancel` before each.
pub fn write_nodes_at_cancellable(
    f: &File,
    path: &Path,
    first: u64,
    nodes: &[Node],
    cancel: &crate::cancel::Cancel,
) -> Result<()> {
    let step = WRITE_STEP / NODE_SIZE;
    for (k, part) in nodes.chunks(step).enumerate() {
        cancel.check()?;
        write_nodes_at(f, path, first + (k * step) as u64, part)?;
    }
    Ok(())
}

/// `fsync`s a file, but returns `Cancelled` within a few ms of `cancel` being set instead of
/// waiting for the sync: the sync runs on a helper thread (with its own handle of the file),
/// which a cancelled caller leaves to finish on its own. A 512 MiB file the kernel has barely
/// started writing back takes seconds to sync on a slow disk.
pub fn sync_cancellable(f: &File, path: &Path, cancel: &crate::cancel::Cancel) -> Result<()> {
    cancel.check()?;
    let handle = f
        .try_clone()
        .map_err(|e| Error::io(format!("sync {}", path.display()), e))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("rust_core-sync".into())
        .spawn(move || {
            let _ = tx.send(handle.sync_all());
        });
    if spawned.is_err() {
        // No thread to spare: sync here, uninterruptibly.
        return f
            .sync_all()
            .map_err(|e| Error::io(format!("sync {}", path.display()), e));
    }
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(5)) {
            Ok(r) => return r.map_err(|e| Error::io(format!("sync {}", path.display()), e)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => cancel.check()?,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::invalid(format!(
                    "sync {}: the sync thread ended without a result",
                    path.display()
                )))
            }
        }
    }
}

/// Reads `count` nodes starting at node `first`.
pub fn read_nodes(path: &Path, first: u64, count: usize) -> Result<Vec<Node>> {
    let f = open_read(path)?;
    let mut out = vec![[0u8; 32]; count];
    read_nodes_at(&f, path, first, &mut out)?;
    Ok(out)
}

/// Opens a file for reading, naming it in the error.
pub fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), e))
}

/// Opens (creating if needed, never truncating) a file for positional writes.
pub fn open_write(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(path)
        .map_err(|e| Error::io(format!("open {} for writing", path.display()), e))
}

/// Fills `out` with the nodes starting at node `first` of an open file.
pub fn read_nodes_at(f: &File, path: &Path, first: u64, out: &mut [Node]) -> Result<()> {
    f.read_exact_at(out.as_flattened_mut(), first * NODE_SIZE as u64)
        .map_err(|e| {
            Error::io(
                format!(
                    "read {} nodes at node {first} of {}",
                    out.len(),
                    path.display()
                ),
                e,
            )
        })
}

/// Writes `nodes` at node `first` of an open file.
pub fn write_nodes_at(f: &File, path: &Path, first: u64, nodes: &[Node]) -> Result<()> {
    f.write_all_at(nodes.as_flattened(), first * NODE_SIZE as u64)
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Length of a file in bytes, or None when it does not exist.
pub fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// Reads `p_aux`: comm_c ‖ comm_r_last.
pub fn read_p_aux(cache_dir: &Path) -> Result<(Node, Node)> {
    let path = cache_dir.join(P_AUX);
    let bytes =
        std::fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    if bytes.len() != 64 {
        return Err(Error::invalid(format!(
            "{} is {} bytes, expected 64 (comm_c ‖ comm_r_last)",
            path.display(),
            bytes.len()
        )));
    }
    let mut c = [0u8; 32];
    let mut r = [0u8; 32];
    c.copy_from_slice(&bytes[..32]);
    r.copy_from_slice(&bytes[32..]);
    Ok((c, r))
}

/// Writes `p_aux`.
pub fn write_p_aux(cache_dir: &Path, comm_c: &Node, comm_r_last: &Node) -> Result<()> {
    write_nodes(&cache_dir.join(P_AUX), &[*comm_c, *comm_r_last])
}
