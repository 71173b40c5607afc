//! Decomposition of SO(d) into Givens angles and back, alignment of vectors,
//! reachable dimensions, and every error case, for `f32` and `f64`.
//!
//! Targets (`u` the unit roundoff of the type under test):
//! * `norm(R(theta) - Q)_F <= 4 u d` for Haar-random `Q`, `d <= 64`, and for
//!   the special matrices of `d <= 3`;
//! * `norm(R x - y) <= 4 u sqrt(d) norm(x)` for `align`;
//! * reachable dimension `d - 1` (chain, tree) and `d (d - 1) / 2` (full).

use num_traits::{Float, FloatConst, One, Zero};
use proptest::prelude::*;
use qgoft_math::decompose::{
    align, align_with_tolerance, decompose, decompose_into, decompose_with, param_from_angle, params_from_angles,
    params_from_matrix, reachable_dimension, rebuild, rebuild_into, workspace_len, DecomposeOptions,
};
use qgoft_math::{AngleMap, Error, Layout, Real, RotationBuf};

/// SplitMix64 with Box-Muller Gaussians.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn gaussian(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Haar-random orthogonal `d x d` (row-major, f64): Gram-Schmidt twice on
/// the columns of a Gaussian matrix, which is the QR factorization with a
/// positive diagonal of R (the sign fix).
fn haar_o(d: usize, rng: &mut Rng) -> Vec<f64> {
    let mut cols: Vec<Vec<f64>> = (0..d).map(|_| (0..d).map(|_| rng.gaussian()).collect()).collect();
    for j in 0..d {
        for _ in 0..2 {
            for k in 0..j {
                let p: f64 = (0..d).map(|i| cols[k][i] * cols[j][i]).sum();
                let (done, rest) = cols.split_at_mut(j);
                rest[0].iter_mut().zip(&done[k]).for_each(|(v, w)| *v -= p * w);
            }
        }
        let n = cols[j].iter().map(|v| v * v).sum::<f64>().sqrt();
        cols[j].iter_mut().for_each(|v| *v /= n);
    }
    let mut q = vec![0.0; d * d];
    for (j, col) in cols.iter().enumerate() {
        for i in 0..d {
            q[i * d + j] = col[i];
        }
    }
    q
}

/// Sign of the determinant by LU with partial pivoting.
fn det_sign(q: &[f64], d: usize) -> f64 {
    let mut a = q.to_vec();
    let mut sign = 1.0;
    for k in 0..d {
        let p = (k..d).max_by(|&x, &y| a[x * d + k].abs().total_cmp(&a[y * d + k].abs())).unwrap();
        if a[p * d + k] == 0.0 {
            return 0.0;
        }
        if p != k {
            for j in 0..d {
                a.swap(p * d + j, k * d + j);
            }
            sign = -sign;
        }
        if a[k * d + k] < 0.0 {
            sign = -sign;
        }
        for i in k + 1..d {
            let f = a[i * d + k] / a[k * d + k];
            for j in k..d {
                a[i * d + j] -= f * a[k * d + j];
            }
        }
    }
    sign
}

/// Haar-random in SO(d): the first column negated when det = -1.
fn haar_so(d: usize, rng: &mut Rng) -> Vec<f64> {
    let mut q = haar_o(d, rng);
    if det_sign(&q, d) < 0.0 {
        for i in 0..d {
            q[i * d] = -q[i * d];
        }
    }
    q
}

/// `norm(Q^T Q - I)_F` in f64.
fn orth_err(q: &[f64], d: usize) -> f64 {
    let mut s = 0.0;
    for a in 0..d {
        for b in 0..d {
            let g: f64 = (0..d).map(|i| q[i * d + a] * q[i * d + b]).sum::<f64>() - if a == b { 1.0 } else { 0.0 };
            s += g * g;
        }
    }
    s.sqrt()
}

/// The signed permutation matrices of size `d`.
fn signed_permutations(d: usize) -> Vec<Vec<f64>> {
    fn perms(d: usize) -> Vec<Vec<usize>> {
        if d == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in perms(d - 1) {
            for pos in 0..d {
                let mut q = p.clone();
                q.insert(pos, d - 1);
                out.push(q);
            }
        }
        out
    }
    let mut out = Vec::new();
    for p in perms(d) {
        for signs in 0..(1u32 << d) {
            let mut m = vec![0.0; d * d];
            for (i, &j) in p.iter().enumerate() {
                m[i * d + j] = if signs >> i & 1 == 1 { -1.0 } else { 1.0 };
            }
            out.push(m);
        }
    }
    out
}

