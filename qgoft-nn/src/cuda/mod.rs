//! GPU offload through CUDA (feature `cuda`).
//!
//! The same adapters train on an NVIDIA GPU: tensors live on the device
//! ([`CudaTensor`]) across a whole training step, GEMMs run in cuBLAS, and
//! the adapter's forward, backward and merge, the qGOFT penalty and the
//! elementwise ops run in kernels compiled at start-up by NVRTC from the
//! sources in `src/cuda/kernels/`.
//!
//! # Building and using it
//! `cargo build --release --features cuda` builds on any machine: the CUDA
//! driver (`libcuda`), NVRTC and cuBLAS are loaded when a device is opened,
//! not linked. [`CudaDevice::open`] (or [`Device::open`] for a parsed
//! `--device cpu|cuda|cuda:N`) returns a typed [`CudaError`] when the feature
//! is off ([`CudaError::NotCompiled`]), a library is missing
//! ([`CudaError::LibraryNotFound`]) or there is no such device
//! ([`CudaError::NoDevice`]); nothing panics. Without the feature this module
//! keeps exactly the same API, and every constructor returns
//! [`CudaError::NotCompiled`].
//!
//! At run time it needs the NVIDIA driver and the CUDA 12 (or 11) NVRTC and
//! cuBLAS libraries (`libnvrtc.so.12`, `libcublas.so.12`, or unversioned
//! `libnvrtc.so` / `libcublas.so`) on the library path. Kernels are compiled
//! to PTX once per [`CudaDevice::open`] and JIT-compiled by the driver for
//! the device's architecture.
//!
//! ```
//! use qgoft_math::{AngleMap, Layout};
//! use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
//! let dev = match CudaDevice::open(0) {
//!     Ok(dev) => dev,
//!     Err(e) => {
//!         println!("skipped: {e}");
//!         return Ok(());
//!     }
//! };
//! let (n, d) = (4, 6);
//! let x = dev.upload(&[0.5f32; 24], &[n, d])?;
//! let params = [0.1f32, -0.2, 0.3, 0.05, 0.4];
//! let adapter = CudaAdapter::new(&dev, Layout::Tree, d, AdapterMode::Goft(AngleMap::PiTanh), &params, None)?;
//! let z = adapter.forward(&dev, &x)?; // rows R^T x_r
//! let grads = adapter.backward(&dev, &x, &z)?; // gradients of 0.5 * |z|^2
//! assert_eq!(grads.params.shape(), &[5]);
//! # Ok::<(), qgoft_nn::cuda::CudaError>(())
//! ```
//!
//! # What the kernels compute
//! A row-major `n x d` batch `X` (one input per row) goes through the adapter
//! as `Z = X R`, i.e. `z_r = R^T x_r = S P_1^T ... P_K^T x_r`, the convention
//! of `qgoft_math::apply`. One thread block takes one row at a time, keeps it
//! in shared memory, and lets one thread apply each plane of a stage, with a
//! barrier between stages. The backward pass recomputes the stage inputs in
//! the kernel (strict blocks: by the inverse rotation; quasi blocks: from
//! values saved by the kernel's own forward sweep), so no activations are
//! stored beyond the layer input. Parameter gradients are summed per thread
//! block, each entry by one thread in row order, and the blocks' partial sums
//! are then added in block order: no floating-point atomics, so every result
//! is bitwise reproducible from run to run.
//!
//! # What is measured
//! `tests/cuda.rs` compares every GPU op with the CPU (`qgoft-math` and plain
//! loops in f64, central differences of the f64 forward for the parameter
//! gradients): norm-wise relative error `<= 1e-5` in f32. It skips with a
//! printed reason on a machine without a device. `tests/kernels_on_host.rs`
//! runs the same kernel sources on the CPU under a small emulation of the
//! CUDA execution model (threads and barriers) and checks them against
//! `qgoft-math` to the same tolerance, so the kernels' logic is tested on
//! every machine with a C++ compiler. The bench `cuda_adapter`
//! (`cargo bench -p qgoft-nn --features cuda --bench cuda_adapter`) times an
//! adapted layer's forward and backward (GEMMs included) against the plain
//! layer at `(n, d, m) = (8192, 4096, 4096)` and prints the ratio.

mod adapter;
mod error;

#[cfg(feature = "cuda")]
#[path = "backend.rs"]
mod imp;
#[cfg(not(feature = "cuda"))]
#[path = "dummy.rs"]
mod imp;

pub use adapter::{AdapterGrads, AdapterMode, CudaAdapter};
pub use error::{CudaError, Device, ParseDeviceError};

