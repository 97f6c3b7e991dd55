//! Python memory and file objects seen from Rust: buffer-protocol objects read or written in
//! place (no copy), and binary file-like objects read and written from code running without the
//! GIL.

use std::io::{Read, Write};

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

/// A C-contiguous buffer-protocol object (bytes, bytearray, memoryview, mmap, array, numpy…),
/// exported for the duration of a call and read or written in place, without a copy.
pub struct Buffer {
    view: PyUntypedBuffer,
}

impl Buffer {
    /// Exports `obj`'s buffer; `writable` also requires it not read-only. TypeError naming
    /// `name` if it is not a C-contiguous buffer.
    pub fn get(obj: &Bound<'_, PyAny>, name: &str, writable: bool) -> PyResult<Self> {
        let view = PyUntypedBuffer::get(obj).map_err(|_| {
            let kind = obj
                .get_type()
                .name()
                .map_or_else(|_| "?".to_string(), |n| n.to_string());
            PyTypeError::new_err(format!(
                "{name} must be a bytes-like object (buffer protocol), not {kind}"
            ))
        })?;
        if !view.is_c_contiguous() {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a C-contiguous buffer"
            )));
        }
        if writable && view.readonly() {
            return Err(PyTypeError::new_err(format!(
                "{name} must be a writable buffer (bytearray, memoryview of one, mmap, ...)"
            )));
        }
        Ok(Self { view })
    }

    fn len(&self) -> usize {
        self.view.len_bytes()
    }

    /// The address range `[start, end)` of the bytes.
    fn range(&self) -> (usize, usize) {
        let start = self.view.buf_ptr() as usize;
        (start, start + self.len())
    }

    /// The bytes, for reading.
    pub fn bytes(&self) -> &[u8] {
        let len = self.len();
        if len == 0 {
            return &[];
        }
        // SAFETY: the export (`self.view`) keeps the memory alive and in place (an exported
        // bytearray cannot be resized) for as long as `self` is borrowed; the buffer is
        // C-contiguous, so its `len > 0` bytes start at the non-null `buf_ptr()`. As with any C
        // extension that releases the GIL on a buffer (hashlib, zlib), another Python thread
        // writing the same memory during the call races with it: the result is then
        // meaningless, as it would be for those.
        unsafe { std::slice::from_raw_parts(self.view.buf_ptr().cast::<u8>(), len) }
    }

    /// The bytes, for writing (empty for a read-only buffer: get it with `writable`).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        if len == 0 || self.view.readonly() {
            return &mut [];
        }
        // SAFETY: as in `bytes`, and the exporter says the memory is writable. `&mut self`
        // makes this the only Rust slice of this export; another export of overlapping memory
        // (the source of the same call) is ruled out by the callers with `disjoint`.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf_ptr().cast::<u8>(), len) }
    }
}

/// ValueError if `src` and `dst` share memory (the kernels read `src` while writing `dst`).
pub fn disjoint(src: &Buffer, dst: &Buffer) -> PyResult<()> {
    let ((a, b), (c, d)) = (src.range(), dst.range());
    if a < d && c < b {
        return Err(PyValueError::new_err(
            "src and dst overlap: fr32 in place is not supported, pass separate buffers",
        ));
    }
    Ok(())
}

/// A Python binary file-like object read from Rust code running without the GIL: each call
/// re-attaches, calls `read(n)` and copies the bytes.
pub struct PyReader(pub Py<PyAny>);

impl Read for PyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Python::attach(|py| {
            let chunk = self.0.bind(py).call_method1("read", (buf.len(),))?;
            if chunk.is_none() {
                return Ok(0);
            }
            let bytes: PyBackedBytes = chunk.extract()?;
            let slot = buf
                .get_mut(..bytes.len())
                .ok_or_else(|| PyValueError::new_err("read(n) returned more than n bytes"))?;
            slot.copy_from_slice(&bytes);
            Ok(bytes.len())
        })
        .map_err(|e: PyErr| std::io::Error::other(e.to_string()))
    }
}

/// A Python binary file-like object written from Rust code running without the GIL.
pub struct PyWriter(pub Py<PyAny>);

impl Write for PyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Python::attach(|py| {
            let written = self
                .0
                .bind(py)
                .call_method1("write", (PyBytes::new(py, buf),))?;
            // Raw files may write less; buffered ones return the full length (or None).
            if written.is_none() {
                Ok(buf.len())
            } else {
                written.extract::<usize>()
            }
        })
        .map_err(|e: PyErr| std::io::Error::other(e.to_string()))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
