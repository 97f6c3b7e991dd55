//! The parents cache: every node's 14 parents precomputed once per sector size and streamed in
//! node order during labeling, as Filecoin's `v28-sdr-parent-*.cache` is. Labeling then reads
//! parents sequentially instead of recomputing a SHA-256 and 8 Feistel permutations per node.
//!
//! File `ss-porep-v1-parents-<sector_size>.cache` in the cache directory (`SECTORSTORAGE_PARENT_CACHE`,
//! default `<tmp>/sectorstorage-parents`), layout:
//! a 64-byte header — magic "SSPG", version u16 = 1, u16 0, sector_size u64, nodes u64,
//! parents per node u32 = 14, u32 0, graph seed (32 bytes) — then for each node in order its 14
//! parents as u32 LE (6 base, 8 expander; node 0's record is all zeros). 56 bytes per node.
//! A file is written under a temporary name and renamed, so concurrent first uses are safe.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::cancel::{Cancel, Scratch};
use crate::error::{Error, Result};
use crate::porep::graph::{mix64, Graph};
use crate::porep::params::TOTAL_PARENTS;

const HEADER_LEN: u64 = 64;
const RECORD_LEN: usize = TOTAL_PARENTS * 4;
/// Nodes generated or streamed per batch (56 bytes each: 3.5 MiB).
const BATCH_NODES: usize = 1 << 16;
/// Records re-derived from the graph when a cache file is opened, to catch a wrong or corrupt file.
const SPOT_CHECKS: u64 = 256;
/// Caches up to this many nodes (2 KiB sectors) are re-derived whole on open.
const SMALL_CACHE_NODES: u64 = 1 << 12;

/// Directory of the parents cache files.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("SECTORSTORAGE_PARENT_CACHE") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::temp_dir().join("sectorstorage-parents"),
    }
}

/// Path of the cache file for a sector size.
pub fn cache_path(sector_size: u64) -> PathBuf {
    cache_dir().join(format!("ss-porep-v1-parents-{sector_size}.cache"))
}

fn header(graph: &Graph, sector_size: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"SSPG");
    h[4..6].copy_from_slice(&1u16.to_le_bytes());
    h[8..16].copy_from_slice(&sector_size.to_le_bytes());
    h[16..24].copy_from_slice(&graph.nodes().to_le_bytes());
    h[24..28].copy_from_slice(&(TOTAL_PARENTS as u32).to_le_bytes());
    h[32..64].copy_from_slice(graph.seed());
    h
}

fn encode_record(graph: &Graph, node: u64, out: &mut [u8]) {
    if node == 0 {
        out.fill(0);
        return;
    }
    for (chunk, p) in out.chunks_exact_mut(4).zip(graph.parents(node)) {
        // nodes ≤ 2^31 for every supported size, so parents fit in u32.
        chunk.copy_from_slice(&(p as u32).to_le_bytes());
    }
}

/// Returns the cache file for `sector_size`, generating it first when it is absent or invalid
/// (a generation that is cancelled removes its temporary file).
pub fn ensure(graph: &Graph, sector_size: u64, cancel: &Cancel) -> Result<PathBuf> {
    ensure_at(cache_path(sector_size), graph, sector_size, cancel)
}

/// [`ensure`] with an explicit file path.
pub fn ensure_at(
    path: PathBuf,
    graph: &Graph,
    sector_size: u64,
    cancel: &Cancel,
) -> Result<PathBuf> {
    if is_valid(&path, graph, sector_size)? {
        return Ok(path);
    }
    generate(&path, graph, sector_size, cancel)?;
    if !is_valid(&path, graph, sector_size)? {
        return Err(Error::invalid(format!(
            "parents cache {} failed validation right after generation",
            path.display()
        )));
    }
    Ok(path)
}

fn is_valid(path: &Path, graph: &Graph, sector_size: u64) -> Result<bool> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(_) => return Ok(false),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    if len != HEADER_LEN + graph.nodes() * RECORD_LEN as u64 {
        return Ok(false);
    }
    let mut got = [0u8; HEADER_LEN as usize];
    if file.read_exact_at(&mut got, 0).is_err() || got != header(graph, sector_size) {
        return Ok(false);
    }
    let nodes = graph.nodes();
    // Small caches are checked whole; large ones at SPOT_CHECKS pseudo-random nodes.
    let checks = if nodes <= SMALL_CACHE_NODES {
        nodes
    } else {
        SPOT_CHECKS
    };
    let mut want = [0u8; RECORD_LEN];
    let mut have = [0u8; RECORD_LEN];
    for k in 0..checks {
        let node = if nodes <= SMALL_CACHE_NODES {
            k
        } else {
            mix64(k) % nodes
        };
        encode_record(graph, node, &mut want);
        let at = HEADER_LEN + node * RECORD_LEN as u64;
        if file.read_exact_at(&mut have, at).is_err() || have != want {
            return Ok(false);
        }
    }
    Ok(true)
}

