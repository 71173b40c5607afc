//! The Givens-rotation adapter (GOFT, GOFT with scaling, qGOFT) on a frozen
//! linear layer, with several named adapters per layer.
//!
//! For a frozen `y = x W^T + b` (`W` is `m x d`) the active adapter applies a
//! learned `R` to the layer's input:
//!
//! ```text
//! y = (x R) W^T + b        row by row: y_r = W R^T x_r + b,   merged weight W' = W R^T
//! R = P_K ... P_1 S        (layout stages P_k, scaling S = diag(s) or I)
//! ```
//!
//! Three modes ([`GivensMode`]):
//! * [`GivensMode::Goft`]: `d - 1` angle parameters `p`, `theta = pi tanh(p)`,
//!   every block an exact rotation (the reference's `strict_oft`);
//! * [`GivensMode::GoftScaled`]: the same and a trainable diagonal scaling
//!   `s` (`d` entries, initialised to 1);
//! * [`GivensMode::Qgoft`]: every block a free `2 x 2` matrix `[[a, b], [c, e]]`
//!   (initialised to the identity) and the penalty
//!   `lambda * sum_k (a_k b_k + c_k e_k)^2` added to the loss through
//!   [`GivensLinear::penalty`].
//!
//! The forward pass is ONE tape node: `Z = X R` by
//! `qgoft_math::Rotation::apply_rows(Op::Transpose, ..)`, then the GEMM
//! `Z W^T + b`. Its backward computes `dZ = dY W` and hands it to
//! `qgoft_math::grad::vjp_rows`, which returns `dX` and the block (and
//! scaling) gradients, mapped to the parameters by `angle_param_grads` or
//! `quasi_param_grads`. Strict modes save only `Z` (the stage inputs are
//! recovered by inverse rotation); the quasi mode uses the input `X`, which
//! the tape keeps anyway. Nothing of the rotation is differentiated by the
//! generic autograd.
//!
//! GOFT without scaling on a batch of at least `m / 2` rows is evaluated
//! through the merged weight instead: `Y = X W'^T + b` with `W' = W R^T`
//! (the `m` weight rows rotated rather than the `n` batch rows), `dX = dY W'`,
//! and the angle gradients from `X` and `dX` by
//! `qgoft_math::grad::vjp_rows_from_input`. The two evaluations agree to
//! rounding; which one runs depends only on the mode and the shapes, so a
//! step is reproducible bit for bit.
//!
//! Several named adapters can live on one layer ([`GivensLinear::add_adapter`]);
//! one is active at a time ([`GivensLinear::set_active`]), all can be
//! disabled ([`GivensLinear::set_enabled`]), and any can be merged into the
//! base weight. Merges stack: `W <- W R_1^T`, then `W <- (W R_1^T) R_2^T`; an
//! adapter is unmerged only when it is the most recently merged one
//! ([`GivensLinear::unmerge_adapter`]), which undoes exactly its own merge
//! with `Rotation::unmerge` (no matrix inverse, no dense `R`).

use rayon::prelude::*;
use std::sync::{Arc, Mutex};

use qgoft_math::grad::{Saved, Workspace, angle_param_grads, penalty_grad, quasi_param_grads};
use qgoft_math::{AngleMap, Block, Layout, Op, RotationBuf};

use super::{Adapter, Linear, Module};
use crate::autograd::matmul::{affine, affine_backward, affine_checked, column_sums};
use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::param::{Param, ParamKind};
use crate::tensor::Tensor;

/// The angle map of the reference: `theta = pi * tanh(p)`.
pub const ANGLE_MAP: AngleMap = AngleMap::PiTanh;

/// Which Givens adapter (see the [module documentation](self)).
///
/// ```
/// use qgoft_nn::layers::GivensMode;
/// assert!(GivensMode::Goft.is_strict());
/// assert!(!GivensMode::Qgoft { lambda: 1e-3 }.is_strict());
/// assert!(GivensMode::GoftScaled.has_scaling());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GivensMode {
    /// Exact rotations from `pi tanh(p)` angles.
    Goft,
    /// Exact rotations and a diagonal scaling.
    GoftScaled,
    /// Free `2 x 2` blocks with the soft orthogonality penalty of weight `lambda`.
    Qgoft {
        /// Penalty weight.
        lambda: f32,
    },
}

impl GivensMode {
    /// Whether every block is an exact rotation.
    ///
    /// ```
    /// assert!(qgoft_nn::layers::GivensMode::GoftScaled.is_strict());
    /// ```
    pub fn is_strict(self) -> bool {
        !matches!(self, GivensMode::Qgoft { .. })
    }

    /// Whether the adapter carries a diagonal scaling.
    ///
    /// ```
    /// assert!(!qgoft_nn::layers::GivensMode::Goft.has_scaling());
    /// ```
    pub fn has_scaling(self) -> bool {
        matches!(self, GivensMode::GoftScaled)
    }

    /// A short name: `goft`, `goft-scaled` or `qgoft`.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::layers::GivensMode::Qgoft { lambda: 0.0 }.name(), "qgoft");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            GivensMode::Goft => "goft",
            GivensMode::GoftScaled => "goft-scaled",
            GivensMode::Qgoft { .. } => "qgoft",
        }
    }
}

/// Mode and layout of one adapter. The default is GOFT on the tree layout
/// (the reference).
///
/// ```
/// use qgoft_math::Layout;
/// let c = qgoft_nn::layers::GivensConfig::default();
/// assert_eq!((c.mode, c.layout), (qgoft_nn::layers::GivensMode::Goft, Layout::Tree));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GivensConfig {
    /// The mode.
    pub mode: GivensMode,
    /// The layout of the rotations (`Tree` is the reference's).
    pub layout: Layout,
}

impl Default for GivensConfig {
    fn default() -> Self {
        GivensConfig { mode: GivensMode::Goft, layout: Layout::Tree }
    }
}

impl GivensConfig {
    /// A configuration with the tree layout.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensMode};
    /// assert_eq!(GivensConfig::tree(GivensMode::GoftScaled).mode, GivensMode::GoftScaled);
    /// ```
    pub fn tree(mode: GivensMode) -> Self {
        GivensConfig { mode, layout: Layout::Tree }
    }
}

/// One named adapter's parameters for an input width `d`.
///
/// Parameters (kind [`ParamKind::Adapter`]), named
/// `<module>.givens_hard.<adapter>` (`K` raw angles, strict modes),
/// `<module>.givens_soft.<adapter>` (`K x 2 x 2` blocks, quasi mode) and
/// `<module>.givens_scaler.<adapter>` (`d`, scaled mode), with `K` the
/// layout's number of rotations (`d - 1` for the tree and the chain).
///
/// ```
/// use qgoft_nn::layers::{GivensAdapter, GivensConfig, GivensMode};
/// let a = GivensAdapter::new("fc", "default", 5, GivensConfig::tree(GivensMode::Qgoft { lambda: 1e-3 }))?;
/// assert_eq!(a.params().shape(), vec![4, 2, 2]);
/// assert_eq!(a.params().name(), "fc.givens_soft.default");
/// assert_eq!(a.num_trainable(), 16);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct GivensAdapter {
    config: GivensConfig,
    d: usize,
    params: Param,
    scaler: Option<Param>,
    /// Buffers of rotated inputs and merged weights, handed back when a
    /// step's tape is dropped.
    spare: Spare,
}

/// Buffers of rotated inputs `X R` and merged weights `W R^T` kept from one
/// training step to the next (shared by the clones of an adapter): a fresh
/// buffer of a batch's size comes from the system as untouched pages, one
/// page fault per 4 KiB on first write, or is zeroed first, which costs
/// about as much as rotating the batch.
#[derive(Clone, Default)]
struct Spare(Arc<Mutex<Vec<Vec<f32>>>>);

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.0.lock().map(|v| v.len()).unwrap_or(0);
        write!(f, "Spare({held} buffers)")
    }
}

