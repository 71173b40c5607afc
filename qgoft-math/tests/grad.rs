//! Property tests of `qgoft_math::grad`: every VJP against central finite
//! differences of the forward computed in `f64`, for random layouts, widths
//! `d` in `1..=64` and batches of `1..=8` rows, in `f64` (relative error
//! `<= 1e-7`) and in `f32` (relative error `<= 8 u sqrt(d)` for the chain and
//! the tree, `8 u d` for the full layouts); the penalty gradient against its
//! closed form; the summation error against the batch size; bad input.

use proptest::prelude::*;
use qgoft_math::grad::{
    angle_param_grads, penalty_grad, quasi_param_grads, vjp_merge, vjp_rows, vjp_rows_from_input, vjp_rows_owned,
    workspace_len, workspace_len_from_input, Saved, Workspace,
};
use qgoft_math::metrics::penalty;
use qgoft_math::{AngleMap, Block, Error, Layout, Op, Real, RotationBuf};

const LAYOUTS: [Layout; 4] = [Layout::Chain, Layout::Tree, Layout::Full, Layout::FullParallel];

/// SplitMix64: the test data of one case from one seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    fn unif(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.unif(lo, hi)).collect()
    }
}

/// How the blocks are parametrized.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Strict(AngleMap),
    Quasi,
}

/// One test case, every value already representable in the scalar type
/// under test.
#[derive(Clone, Debug)]
struct Case {
    layout: Layout,
    d: usize,
    mode: Mode,
    scaled: bool,
    op: Op,
    from_output: bool,
    params: Vec<f64>,
    scale: Option<Vec<f64>>,
    x: Vec<f64>,
    gy: Vec<f64>,
}

impl Case {
    #[allow(clippy::too_many_arguments)]
    fn new<T: Real>(
        layout: usize,
        d: usize,
        n: usize,
        mode: usize,
        scaled: bool,
        transpose: bool,
        from_output: bool,
        seed: u64,
    ) -> Case {
        let layout = LAYOUTS[layout];
        let mode = [Mode::Strict(AngleMap::Raw), Mode::Strict(AngleMap::PiTanh), Mode::Quasi][mode];
        let mut rng = Rng(seed);
        let k = layout.num_rotations(d);
        let params = match mode {
            Mode::Strict(AngleMap::Raw) => rng.vec(k, -3.0, 3.0),
            Mode::Strict(_) => rng.vec(k, -1.5, 1.5),
            Mode::Quasi => (0..k)
                .flat_map(|_| {
                    let (s, c) = rng.unif(-3.0, 3.0).sin_cos();
                    let mut p = [c, -s, s, c];
                    for v in &mut p {
                        *v += rng.unif(-0.05, 0.05);
                    }
                    p
                })
                .collect(),
        };
        let round = |v: Vec<f64>| v.into_iter().map(|v| T::from_f64(v).to_f64()).collect::<Vec<f64>>();
        Case {
            layout,
            d,
            mode,
            scaled,
            op: if transpose { Op::Transpose } else { Op::Forward },
            from_output: from_output && mode != Mode::Quasi,
            params: round(params),
            scale: scaled.then(|| round(rng.vec(d, 0.5, 1.5))),
            x: round(rng.vec(n * d, -2.0, 2.0)),
            gy: round(rng.vec(n * d, -2.0, 2.0)),
        }
    }

    fn rotation<T: Real>(&self, params: &[T], scale: Option<&[T]>) -> RotationBuf<T> {
        match self.mode {
            Mode::Strict(map) => RotationBuf::from_angles(self.layout, self.d, map, params, scale),
            Mode::Quasi => RotationBuf::from_quasi(self.layout, self.d, params, scale),
        }
        .expect("valid test rotation")
    }

    /// `L = sum(gy * op(x))` in `f64`.
    fn loss(&self, params: &[f64], scale: Option<&[f64]>, x: &[f64]) -> f64 {
        let r = self.rotation(params, scale);
        let mut y = x.to_vec();
        r.as_rotation().apply_rows(self.op, &mut y).expect("forward");
        y.iter().zip(&self.gy).map(|(a, b)| a * b).sum()
    }

