//! One error type for the crate, so the Python layer maps each kind to one exception class.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the caller (size, lengths, malformed blob): ValueError in Python.
    #[error("{0}")]
    Invalid(String),
    /// A blob made by the other proofs backend: the fleet mixes backends.
    #[error(
        "backend mismatch: this {what} was made by the {found} proofs backend, but this process runs the filecoin backend; set the same [proofs] backend on every worker, manager and verifier"
    )]
    BackendMismatch {
        what: &'static str,
        found: &'static str,
    },
    /// A Groth16 parameter or verifying-key file is missing and may not be generated here.
    #[error("missing Groth16 {what} file {} for {circuit} ({size}); copy the network's parameters into the parameter cache, or allow local generation (test sizes only)", path.display())]
    MissingParameters {
        what: &'static str,
        path: PathBuf,
        circuit: String,
        size: String,
    },
    /// A parameter file an interrupted generation left behind (its `.partial` marker is still
    /// there), in a process that may not generate it again: MissingParameters in Python.
    #[error("incomplete Groth16 parameters file {} for {circuit} ({size}): a generation was interrupted while writing it ({} exists); delete both, or allow local generation here to redo it", path.display(), marker.display())]
    IncompleteParameters {
        path: PathBuf,
        marker: PathBuf,
        circuit: String,
        size: String,
    },
    /// Files and the proofs library's own failures (I/O, a tree that does not verify...): OSError.
    #[error("{0}")]
    Proofs(String),
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        // `{:#}` keeps the context chain on one line ("could not open ...: No such file").
        Error::Proofs(format!("{e:#}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Proofs(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
