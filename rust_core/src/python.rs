//! Python bindings: type conversion, error mapping and GIL release only. Every function that
//! touches more than a few bytes runs its Rust work inside `py.detach`, so other Python threads
//! (gRPC handlers) keep running; results are identical to the pure Rust modules beneath. The long
//! file forms take an optional `cancel=` token (`python_cancel.rs`).

use std::io::{Read, Write};
use std::path::PathBuf;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBool, PyBytes, PyInt};

use crate::error::Error;
use crate::hash::Node;
use crate::piece_cid as cid;
use crate::piece_size::PieceTarget;
use crate::python_cancel::{flag, Cancelled, PyCancelToken};
use crate::{commd, commp, fr32, fr32_file, piece_size, zero_comm};

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        match err {
            Error::InvalidInput(msg) => PyValueError::new_err(msg),
            Error::Io { .. } => PyOSError::new_err(err.to_string()),
            Error::Cancelled => Cancelled::new_err("the call was cancelled"),
        }
    }
}

/// A size argument: a non-negative int below 2^64, else ValueError naming the argument (rather
/// than pyo3's OverflowError).
fn size_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    if !value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(format!("{name} must be an int")));
    }
    value.extract::<u64>().map_err(|_| {
        PyValueError::new_err(format!(
            "{name} must be a non-negative integer below 2^64, got {value}"
        ))
    })
}

/// `pad_to`: None (exact length), True (smallest piece that fits), or a piece size, padded (a
/// power of two) or unpadded (127·2^k).
fn pad_target(pad_to: Option<&Bound<'_, PyAny>>) -> PyResult<PieceTarget> {
    match pad_to {
        None => Ok(PieceTarget::Exact),
        Some(v) if v.is_instance_of::<PyBool>() => Ok(if v.is_truthy()? {
            PieceTarget::Smallest
        } else {
            PieceTarget::Exact
        }),
        Some(v) => Ok(PieceTarget::from_size(Some(size_arg(v, "pad_to")?))?),
    }
}

/// A C-contiguous buffer-protocol object (bytes, bytearray, memoryview, mmap, array, numpy…),
/// exported for the duration of a call and read or written in place, without a copy.
struct Buffer {
    view: PyUntypedBuffer,
}

impl Buffer {
    /// Exports `obj`'s buffer; `writable` also requires it not read-only. TypeError naming
    /// `name` if it is not a C-contiguous buffer.
    fn get(obj: &Bound<'_, PyAny>, name: &str, writable: bool) -> PyResult<Self> {
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
    fn bytes(&self) -> &[u8] {
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
    fn bytes_mut(&mut self) -> &mut [u8] {
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
fn disjoint(src: &Buffer, dst: &Buffer) -> PyResult<()> {
    let ((a, b), (c, d)) = (src.range(), dst.range());
    if a < d && c < b {
        return Err(PyValueError::new_err(
            "src and dst overlap: fr32 in place is not supported, pass separate buffers",
        ));
    }
    Ok(())
}

fn node_bytes<'py>(py: Python<'py>, node: Node) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &node)
}

/// A Python binary file-like object read from Rust code running without the GIL: each call
/// re-attaches, calls `read(n)` and copies the bytes.
struct PyReader(Py<PyAny>);

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
struct PyWriter(Py<PyAny>);

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

/// fr32-pad `data` (any bytes-like object: a multiple of 127 bytes, or zero-extended as
/// `pad_to` says) into new bytes.
#[pyfunction]
#[pyo3(signature = (data, pad_to=None))]
fn fr32_pad<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    pad_to: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let data = Buffer::get(data, "data", false)?;
    let src = data.bytes();
    let unpadded = pad_target(pad_to)?.fr32_len(src.len() as u64)?;
    let out_len = fr32::padded_len(unpadded as usize)?;
    PyBytes::new_with(py, out_len, |out| {
        Ok(py.detach(|| fr32::pad_zero_extended(src, out))?)
    })
}

