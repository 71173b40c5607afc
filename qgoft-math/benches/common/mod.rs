//! Helpers shared by the benchmarks: timing, deterministic data, rotations.

use std::time::Instant;

use qgoft_math::{AngleMap, Layout, Real, RotationBuf};

/// Best wall time of `reps` runs of `f` after one warm-up run, in seconds.
pub fn best(reps: usize, f: impl FnMut()) -> f64 {
    best_for(reps, 0.0, f)
}

/// Best wall time of `f` (after one warm-up run) over at least `reps` runs
/// and at least `secs` seconds, in seconds: for runs of a millisecond or
/// less, where a fixed count would leave the best to a fraction of a
/// second.
pub fn best_for(reps: usize, secs: f64, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < reps || start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    best
}

/// `len` values in `[-0.5, 0.5)` from a linear congruential sequence.
pub fn data<T: Real>(len: usize, seed: u64) -> Vec<T> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            T::from_f64((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        })
        .collect()
}

/// A strict rotation of the layout with deterministic `pi * tanh` angles.
pub fn rotation<T: Real>(layout: Layout, d: usize) -> RotationBuf<T> {
    let params = data::<T>(layout.num_rotations(d), 1);
    RotationBuf::from_angles(layout, d, AngleMap::PiTanh, &params, None).expect("rotation")
}
