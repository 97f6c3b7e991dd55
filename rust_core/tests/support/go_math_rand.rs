//! Go's `math/rand` source (`rand.New(rand.NewSource(seed))`, the Go 1 stream), rebuilt to produce
//! the inputs of lotus' sealer tests (`TestAddPiece512M` reads its piece from seed 0x7e5).
//!
//! The generator is an additive lagged Fibonacci one over 64-bit words: `s[n] = s[n-607] +
//! s[n-273]`. Seeding mixes a Lehmer sequence with a fixed table, `rngCooked`, which Go defines as
//! the state after 7.8e12 steps from its seed-1 state (Go's `gen_cooked.go`). Rather than carry that
//! table, it is recomputed here: the recurrence is linear, so 7.8e12 steps are the polynomial
//! `x^7.8e12 mod (x^607 - x^334 - 1)`, some sixty polynomial products. The vectors directory holds
//! the first 2032 bytes of the seed-0x7e5 stream, which checks all of it.

const LEN: usize = 607;
const TAP: usize = 273;
const INT32_MAX: i64 = (1 << 31) - 1;
/// Steps from the seed-1 state to Go's `rngCooked` table.
const COOKED_STEPS: u64 = 7_800_000_000_000;

/// `x[n+1] = 48271 · x[n] mod (2^31 - 1)` (Schrage's method, as Go computes it).
fn seedrand(x: i32) -> i32 {
    const A: i32 = 48271;
    const Q: i32 = 44488;
    const R: i32 = 3399;
    let (hi, lo) = (x / Q, x % Q);
    let x = A * lo - R * hi;
    if x < 0 {
        x + INT32_MAX as i32
    } else {
        x
    }
}

/// The 607 seeded words before mixing with the table; `shifts` are 40/20 for `Seed` and 20/10
/// for the generator of the table itself.
fn seed_words(seed: i64, shifts: (u32, u32)) -> [u64; LEN] {
    let mut seed = seed % INT32_MAX;
    if seed < 0 {
        seed += INT32_MAX;
    }
    if seed == 0 {
        seed = 89_482_311;
    }
    let mut x = seed as i32;
    let mut words = [0u64; LEN];
    for i in -20..LEN as i32 {
        x = seedrand(x);
        if i >= 0 {
            let mut u = (x as u64) << shifts.0;
            x = seedrand(x);
            u ^= (x as u64) << shifts.1;
            x = seedrand(x);
            u ^= x as u64;
            words[i as usize] = u;
        }
    }
    words
}

/// `a · b mod (x^607 - x^334 - 1)`, coefficients mod 2^64.
fn mul_mod(a: &[u64; LEN], b: &[u64; LEN]) -> [u64; LEN] {
    let mut prod = vec![0u64; 2 * LEN - 1];
    for (i, &ai) in a.iter().enumerate().filter(|(_, &ai)| ai != 0) {
        for (j, &bj) in b.iter().enumerate() {
            prod[i + j] = prod[i + j].wrapping_add(ai.wrapping_mul(bj));
        }
    }
    // x^d = x^(d-607) · (x^334 + 1) = x^(d-273) + x^(d-607).
    for d in (LEN..2 * LEN - 1).rev() {
        let c = prod[d];
        prod[d - TAP] = prod[d - TAP].wrapping_add(c);
        prod[d - LEN] = prod[d - LEN].wrapping_add(c);
    }
    let mut out = [0u64; LEN];
    out.copy_from_slice(&prod[..LEN]);
    out
}

/// The generator's ring after `steps` steps from `ring` (with tap 0, feed 334 at the start, as
/// after seeding). In sequence form the ring holds `s[j]` at index `(334 - j) mod 607`, with the
/// seeded words as `s[-606..=0]`.
fn advance(ring: &[u64; LEN], steps: u64) -> [u64; LEN] {
    let at = |j: i64| (334 - j).rem_euclid(LEN as i64) as usize;
    let start: Vec<u64> = (0..LEN as i64).map(|t| ring[at(t - 606)]).collect();
    let mut power = [0u64; LEN];
    power[0] = 1;
    let mut base = [0u64; LEN];
    base[1] = 1;
    let mut n = steps;
    while n > 0 {
        if n & 1 == 1 {
            power = mul_mod(&power, &base);
        }
        n >>= 1;
        if n > 0 {
            base = mul_mod(&base, &base);
        }
    }
    let mut out = [0u64; LEN];
    let mut coeffs = power;
    for i in 0..LEN as i64 {
        let j = steps as i64 - 606 + i;
        out[at(j)] = coeffs
            .iter()
            .zip(&start)
            .fold(0u64, |acc, (c, s)| acc.wrapping_add(c.wrapping_mul(*s)));
        // coeffs ← coeffs · x mod P.
        let top = coeffs[LEN - 1];
        coeffs.copy_within(0..LEN - 1, 1);
        coeffs[0] = top;
        coeffs[LEN - TAP] = coeffs[LEN - TAP].wrapping_add(top);
    }
    out
}

/// Go's `rngCooked`.
pub fn cooked() -> [u64; LEN] {
    advance(&seed_words(1, (20, 10)), COOKED_STEPS)
}

/// `rand.New(rand.NewSource(seed))` as far as `Read` goes.
pub struct GoRand {
    vec: [u64; LEN],
    tap: usize,
    feed: usize,
    read_val: u64,
    read_pos: u8,
}

impl GoRand {
    pub fn new(seed: i64) -> Self {
        Self::with_cooked(seed, &cooked())
    }

    pub fn with_cooked(seed: i64, cooked: &[u64; LEN]) -> Self {
        let mut vec = seed_words(seed, (40, 20));
        for (v, c) in vec.iter_mut().zip(cooked) {
            *v ^= c;
        }
        GoRand {
            vec,
            tap: 0,
            feed: LEN - TAP,
            read_val: 0,
            read_pos: 0,
        }
    }

    fn int63(&mut self) -> u64 {
        self.tap = (self.tap + LEN - 1) % LEN;
        self.feed = (self.feed + LEN - 1) % LEN;
        let x = self.vec[self.feed].wrapping_add(self.vec[self.tap]);
        self.vec[self.feed] = x;
        x & (u64::MAX >> 1)
    }

    /// `Rand.Read`: seven bytes of each `Int63`, low byte first, continuing across calls.
    pub fn read(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.read_pos == 0 {
                self.read_val = self.int63();
                self.read_pos = 7;
            }
            *b = self.read_val as u8;
            self.read_val >>= 8;
            self.read_pos -= 1;
        }
    }
}
