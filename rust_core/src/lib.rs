//! `rust_core`: the sectorstorage hot path.
//!
//! Pure Rust modules hold the computation; the `python` module (behind the `python`
//! feature, which maturin enables) only converts types and maps errors.

pub mod cancel;
pub mod commd;
pub mod commp;
pub mod error;
pub mod fr32;
#[cfg(target_arch = "x86_64")]
pub mod fr32_avx2;
pub mod fr32_file;
pub mod gpu;
pub mod hash;
pub mod io;
pub mod merkle;
pub mod piece_cid;
pub mod piece_size;
pub mod porep;
pub mod sha256_mb;
pub mod stream_store;
pub mod zero_comm;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_cancel;
#[cfg(feature = "python")]
mod python_porep;

pub use cancel::{Cancel, Cancelled};
pub use error::{Error, Result};

/// Version of this crate, reported by the services at start-up.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
