//! Every pyo3 binding of the crate, and nothing else: type conversion, error mapping (one place,
//! `errors`) and GIL release. Each function that touches more than a few bytes runs its Rust work
//! inside `py.detach`, so other Python threads (gRPC handlers) keep running; results are those of
//! the pure Rust modules beneath. The long calls take an optional `cancel=` token (`cancel`).
//!
//! One submodule per area of the pure Rust crate (`fr32`, `commitments`, `porep`, `post`, `gpu`,
//! `cancel`, `checksum`), each with a `register` that adds its functions to the extension module;
//! `args` and `buffer` hold the argument conversions they share.

mod args;
mod buffer;
mod cancel;
mod checksum;
mod commitments;
mod errors;
mod fr32;
mod gpu;
mod porep;
mod post;

use pyo3::prelude::*;

/// Fills the extension module `rust_core` (its `#[pymodule]` entry is in `lib.rs`).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    fr32::register(m)?;
    commitments::register(m)?;
    porep::register(m)?;
    post::register(m)?;
    gpu::register(m)?;
    cancel::register(m)?;
    checksum::register(m)?;
    Ok(())
}
