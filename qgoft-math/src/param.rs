//! Parametrizations: from trainable parameters to 2x2 blocks.
//!
//! * Strict (GOFT): one angle per plane, either raw (`theta = p`) or bounded
//!   (`theta = pi * tanh(p)`, the reference's choice, initialised at `p = 0`).
//!   The block is the Givens rotation `[[cos, -sin], [sin, cos]]`.
//! * Quasi (qGOFT): a free block `[[a, b], [c, e]]` per plane, initialised to
//!   the identity and held near orthogonality by the penalty
//!   `(a b + c e)^2` (the inner product of its columns `(a, c)` and `(b, e)`).
//! * Scaling: an optional diagonal `S = diag(scale)`, applied first
//!   (`R = P_K ... P_1 S`).
//!
//! Quasi parameters are stored flat, four per block in the order
//! `[a, b, c, e]`, as in the reference adapter files.

use crate::error::{check_finite, check_len, Error, Result};
use crate::{Givens, Real};

/// How a strict angle is obtained from its raw parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AngleMap {
    /// `theta = p`.
    Raw,
    /// `theta = pi * tanh(p)`: the reference parametrization.
    #[default]
    PiTanh,
}

impl AngleMap {
    /// The angle for raw parameter `p`.
    ///
    /// ```
    /// use qgoft_math::AngleMap;
    /// assert_eq!(AngleMap::Raw.angle(0.5f64), 0.5);
    /// assert!((AngleMap::PiTanh.angle(100.0f64) - core::f64::consts::PI).abs() < 1e-12);
    /// ```
    #[inline]
    pub fn angle<T: Real>(self, p: T) -> T {
        match self {
            AngleMap::Raw => p,
            AngleMap::PiTanh => T::PI() * p.tanh(),
        }
    }

    /// `d theta / d p` at `p`.
    ///
    /// ```
    /// use qgoft_math::AngleMap;
    /// assert_eq!(AngleMap::Raw.derivative(3.0f64), 1.0);
    /// assert!((AngleMap::PiTanh.derivative(0.0f64) - core::f64::consts::PI).abs() < 1e-15);
    /// ```
    #[inline]
    pub fn derivative<T: Real>(self, p: T) -> T {
        match self {
            AngleMap::Raw => T::one(),
            AngleMap::PiTanh => {
                let t = p.tanh();
                T::PI() * (T::one() - t * t)
            }
        }
    }
}

/// A 2x2 block acting on a plane `(i, j)`:
/// `(x_i, x_j) <- (a x_i + b x_j, c x_i + e x_j)`.
///
/// For a Givens rotation `a = e = cos`, `b = -sin`, `c = sin`.
///
/// ```
/// use qgoft_math::{Block, Givens};
/// let b = Block::from(Givens::from_angle(0.3f64));
/// assert!((b.det() - 1.0).abs() < 1e-15);
/// assert!((b.penalty()).abs() < 1e-30);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
pub struct Block<T> {
    /// Entry `[i][i]`.
    pub a: T,
    /// Entry `[i][j]`.
    pub b: T,
    /// Entry `[j][i]`.
    pub c: T,
    /// Entry `[j][j]`.
    pub e: T,
}

impl<T: Real> From<Givens<T>> for Block<T> {
    fn from(g: Givens<T>) -> Self {
        Block { a: g.c(), b: -g.s(), c: g.s(), e: g.c() }
    }
}

impl<T: Real> Block<T> {
    /// The identity block.
    #[inline]
    pub fn identity() -> Self {
        Block { a: T::one(), b: T::zero(), c: T::zero(), e: T::one() }
    }

    /// The block from four values `[a, b, c, e]`.
    #[inline]
    pub fn from_array(v: [T; 4]) -> Self {
        Block { a: v[0], b: v[1], c: v[2], e: v[3] }
    }

    /// The four values `[a, b, c, e]`.
    #[inline]
    pub fn to_array(self) -> [T; 4] {
        [self.a, self.b, self.c, self.e]
    }

    /// The determinant `a e - b c`.
    #[inline]
    pub fn det(&self) -> T {
        self.a * self.e - self.b * self.c
    }

    /// The transposed block.
    #[must_use]
    #[inline]
    pub fn transpose(&self) -> Self {
        Block { a: self.a, b: self.c, c: self.b, e: self.e }
    }

    /// The inverse block.
    ///
    /// # Errors
    /// [`Error::SingularBlock`] (with `index` as given) when the reciprocal
    /// condition number `|det| / max|entry|^2` is below `4 u`.
    pub fn inverse(&self, index: usize) -> Result<Self> {
        let det = self.det();
        let m = self.a.abs().max(self.b.abs()).max(self.c.abs()).max(self.e.abs());
        let four = T::from_f64(4.0);
        if det.abs() <= four * T::UNIT_ROUNDOFF * m * m || !det.is_finite() {
            return Err(Error::SingularBlock { index, det: det.to_f64() });
        }
        Ok(Block { a: self.e / det, b: -self.b / det, c: -self.c / det, e: self.a / det })
    }

    /// The qGOFT penalty term `(a b + c e)^2` of this block.
    #[inline]
    pub fn penalty(&self) -> T {
        let g = self.a * self.b + self.c * self.e;
        g * g
    }

    /// `(x, y) <- (a x + b y, c x + e y)`.
    #[inline(always)]
    pub fn apply(&self, x: T, y: T) -> (T, T) {
        (self.a * x + self.b * y, self.c * x + self.e * y)
    }
}

/// Fills `out` with the Givens blocks of the strict parameters `params`.
///
/// # Errors
/// [`Error::ShapeMismatch`] if the lengths differ; [`Error::NonFinite`] for
/// a NaN or infinite parameter (nothing is written then).
///
/// ```
/// use qgoft_math::{param::blocks_from_angles, AngleMap, Block};
/// let mut out = [Block::identity(); 2];
/// blocks_from_angles(AngleMap::Raw, &[0.0f32, 0.5], &mut out)?;
/// assert_eq!(out[0], Block::identity());
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn blocks_from_angles<T: Real>(map: AngleMap, params: &[T], out: &mut [Block<T>]) -> Result<()> {
    check_len("blocks for angle parameters", params.len(), out.len())?;
    check_finite("angle parameters", params)?;
    for (b, &p) in out.iter_mut().zip(params) {
        *b = Givens::from_angle(map.angle(p)).into();
    }
    Ok(())
}

/// Fills `out` with quasi blocks from flat `[a, b, c, e]` parameters.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `params.len() == 4 * out.len()`;
/// [`Error::NonFinite`] for a NaN or infinite entry.
pub fn blocks_from_quasi<T: Real>(params: &[T], out: &mut [Block<T>]) -> Result<()> {
    check_len("quasi block parameters", 4 * out.len(), params.len())?;
    check_finite("quasi block parameters", params)?;
    for (b, p) in out.iter_mut().zip(params.chunks_exact(4)) {
        *b = Block { a: p[0], b: p[1], c: p[2], e: p[3] };
    }
    Ok(())
}
