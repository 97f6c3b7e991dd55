//! Checksum bindings: CRC32C of buffers and of file ranges (fetch transfers; see
//! `crate::checksum`).

use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::PathBuf;

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBool;

use super::args::size_arg;
use super::buffer::Buffer;
use crate::checksum;

/// Buffers below this are checksummed without releasing the GIL (the hand-over would cost more
/// than the work).
const DETACH_BYTES: usize = 64 << 10;

/// `seed`: a CRC32C value (an int in [0, 2^32)), else ValueError (rather than pyo3's
/// OverflowError).
fn seed_arg(seed: i128) -> PyResult<u32> {
    u32::try_from(seed).map_err(|_| {
        PyValueError::new_err(format!(
            "seed must be a CRC32C value in [0, 2^32), got {seed}"
        ))
    })
}

/// CRC32C of `data` (any bytes-like object, read in place), continuing from `seed`.
#[pyfunction]
#[pyo3(signature = (data, seed=0))]
fn crc32c(py: Python<'_>, data: &Bound<'_, PyAny>, seed: i128) -> PyResult<u32> {
    let seed = seed_arg(seed)?;
    let data = Buffer::get(data, "data", false)?;
    let bytes = data.bytes();
    if bytes.len() < DETACH_BYTES {
        return Ok(checksum::crc32c(seed, bytes));
    }
    Ok(py.detach(|| checksum::crc32c(seed, bytes)))
}

/// A file named by path, or an open file descriptor of the caller's.
#[derive(FromPyObject)]
enum FileArg {
    Fd(i32),
    Path(PathBuf),
}

/// CRC32C of `length` bytes of the file at `path` (or of the open file descriptor `path`, which
/// stays the caller's) from `offset`, continuing from `seed`; read in 1 MiB chunks without the
/// GIL. A file shorter than the range raises OSError.
#[pyfunction]
#[pyo3(signature = (path, offset, length, seed=0))]
fn crc32c_file(
    py: Python<'_>,
    path: &Bound<'_, PyAny>,
    offset: &Bound<'_, PyAny>,
    length: &Bound<'_, PyAny>,
    seed: i128,
) -> PyResult<u32> {
    let wrong = || PyTypeError::new_err("path must be a path or a file descriptor");
    if path.is_instance_of::<PyBool>() {
        return Err(wrong());
    }
    let file = path.extract::<FileArg>().map_err(|_| wrong())?;
    let offset = size_arg(offset, "offset")?;
    let length = size_arg(length, "length")?;
    let seed = seed_arg(seed)?;
    match file {
        FileArg::Path(path) => {
            Ok(py.detach(|| checksum::crc32c_file(&path, offset, length, seed))?)
        }
        FileArg::Fd(fd) => {
            // A duplicate, owned here: an invalid descriptor fails in dup (EBADF), and the
            // caller's descriptor is never closed by this call.
            // SAFETY: dup only reads the descriptor table; any int is a valid argument.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return Err(PyOSError::new_err(format!(
                    "checksumming file descriptor {fd}: {}",
                    std::io::Error::last_os_error()
                )));
            }
            // SAFETY: `dup` is a new descriptor that nothing else owns.
            let owned = unsafe { File::from_raw_fd(dup) };
            let name = format!("file descriptor {fd}");
            Ok(py.detach(|| checksum::crc32c_open_file(&owned, &name, offset, length, seed))?)
        }
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(crc32c, m)?)?;
    m.add_function(wrap_pyfunction!(crc32c_file, m)?)?;
    Ok(())
}