/// Buffers a [`Spare`] keeps at most (one per tape alive at once).
const MAX_SPARE: usize = 2;

impl Spare {
    /// A buffer of `len` values (their contents unspecified): a kept one of
    /// that length if there is one, else any kept one, resized.
    fn take(&self, len: usize) -> Pooled {
        let mut buf = self
            .0
            .lock()
            .ok()
            .and_then(|mut v| match v.iter().rposition(|b| b.len() == len) {
                Some(i) => Some(v.swap_remove(i)),
                None => v.pop(),
            })
            .unwrap_or_default();
        if buf.len() != len {
            buf.clear();
            buf.resize(len, 0.0);
        }
        Pooled { buf, home: self.clone() }
    }
}

/// A buffer of a [`Spare`], handed back to it when dropped.
struct Pooled {
    buf: Vec<f32>,
    home: Spare,
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Ok(mut v) = self.home.0.lock()
            && v.len() < MAX_SPARE
        {
            v.push(std::mem::take(&mut self.buf));
        }
    }
}

impl GivensAdapter {
    /// A new adapter at the identity (zero angles, identity blocks, unit scaling).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `d = 0` or a non-finite or negative `lambda`.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig, GivensMode};
    /// assert!(GivensAdapter::new("fc", "a", 4, GivensConfig::tree(GivensMode::Qgoft { lambda: f32::NAN })).is_err());
    /// ```
    pub fn new(module: &str, name: &str, d: usize, config: GivensConfig) -> Result<Self> {
        if d == 0 {
            return Err(Error::invalid("adapter input width", d));
        }
        if let GivensMode::Qgoft { lambda } = config.mode
            && !(lambda.is_finite() && lambda >= 0.0)
        {
            return Err(Error::invalid("qGOFT penalty weight lambda (finite, >= 0)", lambda));
        }
        let k = config.layout.num_rotations(d);
        let params = if config.mode.is_strict() {
            Param::new(format!("{module}.givens_hard.{name}"), ParamKind::Adapter, Tensor::zeros(&[k]))
        } else {
            let eye = Tensor::from_fn(&[k, 2, 2], |i| if i % 4 == 0 || i % 4 == 3 { 1.0 } else { 0.0 });
            Param::new(format!("{module}.givens_soft.{name}"), ParamKind::Adapter, eye)
        };
        let scaler = config
            .mode
            .has_scaling()
            .then(|| Param::new(format!("{module}.givens_scaler.{name}"), ParamKind::Adapter, Tensor::full(&[d], 1.0)));
        Ok(GivensAdapter { config, d, params, scaler, spare: Spare::default() })
    }

    /// The configuration.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig};
    /// let a = GivensAdapter::new("fc", "a", 4, GivensConfig::default())?;
    /// assert_eq!(a.config(), GivensConfig::default());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn config(&self) -> GivensConfig {
        self.config
    }

    /// The input width `d`.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig};
    /// assert_eq!(GivensAdapter::new("fc", "a", 4, GivensConfig::default())?.dim(), 4);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn dim(&self) -> usize {
        self.d
    }

    /// The angle parameters (strict, shape `[K]`) or the blocks (quasi, `[K, 2, 2]`).
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig};
    /// assert_eq!(GivensAdapter::new("fc", "a", 4, GivensConfig::default())?.params().shape(), vec![3]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn params(&self) -> &Param {
        &self.params
    }

    /// The scaling (`[d]`), in the scaled mode.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig, GivensMode};
    /// let a = GivensAdapter::new("fc", "a", 4, GivensConfig::tree(GivensMode::GoftScaled))?;
    /// assert_eq!(a.scaler().unwrap().value().data(), &[1.0; 4]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn scaler(&self) -> Option<&Param> {
        self.scaler.as_ref()
    }

    /// Every trainable tensor of the adapter.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig, GivensMode};
    /// let a = GivensAdapter::new("fc", "a", 4, GivensConfig::tree(GivensMode::GoftScaled))?;
    /// assert_eq!(a.all_params().len(), 2);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn all_params(&self) -> Vec<Param> {
        std::iter::once(self.params.clone()).chain(self.scaler.clone()).collect()
    }

    /// Number of trainable scalars: `K`, `K + d` or `4 K`.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig, GivensMode};
    /// assert_eq!(GivensAdapter::new("fc", "a", 8, GivensConfig::tree(GivensMode::GoftScaled))?.num_trainable(), 15);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn num_trainable(&self) -> usize {
        self.all_params().iter().map(|p| p.value().len()).sum()
    }

    /// The rotation for the current parameter values.
    ///
    /// # Errors
    /// [`Error::Math`] for non-finite parameters.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig};
    /// let a = GivensAdapter::new("fc", "a", 3, GivensConfig::default())?;
    /// assert_eq!(a.rotation()?.to_dense(), vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn rotation(&self) -> Result<RotationBuf<f32>> {
        let p = self.params.value();
        let s = self.scaler.as_ref().map(Param::value);
        let s = s.as_deref().map(Tensor::data);
        Ok(if self.config.mode.is_strict() {
            RotationBuf::from_angles(self.config.layout, self.d, ANGLE_MAP, p.data(), s)?
        } else {
            RotationBuf::from_quasi(self.config.layout, self.d, p.data(), s)?
        })
    }

    /// The penalty value `lambda * sum_k (a_k b_k + c_k e_k)^2` (zero for strict modes).
    ///
    /// # Errors
    /// [`Error::Math`] for non-finite parameters.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensAdapter, GivensConfig, GivensMode};
    /// let a = GivensAdapter::new("fc", "a", 3, GivensConfig::tree(GivensMode::Qgoft { lambda: 2.0 }))?;
    /// a.params().set(qgoft_nn::Tensor::new(vec![2, 2, 2], vec![1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])?)?;
    /// assert_eq!(a.penalty_value()?, 0.5);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn penalty_value(&self) -> Result<f32> {
        match self.config.mode {
            GivensMode::Qgoft { lambda } => {
                let blocks = quasi_blocks(self.params.value().data());
                let mut scratch = vec![Block::default(); blocks.len()];
                Ok(penalty_grad(&blocks, lambda, &mut scratch)?)
            }
            _ => Ok(0.0),
        }
    }
}

fn quasi_blocks(flat: &[f32]) -> Vec<Block<f32>> {
    flat.chunks_exact(4).map(|c| Block { a: c[0], b: c[1], c: c[2], e: c[3] }).collect()
}

/// A frozen [`Linear`] with named Givens adapters (see the
/// [module documentation](self)).
///
/// ```
/// use qgoft_nn::layers::{Adapter, GivensConfig, GivensLinear, GivensMode, Linear, Module};
/// use qgoft_nn::{Graph, Rng, Tensor};
/// let mut rng = Rng::new(0);
/// let mut layer = GivensLinear::new(Linear::new("fc", 6, 3, true, &mut rng));
/// layer.add_adapter("task", GivensConfig::tree(GivensMode::GoftScaled))?;
/// let a = layer.adapter("task").unwrap();
/// a.params().set(Tensor::from_fn(&[5], |i| 0.1 * i as f32))?;
/// let x = Tensor::from_fn(&[2, 6], |i| (i as f32).sin());
/// let mut g = Graph::new();
/// let xv = g.constant(x.clone());
/// let y = layer.forward(&mut g, xv)?;
/// let adapted = g.value(y).clone();
/// layer.merge()?; // W <- W R^T: the base layer alone now gives the same outputs
/// let y = layer.forward(&mut g, xv)?;
/// assert!(adapted.zip_map(g.value(y), |a, b| (a - b).abs())?.max_abs() < 1e-5);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Debug)]
pub struct GivensLinear {
    base: Linear,
    module: String,
    adapters: Vec<(String, GivensAdapter)>,
    active: Option<usize>,
    enabled: bool,
    merged: Vec<usize>,
}

