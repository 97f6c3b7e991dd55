//! The sector sizes this backend serves and their registered proof types.
//!
//! Sealing uses the V1_1 proofs (the ones Lotus seals with before synthetic/non-interactive PoRep)
//! and Window PoSt the V1_2 ones (the grinding fix), as on the network.

use filecoin_proofs_api::{RegisteredPoStProof, RegisteredSealProof};

use crate::error::{Error, Result};

pub const SIZE_2KIB: u64 = 2 << 10;
pub const SIZE_8MIB: u64 = 8 << 20;
pub const SIZE_512MIB: u64 = 512 << 20;
pub const SIZE_32GIB: u64 = 32 << 30;
pub const SIZE_64GIB: u64 = 64 << 30;

/// The sizes this backend accepts: the test sizes and the network's production sizes. Only
/// memory, disk, time and the network's parameter files stand between a 32/64 GiB sector and
/// this backend (a 32 GiB PC1 wants about 64 GiB of RAM and 450 GiB of disk).
pub const SUPPORTED: [u64; 5] = [SIZE_2KIB, SIZE_8MIB, SIZE_512MIB, SIZE_32GIB, SIZE_64GIB];

/// The largest size whose Groth16 parameters may be generated here: random parameters are for
/// tests, and the production circuits' would take days and hundreds of GB to generate.
pub const LARGEST_GENERATED: u64 = SIZE_512MIB;

fn unsupported(size: u64) -> Error {
    Error::Invalid(format!(
        "unsupported sector size {size} for the filecoin backend: expected 2048 (2 KiB), 8388608 (8 MiB), 536870912 (512 MiB), 34359738368 (32 GiB) or 68719476736 (64 GiB)"
    ))
}

pub fn seal_proof(sector_size: u64) -> Result<RegisteredSealProof> {
    match sector_size {
        SIZE_2KIB => Ok(RegisteredSealProof::StackedDrg2KiBV1_1),
        SIZE_8MIB => Ok(RegisteredSealProof::StackedDrg8MiBV1_1),
        SIZE_512MIB => Ok(RegisteredSealProof::StackedDrg512MiBV1_1),
        SIZE_32GIB => Ok(RegisteredSealProof::StackedDrg32GiBV1_1),
        SIZE_64GIB => Ok(RegisteredSealProof::StackedDrg64GiBV1_1),
        _ => Err(unsupported(sector_size)),
    }
}

pub fn window_post_proof(sector_size: u64) -> Result<RegisteredPoStProof> {
    match sector_size {
        SIZE_2KIB => Ok(RegisteredPoStProof::StackedDrgWindow2KiBV1_2),
        SIZE_8MIB => Ok(RegisteredPoStProof::StackedDrgWindow8MiBV1_2),
        SIZE_512MIB => Ok(RegisteredPoStProof::StackedDrgWindow512MiBV1_2),
        SIZE_32GIB => Ok(RegisteredPoStProof::StackedDrgWindow32GiBV1_2),
        SIZE_64GIB => Ok(RegisteredPoStProof::StackedDrgWindow64GiBV1_2),
        _ => Err(unsupported(sector_size)),
    }
}

pub fn winning_post_proof(sector_size: u64) -> Result<RegisteredPoStProof> {
    match sector_size {
        SIZE_2KIB => Ok(RegisteredPoStProof::StackedDrgWinning2KiBV1),
        SIZE_8MIB => Ok(RegisteredPoStProof::StackedDrgWinning8MiBV1),
        SIZE_512MIB => Ok(RegisteredPoStProof::StackedDrgWinning512MiBV1),
        SIZE_32GIB => Ok(RegisteredPoStProof::StackedDrgWinning32GiBV1),
        SIZE_64GIB => Ok(RegisteredPoStProof::StackedDrgWinning64GiBV1),
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
/// five are instantiated, which keeps the build shorter than the library's `with_shape!`), or
/// returns `Error::Invalid` for another size.
#[macro_export]
macro_rules! with_sizes {
    ($size:expr, $f:ident $(, $args:expr)* $(,)?) => {
        match $size {
            $crate::sizes::SIZE_2KIB => Ok($f::<filecoin_proofs::constants::SectorShape2KiB>($($args),*)),
            $crate::sizes::SIZE_8MIB => Ok($f::<filecoin_proofs::constants::SectorShape8MiB>($($args),*)),
            $crate::sizes::SIZE_512MIB => Ok($f::<filecoin_proofs::constants::SectorShape512MiB>($($args),*)),
            $crate::sizes::SIZE_32GIB => Ok($f::<filecoin_proofs::constants::SectorShape32GiB>($($args),*)),
            $crate::sizes::SIZE_64GIB => Ok($f::<filecoin_proofs::constants::SectorShape64GiB>($($args),*)),
            other => Err($crate::error::Error::Invalid(format!("unsupported sector size {other} for the filecoin backend"))),
        }
    };
}

/// `with_sizes!` over the sizes whose parameters may be generated (up to LARGEST_GENERATED):
/// the generation code is not instantiated for the production shapes.
#[macro_export]
macro_rules! with_generated_sizes {
    ($size:expr, $f:ident $(, $args:expr)* $(,)?) => {
        match $size {
            $crate::sizes::SIZE_2KIB => Ok($f::<filecoin_proofs::constants::SectorShape2KiB>($($args),*)),
            $crate::sizes::SIZE_8MIB => Ok($f::<filecoin_proofs::constants::SectorShape8MiB>($($args),*)),
            $crate::sizes::SIZE_512MIB => Ok($f::<filecoin_proofs::constants::SectorShape512MiB>($($args),*)),
            other => Err($crate::error::Error::Invalid(format!(
                "parameters for {} sectors are not generated here: copy the network's files into the parameter cache",
                $crate::sizes::human(other)
            ))),
        }
    };
}