/// fr32-pads `src` (any bytes-like object) into the start of writable `dst` (bytearray,
/// memoryview, mmap, ...) in place, without allocating; returns the padded bytes written.
#[pyfunction]
#[pyo3(signature = (src, dst, pad_to=None))]
fn fr32_pad_into(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    dst: &Bound<'_, PyAny>,
    pad_to: Option<&Bound<'_, PyAny>>,
) -> PyResult<usize> {
    let src = Buffer::get(src, "src", false)?;
    let mut dst = Buffer::get(dst, "dst", true)?;
    disjoint(&src, &dst)?;
    let input = src.bytes();
    let unpadded = pad_target(pad_to)?.fr32_len(input.len() as u64)?;
    let need = fr32::padded_len(unpadded as usize)?;
    let out = dst.bytes_mut();
    if out.len() < need {
        return Err(PyValueError::new_err(format!(
            "dst is {} bytes, padding {} bytes needs {need}",
            out.len(),
            input.len()
        )));
    }
    let out = &mut out[..need];
    py.detach(|| fr32::pad_zero_extended(input, out))?;
    Ok(need)
}

/// Inverse of fr32_pad: `data` is a multiple of 128 bytes whose pad bits are zero (with
/// `strict=False` the pad bits are ignored, as Lotus does).
#[pyfunction]
#[pyo3(signature = (data, strict=true))]
fn fr32_unpad<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    strict: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let data = Buffer::get(data, "data", false)?;
    let src = data.bytes();
    let out_len = fr32::unpadded_len(src.len())?;
    let unpad = if strict {
        fr32::unpad_into
    } else {
        fr32::unpad_into_lenient
    };
    PyBytes::new_with(py, out_len, |out| Ok(py.detach(|| unpad(src, out))?))
}

/// Unpads `src` (a multiple of 128 bytes, any bytes-like object) into the start of writable
/// `dst` in place; returns the unpadded bytes written. `strict` as for fr32_unpad.
#[pyfunction]
#[pyo3(signature = (src, dst, strict=true))]
fn fr32_unpad_into(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    dst: &Bound<'_, PyAny>,
    strict: bool,
) -> PyResult<usize> {
    let src = Buffer::get(src, "src", false)?;
    let mut dst = Buffer::get(dst, "dst", true)?;
    disjoint(&src, &dst)?;
    let input = src.bytes();
    let need = fr32::unpadded_len(input.len())?;
    let out = dst.bytes_mut();
    if out.len() < need {
        return Err(PyValueError::new_err(format!(
            "dst is {} bytes, unpadding {} bytes needs {need}",
            out.len(),
            input.len()
        )));
    }
    let out = &mut out[..need];
    let unpad = if strict {
        fr32::unpad_into
    } else {
        fr32::unpad_into_lenient
    };
    py.detach(|| unpad(input, out))?;
    Ok(need)
}

/// Pads file `src` into file `dst`; returns the padded bytes written.
#[pyfunction]
#[pyo3(signature = (src, dst, pad_to=None, dst_offset=None, *, cancel=None))]
fn fr32_pad_file(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    pad_to: Option<&Bound<'_, PyAny>>,
    dst_offset: Option<&Bound<'_, PyAny>>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<u64> {
    let target = pad_target(pad_to)?;
    let dst_offset = dst_offset.map(|v| size_arg(v, "dst_offset")).transpose()?;
    let cancel = flag(cancel);
    Ok(py.detach(|| fr32_file::pad_file(&src, &dst, target, dst_offset, &cancel))?)
}

/// Pads everything read from binary file-like `reader` into `writer`; returns padded bytes written.
#[pyfunction]
#[pyo3(signature = (reader, writer, pad_to=None, *, cancel=None))]
fn fr32_pad_stream(
    py: Python<'_>,
    reader: Py<PyAny>,
    writer: Py<PyAny>,
    pad_to: Option<&Bound<'_, PyAny>>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<u64> {
    let target = pad_target(pad_to)?;
    let (mut reader, mut writer) = (PyReader(reader), PyWriter(writer));
    let cancel = flag(cancel);
    Ok(py.detach(|| {
        fr32_file::pad_stream(&mut reader, &mut writer, target, "the stream", &cancel)
    })?)
}

