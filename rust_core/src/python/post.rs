//! PoSt bindings: Window and Winning PoSt (whole proofs, single vanilla proofs and their
//! assembly into a PoSt proof), the winning sector challenge, and CheckProvable.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyDict};

use super::args::{bytes, node};
use super::cancel::{flag, PyCancelToken};
use crate::error::Error;
use crate::porep::post::{self, CheckSector, PostKind, ProvingSector, PublicSector};

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
    let out = py.detach(|| {
        post::generate_post(
            sector_size,
            kind,
            &randomness,
            &prover_id,
            &sectors,
            &cancel,
        )
    })?;
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
        .map_err(PyErr::from)
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
        .map_err(PyErr::from)
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
    let kind = PostKind::parse(kind)?;
    let cancel = flag(cancel);
    let randomness = node("randomness", randomness)?;
    let prover_id = node("prover_id", prover_id)?;
    let sector = proving_sectors(vec![sector])?;
    let out = py.detach(|| match sector.first() {
        Some(s) => post::generate_single_vanilla_proof(
            sector_size,
            kind,
            &randomness,
            &prover_id,
            s,
            &cancel,
        ),
        None => Err(Error::invalid("no sector")),
    })?;
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
    let kind = PostKind::parse(kind)?;
    let randomness = node("randomness", randomness)?;
    let prover_id = node("prover_id", prover_id)?;
    let sectors = public_sectors(vec![sector])?;
    py.detach(|| match sectors.first() {
        Some(s) => {
            post::verify_single_vanilla_proof(sector_size, kind, &randomness, &prover_id, s, proof)
        }
        None => Err(Error::invalid("no sector")),
    })
    .map_err(PyErr::from)
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
    let results = py.detach(|| {
        post::check_provable(
            sector_size,
            &prover_id,
            &sectors,
            randomness.as_ref(),
            &cancel,
        )
    })?;
    let d = PyDict::new(py);
    for (number, reason) in results {
        d.set_item(number, reason)?;
    }
    Ok(d.unbind())
}

/// The PoSt proof made of per-sector vanilla proofs (from `generate_single_vanilla_proof`, same
/// kind, size and randomness), in order. ValueError naming the first proof whose header does not
/// match; the sections themselves are checked by `verify_*_post`.
#[pyfunction]
fn assemble_post<'py>(
    py: Python<'py>,
    kind: &str,
    sector_size: u64,
    vanilla_proofs: Vec<PyBackedBytes>,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = PostKind::parse(kind)?;
    let proofs: Vec<&[u8]> = vanilla_proofs.iter().map(|p| p.as_ref()).collect();
    let out = py.detach(|| post::assemble_post(sector_size, kind, &proofs))?;
    Ok(PyBytes::new(py, &out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(generate_window_post, m)?)?;
    m.add_function(wrap_pyfunction!(verify_window_post, m)?)?;
    m.add_function(wrap_pyfunction!(generate_winning_post, m)?)?;
    m.add_function(wrap_pyfunction!(verify_winning_post, m)?)?;
    m.add_function(wrap_pyfunction!(generate_winning_post_sector_challenge, m)?)?;
    m.add_function(wrap_pyfunction!(generate_single_vanilla_proof, m)?)?;
    m.add_function(wrap_pyfunction!(verify_single_vanilla_proof, m)?)?;
    m.add_function(wrap_pyfunction!(assemble_post, m)?)?;
    m.add_function(wrap_pyfunction!(check_provable, m)?)?;
    Ok(())
}
