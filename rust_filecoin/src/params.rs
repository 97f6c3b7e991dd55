//! Groth16 parameters: where they live, and generating them locally for test sizes.
//!
//! In production the parameters and verifying keys come from the network's trusted setup
//! (downloaded from IPFS by `paramfetch`). Nothing outside the package registries is reachable
//! here, so for small sectors this module can generate *random* parameters for a circuit and
//! store them in the cache under the file names the library looks up. Proofs made and checked
//! with them are real Groth16 proofs of the real circuits, but they are NOT verifiable by the
//! network (docs/filecoin-backend.md).
//!
//! The proofs library itself never generates: `filecoin-proofs`' caches.rs asks
//! `CompoundProof::groth_params` with `rng = None`, and storage-proofs-core's parameter_cache.rs
//! then fails with "No cached parameters found". Generation is what `paramcache` in
//! rust-fil-proofs does: the same call with an RNG, which writes the `.params` and `.vk` files.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fs2::FileExt;

use filecoin_proofs::constants::DefaultPieceHasher;
use filecoin_proofs::parameters::{
    public_params, window_post_public_params, winning_post_public_params,
};
use filecoin_proofs::{MerkleTreeTrait, PoStType};
use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};
use rand::rngs::OsRng;
use storage_proofs_core::compound_proof::CompoundProof;
use storage_proofs_core::parameter_cache::parameter_cache_dir;
use storage_proofs_porep::stacked::{StackedCompound, StackedDrg};
use storage_proofs_post::fallback::{FallbackPoSt, FallbackPoStCircuit, FallbackPoStCompound};

use crate::error::{Error, Result};
use crate::sizes;

/// Largest sector size whose parameters may be generated here (0: never). Set by `configure`.
static GENERATE_UP_TO: AtomicU64 = AtomicU64::new(0);
/// One generation at a time in this process (the library locks the files across processes).
static GENERATING: Mutex<()> = Mutex::new(());

/// A circuit whose parameters a call needs.
#[derive(Clone, Copy, Debug)]
pub enum Circuit {
    Seal(RegisteredSealProof),
    Post(RegisteredPoStProof),
}

impl Circuit {
    pub fn sector_size(self) -> u64 {
        match self {
            Circuit::Seal(p) => u64::from(p.sector_size()),
            Circuit::Post(p) => u64::from(p.sector_size()),
        }
    }

    pub fn name(self) -> String {
        match self {
            Circuit::Seal(p) => format!("{p:?}"),
            Circuit::Post(p) => format!("{p:?}"),
        }
    }

    pub fn params_path(self) -> Result<PathBuf> {
        Ok(match self {
            Circuit::Seal(p) => p.cache_params_path()?,
            Circuit::Post(p) => p.cache_params_path()?,
        })
    }

    pub fn verifying_key_path(self) -> Result<PathBuf> {
        Ok(match self {
            Circuit::Seal(p) => p.cache_verifying_key_path()?,
            Circuit::Post(p) => p.cache_verifying_key_path()?,
        })
    }
}

/// Points the library at a parameter cache (FIL_PROOFS_PARAMETER_CACHE) and its SDR parents
/// cache (FIL_PROOFS_PARENT_CACHE), and sets the generation policy. The library reads its settings
/// once per process, at its first use: a later call asking for another directory is refused
/// instead of silently ignored. Returns the parameter cache in use.
pub fn configure(
    parameter_cache: Option<&Path>,
    parent_cache: Option<&Path>,
    generate_up_to: u64,
) -> Result<PathBuf> {
    for (var, dir) in [
        ("FIL_PROOFS_PARAMETER_CACHE", parameter_cache),
        ("FIL_PROOFS_PARENT_CACHE", parent_cache),
    ] {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Invalid(format!(
                    "cannot create {var} directory {}: {e}",
                    dir.display()
                ))
            })?;
            // Start-up only: the library reads it when its settings are first used.
            std::env::set_var(var, dir);
        }
    }
    let in_use = parameter_cache_dir();
    if let Some(dir) = parameter_cache {
        if in_use != dir {
            return Err(Error::Invalid(format!(
                "the proofs library already uses the parameter cache {} in this process; it cannot switch to {}",
                in_use.display(),
                dir.display()
            )));
        }
    }
    GENERATE_UP_TO.store(generate_up_to, Ordering::SeqCst);
    Ok(in_use)
}

pub fn generate_up_to() -> u64 {
    GENERATE_UP_TO.load(Ordering::SeqCst)
}

