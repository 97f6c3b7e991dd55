//! GPU bindings: the devices this process sees and the backend a config value selects.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::gpu;

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
    gpu::select(spec).map(|b| b.name()).map_err(PyErr::from)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gpu_devices, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_backend, m)?)?;
    Ok(())
}
