//! The qGOFT adapter on the device: forward, backward, merge and penalty.

use qgoft_math::{AngleMap, Layout, RotationBuf};

use super::imp::{self, StageTable};
use super::{CudaDevice, CudaError, CudaTensor};

/// Which parametrization the adapter trains (DESIGN.md section 2).
///
/// ```
/// use qgoft_math::{AngleMap, Layout};
/// use qgoft_nn::cuda::AdapterMode;
/// assert_eq!(AdapterMode::Goft(AngleMap::PiTanh).param_shape(Layout::Tree, 6), vec![5]);
/// assert_eq!(AdapterMode::Qgoft.param_shape(Layout::Tree, 6), vec![5, 2, 2]);
/// assert!(AdapterMode::GoftScaled(AngleMap::Raw).has_scale());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdapterMode {
    /// GOFT: one angle per rotation, `theta = map(p)`, blocks
    /// `[[cos, -sin], [sin, cos]]`, no scaling.
    Goft(AngleMap),
    /// GOFT with the diagonal scaling `S` ("norm adjustment").
    GoftScaled(AngleMap),
    /// qGOFT: a free 2x2 block `[[a, b], [c, e]]` per rotation, no scaling,
    /// with the soft orthogonality penalty `sum (a b + c e)^2`.
    Qgoft,
}

impl AdapterMode {
    /// Whether the blocks are free (quasi) rather than exact rotations.
    ///
    /// ```
    /// use qgoft_nn::cuda::AdapterMode;
    /// assert!(AdapterMode::Qgoft.is_quasi());
    /// ```
    pub fn is_quasi(self) -> bool {
        matches!(self, AdapterMode::Qgoft)
    }

    /// Whether the mode carries the scaling `S`.
    ///
    /// ```
    /// use qgoft_math::AngleMap;
    /// use qgoft_nn::cuda::AdapterMode;
    /// assert!(!AdapterMode::Goft(AngleMap::PiTanh).has_scale());
    /// ```
    pub fn has_scale(self) -> bool {
        matches!(self, AdapterMode::GoftScaled(_))
    }

    /// The shape of the trained parameters for `d` inputs: `[P]` angles or
    /// `[P, 2, 2]` quasi blocks, `P = layout.num_rotations(d)`.
    ///
    /// ```
    /// use qgoft_math::Layout;
    /// use qgoft_nn::cuda::AdapterMode;
    /// assert_eq!(AdapterMode::Qgoft.param_shape(Layout::Chain, 4), vec![3, 2, 2]);
    /// ```
    pub fn param_shape(self, layout: Layout, d: usize) -> Vec<usize> {
        let p = layout.num_rotations(d);
        if self.is_quasi() { vec![p, 2, 2] } else { vec![p] }
    }
}

/// Gradients returned by [`CudaAdapter::backward`].
#[derive(Debug)]
pub struct AdapterGrads {
    /// `dL/dX`, `n x d`.
    pub input: CudaTensor,
    /// `dL/dparams`, the shape of [`CudaAdapter::params`].
    pub params: CudaTensor,
    /// `dL/dscale` (`d`), for [`AdapterMode::GoftScaled`].
    pub scale: Option<CudaTensor>,
}

/// A qGOFT adapter whose parameters live on the device.
///
/// For a row-major batch `X` (`n x d`, one input per row) the adapter
/// computes `Z = X R`, row by row `z_r = R^T x_r = S P_1^T ... P_K^T x_r`;
/// an adapted linear layer is then `Y = Z W^T + b`
/// ([`CudaDevice::matmul`]`(z, false, w, true)`), and its merged weight
/// `W R^T` is [`CudaAdapter::merge`].
///
/// ```
/// use qgoft_math::{Layout, RotationBuf};
/// use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
/// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
/// let d = 5;
/// let blocks = [0.9f32, -0.1, 0.2, 1.1].repeat(4);
/// let a = CudaAdapter::new(&dev, Layout::Tree, d, AdapterMode::Qgoft, &blocks, None)?;
/// let x: Vec<f32> = (0..2 * d).map(|i| i as f32 / 7.0).collect();
/// let z = dev.download(&a.forward(&dev, &dev.upload(&x, &[2, d])?)?)?;
/// let r = RotationBuf::from_quasi(Layout::Tree, d, &blocks, None).unwrap();
/// let mut cpu = x.clone();
/// r.as_rotation().apply_rows(qgoft_math::Op::Transpose, &mut cpu).unwrap();
/// for (g, c) in z.iter().zip(&cpu) {
///     assert!((g - c).abs() <= 1e-5 * c.abs().max(1.0));
/// }
/// # Ok::<(), qgoft_nn::cuda::CudaError>(())
/// ```
pub struct CudaAdapter {
    layout: Layout,
    d: usize,
    mode: AdapterMode,
    params: CudaTensor,
    scale: Option<CudaTensor>,
    stages: imp::IndexBuffer,
    num_stages: usize,
    max_len: usize,
}

