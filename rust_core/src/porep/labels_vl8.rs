//! SDR labeling of 8 sectors of one size at once on one core, one sector per 32-bit lane of a
//! 256-bit register, with the AVX-512VL software SHA-256 of [`crate::hash::sha256_mb`]'s `vl`
//! kernel (`vprord`, `vpternlogd`): the SHA unit of SHA-NI caps interleaved labeling at about
//! 1.34x one chain on this core, the software lanes do not share it.
//!
//! The two working layers of the 8 sectors are kept **lane-interleaved and word-major**
//! ([`Node8`]): word `j` of the 8 sectors' labels of a node, as the big-endian SHA-256 message
//! words, in one 32-byte vector. A parent's label for all 8 lanes is then 8 aligned loads that are
//! exactly the message-word vectors, and a finished label (the state plus the trim, in word form)
//! is 8 stores: no transposes while labeling. Only writing each sector's layer file
//! de-interleaves ([`write_lane_files`]).
//!
//! The message of a node is [`crate::porep::labels`]'s (prefix block, 37 parent slots, padding).
//! The slot pattern repeats every `d / 2` blocks, and a block's message schedule depends on its
//! 16 words only, so the schedule (`W + K`, 64 vectors) of each of the `d / 2` distinct parent
//! blocks is computed once per node and replayed for the repeats: 3 of 18 parent blocks in layer
//! 1, 7 of 18 later. Rounds 0-7 of the prefix block depend on the replica id only and are
//! computed once per batch.
//!
//! Everything here is bit-exact with [`label_layer`](crate::porep::labels::label_layer) lane by
//! lane; CPUs without AVX-512VL get the same labels through a portable (slow) path.

use std::io::Write;
use std::path::Path;

use crate::cancel::{Cancel, Scratch};
use crate::error::{Error, Result};
use crate::hash::Node;
use crate::porep::files;
use crate::porep::graph::Graph;
use crate::porep::labels::{zeroed_cancellable, LabelHasher};
use crate::porep::params::{SectorParams, BASE_DEGREE, LABEL_PARENT_SLOTS, TOTAL_PARENTS};
use crate::porep::parents_cache::{self, ParentsStream};

/// Sectors per batch: the 32-bit lanes of a 256-bit register.
pub const LANES: usize = 8;

/// One node of 8 sectors, lane-interleaved: `w[j][l]` is word `j` (bytes `4j..4j+4` read
/// big-endian) of lane `l`'s label. 256 bytes, aligned to a cache line so a parent is 4 whole
/// lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Node8 {
    pub w: [[u32; LANES]; 8],
}

impl Node8 {
    /// Lane `l`'s label as bytes.
    #[inline]
    pub fn lane(&self, l: usize) -> Node {
        let mut out = [0u8; 32];
        for (j, chunk) in out.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&self.w[j][l].to_be_bytes());
        }
        out
    }

    /// Sets lane `l` to `label`.
    #[inline]
    pub fn set_lane(&mut self, l: usize, label: &Node) {
        for (j, chunk) in label.chunks_exact(4).enumerate() {
            self.w[j][l] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    }
}

/// The interleaved layer of up to 8 per-lane layers of equal size (missing lanes are zero).
pub fn interleave(lanes: &[&[Node]]) -> Vec<Node8> {
    let nodes = lanes.first().map_or(0, |l| l.len());
    let mut out = vec![Node8::default(); nodes];
    for (l, lane) in lanes.iter().enumerate().take(LANES) {
        for (n, label) in out.iter_mut().zip(lane.iter()) {
            n.set_lane(l, label);
        }
    }
    out
}

/// Lane `l` of an interleaved layer, as labels.
pub fn deinterleave(layer: &[Node8], l: usize) -> Vec<Node> {
    layer.iter().map(|n| n.lane(l)).collect()
}

/// Labels checked between two looks at the cancel flag: 512 nodes of 8 lanes, the 4096 labels of
/// the single-sector path.
const CANCEL_EVERY: usize = 512;

/// Nodes ahead whose parents are prefetched (as the single-sector path's `PREFETCH_AHEAD`).
const PREFETCH_AHEAD: usize = 16;

