//! Python bindings of the PoRep emulation and GPU dispatch: type conversion, error mapping
//! (`InvalidInput` → ValueError, `Io` → OSError, `Cancelled` → `rust_core.Cancelled`) and GIL
//! release around the heavy work. Every long call takes an optional keyword `cancel=` token.
//! Kept out of `python.rs` so the fr32 bindings and these merge without touching each other.

use std::path::PathBuf;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::error::Error;
use crate::gpu;
use crate::hash::Node;
use crate::porep::c2::SealPublic;
use crate::porep::params::{SectorParams, SECTOR_PARAMS};
use crate::porep::pieces::Piece;
use crate::porep::post::{self, CheckSector, PostKind, ProvingSector, PublicSector};
use crate::porep::unseal::UnsealInputs;
use crate::porep::{c1, c2, clear_cache as clear, pc1, pc2, unseal};
use crate::python_cancel::{flag, Cancelled, PyCancelToken};

fn py_err(e: Error) -> PyErr {
    match e {
        Error::InvalidInput(msg) => PyValueError::new_err(msg),
        io @ Error::Io { .. } => PyOSError::new_err(io.to_string()),
        Error::Cancelled => Cancelled::new_err("the call was cancelled"),
    }
}

/// A 32-byte argument (ids, tickets, seeds, commitments).
fn node(name: &str, bytes: &[u8]) -> PyResult<Node> {
    bytes
        .try_into()
        .map_err(|_| PyValueError::new_err(format!("{name} must be 32 bytes, got {}", bytes.len())))
}

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

fn bytes(py: Python<'_>, v: &[u8]) -> Py<PyBytes> {
    PyBytes::new(py, v).unbind()
}

/// The parameters table row of a sector size.
#[pyfunction]
fn sector_params(py: Python<'_>, sector_size: u64) -> PyResult<Py<PyDict>> {
    let p = SectorParams::lookup(sector_size).map_err(py_err)?;
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
    let out = py
        .detach(|| {
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
        })
        .map_err(py_err)?;
    Ok(bytes(py, &out))
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
    let backend = gpu::select(backend).map_err(py_err)?;
    let cancel = flag(cancel);
    let (comm_r, comm_d) = py
        .detach(|| {
            pc2::seal_pre_commit_phase2(
                phase1_output,
                &cache_dir,
                &sealed_path,
                backend.as_ref(),
                &cancel,
            )
        })
        .map_err(py_err)?;
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
    let out = py
        .detach(|| {
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
        })
        .map_err(py_err)?;
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
    let backend = gpu::select(backend).map_err(py_err)?;
    let cancel = flag(cancel);
    let out = py
        .detach(|| {
            c2::seal_commit_phase2(
                phase1_output,
                &prover_id,
                sector_number,
                backend.as_ref(),
                &cancel,
            )
        })
        .map_err(py_err)?;
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
        .map_err(py_err)
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
    .map_err(py_err)
}

#[pyfunction]
fn clear_cache(py: Python<'_>, cache_dir: PathBuf, sector_size: u64) -> PyResult<()> {
    py.detach(|| clear(&cache_dir, sector_size)).map_err(py_err)
}

type PySector = (u64, Vec<u8>, PathBuf, PathBuf);

fn proving_sectors(list: Vec<PySector>) -> PyResult<Vec<ProvingSector>> {
    list.into_iter()
        .map(|(sector_number, comm_r, sealed_path, cache_dir)| {
            Ok(ProvingSector {
                sector_number,
                comm_r: node(&format!("sector {sector_number} comm_r"), &comm_r)?,
                sealed_path,
                cache_dir,
            })
        })
        .collect()
}

fn public_sectors(list: Vec<(u64, Vec<u8>)>) -> PyResult<Vec<PublicSector>> {
    list.into_iter()
        .map(|(sector_number, comm_r)| {
            Ok(PublicSector {
                sector_number,
                comm_r: node(&format!("sector {sector_number} comm_r"), &comm_r)?,
            })
        })
        .collect()
}

