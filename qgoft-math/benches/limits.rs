//! The rotation kernels against the machine's own limits, all measured in
//! this run:
//!
//! * FMA peak: a register-resident loop of independent fused multiply-adds
//!   (AVX2 and, where present, AVX-512; the faster counts), one core and
//!   both cores at once;
//! * read-modify-write bandwidth: an in-place pass over a buffer far larger
//!   than the last-level cache, one core, and its two halves on both cores
//!   at once (the floor of the merge and of the streaming tree split over
//!   both cores), with a read-only pass on each for the bound of a call
//!   that checks its input before writing;
//! * GEMM (the `gemm` crate the trainer uses): `768^3` on both cores, and
//!   `4096^3` as the reference for the merge.
//!
//! Each kernel's figure is printed as a fraction of these, next to its
//! target. The streaming tree and the merge run on both storages of their
//! batch: row by row (the trainer's layout, through the row kernels'
//! register transposes) and coordinate by coordinate (structure of arrays:
//! `apply_cols`, and the merge of a weight stored column by column). Times
//! are the best of several repetitions, kernel and reference measured
//! alternately where they are compared directly.
//!
//! Where a target lies beyond what this machine allows, the row also
//! prints that bound, measured in the same run, and the target proposed in
//! its place: the stated target's share of the ideal it assumed, taken of
//! the bound. The in-cache tree is bounded by its input check (a read pass
//! that must finish before the first write) and its arithmetic at 0.75 of
//! the FMA peak (two products and two FMAs per rotation and lane, 6 flops
//! counted); the stated 0.5 of the peak is 2/3 of that ceiling. The
//! streaming tree in place and the merge are bounded by that read pass
//! plus one RMW pass; the stated target is 0.85 of the RMW bandwidth.
//!
//! `cargo bench -p qgoft-math --bench limits [-- --quick]` (`--quick`: fewer
//! repetitions and a smaller merge GEMM check, under a minute).
//!
//! The decompose / rebuild row (against nalgebra's QR) is measured by
//! `benches/decompose.rs`.

use qgoft_math::kernel::Kernel;
use qgoft_math::{Layout, Op};
use std::hint::black_box;
use std::time::Instant;

mod common;
use common::{best, best_for, data, rotation};

// ---------------------------------------------------------------------------
// Machine limits.

#[cfg(target_arch = "x86_64")]
mod peak {
    use std::arch::x86_64::*;

    /// 12 independent chains of `iters` FMAs on 256-bit registers; returns
    /// the final registers' sum so nothing is optimised away.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fma256(iters: usize) -> f32 {
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        let mut r = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for v in r.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for v in r {
            s = _mm256_add_ps(s, v);
        }
        let mut out = [0.0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn fma512(iters: usize) -> f32 {
        let a = _mm512_set1_ps(0.999_999);
        let b = _mm512_set1_ps(1e-7);
        let mut r = [_mm512_set1_ps(1.0); 16];
        for _ in 0..iters {
            for v in r.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for v in r {
            s = _mm512_add_ps(s, v);
        }
        _mm512_reduce_add_ps(s)
    }

    /// The bits of every value ORed together (a read pass at the full
    /// vector width: integer ORs reorder freely).
    #[target_feature(enable = "avx512f,avx512vl,avx2")]
    pub unsafe fn or_bits512(x: &[f32]) -> u32 {
        x.iter().fold(0u32, |a, v| a | v.to_bits())
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn or_bits256(x: &[f32]) -> u32 {
        x.iter().fold(0u32, |a, v| a | v.to_bits())
    }

    #[target_feature(enable = "avx512f,avx512vl,avx2")]
    pub unsafe fn scale512(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v *= 1.000_000_1);
    }

    #[target_feature(enable = "avx2")]
    pub unsafe fn scale256(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v *= 1.000_000_1);
    }

    /// f32 flops per second of one core: the best of the 256- and 512-bit
    /// loops (f64 is half), its name, and both figures.
    pub fn f32_flops(iters: usize, reps: usize) -> (f64, &'static str, String) {
        let mut best = (0.0, "none");
        let mut all = String::new();
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: features detected above.
            let t = super::best(reps, || {
                std::hint::black_box(unsafe { fma256(std::hint::black_box(iters)) });
            });
            best = ((iters * 12 * 8 * 2) as f64 / t, "AVX2 FMA");
            all += &format!("AVX2 {:.1}", best.0 * 1e-9);
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: feature detected above.
            let t = super::best(reps, || {
                std::hint::black_box(unsafe { fma512(std::hint::black_box(iters)) });
            });
            let f = (iters * 16 * 16 * 2) as f64 / t;
            all += &format!(", AVX-512 {:.1}", f * 1e-9);
            if f > best.0 {
                best = (f, "AVX-512 FMA");
            }
        }
        (best.0, best.1, all)
    }
}