/// Per-batch constants of the 8 lanes.
pub struct Vl8Hashers {
    /// Per lane, the plain hasher (node 0, and the whole path where the CPU lacks AVX-512VL).
    singles: Vec<LabelHasher>,
    /// Words 0-7 of the prefix block (the replica ids), per word the 8 lanes.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    rid: [[u32; LANES]; 8],
    /// The state after rounds 0-7 of the prefix block, which read only the replica id words.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    s8: [[u32; LANES]; 8],
}

impl Vl8Hashers {
    /// Hashers of 8 lanes with these replica ids.
    pub fn new(replica_ids: &[Node; LANES]) -> Self {
        let mut rid = [[0u32; LANES]; 8];
        for (l, id) in replica_ids.iter().enumerate() {
            for (j, chunk) in id.chunks_exact(4).enumerate() {
                rid[j][l] = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            }
        }
        let mut s8 = [[0u32; LANES]; 8];
        for l in 0..LANES {
            let w: [u32; 8] = std::array::from_fn(|j| rid[j][l]);
            let s = rounds_scalar(crate::hash::SHA256_IV, &w);
            for (j, v) in s.iter().enumerate() {
                s8[j][l] = *v;
            }
        }
        Self {
            singles: replica_ids.iter().map(LabelHasher::new).collect(),
            rid,
            s8,
        }
    }
}

/// SHA-256 rounds `0..w.len()` of one state (scalar): the per-batch head of the prefix block.
fn rounds_scalar(mut s: [u32; 8], w: &[u32]) -> [u32; 8] {
    use crate::hash::sha256_mb::K;
    for (t, &wt) in w.iter().enumerate() {
        let [a, b, c, d, e, f, g, h] = s;
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let ch = (e & f) ^ (!e & g);
        let t1 = h
            .wrapping_add(s1)
            .wrapping_add(ch)
            .wrapping_add(K[t])
            .wrapping_add(wt);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(maj);
        s = [t1.wrapping_add(t2), a, b, c, d.wrapping_add(t1), e, f, g];
    }
    s
}

/// Whether this CPU runs the 8-lane software kernel (else [`label_layer_vl8`] is the portable
/// path, correct but several times slower than the SHA-NI lanes).
#[inline]
pub fn available() -> bool {
    crate::hash::sha256_mb::vl_available()
}