/// The number of CUDA devices the driver reports.
///
/// # Errors
/// [`CudaError::NotCompiled`] without the `cuda` feature,
/// [`CudaError::LibraryNotFound`] without a driver.
///
/// ```
/// match qgoft_nn::cuda::device_count() {
///     Ok(n) => println!("{n} CUDA device(s)"),
///     Err(e) => println!("no CUDA: {e}"),
/// }
/// ```
pub fn device_count() -> Result<usize, CudaError> {
    imp::device_count()
}

/// An open CUDA device: its context, stream, cuBLAS handle and compiled
/// kernels. All work is queued on one stream, in order.
///
/// ```
/// use qgoft_nn::cuda::CudaDevice;
/// match CudaDevice::open(0) {
///     Ok(dev) => println!("using {}", dev.name()?),
///     Err(e) => println!("no GPU: {e}"),
/// }
/// # Ok::<(), qgoft_nn::cuda::CudaError>(())
/// ```
pub struct CudaDevice {
    inner: imp::Device,
}

/// A dense row-major `f32` tensor in device memory.
///
/// Created by [`CudaDevice::upload`] or [`CudaDevice::zeros`] and by the ops;
/// read back with [`CudaDevice::download`].
pub struct CudaTensor {
    buf: imp::Buffer,
    shape: Vec<usize>,
}

impl core::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CudaDevice({})", self.inner.ordinal())
    }
}

impl core::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "CudaTensor{:?}", self.shape)
    }
}

impl CudaTensor {
    /// The shape (row-major).
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let t = dev.zeros(&[2, 3])?;
    /// assert_eq!(t.shape(), &[2, 3]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements, the product of the shape.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// assert_eq!(dev.zeros(&[2, 3])?.len(), 6);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no element.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// assert!(dev.zeros(&[0, 3])?.is_empty());
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows and columns of a 2-D tensor.
    fn matrix(&self, what: &'static str) -> Result<(usize, usize), CudaError> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(CudaError::ShapeMismatch { what, expected: vec![0, 0], found: self.shape.clone() }),
        }
    }
}

fn same_shape(what: &'static str, a: &CudaTensor, b: &CudaTensor) -> Result<(), CudaError> {
    if a.shape != b.shape {
        return Err(CudaError::ShapeMismatch { what, expected: a.shape.clone(), found: b.shape.clone() });
    }
    Ok(())
}

impl CudaDevice {
    /// Opens device `ordinal`: loads the driver, NVRTC and cuBLAS, creates
    /// the context, a stream and a cuBLAS handle, and compiles the kernels.
    ///
    /// # Errors
    /// [`CudaError::NotCompiled`] without the `cuda` feature;
    /// [`CudaError::LibraryNotFound`] if a CUDA library is missing;
    /// [`CudaError::NoDevice`] if `ordinal` is not below the device count;
    /// [`CudaError::Driver`], [`CudaError::Compile`] or [`CudaError::Blas`]
    /// if a step of the set-up fails.
    ///
    /// ```
    /// use qgoft_nn::cuda::{CudaDevice, CudaError};
    /// match CudaDevice::open(usize::MAX) {
    ///     Err(CudaError::NoDevice { .. } | CudaError::NotCompiled | CudaError::LibraryNotFound { .. }) => {}
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// ```
    pub fn open(ordinal: usize) -> Result<Self, CudaError> {
        Ok(Self { inner: imp::Device::open(ordinal)? })
    }

    /// The device ordinal.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return };
    /// assert_eq!(dev.ordinal(), 0);
    /// ```
    pub fn ordinal(&self) -> usize {
        self.inner.ordinal()
    }

    /// The device's name, as the driver reports it.
    ///
    /// # Errors
    /// [`CudaError::Driver`] if the driver call fails.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// assert!(!dev.name()?.is_empty());
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn name(&self) -> Result<String, CudaError> {
        self.inner.name()
    }

