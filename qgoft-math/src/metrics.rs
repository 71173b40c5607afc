//! Measurements: orthogonality error, the qGOFT penalty, block column norms,
//! determinant sign, and the change of pairwise cosine similarities that a
//! rotation causes between the neurons of a weight.
//!
//! Inner products here are accumulated in twice the working precision
//! (Ogita-Rump-Oishi `Dot2`), so the measured orthogonality error of an
//! orthogonal matrix is the matrix's own error, not the measurement's.

use crate::error::{check_finite, check_len, Error, Result};
use crate::scalar::dot2;
use crate::{Block, Real, Rotation};

/// `R^T R - I` measured two ways.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrthogonalityError<T> {
    /// `norm(Q^T Q - I)_F`.
    pub frobenius: T,
    /// `max |(Q^T Q - I)_ab|`.
    pub max: T,
}

/// The orthogonality error of the dense row-major `d x d` matrix `q`.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `q.len() == d * d`; [`Error::NonFinite`].
///
/// ```
/// use qgoft_math::metrics::orthogonality_error;
/// let q = [0.6f64, -0.8, 0.8, 0.6];
/// let e = orthogonality_error(&q, 2)?;
/// assert!(e.frobenius < 1e-15);
/// let not = [1.0f64, 0.1, 0.0, 1.0];
/// assert!(orthogonality_error(&not, 2)?.max > 0.09);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn orthogonality_error<T: Real>(q: &[T], d: usize) -> Result<OrthogonalityError<T>> {
    check_len("matrix (d * d)", d * d, q.len())?;
    check_finite("matrix", q)?;
    let mut sum = T::zero();
    let mut max = T::zero();
    for a in 0..d {
        for b in a..d {
            let start = if a == b { -T::one() } else { T::zero() };
            let g = dot2(start, (0..d).map(|i| (q[i * d + a], q[i * d + b])));
            let w = if a == b { T::one() } else { T::one() + T::one() };
            sum = sum + w * g * g;
            max = max.max(g.abs());
        }
    }
    Ok(OrthogonalityError { frobenius: sum.sqrt(), max })
}

/// The qGOFT penalty `sum_k <alpha_k, beta_k>^2 = sum_k (a b + c e)^2`
/// (without the weight `lambda`), summed pairwise.
///
/// ```
/// use qgoft_math::{metrics::penalty, Block};
/// let b = Block { a: 1.0f64, b: 0.5, c: 0.0, e: 1.0 };
/// assert_eq!(penalty(&[b, Block::identity()]), 0.25);
/// ```
pub fn penalty<T: Real>(blocks: &[Block<T>]) -> T {
    pairwise_sum(blocks, &|b: &Block<T>| b.penalty())
}

/// Sum of `f` over `xs`, split in halves recursively (error grows like
/// `log n`, not `n`).
pub(crate) fn pairwise_sum<X, T: Real>(xs: &[X], f: &dyn Fn(&X) -> T) -> T {
    if xs.len() <= 16 {
        return xs.iter().fold(T::zero(), |acc, x| acc + f(x));
    }
    let (l, r) = xs.split_at(xs.len() / 2);
    pairwise_sum(l, f) + pairwise_sum(r, f)
}

/// Column norms `(|alpha|, |beta|) = (hypot(a, c), hypot(b, e))` of a block.
///
/// ```
/// use qgoft_math::{metrics::column_norms, Block};
/// assert_eq!(column_norms(&Block { a: 3.0f32, b: 0.0, c: 4.0, e: 2.0 }), (5.0, 2.0));
/// ```
pub fn column_norms<T: Real>(b: &Block<T>) -> (T, T) {
    (b.a.hypot(b.c), b.b.hypot(b.e))
}

/// The sign of `det R` (`1`, `-1`, or `0` if singular), from the blocks'
/// determinants and the scaling, without forming `R`.
///
/// ```
/// use qgoft_math::{metrics::determinant_sign, AngleMap, Layout, RotationBuf};
/// let r = RotationBuf::from_angles(Layout::Tree, 5, AngleMap::Raw, &[1.0f64; 4], Some(&[1.0, -2.0, 1.0, 1.0, 1.0]))?;
/// assert_eq!(determinant_sign(&r.as_rotation()), -1);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn determinant_sign<T: Real>(r: &Rotation<'_, T>) -> i8 {
    let mut sign = 1i8;
    let dets = r.blocks().iter().map(|b| b.det());
    let scales = r.scale().into_iter().flatten().copied();
    for v in dets.chain(scales) {
        if v == T::zero() {
            return 0;
        }
        if v < T::zero() {
            sign = -sign;
        }
    }
    sign
}

/// The largest change of cosine similarity between any two neurons of a
/// weight and of its adapted version: `max_{a<b} |cos(w_a, w_b) - cos(w'_a, w'_b)|`.
///
/// Neurons are the rows of the row-major `m x d` (out x in) weights `w` and
/// `w_merged = W R^T`; an orthogonal `R` keeps every such cosine, so this is
/// zero to rounding for GOFT and measures how far qGOFT or a scaling departs
/// from it. A zero row has cosine `0` with every row.
///
/// # Errors
/// [`Error::ShapeMismatch`] if the two weights differ in length or `d` does
/// not divide it; [`Error::NonFinite`].
///
/// ```
/// use qgoft_math::metrics::max_cosine_change;
/// let w = [1.0f64, 0.0, 1.0, 1.0];
/// assert_eq!(max_cosine_change(&w, &w, 2)?, 0.0);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn max_cosine_change<T: Real>(w: &[T], w_merged: &[T], d: usize) -> Result<T> {
    check_len("merged weight", w.len(), w_merged.len())?;
    if d == 0 || !w.len().is_multiple_of(d) {
        return Err(Error::ShapeMismatch { what: "weight length (a multiple of d)", expected: d, found: w.len() });
    }
    check_finite("weight", w)?;
    check_finite("merged weight", w_merged)?;
    let m = w.len() / d;
    let cos = |x: &[T], a: usize, b: usize| -> T {
        let (ra, rb) = (&x[a * d..(a + 1) * d], &x[b * d..(b + 1) * d]);
        let na = dot2(T::zero(), ra.iter().map(|v| (*v, *v))).sqrt();
        let nb = dot2(T::zero(), rb.iter().map(|v| (*v, *v))).sqrt();
        if na == T::zero() || nb == T::zero() {
            return T::zero();
        }
        dot2(T::zero(), ra.iter().zip(rb).map(|(u, v)| (*u / na, *v / nb)))
    };
    let mut worst = T::zero();
    for a in 0..m {
        for b in a + 1..m {
            worst = worst.max((cos(w, a, b) - cos(w_merged, a, b)).abs());
        }
    }
    Ok(worst)
}