fn generate(path: &Path, graph: &Graph, sector_size: u64, cancel: &Cancel) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:?}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id(),
        std::thread::current().id()
    ));
    let io = |e| Error::io(format!("write parents cache {}", tmp.display()), e);
    let mut scratch = Scratch::new();
    scratch.add(&tmp);
    let file = File::create(&tmp).map_err(io)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(&header(graph, sector_size)).map_err(io)?;
    let nodes = graph.nodes();
    let mut buf = vec![0u8; BATCH_NODES * RECORD_LEN];
    let mut start = 0u64;
    while start < nodes {
        cancel.check()?;
        let count = (nodes - start).min(BATCH_NODES as u64) as usize;
        buf[..count * RECORD_LEN]
            .par_chunks_mut(RECORD_LEN)
            .enumerate()
            .for_each(|(k, rec)| encode_record(graph, start + k as u64, rec));
        out.write_all(&buf[..count * RECORD_LEN]).map_err(io)?;
        start += count as u64;
    }
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    fs::rename(&tmp, path).map_err(|e| Error::io(format!("rename to {}", path.display()), e))?;
    scratch.keep();
    Ok(())
}

/// Streams parents records in node order, a batch at a time.
pub struct ParentsStream {
    file: std::io::BufReader<File>,
    buf: Vec<u8>,
    /// First node of the batch in `buf`, and how many records it holds.
    batch_start: u64,
    batch_len: usize,
    next_node: u64,
    nodes: u64,
    path: PathBuf,
}

impl ParentsStream {
    /// Opens a cache file returned by [`ensure`] and positions it at node 0.
    pub fn open(path: &Path, nodes: u64) -> Result<Self> {
        let mut file = File::open(path)
            .map_err(|e| Error::io(format!("open parents cache {}", path.display()), e))?;
        let mut skip = [0u8; HEADER_LEN as usize];
        file.read_exact(&mut skip)
            .map_err(|e| Error::io(format!("read parents cache {}", path.display()), e))?;
        Ok(Self {
            file: std::io::BufReader::with_capacity(1 << 16, file),
            buf: vec![0u8; BATCH_NODES * RECORD_LEN],
            batch_start: 0,
            batch_len: 0,
            next_node: 0,
            nodes,
            path: path.to_path_buf(),
        })
    }

    /// The parents of the node `ahead` nodes after the next one, when that record is already in
    /// the current batch (for prefetching; None near a batch boundary).
    pub fn peek(&self, ahead: usize) -> Option<[u32; TOTAL_PARENTS]> {
        let idx = (self.next_node - self.batch_start) as usize + ahead;
        if self.next_node < self.batch_start || idx >= self.batch_len {
            return None;
        }
        let rec = self.buf.get(idx * RECORD_LEN..(idx + 1) * RECORD_LEN)?;
        let mut out = [0u32; TOTAL_PARENTS];
        for (p, chunk) in out.iter_mut().zip(rec.chunks_exact(4)) {
            let mut w = [0u8; 4];
            w.copy_from_slice(chunk);
            *p = u32::from_le_bytes(w);
        }
        Some(out)
    }

    /// The parents of the next node, in order; call once per node.
    pub fn next_parents(&mut self) -> Result<[u32; TOTAL_PARENTS]> {
        let in_batch = (self.next_node - self.batch_start) as usize;
        let idx = if in_batch >= self.batch_len {
            self.batch_start = self.next_node;
            self.batch_len = (self.nodes - self.next_node).min(BATCH_NODES as u64) as usize;
            let bytes = self.batch_len * RECORD_LEN;
            let path = &self.path;
            self.file
                .read_exact(&mut self.buf[..bytes])
                .map_err(|e| Error::io(format!("read parents cache {}", path.display()), e))?;
            0
        } else {
            in_batch
        };
        let rec = &self.buf[idx * RECORD_LEN..(idx + 1) * RECORD_LEN];
        let mut out = [0u32; TOTAL_PARENTS];
        for (p, chunk) in out.iter_mut().zip(rec.chunks_exact(4)) {
            let mut w = [0u8; 4];
            w.copy_from_slice(chunk);
            *p = u32::from_le_bytes(w);
        }
        self.next_node += 1;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_matches_graph_and_corruption_is_regenerated() {
        let dir = std::env::temp_dir().join(format!("ss-parents-test-{}", std::process::id()));
        let file = dir.join("p.cache");
        let graph = Graph::new(2048);
        let path = ensure_at(file.clone(), &graph, 2048, &Cancel::default()).unwrap();
        let mut s = ParentsStream::open(&path, graph.nodes()).unwrap();
        assert_eq!(s.next_parents().unwrap(), [0; TOTAL_PARENTS]);
        for i in 1..graph.nodes() {
            let want = graph.parents(i).map(|p| p as u32);
            assert_eq!(s.next_parents().unwrap(), want);
        }
        // A corrupted record is caught on open and the file is regenerated.
        let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xff; 4], HEADER_LEN + 5 * RECORD_LEN as u64)
            .unwrap();
        assert!(!is_valid(&path, &graph, 2048).unwrap());
        let again = ensure_at(file, &graph, 2048, &Cancel::default()).unwrap();
        assert!(is_valid(&again, &graph, 2048).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
