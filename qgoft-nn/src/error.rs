//! The crate's error type.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong in `qgoft-nn`.
///
/// Each variant names the offending value, tensor or file so that the message
/// alone says what to fix.
///
/// ```
/// use qgoft_nn::{Error, Tensor};
/// let err = Tensor::new(vec![2, 3], vec![0.0; 5]).unwrap_err();
/// assert!(matches!(err, Error::Shape { .. }));
/// assert!(err.to_string().contains("[2, 3]"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An error from the numerical core.
    Math(qgoft_math::Error),
    /// An I/O error on a file.
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Shapes do not fit the operation.
    Shape {
        /// What was being checked (e.g. `"matmul right operand"`).
        what: String,
        /// The shape expected (`usize::MAX` marks a free dimension).
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A value that must be finite is NaN or infinite.
    NonFinite {
        /// Which tensor or quantity holds it.
        what: String,
        /// Its flat index.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// An argument is outside the range the operation accepts.
    InvalidArgument {
        /// Which argument.
        what: String,
        /// Its value, as text.
        value: String,
    },
    /// A class label is not below the number of classes.
    Label {
        /// Position of the label in its batch or file.
        index: usize,
        /// The label.
        label: usize,
        /// The number of classes.
        num_classes: usize,
    },
    /// A safetensors file is malformed, truncated or does not fit the model.
    Checkpoint {
        /// The file (empty when parsing from memory).
        path: PathBuf,
        /// What is wrong, naming the tensor where there is one.
        reason: String,
    },
    /// A data file (CSV, MNIST IDX) is malformed or truncated.
    Data {
        /// The file or data set name.
        source_name: String,
        /// What is wrong, naming the line, field or header value.
        reason: String,
    },
}

/// `Result` with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn shape_text(shape: &[usize]) -> String {
    let parts: Vec<String> =
        shape.iter().map(|&d| if d == usize::MAX { "_".to_string() } else { d.to_string() }).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Math(e) => write!(f, "{e}"),
            Error::Io { path, source } => write!(f, "I/O error on {}: {source}", path.display()),
            Error::Shape { what, expected, found } => {
                write!(f, "shape mismatch in {what}: expected {}, found {}", shape_text(expected), shape_text(found))
            }
            Error::NonFinite { what, index, value } => {
                write!(f, "non-finite value {value} in {what} at index {index}")
            }
            Error::InvalidArgument { what, value } => write!(f, "invalid {what}: {value}"),
            Error::Label { index, label, num_classes } => {
                write!(f, "label {label} at index {index} is out of range for {num_classes} classes")
            }
            Error::Checkpoint { path, reason } => {
                if path.as_os_str().is_empty() {
                    write!(f, "invalid safetensors data: {reason}")
                } else if path.extension().is_some_and(|e| e == "json") {
                    write!(f, "invalid configuration file {}: {reason}", path.display())
                } else {
                    write!(f, "invalid safetensors file {}: {reason}", path.display())
                }
            }
            Error::Data { source_name, reason } => write!(f, "invalid data in {source_name}: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Math(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<qgoft_math::Error> for Error {
    fn from(e: qgoft_math::Error) -> Self {
        Error::Math(e)
    }
}

impl Error {
    pub(crate) fn shape(what: impl Into<String>, expected: &[usize], found: &[usize]) -> Self {
        Error::Shape { what: what.into(), expected: expected.to_vec(), found: found.to_vec() }
    }

    pub(crate) fn invalid(what: impl Into<String>, value: impl fmt::Display) -> Self {
        Error::InvalidArgument { what: what.into(), value: value.to_string() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Returns an error naming the first non-finite entry of `xs`.
pub(crate) fn check_finite(what: &str, xs: &[f32]) -> Result<()> {
    match xs.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFinite { what: what.to_string(), index, value: f64::from(xs[index]) }),
        None => Ok(()),
    }
}
