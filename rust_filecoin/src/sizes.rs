//! The sector sizes this backend serves and their registered proof types.
//!
//! Sealing uses the V1_1 proofs (the ones Lotus seals with before synthetic/non-interactive PoRep)
//! and Window PoSt the V1_2 ones (the grinding fix), as on the network.

use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};

use crate::error::{Error, Result};

pub const SIZE_2KIB: u64 = 2 << 10;
pub const SIZE_8MIB: u64 = 8 << 20;
pub const SIZE_512MIB: u64 = 512 << 20;

/// The sizes this backend accepts (the larger production sizes need the network's parameters
/// and hardware this project does not target yet).
pub const SUPPORTED: [u64; 3] = [SIZE_2KIB, SIZE_8MIB, SIZE_512MIB];

fn unsupported(size: u64) -> Error {
    Error::Invalid(format!(
        "unsupported sector size {size} for the filecoin backend: expected 2048 (2 KiB), 8388608 (8 MiB) or 536870912 (512 MiB)"
    ))
}

pub fn seal_proof(sector_size: u64) -> Result<RegisteredSealProof> {
    match sector_size {
        SIZE_2KIB => Ok(RegisteredSealProof::StackedDrg2KiBV1_1),
        SIZE_8MIB => Ok(RegisteredSealProof::StackedDrg8MiBV1_1),
        SIZE_512MIB => Ok(RegisteredSealProof::StackedDrg512MiBV1_1),
        _ => Err(unsupported(sector_size)),
    }
}

pub fn window_post_proof(sector_size: u64) -> Result<RegisteredPoStProof> {
    match sector_size {
        SIZE_2KIB => Ok(RegisteredPoStProof::StackedDrgWindow2KiBV1_2),
        SIZE_8MIB => Ok(RegisteredPoStProof::StackedDrgWindow8MiBV1_2),
        SIZE_512MIB => Ok(RegisteredPoStProof::StackedDrgWindow512MiBV1_2),
        _ => Err(unsupported(sector_size)),
    }
}

pub fn winning_post_proof(sector_size: u64) -> Result<RegisteredPoStProof> {
    match sector_size {
        SIZE_2KIB => Ok(RegisteredPoStProof::StackedDrgWinning2KiBV1),
        SIZE_8MIB => Ok(RegisteredPoStProof::StackedDrgWinning8MiBV1),
        SIZE_512MIB => Ok(RegisteredPoStProof::StackedDrgWinning512MiBV1),
        _ => Err(unsupported(sector_size)),
    }
}

/// "2 KiB", "8 MiB", "512 MiB": for messages.
pub fn human(sector_size: u64) -> String {
    match sector_size {
        s if s >= 1 << 30 && s % (1 << 30) == 0 => format!("{} GiB", s >> 30),
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1 << 10 && s % (1 << 10) == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} bytes"),
    }
}

/// Calls `$f::<Shape>(args...)` with the tree shape of one of the supported sizes (only those
/// three are instantiated, which keeps the build shorter than the library's `with_shape!`), or
/// returns `Error::Invalid` for another size.
#[macro_export]
macro_rules! with_sizes {
    ($size:expr, $f:ident $(, $args:expr)* $(,)?) => {
        match $size {
            $crate::sizes::SIZE_2KIB => Ok($f::<filecoin_proofs::constants::SectorShape2KiB>($($args),*)),
            $crate::sizes::SIZE_8MIB => Ok($f::<filecoin_proofs::constants::SectorShape8MiB>($($args),*)),
            $crate::sizes::SIZE_512MIB => Ok($f::<filecoin_proofs::constants::SectorShape512MiB>($($args),*)),
            other => Err($crate::error::Error::Invalid(format!("unsupported sector size {other} for the filecoin backend"))),
        }
    };
}
