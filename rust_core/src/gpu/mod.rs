//! Hashing backends: the bulk hashing of PC2 (tree levels, column hashes) and of C2 (the witness
//! tree) goes through a [`Backend`], so the same code runs on the CPU (rayon, always built) or on
//! a CUDA GPU (cargo feature `cuda`, driver and NVRTC loaded at run time).
//!
//! Selection by a config string, so a worker can pin a task to the GPU slot the scheduler gave
//! it: `auto` (the first CUDA device when there is one, else the CPU), `cpu`, `cuda` (= `cuda:0`),
//! `cuda:N` or a bare ordinal `N`. Asking for CUDA explicitly where there is none is an error rather than a silent
//! fallback, so a misconfigured GPU worker is noticed. Both backends produce identical bytes;
//! the tests compare them wherever a device exists.

use std::sync::Arc;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::hash::Node;

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;

/// One GPU the process can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub memory_bytes: u64,
}

/// Bulk hashing primitives. All node outputs are trimmed to 254 bits.
///
/// Every method takes the call's [`Cancel`] flag and returns [`Error::Cancelled`] soon after it
/// is set (the CPU backend checks it every few thousand outputs, the CUDA backend between
/// transfers and kernel launches), leaving `out` unspecified.
pub trait Backend: Send + Sync {
    /// "cpu" or "cuda:N".
    fn name(&self) -> String;

    /// `out[i] = H(children[2i], children[2i+1])`; `children.len() == 2 * out.len()`.
    fn hash_level(&self, children: &[Node], out: &mut [Node], cancel: &Cancel) -> Result<()>;

    /// Column hashes: `out[i] = SHA-256(layers[0][i] ‖ … ‖ layers[L−1][i])` trimmed; every layer
    /// slice has `out.len()` nodes.
    fn hash_columns(&self, layers: &[&[Node]], out: &mut [Node], cancel: &Cancel) -> Result<()>;

    /// Roots of C2 witness chunks: `out[m]` is the root of the binary tree over leaves
    /// `witness_leaf(transcript, j)` for `j` in chunk `first_chunk + m` (2^chunk_log2 leaves each).
    fn witness_chunk_roots(
        &self,
        transcript: &[u8; 32],
        chunk_log2: u32,
        first_chunk: u64,
        out: &mut [Node],
        cancel: &Cancel,
    ) -> Result<()>;
}

/// Leaf `j` of the C2 witness tree: SHA-256(transcript ‖ j (u64 LE)) trimmed (one compression).
pub fn witness_leaf(transcript: &[u8; 32], j: u64) -> Node {
    crate::porep::ids::hash_parts_trunc254(&[transcript, &j.to_le_bytes()])
}

/// What a config string asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    Auto,
    Cpu,
    Cuda(usize),
}

/// Parses `auto`, `cpu`, `cuda`, `cuda:N` or a bare device ordinal `N` (case-insensitive,
/// surrounding spaces ignored; empty means auto).
pub fn parse_selection(spec: &str) -> Result<Selection> {
    let s = spec.trim().to_ascii_lowercase();
    match s.as_str() {
        "" | "auto" => Ok(Selection::Auto),
        "cpu" => Ok(Selection::Cpu),
        "cuda" | "gpu" => Ok(Selection::Cuda(0)),
        _ => {
            let ordinal = s
                .strip_prefix("cuda:")
                .or_else(|| s.strip_prefix("gpu:"))
                .unwrap_or(&s)
                .parse::<usize>()
                .ok();
            ordinal.map(Selection::Cuda).ok_or_else(|| {
                Error::invalid(format!(
                    "unknown compute backend {spec:?}: expected auto, cpu, cuda, cuda:N or a device ordinal"
                ))
            })
        }
    }
}

/// The GPUs visible to this process (empty without the `cuda` feature, a driver or a device).
pub fn devices() -> Vec<DeviceInfo> {
    #[cfg(feature = "cuda")]
    {
        cuda::devices()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Vec::new()
    }
}

/// The backend a config string selects.
pub fn select(spec: &str) -> Result<Arc<dyn Backend>> {
    select_with(parse_selection(spec)?, &devices())
}

/// [`select`] against a given device list (lets tests exercise the rules without hardware).
pub fn select_with(selection: Selection, devices: &[DeviceInfo]) -> Result<Arc<dyn Backend>> {
    match selection {
        Selection::Cpu => Ok(Arc::new(cpu::CpuBackend)),
        Selection::Auto => match devices.first() {
            Some(d) => cuda_backend(d.ordinal).or_else(|_| Ok(Arc::new(cpu::CpuBackend))),
            None => Ok(Arc::new(cpu::CpuBackend)),
        },
        Selection::Cuda(n) => {
            if !devices.iter().any(|d| d.ordinal == n) {
                return Err(Error::invalid(format!(
                    "CUDA device {n} requested but {} (use \"cpu\" or \"auto\")",
                    if cfg!(feature = "cuda") {
                        format!("{} CUDA device(s) are visible", devices.len())
                    } else {
                        "this build has no CUDA support (cargo feature `cuda`)".to_string()
                    }
                )));
            }
            cuda_backend(n)
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_backend(ordinal: usize) -> Result<Arc<dyn Backend>> {
    cuda::backend(ordinal)
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(ordinal: usize) -> Result<Arc<dyn Backend>> {
    Err(Error::invalid(format!(
        "CUDA device {ordinal} requested but this build has no CUDA support (cargo feature `cuda`)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!(parse_selection("").unwrap(), Selection::Auto);
        assert_eq!(parse_selection(" AUTO ").unwrap(), Selection::Auto);
        assert_eq!(parse_selection("cpu").unwrap(), Selection::Cpu);
        assert_eq!(parse_selection("cuda").unwrap(), Selection::Cuda(0));
        assert_eq!(parse_selection("cuda:3").unwrap(), Selection::Cuda(3));
        assert_eq!(parse_selection("1").unwrap(), Selection::Cuda(1));
        assert!(parse_selection("cuda:x").is_err());
        assert!(parse_selection("tpu")
            .unwrap_err()
            .to_string()
            .contains("tpu"));
    }

    #[test]
    fn auto_and_cpu_fall_back_to_cpu_without_devices_and_cuda_is_an_error() {
        assert_eq!(select_with(Selection::Auto, &[]).unwrap().name(), "cpu");
        assert_eq!(select_with(Selection::Cpu, &[]).unwrap().name(), "cpu");
        let err = select_with(Selection::Cuda(1), &[])
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("CUDA device 1 requested"));
    }

    #[test]
    fn auto_falls_back_to_cpu_when_a_listed_device_cannot_start() {
        // A device that is listed but cannot be opened (here: no such hardware) must not fail
        // an `auto` task.
        let ghost = DeviceInfo {
            ordinal: 7,
            name: "ghost".into(),
            memory_bytes: 0,
        };
        if devices().is_empty() {
            assert_eq!(
                select_with(Selection::Auto, &[ghost]).unwrap().name(),
                "cpu"
            );
        }
    }

    #[test]
    fn select_without_hardware_is_cpu() {
        if devices().is_empty() {
            assert_eq!(select("auto").unwrap().name(), "cpu");
            assert!(select("cuda:0").is_err());
        }
    }
}
