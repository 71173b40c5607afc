//! The reference fixtures reproduced by `qgoft-math`: the rotation, the
//! forward output and the merged weight, within relative 1e-5 in `f32`.

use qgoft_math::{Op, RotationBuf};
use qgoft_tests::{rel_error, Fixture};

const TOL: f64 = 1e-5;

/// `y = x R W^T + b` computed the adapter's way: rows of `x` through `R^T`,
/// then the frozen layer.
fn forward(f: &Fixture, r: &RotationBuf<f32>) -> Vec<f32> {
    let mut xr = f.x.clone();
    r.as_rotation().apply_rows(Op::Transpose, &mut xr).unwrap();
    let mut y = vec![0f32; f.batch * f.m];
    for n in 0..f.batch {
        for o in 0..f.m {
            let dot: f64 = (0..f.d).map(|i| xr[n * f.d + i] as f64 * f.weight[o * f.d + i] as f64).sum();
            y[n * f.m + o] = (dot + f.bias[o] as f64) as f32;
        }
    }
    y
}

#[test]
fn every_fixture_rotation_forward_and_merge() {
    let fixtures = Fixture::all();
    assert_eq!(fixtures.len(), 27);
    for f in &fixtures {
        let r = f.rotation();
        let dense = r.to_dense();
        let e = rel_error(&dense, &f.rotation);
        assert!(e <= TOL, "{}: rotation relative error {e:e}", f.name);

        let y = forward(f, &r);
        let e = rel_error(&y, &f.y);
        assert!(e <= TOL, "{}: forward relative error {e:e}", f.name);

        let mut w = f.weight.clone();
        r.as_rotation().merge(&mut w).unwrap();
        let e = rel_error(&w, &f.merged_weight);
        assert!(e <= TOL, "{}: merged weight relative error {e:e}", f.name);
    }
}
