//! The one error type of the crate. The Python layer maps every variant to an exception
//! (`InvalidInput` → ValueError, `Io` → OSError, `Cancelled` → `rust_core.Cancelled`), so no input
//! can panic across the boundary.

use std::io;

/// Everything that can go wrong in rust_core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller passed something malformed; the message says what to fix.
    #[error("{0}")]
    InvalidInput(String),
    /// A file could not be read or written; the message names the file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The caller cancelled the call through its [`Cancel`](crate::cancel::Cancel) token; what
    /// the call had half-written was removed.
    #[error("cancelled")]
    Cancelled,
}

impl From<crate::cancel::Cancelled> for Error {
    fn from(_: crate::cancel::Cancelled) -> Self {
        Error::Cancelled
    }
}

impl Error {
    /// Shorthand for an [`Error::InvalidInput`] with a formatted message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidInput(msg.into())
    }

    /// Whether this is [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// Wraps an I/O error with what we were doing when it happened.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias used by every module.
pub type Result<T> = std::result::Result<T, Error>;
