//! SDR-style labeling: every node of every layer gets a label, a SHA-256 (trimmed to 254 bits)
//! over the replica_id, the layer, the node index and its parents' labels.
//!
//! Message of node `i > 0` in layer `l` (1-based): a 64-byte prefix block
//! `replica_id ‖ l (u32 LE) ‖ i (u64 LE) ‖ 20 zero bytes`, then 37 parent slots of 32 bytes,
//! slot `s` holding the label of parent `s mod d` of the parent list (d = 6 base parents in layer
//! 1; d = 14 in later layers: 6 base parents' labels of this layer, then 8 expander parents'
//! labels of layer l − 1). 1248 bytes: with SHA-256 padding exactly 20 compressions, the cost of
//! an SDR label. Node 0 has no parents: its message is the prefix alone.
//!
//! The hasher drives the SHA-256 block function directly on a reused 20-block buffer (SHA-NI when
//! the CPU has it), which is what keeps labeling near the raw compression rate.

use std::path::Path;

use sha2::digest::generic_array::{typenum::U64, GenericArray};

use crate::cancel::{Cancel, Scratch};
use crate::error::{Error, Result};
use crate::hash::{trim_to_fr32, Node};
use crate::porep::files;
use crate::porep::graph::Graph;
use crate::porep::params::{
    SectorParams, BASE_DEGREE, EXPANDER_DEGREE, LABEL_PARENT_SLOTS, TOTAL_PARENTS,
};
use crate::porep::parents_cache::{self, ParentsStream};

type Block = GenericArray<u8, U64>;

const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
/// Blocks after the prefix for a node with parents: 18 full blocks of two slots, then the last
/// slot with the padding.
const PARENT_BLOCKS: usize = LABEL_PARENT_SLOTS / 2 + 1;
/// All blocks of a message with parents: the prefix, then the parent blocks.
const MESSAGE_BLOCKS: usize = 1 + PARENT_BLOCKS;
/// Bit length of a message with parents: 64 + 37 · 32 bytes.
const MESSAGE_BITS: u64 = ((64 + LABEL_PARENT_SLOTS * 32) * 8) as u64;

/// Reusable label hasher for one replica.
///
/// The whole padded message of a node with parents lives in one buffer of 20 blocks, hashed by a
/// single `compress256` call. Slot `s` holds parent `s mod d`, and `d` (6 or 14) is even, so the
/// slot pattern repeats every `d / 2` whole blocks: only the first `d` slots are copied from the
/// parents' labels, the later blocks are copies of those blocks (no division, no per-slot index).
pub struct LabelHasher {
    blocks: [Block; MESSAGE_BLOCKS],
    /// The prefix-only message of node 0 (prefix and padding block).
    empty: [Block; 2],
}

impl LabelHasher {
    pub fn new(replica_id: &Node) -> Self {
        let mut blocks: [Block; MESSAGE_BLOCKS] = Default::default();
        blocks[0][..32].copy_from_slice(replica_id);
        blocks[MESSAGE_BLOCKS - 1][32] = 0x80;
        blocks[MESSAGE_BLOCKS - 1][56..].copy_from_slice(&MESSAGE_BITS.to_be_bytes());
        let mut empty: [Block; 2] = Default::default();
        empty[0][..32].copy_from_slice(replica_id);
        empty[1][0] = 0x80;
        empty[1][56..].copy_from_slice(&512u64.to_be_bytes());
        Self { blocks, empty }
    }

    /// Label of `node` in `layer` given its parents' labels in list order (0, 6 or 14 of them).
    pub fn label(&mut self, layer: u32, node: u64, parent_labels: &[&Node]) -> Node {
        if let Ok(p) = <&[&Node; BASE_DEGREE]>::try_from(parent_labels) {
            self.label_with(layer, node, p)
        } else if let Ok(p) = <&[&Node; TOTAL_PARENTS]>::try_from(parent_labels) {
            self.label_with(layer, node, p)
        } else if parent_labels.is_empty() {
            self.empty[0][32..36].copy_from_slice(&layer.to_le_bytes());
            self.empty[0][36..44].copy_from_slice(&node.to_le_bytes());
            let mut state = IV;
            sha2::compress256(&mut state, &self.empty);
            finish(state)
        } else {
            // Not a list the construction has (6 or 14 parents): the generic slot rule.
            let d = parent_labels.len();
            let mut slots: [&Node; LABEL_PARENT_SLOTS] = [parent_labels[0]; LABEL_PARENT_SLOTS];
            for (s, slot) in slots.iter_mut().enumerate() {
                *slot = parent_labels[s % d];
            }
            self.hash_slots(layer, node, &slots)
        }
    }

