//! PoRep bindings: the parameters table, sealing (PC1, PC2, C1, C2), seal verification,
//! unsealing and cache cleanup. Every long call releases the GIL and takes an optional keyword
//! `cancel=` token.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::args::{bytes, node};
use super::cancel::{flag, PyCancelToken};
use crate::cancel::Cancel;
use crate::gpu;
use crate::porep::c2::SealPublic;
use crate::porep::params::{SectorParams, SECTOR_PARAMS};
use crate::porep::pieces::Piece;
use crate::porep::unseal::UnsealInputs;
use crate::porep::{c1, c2, clear_cache as clear, pc1, pc2, unseal};

fn pieces(list: Vec<(u64, Vec<u8>)>) -> PyResult<Vec<Piece>> {
    list.into_iter()
        .enumerate()
        .map(|(i, (padded_size, comm_p))| {
            Ok(Piece {
                padded_size,
                comm_p: node(&format!("pieces[{i}] commP"), &comm_p)?,
            })
        })
        .collect()
}

/// The parameters table row of a sector size.
#[pyfunction]
fn sector_params(py: Python<'_>, sector_size: u64) -> PyResult<Py<PyDict>> {
    let p = SectorParams::lookup(sector_size)?;
    let d = PyDict::new(py);
    d.set_item("sector_size", p.sector_size)?;
    d.set_item("nodes", p.nodes())?;
    d.set_item("node_size", 32)?;
    d.set_item("layers", p.layers)?;
    d.set_item("porep_challenges", p.porep_challenges)?;
    d.set_item("porep_partitions", p.porep_partitions)?;
    d.set_item("window_post_challenges", p.window_post_challenges)?;
    d.set_item("window_post_sector_count", p.window_post_sector_count)?;
    d.set_item("winning_post_challenges", p.winning_post_challenges)?;
    d.set_item("winning_post_sector_count", p.winning_post_sector_count)?;
    d.set_item("tree_r_last_parts", p.tree_r_last_parts)?;
    d.set_item("tree_r_rows_to_discard", p.tree_r_rows_to_discard)?;
    d.set_item("c2_witness_log2", p.c2_witness_log2)?;
    d.set_item("unpadded_size", p.unpadded_size())?;
    Ok(d.unbind())
}

/// Sector sizes the emulation supports, smallest first.
#[pyfunction]
fn supported_sector_sizes() -> Vec<u64> {
    SECTOR_PARAMS.iter().map(|p| p.sector_size).collect()
}

