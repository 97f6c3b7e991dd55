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
/// a cancelled call leaves nothing half-written behind). Removed through [`discard`]: renamed to
/// a trash name at once, deleted by a background thread, so a cancelled call does not wait for
/// the kernel to finish writing back what it has just written. [`keep`](Self::keep) disarms it once
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
                // Renamed out of the way at once, deleted in the background (see [`discard`]).
                let _ = discard(p);
            }
        }
    }
}

/// What every trash name starts with: `<dir>/.trash.<name>.<pid>.<seq>`. A dot-name, so the
/// storage scans never take it for a sector file; the worker removes leftovers at start-up.
pub const TRASH_PREFIX: &str = ".trash.";

struct Reaper {
    queue: std::sync::mpsc::Sender<std::path::PathBuf>,
}

/// Entries handed to the reaper and not yet deleted.
static PENDING: (std::sync::Mutex<usize>, std::sync::Condvar) =
    (std::sync::Mutex::new(0), std::sync::Condvar::new());
static REAPER: std::sync::OnceLock<Option<std::sync::Mutex<Reaper>>> = std::sync::OnceLock::new();
static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn pending_add(delta: isize) {
    let mut n = PENDING.0.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_add_signed(delta);
    if *n == 0 {
        PENDING.1.notify_all();
    }
}

fn remove_now(path: &std::path::Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

fn reaper() -> Option<&'static std::sync::Mutex<Reaper>> {
    REAPER
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<std::path::PathBuf>();
            std::thread::Builder::new()
                .name("rust_core-trash".into())
                .spawn(move || {
                    for path in rx {
                        // Slow on purpose here, not on the caller's path: unlinking a big file
                        // the kernel is still writing back waits for that writeback.
                        let _ = remove_now(&path);
                        pending_add(-1);
                    }
                })
                .ok()
                .map(|_| std::sync::Mutex::new(Reaper { queue: tx }))
        })
        .as_ref()
}

/// Removes a file or a directory tree without waiting for the deletion: renames it to a trash
/// name in the same directory (atomic, metadata only: it is gone from its name at once and the
/// space it takes stays counted by the file system until it really is deleted) and hands it to
/// a background thread that deletes it. A name that already is a trash name is only handed
/// over. Returns `Ok(false)` when there was nothing at `path`. Without a background thread (it
/// could not be started), deletes at once.
pub fn discard(path: &std::path::Path) -> std::io::Result<bool> {
    if let Err(e) = std::fs::symlink_metadata(path) {
        return if e.kind() == std::io::ErrorKind::NotFound {
            Ok(false)
        } else {
            Err(e)
        };
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = if name.starts_with(TRASH_PREFIX) {
        path.to_path_buf()
    } else {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let trash =
            path.with_file_name(format!("{TRASH_PREFIX}{name}.{}.{seq}", std::process::id()));
        match std::fs::rename(path, &trash) {
            Ok(()) => trash,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(_) => {
                remove_now(path)?;
                return Ok(true);
            }
        }
    };
    match reaper() {
        Some(r) => {
            pending_add(1);
            let sent = r
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .queue
                .send(target.clone());
            if sent.is_err() {
                pending_add(-1);
                remove_now(&target)?;
            }
        }
        None => remove_now(&target)?,
    }
    Ok(true)
}

/// How many discarded entries the background thread has not deleted yet.
pub fn trash_pending() -> usize {
    *PENDING.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Waits until every discarded entry is deleted, at most `timeout`; whether they all are.
pub fn wait_trash(timeout: Duration) -> bool {
    let n = PENDING.0.lock().unwrap_or_else(|e| e.into_inner());
    let (n, _) = PENDING
        .1
        .wait_timeout_while(n, timeout, |n| *n > 0)
        .unwrap_or_else(|e| e.into_inner());
    *n == 0
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
        assert!(wait_trash(Duration::from_secs(10)));
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("b")]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn discard_renames_at_once_and_deletes_in_the_background() {
        let dir = std::env::temp_dir().join(format!("ss-discard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
        std::fs::write(dir.join("tree/sub/f"), b"x").unwrap();
        std::fs::write(dir.join("file"), b"x").unwrap();
        assert!(discard(&dir.join("tree")).unwrap());
        assert!(discard(&dir.join("file")).unwrap());
        assert!(!discard(&dir.join("missing")).unwrap());
        assert!(!dir.join("tree").exists() && !dir.join("file").exists());
        // A leftover trash name (a killed process's) is deleted under its own name.
        let leftover = dir.join(format!("{TRASH_PREFIX}old.1.2"));
        std::fs::write(&leftover, b"x").unwrap();
        assert!(discard(&leftover).unwrap());
        assert!(wait_trash(Duration::from_secs(10)));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