#[inline]
fn prefetch_node8(n: &Node8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetches are hints with no architectural effect; the 4 lines lie inside `n`.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p: *const i8 = (n as *const Node8).cast();
        for k in 0..4 {
            _mm_prefetch::<_MM_HINT_T0>(p.add(64 * k));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = n;
}

/// Labels one layer of 8 sectors (interleaved; see the module docs). `prev` is layer
/// `layer − 1` (None for layer 1); parents are streamed from the parents cache in node order.
/// Equal lane by lane to [`label_layer`](crate::porep::labels::label_layer) with that lane's
/// replica id. Stops with [`Error::Cancelled`] within 512 nodes of `cancel` being set; a corrupt
/// parents record is an error, never an out-of-bounds access.
pub fn label_layer_vl8(
    hashers: &mut Vl8Hashers,
    layer: u32,
    parents: &mut ParentsStream,
    prev: Option<&[Node8]>,
    out: &mut [Node8],
    cancel: &Cancel,
) -> Result<()> {
    let nodes = out.len();
    if prev.is_some_and(|p| p.len() != nodes) {
        return Err(Error::invalid(
            "label_layer_vl8: previous layer has another size",
        ));
    }
    let fast = available();
    for i in 0..nodes {
        if i % CANCEL_EVERY == 0 {
            cancel.check()?;
        }
        if let Some(ahead) = parents.peek(PREFETCH_AHEAD) {
            for (k, &p) in ahead.iter().enumerate() {
                let layer_nodes = if k < BASE_DEGREE { Some(&*out) } else { prev };
                if let Some(n) = layer_nodes.and_then(|l| l.get(p as usize)) {
                    prefetch_node8(n);
                }
            }
        }
        let record = parents.next_parents()?;
        if i == 0 {
            for (l, h) in hashers.singles.iter_mut().enumerate() {
                out[0].set_lane(l, &h.label(layer, 0, &[]));
            }
            continue;
        }
        let bad = record[..BASE_DEGREE].iter().any(|&p| p as usize >= i)
            || (prev.is_some() && record[BASE_DEGREE..].iter().any(|&p| p as usize >= nodes));
        if bad {
            return Err(Error::invalid(format!(
                "parents cache is corrupt at node {i}: {record:?} (delete it to regenerate)"
            )));
        }
        let (done, rest) = out.split_at_mut(i);
        let target = &mut rest[0];
        match prev {
            None => {
                let p: [&Node8; BASE_DEGREE] = std::array::from_fn(|k| &done[record[k] as usize]);
                label_node(hashers, fast, layer, i as u64, &p, target);
            }
            Some(prev) => {
                let p: [&Node8; TOTAL_PARENTS] = std::array::from_fn(|k| {
                    if k < BASE_DEGREE {
                        &done[record[k] as usize]
                    } else {
                        &prev[record[k] as usize]
                    }
                });
                label_node(hashers, fast, layer, i as u64, &p, target);
            }
        }
    }
    Ok(())
}

/// The 8 labels of `node` with `D` parents, through the kernel when `fast`, else lane by lane.
#[inline(always)]
fn label_node<const D: usize>(
    hashers: &mut Vl8Hashers,
    fast: bool,
    layer: u32,
    node: u64,
    parents: &[&Node8; D],
    out: &mut Node8,
) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` is `available()`: the CPU has AVX2, AVX-512F and AVX-512VL.
        unsafe { kernel::label::<D>(hashers, layer, node, parents, out) };
        return;
    }
    let _ = fast;
    for l in 0..LANES {
        let labels: [Node; D] = std::array::from_fn(|k| parents[k].lane(l));
        let refs: [&Node; D] = std::array::from_fn(|k| &labels[k]);
        out.set_lane(l, &hashers.singles[l].label_with(layer, node, &refs));
    }
}

/// The kernel alone, for the benchmark's "where the time goes": `count` nodes of layer 2 labeled
/// with the same 14 parents (in L1 cache, no parents stream, no bounds checks), the last result
/// returned. Against [`label_layer_vl8`]'s rate it shows what the parents' gather and the stream
/// cost.
#[doc(hidden)]
pub fn kernel_only(
    hashers: &mut Vl8Hashers,
    parents: &[Node8; TOTAL_PARENTS],
    count: u64,
) -> Node8 {
    let fast = available();
    let p: [&Node8; TOTAL_PARENTS] = std::array::from_fn(|k| &parents[k]);
    let mut out = Node8::default();
    for node in 1..=count {
        label_node(hashers, fast, 2, node, &p, &mut out);
        std::hint::black_box(&mut out);
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod kernel {
    //! The 8-lane label kernel. `unsafe` only for the CPU features (checked by the caller) and
    //! aligned loads/stores through references to `Node8` (64-byte aligned).
    // Word loops index several arrays in lockstep (and must unroll to registers).
    #![allow(clippy::needless_range_loop)]

    use core::arch::x86_64::*;

    use super::{Node8, Vl8Hashers, LABEL_PARENT_SLOTS, LANES};
    use crate::hash::sha256_mb::vl::{add, ror17, ror18, ror19, ror7, round, xor3};
    use crate::hash::sha256_mb::K;
    use crate::hash::SHA256_IV;

    /// Parent blocks of two slots each before the last (padding) block.
    const FULL_BLOCKS: usize = LABEL_PARENT_SLOTS / 2;
    /// Distinct parent blocks at most (14 parents: 7).
    const MAX_PERIOD: usize = 7;
    /// Bit length of a message with parents (64 + 37 · 32 bytes).
    const MESSAGE_BITS: u32 = ((64 + LABEL_PARENT_SLOTS * 32) * 8) as u32;

    #[inline(always)]
    unsafe fn splat(x: u32) -> __m256i {
        _mm256_set1_epi32(x as i32)
    }

    /// A vector of 8 lanes from an unaligned array (the per-batch constants).
    #[inline(always)]
    unsafe fn loadu(v: &[u32; LANES]) -> __m256i {
        _mm256_loadu_si256(v.as_ptr().cast())
    }

    /// The 8 word vectors of a parent's labels (aligned: `Node8` is 64-byte aligned).
    #[inline(always)]
    unsafe fn words(n: &Node8) -> [__m256i; 8] {
        core::array::from_fn(|j| _mm256_load_si256(n.w[j].as_ptr().cast()))
    }

    /// Rounds `FROM..64` (`FROM` ≤ 16) of one block whose words are `w` (the schedule computed
    /// on the way), writing `W[t] + K[t]` to `wk[t]` when `STORE`.
    #[inline(always)]
    unsafe fn rounds<const FROM: usize, const STORE: bool>(
        s: &mut [__m256i; 8],
        w: &mut [__m256i; 16],
        wk: *mut __m256i,
    ) {
        macro_rules! unrolled {
            ($m:ident; $($j:literal)*) => { $($m!($j);)* };
        }
        // Rounds 0-15 read the block's words as they are; from round 16 on, each first extends
        // the schedule ring. Separate loops, so that no round tests `g` at run time.
        macro_rules! word_round {
            ($j:literal) => {{
                if $j >= FROM {
                    let x = add(w[$j], splat(K[$j]));
                    if STORE {
                        _mm256_store_si256(wk.add($j), x);
                    }
                    round(s, x);
                }
            }};
        }
        unrolled!(word_round; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        for g in 1..4 {
            macro_rules! data_round {
                ($j:literal) => {{
                    let t = 16 * g + $j;
                    let w15 = w[($j + 1) & 15];
                    let w2 = w[($j + 14) & 15];
                    let s0 = xor3(ror7(w15), ror18(w15), _mm256_srli_epi32::<3>(w15));
                    let s1 = xor3(ror17(w2), ror19(w2), _mm256_srli_epi32::<10>(w2));
                    w[$j] = add(add(w[$j], s0), add(w[($j + 9) & 15], s1));
                    let x = add(w[$j], splat(K[t]));
                    if STORE {
                        _mm256_store_si256(wk.add(t), x);
                    }
                    round(s, x);
                }};
            }
            unrolled!(data_round; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
    }

    /// The 64 rounds of a block whose `W + K` were stored by [`rounds`].
    #[inline(always)]
    unsafe fn replay(s: &mut [__m256i; 8], wk: *const __m256i) {
        macro_rules! unrolled {
            ($m:ident; $($j:literal)*) => { $($m!($j);)* };
        }
        for g in 0..4 {
            macro_rules! wk_round {
                ($j:literal) => {
                    round(s, _mm256_load_si256(wk.add(16 * g + $j)))
                };
            }
            unrolled!(wk_round; 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
    }

    #[inline(always)]
    unsafe fn feed(s: &mut [__m256i; 8], h: &[__m256i; 8]) {
        for i in 0..8 {
            s[i] = add(s[i], h[i]);
        }
    }

    /// `W + K` of the distinct parent blocks, aligned for `vmovdqa`.
    #[repr(C, align(32))]
    struct Schedules([[__m256i; 64]; MAX_PERIOD]);

    /// The labels of `node` in `layer` of the 8 lanes, with `D` (6 or 14) parents each.
    ///
    /// # Safety
    /// The CPU has AVX2, AVX-512F and AVX-512VL.
    #[target_feature(enable = "avx,avx2")]
    pub unsafe fn label<const D: usize>(
        h: &Vl8Hashers,
        layer: u32,
        node: u64,
        parents: &[&Node8; D],
        out: &mut Node8,
    ) {
        const { assert!(D % 2 == 0 && D > 0 && D / 2 <= MAX_PERIOD) };
        let period = D / 2;
        let iv: [__m256i; 8] = core::array::from_fn(|i| splat(SHA256_IV[i]));
        // Prefix block: replica id, layer (LE), node (LE), zeros; rounds 0-7 precomputed.
        let mut w: [__m256i; 16] = [_mm256_setzero_si256(); 16];
        for j in 0..8 {
            w[j] = loadu(&h.rid[j]);
        }
        w[8] = splat(layer.swap_bytes());
        w[9] = splat((node as u32).swap_bytes());
        w[10] = splat(((node >> 32) as u32).swap_bytes());
        let mut s: [__m256i; 8] = core::array::from_fn(|j| loadu(&h.s8[j]));
        rounds::<8, false>(&mut s, &mut w, core::ptr::null_mut());
        feed(&mut s, &iv);
        // The distinct parent blocks, their schedules kept.
        let mut sched = core::mem::MaybeUninit::<Schedules>::uninit();
        let wk: *mut __m256i = sched.as_mut_ptr().cast();
        for b in 0..period {
            let hprev = s;
            let (lo, hi) = (words(parents[2 * b]), words(parents[2 * b + 1]));
            w[..8].copy_from_slice(&lo);
            w[8..].copy_from_slice(&hi);
            rounds::<0, true>(&mut s, &mut w, wk.add(64 * b));
            feed(&mut s, &hprev);
        }
        // The repeats: rounds only.
        for b in period..FULL_BLOCKS {
            let hprev = s;
            replay(&mut s, wk.add(64 * (b % period)));
            feed(&mut s, &hprev);
        }
        // Last block: slot 36, then the padding.
        let hprev = s;
        let last = words(parents[(LABEL_PARENT_SLOTS - 1) % D]);
        w[..8].copy_from_slice(&last);
        w[8] = splat(0x8000_0000);
        for word in &mut w[9..15] {
            *word = _mm256_setzero_si256();
        }
        w[15] = splat(MESSAGE_BITS);
        rounds::<0, false>(&mut s, &mut w, core::ptr::null_mut());
        feed(&mut s, &hprev);
        // Trim to 254 bits: the top two bits of byte 31, the low byte of word 7.
        s[7] = _mm256_and_si256(s[7], splat(0xFFFF_FF3F));
        for j in 0..8 {
            _mm256_store_si256(out.w[j].as_mut_ptr().cast(), s[j]);
        }
    }
}

/// Writes lane `l` of `layer` to `paths[l]` for every lane that has a path (`None`: a padding
/// lane), each file byte for byte what [`files::write_nodes_cancellable`] writes for that lane's
/// labels. One pass over the layer, de-interleaving a chunk at a time; `cancel` is checked
/// before each chunk (1 MiB written in all).
pub fn write_lane_files(layer: &[Node8], paths: &[Option<&Path>], cancel: &Cancel) -> Result<()> {
    // Nodes per chunk: one `WRITE_STEP` written in all between two cancel checks, as the
    // single-sector writer (a throttled write can block for long).
    const CHUNK: usize = files::WRITE_STEP / (32 * LANES);
    let mut outs = Vec::new();
    for (l, p) in paths.iter().enumerate().take(LANES) {
        if let Some(p) = p {
            let f = std::fs::File::create(p)
                .map_err(|e| Error::io(format!("create {}", p.display()), e))?;
            outs.push((l, *p, f, vec![[0u8; 32]; CHUNK]));
        }
    }
    for chunk in layer.chunks(CHUNK) {
        cancel.check()?;
        for (l, path, f, buf) in outs.iter_mut() {
            for (dst, n) in buf.iter_mut().zip(chunk) {
                *dst = n.lane(*l);
            }
            f.write_all(buf[..chunk.len()].as_flattened())
                .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        }
    }
    Ok(())
}

/// Labels every layer of 1 to 8 sectors of one size together ([`label_layer_vl8`]; lanes beyond
/// `replica_ids.len()` are idle padding, labeled with lane 0's id and never written): lane `l`'s
/// layers go to `cache_dirs[l]` as `sc-02-data-layer-<layer>.dat`, byte for byte what
/// [`label_all_layers`](crate::porep::labels::label_all_layers) writes for that sector alone.
/// Holds two interleaved layers (two layers of 8 sectors) in memory. On an error or a
/// cancellation every layer file it wrote is removed.
pub fn label_all_layers_vl8(
    params: &SectorParams,
    replica_ids: &[Node],
    cache_dirs: &[&Path],
    cancel: &Cancel,
) -> Result<()> {
    let mut scratch = Scratch::new();
    label_vl8_into(
        params,
        replica_ids,
        cache_dirs,
        cancel,
        &mut scratch,
        &mut vec![0; replica_ids.len()],
    )?;
    scratch.keep();
    Ok(())
}

/// [`label_all_layers_vl8`] with the layer files it creates added to `scratch` (not removed
/// here on an error) and `done[l]` set to each layer once lane `l`'s file is written whole.
pub fn label_vl8_into(
    params: &SectorParams,
    replica_ids: &[Node],
    cache_dirs: &[&Path],
    cancel: &Cancel,
    scratch: &mut Scratch,
    done: &mut [u32],
) -> Result<()> {
    if replica_ids.is_empty()
        || replica_ids.len() > LANES
        || replica_ids.len() != cache_dirs.len()
        || done.len() != replica_ids.len()
    {
        return Err(Error::invalid(format!(
            "label_all_layers_vl8: 1 to {LANES} sectors with one cache directory each, got {} ids and {} directories",
            replica_ids.len(),
            cache_dirs.len()
        )));
    }
    let ids: [Node; LANES] =
        std::array::from_fn(|l| replica_ids.get(l).copied().unwrap_or(replica_ids[0]));
    let mut hashers = Vl8Hashers::new(&ids);
    let graph = Graph::new(params.sector_size);
    let cache = parents_cache::ensure(&graph, params.sector_size, cancel)?;
    let nodes = params.nodes() as usize;
    let mut prev: Vec<Node8> = Vec::new();
    let mut cur: Vec<Node8> = zeroed_cancellable(nodes, Node8::default(), cancel)?;
    for layer in 1..=params.layers as u32 {
        let mut stream = ParentsStream::open(&cache, params.nodes())?;
        let prev_ref = (layer > 1).then_some(&prev[..]);
        label_layer_vl8(&mut hashers, layer, &mut stream, prev_ref, &mut cur, cancel)?;
        let paths: Vec<std::path::PathBuf> = cache_dirs
            .iter()
            .map(|d| files::layer_path(d, layer))
            .collect();
        for p in &paths {
            scratch.add(p);
        }
        let refs: Vec<Option<&Path>> = paths.iter().map(|p| Some(p.as_path())).collect();
        write_lane_files(&cur, &refs, cancel)?;
        done.fill(layer);
        if layer < params.layers as u32 {
            std::mem::swap(&mut prev, &mut cur);
            if cur.len() != nodes {
                cur = zeroed_cancellable(nodes, Node8::default(), cancel)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::porep::ids::hash_parts_trunc254;
    use crate::porep::labels::label_layer;

    /// Layers 1-3 of 8 sectors labeled together equal each sector labeled alone (layer 1 from
    /// nothing, then each layer from the previous one: the lane-interleaved layers are chained
    /// as PC1 chains them, against per-lane chains of `label_layer`).
    fn vl8_equals_single(size: u64, dir: &Path) {
        let graph = Graph::new(size);
        let nodes = graph.nodes() as usize;
        let path = parents_cache::ensure_at(
            dir.join(format!("p{size}.cache")),
            &graph,
            size,
            &Cancel::default(),
        )
        .unwrap();
        // 8 different ids, one all-ones (the trim must still clear the top bits).
        let ids: [Node; LANES] = std::array::from_fn(|l| {
            if l == 5 {
                [0xff; 32]
            } else {
                hash_parts_trunc254(&[b"rid", &[l as u8], &size.to_le_bytes()])
            }
        });
        let mut hashers = Vl8Hashers::new(&ids);
        let mut want_prev: Vec<Vec<Node>> = vec![Vec::new(); LANES];
        let mut prev8: Vec<Node8> = Vec::new();
        for layer in 1..=3u32 {
            let mut got = vec![Node8::default(); nodes];
            let mut stream = ParentsStream::open(&path, nodes as u64).unwrap();
            let p8 = (layer > 1).then_some(&prev8[..]);
            label_layer_vl8(
                &mut hashers,
                layer,
                &mut stream,
                p8,
                &mut got,
                &Cancel::default(),
            )
            .unwrap();
            for l in 0..LANES {
                let mut want = vec![[0u8; 32]; nodes];
                let mut stream = ParentsStream::open(&path, nodes as u64).unwrap();
                let p = (layer > 1).then_some(&want_prev[l][..]);
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
                    deinterleave(&got, l) == want,
                    "lane {l}, layer {layer}, {size} bytes"
                );
                assert!(want.iter().all(|n| n[31] & 0xc0 == 0));
                want_prev[l] = want;
            }
            prev8 = got;
        }
        // Round trip of the layout.
        let lanes: Vec<&[Node]> = want_prev.iter().map(|l| &l[..]).collect();
        assert_eq!(interleave(&lanes), prev8);
    }

    #[test]
    fn eight_interleaved_sectors_label_as_each_alone() {
        let dir = std::env::temp_dir().join(format!("ss-labels-vl8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        vl8_equals_single(2048, &dir);
        vl8_equals_single(16 << 10, &dir);
        if !cfg!(debug_assertions) {
            vl8_equals_single(8 << 20, &dir);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn portable_path_equals_kernel() {
        // The path of CPUs without AVX-512VL against the kernel (on a CPU with it), on random
        // parents' labels.
        let ids: [Node; LANES] = std::array::from_fn(|l| [l as u8 * 3 + 1; 32]);
        let mut h = Vl8Hashers::new(&ids);
        let parents: Vec<Node8> = (0..14u8)
            .map(|k| {
                let mut n = Node8::default();
                for l in 0..LANES {
                    n.set_lane(l, &hash_parts_trunc254(&[&[k, l as u8]]));
                }
                n
            })
            .collect();
        let p6: [&Node8; 6] = std::array::from_fn(|k| &parents[k]);
        let p14: [&Node8; 14] = std::array::from_fn(|k| &parents[k]);
        for node in [1u64, 77, 1 << 33] {
            let (mut a, mut b) = (Node8::default(), Node8::default());
            label_node(&mut h, available(), 1, node, &p6, &mut a);
            label_node(&mut h, false, 1, node, &p6, &mut b);
            assert_eq!(a, b, "layer 1, node {node}");
            label_node(&mut h, available(), 7, node, &p14, &mut a);
            label_node(&mut h, false, 7, node, &p14, &mut b);
            assert_eq!(a, b, "layer 7, node {node}");
        }
    }

    #[test]
    fn corrupt_record_and_size_mismatch_are_errors() {
        use std::os::unix::fs::FileExt;
        let dir = std::env::temp_dir().join(format!("ss-labels-vl8-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let graph = Graph::new(2048);
        let path = parents_cache::ensure_at(dir.join("p.cache"), &graph, 2048, &Cancel::default())
            .unwrap();
        let mut h = Vl8Hashers::new(&[[1; 32]; LANES]);
        let prev = vec![Node8::default(); 32];
        let mut out = vec![Node8::default(); 64];
        let mut stream = ParentsStream::open(&path, 64).unwrap();
        let r = label_layer_vl8(
            &mut h,
            2,
            &mut stream,
            Some(&prev),
            &mut out,
            &Cancel::default(),
        );
        assert!(matches!(r, Err(Error::InvalidInput(_))));
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&60u32.to_le_bytes(), 64 + 5 * 56).unwrap();
        let mut stream = ParentsStream::open(&path, 64).unwrap();
        let e = label_layer_vl8(&mut h, 1, &mut stream, None, &mut out, &Cancel::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("corrupt at node 5"), "{e}");
        // A cancelled flag stops before the first node.
        let cancel = Cancel::default();
        cancel.cancel();
        let mut stream = ParentsStream::open(&path, 64).unwrap();
        let r = label_layer_vl8(&mut h, 1, &mut stream, None, &mut out, &cancel);
        assert!(matches!(r, Err(Error::Cancelled)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
