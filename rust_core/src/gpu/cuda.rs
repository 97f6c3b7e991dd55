//! The CUDA backend (cargo feature `cuda`): the same hashes as the CPU backend, one GPU thread
//! per output node, with kernels from `kernels.cu` compiled at run time by NVRTC.
//!
//! cudarc is built with `dynamic-loading`: libcuda and libnvrtc are opened when first needed, so
//! a build with this feature loads and runs on machines without them (`devices()` is then empty
//! and `auto` selects the CPU). Small inputs stay on the CPU, where a transfer would cost more
//! than the hashing; both paths give identical bytes.
//!
//! Cancellation: the flag is checked before each upload, between kernel launches and before the
//! copy back; a single launch covers at most one tree chunk (2^20 nodes) or one witness batch
//! level, milliseconds on a GPU, so a cancelled call stops well within 100 ms.
//!
//! Status: `make test` compiles the kernels with NVRTC (the `nvidia-cuda-nvrtc-cu12` wheel, no GPU
//! needed) to PTX and to sm_80/sm_90 machine code and checks every kernel the backend loads is
//! there (`tests/nvrtc_compile.rs`); their hashing is unit-tested as C on the host. No kernel has
//! run on a GPU yet.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{CompileError, CompileOptions, Ptx};

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::gpu::cpu::CpuBackend;
use crate::gpu::{Backend, DeviceInfo};
use crate::hash::Node;

/// Kernel source, shared with the host-side C test.
pub const KERNELS: &str = include_str!("kernels.cu");
/// Outputs below this many nodes are computed on the CPU.
const MIN_GPU_NODES: usize = 1 << 14;
const THREADS_PER_BLOCK: u32 = 256;

fn driver_present() -> bool {
    // SAFETY: only probes whether the shared library can be opened.
    catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
}

/// Whether libnvrtc can be opened (cudarc looks it up by name, so through `LD_LIBRARY_PATH`
/// and the loader's cache: `make test` puts the `nvidia-cuda-nvrtc-cu12` wheel's lib there).
pub fn nvrtc_present() -> bool {
    // SAFETY: as above, for libnvrtc.
    catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() }).unwrap_or(false)
}

/// The kernels of `kernels.cu` that the host code launches, each by its `extern "C"` entry
/// point. The backend loads its functions from this list, so a test that finds every entry
/// point in the PTX checks exactly what the launch code will ask the module for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    HashLevel,
    HashColumns,
    WitnessLeaves,
}

impl Kernel {
    /// Every kernel, in the order of the discriminants (the backend indexes its functions so).
    pub const ALL: [Kernel; 3] = [
        Kernel::HashLevel,
        Kernel::HashColumns,
        Kernel::WitnessLeaves,
    ];

    /// The symbol in the PTX (`.entry <name>`) and in `module.load_function`.
    pub const fn entry_point(self) -> &'static str {
        match self {
            Kernel::HashLevel => "hash_level",
            Kernel::HashColumns => "hash_columns",
            Kernel::WitnessLeaves => "witness_leaves",
        }
    }
}

/// The program name NVRTC puts in its diagnostics (`kernels.cu(LINE): error: ...`).
const PROGRAM_NAME: &str = "kernels.cu";