    /// Waits until all queued work has finished.
    ///
    /// # Errors
    /// [`CudaError::Driver`] if queued work failed.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// dev.synchronize()?;
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.inner.synchronize()
    }

    /// Copies `data` (row-major, `shape`) to the device.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless `data.len()` is the product of
    /// `shape`; [`CudaError::Driver`] if the allocation or copy fails.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let t = dev.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(dev.download(&t)?, vec![1.0, 2.0, 3.0, 4.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn upload(&self, data: &[f32], shape: &[usize]) -> Result<CudaTensor, CudaError> {
        let len: usize = shape.iter().product();
        if len != data.len() {
            return Err(CudaError::ShapeMismatch {
                what: "uploaded data",
                expected: vec![len],
                found: vec![data.len()],
            });
        }
        Ok(CudaTensor { buf: self.inner.upload(data)?, shape: shape.to_vec() })
    }

    /// A tensor of zeros.
    ///
    /// # Errors
    /// [`CudaError::Driver`] if the allocation fails.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// assert_eq!(dev.download(&dev.zeros(&[3])?)?, vec![0.0; 3]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn zeros(&self, shape: &[usize]) -> Result<CudaTensor, CudaError> {
        let len = shape.iter().product();
        Ok(CudaTensor { buf: self.inner.zeros(len)?, shape: shape.to_vec() })
    }

    /// Copies a tensor back to the host (waits for queued work).
    ///
    /// # Errors
    /// [`CudaError::Driver`] if the copy or earlier queued work fails.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let t = dev.upload(&[5.0], &[1])?;
    /// assert_eq!(dev.download(&t)?, vec![5.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn download(&self, t: &CudaTensor) -> Result<Vec<f32>, CudaError> {
        self.inner.download(&t.buf, t.len())
    }

    /// Matrix product `C = op(A) op(B)` of row-major matrices through cuBLAS
    /// `sgemm`, where `op(A) = A^T` if `trans_a` (likewise `B`). A linear
    /// layer's forward `X W^T` is `matmul(x, false, w, true)`, its input
    /// gradient `G W` is `matmul(g, false, w, false)`, its weight gradient
    /// `G^T X` is `matmul(g, true, x, false)`.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless both are matrices with matching
    /// inner dimensions; [`CudaError::Blas`] if cuBLAS fails.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = dev.upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// let c = dev.matmul(&a, false, &a, true)?; // A A^T
    /// assert_eq!(c.shape(), &[2, 2]);
    /// assert_eq!(dev.download(&c)?, vec![14.0, 32.0, 32.0, 77.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn matmul(
        &self,
        a: &CudaTensor,
        trans_a: bool,
        b: &CudaTensor,
        trans_b: bool,
    ) -> Result<CudaTensor, CudaError> {
        let (ra, ca) = a.matrix("left matrix")?;
        let (rb, cb) = b.matrix("right matrix")?;
        let (m, k) = if trans_a { (ca, ra) } else { (ra, ca) };
        let (kb, n) = if trans_b { (cb, rb) } else { (rb, cb) };
        if k != kb {
            let expected = if trans_b { vec![n, k] } else { vec![k, n] };
            return Err(CudaError::ShapeMismatch { what: "right matrix", expected, found: b.shape.clone() });
        }
        let mut c = self.zeros(&[m, n])?;
        if m > 0 && n > 0 && k > 0 {
            self.inner.gemm((m, n, k), (&a.buf, ca, trans_a), (&b.buf, cb, trans_b), &mut c.buf)?;
        }
        Ok(c)
    }

    /// Elementwise `a + b`.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless the shapes are equal.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = dev.upload(&[1.0, 2.0], &[2])?;
    /// assert_eq!(dev.download(&dev.add(&a, &a)?)?, vec![2.0, 4.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn add(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor, CudaError> {
        same_shape("addend", a, b)?;
        let mut out = self.zeros(&a.shape)?;
        self.inner.binary(imp::Binary::Add, &a.buf, &b.buf, &mut out.buf, a.len())?;
        Ok(out)
    }

    /// Elementwise `a * b`.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless the shapes are equal.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = dev.upload(&[3.0, -2.0], &[2])?;
    /// assert_eq!(dev.download(&dev.mul(&a, &a)?)?, vec![9.0, 4.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn mul(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor, CudaError> {
        same_shape("factor", a, b)?;
        let mut out = self.zeros(&a.shape)?;
        self.inner.binary(imp::Binary::Mul, &a.buf, &b.buf, &mut out.buf, a.len())?;
        Ok(out)
    }

    /// In place `y <- y + alpha x` (an SGD step is `axpy(-lr, grad, param)`).
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless the shapes are equal.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let x = dev.upload(&[1.0, 2.0], &[2])?;
    /// let mut y = dev.upload(&[10.0, 10.0], &[2])?;
    /// dev.axpy(-0.5, &x, &mut y)?;
    /// assert_eq!(dev.download(&y)?, vec![9.5, 9.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn axpy(&self, alpha: f32, x: &CudaTensor, y: &mut CudaTensor) -> Result<(), CudaError> {
        same_shape("axpy operand", y, x)?;
        let n = x.len();
        self.inner.axpy(alpha, &x.buf, &mut y.buf, n)
    }

    /// Elementwise `max(x, 0)`.
    ///
    /// # Errors
    /// [`CudaError::Driver`] if the launch fails.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let x = dev.upload(&[-1.0, 2.0], &[2])?;
    /// assert_eq!(dev.download(&dev.relu(&x)?)?, vec![0.0, 2.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn relu(&self, x: &CudaTensor) -> Result<CudaTensor, CudaError> {
        let mut out = self.zeros(&x.shape)?;
        self.inner.relu(&x.buf, &mut out.buf, x.len())?;
        Ok(out)
    }

    /// The ReLU's backward: `grad` where `x > 0`, else 0 (`x` is the ReLU's input).
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless the shapes are equal.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let x = dev.upload(&[-1.0, 2.0], &[2])?;
    /// let g = dev.upload(&[5.0, 7.0], &[2])?;
    /// assert_eq!(dev.download(&dev.relu_backward(&x, &g)?)?, vec![0.0, 7.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn relu_backward(&self, x: &CudaTensor, grad: &CudaTensor) -> Result<CudaTensor, CudaError> {
        same_shape("ReLU gradient", x, grad)?;
        let mut out = self.zeros(&x.shape)?;
        self.inner.relu_backward(&x.buf, &grad.buf, &mut out.buf, x.len())?;
        Ok(out)
    }

    /// Adds the bias vector (length `cols`) to every row of a `rows x cols` matrix.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless `x` is a matrix and `bias` has shape `[cols]`.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let x = dev.zeros(&[2, 2])?;
    /// let b = dev.upload(&[1.0, 2.0], &[2])?;
    /// assert_eq!(dev.download(&dev.add_bias(&x, &b)?)?, vec![1.0, 2.0, 1.0, 2.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn add_bias(&self, x: &CudaTensor, bias: &CudaTensor) -> Result<CudaTensor, CudaError> {
        let (_, cols) = x.matrix("biased matrix")?;
        if bias.shape != [cols] {
            return Err(CudaError::ShapeMismatch { what: "bias", expected: vec![cols], found: bias.shape.clone() });
        }
        let mut out = self.zeros(&x.shape)?;
        if !x.is_empty() {
            self.inner.add_bias(&x.buf, &bias.buf, &mut out.buf, x.len(), cols)?;
        }
        Ok(out)
    }

    /// Column sums of a `rows x cols` matrix (the bias gradient), each summed
    /// in row order.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless `g` is a matrix.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let g = dev.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(dev.download(&dev.column_sums(&g)?)?, vec![4.0, 6.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn column_sums(&self, g: &CudaTensor) -> Result<CudaTensor, CudaError> {
        let (rows, cols) = g.matrix("summed matrix")?;
        let mut out = self.zeros(&[cols])?;
        if cols > 0 {
            self.inner.column_sums(&g.buf, &mut out.buf, rows, cols)?;
        }
        Ok(out)
    }

    /// Mean softmax cross-entropy of `rows x classes` logits against class
    /// labels, and its gradient with respect to the logits:
    /// `loss = mean_r (logsumexp(z_r) - z_r[label_r])`,
    /// `grad[r] = (softmax(z_r) - onehot(label_r)) / rows`.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless `logits` is a matrix with one row
    /// per label and at least one class; [`CudaError::LabelOutOfRange`] for a
    /// label `>= classes`.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let z = dev.zeros(&[1, 4])?;
    /// let (loss, grad) = dev.softmax_cross_entropy(&z, &[2])?;
    /// assert!((loss - 4f32.ln()).abs() < 1e-6);
    /// assert!((dev.download(&grad)?[2] + 0.75).abs() < 1e-6);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn softmax_cross_entropy(&self, logits: &CudaTensor, labels: &[u32]) -> Result<(f32, CudaTensor), CudaError> {
        let (rows, classes) = logits.matrix("logits")?;
        if rows != labels.len() || classes == 0 {
            return Err(CudaError::ShapeMismatch {
                what: "logits",
                expected: vec![labels.len(), classes.max(1)],
                found: logits.shape.clone(),
            });
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= classes) {
            return Err(CudaError::LabelOutOfRange { index, label, classes });
        }
        let mut grad = self.zeros(&logits.shape)?;
        if rows == 0 {
            return Ok((0.0, grad));
        }
        let loss = self.inner.softmax_xent(&logits.buf, labels, &mut grad.buf, rows, classes)?;
        Ok((loss, grad))
    }

    /// The sum of all elements, reduced in a fixed order.
    ///
    /// # Errors
    /// [`CudaError::Driver`] if the launch or the copy back fails.
    ///
    /// ```
    /// # use qgoft_nn::cuda::CudaDevice;
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let x = dev.upload(&[1.0, 2.0, 3.5], &[3])?;
    /// assert_eq!(dev.sum(&x)?, 6.5);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn sum(&self, x: &CudaTensor) -> Result<f32, CudaError> {
        if x.is_empty() {
            return Ok(0.0);
        }
        self.inner.sum(&x.buf, x.len())
    }
}