    /// The label with `D` (even) parents.
    #[inline]
    pub fn label_with<const D: usize>(
        &mut self,
        layer: u32,
        node: u64,
        parents: &[&Node; D],
    ) -> Node {
        const { assert!(D % 2 == 0 && D > 0 && D <= LABEL_PARENT_SLOTS) };
        self.set_prefix(layer, node);
        for (k, p) in parents.iter().enumerate() {
            let at = (k % 2) * 32;
            self.blocks[1 + k / 2][at..at + 32].copy_from_slice(*p);
        }
        let period = D / 2;
        for b in period..PARENT_BLOCKS - 1 {
            self.blocks[1 + b] = self.blocks[1 + b % period];
        }
        // The last slot (36) is parent 36 mod D, in the first half of the padding block.
        let last = (LABEL_PARENT_SLOTS - 1) % D;
        self.blocks[MESSAGE_BLOCKS - 1][..32].copy_from_slice(parents[last]);
        let mut state = IV;
        sha2::compress256(&mut state, &self.blocks);
        finish(state)
    }

    fn hash_slots(&mut self, layer: u32, node: u64, slots: &[&Node; LABEL_PARENT_SLOTS]) -> Node {
        self.set_prefix(layer, node);
        for (s, p) in slots.iter().enumerate() {
            let at = (s % 2) * 32;
            self.blocks[1 + s / 2][at..at + 32].copy_from_slice(*p);
        }
        let mut state = IV;
        sha2::compress256(&mut state, &self.blocks);
        finish(state)
    }

    #[inline]
    fn set_prefix(&mut self, layer: u32, node: u64) {
        self.blocks[0][32..36].copy_from_slice(&layer.to_le_bytes());
        self.blocks[0][36..44].copy_from_slice(&node.to_le_bytes());
    }
}

/// The digest of a final state, trimmed to 254 bits.
#[inline]
fn finish(state: [u32; 8]) -> Node {
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    trim_to_fr32(&mut out);
    out
}

/// Nodes ahead of the one being labeled whose parents are prefetched into cache: on layers far
/// larger than the CPU caches, parents' labels are random DRAM reads, and fetching them early hides
/// that latency behind the hashing (the job of SDR's parent-producer threads). On the 512 MiB
/// layer 8, 16, 32 and 64 were measured (docs/benchmarks.md): 16 was best, 8 and 32 within noise
/// of it, 64 a little slower; the hint (T0 or T1), skipping the nearby base parents, or issuing
/// the prefetches in the middle of the hash made no measurable difference.
const PREFETCH_AHEAD: usize = 16;

#[inline]
fn prefetch(node: &Node) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint with no architectural effect; the address is a valid reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(node.as_ptr().cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = node;
}

/// A zeroed layer buffer. On Linux it is advised to use transparent huge pages: a layer is read
/// at random (parents), and with 4 KiB pages nearly every parent read is also a TLB miss, which
/// costs more than the prefetch can hide (most of all in a VM, with nested page tables).
///
/// The advice must come before the pages are first touched (a page faulted in as 4 KiB stays so
/// until khugepaged collapses it, slowly), so the buffer is reserved untouched, advised, and
/// zeroed at once, which faults every 2 MiB page in as a huge page. (The former calloc, madvise,
/// and first touch by the labeling itself got no huge page at all in the bench process, although
/// strace showed the madvise before any touch; a standalone test of the same steps did get them.
/// The eager zeroing gets them every time: check `AnonHugePages` in `/proc/<pid>/smaps`.)
pub fn zeroed_layer(nodes: usize) -> Vec<Node> {
    let mut layer: Vec<Node> = Vec::with_capacity(nodes);
    advise_huge_pages(layer.spare_capacity_mut());
    layer.resize(nodes, [0u8; 32]);
    layer
}

/// [`zeroed_layer`], zeroed 8 MiB at a time with a look at `cancel` before each: touching a
/// 512 MiB layer for the first time is page faults and zeroing that took 1-2 s of CPU on a busy
/// 2-core machine, which a stop had to wait for.
pub fn zeroed_layer_cancellable(nodes: usize, cancel: &Cancel) -> Result<Vec<Node>> {
    zeroed_cancellable(nodes, [0u8; 32], cancel)
}

/// [`zeroed_layer_cancellable`] for any node type (`zero` is its zero value), e.g. the 8-lane
/// interleaved nodes of [`crate::porep::labels_vl8`].
pub fn zeroed_cancellable<T: Clone>(nodes: usize, zero: T, cancel: &Cancel) -> Result<Vec<T>> {
    let step = ((8 << 20) / std::mem::size_of::<T>().max(1)).max(1);
    let mut layer: Vec<T> = Vec::with_capacity(nodes);
    advise_huge_pages(layer.spare_capacity_mut());
    while layer.len() < nodes {
        cancel.check()?;
        let next = (layer.len() + step).min(nodes);
        layer.resize(next, zero.clone());
    }
    Ok(layer)
}

