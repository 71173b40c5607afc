//! The cost of the Givens adapter on top of its frozen linear layer, as
//! ratios measured in one run with the same GEMM:
//!
//! * plain layer, forward + backward with `W` frozen: `Y = X W^T + b`, then
//!   `dX = dY W` (no `dW`);
//! * adapted layer (GOFT on the tree layout, `theta = pi tanh(p)`): the same
//!   two GEMMs plus `Z = X R` (`Rotation::apply_rows(Op::Transpose)`) and its
//!   VJP (`grad::vjp_rows` from the saved output, then `angle_param_grads`);
//!   on a batch of at least `m / 2` rows (here `(1024, 768, 768)` and
//!   `(4096, 128, 128)`) the layer instead rotates the weight's rows
//!   (`W R^T`), runs the two GEMMs with it, and takes the angle gradients
//!   from `X` and `dX` (`grad::vjp_rows_from_input`). The bare-kernel
//!   columns and the floor describe the rotated-batch evaluation.
//!
//! Both are timed through the tape (`Graph`), as training runs them, and as
//! bare kernels (GEMMs and rotation calls alone, no tape). Targets for the
//! tape ratio: <= 1.03 at (n, d, m) = (1024, 768, 768), <= 1.02 at
//! (256, 4096, 4096), <= 1.20 at (4096, 128, 128). The tape ratio is printed
//! twice: best time over best time, and the median of the ratios of
//! back-to-back pairs; a row is on target when both are.
//!
//! The last two columns are floors measured in the same run: the plain
//! layer's tape time plus the memory traffic an evaluation cannot avoid when
//! its rotation runs in passes of its own, over the plain layer's time,
//! timed on the GEMM threads over buffers of the same sizes. `floor`: the
//! rotated batch (`X` read and `Z` written forward; `Z` and `dZ` read and
//! `dX` written backward: a copy and a two-read, one-write pass). `merged`:
//! the merged weight (`W` read and `W'` written forward; `X` and `dX` read
//! backward: a copy of the weight and a two-read pass). Both are printed
//! for every shape; the one of the evaluation the layer takes (above)
//! applies. No rotation in separate passes can have a ratio below it.
//!
//! `cargo bench -p qgoft-nn --bench adapter` (add `-- --quick` for fewer
//! repetitions, `-- --threads N` to set the GEMM and rotation threads).
//! The bare-kernel columns run the rotation on one thread; the layer splits
//! its rows over the GEMM threads. Freed memory is kept in the process
//! (`linalg::retain_freed_memory`, as the `qgoft` binary does);
//! `-- --allocator-default` leaves the allocator's defaults.

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;

use qgoft_math::grad::{Saved, Workspace, angle_param_grads};
use qgoft_math::{Block, Op};
use qgoft_nn::layers::givens::ANGLE_MAP;
use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear, Module};
use qgoft_nn::linalg::{Trans, gemm, num_threads, retain_freed_memory, set_num_threads};
use qgoft_nn::{Graph, Rng, Tensor};