/// `len` values of [`data`] inside a buffer, and the index where they
/// start: `off` bytes past the start of a 64-byte line.
fn on_line<T: qgoft_math::Real>(len: usize, off: usize) -> (Vec<T>, usize) {
    let size = std::mem::size_of::<T>();
    let buf = data::<T>(len + 128 / size, 3);
    let addr = buf.as_ptr() as usize;
    let at = ((64 + off - addr % 64) % 64) / size;
    (buf, at)
}

/// A read pass over `x` with the widest vectors the processor has.
fn read_pass(x: &[f32]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
        // SAFETY: features detected above.
        return unsafe { peak::or_bits512(x) };
    } else if is_x86_feature_detected!("avx2") {
        // SAFETY: feature detected above.
        return unsafe { peak::or_bits256(x) };
    }
    x.iter().fold(0u32, |a, v| a | v.to_bits())
}

/// An in-place pass `x <- 1.0000001 x` with the widest vectors the
/// processor has.
fn rmw_pass(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
        // SAFETY: features detected above.
        return unsafe { peak::scale512(x) };
    } else if is_x86_feature_detected!("avx2") {
        // SAFETY: feature detected above.
        return unsafe { peak::scale256(x) };
    }
    x.iter_mut().for_each(|v| *v *= 1.000_000_1);
}

/// Bytes per second of `x <- 1.0000001 x` in place over `x` (read + write
/// counted), one core.
fn rmw_bandwidth(x: &mut [f32], reps: usize) -> (f64, f64) {
    let t = best(reps, || rmw_pass(black_box(&mut *x)));
    ((2 * 4 * x.len()) as f64 / t, t)
}

/// How the streaming row runs.
#[derive(Clone, Copy)]
enum Streaming {
    /// `apply_rows` on one core.
    InPlace,
    /// `apply_rows_into` on one core, to a second buffer and back.
    OutOfPlace,
    /// `apply_rows` on each half of the rows, one core each.
    Split,
    /// `apply_cols` on one core: the batch stored coordinate by coordinate
    /// (`d x n`, structure of arrays).
    Columns,
    /// `apply_cols` on each half of the buffer, one core each: two batches
    /// of `n / 2` columns, each stored `d x n / 2`.
    ColumnsSplit,
}

impl Streaming {
    /// Whether the buffer's two halves run at once, one core each.
    fn both_cores(self) -> bool {
        matches!(self, Streaming::Split | Streaming::ColumnsSplit)
    }
}

/// `each` on the two halves of `buf` at once, one thread each.
fn on_halves(buf: &mut [f32], each: &(dyn Fn(&mut [f32]) + Sync)) {
    let half = buf.len().div_ceil(2);
    std::thread::scope(|s| {
        for part in buf.chunks_mut(half) {
            s.spawn(move || each(part));
        }
    })
}

/// The best times of `read`, `reference` and `kernel` on `buf` over `reps`
/// rounds, the three alternating in each round.
fn alternating(
    reps: usize,
    buf: &mut [f32],
    mut read: impl FnMut(&mut [f32]),
    mut reference: impl FnMut(&mut [f32]),
    mut kernel: impl FnMut(&mut [f32]),
) -> (f64, f64, f64) {
    let (mut t_read, mut t_ref, mut t_k) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for _ in 0..reps {
        let t = Instant::now();
        read(&mut *buf);
        t_read = t_read.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        reference(&mut *buf);
        t_ref = t_ref.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        kernel(&mut *buf);
        t_k = t_k.min(t.elapsed().as_secs_f64());
    }
    (t_read, t_ref, t_k)
}

