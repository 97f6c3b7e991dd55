//! The one mapping of the crate's errors to Python exceptions: `InvalidInput` → ValueError,
//! `Io` → OSError, `Cancelled` → `rust_core.Cancelled`. Every binding returns `PyResult` and
//! converts a [`crate::Error`] with `?` through the `From` impl below.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::PyErr;

use crate::error::Error;

create_exception!(
    rust_core,
    Cancelled,
    PyException,
    "A rust_core call was cancelled through its CancelToken; what it half-wrote was removed."
);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::InvalidInput(msg) => PyValueError::new_err(msg),
            Error::Io { .. } => PyOSError::new_err(err.to_string()),
            Error::Cancelled => Cancelled::new_err("the call was cancelled"),
        }
    }
}