    /// The analytic gradients in `T`: `(dL/dparams, dL/dscale, dL/dx)`.
    fn analytic<T: Real>(&self) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let cast = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>();
        let params = cast(&self.params);
        let scale = self.scale.as_deref().map(cast);
        let x = cast(&self.x);
        let r = self.rotation(&params, scale.as_deref());
        let rot = r.as_rotation();
        let mut y = x.clone();
        rot.apply_rows(self.op, &mut y).expect("forward");
        let saved = if self.from_output { Saved::Output(&y[..]) } else { Saved::Input(&x[..]) };
        let mut g = cast(&self.gy);
        let mut db = vec![Block::<T>::default(); rot.blocks().len()];
        let mut ds = vec![T::zero(); if self.scaled { self.d } else { 0 }];
        let mut work = vec![T::zero(); workspace_len(&rot, saved)];
        let dscale = if self.scaled { Some(&mut ds[..]) } else { None };
        vjp_rows(&rot, self.op, saved, &mut g, &mut db, dscale, &mut work).expect("vjp");
        let mut dp = vec![T::zero(); params.len()];
        match self.mode {
            Mode::Strict(map) => angle_param_grads(map, &params, &db, &mut dp).expect("chain rule"),
            Mode::Quasi => quasi_param_grads(&db, &mut dp).expect("reshape"),
        }
        let back = |v: Vec<T>| v.into_iter().map(|v| v.to_f64()).collect::<Vec<f64>>();
        (back(dp), back(ds), back(g))
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Relative error of the analytic gradient `g` of `f` at `p` against central
/// differences: the whole vector when it is short, else four random
/// directions `v` (`|<g, v> - D_v f| / (|g| |v|)`). The denominator is at
/// least `floor` (the natural size of a gradient of the loss), so that a
/// gradient that vanishes by chance is not divided by zero.
fn fd_error(f: &dyn Fn(&[f64]) -> f64, p: &[f64], g: &[f64], floor: f64, rng: &mut Rng) -> f64 {
    let h = 1e-5;
    if p.is_empty() {
        return 0.0;
    }
    if p.len() <= 64 {
        let mut q = p.to_vec();
        let fd: Vec<f64> = (0..p.len())
            .map(|k| {
                q[k] = p[k] + h;
                let up = f(&q);
                q[k] = p[k] - h;
                let dn = f(&q);
                q[k] = p[k];
                (up - dn) / (2.0 * h)
            })
            .collect();
        let diff: Vec<f64> = g.iter().zip(&fd).map(|(a, b)| a - b).collect();
        return norm(&diff) / norm(&fd).max(floor);
    }
    let mut worst: f64 = 0.0;
    for _ in 0..4 {
        let v = rng.vec(p.len(), -1.0, 1.0);
        let at = |t: f64| f(&p.iter().zip(&v).map(|(a, b)| a + t * b).collect::<Vec<_>>());
        let fd = (at(h) - at(-h)) / (2.0 * h);
        let an: f64 = g.iter().zip(&v).map(|(a, b)| a * b).sum();
        worst = worst.max((an - fd).abs() / (norm(g).max(floor) * norm(&v)));
    }
    worst
}

/// Checks one case in `T` against finite differences in `f64`.
fn check_case<T: Real>(c: &Case) -> Result<(), TestCaseError> {
    let u = T::UNIT_ROUNDOFF.to_f64();
    let growth = match c.layout {
        Layout::Chain | Layout::Tree => (c.d as f64).sqrt(),
        _ => c.d as f64,
    };
    // f64: the finite differences limit; otherwise the arithmetic of T.
    let tol = 1e-7f64.max(8.0 * u * growth);
    let (dp, ds, dx) = c.analytic::<T>();
    // Denominators are at least a fraction of the natural size of the
    // gradient (`|gy| |x|` for the parameters, `|gy|` for the input). In f32
    // that fraction is 1: rounding errors of a batch sum scale with the sum
    // of the terms' magnitudes, not with a result that cancels by chance.
    let floor_factor = if u > 1e-10 { 1.0 } else { 1e-3 };
    let floor = floor_factor * norm(&c.gy) * norm(&c.x).max(1.0);
    let mut rng = Rng(c.x.len() as u64 ^ 0x5eed);
    let scale = c.scale.as_deref();

    let e = fd_error(&|p| c.loss(p, scale, &c.x), &c.params, &dp, floor, &mut rng);
    prop_assert!(e <= tol, "parameter gradient: relative error {e:e} > {tol:e}");
    if let Some(s) = scale {
        let e = fd_error(&|s| c.loss(&c.params, Some(s), &c.x), s, &ds, floor, &mut rng);
        prop_assert!(e <= tol, "scale gradient: relative error {e:e} > {tol:e}");
    }
    let floor_x = floor_factor * norm(&c.gy);
    let e = fd_error(&|x| c.loss(&c.params, scale, x), &c.x, &dx, floor_x, &mut rng);
    prop_assert!(e <= tol, "input gradient: relative error {e:e} > {tol:e}");
    Ok(())
}

/// [`vjp_rows_owned`] against [`vjp_rows`] on one case (bitwise), then with
/// `bad` at flat index `at` of the saved batch (`in_saved`) or of the
/// upstream gradient: a typed error naming that value (for the upstream
/// gradient, a value in its row) and the accumulators untouched.
fn owned_case<T: Real>(c: &Case, bad: f64, in_saved: bool, at: usize) -> Result<(), TestCaseError> {
    let cast = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>();
    let bits = |v: &[T]| v.iter().map(|&v| Real::to_f64(v).to_bits()).collect::<Vec<u64>>();
    let block_bits =
        |v: &[Block<T>]| v.iter().flat_map(|b| b.to_array()).map(|v| Real::to_f64(v).to_bits()).collect::<Vec<u64>>();
    let params = cast(&c.params);
    let scale = c.scale.as_deref().map(cast);
    let x = cast(&c.x);
    let r = c.rotation(&params, scale.as_deref());
    let rot = r.as_rotation();
    let mut y = x.clone();
    rot.apply_rows(c.op, &mut y).expect("forward");
    let mut saved_buf = if c.from_output { y } else { x };
    fn saved<T>(from_output: bool, b: &[T]) -> Saved<'_, T> {
        if from_output {
            Saved::Output(b)
        } else {
            Saved::Input(b)
        }
    }
    let nb = rot.blocks().len();
    let ds_len = if c.scaled { c.d } else { 0 };
    let mut ws = Workspace::new();
    let run = |owned: bool, ws: &mut Workspace<T>, sv: &[T], g: &mut [T], db: &mut [Block<T>], ds: &mut [T]| {
        let ds = if c.scaled { Some(ds) } else { None };
        if owned {
            ws.vjp_rows_owned(&rot, c.op, saved(c.from_output, sv), g, db, ds)
        } else {
            ws.vjp_rows(&rot, c.op, saved(c.from_output, sv), g, db, ds)
        }
    };
    let (mut g1, mut db1, mut ds1) = (cast(&c.gy), vec![Block::<T>::default(); nb], vec![T::zero(); ds_len]);
    run(false, &mut ws, &saved_buf, &mut g1, &mut db1, &mut ds1).expect("vjp");
    let (mut g2, mut db2, mut ds2) = (cast(&c.gy), vec![Block::<T>::default(); nb], vec![T::zero(); ds_len]);
    run(true, &mut ws, &saved_buf, &mut g2, &mut db2, &mut ds2).expect("owned vjp");
    prop_assert_eq!(bits(&g1), bits(&g2));
    prop_assert_eq!(block_bits(&db1), block_bits(&db2));
    prop_assert_eq!(bits(&ds1), bits(&ds2));

