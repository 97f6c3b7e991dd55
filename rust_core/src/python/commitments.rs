//! Commitment bindings: commP of bytes, files and streams (and the incremental `PieceHasher`),
//! zero pieces, commD, CIDs and piece sizes.

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use super::args::{node_bytes, pad_target, size_arg};
use super::buffer::{Buffer, PyReader};
use super::cancel::{flag, PyCancelToken};
use crate::commitments::piece_cid as cid;
use crate::commitments::{commd, commp, piece_size, zero_comm};
use crate::hash::Node;

/// commP (32 bytes) of unpadded `data`: any bytes-like object, read in place (no copy).
#[pyfunction]
#[pyo3(signature = (data, pad_to=None))]
fn piece_commitment<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    pad_to: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let data = Buffer::get(data, "data", false)?;
    let target = pad_target(pad_to)?;
    let bytes = data.bytes();
    let node = py.detach(|| commp::piece_commitment(bytes, target))?;
    Ok(node_bytes(py, node))
}

/// commP of a file's contents, with constant memory. Cancellable (`cancel=`).
#[pyfunction]
#[pyo3(signature = (path, pad_to=None, *, cancel=None))]
fn piece_commitment_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    pad_to: Option<&Bound<'py, PyAny>>,
    cancel: Option<&Bound<'py, PyCancelToken>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let target = pad_target(pad_to)?;
    let cancel = flag(cancel);
    let node = py.detach(|| commp::piece_commitment_file(&path, target, &cancel))?;
    Ok(node_bytes(py, node))
}

/// commP of everything read from binary file-like `reader`, with constant memory.
#[pyfunction]
#[pyo3(signature = (reader, pad_to=None))]
fn piece_commitment_stream<'py>(
    py: Python<'py>,
    reader: Py<PyAny>,
    pad_to: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let target = pad_target(pad_to)?;
    let reader = PyReader(reader);
    let node = py.detach(|| {
        commp::piece_commitment_reader(reader, target, "the stream", &Default::default())
    })?;
    Ok(node_bytes(py, node))
}

/// Incremental commP: `update(data)` any number of times, then `finish(pad_to=None)`.
#[pyclass(name = "PieceHasher", module = "rust_core")]
#[derive(Default)]
struct PyPieceHasher {
    inner: commp::PieceHasher,
}

#[pymethods]
impl PyPieceHasher {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Feeds more unpadded bytes (any bytes-like object, read in place).
    fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = Buffer::get(data, "data", false)?;
        let bytes = data.bytes();
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.update(bytes))?)
    }

    /// commP of the bytes fed so far; the hasher stays usable.
    #[pyo3(signature = (pad_to=None))]
    fn finish<'py>(
        &self,
        py: Python<'py>,
        pad_to: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let target = pad_target(pad_to)?;
        let inner = &self.inner;
        let node = py.detach(|| inner.finish(target))?;
        Ok(node_bytes(py, node))
    }

    /// Unpadded bytes fed so far.
    #[getter]
    fn payload_size(&self) -> u64 {
        self.inner.len()
    }
}

/// Commitment of an all-zero piece of `padded_size` bytes (a power of two ≥ 32), from a table.
#[pyfunction]
fn zero_piece_commitment<'py>(
    py: Python<'py>,
    padded_size: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let size = size_arg(padded_size, "padded_size")?;
    Ok(node_bytes(py, zero_comm::zero_piece_commitment(size)?))
}

/// commD of a sector from its pieces: (padded size, commP) in order.
#[pyfunction]
fn unsealed_commitment<'py>(
    py: Python<'py>,
    sector_size: &Bound<'py, PyAny>,
    pieces: Vec<(Bound<'py, PyAny>, PyBackedBytes)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let sector_size = size_arg(sector_size, "sector_size")?;
    let mut list = Vec::with_capacity(pieces.len());
    for (i, (size, commitment)) in pieces.iter().enumerate() {
        let size = size_arg(size, &format!("size of piece {i}"))?;
        let node: Node = commitment.as_ref().try_into().map_err(|_| {
            PyValueError::new_err(format!(
                "commitment of piece {i} must be 32 bytes, got {}",
                commitment.len()
            ))
        })?;
        list.push((size, node));
    }
    Ok(node_bytes(
        py,
        commd::unsealed_commitment(sector_size, &list)?,
    ))
}

