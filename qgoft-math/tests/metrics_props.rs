//! Properties of the metrics against closed forms and dense computations,
//! for f32 and f64.

mod common;

use common::*;
use qgoft_math::Layout;

const ALL: &[Layout] = &[Layout::Chain, Layout::Tree, Layout::Full, Layout::FullParallel];

/// Number of stages of disjoint planes.
fn depth(layout: Layout, d: usize) -> f64 {
    let l = if layout == Layout::Full { Layout::FullParallel } else { layout };
    l.num_stages(d).max(1) as f64
}

macro_rules! metrics_props {
    ($name:ident, $t:ty) => {
        mod $name {
            use super::*;
            use proptest::prelude::*;
            use qgoft_math::metrics::{determinant_sign, max_cosine_change, orthogonality_error, penalty};
            use qgoft_math::{AngleMap, Block, Rotation, RotationBuf};
            type T = $t;

            fn u() -> f64 {
                to64(<T as qgoft_math::Real>::UNIT_ROUNDOFF)
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(cases(256)))]

                /// `penalty = sum (a b + c e)^2` to the rounding of its terms
                /// (each `g = a b + c e` carries up to `2u (|a b| + |c e|)`)
                /// and of the pairwise sum.
                #[test]
                fn penalty_matches_closed_form(
                    raw in proptest::collection::vec(proptest::array::uniform4(-2.0f64..2.0), 0..300),
                ) {
                    let blocks: Vec<Block<T>> = to_blocks(&raw);
                    let got = to64(penalty(&blocks));
                    let mut exact = 0.0;
                    let mut bound = 0.0;
                    for b in &blocks {
                        let [a, bb, c, e] = b.to_array().map(to64);
                        let g = dot_dd(0.0, [(a, bb), (c, e)].into_iter());
                        exact += g * g;
                        bound += 4.0 * u() * g.abs() * ((a * bb).abs() + (c * e).abs()) + 4.0 * u() * g * g;
                    }
                    let levels = (blocks.len().max(1) as f64).log2().ceil() + 16.0;
                    let tol = 1.5 * (bound + levels * u() * exact) + f64::MIN_POSITIVE;
                    record(&format!("{} penalty vs closed form / bound", stringify!($t)), (got - exact).abs() / tol);
                    prop_assert!((got - exact).abs() <= tol, "penalty {:e} vs {:e} (tolerance {:e})", got, exact, tol);
                    prop_assert!(got >= 0.0);
                }

                /// The sign from block determinants and the scaling equals the
                /// sign of the dense determinant (blocks kept well away from
                /// singular), and is 0 for a zero scale or a zero block.
                #[test]
                fn determinant_sign_matches_dense(
                    (layout, d, raw) in (proptest::sample::select(ALL), 1usize..=8).prop_flat_map(|(l, d)| {
                        (Just(l), Just(d), proptest::collection::vec(
                            (proptest::array::uniform4(-1.0f64..1.0), any::<bool>()), l.num_rotations(d)))
                    }),
                    s in proptest::option::of(scaling(8)),
                    kill in proptest::option::of((any::<bool>(), any::<usize>())),
                ) {
                    // Blocks diag(+-1, 1) plus a perturbation: |det| >= 0.2.
                    let mut blocks: Vec<Block<T>> = raw.iter().map(|(p, flip)| {
                        let a = if *flip { -1.0 } else { 1.0 };
                        Block::from_array([a + 0.2 * p[0], 0.2 * p[1], 0.2 * p[2], 1.0 + 0.2 * p[3]].map(|v| v as T))
                    }).collect();
                    let mut s: Option<Vec<T>> = s.map(|s| cast(&s[..d]));
                    let mut singular = false;
                    if let Some((in_scale, at)) = kill {
                        if in_scale {
                            let v = s.get_or_insert_with(|| vec![1.0; d]);
                            v[at % d] = 0.0;
                            singular = true;
                        } else if !blocks.is_empty() {
                            let n = blocks.len();
                            blocks[at % n] = Block::from_array([0.5, 1.0, 0.25, 0.5]);
                            singular = true;
                        }
                    }
                    let r = Rotation::quasi(layout, d, &blocks, s.as_deref()).unwrap();
                    let sign = determinant_sign(&r);
                    if singular {
                        prop_assert_eq!(sign, 0);
                    } else {
                        let mut dense = vec![0.0 as T; d * d];
                        r.to_dense(&mut dense).unwrap();
                        let m: Vec<f64> = dense.iter().map(|v| to64(*v)).collect();
                        let det = determinant(&m, d);
                        prop_assert!(det != 0.0);
                        prop_assert_eq!(sign, if det > 0.0 { 1 } else { -1 }, "dense determinant {}", det);
                    }
                }

                /// A strict rotation keeps every cosine similarity between
                /// neurons, to the rounding of the merge.
                #[test]
                fn cosine_change_vanishes_for_rotations(
                    (layout, d, p) in angle_case(ALL, 1..=32),
                    pitanh in any::<bool>(),
                    m in 2usize..=6,
                    w in values(6 * 32),
                ) {
                    let map = if pitanh { AngleMap::PiTanh } else { AngleMap::Raw };
                    let r = RotationBuf::from_angles(layout, d, map, &cast::<T>(&p), None).unwrap();
                    let w: Vec<T> = cast(&w[..m * d]);
                    let mut merged = w.clone();
                    r.as_rotation().merge(&mut merged).unwrap();
                    let change = to64(max_cosine_change(&w, &merged, d).unwrap());
                    let tol = (20.0 * depth(layout, d) + 8.0) * u();
                    record(&format!("{} cosine change of a rotation / ((20K + 8) u)", stringify!($t)), change / tol);
                    prop_assert!(change <= tol, "{:?} d = {}: {:e} > {:e}", layout, d, change, tol);
                }

                /// One non-orthogonal block on plane (i, j), every other block
                /// the identity: the neurons e_i, e_j (cosine 0) become the
                /// block's columns alpha, beta, so the change is at least
                /// |<alpha, beta>| / (|alpha| |beta|), and exactly that when
                /// they are the only neurons.
                #[test]
                fn cosine_change_of_a_quasi_block(
                    (layout, d, at) in (proptest::sample::select(ALL), 2usize..=16)
                        .prop_flat_map(|(l, d)| (Just(l), Just(d), 0..l.num_rotations(d))),
                    theta in -3.0f64..3.0,
                    shear in prop_oneof![-0.5f64..-0.01, 0.01f64..0.5],
                    extra in 0usize..=4,
                    w in values(4 * 16),
                ) {
                    let mut blocks = vec![Block::<T>::identity(); layout.num_rotations(d)];
                    let (sn, cs) = theta.sin_cos();
                    // A rotation followed by a shear: columns no longer orthogonal.
                    let q = [cs, -sn + shear * cs, sn, cs + shear * sn];
                    blocks[at] = Block::from_array(q.map(|v| v as T));
                    let plane = layout.planes(d).nth(at).unwrap();
                    let r = Rotation::quasi(layout, d, &blocks, None).unwrap();
                    let b = blocks[at];
                    let [a, bb, c, e] = b.to_array().map(to64);
                    let want = (a * bb + c * e).abs() / ((a * a + c * c).sqrt() * (bb * bb + e * e).sqrt());
                    let mut w0 = vec![0.0 as T; (2 + extra) * d];
                    w0[plane.i] = 1.0;
                    w0[d + plane.j] = 1.0;
                    for (k, v) in w0[2 * d..].iter_mut().enumerate() {
                        *v = w[k] as T;
                    }
                    let mut merged = w0.clone();
                    r.merge(&mut merged).unwrap();
                    let two = to64(max_cosine_change(&w0[..2 * d], &merged[..2 * d], d).unwrap());
                    let all = to64(max_cosine_change(&w0, &merged, d).unwrap());
                    let tol = 16.0 * u();
                    let key = format!("{} quasi cosine change vs closed form / (16u)", stringify!($t));
                    record(&key, (two - want).abs() / tol);
                    prop_assert!((two - want).abs() <= tol, "{} vs closed form {}", two, want);
                    prop_assert!(two > 0.0 && all >= two);
                }

                /// `orthogonality_error(R S)` is `R^T R - I = S^2 - I` to rounding:
                /// Frobenius `sqrt(sum (s_i^2 - 1)^2)`, max `max |s_i^2 - 1|`.
                #[test]
                fn orthogonality_error_of_scaled_rotation(
                    (layout, d, p) in angle_case(ALL, 1..=24),
                    s in scaling(24),
                ) {
                    let s: Vec<T> = cast(&s[..d]);
                    let r = RotationBuf::from_angles(layout, d, AngleMap::Raw, &cast::<T>(&p), Some(&s)).unwrap();
                    let e = orthogonality_error(&r.to_dense(), d).unwrap();
                    let dev: Vec<f64> = s.iter().map(|v| to64(*v) * to64(*v) - 1.0).collect();
                    let fro = dev.iter().map(|x| x * x).sum::<f64>().sqrt();
                    let max = dev.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                    // Columns of the computed R S carry at most 5uK |s_j| of
                    // error, so (R S)^T (R S) departs from S^2 by at most
                    // 2 * 5uK sqrt(d) max|s|^2 (Frobenius), with max|s| <= 2.
                    let tol = 40.0 * u() * (depth(layout, d) * (d as f64).sqrt() + 1.0);
                    let seen = (to64(e.frobenius) - fro).abs().max((to64(e.max) - max).abs());
                    record(&format!("{} orthogonality_error of R S vs closed form / tol", stringify!($t)), seen / tol);
                    prop_assert!((to64(e.frobenius) - fro).abs() <= tol, "frobenius {} vs {}", e.frobenius, fro);
                    prop_assert!((to64(e.max) - max).abs() <= tol, "max {} vs {}", e.max, max);
                }
            }
        }
    };
}

metrics_props!(f32_props, f32);
metrics_props!(f64_props, f64);