    let mut g = cast(&c.gy);
    if in_saved {
        saved_buf[at] = T::from_f64(bad);
    } else {
        g[at] = T::from_f64(bad);
    }
    let err = run(true, &mut ws, &saved_buf, &mut g, &mut db2, &mut ds2);
    match err {
        Err(Error::NonFinite { what: "saved batch", index, .. }) if in_saved => prop_assert_eq!(index, at),
        Err(Error::NonFinite { what: "upstream gradient", index, .. }) if !in_saved => prop_assert_eq!(index, at),
        Err(Error::NonFinite { what: "input gradient (from a non-finite upstream gradient)", index, .. })
            if !in_saved =>
        {
            prop_assert_eq!(index / c.d, at / c.d)
        }
        other => prop_assert!(false, "unexpected result {other:?}"),
    }
    prop_assert_eq!(block_bits(&db1), block_bits(&db2));
    prop_assert_eq!(bits(&ds1), bits(&ds2));
    Ok(())
}

/// [`vjp_rows_from_input`] against [`vjp_rows`] from the input on one case
/// (an unscaled strict rotation): the block gradients agree within a bound
/// of `u` times the stage count times `sum_r |x_r| |dx_r|` (rows keep their
/// norms through the stages); then with `bad` at flat index `at` of `x`
/// (`in_x`) or of `dx`: a typed error naming exactly that entry, and the
/// accumulators untouched.
fn from_input_case<T: Real>(c: &Case, bad: f64, in_x: bool, at: usize) -> Result<(), TestCaseError> {
    let cast = |v: &[f64]| v.iter().map(|&v| T::from_f64(v)).collect::<Vec<T>>();
    let params = cast(&c.params);
    let mut x = cast(&c.x);
    let r = c.rotation(&params, None);
    let rot = r.as_rotation();
    let nb = rot.blocks().len();
    let mut ws = Workspace::new();
    let (mut dx, mut db1) = (cast(&c.gy), vec![Block::<T>::default(); nb]);
    ws.vjp_rows(&rot, c.op, Saved::Input(&x), &mut dx, &mut db1, None).expect("vjp");
    let start = Block::from_array([0.5, -0.25, 1.0, 2.0].map(T::from_f64));
    let mut db2 = vec![start; nb];
    ws.vjp_rows_from_input(&rot, c.op, &x, &dx, &mut db2).expect("vjp from the input");
    let norm = |v: &[T]| v.iter().map(|&a| Real::to_f64(a) * Real::to_f64(a)).sum::<f64>().sqrt();
    let s: f64 = x.chunks(c.d).zip(dx.chunks(c.d)).map(|(a, b)| norm(a) * norm(b)).sum();
    let tol = 8.0 * Real::to_f64(T::UNIT_ROUNDOFF) * (c.d as f64 + 4.0) * (s + 1.0);
    for (k, (p, q)) in db1.iter().zip(&db2).enumerate() {
        for (i, (a, b)) in p.to_array().iter().zip(q.to_array()).enumerate() {
            let want = Real::to_f64(*a) + Real::to_f64(start.to_array()[i]);
            prop_assert!(
                (Real::to_f64(b) - want).abs() <= tol,
                "block {} entry {}: {} against {}",
                k,
                i,
                Real::to_f64(b),
                want
            );
        }
    }
    let kept = db2.clone();
    if in_x {
        x[at] = T::from_f64(bad);
    } else {
        dx[at] = T::from_f64(bad);
    }
    let mut work = vec![T::zero(); workspace_len_from_input(&rot, &x)];
    match vjp_rows_from_input(&rot, c.op, &x, &dx, &mut db2, &mut work) {
        Err(Error::NonFinite { what: "input batch", index, .. }) if in_x => prop_assert_eq!(index, at),
        Err(Error::NonFinite { what: "input gradient", index, .. }) if !in_x => prop_assert_eq!(index, at),
        other => prop_assert!(false, "unexpected result {other:?}"),
    }
    let bits =
        |v: &[Block<T>]| v.iter().flat_map(|b| b.to_array()).map(|v| Real::to_f64(v).to_bits()).collect::<Vec<_>>();
    prop_assert_eq!(bits(&kept), bits(&db2));
    Ok(())
}

