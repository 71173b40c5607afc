//! The scalar trait: `f32` and `f64`.
//!
//! All elementary functions come from [`num_traits::Float`], which is backed
//! by `std` or by `libm` according to the crate's features; no other module
//! carries a `cfg` for the math backend.

use core::fmt::{Debug, Display};
use num_traits::{Float, FloatConst};

/// A real floating-point scalar the crate computes with (`f32` or `f64`).
///
/// The trait is sealed: it is implemented for `f32` and `f64` only, and its
/// supertrait, which carries the kernels' entry points for each of the two,
/// cannot be named outside the crate.
///
/// ```
/// use qgoft_math::Real;
/// assert_eq!(<f32 as Real>::UNIT_ROUNDOFF, 2f32.powi(-24));
/// assert_eq!(<f64 as Real>::from_f64(0.5), 0.5);
/// ```
pub trait Real:
    crate::simd::Dispatch + Float + FloatConst + Copy + Debug + Display + Default + Send + Sync + 'static
{
    /// Unit roundoff `u`: `2^-24` for `f32`, `2^-53` for `f64`.
    const UNIT_ROUNDOFF: Self;
    /// The constant `2^s + 1` of Dekker's exact splitting of a product.
    const SPLITTER: Self;
    /// Converts from `f64`, rounding to nearest.
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` exactly.
    fn to_f64(self) -> f64;
    /// Converts a count, rounding to nearest.
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }
}

impl Real for f32 {
    const UNIT_ROUNDOFF: Self = 5.960_464_5e-8;
    const SPLITTER: Self = 4097.0;
    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    const UNIT_ROUNDOFF: Self = 1.110_223_024_625_156_5e-16;
    const SPLITTER: Self = 134_217_729.0;
    #[inline]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
}

/// Error-free product `a * b = p + e` (Dekker, no FMA needed).
#[inline]
pub(crate) fn two_prod<T: Real>(a: T, b: T) -> (T, T) {
    let p = a * b;
    let (ah, al) = split(a);
    let (bh, bl) = split(b);
    let e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
    (p, e)
}

#[inline]
fn split<T: Real>(a: T) -> (T, T) {
    let c = T::SPLITTER * a;
    let h = c - (c - a);
    (h, a - h)
}

/// Error-free sum `a + b = s + e` (Knuth).
#[inline]
pub(crate) fn two_sum<T: Real>(a: T, b: T) -> (T, T) {
    let s = a + b;
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

/// `start + sum(x_k * y_k)` evaluated as if in twice the working precision
/// (Ogita, Rump and Oishi's `Dot2`), rounded once at the end.
pub(crate) fn dot2<T: Real>(start: T, pairs: impl Iterator<Item = (T, T)>) -> T {
    let mut s = start;
    let mut c = T::zero();
    for (x, y) in pairs {
        let (p, ep) = two_prod(x, y);
        let (t, es) = two_sum(s, p);
        s = t;
        c = c + (ep + es);
    }
    s + c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot2_is_exact_where_plain_sum_cancels() {
        // 1 + 2^-30 * 2^-30 - 1 vanishes in plain f64 arithmetic order.
        let t = 2f64.powi(-30);
        let v = dot2(-1.0f64, [(1.0, 1.0), (t, t)].into_iter());
        assert_eq!(v, t * t);
        let v32 = dot2(-1.0f32, [(1.0, 1.0), (2f32.powi(-13), 2f32.powi(-13))].into_iter());
        assert_eq!(v32, 2f32.powi(-26));
    }

    #[test]
    fn unit_roundoff_values() {
        assert_eq!(<f32 as Real>::UNIT_ROUNDOFF, f32::EPSILON / 2.0);
        assert_eq!(<f64 as Real>::UNIT_ROUNDOFF, f64::EPSILON / 2.0);
    }
}
