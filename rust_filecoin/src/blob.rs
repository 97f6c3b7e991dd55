//! The backend tag on every blob that travels between processes (phase-1 output, C1 output,
//! seal proof, PoSt proof): a 4-byte ASCII magic and a u16 version, like the emulated backend's
//! blobs (docs/porep-emulation.md §8), with magics of its own. A blob of the other backend is
//! recognised by its magic and refused with `Error::BackendMismatch`, so a fleet that mixes
//! backends fails loudly instead of "proof invalid".

use crate::error::{Error, Result};

pub const VERSION: u16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Phase1,
    Commit1,
    SealProof,
    PostProof,
    VanillaProof,
}

impl Kind {
    pub fn magic(self) -> &'static [u8; 4] {
        match self {
            Kind::Phase1 => b"FCP1",
            Kind::Commit1 => b"FCC1",
            Kind::SealProof => b"FCPF",
            Kind::PostProof => b"FCPT",
            Kind::VanillaProof => b"FCPV",
        }
    }

    /// The emulated backend's magic for the same blob (rust_core/src/porep).
    fn emulated_magic(self) -> &'static [u8; 4] {
        match self {
            Kind::Phase1 => b"SSP1",
            Kind::Commit1 => b"SSC1",
            Kind::SealProof => b"SSPF",
            Kind::PostProof => b"SSPT",
            Kind::VanillaProof => b"SSPV",
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            Kind::Phase1 => "phase-1 (PC1) output",
            Kind::Commit1 => "commit phase-1 (C1) output",
            Kind::SealProof => "seal proof",
            Kind::PostProof => "PoSt proof",
            Kind::VanillaProof => "vanilla PoSt proof",
        }
    }
}

pub fn wrap(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + payload.len());
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a blob of this backend; `BackendMismatch` for the emulated backend's blob,
/// `Invalid` for anything else.
pub fn unwrap(kind: Kind, blob: &[u8]) -> Result<&[u8]> {
    if blob.len() >= 4 && &blob[..4] == kind.emulated_magic() {
        return Err(Error::BackendMismatch {
            what: kind.what(),
            found: "emulated",
        });
    }
    if blob.len() < 6 || &blob[..4] != kind.magic() {
        return Err(Error::Invalid(format!(
            "not a filecoin-backend {}: expected it to start with {:?}",
            kind.what(),
            String::from_utf8_lossy(kind.magic())
        )));
    }
    let version = u16::from_le_bytes([blob[4], blob[5]]);
    if version != VERSION {
        return Err(Error::Invalid(format!(
            "{} version {version} is not supported (expected {VERSION})",
            kind.what()
        )));
    }
    Ok(&blob[6..])
}

/// Which backend made a blob, from its first bytes: "filecoin", "emulated" or None.
pub fn backend_of(blob: &[u8]) -> Option<&'static str> {
    let kinds = [
        Kind::Phase1,
        Kind::Commit1,
        Kind::SealProof,
        Kind::PostProof,
        Kind::VanillaProof,
    ];
    let head = blob.get(..4)?;
    if kinds.iter().any(|k| head == k.magic()) {
        Some("filecoin")
    } else if kinds.iter().any(|k| head == k.emulated_magic()) {
        Some("emulated")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let blob = wrap(Kind::Phase1, b"{}");
        assert_eq!(unwrap(Kind::Phase1, &blob).ok(), Some(&b"{}"[..]));
        assert!(matches!(
            unwrap(Kind::Commit1, &blob),
            Err(Error::Invalid(_))
        ));
        let emulated = b"SSP1\x01\x00rest";
        assert!(matches!(
            unwrap(Kind::Phase1, emulated),
            Err(Error::BackendMismatch {
                found: "emulated",
                ..
            })
        ));
        assert_eq!(backend_of(emulated), Some("emulated"));
        assert_eq!(backend_of(&blob), Some("filecoin"));
        assert_eq!(backend_of(b"xx"), None);
        let mut v2 = blob.clone();
        v2[4] = 2;
        assert!(matches!(unwrap(Kind::Phase1, &v2), Err(Error::Invalid(_))));
    }
}
