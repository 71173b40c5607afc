//! A multi-layer perceptron built from a list of widths.

use super::{Linear, Module};
use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::param::Param;
use crate::rng::Rng;

/// The nonlinearity between the layers of an [`Mlp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// GELU, tanh approximation.
    Gelu,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// Records the activation on `g`.
    ///
    /// # Errors
    /// None at present; `Result` for uniformity.
    ///
    /// ```
    /// use qgoft_nn::{layers::Activation, Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::scalar(-1.0));
    /// let y = Activation::Relu.apply(&mut g, x)?;
    /// assert_eq!(g.value(y).item(), 0.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn apply(self, g: &mut Graph, x: Var) -> Result<Var> {
        match self {
            Activation::Relu => g.relu(x),
            Activation::Gelu => g.gelu(x),
            Activation::Tanh => g.tanh(x),
        }
    }
}

/// `sizes = [d0, d1, .., dL]`: `L` [`Linear`] layers `d_{i} -> d_{i+1}` named
/// `<prefix>.<i>`, with the activation (and dropout `p`, in training graphs)
/// after every layer but the last.
///
/// ```
/// use qgoft_nn::{layers::{Activation, Mlp, Module}, Graph, Rng, Tensor};
/// let mlp = Mlp::new("mlp", &[64, 32, 10], Activation::Relu, 0.0, &mut Rng::new(0))?;
/// assert_eq!(mlp.layers().len(), 2);
/// let mut g = Graph::new();
/// let x = g.constant(Tensor::zeros(&[5, 64]));
/// let y = mlp.forward(&mut g, x)?;
/// assert_eq!(g.value(y).shape(), &[5, 10]);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    activation: Activation,
    dropout: f32,
}

impl Mlp {
    /// Builds the layers, initialised from `rng`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if fewer than two sizes are given, a size
    /// is zero, or `dropout` is outside `[0, 1)`.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Activation, Mlp}, Rng};
    /// assert!(Mlp::new("m", &[4], Activation::Relu, 0.0, &mut Rng::new(0)).is_err());
    /// ```
    pub fn new(prefix: &str, sizes: &[usize], activation: Activation, dropout: f32, rng: &mut Rng) -> Result<Self> {
        if sizes.len() < 2 || sizes.contains(&0) {
            return Err(Error::invalid("MLP sizes (need at least two, all non-zero)", format!("{sizes:?}")));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::invalid("MLP dropout probability", dropout));
        }
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| Linear::new(&format!("{prefix}.{i}"), w[0], w[1], true, rng))
            .collect();
        Ok(Mlp { layers, activation, dropout })
    }

    /// The linear layers.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Activation, Mlp}, Rng};
    /// let mlp = Mlp::new("m", &[4, 3], Activation::Tanh, 0.0, &mut Rng::new(0))?;
    /// assert_eq!(mlp.layers()[0].weight().name(), "m.0.weight");
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }
}

impl Module for Mlp {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let mut h = x;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(g, h)?;
            if i < last {
                h = self.activation.apply(g, h)?;
                h = g.dropout(h, self.dropout)?;
            }
        }
        Ok(h)
    }

    fn params(&self) -> Vec<Param> {
        self.layers.iter().flat_map(Module::params).collect()
    }
}
