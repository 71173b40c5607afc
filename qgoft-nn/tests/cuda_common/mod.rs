//! Helpers shared by the GPU tests and the host emulation of the kernels:
//! inputs, the f64 CPU reference through `qgoft-math`, the error measure.
#![allow(dead_code)]

use qgoft_math::{AngleMap, Layout, Op, RotationBuf};
use qgoft_nn::cuda::AdapterMode;

/// Relative tolerance of every comparison (f32 on the device, f64 reference).
pub const TOL: f64 = 1e-5;

/// Every adapter mode, both angle maps.
pub const MODES: [AdapterMode; 5] = [
    AdapterMode::Goft(AngleMap::PiTanh),
    AdapterMode::Goft(AngleMap::Raw),
    AdapterMode::GoftScaled(AngleMap::PiTanh),
    AdapterMode::GoftScaled(AngleMap::Raw),
    AdapterMode::Qgoft,
];

/// A small deterministic generator of values in [-1, 1), rounded to f32 so
/// that the f32 inputs of the device are exactly the f64 reference's.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        (2.0 * u - 1.0) as f32 as f64
    }

    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.next()).collect()
    }
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Norm-wise relative error `|got - want| / |want|` (absolute when `want = 0`).
pub fn rel(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let num: f64 = got.iter().zip(want).map(|(g, c)| (*g as f64 - c).powi(2)).sum::<f64>().sqrt();
    let den: f64 = want.iter().map(|c| c * c).sum::<f64>().sqrt();
    if den == 0.0 { num } else { num / den }
}

pub fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite result");
    let e = rel(got, want);
    assert!(e <= TOL, "{what}: relative error {e:.3e} > {TOL:.0e}");
}

/// Parameters and scaling for a mode: raw angles in [-1, 1), quasi blocks
/// within 0.3 of the identity, scaling in [0.5, 1.5).
pub fn params_for(g: &mut Lcg, layout: Layout, d: usize, mode: AdapterMode) -> (Vec<f64>, Option<Vec<f64>>) {
    let p = layout.num_rotations(d);
    let params = if mode.is_quasi() {
        (0..4 * p)
            .map(|i| (if i % 4 == 0 || i % 4 == 3 { 1.0 } else { 0.0 }) + 0.3 * g.next())
            .map(|v| v as f32 as f64)
            .collect()
    } else {
        g.vec(p)
    };
    let scale = mode.has_scale().then(|| (0..d).map(|_| (1.0 + 0.5 * g.next()) as f32 as f64).collect());
    (params, scale)
}

pub fn cpu_rotation(layout: Layout, d: usize, mode: AdapterMode, p: &[f64], s: Option<&[f64]>) -> RotationBuf<f64> {
    match mode {
        AdapterMode::Goft(map) | AdapterMode::GoftScaled(map) => {
            RotationBuf::from_angles(layout, d, map, p, s).unwrap()
        }
        AdapterMode::Qgoft => RotationBuf::from_quasi(layout, d, p, None).unwrap(),
    }
}

/// Rows `R^T x_r` (`forward = false`) or `R x_r` in f64.
pub fn cpu_rows(
    layout: Layout,
    d: usize,
    mode: AdapterMode,
    p: &[f64],
    s: Option<&[f64]>,
    x: &[f64],
    forward: bool,
) -> Vec<f64> {
    let mut z = x.to_vec();
    let op = if forward { Op::Forward } else { Op::Transpose };
    cpu_rotation(layout, d, mode, p, s).as_rotation().apply_rows(op, &mut z).unwrap();
    z
}

/// Central differences of `L(p, s) = sum(G * (X R))` in f64: the parameter
/// gradient and (with a scaling) the scale gradient.
pub fn fd_grads(
    layout: Layout,
    d: usize,
    mode: AdapterMode,
    p: &[f64],
    s: Option<&[f64]>,
    x: &[f64],
    gz: &[f64],
) -> (Vec<f64>, Option<Vec<f64>>) {
    let h = 1e-6;
    let loss = |p: &[f64], s: Option<&[f64]>| -> f64 {
        cpu_rows(layout, d, mode, p, s, x, false).iter().zip(gz).map(|(a, b)| a * b).sum()
    };
    let gp = (0..p.len())
        .map(|i| {
            let (mut hi, mut lo) = (p.to_vec(), p.to_vec());
            hi[i] += h;
            lo[i] -= h;
            (loss(&hi, s) - loss(&lo, s)) / (2.0 * h)
        })
        .collect();
    let gs = s.map(|s| {
        (0..d)
            .map(|i| {
                let (mut hi, mut lo) = (s.to_vec(), s.to_vec());
                hi[i] += h;
                lo[i] -= h;
                (loss(p, Some(&hi)) - loss(p, Some(&lo))) / (2.0 * h)
            })
            .collect()
    });
    (gp, gs)
}

/// The penalty `sum (a b + c e)^2` and `lambda` times its gradient, in f64.
pub fn cpu_penalty(blocks: &[f64], lambda: f64) -> (f64, Vec<f64>) {
    let pen = blocks.chunks(4).map(|b| (b[0] * b[1] + b[2] * b[3]).powi(2)).sum();
    let grad = blocks
        .chunks(4)
        .flat_map(|b| {
            let f = 2.0 * lambda * (b[0] * b[1] + b[2] * b[3]);
            [f * b[1], f * b[0], f * b[3], f * b[2]]
        })
        .collect();
    (pen, grad)
}