#[pyfunction]
#[pyo3(signature = (sector_size, cache_dir, unsealed_path, prover_id, sector_number, ticket, pieces, *, cancel = None))]
#[allow(clippy::too_many_arguments)]
fn seal_pre_commit_phase1(
    py: Python<'_>,
    sector_size: u64,
    cache_dir: PathBuf,
    unsealed_path: PathBuf,
    prover_id: &[u8],
    sector_number: u64,
    ticket: &[u8],
    pieces: Vec<(u64, Vec<u8>)>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<Py<PyBytes>> {
    let prover_id = node("prover_id", prover_id)?;
    let ticket = node("ticket", ticket)?;
    let pieces = self::pieces(pieces)?;
    let cancel = flag(cancel);
    let out = py.detach(|| {
        pc1::seal_pre_commit_phase1(
            sector_size,
            &cache_dir,
            &unsealed_path,
            &prover_id,
            sector_number,
            &ticket,
            &pieces,
            &cancel,
        )
    })?;
    Ok(bytes(py, &out))
}

/// One sector of a PC1 batch as Python passes it: (cache_dir, unsealed_path, prover_id,
/// sector_number, ticket, pieces).
type BatchSector = (PathBuf, PathBuf, Vec<u8>, u64, Vec<u8>, Vec<(u64, Vec<u8>)>);

#[pyfunction]
#[pyo3(signature = (sector_size, sectors, *, cancel = None, lane_cancels = None, on_lane_stopped = None))]
fn seal_pre_commit_phase1_batch(
    py: Python<'_>,
    sector_size: u64,
    sectors: Vec<BatchSector>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
    lane_cancels: Option<Vec<Bound<'_, PyCancelToken>>>,
    on_lane_stopped: Option<Py<PyAny>>,
) -> PyResult<Vec<Option<Py<PyBytes>>>> {
    struct Owned {
        cache_dir: PathBuf,
        unsealed: PathBuf,
        prover_id: crate::hash::Node,
        number: u64,
        ticket: crate::hash::Node,
        pieces: Vec<Piece>,
    }
    let owned = sectors
        .into_iter()
        .enumerate()
        .map(|(i, (cache_dir, unsealed, prover, number, ticket, list))| {
            let who = format!("sectors[{i}] (sector number {number})");
            Ok(Owned {
                cache_dir,
                unsealed,
                prover_id: node(&format!("{who} prover_id"), &prover)?,
                number,
                ticket: node(&format!("{who} ticket"), &ticket)?,
                pieces: pieces(list)
                    .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("{who}: {e}")))?,
            })
        })
        .collect::<PyResult<Vec<Owned>>>()?;
    let cancel = flag(cancel);
    let flags: Vec<Cancel> = match lane_cancels {
        Some(tokens) => tokens.iter().map(|t| flag(Some(t))).collect(),
        None => owned.iter().map(|_| Cancel::new()).collect(),
    };
    // Told from the labeling thread, which takes the GIL for it; an exception in the callback
    // cannot stop a batch that is already going on without the sector, so it is reported as
    // unraisable.
    let on_stopped = |i: usize| {
        if let Some(callback) = &on_lane_stopped {
            Python::attach(|py| {
                if let Err(e) = callback.call1(py, (i,)) {
                    e.write_unraisable(py, Some(callback.bind(py)));
                }
            });
        }
    };
    let stops = pc1::LaneStops {
        flags: &flags,
        on_stopped: &on_stopped,
    };
    let outs = py.detach(|| {
        let inputs: Vec<pc1::Pc1Input<'_>> = owned
            .iter()
            .map(|o| pc1::Pc1Input {
                cache_dir: &o.cache_dir,
                unsealed_path: &o.unsealed,
                prover_id: o.prover_id,
                sector_number: o.number,
                ticket: o.ticket,
                pieces: &o.pieces,
            })
            .collect();
        pc1::seal_pre_commit_phase1_batch_stoppable(
            sector_size,
            &inputs,
            pc1::BatchLanes::Auto,
            &cancel,
            &stops,
        )
    })?;
    Ok(outs
        .iter()
        .map(|o| o.as_deref().map(|o| bytes(py, o)))
        .collect())
}

#[pyfunction]
#[pyo3(signature = (phase1_output, cache_dir, sealed_path, backend = "auto", *, cancel = None))]
fn seal_pre_commit_phase2(
    py: Python<'_>,
    phase1_output: &[u8],
    cache_dir: PathBuf,
    sealed_path: PathBuf,
    backend: &str,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let backend = gpu::select(backend)?;
    let cancel = flag(cancel);
    let (comm_r, comm_d) = py.detach(|| {
        pc2::seal_pre_commit_phase2(
            phase1_output,
            &cache_dir,
            &sealed_path,
            backend.as_ref(),
            &cancel,
        )
    })?;
    Ok((bytes(py, &comm_r), bytes(py, &comm_d)))
}

