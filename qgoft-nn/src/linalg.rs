//! Matrix products (GEMM) and the small dense solves the baselines need.
//!
//! Products use the `gemm` crate, which takes strides for both operands, so
//! `A B`, `A B^T` and `A^T B` run without materialising a transpose, and an
//! explicit thread count rather than an environment variable.
//!
//! Choice of backend (measured on the 2-core development machine, f32, best
//! of 7, GFLOP/s, 1 thread / 2 threads; runs vary by about 30 %):
//!
//! | size (m x k x n) | matrixmultiply 0.3 | gemm 0.19 | nalgebra 0.35 |
//! | --- | --- | --- | --- |
//! | 768 x 768 x 768 | 64-84 / 86-91 | 69-104 / 69-106 | 93-104 / 97-104 |
//! | 1024 x 768 x 768 | 89-93 / 89-94 | 65-100 / 66-101 | 74-94 / 71-91 |
//!
//! The three are within noise of one another (nalgebra calls matrixmultiply
//! internally); `gemm` was chosen for its explicit `Parallelism` argument and
//! strided operands. The thread count is a process-wide setting,
//! [`set_num_threads`]; results are bit-reproducible for a fixed count.
//! `benches/gemm.rs` prints the ratios: `A B^T` and `A^T B` run at
//! 0.9-1.5x the speed of `A B`; two threads ran at 0.76-1.03x of one thread
//! on that machine while other jobs kept both cores busy, so measure on
//! an idle machine before relying on threading.
//!
//! The crate's `x86-v4` feature is on: its AVX-512 kernels are chosen at run
//! time on processors that have them (the AVX2 ones otherwise). On an Intel
//! Xeon with two full-width FMA units, the 768^3 product on both cores went
//! from 0.46 to 0.69 of the machine's two-core FMA peak
//! (`cargo bench -p qgoft-math --bench limits`), and the frozen layer's two
//! products at (1024, 768, 768) from 15.1 ms to 10.7 ms (`--bench adapter`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The machine's available parallelism, read on first use.
static DEFAULT_THREADS: OnceLock<usize> = OnceLock::new();

/// Products with fewer multiply-adds than this run on one thread.
const PARALLEL_THRESHOLD: usize = 1 << 18;

/// Sets the number of threads GEMM may use (`0` restores the default, the
/// machine's available parallelism).
///
/// ```
/// qgoft_nn::linalg::set_num_threads(1);
/// assert_eq!(qgoft_nn::linalg::num_threads(), 1);
/// qgoft_nn::linalg::set_num_threads(0);
/// ```
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n, Ordering::Relaxed);
}

/// The number of threads GEMM uses.
///
/// ```
/// assert!(qgoft_nn::linalg::num_threads() >= 1);
/// ```
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        // Asked once: on Linux the answer reads the cgroup's CPU quota from
        // files, which costs system calls on every GEMM otherwise.
        0 => *DEFAULT_THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        n => n,
    }
}

