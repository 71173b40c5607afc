//! Kernel benchmark: forward application of the rotation for each layout,
//! scalar type and batch layout, as a ratio to a plain copy of the same
//! data, and the backward (VJP) of the tree as a ratio to its forward.
//!
//! `cargo bench -p qgoft-math --bench kernels [-- --quick]`
//!
//! Every time is the best of several repetitions; every figure printed is a
//! ratio of two times measured in this run (the nanoseconds per element are
//! shown for scale only).

use qgoft_math::grad::{vjp_rows, workspace_len, Saved};
use qgoft_math::{Block, Layout, Op, Real};
use std::hint::black_box;
use std::time::Instant;

mod common;
use common::{best, data, rotation};

/// Time of a copy of `len` scalars.
fn copy_time<T: Real>(len: usize, reps: usize) -> f64 {
    let src = data::<T>(len, 2);
    let mut dst = vec![T::zero(); len];
    best(reps, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&mut dst);
    })
}

struct Row {
    name: String,
    secs: f64,
    elems: usize,
    baseline: f64,
    baseline_name: &'static str,
}

impl Row {
    fn print(&self) {
        println!(
            "{:<44} {:>9.3} {:>10.2}  ({})",
            self.name,
            self.secs * 1e9 / self.elems as f64,
            self.secs / self.baseline,
            self.baseline_name
        );
    }
}

fn forward_rows<T: Real>(tag: &str, layout: Layout, n: usize, d: usize, reps: usize) -> Vec<Row> {
    let r = rotation::<T>(layout, d);
    let rot = r.as_rotation();
    let copy = copy_time::<T>(n * d, reps);
    let mut x = data::<T>(n * d, 3);
    let rows = best(reps, || rot.apply_rows(Op::Transpose, black_box(&mut x)).expect("forward"));
    let mut xc = data::<T>(n * d, 4);
    let cols = best(reps, || rot.apply_cols(Op::Transpose, black_box(&mut xc), n).expect("forward"));
    let name = |how: &str| format!("forward R^T {how:<4} {layout:<12?} {tag} n={n} d={d}");
    vec![
        Row { name: name("rows"), secs: rows, elems: n * d, baseline: copy, baseline_name: "copy" },
        Row { name: name("cols"), secs: cols, elems: n * d, baseline: copy, baseline_name: "copy" },
    ]
}

/// Best times of `f` and `g`, measured alternately so that both see the
/// same machine load.
fn best_pair(reps: usize, mut f: impl FnMut(), mut g: impl FnMut()) -> (f64, f64) {
    f();
    g();
    let (mut tf, mut tg) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let t = Instant::now();
        f();
        tf = tf.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        g();
        tg = tg.min(t.elapsed().as_secs_f64());
    }
    (tf, tg)
}

/// The backward of the tree over its forward, rows layout, from the saved
/// output (strict) and from the saved input (what quasi blocks use).
fn backward_rows<T: Real>(tag: &str, n: usize, d: usize, reps: usize) -> Vec<Row> {
    let layout = Layout::Tree;
    let r = rotation::<T>(layout, d);
    let rot = r.as_rotation();
    let x = data::<T>(n * d, 3);
    let mut y = x.clone();
    rot.apply_rows(Op::Transpose, &mut y).expect("forward");
    let mut xf = x.clone();
    let mut g = data::<T>(n * d, 5);
    let mut db = vec![Block::default(); d - 1];
    let mut out = Vec::new();
    for (how, saved) in [("from output", Saved::Output(&y[..])), ("from input", Saved::Input(&x[..]))] {
        let mut work = vec![T::zero(); workspace_len(&rot, saved)];
        let (fwd, secs) = best_pair(
            reps,
            || rot.apply_rows(Op::Transpose, black_box(&mut xf)).expect("forward"),
            || vjp_rows(&rot, Op::Transpose, saved, black_box(&mut g), &mut db, None, &mut work).expect("backward"),
        );
        out.push(Row {
            name: format!("backward {how:<11} {layout:<10?} {tag} n={n} d={d}"),
            secs,
            elems: n * d,
            baseline: fwd,
            baseline_name: "forward; target <= 2.0 from output",
        });
    }
    out
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 2 } else { 5 };
    let n = 4096;
    println!("{:<44} {:>9} {:>10}", "kernel", "ns/elem", "ratio");
    let mut rows = Vec::new();
    for (layout, d) in [(Layout::Tree, 768), (Layout::Chain, 768), (Layout::Full, 64)] {
        rows.extend(forward_rows::<f32>("f32", layout, n, d, reps));
        rows.extend(forward_rows::<f64>("f64", layout, n, d, reps));
    }
    // More repetitions: the ratio is of two best times on a loaded machine.
    rows.extend(backward_rows::<f32>("f32", n, 768, 4 * reps));
    rows.extend(backward_rows::<f64>("f64", n, 768, 4 * reps));
    for r in &rows {
        r.print();
    }
}