impl core::fmt::Debug for CudaAdapter {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CudaAdapter")
            .field("layout", &self.layout)
            .field("d", &self.d)
            .field("mode", &self.mode)
            .finish()
    }
}

impl CudaAdapter {
    /// Uploads an adapter for inputs of dimension `d`: `params` are the `P`
    /// raw angle parameters (GOFT) or `P` quasi blocks flattened as
    /// `[a, b, c, e]` (qGOFT), `P = layout.num_rotations(d)`; `scale` (`d`
    /// values) is given exactly for [`AdapterMode::GoftScaled`].
    ///
    /// # Errors
    /// [`CudaError::InvalidArgument`] if `scale` is given for a mode without
    /// scaling or missing for [`AdapterMode::GoftScaled`];
    /// [`CudaError::Math`] for `d = 0`, wrong lengths or non-finite values
    /// (checked by `qgoft-math`, naming the value); [`CudaError::TooLarge`]
    /// beyond 32-bit indices; [`CudaError::Driver`] on a failed upload.
    ///
    /// ```
    /// use qgoft_math::{AngleMap, Layout};
    /// use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice, CudaError};
    /// # let Ok(dev) = CudaDevice::open(0) else { return };
    /// let bad = CudaAdapter::new(&dev, Layout::Tree, 3, AdapterMode::Goft(AngleMap::Raw), &[0.1, f32::NAN], None);
    /// assert!(matches!(bad, Err(CudaError::Math(_))));
    /// ```
    pub fn new(
        dev: &CudaDevice,
        layout: Layout,
        d: usize,
        mode: AdapterMode,
        params: &[f32],
        scale: Option<&[f32]>,
    ) -> Result<Self, CudaError> {
        match (mode.has_scale(), scale.is_some()) {
            (true, false) => return Err(CudaError::InvalidArgument { what: "GoftScaled needs a scaling of d values" }),
            (false, true) => {
                return Err(CudaError::InvalidArgument { what: "a scaling was given for a mode without one" });
            }
            _ => {}
        }
        // qgoft-math checks d, the lengths and finiteness, naming the value.
        match mode {
            AdapterMode::Goft(map) | AdapterMode::GoftScaled(map) => {
                RotationBuf::from_angles(layout, d, map, params, scale)?;
            }
            AdapterMode::Qgoft => {
                RotationBuf::from_quasi(layout, d, params, None)?;
            }
        }
        let mut table = Vec::with_capacity(5 * layout.num_stages(d));
        let mut max_len = 0;
        for s in layout.stages(d) {
            for v in [s.first, s.stride, s.gap, s.len, s.offset] {
                table.push(u32::try_from(v).map_err(|_| CudaError::TooLarge { what: "stage index", value: v })?);
            }
            max_len = max_len.max(s.len);
        }
        u32::try_from(d).map_err(|_| CudaError::TooLarge { what: "dimension", value: d })?;
        let stages = dev.inner.upload_u32(&table)?;
        let params = dev.upload(params, &mode.param_shape(layout, d))?;
        let scale = match scale {
            Some(s) => Some(dev.upload(s, &[d])?),
            None => None,
        };
        Ok(Self { layout, d, mode, params, scale, stages, num_stages: table.len() / 5, max_len })
    }