/// AddPiece in one pass: pads file `src` into `dst` and returns (padded bytes written, commP).
#[pyfunction]
#[pyo3(signature = (src, dst, pad_to=None, dst_offset=None, *, cancel=None))]
fn add_piece_file<'py>(
    py: Python<'py>,
    src: PathBuf,
    dst: PathBuf,
    pad_to: Option<&Bound<'py, PyAny>>,
    dst_offset: Option<&Bound<'py, PyAny>>,
    cancel: Option<&Bound<'py, PyCancelToken>>,
) -> PyResult<(u64, Bound<'py, PyBytes>)> {
    let target = pad_target(pad_to)?;
    let dst_offset = dst_offset.map(|v| size_arg(v, "dst_offset")).transpose()?;
    let cancel = flag(cancel);
    let (written, commp) =
        py.detach(|| fr32_file::add_piece_file(&src, &dst, target, dst_offset, &cancel))?;
    Ok((written, node_bytes(py, commp)))
}

/// AddPiece in one pass from binary file-like `reader` into `writer`: (padded bytes, commP).
#[pyfunction]
#[pyo3(signature = (reader, writer, pad_to=None, *, cancel=None))]
fn add_piece_stream<'py>(
    py: Python<'py>,
    reader: Py<PyAny>,
    writer: Py<PyAny>,
    pad_to: Option<&Bound<'py, PyAny>>,
    cancel: Option<&Bound<'py, PyCancelToken>>,
) -> PyResult<(u64, Bound<'py, PyBytes>)> {
    let target = pad_target(pad_to)?;
    let (mut reader, mut writer) = (PyReader(reader), PyWriter(writer));
    let cancel = flag(cancel);
    let (written, commp) = py.detach(|| {
        fr32_file::add_piece_stream(&mut reader, &mut writer, target, "the stream", &cancel)
    })?;
    Ok((written, node_bytes(py, commp)))
}

/// Unpadded bytes `[offset, offset + length)` of the padded file at `path`.
#[pyfunction]
#[pyo3(signature = (path, offset, length, *, cancel=None))]
fn fr32_unpad_range<'py>(
    py: Python<'py>,
    path: PathBuf,
    offset: &Bound<'py, PyAny>,
    length: &Bound<'py, PyAny>,
    cancel: Option<&Bound<'py, PyCancelToken>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let offset = size_arg(offset, "offset")?;
    let length = size_arg(length, "length")?;
    let len = usize::try_from(length)
        .map_err(|_| PyValueError::new_err(format!("length {length} is too large")))?;
    let cancel = flag(cancel);
    PyBytes::new_with(py, len, |mut out| {
        Ok(py.detach(|| fr32_file::unpad_range_to(&path, offset, length, &mut out, &cancel))?)
    })
}

/// Writes unpadded bytes `[offset, offset + length)` of padded file `src` into `dst`.
#[pyfunction]
#[pyo3(signature = (src, dst, offset=None, length=None, *, cancel=None))]
fn fr32_unpad_file(
    py: Python<'_>,
    src: PathBuf,
    dst: PathBuf,
    offset: Option<&Bound<'_, PyAny>>,
    length: Option<&Bound<'_, PyAny>>,
    cancel: Option<&Bound<'_, PyCancelToken>>,
) -> PyResult<u64> {
    let offset = offset
        .map(|v| size_arg(v, "offset"))
        .transpose()?
        .unwrap_or(0);
    let length = length.map(|v| size_arg(v, "length")).transpose()?;
    let cancel = flag(cancel);
    Ok(py.detach(|| fr32_file::unpad_file(&src, &dst, offset, length, &cancel))?)
}

/// commP (32 bytes) of unpadded `data`: any bytes-like object, read in place (no copy).
#[pyfunction]
#[pyo3(signature = (data, pad_to=None))]
fn piece_commitment<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    pad_to: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let data = Buffer::get(data, "data", false)?;
    let target = pad_target(pad_to)?;
    let bytes = data.bytes();
    let node = py.detach(|| commp::piece_commitment(bytes, target))?;
    Ok(node_bytes(py, node))
}

