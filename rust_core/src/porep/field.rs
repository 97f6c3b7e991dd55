//! Addition and subtraction in the BLS12-381 scalar field, the only field arithmetic the
//! encoding needs (replica = data + key, data = replica − key).
//!
//! Elements are 32-byte little-endian integers, as Filecoin stores them. Hand-rolled on four u64
//! limbs: two operations do not justify a pairing-curve dependency, and the code is short enough
//! to check against the definition in the unit tests.

use crate::hash::Node;

/// r = 0x73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001, little-endian limbs.
pub const MODULUS: [u64; 4] = [
    0xffff_ffff_0000_0001,
    0x53bd_a402_fffe_5bfe,
    0x3339_d808_09a1_d805,
    0x73ed_a753_299d_7d48,
];

fn limbs(x: &Node) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (limb, chunk) in out.iter_mut().zip(x.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(word);
    }
    out
}

fn bytes(x: &[u64; 4]) -> Node {
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_exact_mut(8).zip(x.iter()) {
        chunk.copy_from_slice(&limb.to_le_bytes());
    }
    out
}

/// `a - b` over 256 bits; returns the difference and whether it borrowed.
fn sub_limbs(a: &[u64; 4], b: &[u64; 4]) -> ([u64; 4], bool) {
    let mut out = [0u64; 4];
    let mut borrow = false;
    for i in 0..4 {
        let (d1, b1) = a[i].overflowing_sub(b[i]);
        let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
        out[i] = d2;
        borrow = b1 || b2;
    }
    (out, borrow)
}

fn add_limbs(a: &[u64; 4], b: &[u64; 4]) -> ([u64; 4], bool) {
    let mut out = [0u64; 4];
    let mut carry = false;
    for i in 0..4 {
        let (s1, c1) = a[i].overflowing_add(b[i]);
        let (s2, c2) = s1.overflowing_add(u64::from(carry));
        out[i] = s2;
        carry = c1 || c2;
    }
    (out, carry)
}

/// True when the 32 bytes are a canonical field element (integer < r).
pub fn is_canonical(x: &Node) -> bool {
    sub_limbs(&limbs(x), &MODULUS).1
}

/// `(a + b) mod r`; both inputs must be canonical (callers check untrusted ones first).
pub fn add(a: &Node, b: &Node) -> Node {
    // a, b < r < 2^255, so the sum fits in 256 bits without a carry out.
    let (sum, _) = add_limbs(&limbs(a), &limbs(b));
    let (reduced, borrow) = sub_limbs(&sum, &MODULUS);
    bytes(if borrow { &sum } else { &reduced })
}

/// `(a - b) mod r`; both inputs must be canonical.
pub fn sub(a: &Node, b: &Node) -> Node {
    let (diff, borrow) = sub_limbs(&limbs(a), &limbs(b));
    if borrow {
        bytes(&add_limbs(&diff, &MODULUS).0)
    } else {
        bytes(&diff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_u64(v: u64) -> Node {
        let mut n = [0u8; 32];
        n[..8].copy_from_slice(&v.to_le_bytes());
        n
    }

    fn r_minus(v: u64) -> Node {
        bytes(&sub_limbs(&MODULUS, &limbs(&from_u64(v))).0)
    }

    #[test]
    fn modulus_bytes_match_the_published_hex() {
        let hex: String = bytes(&MODULUS)
            .iter()
            .rev()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "73eda753299d7d483339d80809a1d80553bda402fffe5bfeffffffff00000001"
        );
    }

    #[test]
    fn small_values_add_and_sub_like_integers() {
        assert_eq!(add(&from_u64(2), &from_u64(3)), from_u64(5));
        assert_eq!(sub(&from_u64(5), &from_u64(3)), from_u64(2));
    }

    #[test]
    fn wraps_around_the_modulus() {
        // (r - 1) + 2 = 1, 1 - 2 = r - 1.
        assert_eq!(add(&r_minus(1), &from_u64(2)), from_u64(1));
        assert_eq!(sub(&from_u64(1), &from_u64(2)), r_minus(1));
        assert_eq!(sub(&from_u64(0), &r_minus(1)), from_u64(1));
    }

    #[test]
    fn canonical_boundary() {
        assert!(is_canonical(&r_minus(1)));
        assert!(!is_canonical(&bytes(&MODULUS)));
        assert!(!is_canonical(&[0xff; 32]));
        assert!(is_canonical(&[0u8; 32]));
    }

    #[test]
    fn add_then_sub_round_trips_on_trimmed_values() {
        let mut a = [0xffu8; 32];
        a[31] = 0x3f;
        let mut b = [0xa5u8; 32];
        b[31] = 0x3a;
        let s = add(&a, &b);
        assert!(is_canonical(&s));
        assert_eq!(sub(&s, &b), a);
        assert_eq!(sub(&s, &a), b);
    }
}