/// Advises the whole 2 MiB pages inside `buf` to use transparent huge pages.
#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(buf: &[T]) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = buf.as_ptr() as usize;
    let end = start + std::mem::size_of_val(buf);
    let (first, last) = (
        start.div_ceil(HUGE_PAGE) * HUGE_PAGE,
        end / HUGE_PAGE * HUGE_PAGE,
    );
    if last > first {
        // SAFETY: madvise is advisory; [first, last) lies inside the live allocation `buf`
        // and no memory is changed.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_buf: &[T]) {}

/// Labels checked between two looks at the cancel flag: 4096 labels are 80k compressions, a few
/// milliseconds on one core.
const CANCEL_EVERY: usize = 1 << 12;

/// Labels one layer sequentially. `prev` is layer `layer − 1` (None for layer 1); parents are
/// streamed from the parents cache in node order. Stops with [`Error::Cancelled`] within
/// [`CANCEL_EVERY`] labels of `cancel` being set.
pub fn label_layer(
    hasher: &mut LabelHasher,
    layer: u32,
    parents: &mut ParentsStream,
    prev: Option<&[Node]>,
    out: &mut [Node],
    cancel: &Cancel,
) -> Result<()> {
    if prev.is_some_and(|p| p.len() != out.len()) {
        return Err(Error::invalid(
            "label_layer: previous layer has another size",
        ));
    }
    for i in 0..out.len() {
        if i % CANCEL_EVERY == 0 {
            cancel.check()?;
        }
        if let Some(ahead) = parents.peek(PREFETCH_AHEAD) {
            for (k, &p) in ahead.iter().enumerate() {
                let layer_nodes = if k < BASE_DEGREE { Some(&*out) } else { prev };
                if let Some(n) = layer_nodes.and_then(|l| l.get(p as usize)) {
                    prefetch(n);
                }
            }
        }
        let record = parents.next_parents()?;
        if i == 0 {
            out[0] = hasher.label(layer, 0, &[]);
            continue;
        }
        // A cache record is input: a base parent must precede `i`, an expander parent must lie
        // in the previous layer. Checked here (two compares per parent) so that a corrupt cache
        // is an error, never an out-of-bounds panic.
        let bad = record[..BASE_DEGREE].iter().any(|&p| p as usize >= i)
            || (prev.is_some()
                && record[BASE_DEGREE..]
                    .iter()
                    .any(|&p| p as usize >= out.len()));
        if bad {
            return Err(Error::invalid(format!(
                "parents cache is corrupt at node {i}: {record:?} (delete it to regenerate)"
            )));
        }
        let (done, _) = out.split_at(i);
        let label = match prev {
            None => {
                let p: [&Node; BASE_DEGREE] = std::array::from_fn(|k| &done[record[k] as usize]);
                hasher.label_with(layer, i as u64, &p)
            }
            Some(prev) => {
                let p: [&Node; TOTAL_PARENTS] = std::array::from_fn(|k| {
                    if k < BASE_DEGREE {
                        &done[record[k] as usize]
                    } else {
                        &prev[record[k] as usize]
                    }
                });
                hasher.label_with(layer, i as u64, &p)
            }
        };
        out[i] = label;
    }
    Ok(())
}

/// Label hashers of `N` sectors of one size (`N` replica ids), hashed together on one core: the
/// `N` messages of a node are independent, so [`compress_lanes`](crate::hash::sha256_mb::compress_lanes)
/// interleaves their SHA-256 rounds (SHA-NI), which keeps the SHA unit busier than one dependent
/// chain of rounds. Each lane's label equals [`LabelHasher`]'s for its replica id.
pub struct LaneHashers<const N: usize> {
    /// Per lane, the padded message of a node with parents (as [`LabelHasher`]'s).
    blocks: [[[u8; 64]; MESSAGE_BLOCKS]; N],
    /// Per lane, for node 0 (no parents).
    singles: [LabelHasher; N],
}

impl<const N: usize> LaneHashers<N> {
    pub fn new(replica_ids: &[Node; N]) -> Self {
        let blocks = replica_ids.map(|id| {
            let mut lane = [[0u8; 64]; MESSAGE_BLOCKS];
            lane[0][..32].copy_from_slice(&id);
            lane[MESSAGE_BLOCKS - 1][32] = 0x80;
            lane[MESSAGE_BLOCKS - 1][56..].copy_from_slice(&MESSAGE_BITS.to_be_bytes());
            lane
        });
        Self {
            blocks,
            singles: replica_ids.each_ref().map(LabelHasher::new),
        }
    }

    /// The label of `node` in `layer` in every lane, lane `l` with its own `D` (even) parents'
    /// labels `parents[l]`.
    pub fn labels_with<const D: usize>(
        &mut self,
        layer: u32,
        node: u64,
        parents: &[[&Node; D]; N],
    ) -> [Node; N] {
        const { assert!(D % 2 == 0 && D > 0 && D <= LABEL_PARENT_SLOTS) };
        let period = D / 2;
        let last = (LABEL_PARENT_SLOTS - 1) % D;
        for (lane, p) in self.blocks.iter_mut().zip(parents) {
            lane[0][32..36].copy_from_slice(&layer.to_le_bytes());
            lane[0][36..44].copy_from_slice(&node.to_le_bytes());
            for (k, label) in p.iter().enumerate() {
                let at = (k % 2) * 32;
                lane[1 + k / 2][at..at + 32].copy_from_slice(*label);
            }
            lane[MESSAGE_BLOCKS - 1][..32].copy_from_slice(p[last]);
        }
        // Parent blocks repeat every `period` blocks: referenced, not copied.
        let refs: [[&[u8; 64]; MESSAGE_BLOCKS]; N] = std::array::from_fn(|l| {
            let lane = &self.blocks[l];
            std::array::from_fn(|b| match b {
                0 => &lane[0],
                _ if b == MESSAGE_BLOCKS - 1 => &lane[b],
                _ => &lane[1 + (b - 1) % period],
            })
        });
        let mut states = [IV; N];
        crate::hash::sha256_mb::compress_lanes_refs::<N, MESSAGE_BLOCKS>(&mut states, &refs);
        states.map(finish)
    }
}

/// [`label_layer`] for `N` sectors of one size at once on one core (see [`LaneHashers`]): `outs[l]`
/// gets layer `layer` of lane `l`, whose previous layer is `prev[l]` (None for layer 1). The
/// parents stream is shared, since the graph depends on the size only. Equal, lane by lane, to
/// [`label_layer`] with that lane's hasher.
pub fn label_layer_lanes<const N: usize>(
    hashers: &mut LaneHashers<N>,
    layer: u32,
    parents: &mut ParentsStream,
    prev: Option<[&[Node]; N]>,
    outs: &mut [&mut [Node]; N],
    cancel: &Cancel,
) -> Result<()> {
    let nodes = outs.first().map_or(0, |o| o.len());
    if outs.iter().any(|o| o.len() != nodes)
        || prev.is_some_and(|p| p.iter().any(|l| l.len() != nodes))
    {
        return Err(Error::invalid(
            "label_layer_lanes: every lane's layers must have the same size",
        ));
    }
    for i in 0..nodes {
        if i % CANCEL_EVERY == 0 {
            cancel.check()?;
        }
        if let Some(ahead) = parents.peek(PREFETCH_AHEAD) {
            for (k, &p) in ahead.iter().enumerate() {
                for l in 0..N {
                    let layer_nodes = match prev {
                        _ if k < BASE_DEGREE => Some(&*outs[l]),
                        Some(prev) => Some(prev[l]),
                        None => None,
                    };
                    if let Some(n) = layer_nodes.and_then(|n| n.get(p as usize)) {
                        prefetch(n);
                    }
                }
            }
        }
        let record = parents.next_parents()?;
        if i == 0 {
            for (out, hasher) in outs.iter_mut().zip(&mut hashers.singles) {
                out[0] = hasher.label(layer, 0, &[]);
            }
            continue;
        }
        // The same input checks as label_layer.
        let bad = record[..BASE_DEGREE].iter().any(|&p| p as usize >= i)
            || (prev.is_some() && record[BASE_DEGREE..].iter().any(|&p| p as usize >= nodes));
        if bad {
            return Err(Error::invalid(format!(
                "parents cache is corrupt at node {i}: {record:?} (delete it to regenerate)"
            )));
        }
        let labels = {
            let done: [&[Node]; N] = std::array::from_fn(|l| &outs[l][..i]);
            match prev {
                None => {
                    let p: [[&Node; BASE_DEGREE]; N] = std::array::from_fn(|l| {
                        std::array::from_fn(|k| &done[l][record[k] as usize])
                    });
                    hashers.labels_with(layer, i as u64, &p)
                }
                Some(prev) => {
                    let p: [[&Node; TOTAL_PARENTS]; N] = std::array::from_fn(|l| {
                        std::array::from_fn(|k| {
                            if k < BASE_DEGREE {
                                &done[l][record[k] as usize]
                            } else {
                                &prev[l][record[k] as usize]
                            }
                        })
                    });
                    hashers.labels_with(layer, i as u64, &p)
                }
            }
        };
        for (out, label) in outs.iter_mut().zip(labels) {
            out[i] = label;
        }
    }
    Ok(())
}

/// Nodes per batch handed from the parent producer to the hashing thread.
const PRODUCER_BATCH: usize = 1024;

/// A batch of nodes' parents records and their expander parents' labels, gathered by the producer.
struct ProducedBatch {
    records: Vec<[u32; TOTAL_PARENTS]>,
    expander: Vec<[Node; EXPANDER_DEGREE]>,
}

/// [`label_layer`] for layers ≥ 2 with a second thread, a *parent producer* (the idea of
/// rust-fil-proofs' multicore SDR): the producer streams the parents cache and gathers each node's 8
/// expander parents' labels (random reads in `prev`) into batches, the calling thread hashes,
/// reading the expander labels sequentially and the base parents from `out`. Same labels as
/// [`label_layer`]; it occupies two cores for one layer, so its rate is a "1 hashing core + 1
/// producer" figure, not a one-core one (the bench reports it separately).
pub fn label_layer_with_producer(
    hasher: &mut LabelHasher,
    layer: u32,
    parents: &mut ParentsStream,
    prev: &[Node],
    out: &mut [Node],
    cancel: &Cancel,
) -> Result<()> {
    label_layer_produced(hasher, layer, parents, prev, out, PRODUCER_BATCH, cancel)
}

fn label_layer_produced(
    hasher: &mut LabelHasher,
    layer: u32,
    parents: &mut ParentsStream,
    prev: &[Node],
    out: &mut [Node],
    batch_nodes: usize,
    cancel: &Cancel,
) -> Result<()> {
    let batch_nodes = batch_nodes.max(1);
    if prev.len() != out.len() {
        return Err(Error::invalid(
            "label_layer: previous layer has another size",
        ));
    }
    let nodes = out.len();
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Result<ProducedBatch>>(4);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<ProducedBatch>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut start = 0usize;
            while start < nodes {
                let len = (nodes - start).min(batch_nodes);
                let mut batch = empty_rx.try_recv().unwrap_or_else(|_| ProducedBatch {
                    records: Vec::with_capacity(batch_nodes),
                    expander: Vec::with_capacity(batch_nodes),
                });
                batch.records.clear();
                batch.expander.clear();
                for i in start..start + len {
                    if let Some(ahead) = parents.peek(PREFETCH_AHEAD) {
                        for &p in &ahead[BASE_DEGREE..] {
                            if let Some(n) = prev.get(p as usize) {
                                prefetch(n);
                            }
                        }
                    }
                    let record = match parents.next_parents() {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = full_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut labels = [[0u8; 32]; EXPANDER_DEGREE];
                    if i > 0 {
                        for (label, &p) in labels.iter_mut().zip(&record[BASE_DEGREE..]) {
                            match prev.get(p as usize) {
                                Some(l) => *label = *l,
                                None => {
                                    let _ = full_tx.send(Err(corrupt_record(i, &record)));
                                    return;
                                }
                            }
                        }
                    }
                    batch.records.push(record);
                    batch.expander.push(labels);
                }
                if full_tx.send(Ok(batch)).is_err() {
                    return; // the hashing thread stopped (an error)
                }
                start += len;
            }
        });
        let mut i = 0usize;
        for batch in full_rx {
            // Returning drops the receiver: the producer's next send fails and it stops too.
            cancel.check()?;
            let batch = batch?;
            for (j, (record, expander)) in batch.records.iter().zip(&batch.expander).enumerate() {
                if let Some(ahead) = batch.records.get(j + PREFETCH_AHEAD) {
                    for &p in &ahead[..BASE_DEGREE] {
                        if let Some(n) = out.get(p as usize) {
                            prefetch(n);
                        }
                    }
                }
                if i == 0 {
                    out[0] = hasher.label(layer, 0, &[]);
                    i += 1;
                    continue;
                }
                if record[..BASE_DEGREE].iter().any(|&p| p as usize >= i) {
                    return Err(corrupt_record(i, record));
                }
                let (done, _) = out.split_at(i);
                let p: [&Node; TOTAL_PARENTS] = std::array::from_fn(|k| {
                    if k < BASE_DEGREE {
                        &done[record[k] as usize]
                    } else {
                        &expander[k - BASE_DEGREE]
                    }
                });
                out[i] = hasher.label_with(layer, i as u64, &p);
                i += 1;
            }
            let _ = empty_tx.send(batch);
        }
        if i != nodes {
            return Err(Error::invalid(format!(
                "label_layer: the parent producer stopped at node {i} of {nodes}"
            )));
        }
        Ok(())
    })
}