/// Piece CID v1 (`baga6ea4seaq…`) of a commP or commD.
#[pyfunction]
fn piece_cid(commp: PyBackedBytes) -> PyResult<String> {
    Ok(cid::piece_cid(&commp)?)
}

/// commP inside a piece CID (v1, or v2 per FRC-0069).
#[pyfunction]
fn commp_from_cid<'py>(py: Python<'py>, cid: &str) -> PyResult<Bound<'py, PyBytes>> {
    Ok(node_bytes(py, cid::commp_from_cid(cid)?))
}

/// Sealed-sector CID (`bagboea4b5abc…`) of a commR.
#[pyfunction]
fn sealed_cid(commr: PyBackedBytes) -> PyResult<String> {
    Ok(cid::sealed_cid(&commr)?)
}

/// commR inside a sealed-sector CID.
#[pyfunction]
fn commr_from_cid<'py>(py: Python<'py>, cid: &str) -> PyResult<Bound<'py, PyBytes>> {
    Ok(node_bytes(py, cid::commr_from_cid(cid)?))
}

/// Piece CID v2 of a commP over `payload_size` bytes of data.
#[pyfunction]
fn piece_cid_v2(commp: PyBackedBytes, payload_size: &Bound<'_, PyAny>) -> PyResult<String> {
    let payload_size = size_arg(payload_size, "payload_size")?;
    Ok(cid::piece_cid_v2(&commp, payload_size)?)
}

/// (commP, payload size, padded size) of a piece CID v2.
#[pyfunction]
fn piece_cid_v2_info<'py>(py: Python<'py>, cid: &str) -> PyResult<(Bound<'py, PyBytes>, u64, u64)> {
    let info = cid::piece_cid_v2_info(cid)?;
    Ok((
        node_bytes(py, info.commp),
        info.payload_size,
        info.padded_size,
    ))
}

/// Padded size of an unpadded piece size (127·2^k → 128·2^k).
#[pyfunction]
fn unpadded_to_padded(size: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(piece_size::unpadded_to_padded(size_arg(size, "size")?)?)
}

/// Unpadded size of a padded piece size (128·2^k → 127·2^k).
#[pyfunction]
fn padded_to_unpadded(size: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(piece_size::padded_to_unpadded(size_arg(size, "size")?)?)
}

/// Padded size of the smallest piece that holds `payload_size` bytes.
#[pyfunction]
fn padded_size_for_payload(payload_size: &Bound<'_, PyAny>) -> PyResult<u64> {
    let unpadded = piece_size::unpadded_size_for(size_arg(payload_size, "payload_size")?)?;
    Ok(piece_size::unpadded_to_padded(unpadded)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(piece_commitment, m)?)?;
    m.add_function(wrap_pyfunction!(piece_commitment_file, m)?)?;
    m.add_function(wrap_pyfunction!(piece_commitment_stream, m)?)?;
    m.add_class::<PyPieceHasher>()?;
    m.add_function(wrap_pyfunction!(zero_piece_commitment, m)?)?;
    m.add_function(wrap_pyfunction!(unsealed_commitment, m)?)?;
    m.add_function(wrap_pyfunction!(piece_cid, m)?)?;
    m.add_function(wrap_pyfunction!(commp_from_cid, m)?)?;
    m.add_function(wrap_pyfunction!(sealed_cid, m)?)?;
    m.add_function(wrap_pyfunction!(commr_from_cid, m)?)?;
    m.add_function(wrap_pyfunction!(piece_cid_v2, m)?)?;
    m.add_function(wrap_pyfunction!(piece_cid_v2_info, m)?)?;
    m.add_function(wrap_pyfunction!(unpadded_to_padded, m)?)?;
    m.add_function(wrap_pyfunction!(padded_to_unpadded, m)?)?;
    m.add_function(wrap_pyfunction!(padded_size_for_payload, m)?)?;
    Ok(())
}
