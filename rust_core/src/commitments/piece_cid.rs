//! CIDs of Filecoin commitments, as Lotus prints them: CIDv1, base32 lower case with the multibase
//! prefix `b`. The binary form is `varint(1) ‖ varint(codec) ‖ varint(multihash) ‖
//! varint(digest length) ‖ digest`.
//!
//! * commP / commD (v1): codec fil-commitment-unsealed 0xf101, multihash sha2-256-trunc254-padded
//!   0x1012, so every such CID starts `baga6ea4seaq`.
//! * commR: codec fil-commitment-sealed 0xf102, multihash poseidon-bls12_381-a2-fc1 0xb401.
//! * Piece CID v2 (FRC-0069): codec raw 0x55, multihash fr32-sha256-trunc254-padbintree 0x1011
//!   whose digest is `varint(padding) ‖ height ‖ commP`, so the CID carries the piece size too.
//!
//! Decoding checks every field and says which one is wrong.

use data_encoding::BASE32_NOPAD;

use crate::commitments::piece_size::{
    padded_to_unpadded, tree_height, unpadded_size_for, unpadded_to_padded,
};
use crate::error::{Error, Result};
use crate::hash::Node;

const CID_VERSION: u64 = 1;
const FIL_COMMITMENT_UNSEALED: u64 = 0xf101;
const FIL_COMMITMENT_SEALED: u64 = 0xf102;
const SHA2_256_TRUNC254_PADDED: u64 = 0x1012;
const POSEIDON_BLS12_381_A2_FC1: u64 = 0xb401;
const RAW: u64 = 0x55;
const FR32_SHA256_TRUNC254_PADBINTREE: u64 = 0x1011;

/// A v2 piece CID taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceCidV2 {
    pub commp: Node,
    /// Bytes of real data in the piece (before zero-extension).
    pub payload_size: u64,
    /// Padded piece size: `32 << height`.
    pub padded_size: u64,
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads one unsigned varint (minimal form, at most 9 bytes, as multiformats requires).
fn read_varint(bytes: &mut &[u8], field: &str) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let Some((&byte, rest)) = bytes.split_first() else {
            return Err(Error::invalid(format!("CID is truncated in its {field}")));
        };
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(Error::invalid(format!(
                    "CID {field} is not a minimal varint"
                )));
            }
            return Ok(value);
        }
    }
    Err(Error::invalid(format!(
        "CID {field} varint is longer than 9 bytes"
    )))
}

fn node(digest: &[u8], what: &str) -> Result<Node> {
    digest
        .try_into()
        .map_err(|_| Error::invalid(format!("{what} must be 32 bytes, got {}", digest.len())))
}

fn encode(codec: u64, multihash: u64, digest: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(8 + digest.len());
    for value in [CID_VERSION, codec, multihash, digest.len() as u64] {
        push_varint(&mut bytes, value);
    }
    bytes.extend_from_slice(digest);
    format!("b{}", BASE32_NOPAD.encode(&bytes).to_ascii_lowercase())
}

/// Decodes a base32 CIDv1 into (codec, multihash code, digest).
fn decode(cid: &str) -> Result<(u64, u64, Vec<u8>)> {
    let body = match cid.as_bytes().first() {
        Some(b'b') => cid[1..].to_ascii_uppercase(),
        Some(b'B') => cid[1..].to_string(),
        Some(_) => {
            return Err(Error::invalid(format!(
                "CID {cid:?} is not base32: it must start with the multibase prefix 'b'"
            )))
        }
        None => return Err(Error::invalid("CID is empty")),
    };
    let bytes = BASE32_NOPAD
        .decode(body.as_bytes())
        .map_err(|e| Error::invalid(format!("CID {cid:?} is not valid base32: {e}")))?;
    let mut rest = bytes.as_slice();
    let version = read_varint(&mut rest, "version")?;
    if version != CID_VERSION {
        return Err(Error::invalid(format!(
            "CID {cid:?} has version {version}, not 1"
        )));
    }
    let codec = read_varint(&mut rest, "codec")?;
    let multihash = read_varint(&mut rest, "multihash code")?;
    let len = read_varint(&mut rest, "digest length")?;
    if len != rest.len() as u64 {
        return Err(Error::invalid(format!(
            "CID {cid:?} declares a {len}-byte digest but carries {} bytes",
            rest.len()
        )));
    }
    Ok((codec, multihash, rest.to_vec()))
}

fn expect(cid: &str, field: &str, got: u64, want: u64, name: &str) -> Result<()> {
    if got != want {
        return Err(Error::invalid(format!(
            "CID {cid:?} has {field} 0x{got:x}, expected 0x{want:x} ({name})"
        )));
    }
    Ok(())
}

/// Piece CID v1 of a commP (or the CID of a commD, which uses the same codec).
pub fn piece_cid(commp: &[u8]) -> Result<String> {
    let commp = node(commp, "commP")?;
    Ok(encode(
        FIL_COMMITMENT_UNSEALED,
        SHA2_256_TRUNC254_PADDED,
        &commp,
    ))
}

/// The commP inside a piece CID: v1 (fil-commitment-unsealed) or v2 (FRC-0069).
pub fn commp_from_cid(cid: &str) -> Result<Node> {
    let (codec, multihash, digest) = decode(cid)?;
    if codec == RAW {
        return piece_cid_v2_info(cid).map(|info| info.commp);
    }
    expect(
        cid,
        "codec",
        codec,
        FIL_COMMITMENT_UNSEALED,
        "fil-commitment-unsealed",
    )?;
    expect(
        cid,
        "multihash",
        multihash,
        SHA2_256_TRUNC254_PADDED,
        "sha2-256-trunc254-padded",
    )?;
    node(&digest, "the CID's digest")
}