#[test]
fn vjp_from_input_rejects_what_it_cannot_invert() {
    let blocks = [Block { a: 1.0f64, b: 0.5, c: -0.25, e: 2.0 }];
    let x = [1.0, 2.0];
    let mut db = [Block::default()];
    let mut ws = Workspace::new();
    let q = qgoft_math::Rotation::quasi(Layout::Tree, 2, &blocks, None).unwrap();
    assert!(matches!(ws.vjp_rows_from_input(&q, Op::Transpose, &x, &x, &mut db), Err(Error::InvalidArgument { .. })));
    let r = RotationBuf::from_angles(Layout::Tree, 2, AngleMap::Raw, &[0.3], Some(&[1.0, 2.0])).unwrap();
    let r = r.as_rotation();
    assert!(matches!(ws.vjp_rows_from_input(&r, Op::Transpose, &x, &x, &mut db), Err(Error::InvalidArgument { .. })));
    let r = RotationBuf::from_angles(Layout::Tree, 2, AngleMap::Raw, &[0.3], None).unwrap();
    let r = r.as_rotation();
    assert!(matches!(ws.vjp_rows_from_input(&r, Op::Inverse, &x, &x, &mut db), Err(Error::InvalidArgument { .. })));
    assert!(matches!(ws.vjp_rows_from_input(&r, Op::Forward, &x, &x[..1], &mut db), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(
        vjp_rows_from_input(&r, Op::Forward, &x, &x, &mut db, &mut [0.0; 1]),
        Err(Error::ShapeMismatch { what: "gradient workspace", .. })
    ));
    assert_eq!(db, [Block::default()]);
}

macro_rules! vjp_props {
    ($name:ident, $t:ty) => {
        mod $name {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(384))]

                #[test]
                fn vjp_matches_finite_differences(
                    layout in 0usize..4,
                    d in 1usize..=64,
                    n in 1usize..=8,
                    mode in 0usize..3,
                    scaled in any::<bool>(),
                    transpose in any::<bool>(),
                    from_output in any::<bool>(),
                    seed in any::<u64>(),
                ) {
                    let c = Case::new::<$t>(layout, d, n, mode, scaled, transpose, from_output, seed);
                    check_case::<$t>(&c)?;
                }

                #[test]
                fn owned_vjp_is_the_vjp_and_finds_every_non_finite_value(
                    layout in 0usize..4,
                    d in 1usize..=40,
                    n in 1usize..=12,
                    mode in 0usize..3,
                    scaled in any::<bool>(),
                    transpose in any::<bool>(),
                    from_output in any::<bool>(),
                    seed in any::<u64>(),
                    bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
                    in_saved in any::<bool>(),
                    at in any::<prop::sample::Index>(),
                ) {
                    let c = Case::new::<$t>(layout, d, n, mode, scaled, transpose, from_output, seed);
                    owned_case::<$t>(&c, bad, in_saved, at.index(n * d))?;
                }

                #[test]
                fn vjp_from_the_input_side_is_the_vjp(
                    layout in 0usize..4,
                    d in 1usize..=40,
                    n in 1usize..=80,
                    mode in 0usize..2,
                    transpose in any::<bool>(),
                    seed in any::<u64>(),
                    bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
                    in_x in any::<bool>(),
                    at in any::<prop::sample::Index>(),
                ) {
                    let c = Case::new::<$t>(layout, d, n, mode, false, transpose, false, seed);
                    from_input_case::<$t>(&c, bad, in_x, at.index(n * d))?;
                }

                #[test]
                fn vjp_from_the_input_side_on_blocks_of_8_is_the_vjp(
                    k in 1usize..=20,
                    n in 1usize..=300,
                    seed in any::<u64>(),
                    bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
                    in_x in any::<bool>(),
                    at in any::<prop::sample::Index>(),
                ) {
                    // The tree with `d` a multiple of 8 undoing `R^T`: the
                    // sums of 8 x 8 blocks, over several tiles of rows.
                    let d = 8 * k;
                    let c = Case::new::<$t>(1, d, n, 0, false, true, false, seed);
                    prop_assert_eq!(c.layout, Layout::Tree);
                    from_input_case::<$t>(&c, bad, in_x, at.index(n * d))?;
                }

                #[test]
                fn penalty_gradient_is_its_closed_form(k in 0usize..40, lambda in -3.0f64..3.0, seed in any::<u64>()) {
                    let mut rng = Rng(seed);
                    let blocks: Vec<Block<$t>> = (0..k)
                        .map(|_| Block::from_array([0; 4].map(|_| <$t>::from_f64(rng.unif(-2.0, 2.0)))))
                        .collect();
                    let lambda = <$t>::from_f64(lambda);
                    let start = Block::from_array([0.5, -0.25, 1.0, 2.0].map(<$t>::from_f64));
                    let mut out = vec![start; k];
                    let p = penalty_grad(&blocks, lambda, &mut out).unwrap();
                    let u = <$t as Real>::UNIT_ROUNDOFF.to_f64();
                    let want_p = lambda.to_f64() * penalty(&blocks).to_f64();
                    prop_assert!((p.to_f64() - want_p).abs() <= 4.0 * u * want_p.abs());
                    for (b, o) in blocks.iter().zip(&out) {
                        let [a, bb, c, e] = b.to_array().map(|v| v.to_f64());
                        let g = 2.0 * lambda.to_f64() * (a * bb + c * e);
                        let want = [0.5 + g * bb, -0.25 + g * a, 1.0 + g * e, 2.0 + g * c];
                        for (got, w) in o.to_array().iter().zip(want) {
                            let bound = 8.0 * u * (1.0 + (2.0 * lambda.to_f64()).abs() * 4.0 * 4.0 * 2.0 + w.abs());
                            prop_assert!((got.to_f64() - w).abs() <= bound, "{got} vs {w}");
                        }
                    }
                }
            }
        }
    };
}

