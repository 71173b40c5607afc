//! Run-time dispatch to the kernels of [`crate::kernel`] compiled for AVX2 +
//! FMA and AVX-512 (x86-64 with feature `std`; elsewhere only the portable
//! kernels exist and this module only answers "not available").
//!
//! This is the only module of the crate with `unsafe` code: calling a
//! function compiled with `#[target_feature]` is unsafe because running it
//! on a processor without those features is undefined behaviour. Every such
//! call here is preceded by the run-time check of exactly the features the
//! function enables. Most of those functions are the safe generic kernels,
//! monomorphised inside the feature-enabled wrapper so that the compiler
//! vectorises them for the wider registers and fuses one product of each
//! rotation into an FMA; the register blocks written with intrinsics read
//! and write through raw pointers, each under the contract of its
//! `# Safety` section, checked by its safe caller. The one other unsafe
//! operation is [`prefetch_l2`]'s hint, which reads nothing and cannot
//! fault.
#![allow(unsafe_code)]

use crate::apply::Op;
use crate::grad::{Geometry, Saved};
use crate::kernel::{GradRows, Kernel};
use crate::{Real, Rotation};

/// Asks the processor to bring the 64-byte line at `p` into its
/// second-level cache. A hint: it reads nothing the program sees and cannot
/// fault, whatever the address (so `p` need not point into an allocation).
/// Nothing on other targets.
#[inline(always)]
pub(crate) fn prefetch_l2(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht1` needs only SSE, which every x86-64 processor
    // has, and never accesses memory in the program's sense.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Whether `k` (one of the SIMD kernels) can run here.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(crate) fn available(k: Kernel) -> bool {
    match k {
        Kernel::Portable => true,
        Kernel::Avx2 => std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"),
        Kernel::Avx512 => {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512vl")
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
        }
    }
}

/// Whether `k` (one of the SIMD kernels) can run here.
#[cfg(not(all(feature = "std", target_arch = "x86_64")))]
pub(crate) fn available(k: Kernel) -> bool {
    k == Kernel::Portable
}

/// Whether AVX-512 can run here and does at least 1.5 times the
/// multiply-adds of AVX2 per unit of time (see [`Kernel::best`]); timed on
/// the first call, then remembered.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub(crate) fn wide_pays() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| {
        if !available(Kernel::Avx512) {
            return false;
        }
        // The best of a few alternating runs of each width: a run that the
        // scheduler or another tenant interrupts only loses.
        let (mut narrow, mut wide) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..5 {
            let t = std::time::Instant::now();
            // SAFETY: AVX2 and FMA are present (AVX-512 was detected, and
            // `available` checks both with it).
            core::hint::black_box(unsafe { x86::fma_loop_256(FMA_STEPS) });
            narrow = narrow.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            // SAFETY: AVX-512 F was detected just above.
            core::hint::black_box(unsafe { x86::fma_loop_512(FMA_STEPS) });
            wide = wide.min(t.elapsed().as_secs_f64());
        }
        // Twice the lanes per instruction: work per unit of time, wide over narrow.
        2.0 * narrow >= 1.5 * wide
    })
}

/// Without the x86-64 kernels there is no wider instruction set to choose.
#[cfg(not(all(feature = "std", target_arch = "x86_64")))]
pub(crate) fn wide_pays() -> bool {
    false
}

/// Steps of the timing loops of [`wide_pays`]: 12 multiply-adds each,
/// 49,152 in all per width (about 10 us at two per cycle).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
const FMA_STEPS: usize = 4096;

/// Declares [`Dispatch`] with one method per entry point and implements
/// it for `f32` and `f64` with the body given (the same for both).
macro_rules! dispatch {
    ($(
        $(#[$doc:meta])*
        fn $name:ident$(<$lt:lifetime>)?($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    )*) => {
        /// The kernels' entry points for one scalar type, a supertrait of
        /// [`Real`] implemented for `f32` and `f64` only (the trait cannot be
        /// named outside the crate, which seals [`Real`]).
        ///
        /// Each method is an ordinary, non-generic function of this crate.
        /// The kernels behind it are generic and inlined into one wrapper per
        /// instruction set; were they reached through generic functions,
        /// every crate that calls them would compile all of them again for
        /// its own use. Through this trait they are compiled once, here, for
        /// each of the two scalars.
        // Some arguments are of crate-private types: nothing outside the
        // crate can name the trait, build those arguments, or implement it.
        #[allow(private_interfaces)]
        pub trait Dispatch: Sized {
            $($(#[$doc])* fn $name$(<$lt>)?($($arg: $ty),*) $(-> $ret)?;)*
        }
        dispatch!(@impl f32; $(fn $name$(<$lt>)?($($arg: $ty),*) $(-> $ret)? $body)*);
        dispatch!(@impl f64; $(fn $name$(<$lt>)?($($arg: $ty),*) $(-> $ret)? $body)*);
    };
    (@impl $t:ty; $(fn $name:ident$(<$lt:lifetime>)?($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block)*) => {
        #[allow(private_interfaces)]
        impl Dispatch for $t {
            $(fn $name$(<$lt>)?($($arg: $ty),*) $(-> $ret)? $body)*
        }
    };
}

dispatch! {
    /// Applies `op` to the tile with kernel `k` (the portable one if `k` cannot
    /// run here).
    /// Returns `true` where the kernel found every output finite as it
    /// wrote it (see `kernel::tree_regs`); `false` where it did not check
    /// or could not tell.
    fn run(
        k: Kernel,
        rot: &Rotation<'_, Self>,
        op: Op,
        data: &mut [Self],
        ld: usize,
        base: usize,
        tw: usize
    ) -> bool {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        match k {
            Kernel::Avx2 if available(Kernel::Avx2) => {
                // SAFETY: AVX2 and FMA were detected on this processor just above.
                return unsafe { x86::run_avx2(rot, op, data, ld, base, tw) };
            }
            Kernel::Avx512 if available(Kernel::Avx512) => {
                // SAFETY: AVX-512 F and VL, AVX2 and FMA were detected just above.
                return unsafe { x86::run_avx512(rot, op, data, ld, base, tw) };
            }
            _ => {}
        }
        let _ = k;
        crate::kernel::run_portable(rot, op, data, ld, base, tw)
    }

    /// Applies `op` to every row of the row-major batch `x` (read from `src`
    /// when given) with kernel `k`, `tile` rows at a time; returns whether every
    /// input read from `src` and whether every output is finite.
    fn rows(
        k: Kernel,
        rot: &Rotation<'_, Self>,
        op: Op,
        src: Option<&[Self]>,
        x: &mut [Self],
        tile: usize,
    ) -> (bool, bool) {
        use crate::kernel::{RowScratch, ROWS_SMALL};
        match crate::kernel::row_scratch(rot, x.len(), tile) {
            RowScratch::Small => rows_with(k, rot, op, src, x, tile, &mut [0.0; ROWS_SMALL]),
            RowScratch::Tile => rows_with(k, rot, op, src, x, tile, &mut [0.0; crate::apply::TILE_SCRATCH]),
            #[cfg(feature = "std")]
            RowScratch::Big => rows_with(k, rot, op, src, x, tile, &mut [0.0; crate::kernel::ROWS_BIG]),
            #[cfg(feature = "std")]
            RowScratch::Heap(len) => rows_with(k, rot, op, src, x, tile, &mut alloc::vec![0.0; len]),
        }
    }

    /// Whether every entry of `xs` is finite, vectorised for kernel `k`.
    fn all_finite(k: Kernel, xs: &[Self]) -> bool {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        match k {
            Kernel::Avx2 if available(Kernel::Avx2) => {
                // SAFETY: AVX2 and FMA were detected on this processor just above.
                return unsafe { x86::all_finite_avx2(xs) };
            }
            Kernel::Avx512 if available(Kernel::Avx512) => {
                // SAFETY: AVX-512 F and VL, AVX2 and FMA were detected just above.
                return unsafe { x86::all_finite_avx512(xs) };
            }
            _ => {}
        }
        let _ = k;
        crate::kernel::all_finite(xs)
    }

    /// The backward of [`crate::grad::vjp_rows`] over all tiles, compiled for
    /// the kernel `k`'s instruction set when it is available (the portable build
    /// otherwise). Its arithmetic is written as separate products and sums,
    /// which are not contracted into FMAs: the result is bitwise that of the
    /// portable build; only the vector width and the transposes change.
    fn backward<'w>(
        k: Kernel,
        rot: &Rotation<'_, Self>,
        op: Op,
        saved: Saved<'_, Self>,
        dy: GradRows<'_, Self>,
        work: &'w mut [Self],
        geo: &Geometry,
    ) -> &'w [Self] {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        match k {
            Kernel::Avx2 if available(Kernel::Avx2) => {
                // SAFETY: AVX2 and FMA were detected on this processor just above.
                return unsafe { x86::backward_avx2(rot, op, saved, dy, work, geo) };
            }
            Kernel::Avx512 if available(Kernel::Avx512) => {
                // SAFETY: AVX-512 F and VL, AVX2 and FMA were detected just above.
                return unsafe { x86::backward_avx512(rot, op, saved, dy, work, geo) };
            }
            _ => {}
        }
        let _ = k;
        crate::grad::backward::<Self, crate::kernel::ByElement>(rot, op, saved, dy, work, geo)
    }

    /// [`crate::decompose`]'s factorisation compiled for AVX2 when the processor
    /// has it (no contraction into FMAs: bitwise the portable result).
    fn decompose(
        layout: crate::Layout,
        q: &[Self],
        d: usize,
        storage: crate::decompose::Storage,
        opts: &crate::decompose::DecomposeOptions<Self>,
        angles: &mut [Self],
        work: &mut [Self],
    ) -> crate::Result<crate::decompose::DecomposeInfo<Self>> {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if available(Kernel::Avx2) {
            // SAFETY: AVX2 and FMA were detected on this processor just above.
            return unsafe { x86::decompose_avx2(layout, q, d, storage, opts, angles, work) };
        }
        crate::decompose::decompose_core_body(layout, q, d, storage, opts, angles, work)
    }

    /// [`crate::decompose`]'s rebuild compiled for AVX-512 where its
    /// multiply-adds run at full width (as [`Kernel::best`] decides), else
    /// for AVX2 when the processor has it (bitwise the portable result).
    fn rebuild(
        layout: crate::Layout,
        angles: &[Self],
        d: usize,
        storage: crate::decompose::Storage,
        out: &mut [Self],
        work: &mut [Self],
    ) -> crate::Result<()> {
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if wide_pays() {
            // SAFETY: `wide_pays` is true only where AVX-512 F and VL, AVX2
            // and FMA were detected.
            return unsafe { x86::rebuild_avx512(layout, angles, d, storage, out, work) };
        }
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if available(Kernel::Avx2) {
            // SAFETY: AVX2 and FMA were detected on this processor just above.
            return unsafe { x86::rebuild_avx2(layout, angles, d, storage, out, work) };
        }
        crate::decompose::rebuild_core_body::<Self, crate::kernel::ByElement>(layout, angles, d, storage, out, work)
    }
}

/// [`Dispatch::rows`] with its scratch buffer.
#[inline]
fn rows_with<T: Real>(
    k: Kernel,
    rot: &Rotation<'_, T>,
    op: Op,
    src: Option<&[T]>,
    x: &mut [T],
    tile: usize,
    scratch: &mut [T],
) -> (bool, bool) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    match k {
        Kernel::Avx2 if available(Kernel::Avx2) => {
            // SAFETY: AVX2 and FMA were detected on this processor just above.
            return unsafe { x86::rows_avx2(rot, op, src, x, tile, scratch) };
        }
        Kernel::Avx512 if available(Kernel::Avx512) => {
            // SAFETY: AVX-512 F and VL, AVX2 and FMA were detected just above.
            return unsafe { x86::rows_avx512(rot, op, src, x, tile, scratch) };
        }
        _ => {}
    }
    let _ = k;
    crate::kernel::rows_portable(rot, op, src, x, tile, scratch)
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod x86 {
    use crate::apply::Op;
    use crate::grad::{Geometry, Saved};
    use crate::kernel::{
        full_regs, rows, run, tree_regs, Applied, Arith, ExactTable, Fused, GradRows, PlainExact, Reg, Transposer,
        FULL_WAVE,
    };
    use crate::Block;
    use crate::{Real, Rotation};
    use core::any::TypeId;
    use core::arch::x86_64::*;

    /// Whether `T` is the 4-byte float (the lane counts depend on it).
    #[inline(always)]
    fn is_f32<T>() -> bool {
        core::mem::size_of::<T>() == 4
    }

    /// `steps` rounds of 12 independent 256-bit multiply-adds (enough
    /// chains to cover the latency of two pipes), folded into one value so
    /// that none is dead code.
    ///
    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma_loop_256(steps: usize) -> f32 {
        let m = _mm256_set1_ps(core::hint::black_box(0.999_99));
        let c = _mm256_set1_ps(core::hint::black_box(1.0e-6));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..steps {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let s = acc.iter().fold(_mm256_setzero_ps(), |s, a| _mm256_add_ps(s, *a));
        _mm256_cvtss_f32(s)
    }

    /// [`fma_loop_256`] with 512-bit registers.
    ///
    /// # Safety
    /// The processor must support AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_loop_512(steps: usize) -> f32 {
        let m = _mm512_set1_ps(core::hint::black_box(0.999_99));
        let c = _mm512_set1_ps(core::hint::black_box(1.0e-6));
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..steps {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        let s = acc.iter().fold(_mm512_setzero_ps(), |s, a| _mm512_add_ps(s, *a));
        _mm512_reduce_add_ps(s)
    }

    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2<T: Real>(
        rot: &Rotation<'_, T>,
        op: Op,
        data: &mut [T],
        ld: usize,
        base: usize,
        tw: usize,
    ) -> bool {
        if is_f32::<T>() {
            run::<Fused, Shuffles<false>, T, 8, 32>(rot, op, data, ld, base, tw)
        } else {
            run::<Fused, Shuffles<false>, T, 4, 16>(rot, op, data, ld, base, tw)
        }
    }

    /// # Safety
    /// The processor must support AVX-512 F and VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn run_avx512<T: Real>(
        rot: &Rotation<'_, T>,
        op: Op,
        data: &mut [T],
        ld: usize,
        base: usize,
        tw: usize,
    ) -> bool {
        if is_f32::<T>() {
            run::<Fused, Shuffles<true>, T, 16, 64>(rot, op, data, ld, base, tw)
        } else {
            run::<Fused, Shuffles<true>, T, 8, 32>(rot, op, data, ld, base, tw)
        }
    }

    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_avx2<T: Real>(
        rot: &Rotation<'_, T>,
        op: Op,
        src: Option<&[T]>,
        x: &mut [T],
        tile: usize,
        scratch: &mut [T],
    ) -> (bool, bool) {
        if is_f32::<T>() {
            rows::<Fused, Shuffles<false>, T, 8, 16>(rot, op, src, x, tile, scratch)
        } else {
            rows::<Fused, Shuffles<false>, T, 4, 8>(rot, op, src, x, tile, scratch)
        }
    }

    /// # Safety
    /// The processor must support AVX-512 F and VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn rows_avx512<T: Real>(
        rot: &Rotation<'_, T>,
        op: Op,
        src: Option<&[T]>,
        x: &mut [T],
        tile: usize,
        scratch: &mut [T],
    ) -> (bool, bool) {
        if is_f32::<T>() {
            rows::<Fused, Shuffles<true>, T, 16, 64>(rot, op, src, x, tile, scratch)
        } else {
            rows::<Fused, Shuffles<true>, T, 8, 32>(rot, op, src, x, tile, scratch)
        }
    }

    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn decompose_avx2<T: Real>(
        layout: crate::Layout,
        q: &[T],
        d: usize,
        storage: crate::decompose::Storage,
        opts: &crate::decompose::DecomposeOptions<T>,
        angles: &mut [T],
        work: &mut [T],
    ) -> crate::Result<crate::decompose::DecomposeInfo<T>> {
        crate::decompose::decompose_core_body(layout, q, d, storage, opts, angles, work)
    }

    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rebuild_avx2<T: Real>(
        layout: crate::Layout,
        angles: &[T],
        d: usize,
        storage: crate::decompose::Storage,
        out: &mut [T],
        work: &mut [T],
    ) -> crate::Result<()> {
        crate::decompose::rebuild_core_body::<T, Shuffles<false>>(layout, angles, d, storage, out, work)
    }

    /// # Safety
    /// The processor must support AVX-512 F and VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn rebuild_avx512<T: Real>(
        layout: crate::Layout,
        angles: &[T],
        d: usize,
        storage: crate::decompose::Storage,
        out: &mut [T],
        work: &mut [T],
    ) -> crate::Result<()> {
        crate::decompose::rebuild_core_body::<T, Shuffles<true>>(layout, angles, d, storage, out, work)
    }

    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn all_finite_avx2<T: Real>(xs: &[T]) -> bool {
        crate::kernel::all_finite(xs)
    }

    /// # Safety
    /// The processor must support AVX-512 F and VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn all_finite_avx512<T: Real>(xs: &[T]) -> bool {
        // Eight 512-bit sums of f32 (16 of f64), so that the adds' latency
        // stays off the critical path at the full width; at 64 KiB the pass
        // runs at the second-level cache's speed either way.
        crate::kernel::all_finite_in::<T, 128>(xs)
    }

    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn backward_avx2<'w, T: Real>(
        rot: &Rotation<'_, T>,
        op: Op,
        saved: Saved<'_, T>,
        dy: GradRows<'_, T>,
        work: &'w mut [T],
        geo: &Geometry,
    ) -> &'w [T] {
        crate::grad::backward::<T, Shuffles<false>>(rot, op, saved, dy, work, geo)
    }

    /// # Safety
    /// The processor must support AVX-512 F and VL, AVX2 and FMA.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn backward_avx512<'w, T: Real>(
        rot: &Rotation<'_, T>,
        op: Op,
        saved: Saved<'_, T>,
        dy: GradRows<'_, T>,
        work: &'w mut [T],
        geo: &Geometry,
    ) -> &'w [T] {
        crate::grad::backward::<T, Shuffles<true>>(rot, op, saved, dy, work, geo)
    }

    /// [`full_regs`] with the arithmetic `$m` for the blocks `$src` of
    /// scalar `$t` (cast by `$cast` to `f32` or `f64`, with the block map
    /// `$map` where given; `None` for another scalar) on the build's
    /// registers (`WIDE`: 512 bits, else 256), five columns of the
    /// wavefront at a time: the lanes done.
    macro_rules! full_on_regs {
        ($m:ty, $t:ty, $cast:ident $([$map:ident])?, $src:expr, $data:expr, $ld:expr, $base:expr, $tw:expr) => {{
            if TypeId::of::<$t>() == TypeId::of::<f32>() {
                let (src, data) = ($cast::<$t, f32 $(, $map)?>($src), cast_slice_mut::<$t, f32>($data));
                Some(if WIDE {
                    full_regs::<$m, f32, Zmm32, _, FULL_WAVE>(src, data, $ld, $base, $tw)
                } else {
                    full_regs::<$m, f32, Ymm32, _, FULL_WAVE>(src, data, $ld, $base, $tw)
                })
            } else if TypeId::of::<$t>() == TypeId::of::<f64>() {
                let (src, data) = ($cast::<$t, f64 $(, $map)?>($src), cast_slice_mut::<$t, f64>($data));
                Some(if WIDE {
                    full_regs::<$m, f64, Zmm64, _, FULL_WAVE>(src, data, $ld, $base, $tw)
                } else {
                    full_regs::<$m, f64, Ymm64, _, FULL_WAVE>(src, data, $ld, $base, $tw)
                })
            } else {
                None
            }
        }};
    }

    /// 8 x 8 transposes with AVX shuffles, and with `WIDE` the 16-row
    /// register blocks of AVX-512 for `f32`. Only instantiated inside the
    /// functions above, which run after AVX2 was detected (and AVX-512 F
    /// and VL, for `WIDE`).
    pub(super) struct Shuffles<const WIDE: bool>;

    impl<const WIDE: bool> Transposer for Shuffles<WIDE> {
        #[inline(always)]
        fn tree<M: Arith, T: Real>(
            rot: &Rotation<'_, T>,
            op: Op,
            data: &mut [T],
            ld: usize,
            base: usize,
            tw: usize,
        ) -> Option<(usize, bool)> {
            // Blocks of 8 coordinates: with blocks of 16 on AVX-512's 32
            // registers, the 15 rotations' coefficients went to the stack
            // (f32, d = 256, n = 64: 42.9 against 71.6 GFLOP/s).
            if TypeId::of::<T>() == TypeId::of::<f32>() {
                let (rot, data) = (cast_rot::<T, f32>(rot), cast_slice_mut::<T, f32>(data));
                Some(if WIDE {
                    tree_regs::<M, f32, Zmm32>(rot, op, data, ld, base, tw)
                } else {
                    tree_regs::<M, f32, Ymm32>(rot, op, data, ld, base, tw)
                })
            } else if TypeId::of::<T>() == TypeId::of::<f64>() {
                let (rot, data) = (cast_rot::<T, f64>(rot), cast_slice_mut::<T, f64>(data));
                Some(if WIDE {
                    tree_regs::<M, f64, Zmm64>(rot, op, data, ld, base, tw)
                } else {
                    tree_regs::<M, f64, Ymm64>(rot, op, data, ld, base, tw)
                })
            } else {
                None
            }
        }

        #[inline(always)]
        fn full<M: Arith, T: Real, const MAP: u8>(
            src: Applied<'_, '_, T, MAP>,
            data: &mut [T],
            ld: usize,
            base: usize,
            tw: usize,
        ) -> Option<usize> {
            // Arrays of 16 `f32` lanes (and of 8 `f32` lanes in the
            // 512-bit build) came out of the compiler's vectorisation in
            // pieces, with the carries on the stack: 28 GFLOP/s for `f32`
            // at d = 1024 on AVX-512 against 55 for `f64`.
            full_on_regs!(M, T, cast_applied[MAP], src, data, ld, base, tw)
        }

        #[inline(always)]
        fn full_table<T: Real>(
            src: ExactTable<'_, T>,
            data: &mut [T],
            ld: usize,
            base: usize,
            tw: usize,
        ) -> Option<usize> {
            full_on_regs!(PlainExact, T, cast_table, src, data, ld, base, tw)
        }

        #[inline(always)]
        fn tree8<T: Real>(
            asc: bool,
            src: Option<(&[T], usize)>,
            rows: &mut [T],
            ld: usize,
            cb: &[T],
            sc: Option<&[T; 8]>,
            inverts: bool,
            lead: &mut [T],
            finite: (&mut bool, &mut bool),
        ) -> bool {
            // SAFETY: AVX2 and FMA are present (see the struct's note).
            unsafe { tree_rows::<T, 8>(asc, src, rows, ld, cb, sc, inverts, lead, finite) }
        }

        #[inline(always)]
        fn recover8<T: Real>(
            asc: bool,
            y: &[T],
            g: GradRows<'_, T>,
            ld: usize,
            cb: &[T],
            sc: Option<&[T]>,
            acc: &mut [T],
            accs: &mut [T],
            lz: &mut [T],
            lg: &mut [T],
        ) -> bool {
            if TypeId::of::<T>() != TypeId::of::<f32>() {
                return false;
            }
            // Bounds checked here, once: every access below is inside.
            let y = &y[..7 * ld + 8];
            // A read-only `g` is never written through the pointer below.
            let (gp, write) = match g {
                GradRows::Write(g) => (g[..7 * ld + 8].as_mut_ptr().cast::<f32>(), true),
                GradRows::Read(g) => (g[..7 * ld + 8].as_ptr().cast::<f32>().cast_mut(), false),
            };
            let cb: &[f32; 28] = cast_ref::<[T; 28], _>(cb[..28].try_into().expect("7 blocks"));
            let sc: Option<&[f32; 8]> = sc.map(|s| cast_ref::<[T; 8], _>(s[..8].try_into().expect("8 scales")));
            let acc: &mut [f32; 224] = cast_mut::<[T; 224], _>((&mut acc[..224]).try_into().expect("7 x 4 x 8 sums"));
            let accs: &mut [f32; 64] = cast_mut::<[T; 64], _>((&mut accs[..64]).try_into().expect("8 x 8 sums"));
            let lz: &mut [f32; 8] = cast_mut::<[T; 8], _>((&mut lz[..8]).try_into().expect("8 leaders"));
            let lg: &mut [f32; 8] = cast_mut::<[T; 8], _>((&mut lg[..8]).try_into().expect("8 leaders"));
            let yp = y.as_ptr().cast::<f32>();
            // SAFETY: `T` is `f32` (same type id), so the slices hold `f32`;
            // `y` and `g` cover `l * ld + a` for `l, a < 8`, and `g` is
            // written only when it came writable; AVX2 and FMA are present
            // (see the struct's note).
            unsafe {
                match (asc, write) {
                    (true, true) => recover8_f32::<true, true>(yp, gp, ld, cb, sc, acc, accs, lz, lg),
                    (true, false) => recover8_f32::<true, false>(yp, gp, ld, cb, sc, acc, accs, lz, lg),
                    (false, true) => recover8_f32::<false, true>(yp, gp, ld, cb, sc, acc, accs, lz, lg),
                    (false, false) => recover8_f32::<false, false>(yp, gp, ld, cb, sc, acc, accs, lz, lg),
                }
            }
            true
        }

        #[inline(always)]
        fn block8<T: Real>(src: &[T], ss: usize, dst: &mut [T], ds: usize) -> bool {
            // Bounds checked here, once: every access below is inside.
            let (src, dst) = (&src[..7 * ss + 8], &mut dst[..7 * ds + 8]);
            if TypeId::of::<T>() == TypeId::of::<f32>() {
                // SAFETY: `T` is `f32` (same type id), so the slices are
                // `f32` slices; AVX2 is present (see the struct's note).
                unsafe { tr8_f32(src.as_ptr().cast(), ss, dst.as_mut_ptr().cast(), ds) };
                true
            } else if TypeId::of::<T>() == TypeId::of::<f64>() {
                // SAFETY: as above, with `f64`; four 4 x 4 blocks.
                unsafe {
                    let (sp, dp) = (src.as_ptr().cast::<f64>(), dst.as_mut_ptr().cast::<f64>());
                    for (r, c) in [(0, 0), (0, 4), (4, 0), (4, 4)] {
                        tr4_f64(sp.add(r * ss + c), ss, dp.add(c * ds + r), ds);
                    }
                }
                true
            } else {
                false
            }
        }

        #[inline(always)]
        fn wide<T: Real>() -> bool {
            WIDE && TypeId::of::<T>() == TypeId::of::<f32>()
        }

        #[inline(always)]
        fn cross8<T: Real>(xb: &[T], gb: &[T], lz: &[T], lg: &[T], ld: usize, out: &mut [T], add: bool) -> bool {
            if !is_f32::<T>() || lz.is_empty() {
                return false;
            }
            let w = lz.len();
            // Bounds checked here, once: every access below is inside.
            let span = (w - 1) * ld + 8;
            let (xb, gb, lg) = (&xb[..span], &gb[..span], &lg[..w]);
            let out: &mut [f32; 64] = cast_mut::<[T; 64], _>((&mut out[..64]).try_into().expect("8 x 8 sums"));
            // SAFETY: `T` is `f32` (checked above), so the slices hold
            // `f32`; `xb` and `gb` cover `r * ld + a` for `r < w`, `a < 8`,
            // `lz` and `lg` hold `w` values; AVX2 and FMA are present.
            unsafe {
                let (xb, gb, lz, lg) = (xb.as_ptr().cast(), gb.as_ptr().cast(), lz.as_ptr().cast(), lg.as_ptr().cast());
                cross8_256(xb, gb, lz, lg, w, ld, out, add);
            }
            true
        }

        #[inline(always)]
        fn cross_block<T: Real>() -> (usize, usize) {
            // A whole 8 x 8 block in one pass where 8 registers hold it
            // (`f32`, or `f64` on 512 bits); `f64` on 256 bits in two.
            match (WIDE, TypeId::of::<T>() == TypeId::of::<f32>()) {
                (false, false) => (8, 4),
                _ => (8, 8),
            }
        }

        #[inline(always)]
        fn tree16<T: Real>(
            asc: bool,
            src: Option<(&[T], usize)>,
            rows: &mut [T],
            ld: usize,
            cb: &[T],
            sc: Option<&[T; 8]>,
            inverts: bool,
            lead: &mut [T],
            finite: (&mut bool, &mut bool),
        ) -> bool {
            if !WIDE {
                return false;
            }
            // SAFETY: with `WIDE`, AVX-512 F and VL, AVX2 and FMA are present
            // (see the struct's note).
            unsafe { tree_rows::<T, 16>(asc, src, rows, ld, cb, sc, inverts, lead, finite) }
        }

        #[inline(always)]
        fn pair<T: Real>() -> bool {
            WIDE && TypeId::of::<T>() == TypeId::of::<f32>()
        }

        #[inline(always)]
        fn recover_pair<T: Real>(
            asc: bool,
            y: &[T],
            g: GradRows<'_, T>,
            py: &[T],
            pg: &mut [T],
            ld: usize,
            full: usize,
            w8: usize,
            cb: [&[T]; 2],
            sc: Option<&[T]>,
            lz: &mut [T],
            lg: &mut [T],
            out: &mut [T],
        ) -> bool {
            if !Self::pair::<T>() || w8 == 0 {
                return false;
            }
            // Bounds checked here, once: every access below is inside.
            let span = |rows: usize| if rows == 0 { 0 } else { (rows - 1) * ld + 16 };
            let y = &y[..span(full)];
            let (py, pg) = (&py[..span(w8 - full)], &mut pg[..span(w8 - full)]);
            // A read-only `g` is never written through the pointer below.
            let (gp, write) = match g {
                GradRows::Write(g) => (g[..span(full)].as_mut_ptr().cast::<f32>(), true),
                GradRows::Read(g) => (g[..span(full)].as_ptr().cast::<f32>().cast_mut(), false),
            };
            let cb0: &[f32; 28] = cast_ref::<[T; 28], _>(cb[0][..28].try_into().expect("7 blocks"));
            let cb1: &[f32; 28] = cast_ref::<[T; 28], _>(cb[1][..28].try_into().expect("7 blocks"));
            let sc: Option<&[f32; 16]> = sc.map(|s| cast_ref::<[T; 16], _>(s[..16].try_into().expect("16 scales")));
            let lz = lz[..2 * w8].as_mut_ptr().cast::<f32>();
            let lg = lg[..2 * w8].as_mut_ptr().cast::<f32>();
            let out: &mut [f32; 112] = cast_mut::<[T; 112], _>((&mut out[..112]).try_into().expect("7 x 16 sums"));
            let (yp, pyp, pgp) = (y.as_ptr().cast::<f32>(), py.as_ptr().cast::<f32>(), pg.as_mut_ptr().cast::<f32>());
            // SAFETY: `T` is `f32` (checked by `pair`), so the slices hold
            // `f32`; `y` and `g` cover `r * ld + a` for `r < full`, `py`
            // and `pg` `(r - full) * ld + a` for `full <= r < w8`, `a < 16`,
            // and `g` is written only when it came writable; `lz` and `lg`
            // hold `2 w8` values; with `WIDE`, AVX-512 F and VL, AVX2 and
            // FMA are present (see the struct's note).
            unsafe {
                match (asc, write) {
                    (true, true) => {
                        recover_pair_f32::<true, true>(yp, gp, pyp, pgp, ld, full, w8, cb0, cb1, sc, lz, lg, out)
                    }
                    (true, false) => {
                        recover_pair_f32::<true, false>(yp, gp, pyp, pgp, ld, full, w8, cb0, cb1, sc, lz, lg, out)
                    }
                    (false, true) => {
                        recover_pair_f32::<false, true>(yp, gp, pyp, pgp, ld, full, w8, cb0, cb1, sc, lz, lg, out)
                    }
                    (false, false) => {
                        recover_pair_f32::<false, false>(yp, gp, pyp, pgp, ld, full, w8, cb0, cb1, sc, lz, lg, out)
                    }
                }
            }
            true
        }
    }

    /// [`Shuffles::tree8`] (`R = 8`) and [`Shuffles::tree16`] (`R = 16`):
    /// the bounds checked once, the slices cast to `f32`, the kernel for
    /// the direction and the source.
    ///
    /// # Safety
    /// AVX2 and FMA, and AVX-512 F and VL if `R` is 16.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn tree_rows<T: Real, const R: usize>(
        asc: bool,
        src: Option<(&[T], usize)>,
        rows: &mut [T],
        ld: usize,
        cb: &[T],
        sc: Option<&[T; 8]>,
        inverts: bool,
        lead: &mut [T],
        finite: (&mut bool, &mut bool),
    ) -> bool {
        if TypeId::of::<T>() != TypeId::of::<f32>() {
            return false;
        }
        // Bounds checked here, once: every access below is inside.
        let (rows, lead) = (&mut rows[..(R - 1) * ld + 8], &mut lead[..R]);
        let src = src.map(|(s, ss)| (&s[..(R - 1) * ss + 8], ss));
        let cb: &[T; 28] = cb[..28].try_into().expect("7 blocks");
        let cb: &[f32; 28] = cast_ref(cb);
        let sc: Option<&[f32; 8]> = sc.map(cast_ref);
        let (p, l) = (rows.as_mut_ptr().cast::<f32>(), lead.as_mut_ptr().cast::<f32>());
        let (from, ss) = src.map_or((p.cast_const(), ld), |(s, ss)| (s.as_ptr().cast::<f32>(), ss));
        // SAFETY: `T` is `f32` (same type id), so the slices hold `f32`;
        // `src` covers `l * ss + a`, `rows` `l * ld + a` for `l < R`,
        // `a < 8`, and `lead` `R` values; the instruction sets are present
        // (the caller's contract).
        let (i, o) = unsafe {
            match (R == 16, asc, src.is_some()) {
                (false, true, true) => tree8_f32::<true, true>(from, ss, p, ld, cb, sc, inverts, l),
                (false, true, false) => tree8_f32::<true, false>(from, ss, p, ld, cb, sc, inverts, l),
                (false, false, true) => tree8_f32::<false, true>(from, ss, p, ld, cb, sc, inverts, l),
                (false, false, false) => tree8_f32::<false, false>(from, ss, p, ld, cb, sc, inverts, l),
                (true, true, true) => tree16_f32::<true, true>(from, ss, p, ld, cb, sc, inverts, l),
                (true, true, false) => tree16_f32::<true, false>(from, ss, p, ld, cb, sc, inverts, l),
                (true, false, true) => tree16_f32::<false, true>(from, ss, p, ld, cb, sc, inverts, l),
                (true, false, false) => tree16_f32::<false, false>(from, ss, p, ld, cb, sc, inverts, l),
            }
        };
        *finite.0 &= i;
        *finite.1 &= o;
        true
    }

    /// `x` as a `U` when both are the same type (checked by the caller).
    #[inline(always)]
    fn cast_ref<T: 'static, U: 'static>(x: &T) -> &U {
        assert_eq!(TypeId::of::<T>(), TypeId::of::<U>());
        // SAFETY: `T` and `U` are the same type (asserted just above).
        unsafe { &*(x as *const T).cast::<U>() }
    }

    /// `x` as a `U` when both are the same type (checked by the caller).
    #[inline(always)]
    fn cast_mut<T: 'static, U: 'static>(x: &mut T) -> &mut U {
        assert_eq!(TypeId::of::<T>(), TypeId::of::<U>());
        // SAFETY: `T` and `U` are the same type (asserted just above).
        unsafe { &mut *(x as *mut T).cast::<U>() }
    }

    /// A rotation of `T` as one of `U` when both are the same type
    /// (checked by the caller).
    #[inline(always)]
    fn cast_rot<'r, 'a, T: Real, U: Real>(x: &'r Rotation<'a, T>) -> &'r Rotation<'a, U> {
        assert_eq!(TypeId::of::<T>(), TypeId::of::<U>());
        // SAFETY: `T` and `U` are the same type (asserted just above), so
        // the two rotation types are one.
        unsafe { &*(x as *const Rotation<'a, T>).cast::<Rotation<'a, U>>() }
    }

    /// A rotation's blocks as an operator applies them, of `T` as of `U`
    /// when both are the same type (asserted).
    #[inline(always)]
    fn cast_applied<'r, 'a, T: Real, U: Real, const MAP: u8>(x: Applied<'r, 'a, T, MAP>) -> Applied<'r, 'a, U, MAP> {
        Applied { rot: cast_rot::<T, U>(x.rot), op: x.op }
    }

    /// A table of exact blocks of `T` as one of `U` when both are the same
    /// type (asserted).
    #[inline(always)]
    fn cast_table<T: Real, U: Real>(x: ExactTable<'_, T>) -> ExactTable<'_, U> {
        assert_eq!(TypeId::of::<T>(), TypeId::of::<U>());
        // SAFETY: `T` and `U` are the same type (asserted just above).
        let cs = unsafe { core::slice::from_raw_parts(x.cs.as_ptr().cast::<[U; 2]>(), x.cs.len()) };
        ExactTable { d: x.d, cs, live: x.live }
    }

    /// A slice of `T` as one of `U` when both are the same type (checked
    /// by the caller).
    #[inline(always)]
    fn cast_slice_mut<T: 'static, U: 'static>(x: &mut [T]) -> &mut [U] {
        assert_eq!(TypeId::of::<T>(), TypeId::of::<U>());
        // SAFETY: `T` and `U` are the same type (asserted just above).
        unsafe { core::slice::from_raw_parts_mut(x.as_mut_ptr().cast::<U>(), x.len()) }
    }

    /// The processor's vector registers as [`Reg`]s for the full layout's
    /// wavefront: the arithmetic of [`Arith::rot`] lane by lane, so the
    /// results are bitwise those of the arrays' kernel (a product and a
    /// fused multiply-add, or two products and a sum; an exact block's
    /// `c = -b` negated in the scalar, exactly, and `e = a`). Only
    /// instantiated inside the functions above, which run after AVX2 and
    /// FMA were detected (and AVX-512 F, for the 512-bit registers).
    macro_rules! vector_reg {
        ($(#[$doc:meta])* $name:ident, $t:ty, $v:ty, $w:expr, $load:ident, $store:ident, $set1:ident,
         $zero:ident, $mul:ident, $add:ident, $sub:ident, $fmadd:ident, $fnmadd:ident) => {
            $(#[$doc])*
            #[derive(Clone, Copy)]
            struct $name($v);

            impl Reg<$t> for $name {
                const W: usize = $w;
                type Coef = [$v; 4];
                #[inline(always)]
                fn zero() -> Self {
                    // SAFETY: the instruction set is present (see the macro's note).
                    Self(unsafe { $zero() })
                }
                #[inline(always)]
                fn coef<M: Arith>(b: Block<$t>) -> [$v; 4] {
                    // SAFETY: as in `zero`.
                    unsafe {
                        if M::EXACT {
                            // `c p + e q` is `a q - b p` (see `rot`).
                            let (a, b) = ($set1(b.a), $set1(b.b));
                            [a, b, b, a]
                        } else {
                            [$set1(b.a), $set1(b.b), $set1(b.c), $set1(b.e)]
                        }
                    }
                }
                #[inline(always)]
                fn load(data: &[$t], at: usize) -> Self {
                    let s = &data[at..at + $w];
                    // SAFETY: `s` holds the register's lanes; as in `zero`.
                    Self(unsafe { $load(s.as_ptr()) })
                }
                #[inline(always)]
                fn store(&self, data: &mut [$t], at: usize) {
                    let s = &mut data[at..at + $w];
                    // SAFETY: as in `load`.
                    unsafe { $store(s.as_mut_ptr(), self.0) }
                }
                #[inline(always)]
                fn probe(&self) -> Self {
                    // SAFETY: as in `zero`.
                    Self(unsafe { $sub(self.0, self.0) })
                }
                #[inline(always)]
                fn sum(&self, o: &Self) -> Self {
                    // SAFETY: as in `zero`.
                    Self(unsafe { $add(self.0, o.0) })
                }
                #[inline(always)]
                fn all_zero(&self) -> bool {
                    let mut lanes = [0.0; $w];
                    // SAFETY: `lanes` holds the register's lanes; as in `zero`.
                    unsafe { $store(lanes.as_mut_ptr(), self.0) };
                    let mut zero = true;
                    for v in lanes {
                        zero &= v == 0.0;
                    }
                    zero
                }
                #[inline(always)]
                fn rot<M: Arith>(c: &[$v; 4], p: &mut Self, q: &mut Self) {
                    // SAFETY: as in `zero`.
                    unsafe {
                        let (x, y) = (p.0, q.0);
                        // Exact blocks: `fma(-b, p, a q)` as `-(b p) + a q`
                        // (one rounding of the same exact value), and
                        // `a q - b p` (`Arith`'s exact evaluations), with no
                        // negated coefficient to broadcast.
                        match (M::FUSED, M::EXACT) {
                            (true, false) => {
                                p.0 = $fmadd(c[0], x, $mul(c[1], y));
                                q.0 = $fmadd(c[2], x, $mul(c[3], y));
                            }
                            (true, true) => {
                                p.0 = $fmadd(c[0], x, $mul(c[1], y));
                                q.0 = $fnmadd(c[2], x, $mul(c[3], y));
                            }
                            (false, false) => {
                                p.0 = $add($mul(c[0], x), $mul(c[1], y));
                                q.0 = $add($mul(c[2], x), $mul(c[3], y));
                            }
                            (false, true) => {
                                p.0 = $add($mul(c[0], x), $mul(c[1], y));
                                q.0 = $sub($mul(c[3], y), $mul(c[2], x));
                            }
                        }
                    }
                }
            }
        };
    }

    vector_reg!(
        /// Eight `f32` lanes (AVX).
        Ymm32, f32, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_fmadd_ps, _mm256_fnmadd_ps
    );
    vector_reg!(
        /// Four `f64` lanes (AVX).
        Ymm64, f64, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_set1_pd, _mm256_setzero_pd,
        _mm256_mul_pd, _mm256_add_pd, _mm256_sub_pd, _mm256_fmadd_pd, _mm256_fnmadd_pd
    );
    vector_reg!(
        /// Sixteen `f32` lanes (AVX-512 F).
        Zmm32, f32, __m512, 16, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_mul_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_fmadd_ps, _mm512_fnmadd_ps
    );
    vector_reg!(
        /// Eight `f64` lanes (AVX-512 F).
        Zmm64, f64, __m512d, 8, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_set1_pd, _mm512_setzero_pd,
        _mm512_mul_pd, _mm512_add_pd, _mm512_sub_pd, _mm512_fmadd_pd, _mm512_fnmadd_pd
    );

    /// One step of the strict backward on registers `i`, `j` with step
    /// block `r` of `cb`, as `grad::lanes_recover` (no fused products):
    /// recover the input `M^T z'`, accumulate `g' z^T` into `acc[r]`,
    /// propagate `M^T g'`.
    #[inline(always)]
    fn recover_step(
        z: &mut [__m256; 8],
        g: &mut [__m256; 8],
        i: usize,
        j: usize,
        cb: &[f32; 28],
        r: usize,
        acc: &mut [f32; 224],
    ) {
        // SAFETY: AVX is enabled in every caller; `acc` holds 224 values.
        unsafe {
            let a = _mm256_set1_ps(cb[4 * r]);
            let b = _mm256_set1_ps(cb[4 * r + 1]);
            let c = _mm256_set1_ps(cb[4 * r + 2]);
            let e = _mm256_set1_ps(cb[4 * r + 3]);
            let (o1, o2, g1, g2) = (z[i], z[j], g[i], g[j]);
            let z1 = _mm256_add_ps(_mm256_mul_ps(a, o1), _mm256_mul_ps(c, o2));
            let z2 = _mm256_add_ps(_mm256_mul_ps(b, o1), _mm256_mul_ps(e, o2));
            let s = acc.as_mut_ptr().add(32 * r);
            _mm256_storeu_ps(s, _mm256_add_ps(_mm256_loadu_ps(s), _mm256_mul_ps(g1, z1)));
            _mm256_storeu_ps(s.add(8), _mm256_add_ps(_mm256_loadu_ps(s.add(8)), _mm256_mul_ps(g1, z2)));
            _mm256_storeu_ps(s.add(16), _mm256_add_ps(_mm256_loadu_ps(s.add(16)), _mm256_mul_ps(g2, z1)));
            _mm256_storeu_ps(s.add(24), _mm256_add_ps(_mm256_loadu_ps(s.add(24)), _mm256_mul_ps(g2, z2)));
            z[i] = z1;
            z[j] = z2;
            g[i] = _mm256_add_ps(_mm256_mul_ps(a, g1), _mm256_mul_ps(c, g2));
            g[j] = _mm256_add_ps(_mm256_mul_ps(b, g1), _mm256_mul_ps(e, g2));
        }
    }

    /// The scaling step backward, as `grad::scale_back_block`.
    #[inline(always)]
    fn scale_back8(z: &mut [__m256; 8], g: &mut [__m256; 8], sc: Option<&[f32; 8]>, accs: &mut [f32; 64]) {
        let Some(sc) = sc else { return };
        // SAFETY: AVX is enabled in every caller; `accs` holds 64 values.
        unsafe {
            for a in 0..8 {
                let s = _mm256_set1_ps(sc[a]);
                let zz = _mm256_div_ps(z[a], s);
                z[a] = zz;
                let p = accs.as_mut_ptr().add(8 * a);
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_mul_ps(g[a], zz)));
                g[a] = _mm256_mul_ps(g[a], s);
            }
        }
    }

    /// See [`Transposer::recover8`].
    ///
    /// # Safety
    /// AVX2 and FMA; `y` and `g` readable at `l * ld + a` for `l, a < 8`,
    /// and `g` writable there if `WRITE` (without it, `g` is only read).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn recover8_f32<const ASC: bool, const WRITE: bool>(
        y: *const f32,
        g: *mut f32,
        ld: usize,
        cb: &[f32; 28],
        sc: Option<&[f32; 8]>,
        acc: &mut [f32; 224],
        accs: &mut [f32; 64],
        lz: &mut [f32; 8],
        lg: &mut [f32; 8],
    ) {
        // SAFETY: AVX2 is enabled here; the caller guarantees that `y` and
        // `g` cover `l * ld + a` for `l, a < 8`.
        unsafe {
            // The blocks are walked coordinates outermost: fetch the rows'
            // next cache lines (two blocks on) while this one is computed.
            for k in 0..8 {
                _mm_prefetch::<_MM_HINT_T0>(y.wrapping_add(k * ld + 16).cast());
                _mm_prefetch::<_MM_HINT_T0>(g.wrapping_add(k * ld + 16).cast());
            }
            let mut z = load_t8(y, ld);
            let mut gv = load_t8(g, ld);
            if ASC {
                scale_back8(&mut z, &mut gv, sc, accs);
                for t in 0..4 {
                    recover_step(&mut z, &mut gv, 2 * t, 2 * t + 1, cb, t, acc);
                }
                recover_step(&mut z, &mut gv, 0, 2, cb, 4, acc);
                recover_step(&mut z, &mut gv, 4, 6, cb, 5, acc);
                recover_step(&mut z, &mut gv, 0, 4, cb, 6, acc);
                _mm256_storeu_ps(lz.as_mut_ptr(), z[0]);
                _mm256_storeu_ps(lg.as_mut_ptr(), gv[0]);
            } else {
                z[0] = _mm256_loadu_ps(lz.as_ptr());
                gv[0] = _mm256_loadu_ps(lg.as_ptr());
                recover_step(&mut z, &mut gv, 0, 4, cb, 0, acc);
                recover_step(&mut z, &mut gv, 0, 2, cb, 1, acc);
                recover_step(&mut z, &mut gv, 4, 6, cb, 2, acc);
                for t in 0..4 {
                    recover_step(&mut z, &mut gv, 2 * t, 2 * t + 1, cb, 3 + t, acc);
                }
                scale_back8(&mut z, &mut gv, sc, accs);
            }
            if WRITE {
                store_t8(gv, g, ld);
            }
        }
    }

    /// A register of `f32` lanes (8 with AVX2, 16 with AVX-512) and what the
    /// tree's register blocks do with it. Every method needs the register's
    /// instruction set (with FMA) enabled in its caller.
    trait Lanes: Copy {
        /// `x` in every lane.
        fn splat(x: f32) -> Self;
        /// `self * o`, lane by lane.
        fn mul(self, o: Self) -> Self;
        /// `self / o`, lane by lane.
        fn div(self, o: Self) -> Self;
        /// `self * b + c` rounded once, lane by lane.
        fn fmadd(self, b: Self, c: Self) -> Self;
        /// Whether every lane of the 8 registers is finite: `x - x` is +0
        /// for a finite `x` and NaN otherwise, so the OR of the differences
        /// has every bit clear exactly when all are finite.
        fn finite(v: &[Self; 8]) -> bool;
        /// Two levels of a transpose within each 128-bit part: from four
        /// registers whose part `h` holds 4 coordinates of rows `4 h + k`
        /// (`k < 4`, one row per register), the four coordinates (part `h`
        /// of register `a` holds coordinate `a` of rows `4 h .. 4 h + 4`);
        /// the same steps turn them back.
        fn quad(r: [Self; 4]) -> [Self; 4];
        /// The register from `p` (as many values as lanes).
        ///
        /// # Safety
        /// `p` readable at that many values.
        unsafe fn load(p: *const f32) -> Self;
        /// The register to `p`.
        ///
        /// # Safety
        /// `p` writable at as many values as lanes.
        unsafe fn store(self, p: *mut f32);
        /// The block of as many rows as lanes, 8 coordinates, at `p` (row
        /// stride `ld`), transposed: register `a` holds coordinate `a`.
        ///
        /// # Safety
        /// `p` readable at `l * ld + a` for `a < 8` and every lane `l`.
        unsafe fn load_t(p: *const f32, ld: usize) -> [Self; 8];
        /// The inverse of [`Lanes::load_t`].
        ///
        /// # Safety
        /// `p` writable at `l * ld + a` for `a < 8` and every lane `l`.
        unsafe fn store_t(v: [Self; 8], p: *mut f32, ld: usize);
    }

    /// Implements [`Lanes`] for a register type with its instruction set's
    /// intrinsics (the set, with FMA, enabled in every caller).
    macro_rules! lanes {
        ($t:ty: $set1:ident, $mul:ident, $div:ident, $fmadd:ident, $loadu:ident, $storeu:ident, $load_t:ident, $store_t:ident,
         $sub:ident, $zero:ident, $or:ident, $zero_bits:expr, $unpacklo:ident, $unpackhi:ident, $shuffle:ident) => {
            impl Lanes for $t {
                #[inline(always)]
                fn splat(x: f32) -> Self {
                    // SAFETY: the instruction set is enabled in every caller.
                    unsafe { $set1(x) }
                }
                #[inline(always)]
                fn mul(self, o: Self) -> Self {
                    // SAFETY: the instruction set is enabled in every caller.
                    unsafe { $mul(self, o) }
                }
                #[inline(always)]
                fn div(self, o: Self) -> Self {
                    // SAFETY: the instruction set is enabled in every caller.
                    unsafe { $div(self, o) }
                }
                #[inline(always)]
                fn fmadd(self, b: Self, c: Self) -> Self {
                    // SAFETY: the instruction set and FMA are enabled in every caller.
                    unsafe { $fmadd(self, b, c) }
                }
                #[inline(always)]
                fn finite(v: &[Self; 8]) -> bool {
                    // SAFETY: the instruction set is enabled in every caller.
                    unsafe {
                        let mut bad = $zero();
                        for x in v {
                            bad = $or(bad, $sub(*x, *x));
                        }
                        $zero_bits(bad)
                    }
                }
                #[inline(always)]
                fn quad(r: [Self; 4]) -> [Self; 4] {
                    // SAFETY: the instruction set is enabled in every caller.
                    unsafe {
                        let t0 = $unpacklo(r[0], r[1]);
                        let t1 = $unpackhi(r[0], r[1]);
                        let t2 = $unpacklo(r[2], r[3]);
                        let t3 = $unpackhi(r[2], r[3]);
                        [
                            $shuffle::<0x44>(t0, t2),
                            $shuffle::<0xEE>(t0, t2),
                            $shuffle::<0x44>(t1, t3),
                            $shuffle::<0xEE>(t1, t3),
                        ]
                    }
                }
                #[inline(always)]
                unsafe fn load(p: *const f32) -> Self {
                    // SAFETY: as the method's contract says.
                    unsafe { $loadu(p) }
                }
                #[inline(always)]
                unsafe fn store(self, p: *mut f32) {
                    // SAFETY: as the method's contract says.
                    unsafe { $storeu(p, self) }
                }
                #[inline(always)]
                unsafe fn load_t(p: *const f32, ld: usize) -> [Self; 8] {
                    // SAFETY: as the method's contract says.
                    unsafe { $load_t(p, ld) }
                }
                #[inline(always)]
                unsafe fn store_t(v: [Self; 8], p: *mut f32, ld: usize) {
                    // SAFETY: as the method's contract says.
                    unsafe { $store_t(v, p, ld) }
                }
            }
        };
    }

    lanes!(__m256: _mm256_set1_ps, _mm256_mul_ps, _mm256_div_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_storeu_ps,
        load_t8, store_t8, _mm256_sub_ps, _mm256_setzero_ps, _mm256_or_ps,
        |b: __m256| { let b = _mm256_castps_si256(b); _mm256_testz_si256(b, b) == 1 },
        _mm256_unpacklo_ps, _mm256_unpackhi_ps, _mm256_shuffle_ps);
    lanes!(__m512: _mm512_set1_ps, _mm512_mul_ps, _mm512_div_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_storeu_ps,
        load_t16, store_t16, _mm512_sub_ps, _mm512_setzero_ps, or512,
        |b: __m512| { let b = _mm512_castps_si512(b); _mm512_test_epi32_mask(b, b) == 0 },
        _mm512_unpacklo_ps, _mm512_unpackhi_ps, _mm512_shuffle_ps);

    /// The bitwise OR of two 512-bit registers of `f32` (AVX-512 F has it
    /// only for integers).
    ///
    /// # Safety
    /// AVX-512 F.
    #[inline(always)]
    unsafe fn or512(a: __m512, b: __m512) -> __m512 {
        // SAFETY: as the function's contract says.
        unsafe { _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(a), _mm512_castps_si512(b))) }
    }

    /// `(x_i, x_j) <- (a x_i + b x_j, c x_i + e x_j)` with block `r` of `cb`,
    /// one product fused as in [`crate::kernel::Fused`].
    #[inline(always)]
    fn rot<V: Lanes>(v: &mut [V; 8], i: usize, j: usize, cb: &[f32; 28], r: usize) {
        let (p, q) = (v[i], v[j]);
        let [a, b, c, e] = [cb[4 * r], cb[4 * r + 1], cb[4 * r + 2], cb[4 * r + 3]];
        v[i] = V::splat(a).fmadd(p, V::splat(b).mul(q));
        v[j] = V::splat(c).fmadd(p, V::splat(e).mul(q));
    }

    /// The scaling of one register block (divided for the inverses).
    #[inline(always)]
    fn scale<V: Lanes>(v: &mut [V; 8], sc: Option<&[f32; 8]>, inverts: bool) {
        let Some(sc) = sc else { return };
        for (x, &s) in v.iter_mut().zip(sc) {
            *x = if inverts { x.div(V::splat(s)) } else { x.mul(V::splat(s)) };
        }
    }

    /// One register block of the tree on rows (as many rows as `V` has
    /// lanes): see [`Transposer::tree8`]; returns whether every input (if
    /// `CHECK`) and every output is finite.
    ///
    /// # Safety
    /// `V`'s instruction set and FMA; `src` readable at `l * ss + a`, `p`
    /// writable at `l * ld + a` for `a < 8` and every lane `l`, `lead`
    /// readable and writable at as many values as lanes.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn tree_block<V: Lanes, const ASC: bool, const CHECK: bool>(
        src: *const f32,
        ss: usize,
        p: *mut f32,
        ld: usize,
        cb: &[f32; 28],
        sc: Option<&[f32; 8]>,
        inverts: bool,
        lead: *mut f32,
    ) -> (bool, bool) {
        // SAFETY: as the function's contract says.
        unsafe {
            let mut v = V::load_t(src, ss);
            let input_ok = !CHECK || V::finite(&v);
            if ASC {
                scale(&mut v, sc, inverts);
                for t in 0..4 {
                    rot(&mut v, 2 * t, 2 * t + 1, cb, t);
                }
                rot(&mut v, 0, 2, cb, 4);
                rot(&mut v, 4, 6, cb, 5);
                rot(&mut v, 0, 4, cb, 6);
                v[0].store(lead);
            } else {
                v[0] = V::load(lead);
                rot(&mut v, 0, 4, cb, 0);
                rot(&mut v, 0, 2, cb, 1);
                rot(&mut v, 4, 6, cb, 2);
                for t in 0..4 {
                    rot(&mut v, 2 * t, 2 * t + 1, cb, 3 + t);
                }
                scale(&mut v, sc, inverts);
            }
            let ok = V::finite(&v);
            V::store_t(v, p, ld);
            (input_ok, ok)
        }
    }

    /// See [`Transposer::tree8`] and [`tree_block`].
    ///
    /// # Safety
    /// AVX2 and FMA; `src` readable at `l * ss + a`, `p` writable at
    /// `l * ld + a`, `lead` readable and writable at `a`, for `l, a < 8`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tree8_f32<const ASC: bool, const CHECK: bool>(
        src: *const f32,
        ss: usize,
        p: *mut f32,
        ld: usize,
        cb: &[f32; 28],
        sc: Option<&[f32; 8]>,
        inverts: bool,
        lead: *mut f32,
    ) -> (bool, bool) {
        // SAFETY: as the function's contract says.
        unsafe { tree_block::<__m256, ASC, CHECK>(src, ss, p, ld, cb, sc, inverts, lead) }
    }

    /// The 8 x 8 block at `p` (row stride `ld`) transposed into registers
    /// (`v[a]` = coordinate `a` of rows 0-7): rows `k` and `k + 4` are
    /// loaded into the two halves of one register, so only 16 shuffles
    /// remain (against 24 after plain loads).
    ///
    /// # Safety
    /// AVX; `p` readable at `l * ld + a` for `l, a < 8`.
    #[inline(always)]
    unsafe fn load_t8(p: *const f32, ld: usize) -> [__m256; 8] {
        let h = |k: usize, c: usize| {
            _mm256_insertf128_ps::<1>(
                _mm256_castps128_ps256(_mm_loadu_ps(p.add(k * ld + c))),
                _mm_loadu_ps(p.add((k + 4) * ld + c)),
            )
        };
        let a = <__m256 as Lanes>::quad([h(0, 0), h(1, 0), h(2, 0), h(3, 0)]);
        let b = <__m256 as Lanes>::quad([h(0, 4), h(1, 4), h(2, 4), h(3, 4)]);
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    }

    /// Stores the registers `v[a]` (coordinate `a` of rows 0-7) back to the
    /// 8 x 8 block at `p` (row stride `ld`), the inverse of [`load_t8`].
    ///
    /// # Safety
    /// AVX; `p` writable at `l * ld + a` for `l, a < 8`.
    #[inline(always)]
    unsafe fn store_t8(v: [__m256; 8], p: *mut f32, ld: usize) {
        for (c, half) in [(0, [v[0], v[1], v[2], v[3]]), (4, [v[4], v[5], v[6], v[7]])] {
            for (k, r) in <__m256 as Lanes>::quad(half).into_iter().enumerate() {
                _mm_storeu_ps(p.add(k * ld + c), _mm256_castps256_ps128(r));
                _mm_storeu_ps(p.add((k + 4) * ld + c), _mm256_extractf128_ps::<1>(r));
            }
        }
    }

    /// # Safety
    /// AVX2; `s` readable at `r * ss + c`, `d` writable at `c * ds + r`, for
    /// `r, c < 8`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tr8_f32(s: *const f32, ss: usize, d: *mut f32, ds: usize) {
        for (c, v) in load_t8(s, ss).into_iter().enumerate() {
            _mm256_storeu_ps(d.add(c * ds), v);
        }
    }

    /// # Safety
    /// AVX2; `s` readable at `r * ss + c`, `d` writable at `c * ds + r`, for
    /// `r, c < 4`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tr4_f64(s: *const f64, ss: usize, d: *mut f64, ds: usize) {
        let r: [__m256d; 4] = core::array::from_fn(|k| _mm256_loadu_pd(s.add(k * ss)));
        let t0 = _mm256_unpacklo_pd(r[0], r[1]);
        let t1 = _mm256_unpackhi_pd(r[0], r[1]);
        let t2 = _mm256_unpacklo_pd(r[2], r[3]);
        let t3 = _mm256_unpackhi_pd(r[2], r[3]);
        _mm256_storeu_pd(d, _mm256_permute2f128_pd::<0x20>(t0, t2));
        _mm256_storeu_pd(d.add(ds), _mm256_permute2f128_pd::<0x20>(t1, t3));
        _mm256_storeu_pd(d.add(2 * ds), _mm256_permute2f128_pd::<0x31>(t0, t2));
        _mm256_storeu_pd(d.add(3 * ds), _mm256_permute2f128_pd::<0x31>(t1, t3));
    }

    /// See [`Transposer::tree16`] and [`tree_block`].
    ///
    /// # Safety
    /// AVX-512 F, AVX2 and FMA; `src` readable at `l * ss + a`, `p` writable
    /// at `l * ld + a` for `l < 16`, `a < 8`, `lead` readable and writable at
    /// 16 values.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn tree16_f32<const ASC: bool, const CHECK: bool>(
        src: *const f32,
        ss: usize,
        p: *mut f32,
        ld: usize,
        cb: &[f32; 28],
        sc: Option<&[f32; 8]>,
        inverts: bool,
        lead: *mut f32,
    ) -> (bool, bool) {
        // SAFETY: as the function's contract says.
        unsafe { tree_block::<__m512, ASC, CHECK>(src, ss, p, ld, cb, sc, inverts, lead) }
    }

    /// The 16 x 8 block at `p` (row stride `ld`) transposed into registers
    /// (`v[a]` = coordinate `a` of rows 0-15, in order): rows `k`, `k + 4`,
    /// `k + 8` and `k + 12` are loaded into the four quarters of one
    /// register, then [`Lanes::quad`] transposes within quarters.
    ///
    /// # Safety
    /// AVX-512 F; `p` readable at `l * ld + a` for `l < 16`, `a < 8`.
    #[inline(always)]
    unsafe fn load_t16(p: *const f32, ld: usize) -> [__m512; 8] {
        // SAFETY: as the function's contract says.
        let h = |k: usize, c: usize| unsafe {
            let r = _mm512_castps128_ps512(_mm_loadu_ps(p.add(k * ld + c)));
            let r = _mm512_insertf32x4::<1>(r, _mm_loadu_ps(p.add((k + 4) * ld + c)));
            let r = _mm512_insertf32x4::<2>(r, _mm_loadu_ps(p.add((k + 8) * ld + c)));
            _mm512_insertf32x4::<3>(r, _mm_loadu_ps(p.add((k + 12) * ld + c)))
        };
        let a = <__m512 as Lanes>::quad([h(0, 0), h(1, 0), h(2, 0), h(3, 0)]);
        let b = <__m512 as Lanes>::quad([h(0, 4), h(1, 4), h(2, 4), h(3, 4)]);
        [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
    }

    /// Stores the registers `v[a]` (coordinate `a` of rows 0-15) back to the
    /// 16 x 8 block at `p` (row stride `ld`), the inverse of [`load_t16`].
    ///
    /// # Safety
    /// AVX-512 F; `p` writable at `l * ld + a` for `l < 16`, `a < 8`.
    #[inline(always)]
    unsafe fn store_t16(v: [__m512; 8], p: *mut f32, ld: usize) {
        // SAFETY: as the function's contract says.
        unsafe {
            for (c, half) in [(0, [v[0], v[1], v[2], v[3]]), (4, [v[4], v[5], v[6], v[7]])] {
                for (k, r) in <__m512 as Lanes>::quad(half).into_iter().enumerate() {
                    _mm_storeu_ps(p.add(k * ld + c), _mm512_castps512_ps128(r));
                    _mm_storeu_ps(p.add((k + 4) * ld + c), _mm512_extractf32x4_ps::<1>(r));
                    _mm_storeu_ps(p.add((k + 8) * ld + c), _mm512_extractf32x4_ps::<2>(r));
                    _mm_storeu_ps(p.add((k + 12) * ld + c), _mm512_extractf32x4_ps::<3>(r));
                }
            }
        }
    }

    /// The index vector (for `_mm512_permutex2var_ps`, 16 values from
    /// block `b`'s table row, then 16 from block `b + 1`'s) that gives each
    /// lane of stage `s` of a pair of 8-coordinate blocks the coefficient
    /// `ci` (`0..4` for `[a, b, c, e]`) of its plane if the lane is the
    /// plane's first coordinate, `cj` if it is the second; the stage's
    /// entries start at `rel` in the loaded values. Lanes the stage does
    /// not touch take lane 0 of their half.
    const fn coef_index(s: usize, rel: usize, ci: usize, cj: usize) -> [i32; 16] {
        let mut idx = [0i32; 16];
        let dist: usize = 1 << s;
        let mut l = 0usize;
        while l < 16 {
            let (h, k) = (l / 8, l % 8);
            let mut at = 16 * h;
            if k.is_multiple_of(dist) {
                let t = k / (2 * dist);
                let c = if (k / dist).is_multiple_of(2) { ci } else { cj };
                at += rel + 4 * t + c;
            }
            idx[l] = at as i32;
            l += 1;
        }
        idx
    }

    /// Where the stages' entries lie in a table row of 28 (7 blocks in the
    /// order they are applied, see `kernel::first_stages`): `[0]` where the
    /// 16 values holding stage 0 are loaded from, `[3]` where the 12 holding
    /// stages 1 and 2 are, and `[1]`, `[2]` where those two stages start
    /// within them.
    const fn stage_offsets(asc: bool) -> [usize; 4] {
        if asc {
            // Stage 0 (4 blocks) at 0, stage 1 (2) at 16, stage 2 at 24.
            [0, 0, 8, 16]
        } else {
            // Stage 2 at 0, stage 1 at 4, stage 0 at 12.
            [12, 4, 0, 0]
        }
    }

    /// The index vector of [`coef_index`] for stage `s` of a table row in
    /// the order `ASC` gives.
    const fn stage_index<const ASC: bool>(s: usize, ci: usize, cj: usize) -> [i32; 16] {
        let o = stage_offsets(ASC);
        coef_index(s, if s == 0 { 0 } else { o[s] }, ci, cj)
    }

    /// The coefficient registers of the backward's first three stages on a
    /// pair of 8-coordinate blocks (`cb0`, `cb1`: 7 step blocks `[a, b, c,
    /// e]` each, in the order `ASC` undoes them), one per stage: `c1` holds
    /// `a` in the lanes of the planes' first coordinates and `e` in those of
    /// their second, `c2` holds `c` and `b`.
    ///
    /// # Safety
    /// AVX-512 F.
    #[inline(always)]
    unsafe fn pair_coefs<const ASC: bool>(cb0: &[f32; 28], cb1: &[f32; 28]) -> ([__m512; 3], [__m512; 3]) {
        // SAFETY: AVX-512 F (the caller's contract); 16 values from
        // `o[0]` (at most 12) and 12 from `o[3]` (at most 16) lie inside
        // the 28 of each table row.
        unsafe {
            let o = stage_offsets(ASC);
            let a0 = _mm512_loadu_ps(cb0.as_ptr().add(o[0]));
            let b0 = _mm512_loadu_ps(cb1.as_ptr().add(o[0]));
            let a1 = _mm512_maskz_loadu_ps(0x0FFF, cb0.as_ptr().add(o[3]));
            let b1 = _mm512_maskz_loadu_ps(0x0FFF, cb1.as_ptr().add(o[3]));
            (
                [
                    perm2(a0, &const { stage_index::<ASC>(0, 0, 3) }, b0),
                    perm2(a1, &const { stage_index::<ASC>(1, 0, 3) }, b1),
                    perm2(a1, &const { stage_index::<ASC>(2, 0, 3) }, b1),
                ],
                [
                    perm2(a0, &const { stage_index::<ASC>(0, 2, 1) }, b0),
                    perm2(a1, &const { stage_index::<ASC>(1, 2, 1) }, b1),
                    perm2(a1, &const { stage_index::<ASC>(2, 2, 1) }, b1),
                ],
            )
        }
    }

    /// Lane `l` from lane `idx[l]` of `a` (below 16) or of `b` (16 on).
    ///
    /// # Safety
    /// AVX-512 F.
    #[inline(always)]
    unsafe fn perm2(a: __m512, idx: &[i32; 16], b: __m512) -> __m512 {
        // SAFETY: AVX-512 F (the caller's contract); `idx` holds 16 values.
        unsafe { _mm512_permutex2var_ps(a, _mm512_loadu_epi32(idx.as_ptr()), b) }
    }

    /// The lanes stage `S` of a pair kernel changes (both coordinates of
    /// each of its planes).
    const fn stage_mask(s: usize) -> __mmask16 {
        [0xFFFF, 0x5555, 0x1111][s]
    }

    /// Each plane's two coordinates of stage `S` exchanged (lane `i` gets
    /// lane `i ^ 2^S`).
    ///
    /// # Safety
    /// AVX-512 F.
    #[inline(always)]
    unsafe fn swap<const S: usize>(v: __m512) -> __m512 {
        // SAFETY: AVX-512 F (the caller's contract).
        unsafe {
            match S {
                0 => _mm512_permute_ps::<0xB1>(v),
                1 => _mm512_permute_ps::<0x4E>(v),
                _ => _mm512_shuffle_f32x4::<0xB1>(v, v),
            }
        }
    }

    /// Lanes 0 and 8 (the two blocks' leaders) to `p` and `p + off`.
    ///
    /// # Safety
    /// AVX-512 F; `p` and `p + off` writable.
    #[inline(always)]
    unsafe fn store_leaders(v: __m512, p: *mut f32, off: usize) {
        // SAFETY: as the function's contract says.
        unsafe {
            _mm_store_ss(p, _mm512_castps512_ps128(v));
            _mm_store_ss(p.add(off), _mm512_extractf32x4_ps::<2>(v));
        }
    }

    /// `v` with lanes 0 and 8 from `p` and `p + off`.
    ///
    /// # Safety
    /// AVX-512 F; `p` and `p + off` readable.
    #[inline(always)]
    unsafe fn load_leaders(v: __m512, p: *const f32, off: usize) -> __m512 {
        // SAFETY: as the function's contract says.
        unsafe {
            let v = _mm512_mask_broadcastss_ps(v, 0x0001, _mm_load_ss(p));
            _mm512_mask_broadcastss_ps(v, 0x0100, _mm_load_ss(p.add(off)))
        }
    }

    /// The scaling step backward on a row's 16 coordinates, as
    /// `grad::scale_back_block`: `z <- z / s`, `acc[6] += g z`, `g <- s g`.
    ///
    /// # Safety
    /// AVX-512 F.
    #[inline(always)]
    unsafe fn scale_back16(z: &mut __m512, g: &mut __m512, s: Option<__m512>, acc: &mut [__m512; 7]) {
        let Some(s) = s else { return };
        // SAFETY: AVX-512 F (the caller's contract).
        unsafe {
            let zz = _mm512_div_ps(*z, s);
            acc[6] = _mm512_add_ps(acc[6], _mm512_mul_ps(*g, zz));
            *z = zz;
            *g = _mm512_mul_ps(*g, s);
        }
    }

    /// How far ahead (in values) the pair kernels fetch each row.
    const PREFETCH: usize = 32;

    /// One step of the strict backward (stage `S`) on the registers of a
    /// row's 16 coordinates, as `grad::lanes_recover` (no fused products):
    /// for each plane `(i, j)` of the stage, the input recovered as
    /// `M^T z'` (lane `i`: `a z_i + c z_j`, lane `j`: `e z_j + b z_i`; `c1`
    /// holds `a` and `e`, `c2` `c` and `b`), the products `g_i z_i`,
    /// `g_j z_j` summed into `acc[S]` and `g_j z_i`, `g_i z_j` into
    /// `acc[3 + S]`, the gradient propagated as `M^T g'`. The sums commute,
    /// so each value is bitwise the portable one.
    ///
    /// # Safety
    /// AVX-512 F.
    #[inline(always)]
    unsafe fn pair_recover<const S: usize>(
        z: &mut __m512,
        g: &mut __m512,
        c1: __m512,
        c2: __m512,
        acc: &mut [__m512; 7],
    ) {
        // SAFETY: AVX-512 F (the caller's contract).
        unsafe {
            let k = stage_mask(S);
            let (sz, sg) = (swap::<S>(*z), swap::<S>(*g));
            let zn = _mm512_mask_add_ps(*z, k, _mm512_mul_ps(c1, *z), _mm512_mul_ps(c2, sz));
            acc[S] = _mm512_add_ps(acc[S], _mm512_mul_ps(*g, zn));
            acc[3 + S] = _mm512_add_ps(acc[3 + S], _mm512_mul_ps(sg, zn));
            *g = _mm512_mask_add_ps(*g, k, _mm512_mul_ps(c1, *g), _mm512_mul_ps(c2, sg));
            *z = zn;
        }
    }

    /// One row of [`recover_pair_f32`]: its 16 coordinates of `y` and `g`
    /// (written back if `WRITE`), the sums into `acc`, the leaders to or
    /// from `lz`, `lg` and `lz + off`, `lg + off`.
    ///
    /// # Safety
    /// AVX-512 F; `y` readable, `g` readable (and writable if `WRITE`) at 16
    /// values, `lz` and `lg` readable and writable at 0 and `off`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn recover_row<const ASC: bool, const WRITE: bool>(
        y: *const f32,
        g: *mut f32,
        (c1, c2): ([__m512; 3], [__m512; 3]),
        s: Option<__m512>,
        acc: &mut [__m512; 7],
        lz: *mut f32,
        lg: *mut f32,
        off: usize,
    ) {
        // SAFETY: as the function's contract says.
        unsafe {
            // The pairs walk the rows coordinates outermost: fetch this
            // row's lines of the pair after next.
            _mm_prefetch::<_MM_HINT_T0>(y.wrapping_add(PREFETCH).cast());
            _mm_prefetch::<_MM_HINT_T0>(g.wrapping_add(PREFETCH).cast());
            let mut z = _mm512_loadu_ps(y);
            let mut gv = _mm512_loadu_ps(g);
            if ASC {
                scale_back16(&mut z, &mut gv, s, acc);
                pair_recover::<0>(&mut z, &mut gv, c1[0], c2[0], acc);
                pair_recover::<1>(&mut z, &mut gv, c1[1], c2[1], acc);
                pair_recover::<2>(&mut z, &mut gv, c1[2], c2[2], acc);
                store_leaders(z, lz, off);
                store_leaders(gv, lg, off);
            } else {
                z = load_leaders(z, lz, off);
                gv = load_leaders(gv, lg, off);
                pair_recover::<2>(&mut z, &mut gv, c1[2], c2[2], acc);
                pair_recover::<1>(&mut z, &mut gv, c1[1], c2[1], acc);
                pair_recover::<0>(&mut z, &mut gv, c1[0], c2[0], acc);
                scale_back16(&mut z, &mut gv, s, acc);
            }
            if WRITE {
                _mm512_storeu_ps(g, gv);
            }
        }
    }

    /// [`Transposer::cross8`] for `f32`: one register of 8 lanes per row
    /// of `E`, all eight rows in one pass over the data rows (on AVX-512
    /// too: a block's row is 8 lanes). Each row `i` of `E` as `dx_i` (or,
    /// for `i = 0`, the leader's `dx'_0`) times the row of `x`, summed;
    /// column 0 from the leader `x'_0` times the row of `dx`, the corner
    /// alone. Each a product and a sum, as the portable loop forms them.
    /// With `add` the sums go on from those in `out` (as this function
    /// leaves them), else from zero.
    ///
    /// # Safety
    /// AVX2 and FMA must be present; `xb` and `gb` readable at `r * ld +
    /// a` for `r < w`, `a < 8`, `lz` and `lg` at `r < w`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn cross8_256(
        xb: *const f32,
        gb: *const f32,
        lz: *const f32,
        lg: *const f32,
        w: usize,
        ld: usize,
        out: &mut [f32; 64],
        add: bool,
    ) {
        // SAFETY: as the function's contract says.
        unsafe {
            let (mut acc, mut col, mut corner) = if add {
                // Column 0 of `out` holds `col` (its lane 0 the corner): the
                // accumulators' lanes 0 and `col`'s lane 0 are not kept.
                let acc: [__m256; 8] = core::array::from_fn(|i| _mm256_loadu_ps(out.as_ptr().add(8 * i)));
                let c = &*out;
                (acc, _mm256_setr_ps(c[0], c[8], c[16], c[24], c[32], c[40], c[48], c[56]), c[0])
            } else {
                ([_mm256_setzero_ps(); 8], _mm256_setzero_ps(), 0f32)
            };
            for r in 0..w {
                let (xr, gr, l, lgr) = (xb.add(r * ld), gb.add(r * ld), *lz.add(r), *lg.add(r));
                let xv = _mm256_loadu_ps(xr);
                for (i, a) in acc.iter_mut().enumerate() {
                    let g = _mm256_set1_ps(if i == 0 { lgr } else { *gr.add(i) });
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(g, xv));
                }
                col = _mm256_add_ps(col, _mm256_mul_ps(_mm256_loadu_ps(gr), _mm256_set1_ps(l)));
                corner += lgr * l;
            }
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), *a);
            }
            let mut c = [0f32; 8];
            _mm256_storeu_ps(c.as_mut_ptr(), col);
            for (i, v) in c.iter().enumerate() {
                out[8 * i] = *v;
            }
            out[0] = corner;
        }
    }

    /// See [`Transposer::recover_pair`]: rows `r < w8` of a pair of blocks,
    /// one register per row, the rows of each lane class (`r % 8`) in turn
    /// so that their sums stay in registers.
    ///
    /// # Safety
    /// AVX-512 F; `y` readable and `g` readable (and writable if `WRITE`) at
    /// `r * ld + a` for `r < full`, `py` readable and `pg` writable at
    /// `(r - full) * ld + a` for `full <= r < w8`, `a < 16`; `lz` and `lg`
    /// readable and writable at `r` and `w8 + r`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    unsafe fn recover_pair_f32<const ASC: bool, const WRITE: bool>(
        y: *const f32,
        g: *mut f32,
        py: *const f32,
        pg: *mut f32,
        ld: usize,
        full: usize,
        w8: usize,
        cb0: &[f32; 28],
        cb1: &[f32; 28],
        sc: Option<&[f32; 16]>,
        lz: *mut f32,
        lg: *mut f32,
        out: &mut [f32; 112],
    ) {
        // SAFETY: as the function's contract says.
        unsafe {
            // Lane `i` of a plane takes `a` (first register) and `c`, lane
            // `j` takes `e` and `b`.
            let (c1, c2) = pair_coefs::<ASC>(cb0, cb1);
            // (The closure inherits the function's instruction sets.)
            let s = sc.map(|s| _mm512_loadu_ps(s.as_ptr()));
            let mut classes = [[_mm512_setzero_ps(); 7]; 8];
            for (k, acc) in classes.iter_mut().enumerate() {
                let mut r = k;
                while r < full {
                    let (yp, gp) = (y.add(r * ld), g.add(r * ld));
                    recover_row::<ASC, WRITE>(yp, gp, (c1, c2), s, acc, lz.add(r), lg.add(r), w8);
                    r += 8;
                }
                while r < w8 {
                    let (yp, gp) = (py.add((r - full) * ld), pg.add((r - full) * ld));
                    recover_row::<ASC, true>(yp, gp, (c1, c2), s, acc, lz.add(r), lg.add(r), w8);
                    r += 8;
                }
            }
            // The classes' sums pairwise, as `grad::reduce`.
            for (v, o) in out.chunks_exact_mut(16).enumerate() {
                let c = classes.map(|a| a[v]);
                let lo = _mm512_add_ps(_mm512_add_ps(c[0], c[1]), _mm512_add_ps(c[2], c[3]));
                let hi = _mm512_add_ps(_mm512_add_ps(c[4], c[5]), _mm512_add_ps(c[6], c[7]));
                _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(lo, hi));
            }
        }
    }
}
