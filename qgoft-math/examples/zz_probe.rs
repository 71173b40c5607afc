use qgoft_math::{AngleMap, Layout, Op, RotationBuf};
use std::time::Instant;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let d: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(768);
    let n: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(1024);
    let reps: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(50);
    let p: Vec<f32> = (0..d - 1).map(|i| ((i * 37 % 101) as f32 / 101.0) - 0.5).collect();
    let r = RotationBuf::from_angles(Layout::Tree, d, AngleMap::PiTanh, &p, None).unwrap();
    let rot = r.as_rotation();
    let mut x: Vec<f32> = (0..n * d).map(|i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5).collect();
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        rot.apply_rows(Op::Transpose, &mut x).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    let mut bestc = f64::MAX;
    for _ in 0..(if std::env::var("ROWS").is_ok() { 0 } else { reps }) {
        let t = Instant::now();
        rot.apply_cols(Op::Transpose, &mut x, n).unwrap();
        bestc = bestc.min(t.elapsed().as_secs_f64());
    }
    if std::env::var("BWD").is_ok() {
        let y = x.clone();
        let g0: Vec<f32> = (0..n * d).map(|i| ((i * 31 % 977) as f32) / 977.0 - 0.5).collect();
        let mut ws = qgoft_math::grad::Workspace::new();
        let mut db = vec![qgoft_math::Block::default(); d - 1];
        let mut bb = f64::MAX;
        for _ in 0..reps {
            let mut g = g0.clone();
            let t = Instant::now();
            ws.vjp_rows(&rot, Op::Transpose, qgoft_math::Saved::Output(&y), &mut g, &mut db, None).unwrap();
            bb = bb.min(t.elapsed().as_secs_f64());
        }
        println!("bwd d={d} n={n} {:.3} ns/el", bb * 1e9 / (n * d) as f64);
    }
    let fl = (n * (d - 1) * 6) as f64;
    println!(
        "d={d} n={n} rows {:.3} ns/el {:.1} GFLOP/s | cols {:.3} ns/el {:.1} GFLOP/s",
        best * 1e9 / (n * d) as f64,
        fl / best / 1e9,
        bestc * 1e9 / (n * d) as f64,
        fl / bestc / 1e9
    );
}
#[allow(dead_code)]
fn bwd() {}
