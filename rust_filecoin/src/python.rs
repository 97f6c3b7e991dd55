//! The Python module `rust_filecoin`: argument conversion, error mapping, and the GIL released
//! around every call into the proofs library. No logic of its own.
//!
//! Errors: `Error::Invalid` → ValueError, `BackendMismatch` → `rust_filecoin.BackendMismatch`
//! (a ValueError), `MissingParameters` → `rust_filecoin.MissingParameters` (an OSError),
//! `Proofs` (I/O and the library's own failures, panics included) → OSError.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::{Error, Result};
use crate::params::{self, Circuit};
use crate::post::{self, PostKind};
use crate::seal::{self, Bytes32};
use crate::{blob, sizes};

create_exception!(
    rust_filecoin,
    BackendMismatch,
    PyValueError,
    "A blob (phase-1/C1 output, seal or PoSt proof) made by the other proofs backend."
);
create_exception!(
    rust_filecoin,
    MissingParameters,
    PyOSError,
    "A Groth16 parameter or verifying-key file is missing and may not be generated here."
);

fn to_py(err: Error) -> PyErr {
    let msg = err.to_string();
    match err {
        Error::Invalid(_) => PyValueError::new_err(msg),
        Error::BackendMismatch { .. } => BackendMismatch::new_err(msg),
        Error::MissingParameters { .. } | Error::IncompleteParameters { .. } => {
            MissingParameters::new_err(msg)
        }
        Error::Proofs(_) => PyOSError::new_err(msg),
    }
}

/// Runs `f` without the GIL; a panic inside the proofs library becomes an OSError with its
/// message rather than a PanicException.
fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T> + Send) -> PyResult<T> {
    py.detach(|| {
        catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Error::Proofs(format!("the proofs library panicked: {msg}")))
        })
    })
    .map_err(to_py)
}

fn b32(name: &str, bytes: &[u8]) -> PyResult<Bytes32> {
    bytes
        .try_into()
        .map_err(|_| PyValueError::new_err(format!("{name} must be 32 bytes, got {}", bytes.len())))
}

fn to_pieces(list: Vec<(u64, Vec<u8>)>) -> PyResult<Vec<seal::Piece>> {
    list.into_iter()
        .enumerate()
        .map(|(i, (size, comm_p))| Ok((size, b32(&format!("piece {i} commP"), &comm_p)?)))
        .collect()
}

fn circuit(sector_size: u64, name: &str) -> PyResult<Circuit> {
    let c = match name {
        "seal" => sizes::seal_proof(sector_size).map(Circuit::Seal),
        "window" | "winning" => PostKind::parse(name)
            .and_then(|k| k.proof(sector_size))
            .map(Circuit::Post),
        other => Err(Error::Invalid(format!(
            "circuit {other:?}: expected \"seal\", \"window\" or \"winning\""
        ))),
    };
    c.map_err(to_py)
}

#[pyfunction]
#[pyo3(signature = (parameter_cache = None, parent_cache = None, generate_up_to = 0))]
fn configure(
    parameter_cache: Option<PathBuf>,
    parent_cache: Option<PathBuf>,
    generate_up_to: u64,
) -> PyResult<String> {
    let dir = params::configure(
        parameter_cache.as_deref(),
        parent_cache.as_deref(),
        generate_up_to,
    )
    .map_err(to_py)?;
    Ok(dir.display().to_string())
}

#[pyfunction]
fn parameter_files(sector_size: u64, circuit_name: &str) -> PyResult<(String, String)> {
    let c = circuit(sector_size, circuit_name)?;
    let params = c.params_path().map_err(to_py)?;
    let vk = c.verifying_key_path().map_err(to_py)?;
    Ok((params.display().to_string(), vk.display().to_string()))
}

#[pyfunction]
#[pyo3(signature = (sector_size, circuit_name, proving = true))]
fn ensure_parameters(
    py: Python<'_>,
    sector_size: u64,
    circuit_name: &str,
    proving: bool,
) -> PyResult<Option<f64>> {
    let c = circuit(sector_size, circuit_name)?;
    Ok(run(py, || params::ensure(c, proving))?.map(|d| d.as_secs_f64()))
}

#[pyfunction]
fn supported_sector_sizes() -> Vec<u64> {
    sizes::SUPPORTED.to_vec()
}

