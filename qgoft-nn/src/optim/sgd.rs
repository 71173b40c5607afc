//! Stochastic gradient descent with momentum (PyTorch semantics).
//!
//! With gradient `g`, weight decay `wd`, momentum `mu`, dampening `tau`:
//! `g <- g + wd p`; `buf <- g` on the first step, else
//! `buf <- mu buf + (1 - tau) g`; the step direction is `g + mu buf`
//! (Nesterov) or `buf`; `p <- p - lr * direction`.

use std::collections::HashMap;

use super::{Optimizer, check_grads, check_lr, check_state_names, state_slot};
use crate::autograd::Grads;
use crate::error::{Error, Result};
use crate::param::{Param, ParamId};
use crate::tensor::Tensor;

/// SGD settings; `Default` is PyTorch's (with `lr = 0.01`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamsSgd {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor `mu` (0 disables momentum).
    pub momentum: f32,
    /// Dampening `tau` of the momentum update.
    pub dampening: f32,
    /// Nesterov momentum (needs `momentum > 0` and `dampening = 0`).
    pub nesterov: bool,
    /// L2 penalty added to the gradient (applied to every parameter).
    pub weight_decay: f32,
}

impl Default for ParamsSgd {
    fn default() -> Self {
        ParamsSgd { lr: 0.01, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 }
    }
}

/// SGD over a list of parameters (frozen ones are skipped at each step).
///
/// ```
/// use qgoft_nn::{optim::{Optimizer, ParamsSgd, Sgd}, Grads, Param, ParamKind, Tensor};
/// let p = Param::new("w", ParamKind::Weight, Tensor::scalar(0.0));
/// let mut opt = Sgd::new(vec![p.clone()], ParamsSgd { lr: 1.0, momentum: 0.5, ..Default::default() })?;
/// let mut grads = Grads::default();
/// grads.insert(&p, Tensor::scalar(1.0))?;
/// opt.step(&grads)?; // buf = 1
/// opt.step(&grads)?; // buf = 0.5 + 1
/// assert_eq!(p.value().item(), -2.5);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Debug)]
pub struct Sgd {
    vars: Vec<Param>,
    config: ParamsSgd,
    buffers: HashMap<ParamId, Vec<f32>>,
}

impl Sgd {
    /// A new optimizer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a negative or non-finite setting, or
    /// Nesterov without momentum or with dampening.
    ///
    /// ```
    /// use qgoft_nn::optim::{ParamsSgd, Sgd};
    /// assert!(Sgd::new(vec![], ParamsSgd { nesterov: true, ..Default::default() }).is_err());
    /// ```
    pub fn new(vars: Vec<Param>, config: ParamsSgd) -> Result<Self> {
        check_lr(config.lr)?;
        for (what, v) in
            [("momentum", config.momentum), ("dampening", config.dampening), ("weight decay", config.weight_decay)]
        {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(format!("SGD {what}"), v));
            }
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::invalid("SGD Nesterov momentum", "needs momentum > 0 and zero dampening"));
        }
        Ok(Sgd { vars, config, buffers: HashMap::new() })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Grads) -> Result<()> {
        check_grads(&self.vars, grads)?;
        let c = self.config;
        for p in &self.vars {
            let Some(g) = grads.get(p).filter(|_| p.is_trainable()) else { continue };
            let first = !self.buffers.contains_key(&p.id());
            let buf = self.buffers.entry(p.id()).or_insert_with(|| vec![0.0; g.len()]);
            p.update(|w| {
                for ((w, &g), b) in w.data_mut().iter_mut().zip(g.data()).zip(buf.iter_mut()) {
                    let mut d = g + c.weight_decay * *w;
                    if c.momentum != 0.0 {
                        *b = if first { d } else { c.momentum * *b + (1.0 - c.dampening) * d };
                        d = if c.nesterov { d + c.momentum * *b } else { *b };
                    }
                    *w -= c.lr * d;
                }
            });
        }
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    /// Per parameter with a buffer: `<name>.momentum_buffer`.
    fn export_state(&self) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .filter_map(|p| {
                let buf = self.buffers.get(&p.id())?;
                let t = Tensor::new(p.shape().to_vec(), buf.clone()).expect("buffer matches its parameter");
                Some((format!("{}.momentum_buffer", p.name()), t))
            })
            .collect()
    }

    fn import_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        check_state_names(state, &self.vars, &["momentum_buffer"])?;
        let mut restored = HashMap::new();
        for p in &self.vars {
            if let Some(t) = state_slot(state, p, "momentum_buffer", p.shape().iter().product())? {
                restored.insert(p.id(), t.data().to_vec());
            }
        }
        self.buffers = restored;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ParamKind, Tensor};

    /// Reference: PyTorch's SGD update written out in f64 for a sequence of gradients.
    fn reference(p0: f64, gs: &[f64], c: ParamsSgd) -> f64 {
        let (mut p, mut buf) = (p0, 0.0);
        for (t, &g) in gs.iter().enumerate() {
            let mut d = g + f64::from(c.weight_decay) * p;
            let mu = f64::from(c.momentum);
            buf = if t == 0 { d } else { mu * buf + (1.0 - f64::from(c.dampening)) * d };
            d = if c.nesterov { d + mu * buf } else { buf };
            p -= f64::from(c.lr) * d;
        }
        p
    }

    #[test]
    fn momentum_and_nesterov_follow_the_reference() {
        let gs = [0.5, -1.25, 2.0, 0.75];
        for &nesterov in &[false, true] {
            let c = ParamsSgd { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov, weight_decay: 0.01 };
            let p = Param::new("w", ParamKind::Weight, Tensor::scalar(1.5));
            let mut opt = Sgd::new(vec![p.clone()], c).unwrap();
            for &g in &gs {
                let mut grads = Grads::default();
                grads.insert(&p, Tensor::scalar(g as f32)).unwrap();
                opt.step(&grads).unwrap();
            }
            let want = reference(1.5, &gs, c);
            assert!(
                (f64::from(p.value().item()) - want).abs() < 1e-6,
                "nesterov {nesterov}: {} vs {want}",
                p.value().item()
            );
        }
    }

    #[test]
    fn frozen_and_gradient_free_parameters_are_untouched_and_nan_is_rejected() {
        let p = Param::new("w", ParamKind::Weight, Tensor::scalar(1.0));
        let q = Param::new("q", ParamKind::Weight, Tensor::scalar(1.0));
        let mut opt = Sgd::new(vec![p.clone(), q.clone()], ParamsSgd::default()).unwrap();
        p.freeze();
        let mut grads = Grads::default();
        grads.insert(&p, Tensor::scalar(1.0)).unwrap();
        opt.step(&grads).unwrap();
        assert_eq!(p.value().item(), 1.0);
        assert_eq!(q.value().item(), 1.0);
        grads.insert(&q, Tensor::scalar(f32::NAN)).unwrap();
        let err = opt.step(&grads).unwrap_err();
        assert!(err.to_string().contains("gradient of q"), "{err}");
    }
}