impl GivensLinear {
    /// Wraps `base` (which is frozen) with no adapter yet. The module path is
    /// the weight's name without `.weight`.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensLinear, Linear};
    /// let l = GivensLinear::new(Linear::new("mlp.0", 4, 2, true, &mut qgoft_nn::Rng::new(0)));
    /// assert_eq!(l.module_path(), "mlp.0");
    /// ```
    pub fn new(base: Linear) -> Self {
        base.freeze();
        let name = base.weight().name();
        let module = name.strip_suffix(".weight").unwrap_or(name).to_string();
        GivensLinear { base, module, adapters: Vec::new(), active: None, enabled: true, merged: Vec::new() }
    }

    /// Wraps `base` with one adapter named `default`, active.
    ///
    /// # Errors
    /// As [`GivensAdapter::new`].
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let l = GivensLinear::with_default(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)), GivensConfig::default())?;
    /// assert_eq!(l.active_name(), Some("default"));
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn with_default(base: Linear, config: GivensConfig) -> Result<Self> {
        let mut l = GivensLinear::new(base);
        l.add_adapter("default", config)?;
        Ok(l)
    }

    /// The module path (the key prefix in adapter files).
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensLinear, Linear};
    /// assert_eq!(GivensLinear::new(Linear::new("enc.q", 2, 2, false, &mut qgoft_nn::Rng::new(0))).module_path(), "enc.q");
    /// ```
    pub fn module_path(&self) -> &str {
        &self.module
    }

    /// Adds a new adapter at the identity and makes it active.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the name is taken or empty; as [`GivensAdapter::new`].
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::new(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)));
    /// l.add_adapter("a", GivensConfig::default())?;
    /// l.add_adapter("b", GivensConfig::default())?;
    /// assert!(l.add_adapter("a", GivensConfig::default()).is_err());
    /// assert_eq!(l.adapter_names(), ["a", "b"]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn add_adapter(&mut self, name: &str, config: GivensConfig) -> Result<&GivensAdapter> {
        if name.is_empty() || self.index(name).is_some() {
            return Err(Error::invalid("adapter name (empty or already present)", format!("{name:?}")));
        }
        let a = GivensAdapter::new(&self.module, name, self.base.in_features(), config)?;
        self.adapters.push((name.to_string(), a));
        self.active = Some(self.adapters.len() - 1);
        Ok(&self.adapters[self.adapters.len() - 1].1)
    }

    /// Removes an adapter that is not merged; if it was active, none is active afterwards.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown or merged adapter.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::with_default(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)), GivensConfig::default())?;
    /// l.remove_adapter("default")?;
    /// assert_eq!(l.active_name(), None);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn remove_adapter(&mut self, name: &str) -> Result<GivensAdapter> {
        let i = self.require(name)?;
        if self.merged.contains(&i) {
            return Err(Error::invalid("adapter to remove (unmerge it first)", name));
        }
        let (_, a) = self.adapters.remove(i);
        let shift = |k: usize| if k > i { k - 1 } else { k };
        self.active = match self.active {
            Some(k) if k == i => None,
            other => other.map(shift),
        };
        self.merged.iter_mut().for_each(|k| *k = shift(*k));
        Ok(a)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.adapters.iter().position(|(n, _)| n == name)
    }

    fn require(&self, name: &str) -> Result<usize> {
        self.index(name).ok_or_else(|| {
            let known: Vec<&str> = self.adapter_names();
            Error::invalid(format!("adapter name on {} (known: {known:?})", self.module), format!("{name:?}"))
        })
    }

    /// The adapter with this name.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensLinear, Linear};
    /// assert!(GivensLinear::new(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0))).adapter("x").is_none());
    /// ```
    pub fn adapter(&self, name: &str) -> Option<&GivensAdapter> {
        self.index(name).map(|i| &self.adapters[i].1)
    }

    /// The adapter names, in insertion order.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensLinear, Linear};
    /// assert!(GivensLinear::new(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0))).adapter_names().is_empty());
    /// ```
    pub fn adapter_names(&self) -> Vec<&str> {
        self.adapters.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Makes `name` the active adapter.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown name (listing the known ones).
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::new(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)));
    /// l.add_adapter("a", GivensConfig::default())?;
    /// l.add_adapter("b", GivensConfig::default())?;
    /// l.set_active("a")?;
    /// assert_eq!(l.active_name(), Some("a"));
    /// assert!(l.set_active("c").is_err());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn set_active(&mut self, name: &str) -> Result<()> {
        self.active = Some(self.require(name)?);
        Ok(())
    }

    /// The active adapter's name.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensLinear, Linear};
    /// assert_eq!(GivensLinear::new(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0))).active_name(), None);
    /// ```
    pub fn active_name(&self) -> Option<&str> {
        self.active.map(|i| self.adapters[i].0.as_str())
    }

    /// The active adapter.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let l = GivensLinear::with_default(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)), GivensConfig::default())?;
    /// assert_eq!(l.active().unwrap().dim(), 4);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn active(&self) -> Option<&GivensAdapter> {
        self.active.map(|i| &self.adapters[i].1)
    }

    /// Enables or disables the (unmerged) active adapter in the forward pass;
    /// merged adapters stay in the weight.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::with_default(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)), GivensConfig::default())?;
    /// l.set_enabled(false);
    /// assert!(!l.is_enabled());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    /// Whether adapters are enabled.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensLinear, Linear};
    /// assert!(GivensLinear::new(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0))).is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The names of the merged adapters, in merge order.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::with_default(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)), GivensConfig::default())?;
    /// l.merge_adapter("default")?;
    /// assert_eq!(l.merged_names(), ["default"]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn merged_names(&self) -> Vec<&str> {
        self.merged.iter().map(|&i| self.adapters[i].0.as_str()).collect()
    }

    /// Folds the named adapter into the base weight: `W <- W R^T`, in
    /// `O(m d)` by `Rotation::merge`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown or already merged adapter;
    /// [`Error::Math`] for non-finite parameters (nothing is changed).
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::with_default(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)), GivensConfig::default())?;
    /// l.merge_adapter("default")?;
    /// assert!(l.merge_adapter("default").is_err());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn merge_adapter(&mut self, name: &str) -> Result<()> {
        let i = self.require(name)?;
        if self.merged.contains(&i) {
            return Err(Error::invalid(
                format!("merge on {}", self.module),
                format!("adapter {name:?} is already merged"),
            ));
        }
        let r = self.adapters[i].1.rotation()?;
        let w = rotated_weight(&r.as_rotation(), Op::Forward, &self.base.weight().value())?;
        self.base.weight().set(w)?;
        self.merged.push(i);
        Ok(())
    }

    /// Removes the named adapter from the base weight: `W <- W R^-T` by
    /// `Rotation::unmerge` (per-block inverses; for strict blocks transposes),
    /// never a dense inverse. Only the most recently merged adapter can be
    /// unmerged (merges do not commute).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an unknown adapter, one that is not
    /// merged, or one merged before another still merged adapter;
    /// [`Error::Math`] for a singular quasi block or zero scaling (nothing is changed).
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::new(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)));
    /// l.add_adapter("a", GivensConfig::default())?;
    /// l.add_adapter("b", GivensConfig::default())?;
    /// l.merge_adapter("a")?;
    /// l.merge_adapter("b")?;
    /// assert!(l.unmerge_adapter("a").is_err()); // b was merged after a
    /// l.unmerge_adapter("b")?;
    /// l.unmerge_adapter("a")?;
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn unmerge_adapter(&mut self, name: &str) -> Result<()> {
        let i = self.require(name)?;
        match self.merged.last() {
            Some(&top) if top == i => {}
            _ if self.merged.contains(&i) => {
                return Err(Error::invalid(
                    format!("unmerge on {} (unmerge in reverse merge order: {:?})", self.module, self.merged_names()),
                    format!("{name:?}"),
                ));
            }
            _ => {
                return Err(Error::invalid(
                    format!("unmerge on {}", self.module),
                    format!("adapter {name:?} is not merged"),
                ));
            }
        }
        let r = self.adapters[i].1.rotation()?;
        let w = rotated_weight(&r.as_rotation(), Op::Inverse, &self.base.weight().value())?;
        self.base.weight().set(w)?;
        self.merged.pop();
        Ok(())
    }

    /// Merges every adapter not yet merged, in insertion order.
    ///
    /// # Errors
    /// As [`GivensLinear::merge_adapter`].
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::new(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)));
    /// l.add_adapter("a", GivensConfig::default())?;
    /// l.add_adapter("b", GivensConfig::default())?;
    /// l.merge_all()?;
    /// assert_eq!(l.merged_names(), ["a", "b"]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn merge_all(&mut self) -> Result<()> {
        for i in 0..self.adapters.len() {
            if !self.merged.contains(&i) {
                let name = self.adapters[i].0.clone();
                self.merge_adapter(&name)?;
            }
        }
        Ok(())
    }

    /// Unmerges every merged adapter, most recent first.
    ///
    /// # Errors
    /// As [`GivensLinear::unmerge_adapter`].
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    /// let mut l = GivensLinear::with_default(Linear::new("fc", 4, 2, true, &mut qgoft_nn::Rng::new(0)), GivensConfig::default())?;
    /// l.merge_all()?;
    /// l.unmerge_all()?;
    /// assert!(l.merged_names().is_empty());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn unmerge_all(&mut self) -> Result<()> {
        while let Some(&i) = self.merged.last() {
            let name = self.adapters[i].0.clone();
            self.unmerge_adapter(&name)?;
        }
        Ok(())
    }

    /// The adapter used by the forward pass: active, enabled and not merged.
    fn live(&self) -> Option<&GivensAdapter> {
        let i = self.active?;
        (self.enabled && !self.merged.contains(&i)).then(|| &self.adapters[i].1)
    }

    /// Records the penalty `lambda * sum (ab + ce)^2` of the live quasi
    /// adapter as one node whose backward is `qgoft_math::grad::penalty_grad`;
    /// `None` when there is no live quasi adapter.
    ///
    /// # Errors
    /// [`Error::Math`] for non-finite blocks.
    ///
    /// ```
    /// use qgoft_nn::layers::{GivensConfig, GivensLinear, GivensMode, Linear};
    /// use qgoft_nn::{Graph, Tensor};
    /// let l = GivensLinear::with_default(
    ///     Linear::new("fc", 3, 2, true, &mut qgoft_nn::Rng::new(0)),
    ///     GivensConfig::tree(GivensMode::Qgoft { lambda: 2.0 }),
    /// )?;
    /// let p = l.active().unwrap().params().clone();
    /// p.set(Tensor::new(vec![2, 2, 2], vec![1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])?)?;
    /// let mut g = Graph::new();
    /// let pen = l.penalty(&mut g)?.unwrap();
    /// assert_eq!(g.value(pen).item(), 0.5);
    /// let grads = g.backward(pen)?;
    /// assert_eq!(grads.get(&p).unwrap().data()[..4], [1.0, 2.0, 2.0, 0.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn penalty(&self, g: &mut Graph) -> Result<Option<Var>> {
        let Some(a) = self.live() else { return Ok(None) };
        let GivensMode::Qgoft { lambda } = a.config.mode else { return Ok(None) };
        let pv = g.param(&a.params);
        let blocks = quasi_blocks(g.value(pv).data());
        let mut scratch = vec![Block::default(); blocks.len()];
        let value = penalty_grad(&blocks, lambda, &mut scratch)?;
        let shape = a.params.shape();
        Ok(Some(g.record(
            &[pv],
            Tensor::scalar(value),
            Box::new(move |args| {
                let blocks = quasi_blocks(args.inputs[0].data());
                let mut db = vec![Block::default(); blocks.len()];
                penalty_grad(&blocks, lambda, &mut db)?;
                let up = args.grad.item();
                let flat: Vec<f32> = db.iter().flat_map(|b| b.to_array()).map(|v| v * up).collect();
                Ok(vec![Some(Tensor::new(shape.clone(), flat)?)])
            }),
        )))
    }
}

