//! `rust_core`: the sectorstorage hot path.
//!
//! Pure Rust modules hold the computation; `python` (behind the `python` feature, which maturin
//! enables) holds every pyo3 binding: type conversion, error mapping and GIL release only.
//!
//! - `fr32`: pad and unpad (portable and AVX2 kernels, files and streams);
//! - `commitments`: piece sizes, commP, commD, zero pieces, CIDs;
//! - `hash`: the tree node hash and multi-buffer SHA-256;
//! - `porep`: the PoRep emulation (PC1, PC2, C1, C2, unseal, PoSt);
//! - `gpu`: the CPU and CUDA backends of tree building and C2;
//! - `checksum`: CRC32C of buffers and file ranges (fetch transfers);
//! - `io`, `cancel`, `error`: shared helpers, cancellation, the crate's error type.

pub mod cancel;
pub mod checksum;
pub mod commitments;
pub mod error;
pub mod fr32;
pub mod gpu;
pub mod hash;
pub mod io;
pub mod porep;

#[cfg(feature = "python")]
mod python;
#[cfg(test)]
mod test_data;

pub use cancel::{Cancel, Cancelled};
pub use error::{Error, Result};

/// Version of this crate, reported by the services at start-up.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The extension module `rust_core`: every binding is registered by `python::register`.
#[cfg(feature = "python")]
#[pyo3::pymodule]
fn rust_core(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    python::register(m)
}
