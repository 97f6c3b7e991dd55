//! Piece commitment (commP): the root of the binary Merkle tree whose leaves are the 32-byte nodes
//! of the fr32-padded piece, each parent `H(left, right)` (see `hash`).
//!
//! The padded piece is never materialised. Each 127-byte block is padded on the stack into its
//! four leaves, which are hashed at once into two level-1 nodes; 64 blocks make a group whose 128
//! level-1 nodes are reduced in place (4 KiB, in L1). Groups combine into fixed chunks of
//! [`CHUNK_UNPADDED`] bytes, hashed in parallel with rayon, and chunk roots go onto a
//! [`MerkleStack`]. Memory is one batch of chunks whatever the piece size, and since the chunk size
//! never depends on the thread count, neither does the result. A payload shorter than its piece
//! is zero-extended by hashing its last chunk with zeros and completing the tree from the
//! zero-commitment table.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use rayon::prelude::*;

use crate::commitments::piece_size::{tree_height, unpadded_to_padded, PieceTarget, MAX_UNPADDED};
use crate::commitments::root_stack::MerkleStack;
use crate::error::{Error, Result};
use crate::fr32::{blocks, blocks_mut, pad_block, PADDED_BLOCK, UNPADDED_BLOCK};
use crate::hash::sha256_mb::hash_nodes;
use crate::hash::{hash_level, Node};
use crate::io::read_full;

/// Unpadded bytes per parallel task: 127·2^12 = 520 192, padding to 512 KiB.
pub const CHUNK_UNPADDED: usize = UNPADDED_BLOCK << 12;
/// Height of a chunk's subtree: 4 leaves per block, 2^12 blocks.
const CHUNK_HEIGHT: u32 = 14;
/// Chunks buffered before they are hashed together (16 MiB): enough tasks for 32 cores.
const BATCH_CHUNKS: usize = 32;
/// Bytes a streaming hasher or file reader holds per batch.
pub const BATCH_UNPADDED: usize = CHUNK_UNPADDED * BATCH_CHUNKS;
/// Blocks per in-cache group: 64 blocks → 128 level-1 nodes (4 KiB).
const GROUP_BLOCKS: usize = 64;
/// Blocks padded before their leaf pairs are hashed in one call.
const LEAF_BLOCKS: usize = 4;

/// Root of the subtree over fr32(`unpadded`); `unpadded.len()` is `127·2^k`.
fn subtree_root(unpadded: &[u8]) -> Node {
    let mut stack = MerkleStack::new();
    // The padded leaves of `LEAF_BLOCKS` blocks, then the group's levels alternating between two buffers:
    // all in L1. Every level's pairs are independent, so `hash_level` hashes several at once.
    let mut leaves = [0u8; LEAF_BLOCKS * PADDED_BLOCK];
    let mut a = [[0u8; 32]; 2 * GROUP_BLOCKS];
    let mut b = [[0u8; 32]; GROUP_BLOCKS];
    for group in unpadded.chunks(GROUP_BLOCKS * UNPADDED_BLOCK) {
        // A few blocks are padded, then their leaf pairs hashed (`2 · LEAF_BLOCKS`: one batch of
        // the 8-lane kernel, two of the 4-lane SHA-NI one), so that the out-of-order core
        // overlaps the padding of the next blocks with the rounds of these.
        let mut n = 0;
        for (pair, parents) in group
            .chunks(LEAF_BLOCKS * UNPADDED_BLOCK)
            .zip(a.chunks_exact_mut(2 * LEAF_BLOCKS))
        {
            let mut k = 0;
            for (block, padded) in blocks(pair).zip(blocks_mut(&mut leaves)) {
                pad_block(block, padded);
                k += 2;
            }
            hash_nodes(&leaves[..k * 64], &mut parents[..k]);
            n += k;
        }
        // n is a power of two: the group holds 2^j whole blocks.
        let (mut cur, mut next) = (&mut a[..], &mut b[..]);
        let mut height = 1;
        while n > 1 {
            hash_level(&cur[..n], &mut next[..n / 2]);
            std::mem::swap(&mut cur, &mut next);
            n /= 2;
            height += 1;
        }
        stack.push(height, cur[0]);
    }
    // The groups tile a power-of-two tree exactly, so the stack holds one root.
    let height = tree_height(unpadded.len() as u64 / 127 * 128);
    stack.root_zero_padded(height).unwrap_or_default()
}