/// Worst margin, relative to `norm(x)^2`, by which a layout's rotations can
/// produce their finished coordinates (negative: unreachable), in f64.
fn reach_margin(layout: Layout, x: &[f64], y: &[f64]) -> f64 {
    let d = x.len();
    let n2: f64 = x.iter().map(|v| v * v).sum();
    let sq = |v: &[f64], r: std::ops::Range<usize>| v[r].iter().map(|a| a * a).sum::<f64>();
    if d == 1 {
        return if (x[0] - y[0]).abs() <= 1e-9 * n2.sqrt() { 1.0 } else { -1.0 };
    }
    let mut worst = f64::INFINITY;
    match layout {
        Layout::Chain => {
            // plane k finishes k: norm(x_0..=k+1)^2 >= norm(y_0..=k)^2, k <= d - 3
            for k in 0..d - 2 {
                worst = worst.min(sq(x, 0..k + 2) - sq(y, 0..k + 1));
            }
        }
        _ => {
            let stages = Layout::Tree.num_stages(d);
            for (s, st) in Layout::Tree.stages(d).enumerate() {
                if s + 1 == stages {
                    break;
                }
                for p in st.planes() {
                    let end = (p.i + 2 * st.gap).min(d);
                    worst = worst.min(sq(x, p.i..end) - (sq(y, p.i..end) - y[p.i] * y[p.i]));
                }
            }
        }
    }
    worst / n2.max(f64::MIN_POSITIVE)
}

