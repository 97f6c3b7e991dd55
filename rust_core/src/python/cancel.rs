//! Python side of cancellation: the `CancelToken` class (a handle on a [`Cancel`] flag) and the
//! `Cancelled` exception (defined in `errors`) every cancellable function raises once its token
//! is cancelled; the trash functions of `discard`.

use pyo3::prelude::*;

use super::errors::Cancelled;
use crate::cancel::Cancel;

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

/// `discard(path)`: removes a file or directory tree without waiting for the deletion (renamed
/// to a `.trash.` name in its directory at once, deleted by a background thread; see
/// [`crate::cancel::discard`]). Returns whether there was something at `path`.
#[pyfunction]
fn discard(py: Python<'_>, path: std::path::PathBuf) -> PyResult<bool> {
    Ok(py.detach(|| crate::cancel::discard(&path))?)
}

/// `trash_pending()`: how many discarded entries are not deleted yet.
#[pyfunction]
fn trash_pending() -> usize {
    crate::cancel::trash_pending()
}

/// `wait_trash(timeout_s)`: waits until every discarded entry is deleted (at most `timeout_s`);
/// whether they all are.
#[pyfunction]
fn wait_trash(py: Python<'_>, timeout_s: f64) -> bool {
    let timeout = std::time::Duration::from_secs_f64(timeout_s.clamp(0.0, 86_400.0));
    py.detach(|| crate::cancel::wait_trash(timeout))
}

/// Adds `CancelToken`, `Cancelled` and the trash functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCancelToken>()?;
    m.add("Cancelled", m.py().get_type::<Cancelled>())?;
    m.add("TRASH_PREFIX", crate::cancel::TRASH_PREFIX)?;
    m.add_function(wrap_pyfunction!(discard, m)?)?;
    m.add_function(wrap_pyfunction!(trash_pending, m)?)?;
    m.add_function(wrap_pyfunction!(wait_trash, m)?)?;
    Ok(())
}
