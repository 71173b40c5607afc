//! Bad input gives the right error variant, naming the offending value, and
//! leaves the data untouched (DESIGN.md section 5), for f32 and f64.

mod common;

use common::*;
use qgoft_math::{Error, Layout, Op};

const ALL: &[Layout] = &[Layout::Chain, Layout::Tree, Layout::Full, Layout::FullParallel];

fn op_of(k: u8) -> Op {
    [Op::Forward, Op::Transpose, Op::Inverse, Op::InverseTranspose][k as usize % 4]
}

/// `true` if two of the `n * d` positions `k * vs + i * es` coincide.
fn strides_overlap(n: usize, d: usize, vs: usize, es: usize) -> bool {
    let mut pos: Vec<usize> = (0..n).flat_map(|k| (0..d).map(move |i| k * vs + i * es)).collect();
    pos.sort_unstable();
    pos.windows(2).any(|w| w[0] == w[1])
}

macro_rules! error_props {
    ($name:ident, $t:ty) => {
        mod $name {
            use super::*;
            use proptest::prelude::*;
            use qgoft_math::metrics::{max_cosine_change, orthogonality_error};
            use qgoft_math::param::{blocks_from_angles, blocks_from_quasi};
            use qgoft_math::{AngleMap, Block, Givens, Rotation, RotationBuf};
            type T = $t;

            /// NaN, +inf or -inf.
            fn non_finite() -> impl Strategy<Value = T> {
                prop_oneof![Just(<T>::NAN), Just(<T>::INFINITY), Just(<T>::NEG_INFINITY)]
            }

            /// The error names this value (NaN matches NaN).
            fn same_value(reported: f64, v: T) -> bool {
                (reported.is_nan() && v.is_nan()) || reported == to64(v)
            }

            /// A shape mismatch error.
            fn shape<X>(r: Result<X, Error>) -> bool {
                matches!(r, Err(Error::ShapeMismatch { .. }))
            }

            fn strict_blocks(layout: Layout, d: usize, p: &[f64]) -> Vec<Block<T>> {
                let mut b = vec![Block::identity(); layout.num_rotations(d)];
                blocks_from_angles(AngleMap::Raw, &cast::<T>(p), &mut b).unwrap();
                b
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(cases(256)))]

                #[test]
                fn generate_rejects_non_finite((a, b) in finite_pair::<T>(), bad in non_finite(), which in 0usize..3) {
                    let (x, y) = match which { 0 => (bad, b), 1 => (a, bad), _ => (bad, bad) };
                    match Givens::generate(x, y) {
                        Err(Error::NonFinite { index, value, .. }) => {
                            prop_assert_eq!(index, if which == 1 { 1 } else { 0 });
                            prop_assert!(same_value(value, bad));
                        }
                        other => prop_assert!(false, "generate({:e}, {:e}) gave {:?}", x, y, other),
                    }
                }

                #[test]
                fn params_non_finite(
                    p in values(40), at in 0usize..40, bad in non_finite(), n in 1usize..=40, quasi in any::<bool>(),
                ) {
                    let at = at % n;
                    let mut out = vec![Block::<T>::from_array([2.0, 3.0, 4.0, 5.0]); n];
                    let before = out.clone();
                    if quasi {
                        let mut q: Vec<T> = cast(&p.iter().cycle().take(4 * n).copied().collect::<Vec<_>>());
                        q[4 * at + 2] = bad;
                        match blocks_from_quasi(&q, &mut out) {
                            Err(Error::NonFinite { index, value, .. }) => {
                                prop_assert_eq!(index, 4 * at + 2);
                                prop_assert!(same_value(value, bad));
                            }
                            other => prop_assert!(false, "{:?}", other),
                        }
                        let e = RotationBuf::from_quasi(Layout::Chain, n + 1, &q, None).unwrap_err();
                        prop_assert!(matches!(e, Error::NonFinite { index, .. } if index == 4 * at + 2), "{:?}", e);
                    } else {
                        let mut q: Vec<T> = cast(&p[..n]);
                        q[at] = bad;
                        match blocks_from_angles(AngleMap::PiTanh, &q, &mut out) {
                            Err(Error::NonFinite { index, value, .. }) => {
                                prop_assert_eq!(index, at);
                                prop_assert!(same_value(value, bad));
                            }
                            other => prop_assert!(false, "{:?}", other),
                        }
                        let e = RotationBuf::from_angles(Layout::Tree, n + 1, AngleMap::Raw, &q, None).unwrap_err();
                        prop_assert!(matches!(e, Error::NonFinite { index, .. } if index == at), "{:?}", e);
                    }
                    prop_assert_eq!(out, before, "output written despite the error");
                }

                #[test]
                fn rotation_non_finite_blocks_and_scale(
                    (layout, d, p) in angle_case(ALL, 2..=12),
                    at in any::<usize>(), entry in 0usize..4, bad in non_finite(), in_scale in any::<bool>(),
                ) {
                    let mut blocks = strict_blocks(layout, d, &p);
                    let mut scale = vec![1.0 as T; d];
                    let idx;
                    if in_scale {
                        idx = at % d;
                        scale[idx] = bad;
                    } else {
                        idx = at % blocks.len();
                        let mut v = blocks[idx].to_array();
                        v[entry] = bad;
                        blocks[idx] = Block::from_array(v);
                    }
                    let both = [
                        Rotation::strict(layout, d, &blocks, Some(&scale)),
                        Rotation::quasi(layout, d, &blocks, Some(&scale)),
                    ];
                    for r in both {
                        match r {
                            Err(Error::NonFinite { index, value, what }) => {
                                prop_assert_eq!(index, idx);
                                prop_assert!(same_value(value, bad));
                                prop_assert_eq!(what == "scaling", in_scale);
                            }
                            other => prop_assert!(false, "{:?}", other.map(|_| ())),
                        }
                    }
                }

                #[test]
                fn apply_non_finite_input_writes_nothing(
                    (layout, d, p) in angle_case(ALL, 1..=12),
                    n in 1usize..=8, x in values(8 * 12), at in any::<usize>(), bad in non_finite(), k in any::<u8>(),
                    how in 0u8..8,
                ) {
                    let blocks = strict_blocks(layout, d, &p);
                    let r = Rotation::strict(layout, d, &blocks, None).unwrap();
                    let op = op_of(k);
                    let mut xs: Vec<T> = cast(&x[..n * d]);
                    let at = at % (n * d);
                    xs[at] = bad;
                    let before = bits_of(&xs);
                    let res = match how {
                        0 => r.apply_rows(op, &mut xs),
                        1 => r.apply_cols(op, &mut xs, n),
                        2 => r.apply_strided(op, &mut xs, n, d, 1),
                        3 => r.merge(&mut xs),
                        4 => r.unmerge(&mut xs),
                        5 => r.merge_col_major(&mut xs),
                        6 => r.unmerge_col_major(&mut xs),
                        _ => {
                            let row = at / d;
                            let v = &mut xs[row * d..(row + 1) * d];
                            match k % 3 { 0 => r.apply(v), 1 => r.apply_transpose(v), _ => r.apply_inverse(v) }
                                .map_err(|e| match e {
                                    Error::NonFinite { what, index, value } => {
                                        Error::NonFinite { what, index: index + row * d, value }
                                    }
                                    e => e,
                                })
                        }
                    };
                    match res {
                        Err(Error::NonFinite { index, value, .. }) => {
                            prop_assert_eq!(index, at);
                            prop_assert!(same_value(value, bad));
                        }
                        other => prop_assert!(false, "{:?}", other),
                    }
                    prop_assert_eq!(bits_of(&xs), before, "data written despite the error");
                }

                #[test]
                fn singular_quasi_block_on_inverse(
                    (layout, d, blocks) in (proptest::sample::select(ALL), 2usize..=12)
                        .prop_flat_map(|(l, d)| (Just(l), Just(d), quasi_blocks(l.num_rotations(d), 0.1))),
                    at in any::<usize>(), t in -2.0f64..2.0, zero in any::<bool>(),
                    n in 1usize..=4, x in values(4 * 12), k in any::<u8>(),
                ) {
                    let mut blocks: Vec<Block<T>> = to_blocks(&blocks);
                    let at = at % blocks.len();
                    // Rank one (columns proportional) or all zero.
                    blocks[at] = if zero { Block::from_array([0.0; 4]) } else {
                        Block::from_array([1.0, t, 0.5, 0.5 * t].map(|v| v as T))
                    };
                    let r = Rotation::quasi(layout, d, &blocks, None).unwrap();
                    let mut xs: Vec<T> = cast(&x[..n * d]);
                    let before = bits_of(&xs);
                    let op = if k % 2 == 0 { Op::Inverse } else { Op::InverseTranspose };
                    let results = [
                        r.apply_rows(op, &mut xs),
                        r.apply_cols(op, &mut xs, n),
                        r.apply_strided(op, &mut xs, n, 1, n),
                        r.unmerge(&mut xs),
                        r.unmerge_col_major(&mut xs),
                    ];
                    for res in results {
                        match res {
                            Err(Error::SingularBlock { index, det }) => {
                                prop_assert_eq!(index, at);
                                prop_assert!(det.abs() <= 1e-6, "det {}", det);
                            }
                            other => prop_assert!(false, "{:?}", other),
                        }
                    }
                    prop_assert_eq!(bits_of(&xs), before);
                    // Forward and transpose need no inverse.
                    r.apply_rows(Op::Forward, &mut xs).unwrap();
                    r.apply_rows(Op::Transpose, &mut xs).unwrap();
                }

                #[test]
                fn zero_scale_on_inverse(
                    (layout, d, p) in angle_case(ALL, 1..=12),
                    s in scaling(12), at in any::<usize>(), neg_zero in any::<bool>(), quasi in any::<bool>(),
                    n in 1usize..=4, x in values(4 * 12), k in any::<u8>(),
                ) {
                    let blocks = strict_blocks(layout, d, &p);
                    let mut s: Vec<T> = cast(&s[..d]);
                    let at = at % d;
                    s[at] = if neg_zero { -0.0 } else { 0.0 };
                    let r = if quasi {
                        Rotation::quasi(layout, d, &blocks, Some(&s)).unwrap()
                    } else {
                        Rotation::strict(layout, d, &blocks, Some(&s)).unwrap()
                    };
                    let mut xs: Vec<T> = cast(&x[..n * d]);
                    let before = bits_of(&xs);
                    let op = if k % 2 == 0 { Op::Inverse } else { Op::InverseTranspose };
                    for res in [r.apply_rows(op, &mut xs), r.apply_cols(op, &mut xs, n), r.unmerge(&mut xs),
                        r.unmerge_col_major(&mut xs)] {
                        let ok = matches!(res, Err(Error::SingularScale { index, .. }) if index == at);
                        prop_assert!(ok, "{:?}", res);
                    }
                    prop_assert_eq!(bits_of(&xs), before);
                }

                #[test]
                fn strict_rejects_non_rotation_blocks(
                    (layout, d, p) in angle_case(ALL, 2..=12),
                    at in any::<usize>(), entry in 0usize..4, mag in 0.0f64..6.0, neg in any::<bool>(),
                ) {
                    let mut blocks = strict_blocks(layout, d, &p);
                    prop_assert!(Rotation::strict(layout, d, &blocks, None).is_ok());
                    let at = at % blocks.len();
                    // Perturb one entry by 10^mag units of roundoff, far beyond the 16u tolerance.
                    let u = to64(<T as qgoft_math::Real>::UNIT_ROUNDOFF);
                    let delta = (if neg { -1.0 } else { 1.0 }) * 64.0 * 10f64.powf(mag) * u;
                    let mut v = blocks[at].to_array();
                    v[entry] += delta as T;
                    blocks[at] = Block::from_array(v);
                    match Rotation::strict(layout, d, &blocks, None) {
                        Err(Error::NotOrthogonal { error, tolerance }) => prop_assert!(error > tolerance),
                        other => prop_assert!(false, "{:?}", other.map(|_| ())),
                    }
                    prop_assert!(Rotation::quasi(layout, d, &blocks, None).is_ok());
                }

                #[test]
                fn wrong_lengths(
                    layout in proptest::sample::select(ALL), d in 1usize..=12, extra in 1usize..=3, n in 1usize..=4,
                ) {
                    let nr = layout.num_rotations(d);
                    let blocks = vec![Block::<T>::identity(); nr + extra];
                    match Rotation::strict(layout, d, &blocks, None) {
                        Err(Error::ShapeMismatch { expected, found, .. }) => {
                            prop_assert_eq!((expected, found), (nr, nr + extra))
                        }
                        other => prop_assert!(false, "{:?}", other.map(|_| ())),
                    }
                    let blocks = &blocks[..nr];
                    let s = vec![1.0 as T; d + extra];
                    prop_assert!(shape(Rotation::quasi(layout, d, blocks, Some(&s))));
                    let r = Rotation::strict(layout, d, blocks, None).unwrap();
                    let mut v = vec![0.5 as T; d + extra];
                    prop_assert!(shape(r.apply(&mut v)));
                    prop_assert!(shape(r.apply_transpose(&mut v)));
                    prop_assert!(shape(r.apply_inverse(&mut v)));
                    let mut batch = vec![0.5 as T; n * d + extra.min(d - 1).max(if d > 1 { 1 } else { 0 })];
                    if batch.len() % d != 0 {
                        prop_assert!(shape(r.apply_rows(Op::Forward, &mut batch)));
                        prop_assert!(shape(r.merge(&mut batch)));
                        prop_assert!(shape(r.merge_col_major(&mut batch)));
                        prop_assert!(shape(r.unmerge_col_major(&mut batch)));
                    }
                    let mut cols = vec![0.5 as T; n * d + extra];
                    prop_assert!(shape(r.apply_cols(Op::Forward, &mut cols, n)));
                    let mut short = vec![0.5 as T; n * d - 1];
                    prop_assert!(shape(r.apply_strided(Op::Forward, &mut short, n, d, 1)));
                    let mut dense = vec![0.0 as T; d * d + extra];
                    prop_assert!(shape(r.to_dense(&mut dense)));
                    let mut out = vec![Block::<T>::identity(); nr + extra];
                    let p = vec![0.0 as T; nr];
                    prop_assert!(shape(blocks_from_angles(AngleMap::Raw, &p, &mut out)));
                    let q = vec![0.0 as T; 4 * (nr + extra) - 1];
                    prop_assert!(shape(blocks_from_quasi(&q, &mut out)));
                    prop_assert!(shape(orthogonality_error(&dense, d)));
                    let w = vec![1.0 as T; n * d];
                    prop_assert!(shape(max_cosine_change(&w, &w[1..], d)));
                    prop_assert!(shape(max_cosine_change(&w, &w, 0)));
                }

                #[test]
                fn overlapping_strides_are_rejected(
                    d in 1usize..=6, n in 1usize..=6, vs in 0usize..=8, es in 0usize..=8,
                    (layout, _, p) in angle_case(ALL, 6..=6), k in any::<u8>(),
                ) {
                    let blocks = strict_blocks(layout, 6, &p);
                    let blocks = &blocks[..layout.num_rotations(d)];
                    let r = Rotation::strict(layout, d, blocks, None).unwrap();
                    let len = (n - 1) * vs + (d - 1) * es + 1;
                    let mut x = vec![0.25 as T; len];
                    let res = r.apply_strided(op_of(k), &mut x, n, vs, es);
                    if strides_overlap(n, d, vs, es) {
                        let ok = matches!(res, Err(Error::InvalidArgument { .. }));
                        prop_assert!(ok, "n {} d {} vs {} es {}: {:?}", n, d, vs, es, res);
                        prop_assert!(x.iter().all(|&v| v == 0.25), "data written despite the error");
                    } else if vs >= d * es.max(1) || es >= n * vs.max(1) {
                        // Row-like or column-like strides are accepted.
                        prop_assert!(res.is_ok(), "n {} d {} vs {} es {}: {:?}", n, d, vs, es, res);
                    }
                }
            }

            #[test]
            fn zero_dimension_is_invalid() {
                for layout in ALL {
                    let e = Rotation::<T>::strict(*layout, 0, &[], None).unwrap_err();
                    assert!(matches!(e, Error::InvalidArgument { value, .. } if value == 0.0), "{e:?}");
                    assert!(matches!(Rotation::<T>::quasi(*layout, 0, &[], None), Err(Error::InvalidArgument { .. })));
                    assert!(matches!(RotationBuf::<T>::identity(*layout, 0), Err(Error::InvalidArgument { .. })));
                    assert!(matches!(
                        RotationBuf::<T>::from_angles(*layout, 0, AngleMap::Raw, &[], None),
                        Err(Error::InvalidArgument { .. })
                    ));
                }
            }

            #[test]
            fn metrics_non_finite() {
                let mut q = vec![0.0 as T; 9];
                q[4] = <T>::NAN;
                assert!(matches!(orthogonality_error(&q, 3), Err(Error::NonFinite { index: 4, .. })));
                let w = [1.0 as T, 2.0, 3.0, 4.0];
                let bad = [1.0 as T, <T>::INFINITY, 3.0, 4.0];
                assert!(matches!(max_cosine_change(&w, &bad, 2), Err(Error::NonFinite { index: 1, .. })));
                assert!(matches!(max_cosine_change(&bad, &w, 2), Err(Error::NonFinite { index: 1, .. })));
            }
        }
    };
}

error_props!(f32_props, f32);
error_props!(f64_props, f64);
