//! Optimizers, learning-rate schedules and gradient clipping.
//!
//! Shaped like candle-nn: an optimizer is built with `new(vars, config)`
//! where the config's `Default` is PyTorch's, and `step(&grads)` updates
//! every trainable parameter that has a gradient.

mod adamw;
mod schedule;
mod sgd;

pub use adamw::{AdamW, ParamsAdamW};
pub use schedule::{Decay, LrSchedule};
pub use sgd::{ParamsSgd, Sgd};

use crate::autograd::Grads;
use crate::error::{Error, Result, check_finite};
use crate::param::Param;
use crate::tensor::Tensor;

/// What every optimizer offers.
pub trait Optimizer {
    /// Applies one update from `grads` to the optimizer's trainable parameters.
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming the parameter if a gradient holds NaN or
    /// infinity (no parameter is changed then).
    ///
    /// ```
    /// use qgoft_nn::{optim::{Optimizer, ParamsSgd, Sgd}, Grads, Param, ParamKind, Tensor};
    /// let p = Param::new("w", ParamKind::Weight, Tensor::scalar(1.0));
    /// let mut opt = Sgd::new(vec![p.clone()], ParamsSgd { lr: 0.5, ..Default::default() })?;
    /// let mut grads = Grads::default();
    /// grads.insert(&p, Tensor::scalar(2.0))?;
    /// opt.step(&grads)?;
    /// assert_eq!(p.value().item(), 0.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn step(&mut self, grads: &Grads) -> Result<()>;

    /// The current learning rate.
    ///
    /// ```
    /// use qgoft_nn::optim::{AdamW, Optimizer, ParamsAdamW};
    /// assert_eq!(AdamW::new(vec![], ParamsAdamW::default())?.learning_rate(), 1e-3);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn learning_rate(&self) -> f32;

    /// Sets the learning rate (schedules call this before each step).
    ///
    /// ```
    /// use qgoft_nn::optim::{AdamW, Optimizer, ParamsAdamW};
    /// let mut opt = AdamW::new(vec![], ParamsAdamW::default())?;
    /// opt.set_learning_rate(0.1);
    /// assert_eq!(opt.learning_rate(), 0.1);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    fn set_learning_rate(&mut self, lr: f32);

    /// The optimizer's internal state as named tensors (keyed by parameter
    /// name), for checkpoints. Stateless optimizers return nothing.
    fn export_state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Restores what [`Optimizer::export_state`] returned.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming a state tensor that belongs to no
    /// parameter or has the wrong length; nothing is changed then.
    fn import_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(Error::invalid("optimizer state tensor (this optimizer keeps none)", name)),
        }
    }
}

/// Looks up `"<param>.<slot>"` in `state` and checks its length.
fn state_slot<'a>(state: &'a [(String, Tensor)], param: &Param, slot: &str, len: usize) -> Result<Option<&'a Tensor>> {
    let key = format!("{}.{slot}", param.name());
    match state.iter().find(|(n, _)| *n == key) {
        None => Ok(None),
        Some((_, t)) if t.len() == len => Ok(Some(t)),
        Some((_, t)) => {
            Err(Error::invalid(format!("optimizer state {key} (length {})", t.len()), format!("expected length {len}")))
        }
    }
}

/// Errors naming the first state tensor that belongs to no known parameter slot.
fn check_state_names(state: &[(String, Tensor)], vars: &[Param], slots: &[&str]) -> Result<()> {
    for (name, _) in state {
        let known = vars.iter().any(|p| slots.iter().any(|s| *name == format!("{}.{s}", p.name())));
        if !known {
            return Err(Error::invalid("optimizer state tensor (no such parameter)", name));
        }
    }
    Ok(())
}

/// Checks every gradient of the given parameters before any update.
fn check_grads(vars: &[Param], grads: &Grads) -> Result<()> {
    for p in vars {
        if let Some(g) = grads.get(p) {
            check_finite(&format!("gradient of {}", p.name()), g.data())?;
        }
    }
    Ok(())
}

fn check_lr(lr: f32) -> Result<()> {
    if !(lr >= 0.0 && lr.is_finite()) {
        return Err(Error::invalid("learning rate", lr));
    }
    Ok(())
}

/// Scales all parameter gradients so their global norm is at most
/// `max_norm` (as PyTorch's `clip_grad_norm_`: factor
/// `max_norm / (norm + 1e-6)` when `norm > max_norm`). Returns the norm
/// before clipping.
///
/// # Errors
/// [`Error::InvalidArgument`] if `max_norm` is not positive;
/// [`Error::NonFinite`] if the norm is NaN or infinite.
///
/// ```
/// use qgoft_nn::{optim::clip_grad_norm, Grads, Param, ParamKind, Tensor};
/// let p = Param::new("w", ParamKind::Weight, Tensor::zeros(&[2]));
/// let mut grads = Grads::default();
/// grads.insert(&p, Tensor::new(vec![2], vec![3.0, 4.0])?)?;
/// assert_eq!(clip_grad_norm(&mut grads, 1.0)?, 5.0);
/// assert!((grads.global_norm() - 1.0).abs() < 1e-5);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn clip_grad_norm(grads: &mut Grads, max_norm: f32) -> Result<f64> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::invalid("max gradient norm", max_norm));
    }
    let norm = grads.global_norm();
    if !norm.is_finite() {
        return Err(Error::NonFinite { what: "global gradient norm".into(), index: 0, value: norm });
    }
    if norm > f64::from(max_norm) {
        let factor = (f64::from(max_norm) / (norm + 1e-6)) as f32;
        grads.params_mut().for_each(|(_, g)| g.scale(factor));
    }
    Ok(norm)
}