fn corrupt_record(node: usize, record: &[u32; TOTAL_PARENTS]) -> Error {
    Error::invalid(format!(
        "parents cache is corrupt at node {node}: {record:?} (delete it to regenerate)"
    ))
}

/// Labels every layer of a replica and returns the last one (the encoding key). When
/// `cache_dir` is given, each layer is also written there as `sc-02-data-layer-<l>.dat`.
/// Holds two layers in memory at a time. On an error or a cancellation the layer files it wrote
/// are removed.
pub fn label_all_layers(
    params: &SectorParams,
    replica_id: &Node,
    cache_dir: Option<&Path>,
    cancel: &Cancel,
) -> Result<Vec<Node>> {
    let mut scratch = Scratch::new();
    let key = label_layers_from(
        params,
        replica_id,
        cache_dir,
        1,
        cancel,
        &mut scratch,
        &mut 0,
    )?;
    scratch.keep();
    Ok(key)
}

/// Layer `layer` of a sector read back from its cache directory: the previous layer of a run
/// resumed at `layer + 1` (a PC1 batch going on without a sector that was stopped mid-layer),
/// written whole by the same PC1 call. Its size must be exactly `nodes` labels.
pub fn load_layer(
    cache_dir: &Path,
    layer: u32,
    nodes: usize,
    cancel: &Cancel,
) -> Result<Vec<Node>> {
    let path = files::layer_path(cache_dir, layer);
    let want = nodes as u64 * std::mem::size_of::<Node>() as u64;
    match files::file_len(&path) {
        Some(len) if len == want => {}
        len => {
            return Err(Error::invalid(format!(
                "cannot resume labeling from {}: {} bytes, expected {want}",
                path.display(),
                len.map_or_else(|| "missing, not".to_owned(), |l| l.to_string())
            )))
        }
    }
    let f = files::open_read(&path)?;
    let mut out = zeroed_layer_cancellable(nodes, cancel)?;
    files::read_nodes_at_cancellable(&f, &path, 0, &mut out, cancel)?;
    Ok(out)
}

