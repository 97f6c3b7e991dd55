//! Cooperative cancellation of the long calls.
//!
//! A [`Cancel`] is a shared flag: the caller keeps a clone and sets it from any thread; the long
//! functions (AddPiece file forms, PC1, PC2, C1, C2, unseal, PoSt, CheckProvable) call
//! [`Cancel::check`] often enough to stop within 100 ms on any sector size (every few thousand
//! labels, every tree chunk and level, every backend batch), remove what they half-wrote and
//! return [`Error::Cancelled`](crate::Error::Cancelled). A check is one relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The error of a cancelled call (converted into [`crate::Error::Cancelled`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// A cancellation flag shared between the caller and a running call. `Cancel::default()` is a
/// fresh, never-set flag (what callers without a token pass).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every call holding this flag (or a clone) to stop. Idempotent.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once [`cancel`](Self::cancel) was called.
    #[inline]
    pub fn check(&self) -> std::result::Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Cancels from a background thread after `delay` (tests and benches).
    pub fn cancel_after(&self, delay: Duration) -> std::thread::JoinHandle<()> {
        let flag = self.clone();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            flag.cancel();
        })
    }
}

/// Files a call is writing, removed when the call ends in an error (on cancellation above all:
/// a cancelled call leaves nothing half-written behind). [`keep`](Self::keep) disarms it once
/// the call has succeeded.
#[derive(Debug, Default)]
pub struct Scratch {
    paths: Vec<std::path::PathBuf>,
    armed: bool,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            paths: Vec::new(),
            armed: true,
        }
    }

    /// Adds a file to remove on failure.
    pub fn add(&mut self, path: impl Into<std::path::PathBuf>) {
        self.paths.push(path.into());
    }

    /// The call succeeded: leave the files.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.armed {
            for p in &self.paths {
                // Best effort: a file never created is fine, anything else is left to the caller.
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let c = Cancel::new();
        let d = c.clone();
        assert!(d.check().is_ok());
        c.cancel();
        assert_eq!(d.check(), Err(Cancelled));
        assert!(Cancel::default().check().is_ok());
    }

    #[test]
    fn scratch_removes_unless_kept() {
        let dir = std::env::temp_dir().join(format!("ss-scratch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"x").unwrap();
        {
            let mut s = Scratch::new();
            s.add(&a);
        }
        let mut s = Scratch::new();
        s.add(&b);
        s.keep();
        assert!(!a.exists() && b.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
