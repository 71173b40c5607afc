use qgoft_math::grad::{Saved, Workspace};
use qgoft_math::{AngleMap, Block, Layout, Op, RotationBuf};
use qgoft_nn::linalg::{Trans, gemm};
use std::time::Instant;
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut b = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64());
    }
    b * 1e3
}
fn main() {
    for &(n, d, m) in &[(1024usize, 768usize, 768usize), (256, 4096, 4096), (4096, 128, 128)] {
        let p: Vec<f32> = (0..d - 1).map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5).collect();
        let r = RotationBuf::from_angles(Layout::Tree, d, AngleMap::PiTanh, &p, None).unwrap();
        let rot = r.as_rotation();
        let x: Vec<f32> = (0..n * d).map(|i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5).collect();
        let w: Vec<f32> = (0..m * d).map(|i| ((i * 7907 % 1000) as f32) / 1000.0 - 0.5).collect();
        let gy: Vec<f32> = (0..n * m).map(|i| ((i * 31 % 977) as f32) / 977.0 - 0.5).collect();
        let mut y = vec![0f32; n * m];
        let mut dx = vec![0f32; n * d];
        let mut z = x.clone();
        let reps = 20;
        let g1 = best(reps, || gemm(n, d, m, &x, Trans::N, &w, Trans::T, &mut y, false));
        let g2 = best(reps, || gemm(n, m, d, &gy, Trans::N, &w, Trans::N, &mut dx, false));
        let cp = best(reps, || z.copy_from_slice(&x));
        let fw = best(reps, || {
            z.copy_from_slice(&x);
            rot.apply_rows(Op::Transpose, &mut z).unwrap()
        });
        let mut ws = Workspace::new();
        let mut db = vec![Block::default(); d - 1];
        let mut g = dx.clone();
        let bw = best(reps, || {
            g.copy_from_slice(&dx);
            ws.vjp_rows(&rot, Op::Transpose, Saved::Output(&z), &mut g, &mut db, None).unwrap()
        });
        println!(
            "{n},{d},{m}: gemm fwd {g1:.3} ms, gemm bwd {g2:.3}, copy {cp:.3}, copy+fwd {fw:.3}, copy+vjp {bw:.3}; rot share of 2 gemms {:.1}%",
            100.0 * (fw + bw - cp) / (g1 + g2)
        );
    }
}