macro_rules! decompose_tests {
    ($name:ident, $t:ty) => {
        mod $name {
            use super::*;

            type T = $t;

            fn u() -> f64 {
                <T as Real>::UNIT_ROUNDOFF.to_f64()
            }

            fn cast(v: &[f64]) -> Vec<T> {
                v.iter().map(|&x| T::from_f64(x)).collect()
            }

            fn dist(a: &[T], b: &[T]) -> f64 {
                a.iter().zip(b).map(|(x, y)| (x.to_f64() - y.to_f64()).powi(2)).sum::<f64>().sqrt()
            }

            /// Decompose, rebuild, and return `norm(R - Q)_F / (u d)`.
            fn round_trip(q: &[T], d: usize) -> f64 {
                let angles = decompose(Layout::Full, q, d).unwrap();
                let r = rebuild(Layout::Full, &angles, d).unwrap();
                dist(&r, q) / (u() * d as f64)
            }

            /// `F R` with `F = diag(1, .., 1, -1)`.
            fn reflect_last_row(mut r: Vec<T>, d: usize) -> Vec<T> {
                r[(d - 1) * d..].iter_mut().for_each(|v| *v = -*v);
                r
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(48))]

                #[test]
                fn haar_round_trip_within_4ud(d in 1usize..=64, seed in any::<u64>()) {
                    let q = cast(&haar_so(d, &mut Rng(seed)));
                    let e = round_trip(&q, d);
                    prop_assert!(e <= 4.0, "d={} norm(R - Q)_F = {:.3} u d", d, e);
                    // The generic application of the same angles agrees as well.
                    let angles = decompose(Layout::Full, &q, d).unwrap();
                    let dense = RotationBuf::from_angles(Layout::Full, d, AngleMap::Raw, &angles, None)
                        .unwrap()
                        .to_dense();
                    let e2 = dist(&dense, &q) / (u() * d as f64);
                    prop_assert!(e2 <= 4.0, "d={} to_dense: {:.3} u d", d, e2);
                    prop_assert!(angles.iter().all(|a| a.abs() <= T::PI()));
                }

                #[test]
                fn parallel_order_is_bitwise_the_sequential_one(d in 1usize..=40, seed in any::<u64>()) {
                    let q = cast(&haar_so(d, &mut Rng(seed)));
                    let seq = decompose(Layout::Full, &q, d).unwrap();
                    let par = decompose(Layout::FullParallel, &q, d).unwrap();
                    for (p, a) in par.iter().enumerate() {
                        let k = Layout::FullParallel.sequential_index(d, p);
                        prop_assert_eq!(a.to_bits(), seq[k].to_bits());
                    }
                    let r_seq = rebuild(Layout::Full, &seq, d).unwrap();
                    let r_par = rebuild(Layout::FullParallel, &par, d).unwrap();
                    prop_assert!(r_seq.iter().zip(&r_par).all(|(a, b)| a.to_bits() == b.to_bits()));
                    let dense = |l, a: &[T]| RotationBuf::from_angles(l, d, AngleMap::Raw, a, None).unwrap().to_dense();
                    let (ds, dp) = (dense(Layout::Full, &seq), dense(Layout::FullParallel, &par));
                    prop_assert!(ds.iter().zip(&dp).all(|(a, b)| a.to_bits() == b.to_bits()));
                }

                #[test]
                fn reflection_is_an_error_or_factored_out(d in 1usize..=32, seed in any::<u64>()) {
                    let mut q64 = haar_so(d, &mut Rng(seed));
                    for i in 0..d {
                        q64[i * d] = -q64[i * d]; // det = -1
                    }
                    let q = cast(&q64);
                    match decompose(Layout::Full, &q, d) {
                        Err(Error::NotSpecialOrthogonal { det }) => prop_assert!((det + 1.0).abs() < 1e-3, "det {}", det),
                        other => prop_assert!(false, "expected NotSpecialOrthogonal, got {:?}", other),
                    }
                    let opts = DecomposeOptions { allow_reflection: true, ..Default::default() };
                    let dec = decompose_with(Layout::Full, &q, d, &opts).unwrap();
                    prop_assert!(dec.reflected);
                    let fr = reflect_last_row(rebuild(Layout::Full, &dec.angles, d).unwrap(), d);
                    let e = dist(&fr, &q) / (u() * d as f64);
                    prop_assert!(e <= 4.0, "d={} norm(F R - Q)_F = {:.3} u d", d, e);
                    // A rotation says so too.
                    let dec = decompose_with(Layout::Full, &cast(&haar_so(d, &mut Rng(!seed))), d, &opts).unwrap();
                    prop_assert!(!dec.reflected);
                }

                #[test]
                fn non_orthogonal_input_reports_its_error(d in 1usize..=24, seed in any::<u64>(), eps in 1e-3f64..0.2) {
                    let mut rng = Rng(seed);
                    let mut q64 = haar_so(d, &mut rng);
                    let (i, j) = ((rng.next_u64() % d as u64) as usize, (rng.next_u64() % d as u64) as usize);
                    q64[i * d + j] += eps;
                    let q = cast(&q64);
                    let measured = orth_err(&q.iter().map(|v| v.to_f64()).collect::<Vec<_>>(), d);
                    match decompose(Layout::Full, &q, d) {
                        Err(Error::NotOrthogonal { error, tolerance }) => {
                            prop_assert!(error > tolerance);
                            prop_assert!((error - measured).abs() <= 1e-3 * measured, "{} vs {}", error, measured);
                        }
                        other => prop_assert!(false, "expected NotOrthogonal, got {:?}", other),
                    }
                    // With a tolerance above the measured error it decomposes,
                    // and reports about that error.
                    let tol = (2.0 * measured).min(0.99);
                    if measured < 0.4 {
                        let opts = DecomposeOptions { tolerance: Some(T::from_f64(tol)), allow_reflection: true };
                        let dec = decompose_with(Layout::Full, &q, d, &opts).unwrap();
                        let got = dec.orthogonality_error.to_f64();
                        prop_assert!((got - measured).abs() <= 0.1 * measured, "{} vs {}", got, measured);
                    }
                }

                #[test]
                fn non_finite_entries_are_named(d in 1usize..=16, seed in any::<u64>(), k in any::<prop::sample::Index>(), inf in any::<bool>()) {
                    let mut q = cast(&haar_so(d, &mut Rng(seed)));
                    let idx = k.index(d * d);
                    q[idx] = if inf { T::neg_infinity() } else { T::nan() };
                    match decompose(Layout::Full, &q, d) {
                        Err(Error::NonFinite { index, .. }) => prop_assert_eq!(index, idx),
                        other => prop_assert!(false, "expected NonFinite, got {:?}", other),
                    }
                }

                #[test]
                fn pitanh_parameters_reproduce_the_matrix(d in 1usize..=24, seed in any::<u64>()) {
                    let q = cast(&haar_so(d, &mut Rng(seed)));
                    for map in [AngleMap::Raw, AngleMap::PiTanh] {
                        let p = params_from_matrix(Layout::Full, map, &q, d).unwrap();
                        let r = RotationBuf::from_angles(Layout::Full, d, map, &p, None).unwrap().to_dense();
                        let e = dist(&r, &q) / (u() * d as f64);
                        prop_assert!(e <= 8.0, "{:?} d={} {:.3} u d", map, d, e);
                    }
                }

                #[test]
                fn align_reaches_targets_in_the_orbit(d in 1usize..=64, seed in any::<u64>(), tree in any::<bool>()) {
                    // y = R(phi) x for random phi is reachable by construction.
                    let layout = if tree { Layout::Tree } else { Layout::Chain };
                    let mut rng = Rng(seed);
                    let x64: Vec<f64> = (0..d).map(|_| rng.gaussian()).collect();
                    let x = cast(&x64);
                    let phi: Vec<f64> = (0..layout.num_rotations(d)).map(|_| (2.0 * rng.uniform() - 1.0) * 3.1).collect();
                    let mut y64: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
                    RotationBuf::from_angles(layout, d, AngleMap::Raw, &phi, None).unwrap().as_rotation().apply(&mut y64).unwrap();
                    check_align_within(layout, &x, &cast(&y64), if tree { 4.0 } else { 8.0 })?;
                }

                #[test]
                fn align_to_the_root_axis_always_works(d in 1usize..=64, seed in any::<u64>(), tree in any::<bool>(), neg in any::<bool>()) {
                    let layout = if tree { Layout::Tree } else { Layout::Chain };
                    let mut rng = Rng(seed);
                    let x64: Vec<f64> = (0..d).map(|_| rng.gaussian()).collect();
                    let n = x64.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let root = if tree { 0 } else { d - 1 };
                    let mut y64 = vec![0.0; d];
                    // In d = 1 nothing moves: y = x is the only target.
                    y64[root] = if d == 1 { x64[0] } else if neg { -n } else { n };
                    check_align(layout, &cast(&x64), &cast(&y64))?;
                    if !tree {
                        // ... and the chain spreads norm(y) e_0 onto any y.
                        let y64: Vec<f64> = (0..d).map(|_| rng.gaussian()).collect();
                        let n = y64.iter().map(|v| v * v).sum::<f64>().sqrt();
                        let mut x64 = vec![0.0; d];
                        x64[0] = if d == 1 { y64[0] } else { n };
                        check_align_within(layout, &cast(&x64), &cast(&y64), 8.0)?;
                    }
                }

                #[test]
                fn align_random_pairs_succeed_exactly_when_reachable(d in 1usize..=12, seed in any::<u64>(), tree in any::<bool>()) {
                    let layout = if tree { Layout::Tree } else { Layout::Chain };
                    let mut rng = Rng(seed);
                    let x64: Vec<f64> = (0..d).map(|_| rng.gaussian()).collect();
                    let x = cast(&x64);
                    let nx = x.iter().map(|v| v.to_f64().powi(2)).sum::<f64>().sqrt();
                    let g: Vec<f64> = (0..d).map(|_| rng.gaussian()).collect();
                    let ng = g.iter().map(|v| v * v).sum::<f64>().sqrt();
                    let y = cast(&g.iter().map(|v| v * nx / ng).collect::<Vec<_>>());
                    let xs: Vec<f64> = x.iter().map(|v| v.to_f64()).collect();
                    let ys: Vec<f64> = y.iter().map(|v| v.to_f64()).collect();
                    let margin = reach_margin(layout, &xs, &ys);
                    if margin > 1e-3 {
                        check_align_within(layout, &x, &y, if tree { 4.0 } else { 8.0 })?;
                    } else if margin < -1e-3 {
                        let mut a = vec![T::zero(); layout.num_rotations(d)];
                        let e = align(layout, &x, &y, &mut a);
                        prop_assert!(matches!(e, Err(Error::Unreachable { .. })), "margin {} gave {:?}", margin, e);
                    }
                }
            }

            /// `align` succeeds and `norm(R x - y) <= c u sqrt(d) norm(x)`.
            fn check_align(layout: Layout, x: &[T], y: &[T]) -> Result<(), TestCaseError> {
                check_align_within(layout, x, y, 4.0)
            }

            fn check_align_within(layout: Layout, x: &[T], y: &[T], c: f64) -> Result<(), TestCaseError> {
                let d = x.len();
                let mut angles = vec![T::zero(); layout.num_rotations(d)];
                align(layout, x, y, &mut angles).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                let mut v = x.to_vec();
                RotationBuf::from_angles(layout, d, AngleMap::Raw, &angles, None)
                    .unwrap()
                    .as_rotation()
                    .apply(&mut v)
                    .unwrap();
                let nx = x.iter().map(|a| a.to_f64().powi(2)).sum::<f64>().sqrt();
                let err = dist(&v, y);
                let bound = c * u() * (d as f64).sqrt() * nx;
                prop_assert!(err <= bound, "{:?} d={} norm(R x - y) = {:.3} u sqrt(d) norm(x)", layout, d, err / bound * c);
                Ok(())
            }

            #[test]
            fn haar_survey_max_error() {
                // A deterministic sweep, printed for the record (--nocapture).
                let mut worst: f64 = 0.0;
                for d in (1..=64).step_by(3).chain([63, 64]) {
                    for seed in 0..4u64 {
                        let q = cast(&haar_so(d, &mut Rng(seed * 1000 + d as u64)));
                        worst = worst.max(round_trip(&q, d));
                    }
                }
                println!("{}: max norm(R(theta) - Q)_F over Haar d <= 64 = {:.3} u d (target 4)", stringify!($t), worst);
                assert!(worst <= 4.0, "{worst}");
            }

            #[test]
            fn special_matrices_of_small_dimension() {
                let opts = DecomposeOptions { allow_reflection: true, ..Default::default() };
                let mut worst: f64 = 0.0;
                // Identity, -I (even d), every signed permutation.
                for d in 1..=3usize {
                    for m in signed_permutations(d) {
                        let q = cast(&m);
                        let det = det_sign(&m, d);
                        if det > 0.0 {
                            worst = worst.max(round_trip(&q, d));
                        } else {
                            assert!(matches!(decompose(Layout::Full, &q, d), Err(Error::NotSpecialOrthogonal { det }) if det == -1.0));
                            let dec = decompose_with(Layout::Full, &q, d, &opts).unwrap();
                            assert!(dec.reflected);
                            let fr = reflect_last_row(rebuild(Layout::Full, &dec.angles, d).unwrap(), d);
                            worst = worst.max(dist(&fr, &q) / (u() * d as f64));
                        }
                    }
                }
                let minus_i = cast(&[-1.0, 0.0, 0.0, -1.0]);
                assert!(round_trip(&minus_i, 2) <= 4.0);
                // Rotations with tiny, subnormal, zero, right and straight angles:
                // intermediate norms near zero, angles near +-pi.
                let tiny = T::min_positive_value().to_f64();
                let vals = [0.0, 1e-30, -1e-30, tiny, -3.0 * tiny, 1e-7, 1.0, core::f64::consts::FRAC_PI_2, -core::f64::consts::FRAC_PI_2, core::f64::consts::PI, 1e-4 - core::f64::consts::PI];
                for d in 2..=3usize {
                    let n = Layout::Full.num_rotations(d);
                    let mut idx = vec![0usize; n];
                    loop {
                        let angles: Vec<T> = idx.iter().map(|&i| T::from_f64(vals[i])).collect();
                        let q = rebuild(Layout::Full, &angles, d).unwrap();
                        worst = worst.max(round_trip(&q, d));
                        // Also a signed permutation times the rotation.
                        for m in signed_permutations(d).iter().step_by(5) {
                            let mut pq = vec![T::zero(); d * d];
                            for i in 0..d {
                                for j in 0..d {
                                    pq[i * d + j] = (0..d).map(|k| T::from_f64(m[i * d + k]) * q[k * d + j]).fold(T::zero(), |a, b| a + b);
                                }
                            }
                            let dec = decompose_with(Layout::Full, &pq, d, &opts).unwrap();
                            let mut r = rebuild(Layout::Full, &dec.angles, d).unwrap();
                            if dec.reflected {
                                r = reflect_last_row(r, d);
                            }
                            worst = worst.max(dist(&r, &pq) / (u() * d as f64));
                        }
                        let mut k = 0;
                        while k < n && idx[k] + 1 == vals.len() {
                            idx[k] = 0;
                            k += 1;
                        }
                        if k == n {
                            break;
                        }
                        idx[k] += 1;
                    }
                }
                println!("{}: max error over the special matrices of d <= 3 = {:.3} u d (target 4)", stringify!($t), worst);
                assert!(worst <= 4.0, "{worst}");
            }

            #[test]
            fn rebuild_of_chain_and_tree_is_the_dense_rotation() {
                let mut rng = Rng(5);
                for d in 1..=20usize {
                    for layout in [Layout::Chain, Layout::Tree] {
                        let a: Vec<T> = (0..layout.num_rotations(d)).map(|_| T::from_f64(rng.gaussian())).collect();
                        let r = rebuild(layout, &a, d).unwrap();
                        let dense = RotationBuf::from_angles(layout, d, AngleMap::Raw, &a, None).unwrap().to_dense();
                        assert_eq!(r, dense, "{layout:?} d={d}");
                    }
                }
            }

            #[test]
            fn decompose_error_cases() {
                let d = 3;
                let q = cast(&haar_so(d, &mut Rng(1)));
                let opts = DecomposeOptions::<T>::default();
                let inv = |r: Result<Vec<T>, Error>| matches!(r, Err(Error::InvalidArgument { .. }));
                assert!(inv(decompose(Layout::Full, &[], 0)));
                assert!(inv(decompose(Layout::Chain, &q, d)));
                assert!(inv(decompose(Layout::Tree, &q, d)));
                assert!(matches!(
                    decompose(Layout::Full, &q[..8], d),
                    Err(Error::ShapeMismatch { expected: 9, found: 8, .. })
                ));
                for bad in [-1e-3, 1.0, 2.0, f64::NAN, f64::INFINITY] {
                    let o = DecomposeOptions { tolerance: Some(T::from_f64(bad)), allow_reflection: false };
                    assert!(
                        matches!(decompose_with(Layout::Full, &q, d, &o), Err(Error::InvalidArgument { .. })),
                        "tolerance {bad}"
                    );
                }
                let mut angles = vec![T::zero(); 3];
                let mut work = vec![T::zero(); workspace_len(d) - 1];
                assert!(matches!(
                    decompose_into(Layout::Full, &q, d, &opts, &mut angles, &mut work),
                    Err(Error::ShapeMismatch { .. })
                ));
                let mut work = vec![T::zero(); workspace_len(d)];
                assert!(matches!(
                    decompose_into(Layout::Full, &q, d, &opts, &mut angles[..2], &mut work),
                    Err(Error::ShapeMismatch { expected: 3, found: 2, .. })
                ));
                decompose_into(Layout::Full, &q, d, &opts, &mut angles, &mut work).unwrap();
                // Far from orthogonal, huge entries, zero matrix: NotOrthogonal with the measured error.
                for m in [vec![T::from_f64(1e30); 9], vec![T::zero(); 9], cast(&[2.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0])] {
                    match decompose(Layout::Full, &m, d) {
                        Err(Error::NotOrthogonal { error, tolerance }) => assert!(error > tolerance && error >= 1.0, "{error}"),
                        other => panic!("expected NotOrthogonal, got {other:?}"),
                    }
                }
                // Tolerance 0 rejects a rounded Haar matrix, a loose one accepts a slightly skewed one.
                let o0 = DecomposeOptions { tolerance: Some(T::zero()), allow_reflection: false };
                assert!(matches!(decompose_with(Layout::Full, &q, d, &o0), Err(Error::NotOrthogonal { .. })));
                let mut skew = q.clone();
                skew[4] += T::from_f64(1e-4);
                assert!(decompose(Layout::Full, &skew, d).is_err());
                let loose = DecomposeOptions { tolerance: Some(T::from_f64(1e-3)), allow_reflection: false };
                assert!(decompose_with(Layout::Full, &skew, d, &loose).is_ok());
                let msg = decompose(Layout::Full, &skew, d).unwrap_err().to_string();
                assert!(msg.contains("not orthogonal"), "{msg}");
            }

            #[test]
            fn rebuild_error_cases() {
                assert!(matches!(rebuild::<T>(Layout::Full, &[], 0), Err(Error::InvalidArgument { .. })));
                assert!(matches!(
                    rebuild::<T>(Layout::Full, &[T::zero(); 2], 3),
                    Err(Error::ShapeMismatch { expected: 3, found: 2, .. })
                ));
                assert!(matches!(
                    rebuild::<T>(Layout::Tree, &[T::zero(), T::nan()], 3),
                    Err(Error::NonFinite { index: 1, .. })
                ));
                let mut out = vec![T::zero(); 9];
                let mut work = vec![T::zero(); 3];
                assert!(matches!(
                    rebuild_into(Layout::Full, &[T::zero(); 3], 3, &mut out, &mut work),
                    Err(Error::ShapeMismatch { .. })
                ));
                let mut work = vec![T::zero(); 24];
                assert!(matches!(
                    rebuild_into(Layout::Full, &[T::zero(); 3], 3, &mut out[..8], &mut work),
                    Err(Error::ShapeMismatch { expected: 9, found: 8, .. })
                ));
            }

            #[test]
            fn parameter_inverse_cases() {
                let pi = T::PI();
                for map in [AngleMap::Raw, AngleMap::PiTanh] {
                    for theta in [0.0, 0.5, -1.0, 3.0, -3.1] {
                        let t = T::from_f64(theta);
                        let p = param_from_angle(map, t).unwrap();
                        assert!((map.angle(p) - t).abs() <= T::from_f64(8.0) * <T as Real>::UNIT_ROUNDOFF * pi, "{map:?} {theta}");
                    }
                    assert_eq!(map.angle(param_from_angle(map, pi).unwrap()), pi);
                    assert_eq!(map.angle(param_from_angle(map, -pi).unwrap()), -pi);
                    assert!(matches!(param_from_angle(map, T::nan()), Err(Error::NonFinite { .. })));
                }
                assert!(matches!(
                    param_from_angle(AngleMap::PiTanh, T::from_f64(3.2)),
                    Err(Error::InvalidArgument { value, .. }) if (value - 3.2).abs() < 1e-6
                ));
                assert_eq!(param_from_angle(AngleMap::Raw, T::from_f64(7.0)).unwrap(), T::from_f64(7.0));
                let mut p = vec![T::zero(); 2];
                assert!(matches!(params_from_angles(AngleMap::Raw, &[T::zero(); 3], &mut p), Err(Error::ShapeMismatch { .. })));
                assert!(matches!(
                    params_from_angles(AngleMap::PiTanh, &[T::zero(), T::infinity()], &mut p),
                    Err(Error::NonFinite { index: 1, .. })
                ));
                let flip = cast(&[1.0, 0.0, 0.0, -1.0]);
                assert!(matches!(
                    params_from_matrix(Layout::Full, AngleMap::PiTanh, &flip, 2),
                    Err(Error::NotSpecialOrthogonal { .. })
                ));
            }

            #[test]
            fn align_error_cases() {
                let one = T::one();
                let z = T::zero();
                let mut a3 = vec![z; 3];
                // The tree of d = 4 never moves e_0 onto e_3, the chain never e_3 onto e_0.
                assert!(matches!(
                    align(Layout::Tree, &[one, z, z, z], &[z, z, z, one], &mut a3),
                    Err(Error::Unreachable { index: 3, .. })
                ));
                assert!(matches!(
                    align(Layout::Chain, &[z, z, z, one], &[one, z, z, z], &mut a3),
                    Err(Error::Unreachable { index: 0, .. })
                ));
                // ... and no angles do it: coordinate 3 of R e_0 is always zero for the tree.
                let mut rng = Rng(3);
                for _ in 0..20 {
                    let phi: Vec<T> = (0..3).map(|_| T::from_f64(rng.gaussian())).collect();
                    let mut v = vec![one, z, z, z];
                    RotationBuf::from_angles(Layout::Tree, 4, AngleMap::Raw, &phi, None).unwrap().as_rotation().apply(&mut v).unwrap();
                    assert_eq!(v[3], z);
                }
                // d = 1: nothing moves, a sign change is unreachable.
                assert!(matches!(align(Layout::Chain, &[one], &[-one], &mut []), Err(Error::Unreachable { index: 0, .. })));
                align(Layout::Tree, &[one], &[one], &mut []).unwrap();
                let two = one + one;
                assert!(matches!(
                    align(Layout::Chain, &[one, z, z, z], &[z, two, z, z], &mut a3),
                    Err(Error::NormMismatch { left, right }) if left == 1.0 && right == 2.0
                ));
                assert!(matches!(align(Layout::Full, &[one, z], &[z, one], &mut [z]), Err(Error::InvalidArgument { .. })));
                assert!(matches!(align::<T>(Layout::Chain, &[], &[], &mut []), Err(Error::InvalidArgument { .. })));
                assert!(matches!(align(Layout::Chain, &[one, z], &[z], &mut [z]), Err(Error::ShapeMismatch { .. })));
                assert!(matches!(align(Layout::Chain, &[one, z], &[z, one], &mut a3), Err(Error::ShapeMismatch { .. })));
                assert!(matches!(
                    align(Layout::Chain, &[one, T::nan()], &[z, one], &mut [z]),
                    Err(Error::NonFinite { index: 1, .. })
                ));
                assert!(matches!(
                    align(Layout::Chain, &[one, z], &[T::infinity(), one], &mut [z]),
                    Err(Error::NonFinite { index: 0, .. })
                ));
                assert!(matches!(
                    align_with_tolerance(Layout::Chain, &[one, z], &[z, one], -one, &mut [z]),
                    Err(Error::InvalidArgument { .. })
                ));
                // A loose tolerance accepts a small mismatch.
                let y = [z, T::from_f64(1.001)];
                assert!(matches!(align(Layout::Chain, &[one, z], &y, &mut [z]), Err(Error::NormMismatch { .. })));
                align_with_tolerance(Layout::Chain, &[one, z], &y, T::from_f64(0.01), &mut [z]).unwrap();
                let msg = align(Layout::Tree, &[one, z, z, z], &[z, z, z, one], &mut a3).unwrap_err().to_string();
                assert!(msg.contains("coordinate 3"), "{msg}");
            }

            #[cfg(feature = "nalgebra")]
            #[test]
            fn nalgebra_matches_row_major() {
                use qgoft_math::decompose::{decompose_dmatrix, rebuild_dmatrix};
                for d in [1usize, 2, 5, 17] {
                    let q = cast(&haar_so(d, &mut Rng(d as u64)));
                    let m = nalgebra::DMatrix::from_row_slice(d, d, &q);
                    let dec = decompose_dmatrix(Layout::FullParallel, &m, &DecomposeOptions::default()).unwrap();
                    let rows = decompose(Layout::FullParallel, &q, d).unwrap();
                    assert!(dec.angles.iter().zip(&rows).all(|(a, b)| a.to_bits() == b.to_bits()));
                    let back = rebuild_dmatrix(Layout::FullParallel, &dec.angles, d).unwrap();
                    let r = rebuild(Layout::FullParallel, &rows, d).unwrap();
                    assert_eq!(back, nalgebra::DMatrix::from_row_slice(d, d, &r));
                }
                let rect = nalgebra::DMatrix::<T>::zeros(2, 3);
                assert!(matches!(
                    decompose_dmatrix(Layout::Full, &rect, &DecomposeOptions::default()),
                    Err(Error::ShapeMismatch { .. })
                ));
            }
        }
    };
}

#[test]
fn reachable_dimensions() {
    // chain and tree: d - 1; full (both orders): d (d - 1) / 2 = dim SO(d).
    for d in 2..=24usize {
        let full = d * (d - 1) / 2;
        for (layout, want) in
            [(Layout::Chain, d - 1), (Layout::Tree, d - 1), (Layout::Full, full), (Layout::FullParallel, full)]
        {
            let got = reachable_dimension(layout, d, 7 + d as u64).unwrap();
            assert_eq!(got, want, "{layout:?} d={d}");
        }
    }
    assert_eq!(reachable_dimension(Layout::Full, 1, 0).unwrap(), 0);
    assert!(matches!(reachable_dimension(Layout::Tree, 0, 0), Err(Error::InvalidArgument { .. })));
}

decompose_tests!(f32_tests, f32);
decompose_tests!(f64_tests, f64);