/// Rows per thread below which the rotation runs on one thread.
const MIN_ROWS_PER_THREAD: usize = 64;
/// Elements (`n d`) below which the rotation runs on one thread.
const MIN_PARALLEL_ELEMENTS: usize = 1 << 16;

/// Number of row chunks for an `n x d` batch: the GEMM thread count, fewer
/// for small batches. Fixed by `(n, d, threads)`, so results are
/// reproducible for a given thread count.
fn row_chunks(n: usize, d: usize) -> usize {
    if n * d < MIN_PARALLEL_ELEMENTS {
        return 1;
    }
    crate::linalg::num_threads().min(n / MIN_ROWS_PER_THREAD).max(1)
}

/// `Z = X R` row by row (`apply_rows_into(Op::Transpose)`: read, checked
/// and rotated in one pass where the row stride allows), the rows split
/// over threads (rows are independent, so the result is the same bitwise).
fn rotate_rows(rot: &qgoft_math::Rotation<'_, f32>, x: &[f32], spare: &Spare) -> Result<Pooled> {
    let mut out = spare.take(x.len());
    rows_into_par(rot, Op::Transpose, x, &mut out.buf)?;
    Ok(out)
}

/// `op` applied to every row of the row-major batch `x` into `out` (same
/// length, a multiple of `d`) by `apply_rows_into`, which reads, checks and
/// writes each row in one pass where the row stride allows, the rows split
/// over the GEMM threads (on the pool the GEMM runs on, whose threads are
/// awake after a GEMM). Rows are independent, so the result is bitwise that
/// of one call on the whole batch; `x` is never written.
///
/// # Errors
/// As `apply_rows_into`; a non-finite value is named by its index in the
/// whole batch (the first one of the first failing chunk).
fn rows_into_par(rot: &qgoft_math::Rotation<'_, f32>, op: Op, x: &[f32], out: &mut [f32]) -> Result<()> {
    let d = rot.dim().max(1);
    let n = x.len() / d;
    let t = row_chunks(n, d);
    if t <= 1 {
        return Ok(rot.apply_rows_into(op, x, out)?);
    }
    let rows = n.div_ceil(t);
    let results: Vec<qgoft_math::Result<()>> = x
        .par_chunks(rows * d)
        .zip(out.par_chunks_mut(rows * d))
        .enumerate()
        .map(|(c, (src, dst))| rot.apply_rows_into(op, src, dst).map_err(|e| shift_index(e, c * rows * d)))
        .collect();
    Ok(results.into_iter().collect::<qgoft_math::Result<()>>()?)
}

/// The `m x d` weight `w` with `op` applied to every row, as a new tensor
/// (`Op::Forward` is `Rotation::merge`, `Op::Inverse` `Rotation::unmerge`);
/// `w` is not changed.
fn rotated_weight(rot: &qgoft_math::Rotation<'_, f32>, op: Op, w: &Tensor) -> Result<Tensor> {
    let mut out = vec![0.0f32; w.len()];
    let m = rotated_weight_into(rot, op, w, &mut out)?;
    Tensor::new(vec![m, rot.dim()], out)
}

