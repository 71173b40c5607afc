//! GEMM throughput of the backend behind `Tensor::matmul*`, as ratios
//! measured in one run: transposed variants against `A B`, two threads
//! against one, and the `gemm` crate against `matrixmultiply` (whose thread
//! count comes from `MATMUL_NUM_THREADS`, default the physical cores).
//!
//! Run with `cargo bench -p qgoft-nn --bench gemm`.

use std::hint::black_box;
use std::time::Instant;

use qgoft_nn::Rng;
use qgoft_nn::linalg::{Trans, gemm, set_num_threads};

fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let mut rng = Rng::new(0);
    println!(
        "{:>16} {:>10} {:>8} {:>8} {:>10} {:>14}",
        "m x k x n", "NN GF/s", "NT/NN", "TN/NN", "2thr/1thr", "gemm/mm-crate"
    );
    for &(m, k, n) in &[(256usize, 256usize, 256usize), (768, 768, 768), (1024, 768, 768)] {
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let mut run = |ta, tb, threads| {
            set_num_threads(threads);
            best_of(5, || gemm(m, k, n, black_box(&a), ta, black_box(&b), tb, &mut c, false))
        };
        let nn1 = run(Trans::N, Trans::N, 1);
        let nn2 = run(Trans::N, Trans::N, 2);
        let nt2 = run(Trans::N, Trans::T, 2);
        let tn2 = run(Trans::T, Trans::N, 2);
        let mut c2 = vec![0.0f32; m * n];
        let mm = best_of(5, || {
            // SAFETY: the pointers and row-major strides describe the m x k,
            // k x n and m x n buffers allocated above.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c2.as_mut_ptr(),
                    n as isize,
                    1,
                )
            }
        });
        println!(
            "{:>16} {:>10.1} {:>8.2} {:>8.2} {:>10.2} {:>14.2}",
            format!("{m}x{k}x{n}"),
            flops / nn2 / 1e9,
            nn2 / nt2,
            nn2 / tn2,
            nn1 / nn2,
            mm / nn2
        );
    }
    set_num_threads(0);
    println!("(ratios > 1 mean the first-named variant is faster)");
}