/// The previous layer a run starting at layer `first` needs (nothing for layer 1).
fn start_prev(
    cache_dir: Option<&Path>,
    first: u32,
    nodes: usize,
    cancel: &Cancel,
) -> Result<Vec<Node>> {
    match (first, cache_dir) {
        (0 | 1, _) => Ok(Vec::new()),
        (_, Some(dir)) => load_layer(dir, first - 1, nodes, cancel),
        (_, None) => Err(Error::invalid(
            "a labeling run can resume only from layers written to a cache directory",
        )),
    }
}

/// [`label_all_layers`] from layer `first` (see [`load_layer`]); `done` is set to each layer
/// once its file is written whole, so a run stopped midway says where to resume.
pub fn label_layers_from(
    params: &SectorParams,
    replica_id: &Node,
    cache_dir: Option<&Path>,
    first: u32,
    cancel: &Cancel,
    scratch: &mut Scratch,
    done: &mut u32,
) -> Result<Vec<Node>> {
    let graph = Graph::new(params.sector_size);
    let cache = parents_cache::ensure(&graph, params.sector_size, cancel)?;
    let nodes = params.nodes() as usize;
    let mut hasher = LabelHasher::new(replica_id);
    let mut prev: Vec<Node> = start_prev(cache_dir, first, nodes, cancel)?;
    let mut cur: Vec<Node> = zeroed_layer_cancellable(nodes, cancel)?;
    for layer in first.max(1)..=params.layers as u32 {
        let mut stream = ParentsStream::open(&cache, params.nodes())?;
        let prev_ref = if layer == 1 { None } else { Some(&prev[..]) };
        label_layer(&mut hasher, layer, &mut stream, prev_ref, &mut cur, cancel)?;
        if let Some(dir) = cache_dir {
            let path = files::layer_path(dir, layer);
            scratch.add(&path);
            files::write_nodes_cancellable(&path, &cur, cancel)?;
        }
        *done = layer;
        if layer < params.layers as u32 {
            std::mem::swap(&mut prev, &mut cur);
            if cur.len() != nodes {
                cur = zeroed_layer_cancellable(nodes, cancel)?;
            }
        }
    }
    Ok(cur)
}

