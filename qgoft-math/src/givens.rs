//! The 2x2 Givens rotation.
//!
//! On the plane `(i, j)`, `i < j`, the rotation by `theta` is the identity
//! except for
//!
//! ```text
//! G[i][i] = c    G[i][j] = -s
//! G[j][i] = s    G[j][j] =  c        c = cos(theta), s = sin(theta)
//! ```
//!
//! so `G (x_i, x_j) = (c x_i - s x_j, s x_i + c x_j)`.

use crate::error::{Error, Result};
use crate::Real;

/// A plane rotation `[[c, -s], [s, c]]` with `c^2 + s^2 = 1` (to rounding).
///
/// ```
/// use qgoft_math::Givens;
/// let g = Givens::from_angle(core::f64::consts::FRAC_PI_2);
/// let (u, v) = g.apply(1.0, 0.0);
/// assert!(u.abs() < 1e-15 && (v - 1.0).abs() < 1e-15);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Givens<T> {
    c: T,
    s: T,
}

impl<T: Real> Givens<T> {
    /// The rotation with the given cosine and sine, unchecked.
    ///
    /// The caller promises `c^2 + s^2 = 1` to rounding; nothing else in the
    /// crate relies on it for memory safety, only for orthogonality.
    #[inline]
    pub const fn new_unchecked(c: T, s: T) -> Self {
        Self { c, s }
    }

    /// The rotation with cosine `c` and sine `s`, or `None` unless both are
    /// finite and `abs(c^2 + s^2 - 1) <= tol`.
    ///
    /// ```
    /// use qgoft_math::Givens;
    /// assert!(Givens::try_new(0.6f64, 0.8, 1e-12).is_some());
    /// assert!(Givens::try_new(0.6f64, 0.7, 1e-12).is_none());
    /// ```
    pub fn try_new(c: T, s: T, tol: T) -> Option<Self> {
        let e = (c * c + s * s - T::one()).abs();
        (c.is_finite() && s.is_finite() && e <= tol).then_some(Self { c, s })
    }

    /// The identity rotation.
    #[inline]
    pub fn identity() -> Self {
        Self { c: T::one(), s: T::zero() }
    }

    /// The rotation by `theta` radians.
    #[inline]
    pub fn from_angle(theta: T) -> Self {
        let (s, c) = theta.sin_cos();
        Self { c, s }
    }

    /// The rotation `G` with `G^T (a, b) = (r, 0)`, and `r`.
    ///
    /// Follows LAPACK's `xLARTG` (3.10.1 and later): `c >= 0`, `r` carries
    /// the sign of `a` (`r = |b|`, `s = sign(b)` when `a = 0`), and the
    /// computation is scaled so that no intermediate overflows or harmfully
    /// underflows for any finite input, subnormals included.
    ///
    /// # Errors
    /// [`Error::NonFinite`] if `a` or `b` is NaN or infinite;
    /// [`Error::Overflow`] if the true `r = hypot(a, b)` exceeds the largest
    /// finite value (the rotation itself would still be representable).
    ///
    /// ```
    /// use qgoft_math::Givens;
    /// let (g, r) = Givens::generate(3.0f64, 4.0)?;
    /// assert_eq!(r, 5.0);
    /// let (u, v) = g.apply_transpose(3.0, 4.0);
    /// assert!((u - 5.0).abs() < 1e-15 && v.abs() < 1e-15);
    /// # Ok::<(), qgoft_math::Error>(())
    /// ```
    pub fn generate(a: T, b: T) -> Result<(Self, T)> {
        if !a.is_finite() {
            return Err(Error::NonFinite { what: "givens input a", index: 0, value: a.to_f64() });
        }
        if !b.is_finite() {
            return Err(Error::NonFinite { what: "givens input b", index: 1, value: b.to_f64() });
        }
        let zero = T::zero();
        let one = T::one();
        if b == zero {
            return Ok((Self { c: one, s: zero }, a));
        }
        if a == zero {
            return Ok((Self { c: zero, s: one.copysign(b) }, b.abs()));
        }
        let safmin = T::min_positive_value();
        let safmax = one / safmin;
        let rtmin = safmin.sqrt();
        let rtmax = (safmax / (one + one)).sqrt();
        let a1 = a.abs();
        let b1 = b.abs();
        let (g, r) = if a1 > rtmin && a1 < rtmax && b1 > rtmin && b1 < rtmax {
            let d = (a * a + b * b).sqrt();
            let r = d.copysign(a);
            (Self { c: a1 / d, s: b / r }, r)
        } else {
            let u = safmax.min(safmin.max(a1).max(b1));
            let (as_, bs) = (a / u, b / u);
            let d = (as_ * as_ + bs * bs).sqrt();
            let r = d.copysign(a);
            (Self { c: as_.abs() / d, s: bs / r }, r * u)
        };
        if !r.is_finite() {
            return Err(Error::Overflow { what: "givens norm r" });
        }
        Ok((g, r))
    }