/// Makes sure the files a call needs exist: the parameters for proving (`proving = true`),
/// else the verifying key (which the library can also derive from the parameters). Generates
/// them when the policy allows this size; otherwise a one-line error naming the file.
/// Returns how long generation took, if it ran.
///
/// The library writes a generated file in place, so a process killed while generating (the
/// worker kills the child process of a stopped task) would leave a truncated `.params` that
/// every later load fails on. Generation is therefore bracketed by a `<params>.partial` marker
/// and runs under a cross-process lock (`<params>.lock`): whoever finds the marker with the
/// lock free knows the writer died, removes the remains and generates again.
pub fn ensure(circuit: Circuit, proving: bool) -> Result<Option<Duration>> {
    let params = circuit.params_path()?;
    let vk = circuit.verifying_key_path()?;
    let marker = sibling(&params, "partial");
    let present = if proving {
        params.exists()
    } else {
        vk.exists() || params.exists()
    };
    if present && !marker.exists() {
        return Ok(None);
    }
    let size = circuit.sector_size();
    if size > generate_up_to() || size > sizes::LARGEST_GENERATED {
        if marker.exists() && !generation_running(&params)? {
            return Err(Error::IncompleteParameters {
                path: params,
                marker,
                circuit: circuit.name(),
                size: sizes::human(size),
            });
        }
        let (what, path) = if proving {
            ("parameters", params)
        } else {
            ("verifying key", vk)
        };
        return Err(Error::MissingParameters {
            what,
            path,
            circuit: circuit.name(),
            size: sizes::human(size),
        });
    }
    let _guard = GENERATING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let lock = lock_file(&params)?;
    lock.lock_exclusive()?;
    if marker.exists() {
        // The lock is ours, so whoever wrote the marker is gone: what it wrote is incomplete.
        for path in [&params, &vk, &marker] {
            remove_if_present(path)?;
        }
    } else if params.exists() {
        return Ok(None);
    }
    std::fs::File::create(&marker)?.sync_all()?;
    let start = Instant::now();
    generate(circuit)?;
    for path in [&params, &vk] {
        std::fs::File::open(path)?.sync_all()?;
    }
    std::fs::remove_file(&marker)?;
    Ok(Some(start.elapsed()))
}

/// `<file>.<suffix>` beside `file`.
fn sibling(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn lock_file(params: &Path) -> Result<std::fs::File> {
    let path = sibling(params, "lock");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    Ok(std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?)
}

/// Whether another process holds the generation lock of `params` right now.
fn generation_running(params: &Path) -> Result<bool> {
    let lock = lock_file(params)?;
    match lock.try_lock_exclusive() {
        // Closing the file (dropping it) releases the lock just taken.
        Ok(()) => Ok(false),
        Err(_) => Ok(true),
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Random (NOT the network's) Groth16 parameters and verifying key for `circuit`, written to the
/// parameter cache.
pub fn generate(circuit: Circuit) -> Result<()> {
    match circuit {
        Circuit::Seal(proof) => {
            crate::with_generated_sizes!(circuit.sector_size(), generate_seal, proof)?
        }
        Circuit::Post(proof) => {
            crate::with_generated_sizes!(circuit.sector_size(), generate_post, proof)?
        }
    }
    .map_err(Error::from)
}

fn generate_seal<Tree: 'static + MerkleTreeTrait>(
    proof: RegisteredSealProof,
) -> anyhow::Result<()> {
    let pp = public_params::<Tree>(&proof.as_v1_config())?;
    type Compound<T> = StackedCompound<T, DefaultPieceHasher>;
    <Compound<Tree> as CompoundProof<StackedDrg<'_, Tree, DefaultPieceHasher>, _>>::groth_params(
        Some(&mut OsRng),
        &pp,
    )?;
    // Derived from the parameters just written (the RNG is not used when they exist).
    <Compound<Tree> as CompoundProof<StackedDrg<'_, Tree, DefaultPieceHasher>, _>>::verifying_key(
        Some(&mut OsRng),
        &pp,
    )?;
    Ok(())
}

fn generate_post<Tree: 'static + MerkleTreeTrait>(
    proof: RegisteredPoStProof,
) -> anyhow::Result<()> {
    let config = proof.as_v1_config();
    let pp = match config.typ {
        PoStType::Window => window_post_public_params::<Tree>(&config)?,
        PoStType::Winning => winning_post_public_params::<Tree>(&config)?,
    };
    <FallbackPoStCompound<Tree> as CompoundProof<
        FallbackPoSt<'_, Tree>,
        FallbackPoStCircuit<Tree>,
    >>::groth_params(Some(&mut OsRng), &pp)?;
    <FallbackPoStCompound<Tree> as CompoundProof<
        FallbackPoSt<'_, Tree>,
        FallbackPoStCircuit<Tree>,
    >>::verifying_key(Some(&mut OsRng), &pp)?;
    Ok(())
}