/// [`label_all_layers`] for `N` sectors of one size labeled together on one core
/// ([`label_layer_lanes`]): lane `l` has replica id `replica_ids[l]` and its layers are written to
/// `cache_dirs[l]` as `sc-02-data-layer-<layer>.dat`, each file byte for byte what
/// [`label_all_layers`] writes for that sector alone. Holds two layers per lane in memory. On an
/// error or a cancellation every lane's layer files it wrote are removed.
pub fn label_all_layers_lanes<const N: usize>(
    params: &SectorParams,
    replica_ids: &[Node; N],
    cache_dirs: [&Path; N],
    cancel: &Cancel,
) -> Result<()> {
    let mut scratch = Scratch::new();
    label_lanes_from(
        params,
        replica_ids,
        cache_dirs,
        1,
        cancel,
        &mut scratch,
        &mut [0; N],
    )?;
    scratch.keep();
    Ok(())
}

/// [`label_all_layers_lanes`] from layer `first` (each lane's previous layer read back with
/// [`load_layer`]); `done[l]` is set to each layer once lane `l`'s file is written whole.
pub fn label_lanes_from<const N: usize>(
    params: &SectorParams,
    replica_ids: &[Node; N],
    cache_dirs: [&Path; N],
    first: u32,
    cancel: &Cancel,
    scratch: &mut Scratch,
    done: &mut [u32; N],
) -> Result<()> {
    let graph = Graph::new(params.sector_size);
    let cache = parents_cache::ensure(&graph, params.sector_size, cancel)?;
    let nodes = params.nodes() as usize;
    let mut hashers = LaneHashers::new(replica_ids);
    let mut prev: [Vec<Node>; N] = std::array::from_fn(|_| Vec::new());
    for (lane, dir) in prev.iter_mut().zip(cache_dirs) {
        *lane = start_prev(Some(dir), first, nodes, cancel)?;
    }
    let mut cur: [Vec<Node>; N] = std::array::from_fn(|_| Vec::new());
    for lane in cur.iter_mut() {
        *lane = zeroed_layer_cancellable(nodes, cancel)?;
    }
    for layer in first.max(1)..=params.layers as u32 {
        let mut stream = ParentsStream::open(&cache, params.nodes())?;
        {
            let prev_refs = (layer > 1).then(|| prev.each_ref().map(|p| &p[..]));
            let mut outs = cur.each_mut().map(|c| &mut c[..]);
            label_layer_lanes(
                &mut hashers,
                layer,
                &mut stream,
                prev_refs,
                &mut outs,
                cancel,
            )?;
        }
        for ((dir, labels), done) in cache_dirs.iter().zip(&cur).zip(done.iter_mut()) {
            let path = files::layer_path(dir, layer);
            scratch.add(&path);
            files::write_nodes_cancellable(&path, labels, cancel)?;
            *done = layer;
        }
        if layer < params.layers as u32 {
            std::mem::swap(&mut prev, &mut cur);
            for lane in cur.iter_mut() {
                if lane.len() != nodes {
                    *lane = zeroed_layer_cancellable(nodes, cancel)?;
                }
            }
        }
    }
    Ok(())
}