/// [`rotated_weight`] into `out` (`w`'s length) by [`rows_into_par`];
/// returns the weight's row count `m`.
fn rotated_weight_into(rot: &qgoft_math::Rotation<'_, f32>, op: Op, w: &Tensor, out: &mut [f32]) -> Result<usize> {
    let d = rot.dim();
    let (m, cols) = w.dims2()?;
    if cols != d {
        return Err(Error::shape("weight rotated by an adapter", &[m, d], &[m, cols]));
    }
    rows_into_par(rot, op, w.data(), out)?;
    Ok(m)
}

/// An error of a call on a chunk that starts at flat index `offset`, with
/// a non-finite value's index made an index in the whole buffer.
fn shift_index(e: qgoft_math::Error, offset: usize) -> qgoft_math::Error {
    match e {
        qgoft_math::Error::NonFinite { what, index, value } => {
            qgoft_math::Error::NonFinite { what, index: index + offset, value }
        }
        e => e,
    }
}

/// Block gradients and the optional scaling gradient.
type RotationGrads = (Vec<Block<f32>>, Option<Vec<f32>>);

/// `grad::vjp_rows_owned` over row chunks on threads: `dy` becomes `dL/dX`;
/// the block and scaling gradients of the chunks are added in chunk order.
/// The tape owns `dy`, so its values are checked through the results, not
/// by passes of their own (on error `dy` is dropped); an error names the
/// first bad value of the first failing chunk by its index in the batch.
fn vjp_rows_par(
    rot: &qgoft_math::Rotation<'_, f32>,
    saved: Saved<'_, f32>,
    dy: &mut [f32],
    d: usize,
    scaled: bool,
) -> Result<RotationGrads> {
    let nb = rot.blocks().len();
    let one = |saved: Saved<'_, f32>, dy: &mut [f32]| -> qgoft_math::Result<RotationGrads> {
        let mut db = vec![Block::default(); nb];
        let mut ds = scaled.then(|| vec![0.0f32; d]);
        Workspace::new().vjp_rows_owned(rot, Op::Transpose, saved, dy, &mut db, ds.as_deref_mut())?;
        Ok((db, ds))
    };
    let n = dy.len() / d.max(1);
    let t = row_chunks(n, d);
    if t <= 1 {
        return Ok(one(saved, dy)?);
    }
    let rows = n.div_ceil(t);
    let is_output = matches!(saved, Saved::Output(_));
    // Chunk results are collected in chunk order and added in that order.
    let parts = saved
        .data()
        .par_chunks(rows * d)
        .zip(dy.par_chunks_mut(rows * d))
        .enumerate()
        .map(|(c, (sv, g))| {
            let sv = if is_output { Saved::Output(sv) } else { Saved::Input(sv) };
            one(sv, g).map_err(|e| shift_index(e, c * rows * d))
        })
        .collect::<Vec<_>>();
    sum_in_order(parts, nb, scaled.then_some(d))
}

