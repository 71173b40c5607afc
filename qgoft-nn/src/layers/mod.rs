//! Layers: [`Linear`], [`Mlp`], [`LayerNorm`], [`Stack`], the Givens
//! adapter [`GivensLinear`] (GOFT, GOFT with scaling, qGOFT) and the two
//! baseline adapters [`LoraLinear`] and [`BlockOft`].
//!
//! A layer implements [`Module`]: it records its forward pass on a
//! [`Graph`] and lists its parameters (named `<prefix>.<name>`, the keys used
//! in safetensors files). An adapter wrapping a frozen [`Linear`] also
//! implements [`Adapter`] (merge into and unmerge from the base weight).
//!
//! The Givens adapter ([`givens`]) wraps a frozen `Linear`, owns its
//! parameters with [`crate::ParamKind::Adapter`] (so the default AdamW
//! excludes them from weight decay), records its forward with
//! [`Graph::record`] using `qgoft-math` kernels and returns the analytic
//! input and parameter gradients from its backward closure, and implements
//! [`Adapter`].

pub mod givens;
mod linear;
mod lora;
mod mlp;
mod norm;
mod oft;
mod stack;

pub use givens::{GivensAdapter, GivensConfig, GivensLinear, GivensMode};
pub use linear::Linear;
pub use lora::LoraLinear;
pub use mlp::{Activation, Mlp};
pub use norm::LayerNorm;
pub use oft::{BlockOft, cayley_blocks};
pub use stack::Stack;

use crate::autograd::{Graph, Var};
use crate::error::Result;
use crate::param::Param;

/// A layer: a forward pass recorded on a graph, and its parameters.
pub trait Module {
    /// Records the forward pass of `x` and returns its output.
    ///
    /// # Errors
    /// Shape errors naming the layer's expected input width.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Linear, Module}, Graph, Rng, Tensor};
    /// let layer = Linear::new("fc", 3, 2, true, &mut Rng::new(0));
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::zeros(&[1, 3]));
    /// let y = layer.forward(&mut g, x)?;
    /// assert_eq!(g.value(y).shape(), &[1, 2]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var>;

    /// Every parameter, trainable or frozen, in a fixed order.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Linear, Module}, Rng};
    /// let layer = Linear::new("fc", 3, 2, true, &mut Rng::new(0));
    /// let names: Vec<String> = layer.params().iter().map(|p| p.name().to_string()).collect();
    /// assert_eq!(names, ["fc.weight", "fc.bias"]);
    /// ```
    fn params(&self) -> Vec<Param>;
}

/// An adapter on a frozen linear layer that can be merged into its weight.
pub trait Adapter: Module {
    /// The wrapped layer.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Adapter, Linear, LoraLinear}, Rng};
    /// let mut rng = Rng::new(0);
    /// let lora = LoraLinear::new(Linear::new("fc", 4, 4, true, &mut rng), 2, 4.0, &mut rng)?;
    /// assert_eq!(lora.base().in_features(), 4);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn base(&self) -> &Linear;

    /// The adapter's own parameters.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Adapter, Linear, LoraLinear}, Rng};
    /// let mut rng = Rng::new(0);
    /// let lora = LoraLinear::new(Linear::new("fc", 4, 4, true, &mut rng), 2, 4.0, &mut rng)?;
    /// assert_eq!(lora.adapter_params().len(), 2);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn adapter_params(&self) -> Vec<Param>;

    /// Folds the adapter into the base weight; the forward then uses the base alone.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] if already merged.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Adapter, Linear, LoraLinear}, Rng};
    /// let mut rng = Rng::new(0);
    /// let mut lora = LoraLinear::new(Linear::new("fc", 4, 4, true, &mut rng), 2, 4.0, &mut rng)?;
    /// lora.merge()?;
    /// assert!(lora.is_merged());
    /// assert!(lora.merge().is_err());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn merge(&mut self) -> Result<()>;

    /// Removes a merged adapter from the base weight again.
    ///
    /// # Errors
    /// [`crate::Error::InvalidArgument`] if not merged.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Adapter, Linear, LoraLinear}, Rng};
    /// let mut rng = Rng::new(0);
    /// let mut lora = LoraLinear::new(Linear::new("fc", 4, 4, true, &mut rng), 2, 4.0, &mut rng)?;
    /// assert!(lora.unmerge().is_err());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn unmerge(&mut self) -> Result<()>;

    /// Whether the adapter is currently merged.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Adapter, Linear, LoraLinear}, Rng};
    /// let mut rng = Rng::new(0);
    /// let lora = LoraLinear::new(Linear::new("fc", 4, 4, true, &mut rng), 2, 4.0, &mut rng)?;
    /// assert!(!lora.is_merged());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn is_merged(&self) -> bool;
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        (**self).forward(g, x)
    }

    fn params(&self) -> Vec<Param> {
        (**self).params()
    }
}
