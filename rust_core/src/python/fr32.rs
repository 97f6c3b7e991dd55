//! fr32 bindings: pad and unpad of bytes-like objects (new bytes, or in place into a writable
//! buffer), of files and of streams, and AddPiece (pad + commP in one pass).

use std::path::PathBuf;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::args::{node_bytes, pad_target, size_arg};
use super::buffer::{disjoint, Buffer, PyReader, PyWriter};
use super::cancel::{flag, PyCancelToken};
use crate::fr32;
use crate::fr32::file as fr32_file;

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
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
    Ok(())
}