/// CID of a commR.
pub fn sealed_cid(commr: &[u8]) -> Result<String> {
    let commr = node(commr, "commR")?;
    Ok(encode(
        FIL_COMMITMENT_SEALED,
        POSEIDON_BLS12_381_A2_FC1,
        &commr,
    ))
}

/// The commR inside a sealed-sector CID.
pub fn commr_from_cid(cid: &str) -> Result<Node> {
    let (codec, multihash, digest) = decode(cid)?;
    expect(
        cid,
        "codec",
        codec,
        FIL_COMMITMENT_SEALED,
        "fil-commitment-sealed",
    )?;
    expect(
        cid,
        "multihash",
        multihash,
        POSEIDON_BLS12_381_A2_FC1,
        "poseidon-bls12_381-a2-fc1",
    )?;
    node(&digest, "the CID's digest")
}

/// Piece CID v2 of a commP over `payload_size` bytes of data, zero-extended to the smallest
/// piece that holds them.
pub fn piece_cid_v2(commp: &[u8], payload_size: u64) -> Result<String> {
    let commp = node(commp, "commP")?;
    let unpadded = unpadded_size_for(payload_size)?;
    let height = tree_height(unpadded_to_padded(unpadded)?);
    let mut digest = Vec::with_capacity(43);
    push_varint(&mut digest, unpadded - payload_size);
    digest.push(height as u8);
    digest.extend_from_slice(&commp);
    Ok(encode(RAW, FR32_SHA256_TRUNC254_PADBINTREE, &digest))
}

/// Takes a v2 piece CID apart into commP, payload size and padded size.
pub fn piece_cid_v2_info(cid: &str) -> Result<PieceCidV2> {
    let (codec, multihash, digest) = decode(cid)?;
    expect(cid, "codec", codec, RAW, "raw")?;
    let name = "fr32-sha256-trunc254-padbintree";
    expect(
        cid,
        "multihash",
        multihash,
        FR32_SHA256_TRUNC254_PADBINTREE,
        name,
    )?;
    let mut rest = digest.as_slice();
    let padding = read_varint(&mut rest, "padding")?;
    let Some((&height, commp)) = rest.split_first() else {
        return Err(Error::invalid(format!(
            "CID {cid:?} is truncated in its tree height"
        )));
    };
    if !(2..=58).contains(&height) {
        return Err(Error::invalid(format!(
            "CID {cid:?} has tree height {height}, outside 2..=58 (128 B … 2^63 B)"
        )));
    }
    let padded_size = 32u64 << height;
    let unpadded = padded_to_unpadded(padded_size)?;
    if padding > unpadded {
        return Err(Error::invalid(format!(
            "CID {cid:?} has {padding} bytes of padding in a piece of {unpadded} unpadded bytes"
        )));
    }
    Ok(PieceCidV2 {
        commp: node(commp, "the CID's root")?,
        payload_size: unpadded - padding,
        padded_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZERO_128: &str = "baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy";

    #[test]
    fn v1_round_trip() {
        let commp = commp_from_cid(ZERO_128).unwrap_or_default();
        assert_eq!(commp[..2], [0x37, 0x31]);
        assert_eq!(piece_cid(&commp).ok().as_deref(), Some(ZERO_128));
        assert_eq!(
            commp_from_cid(&ZERO_128.to_ascii_uppercase()).ok(),
            Some(commp)
        );
    }

    #[test]
    fn sealed_round_trip_and_prefix() {
        let commr = [9u8; 32];
        let cid = sealed_cid(&commr).unwrap_or_default();
        assert!(cid.starts_with("bagboea4b5abc"), "{cid}");
        assert_eq!(commr_from_cid(&cid).ok(), Some(commr));
        let msg = commp_from_cid(&cid)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("codec 0xf102"), "{msg}");
        assert!(commr_from_cid(ZERO_128).is_err());
    }

    #[test]
    fn rejects_malformed() {
        let short = encode(
            FIL_COMMITMENT_UNSEALED,
            SHA2_256_TRUNC254_PADDED,
            &[0u8; 31],
        );
        let mut lying = Vec::new();
        for v in [1, FIL_COMMITMENT_UNSEALED, SHA2_256_TRUNC254_PADDED, 32] {
            push_varint(&mut lying, v);
        }
        lying.extend_from_slice(&[0u8; 16]);
        let lying = format!("b{}", BASE32_NOPAD.encode(&lying).to_ascii_lowercase());
        let bad = [
            ("", "empty"),
            ("zabc", "multibase"),
            ("b1111", "base32"),
            (&ZERO_128[..40], "base32"),
            (short.as_str(), "32 bytes, got 31"),
            (lying.as_str(), "declares a 32-byte digest but carries 16"),
            ("bafkqaaa", "multihash 0x0"),
        ];
        for (cid, want) in bad {
            let msg = commp_from_cid(cid)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(msg.contains(want), "{cid}: {msg}");
        }
        assert!(piece_cid(&[0u8; 31]).is_err());
    }

    #[test]
    fn varints() {
        let mut v = Vec::new();
        push_varint(&mut v, 0xf101);
        assert_eq!(v, [0x81, 0xe2, 0x03]);
        let mut s: &[u8] = &[0x80, 0x00];
        assert!(read_varint(&mut s, "x").is_err());
    }
}