#[pyfunction]
fn tree_r_last_files(sector_size: u64) -> PyResult<Vec<(String, u64)>> {
    crate::layout::tree_r_last_files(sector_size).map_err(to_py)
}

#[pyfunction]
fn blob_backend(blob: &[u8]) -> Option<&'static str> {
    blob::backend_of(blob)
}

#[pyfunction]
#[pyo3(signature = (sector_size, src, dst, piece_size, existing = Vec::new()))]
fn add_piece(
    py: Python<'_>,
    sector_size: u64,
    src: PathBuf,
    dst: PathBuf,
    piece_size: u64,
    existing: Vec<u64>,
) -> PyResult<(u64, Py<PyBytes>)> {
    let (padded, comm_p) = run(py, || {
        seal::add_piece(sector_size, &src, &dst, piece_size, &existing)
    })?;
    Ok((padded, PyBytes::new(py, &comm_p).unbind()))
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn seal_pre_commit_phase1(
    py: Python<'_>,
    sector_size: u64,
    cache_dir: PathBuf,
    unsealed_path: PathBuf,
    sealed_path: PathBuf,
    prover_id: &[u8],
    sector_number: u64,
    ticket: &[u8],
    pieces: Vec<(u64, Vec<u8>)>,
) -> PyResult<Py<PyBytes>> {
    let prover_id = b32("prover_id", prover_id)?;
    let ticket = b32("ticket", ticket)?;
    let pieces = to_pieces(pieces)?;
    let out = run(py, || {
        seal::pre_commit_phase1(
            sector_size,
            &cache_dir,
            &unsealed_path,
            &sealed_path,
            prover_id,
            sector_number,
            ticket,
            &pieces,
        )
    })?;
    Ok(PyBytes::new(py, &out).unbind())
}

#[pyfunction]
fn seal_pre_commit_phase2(
    py: Python<'_>,
    phase1_output: &[u8],
    cache_dir: PathBuf,
    sealed_path: PathBuf,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let blob = phase1_output.to_vec();
    let (comm_r, comm_d) = run(py, || {
        seal::pre_commit_phase2(&blob, &cache_dir, &sealed_path)
    })?;
    Ok((
        PyBytes::new(py, &comm_r).unbind(),
        PyBytes::new(py, &comm_d).unbind(),
    ))
}

#[pyfunction]
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
) -> PyResult<Py<PyBytes>> {
    let prover_id = b32("prover_id", prover_id)?;
    let ticket = b32("ticket", ticket)?;
    let seed = b32("seed", seed)?;
    let comm_r = b32("comm_r", comm_r)?;
    let comm_d = b32("comm_d", comm_d)?;
    let pieces = to_pieces(pieces)?;
    let out = run(py, || {
        seal::commit_phase1(
            sector_size,
            &cache_dir,
            &sealed_path,
            prover_id,
            sector_number,
            ticket,
            seed,
            &pieces,
            comm_r,
            comm_d,
        )
    })?;
    Ok(PyBytes::new(py, &out).unbind())
}

#[pyfunction]
fn seal_commit_phase2(
    py: Python<'_>,
    phase1_output: &[u8],
    prover_id: &[u8],
    sector_number: u64,
) -> PyResult<Py<PyBytes>> {
    let prover_id = b32("prover_id", prover_id)?;
    let blob = phase1_output.to_vec();
    let out = run(py, || seal::commit_phase2(&blob, prover_id, sector_number))?;
    Ok(PyBytes::new(py, &out).unbind())
}

