//! LoRA (Hu et al., 2021) on a frozen linear layer: a low-rank baseline.
//!
//! `y = x W^T + b + s (x A^T) B^T` with `A` (r x in), `B` (out x r),
//! `s = alpha / r`. `B` starts at zero (so the adapted layer starts equal to
//! the base) and `A` as PyTorch's linear init (`U(-1/sqrt(in), 1/sqrt(in))`).
//! Merging sets `W <- W + s B A`; unmerging subtracts it again.

use super::{Adapter, Linear, Module};
use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::param::{Param, ParamKind};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A LoRA adapter (see the module documentation). Parameters:
/// `<base prefix>.lora_A` and `<base prefix>.lora_B`, kind [`ParamKind::Adapter`].
///
/// ```
/// use qgoft_nn::{layers::{Adapter, Linear, LoraLinear, Module}, Graph, Rng, Tensor};
/// let mut rng = Rng::new(0);
/// let lora = LoraLinear::new(Linear::new("fc", 4, 3, true, &mut rng), 2, 8.0, &mut rng)?;
/// assert!(!lora.base().weight().is_trainable());
/// let mut g = Graph::new();
/// let x = g.constant(Tensor::full(&[1, 4], 1.0));
/// let y = lora.forward(&mut g, x)?;          // B = 0: equals the base layer
/// let y0 = lora.base().forward(&mut g, x)?;
/// assert_eq!(g.value(y), g.value(y0));
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct LoraLinear {
    base: Linear,
    a: Param,
    b: Param,
    scaling: f32,
    merged: bool,
}

impl LoraLinear {
    /// Wraps `base` (which is frozen) with a rank-`rank` adapter scaled by `alpha / rank`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `rank` is 0 or `alpha` is not finite.
    ///
    /// ```
    /// use qgoft_nn::{layers::{Linear, LoraLinear}, Rng};
    /// let mut rng = Rng::new(0);
    /// assert!(LoraLinear::new(Linear::new("fc", 4, 3, true, &mut rng), 0, 1.0, &mut rng).is_err());
    /// ```
    pub fn new(base: Linear, rank: usize, alpha: f32, rng: &mut Rng) -> Result<Self> {
        if rank == 0 {
            return Err(Error::invalid("LoRA rank", rank));
        }
        if !alpha.is_finite() {
            return Err(Error::invalid("LoRA alpha", alpha));
        }
        base.freeze();
        let (out, inp) = (base.out_features(), base.in_features());
        let prefix = base.weight().name().strip_suffix(".weight").unwrap_or(base.weight().name()).to_string();
        let bound = 1.0 / (inp.max(1) as f32).sqrt();
        let a = Tensor::from_fn(&[rank, inp], |_| rng.uniform(-bound, bound));
        Ok(LoraLinear {
            a: Param::new(format!("{prefix}.lora_A"), ParamKind::Adapter, a),
            b: Param::new(format!("{prefix}.lora_B"), ParamKind::Adapter, Tensor::zeros(&[out, rank])),
            base,
            scaling: alpha / rank as f32,
            merged: false,
        })
    }

    /// `A` (r x in).
    ///
    /// ```
    /// use qgoft_nn::{layers::{Linear, LoraLinear}, Rng};
    /// let mut rng = Rng::new(0);
    /// let l = LoraLinear::new(Linear::new("fc", 4, 3, true, &mut rng), 2, 1.0, &mut rng)?;
    /// assert_eq!(l.a().shape(), vec![2, 4]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn a(&self) -> &Param {
        &self.a
    }

    /// `B` (out x r).
    ///
    /// ```
    /// use qgoft_nn::{layers::{Linear, LoraLinear}, Rng};
    /// let mut rng = Rng::new(0);
    /// let l = LoraLinear::new(Linear::new("fc", 4, 3, true, &mut rng), 2, 1.0, &mut rng)?;
    /// assert_eq!(l.b().shape(), vec![3, 2]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn b(&self) -> &Param {
        &self.b
    }

    /// `s B A` (out x in), the update merging adds to `W`.
    fn delta(&self) -> Result<Tensor> {
        let mut d = self.b.value().matmul(&self.a.value())?;
        d.scale(self.scaling);
        Ok(d)
    }
}

impl Module for LoraLinear {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        let y = self.base.forward(g, x)?;
        if self.merged {
            return Ok(y);
        }
        let a = g.param(&self.a);
        let b = g.param(&self.b);
        let h = g.matmul_nt(x, a)?;
        let h = g.matmul_nt(h, b)?;
        let h = g.scale(h, self.scaling)?;
        g.add(y, h)
    }

    fn params(&self) -> Vec<Param> {
        let mut ps = self.base.params();
        ps.extend(self.adapter_params());
        ps
    }
}

impl Adapter for LoraLinear {
    fn base(&self) -> &Linear {
        &self.base
    }

    fn adapter_params(&self) -> Vec<Param> {
        vec![self.a.clone(), self.b.clone()]
    }

    fn merge(&mut self) -> Result<()> {
        if self.merged {
            return Err(Error::invalid("merge", "the LoRA adapter is already merged"));
        }
        let d = self.delta()?;
        self.base.weight().update(|w| w.add_assign(&d))?;
        self.merged = true;
        Ok(())
    }

    fn unmerge(&mut self) -> Result<()> {
        if !self.merged {
            return Err(Error::invalid("unmerge", "the LoRA adapter is not merged"));
        }
        let mut d = self.delta()?;
        d.scale(-1.0);
        self.base.weight().update(|w| w.add_assign(&d))?;
        self.merged = false;
        Ok(())
    }

    fn is_merged(&self) -> bool {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_forward_equals_adapter_forward_and_unmerge_restores() {
        let mut rng = Rng::new(5);
        let mut lora = LoraLinear::new(Linear::new("fc", 6, 5, true, &mut rng), 3, 6.0, &mut rng).unwrap();
        lora.b().set(Tensor::from_fn(&[5, 3], |_| rng.uniform(-1.0, 1.0))).unwrap();
        let w0 = lora.base().weight().value();
        let x = Tensor::from_fn(&[4, 6], |_| rng.uniform(-1.0, 1.0));
        let run = |l: &LoraLinear| {
            let mut g = Graph::new();
            let xv = g.constant(x.clone());
            let y = l.forward(&mut g, xv).unwrap();
            g.value(y).clone()
        };
        let before = run(&lora);
        lora.merge().unwrap();
        let after = run(&lora);
        assert!(before.zip_map(&after, |a, b| (a - b).abs()).unwrap().max_abs() < 1e-5);
        lora.unmerge().unwrap();
        let w1 = lora.base().weight().value();
        assert!(w0.zip_map(&w1, |a, b| (a - b).abs()).unwrap().max_abs() < 1e-6);
    }

    #[test]
    fn only_adapter_parameters_get_gradients() {
        let mut rng = Rng::new(6);
        let lora = LoraLinear::new(Linear::new("fc", 3, 2, true, &mut rng), 1, 1.0, &mut rng).unwrap();
        let mut g = Graph::new();
        let x = g.constant(Tensor::full(&[2, 3], 0.5));
        let y = lora.forward(&mut g, x).unwrap();
        let loss = g.sum(y).unwrap();
        let grads = g.backward(loss).unwrap();
        assert!(grads.get(lora.base().weight()).is_none());
        assert!(grads.get(lora.b()).is_some());
        assert_eq!(grads.params().count(), 2);
    }
}
