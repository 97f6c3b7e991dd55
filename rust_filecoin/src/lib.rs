//! sectorstorage's optional real Filecoin proofs backend (docs/filecoin-backend.md).
//!
//! Thin modules over `filecoin-proofs-api` (CPU only): `seal` (AddPiece to VerifySeal, unseal),
//! `post` (Window/Winning PoSt), `params` (the Groth16 parameter cache, and local generation for
//! test sizes), `blob` (the backend tag on every blob), `sizes` (supported sector sizes),
//! `faults` (CheckProvable's proofs), `layout` (the tree-r-last files a sealed sector's cache holds).
//! `python` (feature `python`) converts types and maps errors for the Python module.

pub mod blob;
pub mod error;
pub mod faults;
pub mod layout;
pub mod params;
pub mod post;
pub mod seal;
pub mod sizes;

#[cfg(feature = "python")]
mod python;
