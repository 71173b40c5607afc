//! AdamW (Loshchilov and Hutter), PyTorch semantics and defaults.
//!
//! Per parameter, at step `t` with gradient `g`:
//! `p <- p (1 - lr wd)` (decoupled decay, only for kinds not excluded),
//! `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! `p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
//! PyTorch writes the last line as `p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)`;
//! this implementation uses that form.

use std::collections::HashMap;

use super::{Optimizer, check_grads, check_lr, check_state_names, state_slot};
use crate::autograd::Grads;
use crate::error::{Error, Result};
use crate::param::{Param, ParamId, ParamKind};
use crate::tensor::Tensor;

/// AdamW settings; `Default` is PyTorch's (`lr = 1e-3`, betas `(0.9, 0.999)`,
/// `eps = 1e-8`, `weight_decay = 1e-2`), with biases, normalisation and
/// adapter parameters excluded from decay.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamsAdamW {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay `b1`.
    pub beta1: f32,
    /// Second-moment decay `b2`.
    pub beta2: f32,
    /// Denominator guard.
    pub eps: f32,
    /// Decoupled weight decay `wd`.
    pub weight_decay: f32,
    /// Parameter kinds that get no weight decay.
    pub no_decay: Vec<ParamKind>,
    /// Parameters whose name contains any of these strings get no weight decay.
    pub no_decay_names: Vec<String>,
}