/// The sum of the chunks' gradients, added in chunk order (so the result
/// does not depend on which thread finished first), or the error of the
/// first failing chunk. `scale` is the scaling's length, if any.
fn sum_in_order(
    parts: Vec<qgoft_math::Result<RotationGrads>>,
    nb: usize,
    scale: Option<usize>,
) -> Result<RotationGrads> {
    let parts = parts.into_iter().collect::<qgoft_math::Result<Vec<_>>>()?;
    let mut parts = parts.into_iter();
    let (mut db, mut ds) = parts.next().unwrap_or_else(|| (vec![Block::default(); nb], scale.map(|d| vec![0.0; d])));
    for (pb, ps) in parts {
        for (a, b) in db.iter_mut().zip(pb) {
            *a = Block { a: a.a + b.a, b: a.b + b.b, c: a.c + b.c, e: a.e + b.e };
        }
        if let (Some(a), Some(b)) = (ds.as_mut(), ps) {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }
    Ok((db, ds))
}

/// Whether the adapted layer evaluates `X (W R^T)^T` (rotating the `m`
/// weight rows) rather than `(X R) W^T` (rotating the `n` batch rows): only
/// for exact rotations without scaling, whose inverse is their transpose
/// (the backward then needs no rotated batch, see [`merged_forward`]), and
/// only when the weight has at most twice as many rows as the batch. The
/// merged evaluation rotates `m` rows forward and reads `X` and `dX` once
/// for the block gradients; the other rotates `n` rows forward and takes
/// the VJP from the rotated batch, which also forms `dX` (per element,
/// with AVX-512 and `d` a multiple of 16, measured with the input side's
/// sums on blocks of 16: forward about 0.22 ns, the VJP from the input
/// about 0.35, from the rotated batch about 0.6), so the merged one costs
/// less while `m` stays under about `2 n`.
fn merges_weight(mode: GivensMode, n: usize, m: usize) -> bool {
    mode == GivensMode::Goft && m > 0 && m <= 2 * n
}

/// `grad::vjp_rows_from_input` (`Op::Transpose`) over row chunks on
/// threads; the chunks' block gradients are added in chunk order, and an
/// error names a value by its index in the whole batch.
fn vjp_from_input_par(rot: &qgoft_math::Rotation<'_, f32>, x: &[f32], dx: &[f32], d: usize) -> Result<Vec<Block<f32>>> {
    let nb = rot.blocks().len();
    let one = |x: &[f32], dx: &[f32]| -> qgoft_math::Result<RotationGrads> {
        let mut db = vec![Block::default(); nb];
        Workspace::new().vjp_rows_from_input(rot, Op::Transpose, x, dx, &mut db)?;
        Ok((db, None))
    };
    let n = x.len() / d.max(1);
    let rows = n.div_ceil(row_chunks(n, d)).max(1) * d.max(1);
    let parts = x
        .par_chunks(rows)
        .zip(dx.par_chunks(rows))
        .enumerate()
        .map(|(c, (x, dx))| one(x, dx).map_err(|e| shift_index(e, c * rows)))
        .collect::<Vec<_>>();
    Ok(sum_in_order(parts, nb, None)?.0)
}

/// The adapted layer of an unscaled exact rotation as `Y = X W'^T + b` with
/// the merged weight `W' = W R^T` (`m` rows rotated instead of the batch's
/// `n`), recorded as one node. A non-finite input makes its whole output
/// row non-finite, so the input is searched for it only when the pass that
/// adds the bias finds a non-finite output.
///
/// Backward: `dX = dY W'` (one GEMM, as the plain layer's). The stage
/// inputs and gradients between `X` and `Z = X R` are walked from the input
/// side by `grad::vjp_rows_from_input`, which reads `X` and `dX` and writes
/// neither.
fn merged_forward(g: &mut Graph, x: Var, base: &Linear, a: &GivensAdapter, rot: RotationBuf<f32>) -> Result<Var> {
    let (n, d) = g.value(x).dims2()?;
    let mut inputs = vec![x, g.param(&a.params)];
    let w_at = inputs.len();
    inputs.push(g.param(base.weight()));
    let b_at = base.bias().map(|b| {
        inputs.push(g.param(b));
        inputs.len() - 1
    });
    let w = g.value(inputs[w_at]);
    // The merged weight in a kept buffer: a fresh one would be zeroed (or
    // faulted in) every step before being overwritten.
    let mut merged = a.spare.take(w.len());
    let m = rotated_weight_into(&rot.as_rotation(), Op::Forward, w, &mut merged.buf)?;
    let xs = g.value(x).data();
    let (y, finite) = affine_checked::<true>(xs, n, d, &merged.buf, m, b_at.map(|i| g.value(inputs[i])));
    if !finite {
        // A non-finite input reaches every output of its row; name it. With
        // a finite input the products overflowed, as in the plain layer.
        crate::error::check_finite(&format!("input of the adapted layer {}", a.params.name()), xs)?;
    }
    let value = Tensor::new(vec![n, m], y)?;
    let spare = a.spare.clone();
    let pshape = a.params.shape();
    Ok(g.record(
        &inputs,
        value,
        Box::new(move |args| {
            let (x, gy) = (args.inputs[0], args.grad.data());
            let r = rot.as_rotation();
            let needs_rot = args.needs[0] || args.needs[1];
            let mut out: Vec<Option<Tensor>> = vec![None; args.inputs.len()];
            if args.needs[w_at] {
                // dW = dY^T Z with the rotated batch, recomputed.
                let z = rotate_rows(&r, x.data(), &spare)?;
                let [_, dw, _] = affine_backward(gy, &z.buf, &[], (n, d, m), [false, true, false]);
                out[w_at] = dw.map(|v| Tensor::new(vec![m, d], v)).transpose()?;
            }
            if let Some(bi) = b_at.filter(|&i| args.needs[i]) {
                out[bi] = Some(Tensor::new(vec![m], column_sums(gy, m))?);
            }
            if needs_rot {
                let [dx, _, _] = affine_backward(gy, &[], &merged.buf, (n, d, m), [true, false, false]);
                let dx = dx.unwrap_or_default();
                let dblocks = vjp_from_input_par(&r, x.data(), &dx, d)?;
                let mut dp = vec![0.0f32; pshape.iter().product()];
                angle_param_grads(ANGLE_MAP, args.inputs[1].data(), &dblocks, &mut dp)?;
                out[0] = args.needs[0].then(|| Tensor::new(vec![n, d], dx)).transpose()?;
                out[1] = args.needs[1].then(|| Tensor::new(pshape.clone(), dp)).transpose()?;
            }
            Ok(out)
        }),
    ))
}

/// Records the adapted layer `Y = (X R) W^T + b` as one node (see the module documentation).
fn adapted_forward(g: &mut Graph, x: Var, base: &Linear, a: &GivensAdapter) -> Result<Var> {
    let (n, d) = g.value(x).dims2()?;
    if d != a.d {
        return Err(Error::shape(format!("input of the adapted layer {}", a.params.name()), &[n, a.d], &[n, d]));
    }
    let m = base.out_features();
    if merges_weight(a.config.mode, n, m) {
        return merged_forward(g, x, base, a, a.rotation()?);
    }
    let rot = Arc::new(a.rotation()?);
    let z = rotate_rows(&rot.as_rotation(), g.value(x).data(), &a.spare)?;
    let mut inputs = vec![x, g.param(&a.params)];
    let scale_at = a.scaler.as_ref().map(|s| {
        inputs.push(g.param(s));
        inputs.len() - 1
    });
    let w_at = inputs.len();
    inputs.push(g.param(base.weight()));
    let b_at = base.bias().map(|b| {
        inputs.push(g.param(b));
        inputs.len() - 1
    });
    let y = {
        let w = g.value(inputs[w_at]);
        let b = b_at.map(|i| g.value(inputs[i]));
        affine(&z.buf, n, d, w, b)
    };
    let value = Tensor::new(vec![n, m], y)?;
    let strict = a.config.mode.is_strict();
    // Strict rotations are inverted exactly: keep only the rotated input.
    // Quasi blocks need the input, which the tape holds as input 0.
    let saved_z = strict.then_some(z);
    let spare = a.spare.clone();
    let pshape = a.params.shape();
    Ok(g.record(
        &inputs,
        value,
        Box::new(move |args| {
            let (x, gy, w) = (args.inputs[0], args.grad.data(), args.inputs[w_at].data());
            let rot = rot.as_rotation();
            let needs_rot = args.needs[0] || args.needs[1] || scale_at.is_some_and(|i| args.needs[i]);
            let mut out: Vec<Option<Tensor>> = vec![None; args.inputs.len()];
            let recomputed;
            let z: &[f32] = match &saved_z {
                Some(z) => &z.buf,
                None if args.needs[w_at] => {
                    recomputed = rotate_rows(&rot, x.data(), &spare)?;
                    &recomputed.buf
                }
                None => &[],
            };
            let want = [needs_rot, args.needs[w_at], b_at.is_some_and(|i| args.needs[i])];
            let [dz, dw, db] = affine_backward(gy, z, w, (n, d, m), want);
            out[w_at] = dw.map(|v| Tensor::new(vec![m, d], v)).transpose()?;
            if let (Some(bi), Some(db)) = (b_at, db) {
                out[bi] = Some(Tensor::new(vec![m], db)?);
            }
            if let Some(mut dz) = dz {
                let saved = match &saved_z {
                    Some(z) => Saved::Output(&z.buf[..]),
                    None => Saved::Input(x.data()),
                };
                let (dblocks, dscale) = vjp_rows_par(&rot, saved, &mut dz, d, scale_at.is_some())?;
                let mut dp = vec![0.0f32; pshape.iter().product()];
                if strict {
                    angle_param_grads(ANGLE_MAP, args.inputs[1].data(), &dblocks, &mut dp)?;
                } else {
                    quasi_param_grads(&dblocks, &mut dp)?;
                }
                out[0] = args.needs[0].then(|| Tensor::new(vec![n, d], dz)).transpose()?;
                out[1] = args.needs[1].then(|| Tensor::new(pshape.clone(), dp)).transpose()?;
                if let (Some(si), Some(ds)) = (scale_at, dscale) {
                    out[si] = args.needs[si].then(|| Tensor::new(vec![d], ds)).transpose()?;
                }
            }
            Ok(out)
        }),
    ))
}

impl Module for GivensLinear {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        match self.live() {
            Some(a) => adapted_forward(g, x, &self.base, a),
            None => self.base.forward(g, x),
        }
    }

    fn params(&self) -> Vec<Param> {
        let mut ps = self.base.params();
        ps.extend(self.adapters.iter().flat_map(|(_, a)| a.all_params()));
        ps
    }
}

impl Adapter for GivensLinear {
    fn base(&self) -> &Linear {
        &self.base
    }

    /// The active adapter's parameters (empty when none is active).
    fn adapter_params(&self) -> Vec<Param> {
        self.active().map(GivensAdapter::all_params).unwrap_or_default()
    }

    /// Merges the active adapter.
    fn merge(&mut self) -> Result<()> {
        let name = self.active_name().ok_or_else(|| Error::invalid("merge", "no active adapter"))?.to_string();
        self.merge_adapter(&name)
    }

    /// Unmerges the most recently merged adapter.
    fn unmerge(&mut self) -> Result<()> {
        let i = *self.merged.last().ok_or_else(|| Error::invalid("unmerge", "no adapter is merged"))?;
        let name = self.adapters[i].0.clone();
        self.unmerge_adapter(&name)
    }

