//! A small seeded random number generator (xoshiro256++).
//!
//! Every random choice in the crate (initialisation, shuffling, dropout,
//! splits) draws from [`Rng`], so a run is bit-reproducible for a given seed
//! (and, where GEMM is threaded, a given thread count).

/// xoshiro256++ by Blackman and Vigna, seeded through SplitMix64.
///
/// ```
/// use qgoft_nn::Rng;
/// let mut a = Rng::new(7);
/// let mut b = Rng::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let u = a.uniform(-1.0, 1.0);
/// assert!((-1.0..1.0).contains(&u));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// The generator's internal state, for checkpoints.
    ///
    /// ```
    /// use qgoft_nn::Rng;
    /// let mut a = Rng::new(3);
    /// a.next_u64();
    /// let mut b = Rng::from_state(a.state())?;
    /// assert_eq!(a.next_u64(), b.next_u64());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// A generator resumed from [`Rng::state`].
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] for the all-zero state, which
    /// xoshiro256++ never reaches and cannot leave.
    pub fn from_state(s: [u64; 4]) -> crate::Result<Rng> {
        if s == [0; 4] {
            return Err(crate::Error::invalid("generator state", "all zero"));
        }
        Ok(Rng { s })
    }

    /// A generator whose whole stream is determined by `seed`.
    ///
    /// ```
    /// let mut r = qgoft_nn::Rng::new(0);
    /// assert_ne!(r.next_u64(), r.next_u64());
    /// ```
    pub fn new(seed: u64) -> Self {
        let mut st = seed;
        let s = [splitmix64(&mut st), splitmix64(&mut st), splitmix64(&mut st), splitmix64(&mut st)];
        Rng { s }
    }

    /// A new independent generator derived from this one (advances `self`).
    ///
    /// ```
    /// let mut r = qgoft_nn::Rng::new(1);
    /// let mut child = r.fork();
    /// assert_ne!(child.next_u64(), r.next_u64());
    /// ```
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }

    /// The next 64 random bits.
    ///
    /// ```
    /// let _bits = qgoft_nn::Rng::new(3).next_u64();
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform `f32` in `[0, 1)` with 24 random bits.
    ///
    /// ```
    /// let u = qgoft_nn::Rng::new(3).next_f32();
    /// assert!((0.0..1.0).contains(&u));
    /// ```
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    ///
    /// ```
    /// let u = qgoft_nn::Rng::new(3).next_f64();
    /// assert!((0.0..1.0).contains(&u));
    /// ```
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform `f32` in `[lo, hi)`.
    ///
    /// ```
    /// let x = qgoft_nn::Rng::new(3).uniform(2.0, 3.0);
    /// assert!((2.0..3.0).contains(&x));
    /// ```
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let x = lo + (hi - lo) * self.next_f32();
        if x < hi { x } else { lo }
    }

    /// A standard normal sample (Box-Muller, computed in `f64`).
    ///
    /// ```
    /// let mut r = qgoft_nn::Rng::new(5);
    /// let mean: f32 = (0..4000).map(|_| r.normal()).sum::<f32>() / 4000.0;
    /// assert!(mean.abs() < 0.1);
    /// ```
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// A uniform integer in `0..n` (Lemire's multiply-shift, unbiased).
    ///
    /// # Panics
    /// If `n == 0`.
    ///
    /// ```
    /// assert!(qgoft_nn::Rng::new(9).below(10) < 10);
    /// ```
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below needs n > 0");
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as usize;
            }
        }
    }

    /// Shuffles `xs` in place (Fisher-Yates).
    ///
    /// ```
    /// let mut v: Vec<usize> = (0..10).collect();
    /// qgoft_nn::Rng::new(2).shuffle(&mut v);
    /// let mut sorted = v.clone();
    /// sorted.sort();
    /// assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    /// ```
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_different_seed_differs() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(43);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut r = Rng::new(11);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[r.below(5)] += 1;
        }
        for &c in &counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn normal_has_unit_variance() {
        let mut r = Rng::new(12);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| f64::from(r.normal())).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    }
}
