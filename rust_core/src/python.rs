//! Python bindings: type conversion and error mapping only.

use pyo3::prelude::*;

#[pymodule]
fn rust_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    crate::python_porep::register(m)?;
    Ok(())
}