/// Hashes whole chunks of `data` (a multiple of [`CHUNK_UNPADDED`]) on all cores and pushes their
/// roots in order.
fn push_chunks(data: &[u8], stack: &mut MerkleStack) {
    let roots: Vec<Node> = data.par_chunks(CHUNK_UNPADDED).map(subtree_root).collect();
    for root in roots {
        stack.push(CHUNK_HEIGHT, root);
    }
}

/// Incremental commP: feed the unpadded piece in any slices, then [`PieceHasher::finish`].
/// Holds at most [`BATCH_UNPADDED`] bytes plus O(log n) roots.
#[derive(Clone, Debug, Default)]
pub struct PieceHasher {
    pending: Vec<u8>,
    stack: MerkleStack,
    len: u64,
}

impl PieceHasher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Unpadded bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds more of the unpadded piece. Whole chunks are hashed straight from `data` when no
    /// bytes are pending; the rest is buffered until a batch is full.
    pub fn update(&mut self, mut data: &[u8]) -> Result<()> {
        let new_len = self.len.saturating_add(data.len() as u64);
        if new_len > MAX_UNPADDED {
            return Err(Error::invalid(format!(
                "piece data exceeds the largest piece ({MAX_UNPADDED} unpadded bytes)"
            )));
        }
        self.len = new_len;
        while !data.is_empty() {
            if self.pending.is_empty() && data.len() >= CHUNK_UNPADDED {
                let (whole, rest) = data.split_at(data.len() / CHUNK_UNPADDED * CHUNK_UNPADDED);
                push_chunks(whole, &mut self.stack);
                data = rest;
                continue;
            }
            let room = BATCH_UNPADDED - self.pending.len();
            let (head, rest) = data.split_at(room.min(data.len()));
            self.pending.extend_from_slice(head);
            data = rest;
            if self.pending.len() == BATCH_UNPADDED {
                push_chunks(&self.pending, &mut self.stack);
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// The commitment of what was fed, zero-extended as `target` says. Does not consume the
    /// hasher: more data may follow, and `finish` may be asked again.
    pub fn finish(&self, target: PieceTarget) -> Result<Node> {
        let unpadded = target.piece_size(self.len)?;
        let height = tree_height(unpadded_to_padded(unpadded)?);
        let mut stack = self.stack.clone();
        if (unpadded as usize) < CHUNK_UNPADDED {
            // The whole piece is smaller than a chunk, so nothing has been hashed yet.
            let mut piece = self.pending.clone();
            piece.resize(unpadded as usize, 0);
            return Ok(subtree_root(&piece));
        }
        let whole = self.pending.len() / CHUNK_UNPADDED * CHUNK_UNPADDED;
        let (chunks, tail) = self.pending.split_at(whole);
        push_chunks(chunks, &mut stack);
        if !tail.is_empty() {
            let mut last = tail.to_vec();
            last.resize(CHUNK_UNPADDED, 0);
            stack.push(CHUNK_HEIGHT, subtree_root(&last));
        }
        stack.root_zero_padded(height).ok_or_else(|| {
            Error::invalid(format!(
                "data of {} bytes does not fit in a piece of {unpadded} unpadded bytes",
                self.len
            ))
        })
    }
}

/// commP of an in-memory payload, zero-extended as `target` says.
pub fn piece_commitment(data: &[u8], target: PieceTarget) -> Result<Node> {
    let mut hasher = PieceHasher::new();
    hasher.update(data)?;
    hasher.finish(target)
}

/// commP of everything `reader` yields, with constant memory (two batches): the next batch is
/// read while the current one is hashed. `what` names the source in I/O errors. `cancel` is
/// checked before every batch (16 MiB: tens of ms of hashing).
pub fn piece_commitment_reader<R: Read + Send>(
    mut reader: R,
    target: PieceTarget,
    what: &str,
    cancel: &crate::cancel::Cancel,
) -> Result<Node> {
    let mut hasher = PieceHasher::new();
    let mut current = vec![0u8; BATCH_UNPADDED];
    let mut next = vec![0u8; BATCH_UNPADDED];
    let io_err = |e| Error::io(format!("reading {what}"), e);
    let mut n = read_full(&mut reader, &mut current).map_err(io_err)?;
    while n > 0 {
        cancel.check()?;
        let (hashed, read) = rayon::join(
            || hasher.update(&current[..n]),
            || read_full(&mut reader, &mut next),
        );
        hashed?;
        n = read.map_err(io_err)?;
        std::mem::swap(&mut current, &mut next);
    }
    hasher.finish(target)
}

/// commP of a file's contents, zero-extended as `target` says. The size is checked against the
/// target before any hashing, so a file of the wrong length fails at once. Cancellable (checked
/// every 16 MiB batch); it writes nothing, so a cancelled call leaves nothing behind.
pub fn piece_commitment_file(
    path: &Path,
    target: PieceTarget,
    cancel: &crate::cancel::Cancel,
) -> Result<Node> {
    let what = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(format!("opening {what}"), e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {what}"), e))?
        .len();
    target
        .piece_size(size)
        .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
    piece_commitment_reader(file, target, &what, cancel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commitments::zero_comm::ZERO_COMMITMENTS;
    use crate::fr32;
    use crate::hash::hash_pair;

    /// Reference: pad everything, then hash level by level.
    fn commp_naive(unpadded: &[u8]) -> Node {
        let padded = fr32::pad(unpadded).unwrap_or_default();
        let mut level: Vec<Node> = padded
            .chunks(32)
            .map(|c| c.try_into().unwrap_or_default())
            .collect();
        while level.len() > 1 {
            level = level.chunks(2).map(|p| hash_pair(&p[0], &p[1])).collect();
        }
        level[0]
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 253) as u8).collect()
    }

    #[test]
    fn small_pieces_match_naive() {
        for k in 0..9 {
            let d = data(127 << k);
            assert_eq!(
                piece_commitment(&d, PieceTarget::Exact).ok(),
                Some(commp_naive(&d))
            );
        }
    }

    #[test]
    fn multi_chunk_piece_matches_naive_and_any_split() {
        let d = data(CHUNK_UNPADDED * 4);
        let want = commp_naive(&d);
        assert_eq!(piece_commitment(&d, PieceTarget::Exact).ok(), Some(want));
        let mut h = PieceHasher::new();
        for piece in d.chunks(1_000_003) {
            h.update(piece).ok();
        }
        assert_eq!(h.finish(PieceTarget::Exact).ok(), Some(want));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build();
        let single = pool.map(|p| p.install(|| piece_commitment(&d, PieceTarget::Exact).ok()));
        assert_eq!(single.ok().flatten(), Some(want));
    }

    #[test]
    fn random_pieces_match_naive() {
        // Property test: random payloads of random sizes, multi-buffer commP against the naive
        // tree built one `hash_pair` (the sha2 crate) at a time.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for case in 0..24 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (seed >> 58) as usize % 15;
            let mut x = seed | 1;
            let d: Vec<u8> = (0..127usize << k)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect();
            let got = piece_commitment(&d, PieceTarget::Exact).ok();
            assert_eq!(got, Some(commp_naive(&d)), "case {case}, 127 << {k} bytes");
            let cut = (seed as usize >> 8) % d.len().max(1);
            let mut zeroed = d[..cut].to_vec();
            zeroed.resize(d.len(), 0);
            let target = PieceTarget::Unpadded(d.len() as u64);
            assert_eq!(
                piece_commitment(&d[..cut], target).ok(),
                Some(commp_naive(&zeroed)),
                "case {case}, zero-extended from {cut}"
            );
        }
    }

    #[test]
    fn zero_extension_equals_explicit_zeros() {
        for (len, piece) in [
            (0, 127),
            (1, 127),
            (300, 508),
            (CHUNK_UNPADDED + 5, CHUNK_UNPADDED * 2),
        ] {
            let d = data(len);
            let mut full = d.clone();
            full.resize(piece, 0);
            let want = piece_commitment(&full, PieceTarget::Exact).ok();
            let target = PieceTarget::Unpadded(piece as u64);
            assert_eq!(piece_commitment(&d, target).ok(), want, "{len}");
        }
        let z = piece_commitment(&[], PieceTarget::Unpadded(127 << 20)).ok();
        assert_eq!(z, Some(ZERO_COMMITMENTS[22]));
    }

    #[test]
    fn finish_is_repeatable_and_checks_sizes() {
        let mut h = PieceHasher::new();
        h.update(&data(600)).ok();
        assert!(h.finish(PieceTarget::Exact).is_err());
        assert!(h.finish(PieceTarget::Unpadded(508)).is_err());
        let a = h.finish(PieceTarget::Smallest).ok();
        assert_eq!(a, h.finish(PieceTarget::Unpadded(1016)).ok());
        h.update(&data(416)).ok();
        assert_eq!(h.len(), 1016);
        assert!(h.finish(PieceTarget::Exact).is_ok());
    }
}