/// The row of a streaming kernel that applied `R^T` then `R` to `len`
/// values of `f32` in `t_k` (the figure is one application's), against a
/// read-modify-write pass over them in `t_rmw`.
fn streaming_line(
    what: &str,
    kernel: Kernel,
    len: usize,
    t_rmw: f64,
    t_k: f64,
    target: &'static str,
    bound: Option<f64>,
) -> Line {
    let t_k = t_k / 2.0;
    let rate = (2 * 4 * len) as f64 / t_k;
    Line {
        what: what.into(),
        kernel,
        figure: format!("{:.2} GB/s", rate * 1e-9),
        ratio: t_rmw / t_k,
        target,
        met: t_rmw / t_k >= 0.85,
        proposed: bound.map(|b| Proposed::at_least(MEMORY_SHARE, b)),
    }
}

/// `c <- a b` with the `gemm` crate, all row-major, square `k`.
fn gemm_f32(a: &[f32], b: &[f32], c: &mut [f32], k: usize, threads: usize) {
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the three buffers hold k x k row-major matrices (checked), and
    // `c` does not alias `a` or `b`.
    assert!(a.len() == k * k && b.len() == k * k && c.len() == k * k);
    let k_ = k as isize;
    unsafe {
        gemm::gemm(
            k,
            k,
            k,
            c.as_mut_ptr(),
            1,
            k_,
            false,
            a.as_ptr(),
            1,
            k_,
            b.as_ptr(),
            1,
            k_,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

struct Line {
    what: String,
    kernel: Kernel,
    figure: String,
    ratio: f64,
    target: &'static str,
    met: bool,
    /// For a row whose target is out of reach on this machine: the bound
    /// measured in this run and the target proposed in its place.
    proposed: Option<Proposed>,
}

/// A target in place of one that the machine's own limits put out of reach:
/// the stated target's share of the ideal it assumed (the arithmetic
/// at its ceiling, or the data moved once at the RMW bandwidth), applied to
/// the bound measured in the same run. `bound` is in the row's units: the
/// most a kernel can reach where a higher ratio is better, the least it can
/// take where a lower one is.
struct Proposed {
    bound: f64,
    target: f64,
    higher_is_better: bool,
}

impl Proposed {
    /// At least `share` of `bound`.
    fn at_least(share: f64, bound: f64) -> Proposed {
        Proposed { bound, target: share * bound, higher_is_better: true }
    }

    /// At most `bound / share`.
    fn at_most(share: f64, bound: f64) -> Proposed {
        Proposed { bound, target: bound / share, higher_is_better: false }
    }

    fn met(&self, ratio: f64) -> bool {
        if self.higher_is_better {
            ratio >= self.target
        } else {
            ratio <= self.target
        }
    }

    fn describe(&self) -> String {
        let op = if self.higher_is_better { ">=" } else { "<=" };
        let digits = if self.bound < 0.1 { 4 } else { 2 };
        format!("{op} {:.*} (bound {:.*})", digits, self.target, digits, self.bound)
    }
}

/// The share of the ideal that the stated compute-bound target asks for:
/// 0.5 of the FMA peak where a rotation's arithmetic alone (two products
/// and two FMAs per lane, 6 flops counted) allows 0.75.
const COMPUTE_SHARE: f64 = 0.5 / 0.75;

/// The share of the ideal that the stated memory-bound targets ask for:
/// 0.85 of the RMW bandwidth.
const MEMORY_SHARE: f64 = 0.85;

/// Every available kernel, portable (the compiler's own vectorisation of
/// the baseline target) first.
fn kernels() -> Vec<Kernel> {
    Kernel::ALL.into_iter().filter(|k| k.is_available()).collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 3 } else { 7 };
    println!(
        "kernels: {:?}; default {:?}, for the tree's columns {:?}; quick: {quick}",
        kernels(),
        Kernel::best(),
        Kernel::best_columns(qgoft_math::Layout::Tree)
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());

    // Machine limits: the best of many short runs (other work on the
    // machine only ever makes a run slower).
    #[cfg(target_arch = "x86_64")]
    let (peak1, peak_how, peak_all) = peak::f32_flops(1_000_000, 25);
    #[cfg(not(target_arch = "x86_64"))]
    let (peak1, peak_how, peak_all) = (f64::NAN, "not measured on this architecture", String::new());
    let peak2 = {
        #[cfg(target_arch = "x86_64")]
        {
            // Each thread reports its own rate; the pair's rate is twice the
            // slower of the two measured concurrently.
            let mut both = 0.0f64;
            for _ in 0..10 {
                let (a, b) = std::thread::scope(|s| {
                    let h = s.spawn(|| peak::f32_flops(1_000_000, 1).0);
                    let a = peak::f32_flops(1_000_000, 1).0;
                    (a, h.join().expect("thread"))
                });
                both = both.max(2.0 * a.min(b));
            }
            both
        }
        #[cfg(not(target_arch = "x86_64"))]
        f64::NAN
    };
    let big = 1usize << 28; // 1 GiB of f32
    let mut buf = data::<f32>(big, 9);
    let (bw, t_rmw_pass) = rmw_bandwidth(&mut buf, reps.min(3));
    // A read-only pass (what checking the input before writing costs).
    let t_read = best(reps.min(3), || {
        black_box(read_pass(black_box(&buf[..])));
    });
    println!(
        "FMA peak, one core: {:.1} GFLOP/s f32 ({peak_how}; {peak_all}), {:.1} GFLOP/s f64",
        peak1 * 1e-9,
        peak1 * 0.5e-9
    );
    println!("FMA peak, both cores at once: {:.1} GFLOP/s f32", peak2 * 1e-9);
    println!("read-modify-write bandwidth, one core: {:.2} GB/s (in place over 1 GiB)", bw * 1e-9);
    println!(
        "read-only pass over 1 GiB: {:.1} ms (RMW pass {:.1} ms); a call that reads its input once before writing \
         is bounded by {:.2} of the RMW bandwidth",
        t_read * 1e3,
        t_rmw_pass * 1e3,
        t_rmw_pass / (t_rmw_pass + t_read)
    );
    // The same pass with the buffer's halves on both cores at once.
    let t_rmw2 = best(reps.min(3), || on_halves(black_box(&mut buf[..]), &rmw_pass));
    let bw2 = (2 * 4 * big) as f64 / t_rmw2;
    println!("read-modify-write bandwidth, both cores at once: {:.2} GB/s", bw2 * 1e-9);
    let t_read2 = best(reps.min(3), || {
        on_halves(black_box(&mut buf[..]), &|part| {
            black_box(read_pass(part));
        })
    });
    println!(
        "both cores: read-only pass over 1 GiB {:.1} ms (RMW pass {:.1} ms); a call split over both that reads \
         its input once before writing is bounded by {:.2} of their RMW bandwidth",
        t_read2 * 1e3,
        t_rmw2 * 1e3,
        t_rmw2 / (t_rmw2 + t_read2)
    );
    let merge_bytes = 2.0 * (4096.0 * 4096.0 * 4.0);
    // A merge that checks the weight before writing it: a read pass and an
    // RMW pass over its 64 MiB, at the speeds measured over 1 GiB above.
    let share64 = (4096.0 * 4096.0) / big as f64;
    let (checked_merge1, checked_merge2) = ((t_read + t_rmw_pass) * share64, (t_read2 + t_rmw2) * share64);
    println!(
        "merge floor: 2 x 64 MiB at the RMW bandwidth = {:.2} ms (both cores: {:.2} ms); with the weight checked \
         before it is written (a read pass first) {:.2} ms (both cores: {:.2} ms)",
        merge_bytes / bw * 1e3,
        merge_bytes / bw2 * 1e3,
        checked_merge1 * 1e3,
        checked_merge2 * 1e3
    );

    let mut lines = Vec::new();

    // Tree forward f32, data in L1/L2: d = 256, n = 64 (64 KiB). The
    // least any in-place call can take there: one read pass (the input
    // checked before anything is written) and one read-modify-write pass
    // over a buffer of that size, measured here.
    // Each batch of calls here takes about a millisecond: the best of
    // `IN_CACHE_BATCHES * reps` batches (120 with `--quick`) and of at least
    // `IN_CACHE_SECS` of them, a fraction of a second per row that is not
    // left to the other tenants' timing.
    const IN_CACHE_BATCHES: usize = 40;
    const IN_CACHE_SECS: f64 = 0.5;
    let (in_cache_read, in_cache_rmw) = {
        let (mut buf, at) = on_line::<f32>(256 * 64, 0);
        let x = &mut buf[at..at + 256 * 64];
        let inner = 200;
        let read = best_for(IN_CACHE_BATCHES * reps, IN_CACHE_SECS, || {
            for _ in 0..inner {
                black_box(read_pass(black_box(&x[..])));
            }
        }) / inner as f64;
        let rmw = best_for(IN_CACHE_BATCHES * reps, IN_CACHE_SECS, || {
            for _ in 0..inner {
                rmw_pass(black_box(&mut x[..]));
            }
        }) / inner as f64;
        (read, rmw)
    };
    // The rotation's arithmetic at its own ceiling: a rotation is two
    // products and two FMAs per lane (4 operations for the 6 flops
    // counted), 0.75 of the FMA peak. An in-place call either rotates after
    // its check (read pass, then the arithmetic overlapped at best with an
    // RMW pass), or during it into a second buffer that it then copies back
    // (an RMW pass's bytes): the faster of the two is the bound.
    let in_cache_flops = 6.0 * 255.0 * 64.0;
    let in_cache_fp = in_cache_flops / (0.75 * peak1);
    let in_cache_bound = in_cache_flops / peak1 / (in_cache_read + in_cache_rmw);
    let in_cache_best =
        (in_cache_read + in_cache_rmw.max(in_cache_fp)).min(in_cache_read.max(in_cache_fp) + in_cache_rmw);
    let in_cache_bound_fp = in_cache_flops / peak1 / in_cache_best;
    println!(
        "64 KiB in cache: read pass {:.2} us, RMW pass {:.2} us; a checked in-place call there is bounded by {:.2} \
         of the FMA peak by its passes (tree, d = 256, n = 64), and by {:.2} with its arithmetic at 0.75 of the \
         peak ({:.2} us)",
        in_cache_read * 1e6,
        in_cache_rmw * 1e6,
        in_cache_bound,
        in_cache_bound_fp,
        in_cache_fp * 1e6
    );
    for kernel in kernels() {
        let (d, n) = (256, 64);
        let r = rotation::<f32>(Layout::Tree, d);
        let rot = r.as_rotation().with_kernel(kernel).expect("kernel");
        let flops = 6.0 * (d - 1) as f64 * n as f64;
        let inner = 200;
        // The batches start on a 64-byte line, and the columns also 16
        // bytes past one (the system allocator's alignment): there half of
        // the columns' 32-byte loads and stores straddle two lines.
        for (how, cols, off) in [("rows", false, 0), ("cols", true, 0), ("cols, 16 B off a line", true, 16)] {
            let (mut buf, at) = on_line::<f32>(n * d, off);
            let x = &mut buf[at..at + n * d];
            let t = best_for(IN_CACHE_BATCHES * reps, IN_CACHE_SECS, || {
                for _ in 0..inner {
                    if cols {
                        rot.apply_cols(Op::Transpose, black_box(&mut *x), n).expect("apply");
                    } else {
                        rot.apply_rows(Op::Transpose, black_box(&mut *x)).expect("apply");
                    }
                }
            }) / inner as f64;
            let rate = flops / t;
            lines.push(Line {
                what: format!("tree R^T f32 d=256 n=64 {how} (in cache)"),
                kernel,
                figure: format!("{:.1} GFLOP/s", rate * 1e-9),
                ratio: rate / peak1,
                target: ">= 0.5 of FMA peak",
                met: rate / peak1 >= 0.5,
                proposed: Some(Proposed::at_least(COMPUTE_SHARE, in_cache_bound_fp)),
            });
        }
    }

    // Tree forward f32 streaming: n = 2^20, d = 256 (1 GiB), rows; the
    // reference pass and the kernel alternate. R^T then R keeps the data
    // bounded; the time is halved. In place (`apply_rows`: the input is
    // checked before anything is written, a read pass of its own), and out
    // of place (`apply_rows_into`: checked in the pass that rotates it, R^T
    // from `buf` into `other`, then R back); the RMW pass moves the same
    // bytes in and out.
    // Last, the same in place with the rows split over both cores (each
    // half checked, then rotated, on its own core), against the RMW pass
    // split the same way.
    let mut other = vec![0.0f32; big];
    let d = 256;
    let r = rotation::<f32>(Layout::Tree, d);
    // The in-place calls read their input once before writing, so each is
    // bounded by the RMW pass over the RMW and read-only passes, timed
    // alternately with it (the two-core passes' speed varies between runs
    // by up to 1.8 times); the out-of-place one is not bounded that way.
    let variants = [
        ("tree R^T f32 d=256 n=2^20 rows (streaming)", Streaming::InPlace, ">= 0.85 of RMW bandwidth"),
        ("tree R^T f32 d=256 n=2^20 rows, out of place", Streaming::OutOfPlace, ">= 0.85 of RMW bandwidth"),
        ("same, rows split over both cores", Streaming::Split, ">= 0.85 of RMW bandwidth (both)"),
        ("tree R^T f32 d=256 n=2^20 cols (streaming)", Streaming::Columns, ">= 0.85 of RMW bandwidth"),
        ("same, cols in two batches, both cores", Streaming::ColumnsSplit, ">= 0.85 of RMW bandwidth (both)"),
    ];
    for (what, how, target) in variants {
        for kernel in kernels() {
            let rot = r.as_rotation().with_kernel(kernel).expect("kernel");
            let (t_read, t_rmw, t_k) = alternating(
                reps.min(3),
                &mut buf[..],
                |buf| {
                    if how.both_cores() {
                        on_halves(black_box(buf), &|part| {
                            black_box(read_pass(part));
                        })
                    } else {
                        black_box(read_pass(black_box(buf)));
                    }
                },
                |buf| {
                    if how.both_cores() {
                        on_halves(black_box(buf), &rmw_pass)
                    } else {
                        rmw_pass(black_box(buf))
                    }
                },
                |buf| match how {
                    Streaming::InPlace => {
                        rot.apply_rows(Op::Transpose, black_box(&mut *buf)).expect("apply");
                        rot.apply_rows(Op::Forward, black_box(buf)).expect("apply");
                    }
                    Streaming::OutOfPlace => {
                        rot.apply_rows_into(Op::Transpose, black_box(&*buf), black_box(&mut other[..])).expect("apply");
                        rot.apply_rows_into(Op::Forward, black_box(&other[..]), black_box(buf)).expect("apply");
                    }
                    Streaming::Split => on_halves(black_box(buf), &|part| {
                        rot.apply_rows(Op::Transpose, &mut *part).expect("apply");
                        rot.apply_rows(Op::Forward, part).expect("apply");
                    }),
                    Streaming::Columns => {
                        let n = buf.len() / d;
                        rot.apply_cols(Op::Transpose, black_box(&mut *buf), n).expect("apply");
                        rot.apply_cols(Op::Forward, black_box(buf), n).expect("apply");
                    }
                    Streaming::ColumnsSplit => on_halves(black_box(buf), &|part| {
                        let n = part.len() / d;
                        rot.apply_cols(Op::Transpose, &mut *part, n).expect("apply");
                        rot.apply_cols(Op::Forward, part, n).expect("apply");
                    }),
                },
            );
            let bound = match how {
                Streaming::OutOfPlace => None,
                _ => Some(t_rmw / (t_rmw + t_read)),
            };
            lines.push(streaming_line(what, kernel, big, t_rmw, t_k, target, bound));
        }
    }
    drop(other);
    drop(buf);

    // Full layout applied to a d x d matrix, f64, d = 1024.
    for kernel in kernels() {
        let d = 1024;
        let r = rotation::<f64>(Layout::Full, d);
        let rot = r.as_rotation().with_kernel(kernel).expect("kernel");
        let mut x = data::<f64>(d * d, 4);
        let t = best(reps.min(3), || rot.apply_cols(Op::Forward, black_box(&mut x), d).expect("apply"));
        let rate = 6.0 * (d * (d - 1) / 2) as f64 * d as f64 / t;
        lines.push(Line {
            what: "full R f64 on a 1024 x 1024 matrix (cols)".into(),
            kernel,
            figure: format!("{:.1} GFLOP/s", rate * 1e-9),
            ratio: rate / (0.5 * peak1),
            target: ">= 0.5 of FMA peak (f64)",
            met: rate / (0.5 * peak1) >= 0.5,
            proposed: None,
        });
    }

    // GEMM used by the trainer: 768^3 f32 on both cores.
    {
        let k = 768;
        let (a, b) = (data::<f32>(k * k, 5), data::<f32>(k * k, 6));
        let mut c = vec![0.0f32; k * k];
        let t = best(4 * reps, || gemm_f32(black_box(&a), black_box(&b), &mut c, k, 2));
        let rate = 2.0 * (k * k * k) as f64 / t;
        lines.push(Line {
            what: "gemm 768^3 f32, both cores".into(),
            // The gemm crate dispatches at run time to the widest vectors
            // the processor has (AVX-512 through its `x86-v4` feature).
            kernel: kernels().last().copied().unwrap_or(Kernel::Portable),
            figure: format!("{:.1} GFLOP/s", rate * 1e-9),
            ratio: rate / peak2,
            target: ">= 0.75 of FMA peak (both cores)",
            met: rate / peak2 >= 0.75,
            proposed: None,
        });
    }

    // Merge W R^T, tree, d = m = 4096, f32, against one 4096^3 GEMM.
    {
        let k = 4096;
        let r = rotation::<f32>(Layout::Tree, k);
        let (a, b) = (data::<f32>(k * k, 5), data::<f32>(k * k, 6));
        let mut c = vec![0.0f32; k * k];
        let mut w = data::<f32>(k * k, 7);
        let t_gemm = best(if quick { 1 } else { 3 }, || gemm_f32(black_box(&a), black_box(&b), &mut c, k, 2));
        for kernel in kernels() {
            let rot = r.as_rotation().with_kernel(kernel).expect("kernel");
            let t_merge = best(reps, || rot.merge(black_box(&mut w)).expect("merge"));
            // The GEMM runs on both cores; rows are independent, so the
            // same merge over two halves of the rows, one per core (as the
            // trainer's merge runs), gives the same result bitwise (`k` is
            // even, so each half holds `k / 2` whole rows).
            let t_merge2 = best(reps, || {
                on_halves(black_box(&mut w[..]), &|part| rot.merge(part).expect("merge"));
            });
            // The same weight stored column by column (`W^T` row-major, as
            // nalgebra stores it): the columns kernel on its 4096 columns,
            // bitwise the values of the merge row by row.
            let t_merge_t = best(reps, || rot.merge_col_major(black_box(&mut w)).expect("merge"));
            // Against the floor of a checked merge (above), one core and both.
            for (what, t, floor) in [
                ("merge W R^T tree f32 d=m=4096", t_merge, checked_merge1 / t_gemm),
                ("same, rows split over both cores", t_merge2, checked_merge2 / t_gemm),
                ("same, W stored column-major (cols)", t_merge_t, checked_merge1 / t_gemm),
            ] {
                lines.push(Line {
                    what: what.into(),
                    kernel,
                    figure: format!("{:.2} ms (gemm {:.0} ms)", t * 1e3, t_gemm * 1e3),
                    ratio: t / t_gemm,
                    target: "<= 0.005 of one 4096^3 gemm",
                    met: t / t_gemm <= 0.005,
                    proposed: Some(Proposed::at_most(MEMORY_SHARE, floor)),
                });
            }
        }
    }

    println!();
    println!(
        "{:<44} {:<9} {:>24} {:>8}  {:<34} {:<4} {:<26} met",
        "kernel", "isa", "figure", "ratio", "target", "met", "proposed (measured bound)"
    );
    let yes = |met: bool| if met { "yes" } else { "NO" };
    for l in &lines {
        let (proposed, met) = match &l.proposed {
            Some(p) => (p.describe(), yes(p.met(l.ratio))),
            None => ("-".to_string(), "-"),
        };
        println!(
            "{:<44} {:<9} {:>24} {:>8.3}  {:<34} {:<4} {:<26} {}",
            l.what,
            format!("{:?}", l.kernel),
            l.figure,
            l.ratio,
            l.target,
            yes(l.met),
            proposed,
            met
        );
    }
    println!();
    println!("decompose / rebuild against nalgebra's QR (d = 512, f64): see benches/decompose.rs");
}
