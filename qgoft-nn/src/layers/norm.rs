//! The layer-norm layer (see [`Graph::layer_norm`] for the formula).

use super::Module;
use crate::autograd::{Graph, Var};
use crate::error::Result;
use crate::param::{Param, ParamKind};
use crate::tensor::Tensor;

/// Layer normalisation over the last axis with `<prefix>.weight` (gamma,
/// initialised to 1) and `<prefix>.bias` (beta, initialised to 0), both of
/// kind [`ParamKind::Norm`].
///
/// ```
/// use qgoft_nn::{layers::{LayerNorm, Module}, Graph, Tensor};
/// let ln = LayerNorm::new("ln", 4, 1e-5);
/// let mut g = Graph::new();
/// let x = g.constant(Tensor::from_fn(&[2, 4], |i| i as f32));
/// let y = ln.forward(&mut g, x)?;
/// let row: f32 = g.value(y).data()[..4].iter().sum();
/// assert!(row.abs() < 1e-5);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LayerNorm {
    gamma: Param,
    beta: Param,
    eps: f32,
}

impl LayerNorm {
    /// A new layer norm over `width` features.
    ///
    /// ```
    /// let ln = qgoft_nn::layers::LayerNorm::new("ln", 3, 1e-5);
    /// assert_eq!(ln.gamma().value().data(), &[1.0; 3]);
    /// ```
    pub fn new(prefix: &str, width: usize, eps: f32) -> Self {
        LayerNorm {
            gamma: Param::new(format!("{prefix}.weight"), ParamKind::Norm, Tensor::full(&[width], 1.0)),
            beta: Param::new(format!("{prefix}.bias"), ParamKind::Norm, Tensor::zeros(&[width])),
            eps,
        }
    }

    /// The scale `gamma`.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::layers::LayerNorm::new("ln", 3, 1e-5).gamma().name(), "ln.weight");
    /// ```
    pub fn gamma(&self) -> &Param {
        &self.gamma
    }

    /// The shift `beta`.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::layers::LayerNorm::new("ln", 3, 1e-5).beta().name(), "ln.bias");
    /// ```
    pub fn beta(&self) -> &Param {
        &self.beta
    }
}

impl Module for LayerNorm {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let gamma = g.param(&self.gamma);
        let beta = g.param(&self.beta);
        g.layer_norm(x, gamma, beta, self.eps)
    }

    fn params(&self) -> Vec<Param> {
        vec![self.gamma.clone(), self.beta.clone()]
    }
}