/// commP of a file's contents, with constant memory. Cancellable (`cancel=`).
#[pyfunction]
#[pyo3(signature = (path, pad_to=None, *, cancel=None))]
fn piece_commitment_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    pad_to: Option<&Bound<'py, PyAny>>,
    cancel: Option<&Bound<'py, PyCancelToken>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let target = pad_target(pad_to)?;
    let cancel = flag(cancel);
    let node = py.detach(|| commp::piece_commitment_file(&path, target, &cancel))?;
    Ok(node_bytes(py, node))
}

/// commP of everything read from binary file-like `reader`, with constant memory.
#[pyfunction]
#[pyo3(signature = (reader, pad_to=None))]
fn piece_commitment_stream<'py>(
    py: Python<'py>,
    reader: Py<PyAny>,
    pad_to: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let target = pad_target(pad_to)?;
    let reader = PyReader(reader);
    let node = py.detach(|| {
        commp::piece_commitment_reader(reader, target, "the stream", &Default::default())
    })?;
    Ok(node_bytes(py, node))
}

/// Incremental commP: `update(data)` any number of times, then `finish(pad_to=None)`.
#[pyclass(name = "PieceHasher", module = "rust_core")]
#[derive(Default)]
struct PyPieceHasher {
    inner: commp::PieceHasher,
}

#[pymethods]
impl PyPieceHasher {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Feeds more unpadded bytes (any bytes-like object, read in place).
    fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = Buffer::get(data, "data", false)?;
        let bytes = data.bytes();
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.update(bytes))?)
    }

    /// commP of the bytes fed so far; the hasher stays usable.
    #[pyo3(signature = (pad_to=None))]
    fn finish<'py>(
        &self,
        py: Python<'py>,
        pad_to: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let target = pad_target(pad_to)?;
        let inner = &self.inner;
        let node = py.detach(|| inner.finish(target))?;
        Ok(node_bytes(py, node))
    }

    /// Unpadded bytes fed so far.
    #[getter]
    fn payload_size(&self) -> u64 {
        self.inner.len()
    }
}

/// Commitment of an all-zero piece of `padded_size` bytes (a power of two ≥ 32), from a table.
#[pyfunction]
fn zero_piece_commitment<'py>(
    py: Python<'py>,
    padded_size: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let size = size_arg(padded_size, "padded_size")?;
    Ok(node_bytes(py, zero_comm::zero_piece_commitment(size)?))
}

/// commD of a sector from its pieces: (padded size, commP) in order.
#[pyfunction]
fn unsealed_commitment<'py>(
    py: Python<'py>,
    sector_size: &Bound<'py, PyAny>,
    pieces: Vec<(Bound<'py, PyAny>, PyBackedBytes)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let sector_size = size_arg(sector_size, "sector_size")?;
    let mut list = Vec::with_capacity(pieces.len());
    for (i, (size, commitment)) in pieces.iter().enumerate() {
        let size = size_arg(size, &format!("size of piece {i}"))?;
        let node: Node = commitment.as_ref().try_into().map_err(|_| {
            PyValueError::new_err(format!(
                "commitment of piece {i} must be 32 bytes, got {}",
                commitment.len()
            ))
        })?;
        list.push((size, node));
    }
    Ok(node_bytes(
        py,
        commd::unsealed_commitment(sector_size, &list)?,
    ))
}

/// Piece CID v1 (`baga6ea4seaq…`) of a commP or commD.
#[pyfunction]
fn piece_cid(commp: PyBackedBytes) -> PyResult<String> {
    Ok(cid::piece_cid(&commp)?)
}

/// commP inside a piece CID (v1, or v2 per FRC-0069).
#[pyfunction]
fn commp_from_cid<'py>(py: Python<'py>, cid: &str) -> PyResult<Bound<'py, PyBytes>> {
    Ok(node_bytes(py, cid::commp_from_cid(cid)?))
}

/// Sealed-sector CID (`bagboea4b5abc…`) of a commR.
#[pyfunction]
fn sealed_cid(commr: PyBackedBytes) -> PyResult<String> {
    Ok(cid::sealed_cid(&commr)?)
}