    /// The cosine `c`.
    #[inline]
    pub fn c(&self) -> T {
        self.c
    }

    /// The sine `s`.
    #[inline]
    pub fn s(&self) -> T {
        self.s
    }

    /// The angle `theta = atan2(s, c)` in `(-pi, pi]`.
    #[inline]
    pub fn angle(&self) -> T {
        self.s.atan2(self.c)
    }

    /// The inverse rotation, equal to the transpose: `(c, -s)`.
    #[must_use]
    #[inline]
    pub fn inverse(&self) -> Self {
        Self { c: self.c, s: -self.s }
    }

    /// `G (x, y) = (c x - s y, s x + c y)`.
    #[inline]
    pub fn apply(&self, x: T, y: T) -> (T, T) {
        (self.c * x - self.s * y, self.s * x + self.c * y)
    }

    /// `G^T (x, y) = (c x + s y, -s x + c y)`.
    #[inline]
    pub fn apply_transpose(&self, x: T, y: T) -> (T, T) {
        (self.c * x + self.s * y, self.c * y - self.s * x)
    }

    /// Applies `G` to the pairs `(x[k], y[k])` in place.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn apply_slices(&self, x: &mut [T], y: &mut [T]) {
        assert_eq!(x.len(), y.len(), "Givens::apply_slices: slices differ in length");
        for (u, v) in x.iter_mut().zip(y.iter_mut()) {
            (*u, *v) = self.apply(*u, *v);
        }
    }

    /// Applies `G^T` to the pairs `(x[k], y[k])` in place.
    ///
    /// # Panics
    /// If `x` and `y` differ in length.
    pub fn apply_transpose_slices(&self, x: &mut [T], y: &mut [T]) {
        assert_eq!(x.len(), y.len(), "Givens::apply_transpose_slices: slices differ in length");
        for (u, v) in x.iter_mut().zip(y.iter_mut()) {
            (*u, *v) = self.apply_transpose(*u, *v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_special_cases() {
        let (g, r) = Givens::generate(0.0f64, -2.0).unwrap();
        assert_eq!((g.c(), g.s(), r), (0.0, -1.0, 2.0));
        let (g, r) = Givens::generate(-3.0f64, 0.0).unwrap();
        assert_eq!((g.c(), g.s(), r), (1.0, 0.0, -3.0));
        let (g, r) = Givens::generate(-3.0f64, 4.0).unwrap();
        assert_eq!(r, -5.0);
        assert!(g.c() > 0.0);
        let (u, v) = g.apply_transpose(-3.0, 4.0);
        assert!((u + 5.0).abs() < 1e-15 && v.abs() < 1e-15);
    }

    #[test]
    fn generate_rejects_non_finite_and_overflow() {
        assert!(matches!(Givens::generate(f32::INFINITY, 1.0), Err(Error::NonFinite { index: 0, .. })));
        assert!(matches!(Givens::generate(1.0, f32::NAN), Err(Error::NonFinite { index: 1, .. })));
        assert!(matches!(Givens::generate(f32::MAX, f32::MAX), Err(Error::Overflow { .. })));
        let (g, r) = Givens::generate(f32::MAX / 2.0, f32::MAX / 4.0).unwrap();
        assert!(r.is_finite() && g.c().is_finite());
    }

    #[test]
    fn generate_subnormal_inputs() {
        let a = f32::from_bits(1); // smallest subnormal
        let (g, r) = Givens::generate(a, a).unwrap();
        let h = core::f32::consts::FRAC_1_SQRT_2;
        assert!((g.c() - h).abs() <= 2.0 * f32::EPSILON);
        assert!((g.s() - h).abs() <= 2.0 * f32::EPSILON);
        assert!(r > 0.0);
    }
}
