//! `rust_core`: the sectorstorage hot path.
//!
//! Pure Rust modules hold the computation; the `python` module (behind the `python`
//! feature, which maturin enables) only converts types and maps errors.

pub mod error;
pub mod gpu;
pub mod hash;
pub mod porep;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};

/// Version of this crate, reported by the services at start-up.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