#[pyfunction]
fn groth16_proof(py: Python<'_>, proof: &[u8]) -> PyResult<Py<PyBytes>> {
    let raw = seal::raw_seal_proof(proof).map_err(to_py)?;
    Ok(PyBytes::new(py, raw).unbind())
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
    let comm_r = b32("comm_r", comm_r)?;
    let comm_d = b32("comm_d", comm_d)?;
    let prover_id = b32("prover_id", prover_id)?;
    let ticket = b32("ticket", ticket)?;
    let seed = b32("seed", seed)?;
    let proof = proof.to_vec();
    run(py, || {
        seal::verify_seal(
            sector_size,
            comm_r,
            comm_d,
            prover_id,
            sector_number,
            ticket,
            seed,
            &proof,
        )
    })
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn unseal_range(
    py: Python<'_>,
    sector_size: u64,
    cache_dir: PathBuf,
    sealed_path: PathBuf,
    out_path: PathBuf,
    prover_id: &[u8],
    sector_number: u64,
    comm_d: &[u8],
    ticket: &[u8],
    offset: u64,
    length: u64,
) -> PyResult<u64> {
    let prover_id = b32("prover_id", prover_id)?;
    let comm_d = b32("comm_d", comm_d)?;
    let ticket = b32("ticket", ticket)?;
    run(py, || {
        seal::unseal_range(
            sector_size,
            &cache_dir,
            &sealed_path,
            &out_path,
            prover_id,
            sector_number,
            comm_d,
            ticket,
            offset,
            length,
        )
    })
}

#[pyfunction]
fn clear_cache(py: Python<'_>, cache_dir: PathBuf) -> PyResult<()> {
    run(py, || seal::clear_cache(&cache_dir))
}

type PySector = (u64, Vec<u8>, PathBuf, PathBuf);

fn proving(list: Vec<PySector>) -> PyResult<Vec<post::ProvingSector>> {
    list.into_iter()
        .map(|(n, comm_r, sealed, cache)| {
            Ok((
                n,
                b32(&format!("sector {n} comm_r"), &comm_r)?,
                sealed,
                cache,
            ))
        })
        .collect()
}

fn public(list: Vec<(u64, Vec<u8>)>) -> PyResult<Vec<post::PublicSector>> {
    list.into_iter()
        .map(|(n, comm_r)| Ok((n, b32(&format!("sector {n} comm_r"), &comm_r)?)))
        .collect()
}

fn generate_post(
    py: Python<'_>,
    kind: PostKind,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<PySector>,
) -> PyResult<Py<PyBytes>> {
    let randomness = b32("randomness", randomness)?;
    let prover_id = b32("prover_id", prover_id)?;
    let sectors = proving(sectors)?;
    let out = run(py, || {
        post::generate(kind, sector_size, randomness, prover_id, &sectors)
    })?;
    Ok(PyBytes::new(py, &out).unbind())
}

fn verify_post(
    py: Python<'_>,
    kind: PostKind,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<(u64, Vec<u8>)>,
    proof: &[u8],
) -> PyResult<bool> {
    let randomness = b32("randomness", randomness)?;
    let prover_id = b32("prover_id", prover_id)?;
    let sectors = public(sectors)?;
    let proof = proof.to_vec();
    run(py, || {
        post::verify(kind, sector_size, randomness, prover_id, &sectors, &proof)
    })
}

#[pyfunction]
fn generate_window_post(
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<PySector>,
) -> PyResult<Py<PyBytes>> {
    generate_post(
        py,
        PostKind::Window,
        sector_size,
        randomness,
        prover_id,
        sectors,
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
    verify_post(
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
fn generate_winning_post(
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sectors: Vec<PySector>,
) -> PyResult<Py<PyBytes>> {
    generate_post(
        py,
        PostKind::Winning,
        sector_size,
        randomness,
        prover_id,
        sectors,
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
    verify_post(
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
    py: Python<'_>,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    eligible_count: u64,
) -> PyResult<Vec<u64>> {
    let randomness = b32("randomness", randomness)?;
    let prover_id = b32("prover_id", prover_id)?;
    run(py, || {
        post::winning_post_sector_challenge(sector_size, randomness, prover_id, eligible_count)
    })
}

#[pyfunction]
fn sector_challenges(
    py: Python<'_>,
    kind: &str,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sector_numbers: Vec<u64>,
) -> PyResult<BTreeMap<u64, Vec<u64>>> {
    let kind = PostKind::parse(kind).map_err(to_py)?;
    let randomness = b32("randomness", randomness)?;
    let prover_id = b32("prover_id", prover_id)?;
    run(py, || {
        post::sector_challenges(kind, sector_size, randomness, prover_id, &sector_numbers)
    })
}

#[pyfunction]
fn generate_single_vanilla_proof(
    py: Python<'_>,
    kind: &str,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    sector: PySector,
) -> PyResult<Py<PyBytes>> {
    let kind = PostKind::parse(kind).map_err(to_py)?;
    let randomness = b32("randomness", randomness)?;
    let prover_id = b32("prover_id", prover_id)?;
    let mut sectors = proving(vec![sector])?;
    let sector = sectors
        .pop()
        .ok_or_else(|| PyValueError::new_err("no sector"))?;
    let out = run(py, || {
        post::single_vanilla_proof(kind, sector_size, randomness, prover_id, &sector)
    })?;
    Ok(PyBytes::new(py, &out).unbind())
}

#[pyfunction]
fn generate_post_with_vanilla(
    py: Python<'_>,
    kind: &str,
    sector_size: u64,
    randomness: &[u8],
    prover_id: &[u8],
    vanilla_proofs: Vec<Vec<u8>>,
) -> PyResult<Py<PyBytes>> {
    let kind = PostKind::parse(kind).map_err(to_py)?;
    let randomness = b32("randomness", randomness)?;
    let prover_id = b32("prover_id", prover_id)?;
    let out = run(py, || {
        post::from_vanilla(kind, sector_size, randomness, prover_id, &vanilla_proofs)
    })?;
    Ok(PyBytes::new(py, &out).unbind())
}

#[pyfunction]
#[pyo3(signature = (sector_size, prover_id, sectors, randomness = None))]
fn check_provable(
    py: Python<'_>,
    sector_size: u64,
    prover_id: &[u8],
    sectors: Vec<PySector>,
    randomness: Option<&[u8]>,
) -> PyResult<BTreeMap<u64, Option<String>>> {
    let prover_id = b32("prover_id", prover_id)?;
    let sectors = proving(sectors)?;
    // Fresh randomness by default: a check of the whole sector over time, not of fixed leaves.
    let randomness = match randomness {
        Some(r) => b32("randomness", r)?,
        None => {
            // A field element, as the chain's randomness is: the top two bits cleared.
            let mut r: Bytes32 = rand::random();
            r[31] &= 0x3f;
            r
        }
    };
    run(py, || {
        crate::faults::check_provable(sector_size, prover_id, &sectors, randomness)
    })
}

#[pymodule]
fn rust_filecoin(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("BackendMismatch", py.get_type::<BackendMismatch>())?;
    m.add("MissingParameters", py.get_type::<MissingParameters>())?;
    m.add("BACKEND", "filecoin")?;
    m.add("PROOFS_API_VERSION", "filecoin-proofs-api 19.1")?;
    m.add_function(wrap_pyfunction!(configure, m)?)?;
    m.add_function(wrap_pyfunction!(parameter_files, m)?)?;
    m.add_function(wrap_pyfunction!(ensure_parameters, m)?)?;
    m.add_function(wrap_pyfunction!(supported_sector_sizes, m)?)?;
    m.add_function(wrap_pyfunction!(tree_r_last_files, m)?)?;
    m.add_function(wrap_pyfunction!(blob_backend, m)?)?;
    m.add_function(wrap_pyfunction!(add_piece, m)?)?;
    m.add_function(wrap_pyfunction!(seal_pre_commit_phase1, m)?)?;
    m.add_function(wrap_pyfunction!(seal_pre_commit_phase2, m)?)?;
    m.add_function(wrap_pyfunction!(seal_commit_phase1, m)?)?;
    m.add_function(wrap_pyfunction!(seal_commit_phase2, m)?)?;
    m.add_function(wrap_pyfunction!(groth16_proof, m)?)?;
    m.add_function(wrap_pyfunction!(verify_seal, m)?)?;
    m.add_function(wrap_pyfunction!(unseal_range, m)?)?;
    m.add_function(wrap_pyfunction!(clear_cache, m)?)?;
    m.add_function(wrap_pyfunction!(generate_window_post, m)?)?;
    m.add_function(wrap_pyfunction!(verify_window_post, m)?)?;
    m.add_function(wrap_pyfunction!(generate_winning_post, m)?)?;
    m.add_function(wrap_pyfunction!(verify_winning_post, m)?)?;
    m.add_function(wrap_pyfunction!(generate_winning_post_sector_challenge, m)?)?;
    m.add_function(wrap_pyfunction!(sector_challenges, m)?)?;
    m.add_function(wrap_pyfunction!(check_provable, m)?)?;
    m.add_function(wrap_pyfunction!(generate_single_vanilla_proof, m)?)?;
    m.add_function(wrap_pyfunction!(generate_post_with_vanilla, m)?)?;
    Ok(())
}