    /// Whether the active adapter is merged.
    fn is_merged(&self) -> bool {
        self.active.is_some_and(|i| self.merged.contains(&i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn layer(mode: GivensMode, layout: Layout, seed: u64) -> (GivensLinear, Tensor) {
        layer_rows(mode, layout, seed, 2)
    }

    /// A 7 -> 5 layer with random adapter parameters and an `n x 7` batch
    /// (from `n = 3` on, GOFT runs through the merged weight).
    fn layer_rows(mode: GivensMode, layout: Layout, seed: u64, n: usize) -> (GivensLinear, Tensor) {
        let mut rng = Rng::new(seed);
        let l =
            GivensLinear::with_default(Linear::new("fc", 7, 5, true, &mut rng), GivensConfig { mode, layout }).unwrap();
        let a = l.active().unwrap();
        let p = a.params();
        p.set(Tensor::from_fn(&p.shape(), |i| {
            let r = rng.uniform(-0.8, 0.8);
            if mode.is_strict() { r } else { r * 0.3 + if i % 4 == 0 || i % 4 == 3 { 1.0 } else { 0.0 } }
        }))
        .unwrap();
        if let Some(s) = a.scaler() {
            s.set(Tensor::from_fn(&[7], |_| rng.uniform(0.5, 1.5))).unwrap();
        }
        let x = Tensor::from_fn(&[n, 7], |_| rng.uniform(-1.0, 1.0));
        (l, x)
    }

    const MODES: [GivensMode; 3] = [GivensMode::Goft, GivensMode::GoftScaled, GivensMode::Qgoft { lambda: 0.1 }];

    /// A step whose rotated-input buffer is a reused one (holding the last
    /// step's values) gives bitwise what a layer with no spare buffer gives;
    /// the spare buffers stay bounded.
    #[test]
    fn reused_buffers_change_nothing() {
        let step = |l: &GivensLinear, x: &Tensor, gy: &Tensor| -> (Vec<f32>, Vec<f32>, Vec<f32>) {
            let mut g = Graph::new();
            let xv = g.leaf(x.clone());
            let y = l.forward(&mut g, xv).unwrap();
            let out = g.value(y).data().to_vec();
            let grads = g.backward_from(y, gy.clone()).unwrap();
            let gp = grads.get(l.active().unwrap().params()).unwrap().data().to_vec();
            (out, grads.wrt(xv).unwrap().data().to_vec(), gp)
        };
        for mode in MODES {
            let (l, x) = layer(mode, Layout::Tree, 5);
            let x2 = Tensor::from_fn(&[2, 7], |i| (i as f32 * 0.37).sin());
            let gy = Tensor::from_fn(&[2, 5], |i| ((i * 3 % 7) as f32 - 3.0) / 3.0);
            let _ = step(&l, &x, &gy);
            let spare = &l.active().unwrap().spare;
            assert_eq!(spare.0.lock().unwrap().len(), 1, "{mode:?}: the buffer came back");
            let reused = step(&l, &x2, &gy);
            // A fresh adapter with the same parameters: no spare buffer.
            let mut rng = Rng::new(5);
            let fresh = GivensLinear::with_default(
                Linear::new("fc", 7, 5, true, &mut rng),
                GivensConfig { mode, layout: Layout::Tree },
            )
            .unwrap();
            for (p, q) in fresh.active().unwrap().all_params().iter().zip(l.active().unwrap().all_params()) {
                p.set((*q.value()).clone()).unwrap();
            }
            assert_eq!(fresh.active().unwrap().spare.0.lock().unwrap().len(), 0);
            assert_eq!(step(&fresh, &x2, &gy), reused, "{mode:?}");
            // Tapes alive at once hold a buffer each (strict modes keep the
            // rotated input for the backward); at most MAX_SPARE come back.
            let tapes: Vec<Graph> = (0..MAX_SPARE + 2)
                .map(|_| {
                    let mut g = Graph::new();
                    let xv = g.leaf(x.clone());
                    l.forward(&mut g, xv).unwrap();
                    g
                })
                .collect();
            drop(tapes);
            let kept = if mode.is_strict() { MAX_SPARE } else { 1 };
            assert_eq!(spare.0.lock().unwrap().len(), kept, "{mode:?}");
        }
    }

    #[test]
    fn a_kept_buffer_of_the_asked_length_is_taken_first() {
        let spare = Spare::default();
        let (short, long) = (spare.take(3), spare.take(5));
        let (ps, pl) = (short.buf.as_ptr(), long.buf.as_ptr());
        drop(short);
        drop(long);
        // The short one is not on top, yet it is the one handed out for 3.
        let again = spare.take(3);
        assert_eq!((again.buf.len(), again.buf.as_ptr()), (3, ps));
        let other = spare.take(5);
        assert_eq!((other.buf.len(), other.buf.as_ptr()), (5, pl));
        // No kept buffer of the length: any kept one, resized.
        drop(other);
        assert_eq!(spare.take(4).buf.len(), 4);
    }

    #[test]
    fn merged_weights_and_rotated_batches_keep_buffers_of_their_own_length() {
        // Three rows and five outputs: the layer rotates the weight's rows.
        let (l, x) = layer_rows(GivensMode::Goft, Layout::Tree, 9, 3);
        assert!(merges_weight(GivensMode::Goft, 3, 5));
        l.base().weight().set_trainable(true);
        let gy = Tensor::from_fn(&[3, 5], |i| ((i * 5 % 11) as f32 - 5.0) / 5.0);
        let step = |l: &GivensLinear| -> Vec<Vec<f32>> {
            let mut g = Graph::new();
            let xv = g.leaf(x.clone());
            let y = l.forward(&mut g, xv).unwrap();
            let out = g.value(y).data().to_vec();
            let grads = g.backward_from(y, gy.clone()).unwrap();
            // The weight is trainable here, so the backward also rotates the batch.
            let gw = grads.get(l.base().weight()).unwrap().data().to_vec();
            let gp = grads.get(l.active().unwrap().params()).unwrap().data().to_vec();
            vec![out, grads.wrt(xv).unwrap().data().to_vec(), gw, gp]
        };
        let first = step(&l);
        let spare = &l.active().unwrap().spare;
        let mut lens: Vec<usize> = spare.0.lock().unwrap().iter().map(Vec::len).collect();
        lens.sort_unstable();
        assert_eq!(lens, vec![3 * 7, 5 * 7], "both buffers came back");
        let held = || {
            let mut v: Vec<(usize, usize)> =
                spare.0.lock().unwrap().iter().map(|b| (b.len(), b.as_ptr() as usize)).collect();
            v.sort_unstable();
            v
        };
        let before = held();
        // Reused buffers (contents of the other step) give the same values
        // bitwise, and each is taken for its own length (not reallocated).
        assert_eq!(step(&l), first);
        assert_eq!(step(&l), first);
        assert_eq!(held(), before);
    }

    /// Central differences in f64 would need an f64 forward; in f32 with a
    /// moderate step the check is loose but catches wrong formulas. Batches
    /// of 2 and 12 rows: GOFT rotates the batch for the first and merges the
    /// weight for the second.
    #[test]
    fn gradients_match_finite_differences() {
        for (layout, n) in [(Layout::Tree, 2), (Layout::Chain, 2), (Layout::Tree, 12), (Layout::Chain, 12)] {
            for mode in MODES {
                let (l, x) = layer_rows(mode, layout, 11, n);
                let gy = Tensor::from_fn(&[n, 5], |i| ((i * 7 % 11) as f32 - 5.0) / 5.0);
                let loss_of = |l: &GivensLinear, x: &Tensor| -> f64 {
                    let mut g = Graph::new();
                    let xv = g.constant(x.clone());
                    let y = l.forward(&mut g, xv).unwrap();
                    g.value(y).data().iter().zip(gy.data()).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
                };
                let mut g = Graph::new();
                let xv = g.leaf(x.clone());
                let y = l.forward(&mut g, xv).unwrap();
                let grads = g.backward_from(y, gy.clone()).unwrap();
                let h = 1e-2f32;
                let check = |what: &str, analytic: &[f32], set: &dyn Fn(usize, f32) -> f64| {
                    for (i, &an) in analytic.iter().enumerate() {
                        let fd = (set(i, h) - set(i, -h)) / (2.0 * f64::from(h));
                        assert!(
                            (fd - f64::from(an)).abs() <= 2e-3 * (1.0 + fd.abs()),
                            "{mode:?} {layout:?} {what}[{i}]: fd {fd} analytic {an}"
                        );
                    }
                };
                let gx = grads.wrt(xv).unwrap().data().to_vec();
                check("x", &gx, &|i, dh| {
                    let mut xp = x.clone();
                    xp.data_mut()[i] += dh;
                    loss_of(&l, &xp)
                });
                let a = l.active().unwrap();
                for p in a.all_params() {
                    let gp = grads.get(&p).unwrap().data().to_vec();
                    let v0 = (*p.value()).clone();
                    check(p.name(), &gp, &|i, dh| {
                        let mut v = v0.clone();
                        v.data_mut()[i] += dh;
                        p.set(v).unwrap();
                        let r = loss_of(&l, &x);
                        p.set(v0.clone()).unwrap();
                        r
                    });
                }
            }
        }
    }

    #[test]
    fn merge_then_unmerge_restores_the_weight_and_keeps_outputs() {
        for mode in MODES {
            let (mut l, x) = layer(mode, Layout::Tree, 12);
            let w0 = l.base().weight().value();
            let mut g = Graph::new();
            let xv = g.constant(x);
            let y = l.forward(&mut g, xv).unwrap();
            let adapted = g.value(y).clone();
            l.merge().unwrap();
            assert!(l.is_merged());
            let y = l.forward(&mut g, xv).unwrap();
            let diff = adapted.zip_map(g.value(y), |a, b| a - b).unwrap();
            assert!(diff.sum_squares().sqrt() <= 1e-5 * adapted.sum_squares().sqrt(), "{mode:?}");
            l.unmerge().unwrap();
            let w1 = l.base().weight().value();
            let diff = w0.zip_map(&w1, |a, b| a - b).unwrap();
            assert!(diff.sum_squares().sqrt() <= 1e-6 * w0.sum_squares().sqrt(), "{mode:?}");
        }
    }

    #[test]
    fn merges_split_over_threads_are_one_call_bitwise_and_name_the_global_index() {
        // Wide enough for the rows to be split over every GEMM thread.
        let (d, m) = (128, 1024);
        for mode in MODES {
            let mut rng = Rng::new(21);
            let mut l =
                GivensLinear::with_default(Linear::new("fc", d, m, true, &mut rng), GivensConfig::tree(mode)).unwrap();
            let p = l.active().unwrap().params().clone();
            p.update(|t| t.data_mut().iter_mut().for_each(|v| *v += rng.uniform(-0.3, 0.3)));
            let rot = l.active().unwrap().rotation().unwrap();
            let w0 = l.base().weight().value();
            let mut want = w0.data().to_vec();
            rot.as_rotation().merge(&mut want).unwrap();
            l.merge().unwrap();
            assert_eq!(l.base().weight().value().data(), &want[..], "{mode:?}");
            let mut back = want.clone();
            rot.as_rotation().unmerge(&mut back).unwrap();
            l.unmerge().unwrap();
            assert_eq!(l.base().weight().value().data(), &back[..], "{mode:?}");

            // A non-finite entry in the last rows: reported at its index in
            // the whole weight, and the weight is left as it was.
            let at = (m - 3) * d + 5;
            let mut bad = (*w0).clone();
            bad.data_mut()[at] = f32::NAN;
            l.base().weight().set(bad.clone()).unwrap();
            let err = l.merge().unwrap_err().to_string();
            assert!(err.contains(&format!("at index {at}")), "{mode:?}: {err}");
            assert!(!l.is_merged());
            assert_eq!(l.base().weight().value().data().len(), bad.data().len());
            assert!(l.base().weight().value().data()[at].is_nan());
            assert_eq!(l.base().weight().value().data()[..at], bad.data()[..at]);
        }
    }

    #[test]
    fn non_finite_batches_and_gradients_are_named_by_their_index_in_the_batch() {
        // Large enough for the rows to be split over every GEMM thread.
        let (n, d, m) = (1024, 128, 16);
        for mode in MODES {
            let mut rng = Rng::new(5);
            let l =
                GivensLinear::with_default(Linear::new("fc", d, m, true, &mut rng), GivensConfig::tree(mode)).unwrap();
            let x = Tensor::from_fn(&[n, d], |_| rng.uniform(-1.0, 1.0));
            let at = (n - 2) * d + 7;
            let mut bad = x.clone();
            bad.data_mut()[at] = f32::INFINITY;
            let mut g = Graph::new();
            let xv = g.leaf(bad);
            let err = l.forward(&mut g, xv).unwrap_err().to_string();
            assert!(err.contains(&format!("at index {at}")), "{mode:?}: {err}");

            let mut g = Graph::new();
            let xv = g.leaf(x);
            let y = l.forward(&mut g, xv).unwrap();
            let row = n - 3;
            let gy = Tensor::from_fn(&[n, m], |i| if i == row * m + 1 { f32::NAN } else { 0.5 });
            let err = g.backward_from(y, gy).unwrap_err().to_string();
            let index: usize = err.rsplit("at index ").next().and_then(|s| s.trim().parse().ok()).unwrap_or(usize::MAX);
            assert_eq!(index / d, row, "{mode:?}: {err}");
        }
    }

    #[test]
    fn several_adapters_merge_and_unmerge_in_reverse_order() {
        let mut rng = Rng::new(13);
        let mut l = GivensLinear::new(Linear::new("fc", 6, 4, true, &mut rng));
        let w0 = l.base().weight().value();
        for (name, mode) in [("a", MODES[0]), ("b", MODES[1]), ("c", MODES[2])] {
            let a = l.add_adapter(name, GivensConfig::tree(mode)).unwrap();
            let p = a.params().clone();
            p.update(|t| t.data_mut().iter_mut().for_each(|v| *v += rng.uniform(-0.3, 0.3)));
        }
        let x = Tensor::from_fn(&[3, 6], |_| rng.uniform(-1.0, 1.0));
        // Reference: x R_a R_b R_c W^T + b, composed by hand.
        let mut z = x.data().to_vec();
        for name in ["c", "b", "a"] {
            l.adapter(name).unwrap().rotation().unwrap().as_rotation().apply_rows(Op::Transpose, &mut z).unwrap();
        }
        let want = affine(&z, 3, 6, &w0, Some(&l.base().bias().unwrap().value()));
        l.merge_adapter("a").unwrap();
        l.merge_adapter("b").unwrap();
        l.set_active("c").unwrap();
        let mut g = Graph::new();
        let xv = g.constant(x.clone());
        let y = l.forward(&mut g, xv).unwrap();
        let got = g.value(y).data().to_vec();
        let err: f32 = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-5, "{err}");
        l.set_enabled(false);
        let y = l.forward(&mut g, xv).unwrap();
        assert_ne!(g.value(y).data(), &got[..]);
        l.set_enabled(true);
        l.merge_all().unwrap();
        assert_eq!(l.merged_names(), ["a", "b", "c"]);
        assert!(l.unmerge_adapter("a").is_err());
        assert!(l.remove_adapter("c").is_err());
        l.unmerge_all().unwrap();
        let w1 = l.base().weight().value();
        let diff = w0.zip_map(&w1, |a, b| a - b).unwrap();
        assert!(diff.sum_squares().sqrt() <= 1e-6 * w0.sum_squares().sqrt());
        l.remove_adapter("b").unwrap();
        assert_eq!(l.adapter_names(), ["a", "c"]);
        assert_eq!(l.active_name(), Some("c"));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (l, _) = layer(MODES[0], Layout::Tree, 14);
        let mut g = Graph::new();
        let x = g.constant(Tensor::zeros(&[2, 6]));
        assert!(matches!(l.forward(&mut g, x), Err(Error::Shape { .. })));
        let p = l.active().unwrap().params();
        p.set(Tensor::from_fn(&[6], |i| if i == 2 { f32::NAN } else { 0.0 })).unwrap();
        let x = g.constant(Tensor::zeros(&[2, 7]));
        assert!(matches!(l.forward(&mut g, x), Err(Error::Math(_))));
    }
}