    /// The identity adapter: zero angles (and unit scaling) or identity blocks.
    ///
    /// # Errors
    /// As [`CudaAdapter::new`].
    ///
    /// ```
    /// use qgoft_math::Layout;
    /// use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = CudaAdapter::identity(&dev, Layout::Tree, 4, AdapterMode::Qgoft)?;
    /// let x = dev.upload(&[1.0, 2.0, 3.0, 4.0], &[1, 4])?;
    /// assert_eq!(dev.download(&a.forward(&dev, &x)?)?, vec![1.0, 2.0, 3.0, 4.0]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn identity(dev: &CudaDevice, layout: Layout, d: usize, mode: AdapterMode) -> Result<Self, CudaError> {
        let p = layout.num_rotations(d);
        let params = if mode.is_quasi() { [1.0f32, 0.0, 0.0, 1.0].repeat(p) } else { vec![0.0f32; p] };
        let ones = vec![1.0f32; d];
        let scale = mode.has_scale().then_some(&ones[..]);
        Self::new(dev, layout, d, mode, &params, scale)
    }

    /// The layout.
    ///
    /// ```
    /// # use qgoft_math::Layout;
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = CudaAdapter::identity(&dev, Layout::Chain, 4, AdapterMode::Qgoft)?;
    /// assert_eq!(a.layout(), Layout::Chain);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The input dimension `d`.
    ///
    /// ```
    /// # use qgoft_math::Layout;
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// assert_eq!(CudaAdapter::identity(&dev, Layout::Tree, 7, AdapterMode::Qgoft)?.dim(), 7);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn dim(&self) -> usize {
        self.d
    }

    /// The mode.
    ///
    /// ```
    /// # use qgoft_math::Layout;
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// assert_eq!(CudaAdapter::identity(&dev, Layout::Tree, 7, AdapterMode::Qgoft)?.mode(), AdapterMode::Qgoft);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn mode(&self) -> AdapterMode {
        self.mode
    }

    /// The trained parameters: `[P]` raw angle parameters or `[P, 2, 2]` blocks.
    ///
    /// ```
    /// # use qgoft_math::{AngleMap, Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = CudaAdapter::identity(&dev, Layout::Tree, 6, AdapterMode::Goft(AngleMap::PiTanh))?;
    /// assert_eq!(dev.download(a.params())?, vec![0.0; 5]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn params(&self) -> &CudaTensor {
        &self.params
    }

    /// The parameters, for an optimizer step on the device.
    ///
    /// ```
    /// # use qgoft_math::{AngleMap, Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let mut a = CudaAdapter::identity(&dev, Layout::Tree, 3, AdapterMode::Goft(AngleMap::Raw))?;
    /// let g = dev.upload(&[1.0, 2.0], &[2])?;
    /// dev.axpy(-0.1, &g, a.params_mut())?;
    /// assert_eq!(dev.download(a.params())?, vec![-0.1, -0.2]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn params_mut(&mut self) -> &mut CudaTensor {
        &mut self.params
    }

    /// The scaling (`d` values), for [`AdapterMode::GoftScaled`].
    ///
    /// ```
    /// # use qgoft_math::{AngleMap, Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = CudaAdapter::identity(&dev, Layout::Tree, 3, AdapterMode::GoftScaled(AngleMap::Raw))?;
    /// assert_eq!(dev.download(a.scale().unwrap())?, vec![1.0; 3]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn scale(&self) -> Option<&CudaTensor> {
        self.scale.as_ref()
    }

    /// The scaling, for an optimizer step on the device.
    ///
    /// ```
    /// # use qgoft_math::{AngleMap, Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let mut a = CudaAdapter::identity(&dev, Layout::Tree, 3, AdapterMode::Goft(AngleMap::Raw))?;
    /// assert!(a.scale_mut().is_none());
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn scale_mut(&mut self) -> Option<&mut CudaTensor> {
        self.scale.as_mut()
    }

    fn table(&self) -> StageTable<'_> {
        StageTable { stages: &self.stages, num_stages: self.num_stages, max_len: self.max_len }
    }

    fn num_rotations(&self) -> usize {
        self.layout.num_rotations(self.d)
    }

    /// The blocks `[a, b, c, e]`: the parameters themselves (quasi) or built
    /// from the angles (strict).
    fn with_blocks<R>(
        &self,
        dev: &CudaDevice,
        f: impl FnOnce(&imp::Buffer) -> Result<R, CudaError>,
    ) -> Result<R, CudaError> {
        match self.mode {
            AdapterMode::Qgoft => f(&self.params.buf),
            AdapterMode::Goft(map) | AdapterMode::GoftScaled(map) => {
                let p = self.num_rotations();
                let mut blocks = dev.inner.zeros(4 * p)?;
                dev.inner.blocks_from_angles(&self.params.buf, &mut blocks, p, map == AngleMap::PiTanh)?;
                f(&blocks)
            }
        }
    }

    fn check_rows(&self, what: &'static str, x: &CudaTensor) -> Result<usize, CudaError> {
        match x.shape[..] {
            [n, d] if d == self.d => Ok(n),
            _ => Err(CudaError::ShapeMismatch {
                what,
                expected: vec![x.shape.first().copied().unwrap_or(0), self.d],
                found: x.shape.clone(),
            }),
        }
    }

    /// `Z = X R`: every row `x_r` of the `n x d` batch becomes `R^T x_r`.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless `x` is `n x d`.
    ///
    /// ```
    /// # use qgoft_math::{AngleMap, Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = CudaAdapter::new(&dev, Layout::Chain, 2, AdapterMode::Goft(AngleMap::Raw), &[std::f32::consts::FRAC_PI_2], None)?;
    /// let z = dev.download(&a.forward(&dev, &dev.upload(&[1.0, 0.0], &[1, 2])?)?)?;
    /// assert!(z[0].abs() < 1e-6 && (z[1] + 1.0).abs() < 1e-6); // R^T e_0 = (cos, -sin)
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn forward(&self, dev: &CudaDevice, x: &CudaTensor) -> Result<CudaTensor, CudaError> {
        let n = self.check_rows("adapter input", x)?;
        let mut z = dev.zeros(&[n, self.d])?;
        let scale = self.scale.as_ref().map(|s| &s.buf);
        self.with_blocks(dev, |blocks| {
            dev.inner.rotate_rows(&x.buf, &mut z.buf, (n, self.d), &self.table(), blocks, scale, false)
        })?;
        Ok(z)
    }

    /// Backward of [`CudaAdapter::forward`] for the layer input `x` and
    /// `grad = dL/dZ`: returns `dL/dX`, `dL/dparams` (with respect to the raw
    /// angle parameters through `pi * tanh`, or to the block entries) and
    /// `dL/dscale`, each parameter gradient summed over the rows in a fixed
    /// order.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless `x` and `grad` are both `n x d`.
    ///
    /// ```
    /// # use qgoft_math::{AngleMap, Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// // L = z_1 for z = R^T x, x = e_0, one angle: z_1 = -sin(theta), dL/dtheta = -cos(theta).
    /// let a = CudaAdapter::new(&dev, Layout::Chain, 2, AdapterMode::Goft(AngleMap::Raw), &[0.3], None)?;
    /// let x = dev.upload(&[1.0, 0.0], &[1, 2])?;
    /// let g = a.backward(&dev, &x, &dev.upload(&[0.0, 1.0], &[1, 2])?)?;
    /// assert!((dev.download(&g.params)?[0] + 0.3f32.cos()).abs() < 1e-6);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn backward(&self, dev: &CudaDevice, x: &CudaTensor, grad: &CudaTensor) -> Result<AdapterGrads, CudaError> {
        let n = self.check_rows("adapter input", x)?;
        if grad.shape != x.shape {
            return Err(CudaError::ShapeMismatch {
                what: "adapter output gradient",
                expected: x.shape.clone(),
                found: grad.shape.clone(),
            });
        }
        let mut input = dev.zeros(&[n, self.d])?;
        let p = self.num_rotations();
        let scale = self.scale.as_ref().map(|s| &s.buf);
        let pitanh = match self.mode {
            AdapterMode::Goft(AngleMap::PiTanh) | AdapterMode::GoftScaled(AngleMap::PiTanh) => Some(&self.params.buf),
            _ => None,
        };
        let (gp, gs) = self.with_blocks(dev, |blocks| {
            dev.inner.adapter_backward(
                &x.buf,
                &grad.buf,
                &mut input.buf,
                (n, self.d),
                &self.table(),
                blocks,
                p,
                scale,
                self.mode.is_quasi(),
                pitanh,
            )
        })?;
        let params = CudaTensor { buf: gp, shape: self.params.shape.clone() };
        let scale = gs.map(|buf| CudaTensor { buf, shape: vec![self.d] });
        Ok(AdapterGrads { input, params, scale })
    }

    /// The merged weight `W R^T` of an `m x d` weight, row by row `R w_r`,
    /// in `O(m d)`.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless `w` is `m x d`.
    ///
    /// ```
    /// # use qgoft_math::{Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// // (X R) W^T equals X (W R^T)^T: the merged layer gives the same output.
    /// let a = CudaAdapter::new(&dev, Layout::Tree, 3, AdapterMode::Qgoft, &[1.0, 0.5, -0.2, 0.9, 0.8, 0.1, 0.3, 1.2], None)?;
    /// let x = dev.upload(&[0.3, -1.0, 2.0, 0.5, 0.25, -0.75], &[2, 3])?;
    /// let w = dev.upload(&[1.0, 2.0, 3.0, -1.0, 0.0, 1.0], &[2, 3])?;
    /// let y1 = dev.download(&dev.matmul(&a.forward(&dev, &x)?, false, &w, true)?)?;
    /// let y2 = dev.download(&dev.matmul(&x, false, &a.merge(&dev, &w)?, true)?)?;
    /// for (p, q) in y1.iter().zip(&y2) {
    ///     assert!((p - q).abs() <= 1e-5 * p.abs().max(1.0));
    /// }
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn merge(&self, dev: &CudaDevice, w: &CudaTensor) -> Result<CudaTensor, CudaError> {
        let m = self.check_rows("weight", w)?;
        let mut out = dev.zeros(&[m, self.d])?;
        let scale = self.scale.as_ref().map(|s| &s.buf);
        self.with_blocks(dev, |blocks| {
            dev.inner.rotate_rows(&w.buf, &mut out.buf, (m, self.d), &self.table(), blocks, scale, true)
        })?;
        Ok(out)
    }

    /// The qGOFT penalty `sum_i (a_i b_i + c_i e_i)^2` over the blocks
    /// (zero up to rounding for strict blocks).
    ///
    /// # Errors
    /// [`CudaError::Driver`] if a launch fails.
    ///
    /// ```
    /// # use qgoft_math::{Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = CudaAdapter::new(&dev, Layout::Chain, 2, AdapterMode::Qgoft, &[1.0, 1.0, 1.0, 1.0], None)?;
    /// assert_eq!(a.penalty(&dev)?, 4.0); // (1 + 1)^2
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn penalty(&self, dev: &CudaDevice) -> Result<f32, CudaError> {
        let p = self.num_rotations();
        self.with_blocks(dev, |blocks| dev.inner.penalty(blocks, p))
    }

    /// Adds `lambda` times the penalty's gradient,
    /// `2 (a b + c e) [b, a, e, c]` per block, to `grad` (shaped like the
    /// parameters). For strict modes the penalty is identically zero in the
    /// angles and nothing is added.
    ///
    /// # Errors
    /// [`CudaError::ShapeMismatch`] unless `grad` has the parameters' shape.
    ///
    /// ```
    /// # use qgoft_math::{Layout};
    /// # use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice};
    /// # let Ok(dev) = CudaDevice::open(0) else { return Ok(()) };
    /// let a = CudaAdapter::new(&dev, Layout::Chain, 2, AdapterMode::Qgoft, &[1.0, 1.0, 1.0, 1.0], None)?;
    /// let mut g = dev.zeros(&[1, 2, 2])?;
    /// a.add_penalty_grad(&dev, 0.5, &mut g)?;
    /// assert_eq!(dev.download(&g)?, vec![2.0; 4]);
    /// # Ok::<(), qgoft_nn::cuda::CudaError>(())
    /// ```
    pub fn add_penalty_grad(&self, dev: &CudaDevice, lambda: f32, grad: &mut CudaTensor) -> Result<(), CudaError> {
        if grad.shape != self.params.shape {
            return Err(CudaError::ShapeMismatch {
                what: "penalty gradient",
                expected: self.params.shape.clone(),
                found: grad.shape.clone(),
            });
        }
        if !self.mode.is_quasi() {
            return Ok(());
        }
        dev.inner.penalty_grad(&self.params.buf, self.num_rotations(), lambda, &mut grad.buf)
    }
}