vjp_props!(f64_props, f64);
vjp_props!(f32_props, f32);

/// The penalty gradient against central differences of `metrics::penalty`.
#[test]
fn penalty_gradient_matches_finite_differences() {
    let mut rng = Rng(7);
    let flat = rng.vec(4 * 9, -2.0, 2.0);
    let lambda = 0.7;
    let blocks_of =
        |f: &[f64]| f.chunks_exact(4).map(|c| Block::from_array([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>();
    let mut out = vec![Block::default(); 9];
    penalty_grad(&blocks_of(&flat), lambda, &mut out).unwrap();
    let mut g = vec![0.0; 36];
    quasi_param_grads(&out, &mut g).unwrap();
    let e = fd_error(&|f| lambda * penalty(&blocks_of(f)), &flat, &g, 1e-12, &mut rng);
    assert!(e <= 1e-7, "relative error {e:e}");
}

/// The merge VJP is the batch VJP with `Op::Forward` and matches finite
/// differences of `L = sum(dW' * W R^T)` with respect to the angles.
#[test]
fn merge_vjp_against_finite_differences() {
    let mut rng = Rng(11);
    let (d, m) = (13, 5);
    let params = rng.vec(d - 1, -1.0, 1.0);
    let w = rng.vec(m * d, -1.0, 1.0);
    let dwm = rng.vec(m * d, -1.0, 1.0);
    let loss = |p: &[f64]| {
        let r = RotationBuf::from_angles(Layout::Tree, d, AngleMap::PiTanh, p, None).unwrap();
        let mut wm = w.clone();
        r.as_rotation().merge(&mut wm).unwrap();
        wm.iter().zip(&dwm).map(|(a, b)| a * b).sum::<f64>()
    };
    let r = RotationBuf::from_angles(Layout::Tree, d, AngleMap::PiTanh, &params, None).unwrap();
    let rot = r.as_rotation();
    let mut merged = w.clone();
    rot.merge(&mut merged).unwrap();
    let mut dw = dwm.clone();
    let mut db = vec![Block::default(); d - 1];
    let mut work = vec![0.0; workspace_len(&rot, Saved::Output(&merged))];
    vjp_merge(&rot, Saved::Output(&merged), &mut dw, &mut db, None, &mut work).unwrap();
    let mut dp = vec![0.0; d - 1];
    angle_param_grads(AngleMap::PiTanh, &params, &db, &mut dp).unwrap();
    let e = fd_error(&loss, &params, &dp, 1e-12, &mut rng);
    assert!(e <= 1e-7, "relative error {e:e}");
    // dL/dW = dW' R: each row through R^T.
    let mut want = dwm.clone();
    rot.apply_rows(Op::Transpose, &mut want).unwrap();
    for (a, b) in dw.iter().zip(&want) {
        assert!((a - b).abs() <= 1e-14, "{a} vs {b}");
    }
}

/// Block gradients are summed pairwise across tiles: with every term equal
/// and positive, a running sum in f32 drifts by about `n u` relative; the
/// pairwise sum stays within a few `u log2 n`.
#[test]
fn batch_summation_error_grows_like_log_n() {
    let d = 2;
    for log_n in [8u32, 12, 16] {
        let n = 1usize << log_n;
        let r = RotationBuf::<f32>::from_angles(Layout::Tree, d, AngleMap::Raw, &[0.3], None).unwrap();
        let rot = r.as_rotation();
        let x: Vec<f32> = (0..n).flat_map(|_| [0.1f32, 0.7]).collect();
        let gy: Vec<f32> = (0..n).flat_map(|_| [0.3f32, 0.9]).collect();
        let mut g = gy.clone();
        let mut db = [Block::default()];
        let mut work = vec![0.0; workspace_len(&rot, Saved::Input(&x))];
        vjp_rows(&rot, Op::Transpose, Saved::Input(&x), &mut g, &mut db, None, &mut work).unwrap();
        // dL/dB = sum_r x_r gy_r^T (y = B^T x), each term exact in f64.
        let want = [0.1f32 as f64 * 0.3f32 as f64, 0.1f32 as f64 * 0.9f32 as f64];
        let want = [want[0], want[1], 0.7f32 as f64 * 0.3f32 as f64, 0.7f32 as f64 * 0.9f32 as f64];
        let u = f32::UNIT_ROUNDOFF as f64;
        for (got, w) in db[0].to_array().iter().zip(want) {
            let rel = (*got as f64 - w * n as f64).abs() / (w * n as f64);
            assert!(rel <= 2.0 * u * (log_n as f64 + 2.0), "n = {n}: relative error {rel:e}");
        }
    }
}

#[test]
fn workspace_type_matches_free_function() {
    let r = RotationBuf::from_angles(Layout::Tree, 5, AngleMap::Raw, &[0.1f64, 0.2, 0.3, 0.4], None).unwrap();
    let rot = r.as_rotation();
    let x: Vec<f64> = (0..40).map(|k| (k as f64).sin()).collect();
    let gy: Vec<f64> = (0..40).map(|k| (k as f64).cos()).collect();
    let (mut g1, mut g2) = (gy.clone(), gy.clone());
    let (mut d1, mut d2) = (vec![Block::default(); 4], vec![Block::default(); 4]);
    let mut work = vec![0.0; workspace_len(&rot, Saved::Input(&x))];
    vjp_rows(&rot, Op::Transpose, Saved::Input(&x), &mut g1, &mut d1, None, &mut work).unwrap();
    let mut ws = Workspace::new();
    ws.vjp_rows(&rot, Op::Transpose, Saved::Input(&x), &mut g2, &mut d2, None).unwrap();
    assert_eq!(g1, g2);
    assert_eq!(d1, d2);
    // Accumulation: a second call adds the same gradient again.
    ws.vjp_rows(&rot, Op::Transpose, Saved::Input(&x), &mut gy.clone(), &mut d2, None).unwrap();
    for (a, b) in d1.iter().zip(&d2) {
        assert!((2.0 * a.b - b.b).abs() <= 1e-14 * b.b.abs().max(1.0));
    }
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    let r = RotationBuf::from_angles(Layout::Tree, 3, AngleMap::Raw, &[0.1f64, 0.2], Some(&[1.0, 0.0, 2.0])).unwrap();
    let rot = r.as_rotation();
    let x = [1.0, 2.0, 3.0];
    let g0 = [1.0, 1.0, 1.0];
    let mut g = g0;
    let mut db = [Block::default(); 2];
    let mut ds = [0.0; 3];
    let mut work = vec![0.0; workspace_len(&rot, Saved::Input(&x))];
    // A zero scaling entry cannot be undone from the output.
    let err = vjp_rows(&rot, Op::Transpose, Saved::Output(&x), &mut g, &mut db, Some(&mut ds), &mut work);
    assert_eq!(err, Err(Error::SingularScale { index: 1, value: 0.0 }));
    // NaN in the upstream gradient is named.
    g[2] = f64::NAN;
    let err = vjp_rows(&rot, Op::Transpose, Saved::Input(&x), &mut g, &mut db, Some(&mut ds), &mut work);
    assert!(matches!(err, Err(Error::NonFinite { what: "upstream gradient", index: 2, .. })), "{err:?}");
    g = g0;
    // Shapes.
    let err = vjp_rows(&rot, Op::Transpose, Saved::Input(&x[..2]), &mut g[..2], &mut db, None, &mut work);
    assert!(matches!(err, Err(Error::ShapeMismatch { .. })), "{err:?}");
    let err = vjp_rows(&rot, Op::Transpose, Saved::Input(&x), &mut g, &mut db[..1], None, &mut work);
    assert!(matches!(err, Err(Error::ShapeMismatch { what: "block gradients", expected: 2, found: 1 })));
    let err = vjp_rows(&rot, Op::Transpose, Saved::Input(&x), &mut g, &mut db, Some(&mut ds[..2]), &mut work);
    assert!(matches!(err, Err(Error::ShapeMismatch { what: "scale gradient", .. })));
    let err = vjp_rows(&rot, Op::Transpose, Saved::Input(&x), &mut g, &mut db, None, &mut work[..1]);
    assert!(matches!(err, Err(Error::ShapeMismatch { what: "gradient workspace", .. })));
    // The owned form checks the same arguments the same way, before any work.
    let err = vjp_rows_owned(&rot, Op::Transpose, Saved::Input(&x), &mut g, &mut db, None, &mut work[..1]);
    assert!(matches!(err, Err(Error::ShapeMismatch { what: "gradient workspace", .. })));
    let err = vjp_rows_owned(&rot, Op::Transpose, Saved::Output(&x), &mut g, &mut db, Some(&mut ds), &mut work);
    assert_eq!(err, Err(Error::SingularScale { index: 1, value: 0.0 }));
    let err = vjp_rows_owned(&rot, Op::Inverse, Saved::Input(&x), &mut g, &mut db, None, &mut work);
    assert!(matches!(err, Err(Error::InvalidArgument { .. })));
    // Inverse operators and quasi rotations from the output are refused.
    let err = vjp_rows(&rot, Op::Inverse, Saved::Input(&x), &mut g, &mut db, None, &mut work);
    assert!(matches!(err, Err(Error::InvalidArgument { .. })));
    let q = RotationBuf::from_quasi(Layout::Tree, 3, &[1.0, 0.0, 0.0, 1.0, 1.0, 0.1, 0.0, 1.0], None).unwrap();
    let err = vjp_rows(&q.as_rotation(), Op::Transpose, Saved::Output(&x), &mut g, &mut db, None, &mut work);
    assert!(matches!(err, Err(Error::InvalidArgument { .. })));
    assert_eq!(g, g0);
    assert_eq!(db, [Block::default(); 2]);
    assert_eq!(ds, [0.0; 3]);
    // The chain rules and the penalty name their bad values too.
    let mut out = [0.0; 2];
    let err = angle_param_grads(AngleMap::PiTanh, &[0.0, f64::INFINITY], &db, &mut out);
    assert!(matches!(err, Err(Error::NonFinite { index: 1, .. })));
    assert!(matches!(quasi_param_grads(&db, &mut out), Err(Error::ShapeMismatch { .. })));
    let err = penalty_grad(&db, f64::NAN, &mut [Block::default(); 2]);
    assert!(matches!(err, Err(Error::NonFinite { what: "penalty weight lambda", .. })));
    // An empty batch changes nothing.
    vjp_rows(&rot, Op::Transpose, Saved::Input(&[]), &mut [], &mut db, Some(&mut ds), &mut []).unwrap();
    assert_eq!(db, [Block::default(); 2]);
}

/// `d = 1`: no blocks, only the scaling (if any) and the input gradient.
#[test]
fn dimension_one() {
    for scaled in [false, true] {
        for op in [Op::Forward, Op::Transpose] {
            let c = Case {
                layout: Layout::Tree,
                d: 1,
                mode: Mode::Strict(AngleMap::PiTanh),
                scaled,
                op,
                from_output: true,
                params: vec![],
                scale: scaled.then(|| vec![1.5]),
                x: vec![0.5, -2.0, 3.0],
                gy: vec![1.0, 2.0, -1.0],
            };
            check_case::<f64>(&c).unwrap();
            check_case::<f32>(&c).unwrap();
            let (_, ds, dx) = c.analytic::<f64>();
            let s = if scaled { 1.5 } else { 1.0 };
            assert_eq!(dx, vec![s, 2.0 * s, -s]);
            assert_eq!(ds, if scaled { vec![0.5 - 4.0 - 3.0] } else { vec![] });
        }
    }
}