/// Compiles CUDA `source` to PTX with NVRTC, for the virtual architecture `arch`
/// (`"compute_90"`; `None`: NVRTC's default, which the driver JIT-compiles for any newer GPU).
///
/// Needs libnvrtc only, no GPU or driver. Errors say what to fix: a missing library names the
/// package and the variable to set; a failed compile carries NVRTC's log, whose lines point
/// into the source (`kernels.cu(LINE): error: ...`).
pub fn compile_kernels(source: &str, arch: Option<&'static str>) -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(Error::invalid(
            "NVRTC (libnvrtc.so.12) not found: install the CUDA toolkit or the \
             nvidia-cuda-nvrtc-cu12 wheel and put its lib directory on LD_LIBRARY_PATH",
        ));
    }
    if source.contains('\0') {
        return Err(Error::invalid("CUDA source contains a NUL byte"));
    }
    let opts = CompileOptions {
        arch,
        name: Some(PROGRAM_NAME.into()),
        ..Default::default()
    };
    let target = arch.unwrap_or("NVRTC's default architecture");
    // cudarc panics when the library lacks a symbol; that is an error here, not a crash.
    let compiled = catch_unwind(AssertUnwindSafe(|| {
        cudarc::nvrtc::compile_ptx_with_opts(source, opts)
    }))
    .map_err(|_| {
        Error::invalid(format!(
            "NVRTC panicked compiling {PROGRAM_NAME} for {target}"
        ))
    })?;
    compiled.map_err(|e| match e {
        CompileError::CompileError { log, .. } => Error::invalid(format!(
            "NVRTC could not compile {PROGRAM_NAME} for {target}:\n{}",
            log.to_string_lossy().trim_end()
        )),
        other => Error::invalid(format!("NVRTC failed for {target}: {other:?}")),
    })
}