impl Default for ParamsAdamW {
    fn default() -> Self {
        ParamsAdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
            no_decay: vec![ParamKind::Bias, ParamKind::Norm, ParamKind::Adapter],
            no_decay_names: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct State {
    step: i32,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// AdamW over a list of parameters (frozen ones are skipped at each step).
///
/// ```
/// use qgoft_nn::{optim::{AdamW, Optimizer, ParamsAdamW}, Grads, Param, ParamKind, Tensor};
/// let p = Param::new("w", ParamKind::Weight, Tensor::scalar(1.0));
/// let mut opt = AdamW::new(vec![p.clone()], ParamsAdamW { weight_decay: 0.0, ..Default::default() })?;
/// let mut grads = Grads::default();
/// grads.insert(&p, Tensor::scalar(3.0))?;
/// opt.step(&grads)?; // the first Adam step moves by lr (times sign of g)
/// assert!((p.value().item() - (1.0 - 1e-3)).abs() < 1e-7);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Debug)]
pub struct AdamW {
    vars: Vec<Param>,
    config: ParamsAdamW,
    state: HashMap<ParamId, State>,
}

impl AdamW {
    /// A new optimizer.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a beta is outside `[0, 1)`, or `lr`,
    /// `eps` or `weight_decay` is negative or not finite.
    ///
    /// ```
    /// use qgoft_nn::optim::{AdamW, ParamsAdamW};
    /// assert!(AdamW::new(vec![], ParamsAdamW { beta1: 1.0, ..Default::default() }).is_err());
    /// ```
    pub fn new(vars: Vec<Param>, config: ParamsAdamW) -> Result<Self> {
        check_lr(config.lr)?;
        for (what, v) in [("beta1", config.beta1), ("beta2", config.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(Error::invalid(format!("AdamW {what}"), v));
            }
        }
        for (what, v) in [("eps", config.eps), ("weight decay", config.weight_decay)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::invalid(format!("AdamW {what}"), v));
            }
        }
        Ok(AdamW { vars, config, state: HashMap::new() })
    }

    /// The settings.
    ///
    /// ```
    /// use qgoft_nn::optim::{AdamW, ParamsAdamW};
    /// assert_eq!(AdamW::new(vec![], ParamsAdamW::default())?.config().eps, 1e-8);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn config(&self) -> &ParamsAdamW {
        &self.config
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &Grads) -> Result<()> {
        check_grads(&self.vars, grads)?;
        let c = &self.config;
        for p in &self.vars {
            let Some(g) = grads.get(p).filter(|_| p.is_trainable()) else { continue };
            let st = self.state.entry(p.id()).or_insert_with(|| State {
                step: 0,
                m: vec![0.0; g.len()],
                v: vec![0.0; g.len()],
            });
            st.step += 1;
            let bc1 = 1.0 - c.beta1.powi(st.step);
            let bc2_sqrt = (1.0 - c.beta2.powi(st.step)).sqrt();
            let step_size = c.lr / bc1;
            let excluded =
                c.no_decay.contains(&p.kind()) || c.no_decay_names.iter().any(|n| p.name().contains(n.as_str()));
            let decay = if excluded { 1.0 } else { 1.0 - c.lr * c.weight_decay };
            p.update(|w| {
                for (((w, &g), m), v) in w.data_mut().iter_mut().zip(g.data()).zip(st.m.iter_mut()).zip(st.v.iter_mut())
                {
                    *w *= decay;
                    *m = c.beta1 * *m + (1.0 - c.beta1) * g;
                    *v = c.beta2 * *v + (1.0 - c.beta2) * g * g;
                    *w -= step_size * *m / (v.sqrt() / bc2_sqrt + c.eps);
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

    /// Per parameter with state: `<name>.exp_avg`, `<name>.exp_avg_sq` (the
    /// moments, shaped like the parameter) and `<name>.step` (a scalar).
    fn export_state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.vars {
            let Some(st) = self.state.get(&p.id()) else { continue };
            let shape = p.shape().to_vec();
            let tensor = |v: &Vec<f32>| Tensor::new(shape.clone(), v.clone()).expect("state matches its parameter");
            out.push((format!("{}.exp_avg", p.name()), tensor(&st.m)));
            out.push((format!("{}.exp_avg_sq", p.name()), tensor(&st.v)));
            out.push((format!("{}.step", p.name()), Tensor::scalar(st.step as f32)));
        }
        out
    }

    fn import_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        check_state_names(state, &self.vars, &["exp_avg", "exp_avg_sq", "step"])?;
        let mut restored = HashMap::new();
        for p in &self.vars {
            let n = p.shape().iter().product();
            let m = state_slot(state, p, "exp_avg", n)?;
            let v = state_slot(state, p, "exp_avg_sq", n)?;
            let step = state_slot(state, p, "step", 1)?;
            match (m, v, step) {
                (None, None, None) => {}
                (Some(m), Some(v), Some(step)) => {
                    let k = step.data()[0];
                    if !(k >= 1.0 && k.fract() == 0.0 && k < 16_777_216.0) {
                        return Err(Error::invalid(format!("optimizer state {}.step", p.name()), k));
                    }
                    restored.insert(p.id(), State { step: k as i32, m: m.data().to_vec(), v: v.data().to_vec() });
                }
                _ => return Err(Error::invalid("optimizer state (incomplete) for parameter", p.name())),
            }
        }
        self.state = restored;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    /// Two AdamW steps written out by hand in f64 from the PyTorch formula.
    #[test]
    fn two_steps_match_the_pytorch_formula() {
        let (lr, b1, b2, eps, wd) = (1e-2f64, 0.9f64, 0.999f64, 1e-8f64, 0.1f64);
        let p0 = [0.5f64, -1.0, 2.0];
        let gs = [[0.1f64, -0.2, 0.3], [-0.4, 0.05, 0.3]];
        let mut want = p0;
        let (mut m, mut v) = ([0.0f64; 3], [0.0f64; 3]);
        for (t, g) in gs.iter().enumerate() {
            let t = t as i32 + 1;
            for i in 0..3 {
                want[i] *= 1.0 - lr * wd;
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let mhat = m[i] / (1.0 - b1.powi(t));
                let vhat = v[i] / (1.0 - b2.powi(t));
                want[i] -= lr * mhat / (vhat.sqrt() + eps);
            }
        }
        let p = Param::new("w", ParamKind::Weight, Tensor::from_fn(&[3], |i| p0[i] as f32));
        let b = Param::new("b", ParamKind::Bias, Tensor::from_fn(&[3], |i| p0[i] as f32));
        let config = ParamsAdamW { lr: lr as f32, weight_decay: wd as f32, ..Default::default() };
        let mut opt = AdamW::new(vec![p.clone(), b.clone()], config).unwrap();
        for g in &gs {
            let mut grads = Grads::default();
            let gt = Tensor::from_fn(&[3], |i| g[i] as f32);
            grads.insert(&p, gt.clone()).unwrap();
            grads.insert(&b, gt).unwrap();
            opt.step(&grads).unwrap();
        }
        for i in 0..3 {
            let got = f64::from(p.value().data()[i]);
            assert!((got - want[i]).abs() < 2e-6, "element {i}: {got} vs {want:?}");
        }
        // the bias is excluded from decay, so it ends higher by about lr * wd * p per step
        let no_decay_gap = f64::from(b.value().data()[0]) - f64::from(p.value().data()[0]);
        assert!((no_decay_gap - 2.0 * lr * wd * p0[0]).abs() < 1e-4, "{no_decay_gap}");
    }

    #[test]
    fn decay_exclusion_by_name() {
        let p = Param::new("emb.weight", ParamKind::Weight, Tensor::scalar(1.0));
        let q = Param::new("fc.weight", ParamKind::Weight, Tensor::scalar(1.0));
        let config =
            ParamsAdamW { lr: 0.1, weight_decay: 0.5, no_decay_names: vec!["emb".into()], ..Default::default() };
        let mut opt = AdamW::new(vec![p.clone(), q.clone()], config).unwrap();
        let mut grads = Grads::default();
        grads.insert(&p, Tensor::scalar(0.0)).unwrap();
        grads.insert(&q, Tensor::scalar(0.0)).unwrap();
        opt.step(&grads).unwrap();
        assert_eq!(p.value().item(), 1.0);
        assert_eq!(q.value().item(), 1.0 - 0.1 * 0.5);
    }

    #[test]
    fn defaults_are_pytorch() {
        let c = ParamsAdamW::default();
        assert_eq!((c.lr, c.beta1, c.beta2, c.eps, c.weight_decay), (1e-3, 0.9, 0.999, 1e-8, 1e-2));
    }
}
