//! A tour of `qgoft-math`: build a tree rotation, adapt a weight, measure it.
//!
//! `cargo run --release -p qgoft-math --example tour`

use qgoft_math::metrics::{max_cosine_change, orthogonality_error};
use qgoft_math::{AngleMap, Layout, Op, RotationBuf};

fn main() -> Result<(), qgoft_math::Error> {
    println!(
        "{:>6} {:>6} {:>10} {:>14} {:>14} {:>14}",
        "layout", "d", "rotations", "|R^T R - I|_F", "target", "max dcos(W)"
    );
    for layout in [Layout::Chain, Layout::Tree, Layout::Full] {
        for d in [16usize, 64, 256] {
            let k = layout.num_rotations(d);
            let params: Vec<f32> = (0..k).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let r = RotationBuf::from_angles(layout, d, AngleMap::PiTanh, &params, None)?;
            let dense = r.to_dense();
            let err = orthogonality_error(&dense, d)?.frobenius;
            let m = 8;
            let w: Vec<f32> = (0..m * d).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
            let mut merged = w.clone();
            r.as_rotation().apply_rows(Op::Forward, &mut merged)?;
            let dcos = max_cosine_change(&w, &merged, d)?;
            // DESIGN targets: 2u sqrt(d) for chain and tree, 2u d for the full layout.
            let u = f32::EPSILON / 2.0;
            let bound = if layout == Layout::Full { 2.0 * u * d as f32 } else { 2.0 * u * (d as f32).sqrt() };
            println!("{:>6} {:>6} {:>10} {:>14.3e} {:>14.3e} {:>14.3e}", format!("{layout:?}"), d, k, err, bound, dcos);
        }
    }
    Ok(())
}