/// Recomputes the label of `node` in `layer` from its parents' labels (the verifier's path).
/// `base` are labels in `layer`, `expander` labels in `layer − 1` (ignored in layer 1).
pub fn label_from_parents(
    replica_id: &Node,
    layer: u32,
    node: u64,
    base: &[Node; BASE_DEGREE],
    expander: &[Node; TOTAL_PARENTS - BASE_DEGREE],
) -> Node {
    let mut hasher = LabelHasher::new(replica_id);
    if node == 0 {
        return hasher.label(layer, 0, &[]);
    }
    if layer == 1 {
        let p: [&Node; BASE_DEGREE] = std::array::from_fn(|k| &base[k]);
        hasher.label(layer, node, &p)
    } else {
        let p: [&Node; TOTAL_PARENTS] = std::array::from_fn(|k| {
            if k < BASE_DEGREE {
                &base[k]
            } else {
                &expander[k - BASE_DEGREE]
            }
        });
        hasher.label(layer, node, &p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::porep::ids::hash_parts_trunc254;

    /// The label written as plain SHA-256 over the documented message.
    fn reference_label(replica_id: &Node, layer: u32, node: u64, parents: &[Node]) -> Node {
        let mut msg = Vec::new();
        msg.extend_from_slice(replica_id);
        msg.extend_from_slice(&layer.to_le_bytes());
        msg.extend_from_slice(&node.to_le_bytes());
        msg.extend_from_slice(&[0u8; 20]);
        if !parents.is_empty() {
            for s in 0..LABEL_PARENT_SLOTS {
                msg.extend_from_slice(&parents[s % parents.len()]);
            }
        }
        hash_parts_trunc254(&[&msg])
    }

    #[test]
    fn block_driven_hasher_equals_plain_sha256_of_the_message() {
        let rid = [9u8; 32];
        let base: Vec<Node> = (0..6u8).map(|k| [k + 1; 32]).collect();
        let exp: Vec<Node> = (0..8u8).map(|k| [k + 100; 32]).collect();
        let mut h = LabelHasher::new(&rid);
        assert_eq!(h.label(1, 0, &[]), reference_label(&rid, 1, 0, &[]));
        let refs: Vec<&Node> = base.iter().collect();
        assert_eq!(h.label(1, 5, &refs), reference_label(&rid, 1, 5, &base));
        let all: Vec<Node> = base.iter().chain(exp.iter()).copied().collect();
        let refs: Vec<&Node> = all.iter().collect();
        assert_eq!(h.label(3, 77, &refs), reference_label(&rid, 3, 77, &all));
        let b: [Node; 6] = std::array::from_fn(|k| base[k]);
        let e: [Node; 8] = std::array::from_fn(|k| exp[k]);
        assert_eq!(
            label_from_parents(&rid, 3, 77, &b, &e),
            reference_label(&rid, 3, 77, &all)
        );
    }

    #[test]
    fn layers_match_per_node_recomputation_from_the_graph() {
        let params = SectorParams::lookup(2048).unwrap();
        let rid = [4u8; 32];
        let dir = std::env::temp_dir().join(format!("ss-labels-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = label_all_layers(params, &rid, Some(&dir), &Cancel::default()).unwrap();
        let l1 = files::read_nodes(&files::layer_path(&dir, 1), 0, 64).unwrap();
        let l2 = files::read_nodes(&files::layer_path(&dir, 2), 0, 64).unwrap();
        assert_eq!(key, l2);
        let g = Graph::new(2048);
        for i in 0..64u64 {
            let p = g.parents(i);
            let b1: [Node; 6] = std::array::from_fn(|k| l1[p[k] as usize]);
            let b2: [Node; 6] = std::array::from_fn(|k| l2[p[k] as usize]);
            let e: [Node; 8] = std::array::from_fn(|k| l1[p[6 + k] as usize]);
            assert_eq!(label_from_parents(&rid, 1, i, &b1, &e), l1[i as usize]);
            assert_eq!(label_from_parents(&rid, 2, i, &b2, &e), l2[i as usize]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Layers 1 and 2 of `N` sectors labeled together equal each sector labeled alone.
    fn lanes_equal_single<const N: usize>(size: u64, dir: &Path) {
        let graph = Graph::new(size);
        let nodes = graph.nodes() as usize;
        let path = parents_cache::ensure_at(
            dir.join(format!("p{size}.cache")),
            &graph,
            size,
            &Cancel::default(),
        )
        .unwrap();
        let ids: [Node; N] = std::array::from_fn(|l| [l as u8 * 37 + 1; 32]);
        let prev: [Vec<Node>; N] = std::array::from_fn(|l| {
            (0..nodes)
                .map(|i| hash_parts_trunc254(&[&[l as u8], &(i as u64).to_le_bytes()]))
                .collect()
        });
        for layer in [1u32, 2] {
            let mut got: [Vec<Node>; N] = std::array::from_fn(|_| vec![[0u8; 32]; nodes]);
            let mut stream = ParentsStream::open(&path, nodes as u64).unwrap();
            let prev_refs = (layer > 1).then(|| prev.each_ref().map(|p| &p[..]));
            let mut outs = got.each_mut().map(|g| &mut g[..]);
            label_layer_lanes(
                &mut LaneHashers::new(&ids),
                layer,
                &mut stream,
                prev_refs,
                &mut outs,
                &Cancel::default(),
            )
            .unwrap();
            for l in 0..N {
                let mut want = vec![[0u8; 32]; nodes];
                let mut stream = ParentsStream::open(&path, nodes as u64).unwrap();
                let p = (layer > 1).then_some(&prev[l][..]);
                label_layer(
                    &mut LabelHasher::new(&ids[l]),
                    layer,
                    &mut stream,
                    p,
                    &mut want,
                    &Cancel::default(),
                )
                .unwrap();
                assert!(
                    got[l] == want,
                    "{N} lanes, lane {l}, layer {layer}, {size} bytes"
                );
            }
        }
    }

    #[test]
    fn interleaved_sectors_label_as_each_alone() {
        let dir = std::env::temp_dir().join(format!("ss-labels-lanes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        lanes_equal_single::<1>(2048, &dir);
        lanes_equal_single::<2>(2048, &dir);
        lanes_equal_single::<3>(2048, &dir);
        lanes_equal_single::<4>(2048, &dir);
        if !cfg!(debug_assertions) {
            lanes_equal_single::<4>(8 << 20, &dir);
        }
        // Lanes of different sizes are refused.
        let graph = Graph::new(2048);
        let path =
            parents_cache::ensure_at(dir.join("p2048.cache"), &graph, 2048, &Cancel::default())
                .unwrap();
        let (mut a, mut b) = (vec![[0u8; 32]; 64], vec![[0u8; 32]; 32]);
        let mut stream = ParentsStream::open(&path, 64).unwrap();
        let r = label_layer_lanes(
            &mut LaneHashers::new(&[[1; 32], [2; 32]]),
            1,
            &mut stream,
            None,
            &mut [&mut a[..], &mut b[..]],
            &Cancel::default(),
        );
        assert!(matches!(r, Err(Error::InvalidInput(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn producer_labels_equal_single_thread_labels_and_corruption_is_an_error() {
        use std::os::unix::fs::FileExt;
        let dir = std::env::temp_dir().join(format!("ss-labels-producer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let graph = Graph::new(2048);
        let path = parents_cache::ensure_at(dir.join("p.cache"), &graph, 2048, &Cancel::default())
            .unwrap();
        let prev: Vec<Node> = (0..64u8).map(|k| [k; 32]).collect();
        let mut want = vec![[0u8; 32]; 64];
        let mut stream = ParentsStream::open(&path, 64).unwrap();
        let mut hasher = LabelHasher::new(&[7; 32]);
        label_layer(
            &mut hasher,
            2,
            &mut stream,
            Some(&prev),
            &mut want,
            &Cancel::default(),
        )
        .unwrap();
        for batch in [1, 7, 64, 1024] {
            let mut got = vec![[0u8; 32]; 64];
            let mut stream = ParentsStream::open(&path, 64).unwrap();
            label_layer_produced(
                &mut hasher,
                2,
                &mut stream,
                &prev,
                &mut got,
                batch,
                &Cancel::default(),
            )
            .unwrap();
            assert_eq!(got, want, "batch {batch}");
        }
        // Node 9's first expander parent := 64 (outside the previous layer), then node 5's first
        // base parent := 60 (not earlier than 5): errors, not panics.
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&64u32.to_le_bytes(), 64 + 9 * 56 + 6 * 4)
            .unwrap();
        let mut stream = ParentsStream::open(&path, 64).unwrap();
        let e = label_layer_produced(
            &mut hasher,
            2,
            &mut stream,
            &prev,
            &mut want,
            7,
            &Cancel::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("corrupt at node 9"), "{e}");
        f.write_all_at(&60u32.to_le_bytes(), 64 + 5 * 56).unwrap();
        let mut stream = ParentsStream::open(&path, 64).unwrap();
        let e = label_layer_produced(
            &mut hasher,
            2,
            &mut stream,
            &prev,
            &mut want,
            7,
            &Cancel::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("corrupt at node 5"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_parents_record_is_an_error_not_a_panic() {
        use std::os::unix::fs::FileExt;
        let dir = std::env::temp_dir().join(format!("ss-labels-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let graph = Graph::new(2048);
        let path = parents_cache::ensure_at(dir.join("p.cache"), &graph, 2048, &Cancel::default())
            .unwrap();
        // Node 5's first base parent := 60 (not earlier than 5).
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&60u32.to_le_bytes(), 64 + 5 * 56).unwrap();
        let mut stream = ParentsStream::open(&path, 64).unwrap();
        let mut out = vec![[0u8; 32]; 64];
        let e = label_layer(
            &mut LabelHasher::new(&[1; 32]),
            1,
            &mut stream,
            None,
            &mut out,
            &Cancel::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("corrupt at node 5"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