/// Timings of `a` and `b`, interleaved so drift hits both alike: the best
/// of `reps` of each (the least disturbed by other load on the machine),
/// and the median of the `reps` ratios `b / a` of back-to-back pairs (which
/// cancels changes of the machine's speed slower than one pair).
fn paired(reps: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64, f64) {
    a();
    b();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 0..reps {
        // Alternate which goes first, so neither always follows the other.
        let (x, y) = if i % 2 == 0 {
            let t = Instant::now();
            a();
            let x = t.elapsed().as_secs_f64();
            let t = Instant::now();
            b();
            (x, t.elapsed().as_secs_f64())
        } else {
            let t = Instant::now();
            b();
            let y = t.elapsed().as_secs_f64();
            let t = Instant::now();
            a();
            (t.elapsed().as_secs_f64(), y)
        };
        ta.push(x);
        tb.push(y);
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let mut ratios: Vec<f64> = ta.iter().zip(&tb).map(|(x, y)| y / x).collect();
    ratios.sort_by(f64::total_cmp);
    (best(&ta), best(&tb), ratios[ratios.len() / 2])
}

fn layer_step(layer: &dyn Module, x: &Tensor, gy: &Tensor) {
    let mut g = Graph::new();
    let xv = g.leaf(x.clone());
    let y = layer.forward(&mut g, xv).expect("forward");
    black_box(g.backward_from(y, gy.clone()).expect("backward"));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(t) = args.iter().position(|a| a == "--threads").and_then(|i| args.get(i + 1)) {
        set_num_threads(t.parse().expect("--threads takes a number"));
    }
    // As the `qgoft` binary does: without it, glibc maps and faults in the
    // step's multi-MiB buffers afresh every step (see the function).
    let retained = !args.iter().any(|a| a == "--allocator-default") && retain_freed_memory();
    let mut rng = Rng::new(0);
    println!(
        "Givens adapter (GOFT, tree) over the frozen linear layer, forward + backward, best times, {} threads, \
         freed memory {}",
        num_threads(),
        if retained { "retained (glibc mallopt)" } else { "as the allocator does by default" }
    );
    println!(
        "{:>18} {:>11} {:>11} {:>8} {:>8} {:>8} {:>11} {:>11} {:>8} {:>10} {:>8} {:>8}",
        "n, d, m",
        "plain (ms)",
        "adapted",
        "ratio",
        "median",
        "target",
        "bare plain",
        "bare adapt",
        "ratio",
        "rot. share",
        "floor",
        "merged"
    );
    for &(n, d, m, target) in &[(1024usize, 768usize, 768usize, 1.03), (256, 4096, 4096, 1.02), (4096, 128, 128, 1.20)]
    {
        let reps = if quick { 5 } else { 41 };
        let base = Linear::new("fc", d, m, true, &mut rng);
        base.freeze();
        let adapted = GivensLinear::with_default(base.clone(), GivensConfig::default()).expect("adapter");
        let p = adapted.active().expect("active").params().clone();
        p.set(Tensor::from_fn(&[d - 1], |_| rng.uniform(-1.0, 1.0))).expect("angles");
        let x = Tensor::from_fn(&[n, d], |_| rng.uniform(-1.0, 1.0));
        let gy = Tensor::from_fn(&[n, m], |_| rng.uniform(-1.0, 1.0));
        let (plain, ad, median) = paired(reps, || layer_step(&base, &x, &gy), || layer_step(&adapted, &x, &gy));

        // The same work as bare kernels, no tape.
        let w = base.weight().value();
        let rot = adapted.active().expect("active").rotation().expect("rotation");
        let rot = rot.as_rotation();
        let (mut y, mut dx, mut z) = (vec![0f32; n * m], vec![0f32; n * d], vec![0f32; n * d]);
        let (mut y2, mut dx2) = (vec![0f32; n * m], vec![0f32; n * d]);
        let mut ws = Workspace::new();
        let mut db = vec![Block::default(); d - 1];
        let mut dp = vec![0f32; d - 1];
        let (k_plain, k_ad, _) = paired(
            reps,
            || {
                gemm(n, d, m, x.data(), Trans::N, w.data(), Trans::T, &mut y, false);
                gemm(n, m, d, gy.data(), Trans::N, w.data(), Trans::N, &mut dx, false);
                black_box((&y, &dx));
            },
            || {
                z.copy_from_slice(x.data());
                rot.apply_rows(Op::Transpose, &mut z).expect("apply");
                gemm(n, d, m, &z, Trans::N, w.data(), Trans::T, &mut y2, false);
                gemm(n, m, d, gy.data(), Trans::N, w.data(), Trans::N, &mut dx2, false);
                db.iter_mut().for_each(|b| *b = Block::default());
                ws.vjp_rows(&rot, Op::Transpose, Saved::Output(&z), &mut dx2, &mut db, None).expect("vjp");
                dp.iter_mut().for_each(|v| *v = 0.0);
                angle_param_grads(ANGLE_MAP, p.value().data(), &db, &mut dp).expect("chain rule");
                black_box((&y2, &dx2, &dp));
            },
        );
        // The unavoidable traffic of a separate rotation pass, on the GEMM threads.
        let chunk = n.div_ceil(num_threads()) * d;
        let (mut zc, mut gc) = (vec![0f32; n * d], vec![1f32; n * d]);
        let traffic = paired(
            reps,
            || {
                zc.par_chunks_mut(chunk).zip(x.data().par_chunks(chunk)).for_each(|(z, x)| z.copy_from_slice(x));
                black_box(&zc);
            },
            || {
                gc.par_chunks_mut(chunk).zip(x.data().par_chunks(chunk)).for_each(|(g, z)| {
                    g.iter_mut().zip(z).for_each(|(g, z)| *g += 0.5 * z);
                });
                black_box(&gc);
            },
        );
        let floor = (plain + traffic.0 + traffic.1) / plain;
        // The merged evaluation's traffic: the weight copied (read `W`, write
        // `W'`), then `X` and `dX` read once (the block gradients' sums).
        let merged_floor = {
            let wchunk = m.div_ceil(num_threads()) * d;
            let mut wc = vec![0f32; m * d];
            let mut sums = vec![0f32; (n * d).div_ceil(chunk)];
            let (copy, read, _) = paired(
                reps,
                || {
                    wc.par_chunks_mut(wchunk).zip(w.data().par_chunks(wchunk)).for_each(|(o, i)| o.copy_from_slice(i));
                    black_box(&wc);
                },
                || {
                    // `gc` stands in for `dX` (same size).
                    let parts = x.data().par_chunks(chunk).zip(gc.par_chunks(chunk));
                    sums.par_iter_mut().zip(parts).for_each(|(s, (x, g))| {
                        // Eight independent sums, so the pass waits on loads, not on one add chain.
                        let mut acc = [0f32; 8];
                        for (x, g) in x.chunks_exact(8).zip(g.chunks_exact(8)) {
                            acc.iter_mut().zip(x).zip(g).for_each(|((a, x), g)| *a += x * g);
                        }
                        *s = acc.iter().sum();
                    });
                    black_box(&sums);
                },
            );
            (plain + copy + read) / plain
        };
        let ratio = ad / plain;
        println!(
            "{:>18} {:>11.3} {:>11.3} {:>8.3} {:>8.3} {:>8} {:>11.3} {:>11.3} {:>8.3} {:>9.1}% {:>8.3} {:>8.3}{}",
            format!("{n}, {d}, {m}"),
            plain * 1e3,
            ad * 1e3,
            ratio,
            median,
            format!("<= {target:.2}"),
            k_plain * 1e3,
            k_ad * 1e3,
            k_ad / k_plain,
            100.0 * (k_ad - k_plain) / k_ad,
            floor,
            merged_floor,
            if ratio.max(median) <= target { "" } else { "  (above target)" }
        );
    }
}