#[pyfunction]
#[pyo3(signature = (sector_size, cache_dir, sealed_path, prover_id, sector_number, ticket, seed, pieces, comm_r, comm_d, *, cancel = None))]
#[allow(clippy::too_many_arguments)]
fn seal_commit_phase1(
    py: Python<'_>,
    sector_size: u64,
    cache_dir: PathBuf,
    sealed_path: PathBuf,
    prover_id: &[u8],
    sector_number: u64,
    ticket: &[u8],
    seed: &[u8],
    pieces: Vec<(u64, Vec<u8>)>,
    comm_r: &[u8],
    comm_d: &[u8],
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<Py<PyBytes>> {
    let prover_id = node("prover_id", prover_id)?;
    let ticket = node("ticket", ticket)?;
    let seed = node("seed", seed)?;
    let comm_r = node("comm_r", comm_r)?;
    let comm_d = node("comm_d", comm_d)?;
    let pieces = self::pieces(pieces)?;
    let cancel = flag(cancel);
    let out = py.detach(|| {
        c1::seal_commit_phase1(
            sector_size,
            &cache_dir,
            &sealed_path,
            &prover_id,
            sector_number,
            &ticket,
            &seed,
            &pieces,
            &comm_r,
            &comm_d,
            &cancel,
        )
    })?;
    Ok(bytes(py, &out))
}

#[pyfunction]
#[pyo3(signature = (phase1_output, prover_id, sector_number, backend = "auto", *, cancel = None))]
fn seal_commit_phase2(
    py: Python<'_>,
    phase1_output: &[u8],
    prover_id: &[u8],
    sector_number: u64,
    backend: &str,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<Py<PyBytes>> {
    let prover_id = node("prover_id", prover_id)?;
    let backend = gpu::select(backend)?;
    let cancel = flag(cancel);
    let out = py.detach(|| {
        c2::seal_commit_phase2(
            phase1_output,
            &prover_id,
            sector_number,
            backend.as_ref(),
            &cancel,
        )
    })?;
    Ok(bytes(py, &out))
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn verify_seal(
    py: Python<'_>,
    sector_size: u64,
    comm_r: &[u8],
    comm_d: &[u8],
    prover_id: &[u8],
    sector_number: u64,
    ticket: &[u8],
    seed: &[u8],
    proof: &[u8],
) -> PyResult<bool> {
    let comm_r = node("comm_r", comm_r)?;
    let comm_d = node("comm_d", comm_d)?;
    let prover_id = node("prover_id", prover_id)?;
    let ticket = node("ticket", ticket)?;
    let seed = node("seed", seed)?;
    let public = SealPublic {
        sector_size,
        comm_r: &comm_r,
        comm_d: &comm_d,
        prover_id: &prover_id,
        sector_number,
        ticket: &ticket,
        seed: &seed,
    };
    py.detach(|| c2::verify_seal(&public, proof))
        .map_err(PyErr::from)
}

#[pyfunction]
#[pyo3(signature = (sector_size, cache_dir, sealed_path, unsealed_out, prover_id, sector_number, ticket, comm_d, offset, length, *, cancel = None))]
#[allow(clippy::too_many_arguments)]
fn unseal_range(
    py: Python<'_>,
    sector_size: u64,
    cache_dir: PathBuf,
    sealed_path: PathBuf,
    unsealed_out: PathBuf,
    prover_id: &[u8],
    sector_number: u64,
    ticket: &[u8],
    comm_d: &[u8],
    offset: u64,
    length: u64,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<()> {
    let cancel = flag(cancel);
    let prover_id = node("prover_id", prover_id)?;
    let ticket = node("ticket", ticket)?;
    let comm_d = node("comm_d", comm_d)?;
    let inputs = UnsealInputs {
        sector_size,
        prover_id: &prover_id,
        sector_number,
        ticket: &ticket,
        comm_d: &comm_d,
    };
    py.detach(|| {
        unseal::unseal_range(
            &inputs,
            &cache_dir,
            &sealed_path,
            &unsealed_out,
            offset,
            length,
            &cancel,
        )
    })
    .map_err(PyErr::from)
}

#[pyfunction]
fn clear_cache(py: Python<'_>, cache_dir: PathBuf, sector_size: u64) -> PyResult<()> {
    py.detach(|| clear(&cache_dir, sector_size))
        .map_err(PyErr::from)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sector_params, m)?)?;
    m.add_function(wrap_pyfunction!(supported_sector_sizes, m)?)?;
    m.add_function(wrap_pyfunction!(seal_pre_commit_phase1, m)?)?;
    m.add_function(wrap_pyfunction!(seal_pre_commit_phase1_batch, m)?)?;
    m.add_function(wrap_pyfunction!(seal_pre_commit_phase2, m)?)?;
    m.add_function(wrap_pyfunction!(seal_commit_phase1, m)?)?;
    m.add_function(wrap_pyfunction!(seal_commit_phase2, m)?)?;
    m.add_function(wrap_pyfunction!(verify_seal, m)?)?;
    m.add_function(wrap_pyfunction!(unseal_range, m)?)?;
    m.add_function(wrap_pyfunction!(clear_cache, m)?)?;
    Ok(())
}
