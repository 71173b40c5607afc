//! Conversions to and from nalgebra (feature `nalgebra`).
//!
//! nalgebra stores matrices column by column; these helpers take care of the
//! orientation so that a `DMatrix` always means the same matrix as the
//! row-major slices used elsewhere in the crate.

use crate::error::{check_len, Result};
use crate::{Op, Real, Rotation, RotationBuf};
use nalgebra::{DMatrix, DVector};

impl<T: Real> RotationBuf<T> {
    /// The dense `d x d` matrix `R` as a nalgebra matrix.
    ///
    /// ```
    /// use qgoft_math::{AngleMap, Layout, RotationBuf};
    /// let r = RotationBuf::from_angles(Layout::Tree, 4, AngleMap::Raw, &[0.1f64, 0.2, 0.3], None)?;
    /// let m = r.to_dmatrix();
    /// let should_be_identity = m.transpose() * &m;
    /// assert!((should_be_identity - nalgebra::DMatrix::identity(4, 4)).norm() < 1e-14);
    /// # Ok::<(), qgoft_math::Error>(())
    /// ```
    pub fn to_dmatrix(&self) -> DMatrix<T> {
        let d = self.as_rotation().dim();
        DMatrix::from_row_slice(d, d, &self.to_dense())
    }
}

/// Applies `op` to each column of the `d x n` nalgebra matrix `x` in place.
///
/// # Errors
/// [`crate::Error::ShapeMismatch`] unless `x` has `d` rows; otherwise as
/// [`Rotation::apply_rows`].
///
/// ```
/// use qgoft_math::{interop::apply_to_columns, AngleMap, Layout, Op, RotationBuf};
/// let r = RotationBuf::from_angles(Layout::Chain, 3, AngleMap::Raw, &[0.4f64, -1.0], None)?;
/// let mut x = nalgebra::DMatrix::<f64>::identity(3, 3);
/// apply_to_columns(&r.as_rotation(), Op::Forward, &mut x)?;
/// assert!((x - r.to_dmatrix()).norm() < 1e-15);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn apply_to_columns<T: Real>(r: &Rotation<'_, T>, op: Op, x: &mut DMatrix<T>) -> Result<()> {
    check_len("matrix rows", r.dim(), x.nrows())?;
    // Column-major storage: each column is one contiguous vector.
    r.apply_rows(op, x.as_mut_slice())
}

/// Applies `op` to a nalgebra vector in place.
///
/// # Errors
/// As [`Rotation::apply_rows`] for a single vector.
pub fn apply_to_vector<T: Real>(r: &Rotation<'_, T>, op: Op, x: &mut DVector<T>) -> Result<()> {
    check_len("vector", r.dim(), x.len())?;
    r.apply_rows(op, x.as_mut_slice())
}

/// The merge `W <- W R^T` of an `m x d` nalgebra weight in place: its
/// column-major storage is `W^T` row-major, so this is
/// [`Rotation::merge_col_major`] (the columns kernel, no transposes),
/// bitwise the values of [`Rotation::merge`] on the same weight row by row.
///
/// # Errors
/// [`crate::Error::ShapeMismatch`] unless `w` has `d` columns; otherwise as
/// [`Rotation::merge_col_major`].
///
/// ```
/// use qgoft_math::{interop::merge_matrix, AngleMap, Layout, RotationBuf};
/// let r = RotationBuf::from_angles(Layout::Tree, 3, AngleMap::Raw, &[0.4f64, -1.0], None)?;
/// let mut w = nalgebra::DMatrix::<f64>::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// let want = &w * r.to_dmatrix().transpose();
/// merge_matrix(&r.as_rotation(), &mut w)?;
/// assert!((w - want).norm() < 1e-14);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn merge_matrix<T: Real>(r: &Rotation<'_, T>, w: &mut DMatrix<T>) -> Result<()> {
    check_len("weight columns", r.dim(), w.ncols())?;
    r.merge_col_major(w.as_mut_slice())
}

/// Undoes [`merge_matrix`]: `W <- W R^-T` for an `m x d` nalgebra weight.
///
/// # Errors
/// As [`merge_matrix`], and as [`Rotation::unmerge_col_major`].
pub fn unmerge_matrix<T: Real>(r: &Rotation<'_, T>, w: &mut DMatrix<T>) -> Result<()> {
    check_len("weight columns", r.dim(), w.ncols())?;
    r.unmerge_col_major(w.as_mut_slice())
}
