//! The error type of the CUDA backend, and the device selector.

use core::fmt;
use core::str::FromStr;

/// What can go wrong on the GPU path. Every variant names the offending value.
///
/// ```
/// use qgoft_nn::cuda::CudaError;
/// let e = CudaError::NotCompiled;
/// assert!(e.to_string().contains("--features cuda"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CudaError {
    /// `qgoft-nn` was built without the `cuda` feature.
    NotCompiled,
    /// A CUDA shared library (driver, NVRTC or cuBLAS) could not be loaded.
    LibraryNotFound {
        /// The library's base name (`cuda`, `nvrtc`, `cublas`).
        library: &'static str,
    },
    /// No device with this ordinal.
    NoDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices the driver reports.
        count: usize,
    },
    /// A CUDA driver call failed.
    Driver {
        /// What was being done.
        during: &'static str,
        /// The driver's error.
        message: String,
    },
    /// NVRTC could not compile a kernel source.
    Compile {
        /// The kernel source file.
        source: &'static str,
        /// The compiler's log.
        log: String,
    },
    /// A cuBLAS call failed.
    Blas {
        /// The cuBLAS error.
        message: String,
    },
    /// Two shapes that must agree do not.
    ShapeMismatch {
        /// Which operand.
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A class label is not below the number of classes.
    LabelOutOfRange {
        /// The row.
        index: usize,
        /// The label found there.
        label: u32,
        /// The number of classes.
        classes: usize,
    },
    /// A size does not fit the 32-bit indices of the kernels.
    TooLarge {
        /// Which size.
        what: &'static str,
        /// Its value.
        value: usize,
    },
    /// An argument that the mode does not accept (e.g. a scaling for a mode
    /// without one).
    InvalidArgument {
        /// What is wrong.
        what: &'static str,
    },
    /// Parameters rejected by `qgoft-math` (non-finite values, wrong lengths).
    Math(qgoft_math::Error),
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::NotCompiled => write!(
                f,
                "CUDA support is not compiled in: rebuild qgoft-nn with `--features cuda` (e.g. `cargo build --release --features cuda`)"
            ),
            CudaError::LibraryNotFound { library } => write!(
                f,
                "the CUDA library `{library}` could not be loaded: is the NVIDIA driver (and the CUDA toolkit's NVRTC and cuBLAS) installed and on the library path?"
            ),
            CudaError::NoDevice { ordinal, count } => {
                write!(f, "no CUDA device with ordinal {ordinal}: the driver reports {count} device(s)")
            }
            CudaError::Driver { during, message } => write!(f, "CUDA driver error while {during}: {message}"),
            CudaError::Compile { source, log } => write!(f, "NVRTC could not compile {source}: {log}"),
            CudaError::Blas { message } => write!(f, "cuBLAS error: {message}"),
            CudaError::ShapeMismatch { what, expected, found } => {
                write!(f, "shape mismatch for {what}: expected {expected:?}, found {found:?}")
            }
            CudaError::LabelOutOfRange { index, label, classes } => {
                write!(f, "label {label} at row {index} is out of range for {classes} classes")
            }
            CudaError::TooLarge { what, value } => {
                write!(f, "{what} = {value} does not fit the kernels' 32-bit indices")
            }
            CudaError::InvalidArgument { what } => write!(f, "invalid argument: {what}"),
            CudaError::Math(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CudaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CudaError::Math(e) => Some(e),
            _ => None,
        }
    }
}

impl From<qgoft_math::Error> for CudaError {
    fn from(e: qgoft_math::Error) -> Self {
        CudaError::Math(e)
    }
}

/// Where a model is trained: the CPU, or the CUDA device with this ordinal.
///
/// Parsed from `cpu`, `cuda` (device 0) or `cuda:N` (case-insensitive), the
/// values of the command line's `--device`.
///
/// ```
/// use qgoft_nn::cuda::Device;
/// assert_eq!("cpu".parse::<Device>()?, Device::Cpu);
/// assert_eq!("cuda".parse::<Device>()?, Device::Cuda(0));
/// assert_eq!("CUDA:1".parse::<Device>()?, Device::Cuda(1));
/// assert_eq!(Device::Cuda(1).to_string(), "cuda:1");
/// assert!("tpu".parse::<Device>().is_err());
/// # Ok::<(), qgoft_nn::cuda::ParseDeviceError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl Device {
    /// Whether this is a CUDA device.
    ///
    /// ```
    /// use qgoft_nn::cuda::Device;
    /// assert!(Device::Cuda(0).is_cuda() && !Device::Cpu.is_cuda());
    /// ```
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// Opens the CUDA device: `Ok(None)` for [`Device::Cpu`].
    ///
    /// # Errors
    /// As [`super::CudaDevice::open`]: [`CudaError::NotCompiled`] without the
    /// `cuda` feature, [`CudaError::LibraryNotFound`] or
    /// [`CudaError::NoDevice`] on a machine without a usable GPU.
    ///
    /// ```
    /// use qgoft_nn::cuda::Device;
    /// assert!(Device::Cpu.open()?.is_none());
    /// if let Err(e) = Device::Cuda(0).open() {
    ///     println!("no GPU: {e}");
    /// }
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn open(self) -> Result<Option<super::CudaDevice>, CudaError> {
        match self {
            Device::Cpu => Ok(None),
            Device::Cuda(ordinal) => super::CudaDevice::open(ordinal).map(Some),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A device name that is not `cpu`, `cuda` or `cuda:N`.
///
/// ```
/// use qgoft_nn::cuda::Device;
/// let e = "cuda:x".parse::<Device>().unwrap_err();
/// assert!(e.to_string().contains("cuda:x"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDeviceError {
    /// The text that was given.
    pub input: String,
}

impl fmt::Display for ParseDeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown device `{}`: expected `cpu`, `cuda` or `cuda:N`", self.input)
    }
}

impl std::error::Error for ParseDeviceError {}

impl FromStr for Device {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let err = || ParseDeviceError { input: s.to_string() };
        match t.as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => {
                let n = t.strip_prefix("cuda:").ok_or_else(err)?;
                n.parse::<usize>().map(Device::Cuda).map_err(|_| err())
            }
        }
    }
}
