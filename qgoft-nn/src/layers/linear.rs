//! The affine layer `y = x W^T + b`.

use super::Module;
use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::param::{Param, ParamKind};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// `y = x W^T + b` for a batch `x` (n x in), weight `W` (out x in, as in
/// PyTorch) and optional bias `b` (out).
///
/// Initialisation follows PyTorch's `nn.Linear`: `kaiming_uniform_(a =
/// sqrt(5))`, i.e. `W ~ U(-1/sqrt(in), 1/sqrt(in))`, and
/// `b ~ U(-1/sqrt(in), 1/sqrt(in))`, drawn from the given generator.
///
/// ```
/// use qgoft_nn::{layers::{Linear, Module}, Graph, Rng, Tensor};
/// let fc = Linear::new("fc", 2, 3, false, &mut Rng::new(1));
/// let mut g = Graph::new();
/// let x = g.constant(Tensor::new(vec![1, 2], vec![1.0, 0.0])?);
/// let y = fc.forward(&mut g, x)?;
/// // the output is the first column of W
/// let w = fc.weight().value();
/// assert_eq!(g.value(y).data(), &[w.data()[0], w.data()[2], w.data()[4]]);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Param,
    bias: Option<Param>,
}

impl Linear {
    /// A new layer with parameters `<prefix>.weight` and `<prefix>.bias`.
    ///
    /// ```
    /// let fc = qgoft_nn::layers::Linear::new("fc", 8, 4, true, &mut qgoft_nn::Rng::new(0));
    /// assert_eq!(fc.weight().shape(), vec![4, 8]);
    /// assert!(fc.weight().value().max_abs() <= 1.0 / 8f32.sqrt());
    /// ```
    pub fn new(prefix: &str, in_features: usize, out_features: usize, bias: bool, rng: &mut Rng) -> Self {
        let bound = if in_features > 0 { 1.0 / (in_features as f32).sqrt() } else { 0.0 };
        let w = Tensor::from_fn(&[out_features, in_features], |_| rng.uniform(-bound, bound));
        let weight = Param::new(format!("{prefix}.weight"), ParamKind::Weight, w);
        let bias = bias.then(|| {
            let b = Tensor::from_fn(&[out_features], |_| rng.uniform(-bound, bound));
            Param::new(format!("{prefix}.bias"), ParamKind::Bias, b)
        });
        Linear { weight, bias }
    }

    /// A layer from existing parameters.
    ///
    /// # Errors
    /// [`Error::Shape`] if the weight is not a matrix or the bias does not
    /// have `out` elements.
    ///
    /// ```
    /// use qgoft_nn::{layers::Linear, Param, ParamKind, Tensor};
    /// let w = Param::new("w", ParamKind::Weight, Tensor::zeros(&[3, 2]));
    /// let b = Param::new("b", ParamKind::Bias, Tensor::zeros(&[2]));
    /// assert!(Linear::from_params(w, Some(b)).is_err());
    /// ```
    pub fn from_params(weight: Param, bias: Option<Param>) -> Result<Self> {
        let (out, _) = weight.value().dims2()?;
        if let Some(b) = &bias
            && b.shape() != [out]
        {
            return Err(Error::shape(format!("bias {}", b.name()), &[out], &b.shape()));
        }
        Ok(Linear { weight, bias })
    }

    /// The weight (out x in).
    ///
    /// ```
    /// let fc = qgoft_nn::layers::Linear::new("fc", 2, 3, true, &mut qgoft_nn::Rng::new(0));
    /// assert_eq!(fc.weight().name(), "fc.weight");
    /// ```
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias, if any.
    ///
    /// ```
    /// let fc = qgoft_nn::layers::Linear::new("fc", 2, 3, false, &mut qgoft_nn::Rng::new(0));
    /// assert!(fc.bias().is_none());
    /// ```
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    /// Input width.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::layers::Linear::new("fc", 2, 3, true, &mut qgoft_nn::Rng::new(0)).in_features(), 2);
    /// ```
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Output width.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::layers::Linear::new("fc", 2, 3, true, &mut qgoft_nn::Rng::new(0)).out_features(), 3);
    /// ```
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Freezes the weight and bias.
    ///
    /// ```
    /// let fc = qgoft_nn::layers::Linear::new("fc", 2, 3, true, &mut qgoft_nn::Rng::new(0));
    /// fc.freeze();
    /// assert!(!fc.weight().is_trainable());
    /// ```
    pub fn freeze(&self) {
        self.weight.freeze();
        if let Some(b) = &self.bias {
            b.freeze();
        }
    }
}

impl Module for Linear {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let w = g.param(&self.weight);
        let b = self.bias.as_ref().map(|b| g.param(b));
        g.linear(x, w, b)
    }

    fn params(&self) -> Vec<Param> {
        std::iter::once(self.weight.clone()).chain(self.bias.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_reach_weight_and_bias_unless_frozen() {
        let mut rng = Rng::new(2);
        let fc = Linear::new("fc", 3, 2, true, &mut rng);
        let x = Tensor::from_fn(&[4, 3], |i| i as f32 * 0.1);
        let mut g = Graph::new();
        let xv = g.constant(x.clone());
        let y = fc.forward(&mut g, xv).unwrap();
        let loss = g.sum(y).unwrap();
        let grads = g.backward(loss).unwrap();
        // d sum / dW[o][i] = sum_n x[n][i]; d / db = n
        let gw = grads.get(fc.weight()).unwrap();
        for o in 0..2 {
            for i in 0..3 {
                let want: f32 = (0..4).map(|n| x.data()[n * 3 + i]).sum();
                assert!((gw.data()[o * 3 + i] - want).abs() < 1e-5);
            }
        }
        assert_eq!(grads.get(fc.bias().unwrap()).unwrap().data(), &[4.0, 4.0]);
        fc.freeze();
        let mut g = Graph::new();
        let xv = g.constant(x);
        let y = fc.forward(&mut g, xv).unwrap();
        let loss = g.sum(y).unwrap();
        let grads = g.backward(loss).unwrap();
        assert!(grads.get(fc.weight()).is_none());
    }

    #[test]
    fn init_is_seeded() {
        let a = Linear::new("a", 5, 3, true, &mut Rng::new(9));
        let b = Linear::new("a", 5, 3, true, &mut Rng::new(9));
        assert_eq!(*a.weight().value(), *b.weight().value());
        assert_eq!(*a.bias().unwrap().value(), *b.bias().unwrap().value());
    }
}