/// Keeps freed memory in the process for reuse where the C library's
/// allocator would hand it back to the system; returns whether the setting
/// was applied (glibc on Linux; elsewhere nothing is done and it returns
/// `false`).
///
/// A training step allocates and frees buffers of the same sizes every
/// step (activations, gradients, copies of the batch). glibc serves a block
/// above its mmap threshold (128 KiB at first, raised adaptively up to
/// 32 MiB) with a fresh mapping, and unmaps the heap's free top above its
/// trim threshold, so every step faults in and zeroes its multi-MiB buffers
/// again, one 4 KiB page at a time. This fixes the mmap threshold at its
/// largest value (32 MiB) and raises the trim threshold to 1 GiB, so those
/// buffers come from, and return to, the heap. Measured on the 2-core
/// development machine (AMD EPYC): one forward + backward step of a frozen
/// 128 x 128 linear layer on 4096 rows went from 5.2 ms to 2.1 ms. The cost
/// is that the process keeps its peak heap. Call it once at start-up; the
/// `qgoft` binary and the benchmarks do.
///
/// ```
/// let applied = qgoft_nn::linalg::retain_freed_memory();
/// assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
/// ```
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        unsafe extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        // glibc's <malloc.h>.
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_THRESHOLD: c_int = -3;
        // SAFETY: `mallopt` only sets the allocator's parameters (under its
        // own lock) and reports through its return value; 32 MiB is
        // glibc's largest accepted mmap threshold on 64-bit targets.
        let (a, b) = unsafe { (mallopt(M_MMAP_THRESHOLD, 32 << 20), mallopt(M_TRIM_THRESHOLD, 1 << 30)) };
        a == 1 && b == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Whether an operand is used as stored (`N`) or transposed (`T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trans {
    /// As stored.
    N,
    /// Transposed (read through strides, never copied).
    T,
}

/// `C (+)= op(A) op(B)` on row-major buffers, with `op(A)` m x k and `op(B)` k x n.
///
/// `A` is stored m x k (`Trans::N`) or k x m (`Trans::T`); likewise `B` is
/// stored k x n or n x k. With `accumulate` the product is added to `C`,
/// otherwise `C` is overwritten.
///
/// # Panics
/// If a buffer is shorter than its dimensions require.
///
/// ```
/// use qgoft_nn::linalg::{gemm, Trans};
/// let a = [1.0, 2.0, 3.0, 4.0]; // 2 x 2
/// let b = [1.0, 0.0, 0.0, 1.0];
/// let mut c = [0.0; 4];
/// gemm(2, 2, 2, &a, Trans::T, &b, Trans::N, &mut c, false);
/// assert_eq!(c, [1.0, 3.0, 2.0, 4.0]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], ta: Trans, b: &[f32], tb: Trans, c: &mut [f32], accumulate: bool) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "gemm buffers too short for {m}x{k}x{n}");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // (column stride, row stride) of each operand as the m x k / k x n matrix it represents.
    let (a_cs, a_rs) = if ta == Trans::N { (1, k as isize) } else { (m as isize, 1) };
    let (b_cs, b_rs) = if tb == Trans::N { (1, n as isize) } else { (k as isize, 1) };
    let threads = num_threads();
    let parallelism = if threads > 1 && m * k * n >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the strides above address exactly the m x k, k x n and m x n
    // elements of the three buffers, whose lengths were checked; `c` does not
    // alias `a` or `b` (it is a distinct `&mut`).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Inverse of a small dense `n x n` matrix by LU with partial pivoting (in `f64`).
///
/// # Errors
/// [`Error::InvalidArgument`] if the matrix is singular to working precision
/// (the message gives the pivot).
///
/// ```
/// let inv = qgoft_nn::linalg::inverse(2, &[2.0, 0.0, 0.0, 4.0])?;
/// assert_eq!(inv, vec![0.5, 0.0, 0.0, 0.25]);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn inverse(n: usize, a: &[f64]) -> Result<Vec<f64>> {
    assert_eq!(a.len(), n * n, "inverse needs an n x n matrix");
    let mut lu = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n).map(|k| if k / n == k % n { 1.0 } else { 0.0 }).collect();
    let scale = a.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE);
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| lu[i * n + col].abs().total_cmp(&lu[j * n + col].abs())).unwrap_or(col);
        let p = lu[piv * n + col];
        if p.abs() <= scale * f64::EPSILON * n as f64 {
            return Err(Error::invalid("matrix to invert (singular pivot)", format!("{p:e} in column {col}")));
        }
        if piv != col {
            for j in 0..n {
                lu.swap(piv * n + j, col * n + j);
                inv.swap(piv * n + j, col * n + j);
            }
        }
        for j in 0..n {
            lu[col * n + j] /= p;
            inv[col * n + j] /= p;
        }
        for i in 0..n {
            if i != col {
                let f = lu[i * n + col];
                if f != 0.0 {
                    for j in 0..n {
                        lu[i * n + j] -= f * lu[col * n + j];
                        inv[i * n + j] -= f * inv[col * n + j];
                    }
                }
            }
        }
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_times_matrix_is_identity() {
        let n = 5;
        let mut rng = crate::Rng::new(4);
        let a: Vec<f64> = (0..n * n).map(|k| rng.next_f64() - 0.5 + if k / n == k % n { 2.0 } else { 0.0 }).collect();
        let inv = inverse(n, &a).unwrap();
        for i in 0..n {
            for j in 0..n {
                let s: f64 = (0..n).map(|p| a[i * n + p] * inv[p * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-12 * n as f64, "({i},{j}) {s}");
            }
        }
        assert!(inverse(2, &[1.0, 2.0, 2.0, 4.0]).is_err());
    }

    #[test]
    fn accumulate_adds_the_product() {
        // Several of the kernel's register blocks natively; under Miri, which
        // interprets every operation, a size that still has partial blocks.
        let (m, k, n) = if cfg!(miri) { (13, 5, 11) } else { (96, 64, 80) };
        let mut rng = crate::Rng::new(5);
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let mut c1 = vec![0.0; m * n];
        let mut c2 = vec![1.0; m * n];
        gemm(m, k, n, &a, Trans::N, &b, Trans::N, &mut c1, false);
        gemm(m, k, n, &a, Trans::N, &b, Trans::N, &mut c2, true);
        for (x, y) in c1.iter().zip(&c2) {
            assert!((x + 1.0 - y).abs() <= 1e-5, "{x} {y}");
        }
    }

    /// Every transposition against a plain triple loop, at sizes small enough
    /// for Miri to check the `unsafe` call's strides and bounds.
    #[test]
    fn every_transposition_matches_the_definition() {
        let (m, k, n) = (3, 4, 5);
        let mut rng = crate::Rng::new(6);
        let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let want: Vec<f32> =
            (0..m * n).map(|i| (0..k).map(|p| a[(i / n) * k + p] * b[p * n + i % n]).sum::<f32>()).collect();
        for (ta, tb) in [(Trans::N, Trans::N), (Trans::T, Trans::N), (Trans::N, Trans::T), (Trans::T, Trans::T)] {
            let lhs = if ta == Trans::N { &a } else { &at };
            let rhs = if tb == Trans::N { &b } else { &bt };
            let mut c = vec![0.0; m * n];
            gemm(m, k, n, lhs, ta, rhs, tb, &mut c, false);
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-5, "{ta:?} {tb:?}: {x} vs {y}");
            }
        }
    }
}