/// commR inside a sealed-sector CID.
#[pyfunction]
fn commr_from_cid<'py>(py: Python<'py>, cid: &str) -> PyResult<Bound<'py, PyBytes>> {
    Ok(node_bytes(py, cid::commr_from_cid(cid)?))
}

/// Piece CID v2 of a commP over `payload_size` bytes of data.
#[pyfunction]
fn piece_cid_v2(commp: PyBackedBytes, payload_size: &Bound<'_, PyAny>) -> PyResult<String> {
    let payload_size = size_arg(payload_size, "payload_size")?;
    Ok(cid::piece_cid_v2(&commp, payload_size)?)
}

/// (commP, payload size, padded size) of a piece CID v2.
#[pyfunction]
fn piece_cid_v2_info<'py>(py: Python<'py>, cid: &str) -> PyResult<(Bound<'py, PyBytes>, u64, u64)> {
    let info = cid::piece_cid_v2_info(cid)?;
    Ok((
        node_bytes(py, info.commp),
        info.payload_size,
        info.padded_size,
    ))
}

/// Padded size of an unpadded piece size (127·2^k → 128·2^k).
#[pyfunction]
fn unpadded_to_padded(size: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(piece_size::unpadded_to_padded(size_arg(size, "size")?)?)
}

/// Unpadded size of a padded piece size (128·2^k → 127·2^k).
#[pyfunction]
fn padded_to_unpadded(size: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(piece_size::padded_to_unpadded(size_arg(size, "size")?)?)
}

/// Padded size of the smallest piece that holds `payload_size` bytes.
#[pyfunction]
fn padded_size_for_payload(payload_size: &Bound<'_, PyAny>) -> PyResult<u64> {
    let unpadded = piece_size::unpadded_size_for(size_arg(payload_size, "payload_size")?)?;
    Ok(piece_size::unpadded_to_padded(unpadded)?)
}

#[pymodule]
fn rust_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", crate::VERSION)?;
    m.add_function(wrap_pyfunction!(fr32_pad, m)?)?;
    m.add_function(wrap_pyfunction!(fr32_unpad, m)?)?;
    m.add_function(wrap_pyfunction!(fr32_pad_into, m)?)?;
    m.add_function(wrap_pyfunction!(fr32_unpad_into, m)?)?;
    m.add_function(wrap_pyfunction!(fr32_pad_file, m)?)?;
    m.add_function(wrap_pyfunction!(fr32_pad_stream, m)?)?;
    m.add_function(wrap_pyfunction!(add_piece_file, m)?)?;
    m.add_function(wrap_pyfunction!(add_piece_stream, m)?)?;
    m.add_function(wrap_pyfunction!(fr32_unpad_range, m)?)?;
    m.add_function(wrap_pyfunction!(fr32_unpad_file, m)?)?;
    m.add_function(wrap_pyfunction!(piece_commitment, m)?)?;
    m.add_function(wrap_pyfunction!(piece_commitment_file, m)?)?;
    m.add_function(wrap_pyfunction!(piece_commitment_stream, m)?)?;
    m.add_class::<PyPieceHasher>()?;
    m.add_function(wrap_pyfunction!(zero_piece_commitment, m)?)?;
    m.add_function(wrap_pyfunction!(unsealed_commitment, m)?)?;
    m.add_function(wrap_pyfunction!(piece_cid, m)?)?;
    m.add_function(wrap_pyfunction!(commp_from_cid, m)?)?;
    m.add_function(wrap_pyfunction!(sealed_cid, m)?)?;
    m.add_function(wrap_pyfunction!(commr_from_cid, m)?)?;
    m.add_function(wrap_pyfunction!(piece_cid_v2, m)?)?;
    m.add_function(wrap_pyfunction!(piece_cid_v2_info, m)?)?;
    m.add_function(wrap_pyfunction!(unpadded_to_padded, m)?)?;
    m.add_function(wrap_pyfunction!(padded_to_unpadded, m)?)?;
    m.add_function(wrap_pyfunction!(padded_size_for_payload, m)?)?;
    crate::python_porep::register(m)?;
    crate::python_cancel::register(m)?;
    Ok(())
}
