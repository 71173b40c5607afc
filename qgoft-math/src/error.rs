//! The crate's error type.

use core::fmt;

/// Everything that can go wrong in `qgoft-math`.
///
/// Values are reported as `f64` whatever the scalar type, so one error type
/// serves `f32` and `f64` alike.
///
/// ```
/// use qgoft_math::{Error, Givens};
/// let err = Givens::generate(f64::NAN, 1.0).unwrap_err();
/// assert!(matches!(err, Error::NonFinite { .. }));
/// assert!(err.to_string().contains("NaN"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A slice or matrix does not have the length or shape the operation needs.
    ShapeMismatch {
        /// What was being checked (e.g. `"angle parameters"`).
        what: &'static str,
        /// The size expected.
        expected: usize,
        /// The size found.
        found: usize,
    },
    /// A value that must be finite is NaN or infinite.
    NonFinite {
        /// Which input holds it.
        what: &'static str,
        /// Its index within that input.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A quasi-Givens block is singular or too ill-conditioned to invert.
    SingularBlock {
        /// Index of the block in parameter order.
        index: usize,
        /// Its determinant `a e - b c`.
        det: f64,
    },
    /// A diagonal scaling entry is zero, so the scaling cannot be inverted.
    SingularScale {
        /// Index of the entry.
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A block or matrix that must be orthogonal is not, within tolerance.
    NotOrthogonal {
        /// The measured error (`norm(Q^T Q - I)_F` for a matrix, the largest
        /// deviation of a block from a rotation otherwise).
        error: f64,
        /// The tolerance it was held to.
        tolerance: f64,
    },
    /// An orthogonal matrix has determinant `-1` where SO(d) is required.
    NotSpecialOrthogonal {
        /// The measured determinant.
        det: f64,
    },
    /// Two vectors that must have equal norms do not.
    NormMismatch {
        /// Norm of the first vector.
        left: f64,
        /// Norm of the second vector.
        right: f64,
    },
    /// A layout's rotations cannot carry one vector onto another.
    Unreachable {
        /// The coordinate that cannot receive its target value.
        index: usize,
        /// The largest magnitude a rotation can leave there (for `d = 1`,
        /// the value that stays there).
        available: f64,
        /// The value it needs.
        required: f64,
    },
    /// A result overflowed the floating-point range.
    Overflow {
        /// Which quantity overflowed.
        what: &'static str,
    },
    /// An argument is outside the range the operation accepts.
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Its value.
        value: f64,
    },
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::ShapeMismatch { what, expected, found } => {
                write!(f, "shape mismatch in {what}: expected {expected}, found {found}")
            }
            Error::NonFinite { what, index, value } => {
                write!(f, "non-finite value {value} in {what} at index {index}")
            }
            Error::SingularBlock { index, det } => {
                write!(f, "quasi-Givens block {index} is singular or ill-conditioned (determinant {det:e})")
            }
            Error::SingularScale { index, value } => {
                write!(f, "scaling entry {index} is {value}, which cannot be inverted")
            }
            Error::NotOrthogonal { error, tolerance } => {
                write!(f, "matrix is not orthogonal: measured error {error:e} exceeds tolerance {tolerance:e}")
            }
            Error::NotSpecialOrthogonal { det } => {
                write!(f, "matrix is orthogonal with determinant {det}, not in SO(d)")
            }
            Error::NormMismatch { left, right } => {
                write!(f, "vectors must have equal norms, found {left:e} and {right:e}")
            }
            Error::Unreachable { index, available, required } => write!(
                f,
                "target unreachable for this layout: coordinate {index} needs {required:e} but at most {available:e} can reach it"
            ),
            Error::Overflow { what } => write!(f, "{what} overflows the floating-point range"),
            Error::InvalidArgument { what, value } => write!(f, "invalid {what}: {value}"),
        }
    }
}

impl core::error::Error for Error {}

/// Returns an error naming the first non-finite entry of `xs`.
pub(crate) fn check_finite<T: crate::Real>(what: &'static str, xs: &[T]) -> Result<()> {
    // The fast test vectorises; the position is searched only on failure.
    if crate::kernel::all_finite(xs) {
        return Ok(());
    }
    match xs.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite { what, index, value: xs[index].to_f64() }),
        None => Ok(()),
    }
}

/// Returns [`Error::ShapeMismatch`] unless `expected == found`.
pub(crate) fn check_len(what: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { what, expected, found })
    }
}
