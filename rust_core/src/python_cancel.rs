//! Python side of cancellation: the `CancelToken` class (a handle on a [`Cancel`] flag) and the
//! `Cancelled` exception every cancellable function raises once its token is cancelled.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use crate::cancel::Cancel;

create_exception!(
    rust_core,
    Cancelled,
    PyException,
    "A rust_core call was cancelled through its CancelToken; what it half-wrote was removed."
);

/// `CancelToken()`: pass it as `cancel=` to a long call, then `cancel()` it from any thread; the
/// call raises `Cancelled` within 100 ms. A token stays cancelled; use a new one per call.
#[pyclass(name = "CancelToken", module = "rust_core", frozen)]
#[derive(Default)]
pub struct PyCancelToken(Cancel);

#[pymethods]
impl PyCancelToken {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Asks every call holding this token to stop (idempotent; never blocks).
    fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }

    fn __repr__(&self) -> String {
        format!("CancelToken(cancelled={})", self.0.is_cancelled())
    }
}

/// The flag of an optional `cancel=` argument (a fresh, never-set one without a token).
pub fn flag(token: Option<&Bound<'_, PyCancelToken>>) -> Cancel {
    token.map(|t| t.get().0.clone()).unwrap_or_default()
}

/// Adds `CancelToken` and `Cancelled` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCancelToken>()?;
    m.add("Cancelled", m.py().get_type::<Cancelled>())?;
    Ok(())
}
