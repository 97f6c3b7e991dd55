//! Inputs for the crate's tests: deterministic pseudo-random bytes (xorshift64), so a failing
//! case replays from its seed.

pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
