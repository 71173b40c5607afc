//! A sequence of layers with an activation between them.

use super::{Activation, Module};
use crate::autograd::{Graph, Var};
use crate::error::Result;
use crate::param::Param;

/// `layers[L-1](f(... f(layers[0](x))))` with the activation `f` between
/// consecutive layers (none after the last). The layers can be any
/// [`Module`]: plain [`super::Linear`] layers, adapters, or boxed trait objects.
///
/// ```
/// use qgoft_nn::layers::{Activation, GivensConfig, GivensLinear, Linear, Module, Stack};
/// use qgoft_nn::{Graph, Rng, Tensor};
/// let mut rng = Rng::new(0);
/// let layers = vec![
///     GivensLinear::with_default(Linear::new("mlp.0", 8, 16, true, &mut rng), GivensConfig::default())?,
///     GivensLinear::with_default(Linear::new("mlp.1", 16, 3, true, &mut rng), GivensConfig::default())?,
/// ];
/// let model = Stack::new(layers, Activation::Relu);
/// let mut g = Graph::new();
/// let x = g.constant(Tensor::zeros(&[2, 8]));
/// let y = model.forward(&mut g, x)?;
/// assert_eq!(g.value(y).shape(), &[2, 3]);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Stack<L> {
    /// The layers, applied in order.
    pub layers: Vec<L>,
    /// The activation between layers.
    pub activation: Activation,
}

impl<L: Module> Stack<L> {
    /// A stack of `layers`.
    ///
    /// ```
    /// use qgoft_nn::layers::{Activation, Linear, Stack};
    /// let s = Stack::new(vec![Linear::new("fc", 2, 2, true, &mut qgoft_nn::Rng::new(0))], Activation::Tanh);
    /// assert_eq!(s.layers.len(), 1);
    /// ```
    pub fn new(layers: Vec<L>, activation: Activation) -> Self {
        Stack { layers, activation }
    }
}

impl<L: Module> Module for Stack<L> {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(g, h)?;
            if i + 1 < self.layers.len() {
                h = self.activation.apply(g, h)?;
            }
        }
        Ok(h)
    }

    fn params(&self) -> Vec<Param> {
        self.layers.iter().flat_map(Module::params).collect()
    }
}
