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

/// Model-wide adapter management: each method applies to every layer (or
/// every layer holding the named adapter), so several named adapters live
/// on one model side by side.
///
/// ```
/// use qgoft_nn::layers::{Activation, GivensConfig, GivensLinear, GivensMode, Linear, Stack};
/// let mut rng = qgoft_nn::Rng::new(0);
/// let layers = vec![
///     GivensLinear::new(Linear::new("mlp.0", 8, 8, true, &mut rng)),
///     GivensLinear::new(Linear::new("mlp.1", 8, 3, true, &mut rng)),
/// ];
/// let mut model = Stack::new(layers, Activation::Relu);
/// model.add_adapter("first", GivensConfig::default())?;
/// model.add_adapter("second", GivensConfig::tree(GivensMode::Qgoft { lambda: 1e-3 }))?;
/// model.set_active("first")?;
/// model.merge_adapter("first")?;
/// model.set_active("second")?; // trains on top of the merged first adapter
/// model.unmerge_all()?;
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
impl Stack<super::GivensLinear> {
    /// Adds an adapter to every layer (active on each).
    ///
    /// # Errors
    /// As [`super::GivensLinear::add_adapter`]; layers before the failing one keep it.
    pub fn add_adapter(&mut self, name: &str, config: super::GivensConfig) -> Result<()> {
        for l in &mut self.layers {
            l.add_adapter(name, config)?;
        }
        Ok(())
    }

    /// Makes `name` active on every layer that has it.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] if no layer has it.
    pub fn set_active(&mut self, name: &str) -> Result<()> {
        let mut found = false;
        for l in self.layers.iter_mut().filter(|l| l.adapter(name).is_some()) {
            l.set_active(name)?;
            found = true;
        }
        if found {
            Ok(())
        } else {
            Err(crate::Error::InvalidArgument {
                what: "adapter name".into(),
                value: format!("{name:?} is on no layer"),
            })
        }
    }

    /// Enables or disables the live adapters on every layer.
    pub fn set_enabled(&mut self, enabled: bool) {
        self.layers.iter_mut().for_each(|l| l.set_enabled(enabled));
    }

    /// Merges `name` on every layer that has it.
    ///
    /// # Errors
    /// As [`super::GivensLinear::merge_adapter`].
    pub fn merge_adapter(&mut self, name: &str) -> Result<()> {
        for l in self.layers.iter_mut().filter(|l| l.adapter(name).is_some()) {
            l.merge_adapter(name)?;
        }
        Ok(())
    }

    /// Unmerges `name` on every layer that has it merged (it must be the most recently merged there).
    ///
    /// # Errors
    /// As [`super::GivensLinear::unmerge_adapter`].
    pub fn unmerge_adapter(&mut self, name: &str) -> Result<()> {
        for l in self.layers.iter_mut().filter(|l| l.merged_names().contains(&name)) {
            l.unmerge_adapter(name)?;
        }
        Ok(())
    }

    /// Merges every adapter on every layer, in insertion order.
    ///
    /// # Errors
    /// As [`super::GivensLinear::merge_all`].
    pub fn merge_all(&mut self) -> Result<()> {
        self.layers.iter_mut().try_for_each(super::GivensLinear::merge_all)
    }

    /// Unmerges everything, most recent first, on every layer.
    ///
    /// # Errors
    /// As [`super::GivensLinear::unmerge_all`].
    pub fn unmerge_all(&mut self) -> Result<()> {
        self.layers.iter_mut().try_for_each(super::GivensLinear::unmerge_all)
    }

    /// The live adapters' trainable parameters.
    pub fn adapter_params(&self) -> Vec<Param> {
        use super::Adapter;
        self.layers.iter().flat_map(|l| l.adapter_params()).collect()
    }

    /// The sum of the live qGOFT adapters' penalties as one loss term
    /// (`None` without any), for [`crate::train::train_classifier_with`].
    ///
    /// # Errors
    /// As [`super::GivensLinear::penalty`].
    pub fn penalty(&self, g: &mut Graph) -> Result<Option<Var>> {
        let mut total = None;
        for l in &self.layers {
            if let Some(p) = l.penalty(g)? {
                total = Some(match total {
                    Some(t) => g.add(t, p)?,
                    None => p,
                });
            }
        }
        Ok(total)
    }
}
