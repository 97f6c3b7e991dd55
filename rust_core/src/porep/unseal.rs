//! Unseal: regenerate the key (relabel every layer, the same work as PC1) and write
//! data = replica − key back, fr32-padded, for an unpadded range of the sector.
//!
//! The range is in unpadded bytes and must be 127-aligned (whole fr32 chunks, as Lotus's piece
//! offsets are); the padded bytes go to `unsealed_out` at the padded offset (the file is created
//! if missing and never truncated, like Lotus's partial unsealed file). The key is always
//! regenerated, never read from layer files the cache may still hold, so unseal works after
//! clear_cache and really depends on its inputs (`cache_dir` is taken for interface parity with
//! Lotus, whose unseal reads tree metadata there). Every recovered node must be
//! fr32 data (top two bits clear): a wrong ticket, comm_d, prover or sector number, or a corrupt
//! replica, gives random field elements that fail this almost surely, so unseal errors instead of
//! writing garbage.

use std::path::Path;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::hash::Node;
use crate::porep::field;
use crate::porep::files;
use crate::porep::ids::replica_id;
use crate::porep::labels::label_all_layers;
use crate::porep::params::SectorParams;

/// Arguments of [`unseal_range`] that identify the replica.
pub struct UnsealInputs<'a> {
    pub sector_size: u64,
    pub prover_id: &'a [u8; 32],
    pub sector_number: u64,
    pub ticket: &'a [u8; 32],
    pub comm_d: &'a Node,
}

/// Writes the padded data of unpadded bytes [offset, offset + length) to `unsealed_out`.
/// Cancellable during the relabeling (every 4096 labels); nothing is written to `unsealed_out`
/// before the key is complete, so a cancelled unseal leaves the file as it was.
pub fn unseal_range(
    inputs: &UnsealInputs,
    _cache_dir: &Path,
    sealed_path: &Path,
    unsealed_out: &Path,
    offset: u64,
    length: u64,
    cancel: &Cancel,
) -> Result<()> {
    let params = SectorParams::lookup(inputs.sector_size)?;
    let end = offset.checked_add(length);
    if offset % 127 != 0
        || length % 127 != 0
        || length == 0
        || !matches!(end, Some(e) if e <= params.unpadded_size())
    {
        return Err(Error::invalid(format!(
            "unseal range offset {offset} length {length}: both must be multiples of 127, \
             length > 0, and the range within the sector's {} unpadded bytes",
            params.unpadded_size()
        )));
    }
    let first = offset / 127 * 128 / 32;
    let count = (length / 127 * 128 / 32) as usize;
    let sealed_len = files::file_len(sealed_path).ok_or_else(|| {
        Error::invalid(format!("sealed file {} is missing", sealed_path.display()))
    })?;
    if sealed_len != params.sector_size {
        return Err(Error::invalid(format!(
            "sealed file {} is {sealed_len} bytes, expected {}",
            sealed_path.display(),
            params.sector_size
        )));
    }
    let replica = files::read_nodes(sealed_path, first, count)?;

    let rid = replica_id(
        inputs.sector_size,
        inputs.prover_id,
        inputs.sector_number,
        inputs.ticket,
        inputs.comm_d,
    );
    let key = label_all_layers(params, &rid, None, cancel)?;
    cancel.check()?;
    let key = key
        .get(first as usize..first as usize + count)
        .ok_or_else(|| Error::invalid("unseal range outside the key"))?;

    let mut data = Vec::with_capacity(count);
    for (k, (r, key)) in replica.iter().zip(key).enumerate() {
        let d = field::sub(r, key);
        if !field::is_canonical(r) || d[31] & 0xc0 != 0 {
            return Err(Error::invalid(format!(
                "unsealed node {} is not fr32 data: wrong ticket, comm_d, prover id or sector \
                 number, or a corrupt replica",
                first + k as u64
            )));
        }
        data.push(d);
    }
    let out = files::open_write(unsealed_out)?;
    files::write_nodes_at(&out, unsealed_out, first, &data)?;
    files::sync_cancellable(&out, unsealed_out, cancel)
}