fn generate(
    py: Python<'_>,
    kind: PostKind,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<PySector>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<Py<PyBytes>> {
    let randomness = node("randomness", randomness)?;
    let prover_id = node("prover_id", prover_id)?;
    let sectors = proving_sectors(sectors)?;
    let cancel = flag(cancel);
    let out = py
        .detach(|| {
            post::generate_post(
                sector_size,
                kind,
                &randomness,
                &prover_id,
                &sectors,
                &cancel,
            )
        })
        .map_err(py_err)?;
    Ok(bytes(py, &out))
}

fn verify(
    py: Python<'_>,
    kind: PostKind,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<(u64, Vec<u8>)>,
    proof: &[u8],
) -> PyResult<bool> {
    let randomness = node("randomness", randomness)?;
    let prover_id = node("prover_id", prover_id)?;
    let sectors = public_sectors(sectors)?;
    py.detach(|| post::verify_post(sector_size, kind, &randomness, &prover_id, &sectors, proof))
        .map_err(py_err)
}

#[pyfunction]
#[pyo3(signature = (sector_size, randomness, prover_id, sectors, *, cancel = None))]
fn generate_window_post(
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<PySector>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<Py<PyBytes>> {
    generate(
        py,
        PostKind::Window,
        sector_size,
        randomness,
        prover_id,
        sectors,
        cancel,
    )
}

#[pyfunction]
fn verify_window_post(
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<(u64, Vec<u8>)>,
    proof: &[u8],
) -> PyResult<bool> {
    verify(
        py,
        PostKind::Window,
        sector_size,
        randomness,
        prover_id,
        sectors,
        proof,
    )
}

#[pyfunction]
#[pyo3(signature = (sector_size, randomness, prover_id, sectors, *, cancel = None))]
fn generate_winning_post(
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<PySector>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<Py<PyBytes>> {
    generate(
        py,
        PostKind::Winning,
        sector_size,
        randomness,
        prover_id,
        sectors,
        cancel,
    )
}

#[pyfunction]
fn verify_winning_post(
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<(u64, Vec<u8>)>,
    proof: &[u8],
) -> PyResult<bool> {
    verify(
        py,
        PostKind::Winning,
        sector_size,
        randomness,
        prover_id,
        sectors,
        proof,
    )
}

#[pyfunction]
fn generate_winning_post_sector_challenge(
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    eligible_count: u64,
) -> PyResult<Vec<u64>> {
    let randomness = node("randomness", randomness)?;
    let prover_id = node("prover_id", prover_id)?;
    post::winning_sector_challenge(sector_size, &randomness, &prover_id, eligible_count)
        .map_err(py_err)
}

#[pyfunction]
#[pyo3(signature = (sector_size, randomness, prover_id, sector, kind = "window", *, cancel = None))]
fn generate_single_vanilla_proof(
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sector: PySector,
    kind: &str,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<Py<PyBytes>> {
    let kind = PostKind::parse(kind).map_err(py_err)?;
    let cancel = flag(cancel);
    let randomness = node("randomness", randomness)?;
    let prover_id = node("prover_id", prover_id)?;
    let sector = proving_sectors(vec![sector])?;
    let out = py
        .detach(|| match sector.first() {
            Some(s) => post::generate_single_vanilla_proof(
                sector_size,
                kind,
                &randomness,
                &prover_id,
                s,
                &cancel,
            ),
            None => Err(Error::invalid("no sector")),
        })
        .map_err(py_err)?;
    Ok(bytes(py, &out))
}

#[pyfunction]
#[pyo3(signature = (sector_size, randomness, prover_id, sector, proof, kind = "window"))]
fn verify_single_vanilla_proof(
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sector: (u64, Vec<u8>),
    proof: &[u8],
    kind: &str,
) -> PyResult<bool> {
    let kind = PostKind::parse(kind).map_err(py_err)?;
    let randomness = node("randomness", randomness)?;
    let prover_id = node("prover_id", prover_id)?;
    let sectors = public_sectors(vec![sector])?;
    py.detach(|| match sectors.first() {
        Some(s) => {
            post::verify_single_vanilla_proof(sector_size, kind, &randomness, &prover_id, s, proof)
        }
        None => Err(Error::invalid("no sector")),
    })
    .map_err(py_err)
}

#[pyfunction]
#[pyo3(signature = (sector_size, prover_id, sectors, randomness = None, *, cancel = None))]
fn check_provable(
    py: Python<'_>,
    sector_size: u64,
    prover_id: &[u8],
    sectors: Vec<(u64, Option<Vec<u8>>, PathBuf, PathBuf)>,
    randomness: Option<&[u8]>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<Py<PyDict>> {
    let cancel = flag(cancel);
    let prover_id = node("prover_id", prover_id)?;
    let randomness = randomness.map(|r| node("randomness", r)).transpose()?;
    let sectors = sectors
        .into_iter()
        .map(|(sector_number, comm_r, sealed_path, cache_dir)| {
            Ok(CheckSector {
                sector_number,
                comm_r: comm_r
                    .map(|c| node(&format!("sector {sector_number} comm_r"), &c))
                    .transpose()?,
                sealed_path,
                cache_dir,
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let results = py
        .detach(|| {
            post::check_provable(
                sector_size,
                &prover_id,
                &sectors,
                randomness.as_ref(),
                &cancel,
            )
        })
        .map_err(py_err)?;
    let d = PyDict::new(py);
    for (number, reason) in results {
        d.set_item(number, reason)?;
    }
    Ok(d.unbind())
}

/// GPUs visible to this process: a list of {"ordinal", "name", "memory_bytes"}.
#[pyfunction]
fn gpu_devices(py: Python<'_>) -> PyResult<Vec<Py<PyDict>>> {
    gpu::devices()
        .into_iter()
        .map(|d| {
            let out = PyDict::new(py);
            out.set_item("ordinal", d.ordinal)?;
            out.set_item("name", d.name)?;
            out.set_item("memory_bytes", d.memory_bytes)?;
            Ok(out.unbind())
        })
        .collect()
}

/// The backend a config value selects ("cpu" or "cuda:N"); ValueError when it cannot be had.
#[pyfunction]
#[pyo3(signature = (spec = "auto"))]
fn gpu_backend(spec: &str) -> PyResult<String> {
    gpu::select(spec).map(|b| b.name()).map_err(py_err)
}

/// Adds the PoRep and GPU functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sector_params, m)?)?;
    m.add_function(wrap_pyfunction!(supported_sector_sizes, m)?)?;
    m.add_function(wrap_pyfunction!(seal_pre_commit_phase1, m)?)?;
    m.add_function(wrap_pyfunction!(seal_pre_commit_phase2, m)?)?;
    m.add_function(wrap_pyfunction!(seal_commit_phase1, m)?)?;
    m.add_function(wrap_pyfunction!(seal_commit_phase2, m)?)?;
    m.add_function(wrap_pyfunction!(verify_seal, m)?)?;
    m.add_function(wrap_pyfunction!(unseal_range, m)?)?;
    m.add_function(wrap_pyfunction!(clear_cache, m)?)?;
    m.add_function(wrap_pyfunction!(generate_window_post, m)?)?;
    m.add_function(wrap_pyfunction!(verify_window_post, m)?)?;
    m.add_function(wrap_pyfunction!(generate_winning_post, m)?)?;
    m.add_function(wrap_pyfunction!(verify_winning_post, m)?)?;
    m.add_function(wrap_pyfunction!(generate_winning_post_sector_challenge, m)?)?;
    m.add_function(wrap_pyfunction!(generate_single_vanilla_proof, m)?)?;
    m.add_function(wrap_pyfunction!(verify_single_vanilla_proof, m)?)?;
    m.add_function(wrap_pyfunction!(check_provable, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_devices, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_backend, m)?)?;
    Ok(())
}