/// Lists the CUDA devices; empty when the driver is missing or reports none.
pub fn devices() -> Vec<DeviceInfo> {
    if !driver_present() {
        return Vec::new();
    }
    catch_unwind(|| {
        let count = CudaContext::device_count().unwrap_or(0).max(0) as usize;
        (0..count)
            .filter_map(|ordinal| {
                let ctx = CudaContext::new(ordinal).ok()?;
                Some(DeviceInfo {
                    ordinal,
                    name: ctx.name().unwrap_or_else(|_| "CUDA device".into()),
                    memory_bytes: ctx.total_mem().map(|m| m as u64).unwrap_or(0),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

/// The backend of device `ordinal`, created once per process.
pub fn backend(ordinal: usize) -> Result<Arc<dyn Backend>> {
    static CACHE: OnceLock<Mutex<HashMap<usize, Arc<CudaBackend>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache
        .lock()
        .map_err(|_| Error::invalid("CUDA backend cache poisoned"))?;
    if let Some(b) = map.get(&ordinal) {
        return Ok(b.clone());
    }
    let b = Arc::new(CudaBackend::new(ordinal)?);
    map.insert(ordinal, b.clone());
    Ok(b)
}

fn cuda_err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::invalid(format!("CUDA {what}: {e:?}"))
}

pub struct CudaBackend {
    ordinal: usize,
    stream: Arc<CudaStream>,
    /// One function per [`Kernel`], indexed by its discriminant.
    functions: [CudaFunction; Kernel::ALL.len()],
    /// One launch sequence at a time on the stream.
    lock: Mutex<()>,
}

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (
            (n as u64).div_ceil(u64::from(THREADS_PER_BLOCK)) as u32,
            1,
            1,
        ),
        block_dim: (THREADS_PER_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaBackend {
    fn new(ordinal: usize) -> Result<Self> {
        if !driver_present() || !nvrtc_present() {
            return Err(Error::invalid(
                "CUDA driver (libcuda) or NVRTC (libnvrtc) not found",
            ));
        }
        catch_unwind(|| {
            let ctx = CudaContext::new(ordinal).map_err(|e| cuda_err("context", e))?;
            let ptx = compile_kernels(KERNELS, None)?;
            let module = ctx
                .load_module(ptx)
                .map_err(|e| cuda_err("load module", e))?;
            let functions = Kernel::ALL
                .iter()
                .map(|k| {
                    module
                        .load_function(k.entry_point())
                        .map_err(|e| cuda_err(&format!("load function {}", k.entry_point()), e))
                })
                .collect::<Result<Vec<_>>>()?
                .try_into()
                .map_err(|_| Error::invalid("CUDA: wrong number of kernel functions"))?;
            Ok(Self {
                ordinal,
                stream: ctx.default_stream(),
                functions,
                lock: Mutex::new(()),
            })
        })
        .unwrap_or_else(|_| Err(Error::invalid("CUDA initialisation panicked")))
    }

    fn function(&self, kernel: Kernel) -> &CudaFunction {
        &self.functions[kernel as usize]
    }

    fn guarded<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _g = self
            .lock
            .lock()
            .map_err(|_| Error::invalid("CUDA stream lock poisoned"))?;
        catch_unwind(AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(Error::invalid("CUDA call panicked")))
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }

    fn hash_level(&self, children: &[Node], out: &mut [Node], cancel: &Cancel) -> Result<()> {
        if out.len() < MIN_GPU_NODES {
            return CpuBackend.hash_level(children, out, cancel);
        }
        cancel.check()?;
        if children.len() != out.len() * 2 {
            return Err(Error::invalid(
                "hash_level: children must be twice the parents",
            ));
        }
        self.guarded(|| {
            let s = &self.stream;
            let d_in = s
                .clone_htod(children.as_flattened())
                .map_err(|e| cuda_err("copy", e))?;
            let mut d_out = s
                .alloc_zeros::<u8>(out.len() * 32)
                .map_err(|e| cuda_err("alloc", e))?;
            let n = out.len() as u64;
            let mut b = s.launch_builder(self.function(Kernel::HashLevel));
            b.arg(&d_in).arg(&mut d_out).arg(&n);
            cancel.check()?;
            // SAFETY: the kernel reads 64·n bytes of d_in and writes 32·n bytes of d_out.
            unsafe { b.launch(grid(out.len())) }.map_err(|e| cuda_err("launch", e))?;
            s.memcpy_dtoh(&d_out, out.as_flattened_mut())
                .map_err(|e| cuda_err("copy back", e))?;
            s.synchronize().map_err(|e| cuda_err("sync", e))
        })
    }

    fn hash_columns(&self, layers: &[&[Node]], out: &mut [Node], cancel: &Cancel) -> Result<()> {
        if out.len() < MIN_GPU_NODES {
            return CpuBackend.hash_columns(layers, out, cancel);
        }
        cancel.check()?;
        if layers.iter().any(|l| l.len() != out.len()) {
            return Err(Error::invalid(
                "hash_columns: layer slices differ in length",
            ));
        }
        self.guarded(|| {
            let s = &self.stream;
            let mut host = Vec::with_capacity(layers.len() * out.len() * 32);
            for l in layers {
                host.extend_from_slice(l.as_flattened());
            }
            let d_in = s.clone_htod(&host).map_err(|e| cuda_err("copy", e))?;
            let mut d_out = s
                .alloc_zeros::<u8>(out.len() * 32)
                .map_err(|e| cuda_err("alloc", e))?;
            let n = out.len() as u64;
            let num_layers = layers.len() as u32;
            let mut b = s.launch_builder(self.function(Kernel::HashColumns));
            b.arg(&d_in).arg(&mut d_out).arg(&n).arg(&num_layers);
            cancel.check()?;
            // SAFETY: reads L·n nodes of d_in, writes n nodes of d_out.
            unsafe { b.launch(grid(out.len())) }.map_err(|e| cuda_err("launch", e))?;
            s.memcpy_dtoh(&d_out, out.as_flattened_mut())
                .map_err(|e| cuda_err("copy back", e))?;
            s.synchronize().map_err(|e| cuda_err("sync", e))
        })
    }

    fn witness_chunk_roots(
        &self,
        transcript: &[u8; 32],
        chunk_log2: u32,
        first_chunk: u64,
        out: &mut [Node],
        cancel: &Cancel,
    ) -> Result<()> {
        let leaves = out.len() << chunk_log2;
        if leaves < MIN_GPU_NODES {
            return CpuBackend.witness_chunk_roots(
                transcript,
                chunk_log2,
                first_chunk,
                out,
                cancel,
            );
        }
        cancel.check()?;
        self.guarded(|| {
            let s = &self.stream;
            let d_t = s
                .clone_htod(&transcript[..])
                .map_err(|e| cuda_err("copy", e))?;
            let mut cur = s
                .alloc_zeros::<u8>(leaves * 32)
                .map_err(|e| cuda_err("alloc", e))?;
            let mut next = s
                .alloc_zeros::<u8>(leaves * 16)
                .map_err(|e| cuda_err("alloc", e))?;
            let first = first_chunk << chunk_log2;
            let n = leaves as u64;
            let mut b = s.launch_builder(self.function(Kernel::WitnessLeaves));
            b.arg(&d_t).arg(&mut cur).arg(&first).arg(&n);
            // SAFETY: writes n nodes of cur.
            unsafe { b.launch(grid(leaves)) }.map_err(|e| cuda_err("launch", e))?;
            // Reduce every chunk at once: the batch is whole, aligned chunks in order.
            let mut len = leaves;
            for _ in 0..chunk_log2 {
                cancel.check()?;
                let half = (len / 2) as u64;
                let mut b = s.launch_builder(self.function(Kernel::HashLevel));
                b.arg(&cur).arg(&mut next).arg(&half);
                // SAFETY: reads 2·half nodes of cur, writes half nodes of next.
                unsafe { b.launch(grid(len / 2)) }.map_err(|e| cuda_err("launch", e))?;
                std::mem::swap(&mut cur, &mut next);
                len /= 2;
            }
            cancel.check()?;
            let roots = s.clone_dtoh(&cur).map_err(|e| cuda_err("copy back", e))?;
            s.synchronize().map_err(|e| cuda_err("sync", e))?;
            let bytes = roots
                .get(..out.len() * 32)
                .ok_or_else(|| Error::invalid("CUDA witness: short result"))?;
            out.as_flattened_mut().copy_from_slice(bytes);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel against the CPU backend, byte for byte. Needs a CUDA device, so it is
    /// ignored by default (a machine without one would otherwise count it as passed): run it
    /// on a GPU machine with `cargo test --release --features cuda -- --ignored gpu::`.
    #[test]
    #[ignore = "needs a CUDA device: cargo test --release --features cuda -- --ignored gpu::"]
    fn cuda_matches_cpu_when_a_device_exists() {
        assert!(
            !devices().is_empty(),
            "no CUDA device visible: this test needs one"
        );
        let b = backend(0).expect("CUDA backend");
        let n = MIN_GPU_NODES * 2;
        let children: Vec<Node> = (0..2 * n as u64)
            .map(|i| crate::porep::ids::hash_parts_trunc254(&[&i.to_le_bytes()]))
            .collect();
        let (mut g, mut c) = (vec![[0u8; 32]; n], vec![[0u8; 32]; n]);
        let never = Cancel::default();
        b.hash_level(&children, &mut g, &never).unwrap();
        CpuBackend.hash_level(&children, &mut c, &never).unwrap();
        assert_eq!(g, c);
        for layers in [2usize, 11] {
            let ls: Vec<&[Node]> = (0..layers)
                .map(|l| &children[l * 1000..l * 1000 + n / 4])
                .collect();
            let (mut g, mut c) = (vec![[0u8; 32]; n / 4], vec![[0u8; 32]; n / 4]);
            b.hash_columns(&ls, &mut g, &never).unwrap();
            CpuBackend.hash_columns(&ls, &mut c, &never).unwrap();
            assert_eq!(g, c, "{layers} layers");
        }
        let (mut g, mut c) = (vec![[0u8; 32]; 4], vec![[0u8; 32]; 4]);
        b.witness_chunk_roots(&[3; 32], 14, 5, &mut g, &never)
            .unwrap();
        CpuBackend
            .witness_chunk_roots(&[3; 32], 14, 5, &mut c, &never)
            .unwrap();
        assert_eq!(g, c);
        // A set flag stops the GPU paths too.
        let stop = Cancel::new();
        stop.cancel();
        assert!(matches!(
            b.hash_level(&children, &mut g, &stop),
            Err(Error::Cancelled)
        ));
        let ls: Vec<&[Node]> = vec![&children[..n], &children[n..2 * n]];
        let mut g = vec![[0u8; 32]; n];
        assert!(matches!(
            b.hash_columns(&ls, &mut g, &stop),
            Err(Error::Cancelled)
        ));
        let mut g = vec![[0u8; 32]; 4];
        assert!(matches!(
            b.witness_chunk_roots(&[3; 32], 14, 5, &mut g, &stop),
            Err(Error::Cancelled)
        ));
    }
}
