//! Run-time dispatch to the kernels of [`crate::kernel`] compiled for AVX2 +
//! FMA and AVX-512 (x86-64 with feature `std`; elsewhere only the portable
//! kernels exist and this module only answers "not available").
//!
//! This is the only module of the crate with `unsafe` code: calling a
//! function compiled with `#[target_feature]` is unsafe because running it
//! on a processor without those features is undefined behaviour. Every such
//! call here is preceded by the run-time check of exactly the features the
//! function enables. The functions themselves contain no unsafe operations:
//! they are the safe generic kernels, monomorphised inside the
//! feature-enabled wrapper so that the compiler vectorises them for the
//! wider registers and fuses one product of each rotation into an FMA.
#![allow(unsafe_code)]

use crate::apply::Op;
use crate::kernel::Kernel;
use crate::{Real, Rotation};

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

/// Applies `op` to the tile with kernel `k` (the portable one if `k` cannot
/// run here).
#[inline]
pub(crate) fn run<T: Real>(
    k: Kernel,
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    match k {
        Kernel::Avx2 if available(Kernel::Avx2) => {
            // SAFETY: AVX2 and FMA were detected on this processor just above.
            unsafe { x86::run_avx2(rot, op, data, ld, base, tw) };
            return;
        }
        Kernel::Avx512 if available(Kernel::Avx512) => {
            // SAFETY: AVX-512 F and VL, AVX2 and FMA were detected just above.
            unsafe { x86::run_avx512(rot, op, data, ld, base, tw) };
            return;
        }
        _ => {}
    }
    let _ = k;
    crate::kernel::run_portable(rot, op, data, ld, base, tw);
}

/// Whether every entry of `xs` is finite, vectorised for kernel `k`.
#[inline]
pub(crate) fn all_finite<T: Real>(k: Kernel, xs: &[T]) -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if k != Kernel::Portable && available(Kernel::Avx2) {
        // SAFETY: AVX2 and FMA were detected on this processor just above.
        return unsafe { x86::all_finite_avx2(xs) };
    }
    let _ = k;
    crate::kernel::all_finite(xs)
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod x86 {
    use crate::apply::Op;
    use crate::kernel::{run, Fused};
    use crate::{Real, Rotation};

    /// Whether `T` is the 4-byte float (the lane counts depend on it).
    #[inline(always)]
    fn is_f32<T>() -> bool {
        core::mem::size_of::<T>() == 4
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
    ) {
        if is_f32::<T>() {
            run::<Fused, T, 8, 16>(rot, op, data, ld, base, tw);
        } else {
            run::<Fused, T, 4, 8>(rot, op, data, ld, base, tw);
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
    ) {
        if is_f32::<T>() {
            run::<Fused, T, 16, 64>(rot, op, data, ld, base, tw);
        } else {
            run::<Fused, T, 8, 16>(rot, op, data, ld, base, tw);
        }
    }

    /// # Safety
    /// The processor must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn all_finite_avx2<T: Real>(xs: &[T]) -> bool {
        crate::kernel::all_finite(xs)
    }
}
