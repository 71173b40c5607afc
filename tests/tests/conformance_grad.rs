//! The reference gradients reproduced by `qgoft_math::grad`: `grad_x`,
//! `grad_angle_params`, `grad_scaler` and `grad_blocks` of every fixture,
//! within relative 1e-4 in `f32`.
//!
//! The fixtures use the tree layout, `theta = pi * tanh(p)`, the row form
//! `Y = X R W^T + b` and `L = sum(Y * grad_y)`, so `dL/d(X R) = grad_y W`; the
//! VJP of the rotation maps that to `grad_x` and the parameter gradients.

use qgoft_math::grad::{angle_param_grads, quasi_param_grads, vjp_rows, workspace_len, Saved};
use qgoft_math::{AngleMap, Block, Op};
use qgoft_tests::{rel_error, Fixture};

const TOL: f64 = 1e-4;

/// `grad_y W` (batch x d), the gradient of `L` with respect to `X R`.
fn upstream(f: &Fixture) -> Vec<f32> {
    let mut g = vec![0f32; f.batch * f.d];
    for n in 0..f.batch {
        for i in 0..f.d {
            let dot: f64 = (0..f.m).map(|o| f.grad_y[n * f.m + o] as f64 * f.weight[o * f.d + i] as f64).sum();
            g[n * f.d + i] = dot as f32;
        }
    }
    g
}

/// The gradients `(grad_x, parameter gradient, grad_scaler)` from the saved
/// input or (strict modes) the saved output.
fn gradients(f: &Fixture, from_output: bool) -> (Vec<f32>, Vec<f32>, Option<Vec<f32>>) {
    let r = f.rotation();
    let rot = r.as_rotation();
    let mut xr = f.x.clone();
    rot.apply_rows(Op::Transpose, &mut xr).unwrap();
    let saved = if from_output { Saved::Output(&xr[..]) } else { Saved::Input(&f.x[..]) };
    let mut g = upstream(f);
    let mut db = vec![Block::default(); f.d - 1];
    let mut ds = f.scaler.as_ref().map(|_| vec![0f32; f.d]);
    let mut work = vec![0f32; workspace_len(&rot, saved)];
    vjp_rows(&rot, Op::Transpose, saved, &mut g, &mut db, ds.as_deref_mut(), &mut work)
        .unwrap_or_else(|e| panic!("{}: {e}", f.name));
    let params = match f.mode.as_str() {
        "qgoft" => {
            let mut out = vec![0f32; 4 * (f.d - 1)];
            quasi_param_grads(&db, &mut out).unwrap();
            out
        }
        _ => {
            let p = f.angle_params.as_ref().unwrap();
            let mut out = vec![0f32; p.len()];
            angle_param_grads(AngleMap::PiTanh, p, &db, &mut out).unwrap();
            out
        }
    };
    (g, params, ds)
}

#[test]
fn every_fixture_gradient() {
    let fixtures = Fixture::all();
    assert_eq!(fixtures.len(), 27);
    let mut worst: f64 = 0.0;
    for f in &fixtures {
        let strict = f.mode != "qgoft";
        for from_output in [false, true].into_iter().filter(|o| !o || strict) {
            let how = if from_output { "from the output" } else { "from the input" };
            let (gx, gp, gs) = gradients(f, from_output);
            let mut check = |what: &str, got: &[f32], want: &[f32]| {
                let e = if want.is_empty() { 0.0 } else { rel_error(got, want) };
                assert!(e <= TOL, "{} ({how}): {what} relative error {e:e}", f.name);
                worst = worst.max(e);
            };
            check("grad_x", &gx, &f.grad_x);
            match f.mode.as_str() {
                "qgoft" => check("grad_blocks", &gp, f.grad_blocks.as_ref().unwrap()),
                _ => check("grad_angle_params", &gp, f.grad_angle_params.as_ref().unwrap()),
            }
            match (&gs, &f.grad_scaler) {
                (Some(got), Some(want)) => check("grad_scaler", got, want),
                (None, None) => {}
                _ => panic!("{}: scaling gradient present on one side only", f.name),
            }
        }
    }
    println!("largest relative error over the fixture gradients: {worst:e}");
}
