//! Argument conversion shared by the bindings: sizes, `pad_to`, 32-byte nodes.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyInt};

use crate::commitments::piece_size::PieceTarget;
use crate::hash::Node;

/// A size argument: a non-negative int below 2^64, else ValueError naming the argument (rather
/// than pyo3's OverflowError).
pub fn size_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    if !value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!("{name} must be an int")));
    }
    value.extract::<u64>().map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a non-negative integer below 2^64, got {value}"
        ))
    })
}

/// `pad_to`: None (exact length), True (smallest piece that fits), or a piece size, padded (a
/// power of two) or unpadded (127·2^k).
pub fn pad_target(pad_to: Option<&Bound<'_, PyAny>>) -> PyResult<PieceTarget> {
    match pad_to {
        None => Ok(PieceTarget::Exact),
        Some(v) if v.is_instance_of::<PyBool>() => Ok(if v.is_truthy()? {
            PieceTarget::Smallest
        } else {
            PieceTarget::Exact
        }),
        Some(v) => Ok(PieceTarget::from_size(Some(size_arg(v, "pad_to")?))?),
    }
}

/// A 32-byte argument (ids, tickets, seeds, commitments).
pub fn node(name: &str, bytes: &[u8]) -> PyResult<Node> {
    bytes
        .try_into()
        .map_err(|_| PyValueError::new_err(format!("{name} must be 32 bytes, got {}", bytes.len())))
}

/// A node as new `bytes`.
pub fn node_bytes<'py>(py: Python<'py>, node: Node) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &node)
}

/// Bytes as a new, owned `bytes` object.
pub fn bytes(py: Python<'_>, v: &[u8]) -> Py<PyBytes> {
    PyBytes::new(py, v).unbind()
}
