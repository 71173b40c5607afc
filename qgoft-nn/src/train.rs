//! A deterministic training loop for classifiers.
//!
//! Each epoch shuffles the training set with a generator seeded from
//! [`TrainConfig::seed`], runs mini-batches through the model on a training
//! graph (dropout masks seeded per step from the same generator), takes the
//! mean softmax cross-entropy plus an optional extra term (such as an
//! adapter's orthogonality penalty), optionally clips the gradient norm,
//! sets the scheduled learning rate and steps the optimizer. With the same
//! seed and GEMM thread count two runs are bit-identical. A progress bar is
//! drawn on standard error only when it is a terminal and `quiet` is off.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::autograd::{Graph, Var};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::layers::Module;
use crate::optim::{LrSchedule, Optimizer, clip_grad_norm};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Training settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed for shuffling and dropout.
    pub seed: u64,
    /// Clip the global gradient norm to this value.
    pub clip_norm: Option<f32>,
    /// Learning-rate schedule over all steps (`None`: keep the optimizer's rate).
    pub schedule: Option<LrSchedule>,
    /// Never draw a progress bar.
    pub quiet: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { epochs: 10, batch_size: 32, seed: 0, clip_norm: None, schedule: None, quiet: false }
    }
}

/// Loss and accuracy of a model on a data set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction of examples whose largest logit is the label.
    pub accuracy: f64,
}

/// What happened in one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps (including the extra term).
    pub train_loss: f64,
    /// Evaluation on the held-out set, if one was given.
    pub test: Option<Evaluation>,
    /// Learning rate of the epoch's last step.
    pub lr: f32,
}

/// Number of rows whose arg-max (first on ties) equals the label.
///
/// # Errors
/// [`Error::Shape`] if `logits` is not a matrix with one row per label.
///
/// ```
/// use qgoft_nn::{train::correct, Tensor};
/// let z = Tensor::new(vec![2, 2], vec![0.1, 0.9, 0.8, 0.2])?;
/// assert_eq!(correct(&z, &[1, 1])?, 1);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn correct(logits: &Tensor, labels: &[usize]) -> Result<usize> {
    let (n, c) = logits.dims2()?;
    if n != labels.len() {
        return Err(Error::shape("logits (one row per label)", &[labels.len(), c], logits.shape()));
    }
    Ok(logits
        .data()
        .chunks_exact(c.max(1))
        .zip(labels)
        .filter(|&(row, &y)| {
            let arg = row.iter().enumerate().fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
            arg == y
        })
        .count())
}

/// Evaluates a classifier in evaluation mode (no dropout).
///
/// # Errors
/// Shape or label errors from the model and the loss.
///
/// ```
/// use qgoft_nn::{data, layers::{Activation, Mlp}, train::evaluate, Rng};
/// let d = data::digits()?;
/// let mlp = Mlp::new("mlp", &[64, 10], Activation::Relu, 0.0, &mut Rng::new(0))?;
/// let e = evaluate(&mlp, &d, 512)?;
/// assert!(e.accuracy < 0.5); // untrained
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn evaluate(model: &dyn Module, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
    if batch_size == 0 || data.is_empty() {
        return Err(Error::invalid("evaluation batch size / data set size", format!("{batch_size} / {}", data.len())));
    }
    let (mut loss, mut right) = (0.0f64, 0usize);
    for (x, y) in data.batches(batch_size, None) {
        let mut g = Graph::new();
        let xv = g.constant(x);
        let z = model.forward(&mut g, xv)?;
        let l = g.softmax_cross_entropy(z, &y)?;
        loss += f64::from(g.value(l).item()) * y.len() as f64;
        right += correct(g.value(z), &y)?;
    }
    Ok(Evaluation { loss: loss / data.len() as f64, accuracy: right as f64 / data.len() as f64 })
}

/// Trains a classifier with cross-entropy (see the module documentation).
///
/// # Errors
/// As [`train_classifier_with`].
///
/// ```
/// use qgoft_nn::{data, layers::{Activation, Mlp, Module}, optim::{AdamW, ParamsAdamW}, train::*, Rng};
/// let (train, test) = data::digits()?.split(0.2, &mut Rng::new(0))?;
/// let mlp = Mlp::new("mlp", &[64, 32, 10], Activation::Relu, 0.0, &mut Rng::new(1))?;
/// let mut opt = AdamW::new(mlp.params(), ParamsAdamW { lr: 1e-2, ..Default::default() })?;
/// let cfg = TrainConfig { epochs: 2, batch_size: 64, quiet: true, ..Default::default() };
/// let stats = train_classifier(&mlp, &mut opt, &train, Some(&test), &cfg)?;
/// assert!(stats[1].test.unwrap().accuracy > 0.8);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn train_classifier(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
) -> Result<Vec<EpochStats>> {
    train_classifier_with(model, opt, train, test, cfg, |_| Ok(None))
}

/// [`train_classifier`] with an extra loss term recorded by `extra` on each
/// step's graph (return `None` for no term); it is added to the
/// cross-entropy before the backward pass.
///
/// # Errors
/// [`Error::InvalidArgument`] for a zero batch size or an empty training
/// set; [`Error::NonFinite`] naming the epoch and step if the loss becomes
/// NaN or infinite; errors from the model, the loss and the optimizer.
///
/// ```
/// use qgoft_nn::{data, layers::{Activation, Mlp, Module}, optim::{Sgd, ParamsSgd}, train::*, Rng};
/// let d = data::digits()?.subset(&(0..200).collect::<Vec<_>>())?;
/// let mlp = Mlp::new("mlp", &[64, 10], Activation::Relu, 0.0, &mut Rng::new(1))?;
/// let w = mlp.layers()[0].weight().clone();
/// let mut opt = Sgd::new(mlp.params(), ParamsSgd { lr: 0.1, ..Default::default() })?;
/// let cfg = TrainConfig { epochs: 1, batch_size: 50, quiet: true, ..Default::default() };
/// // an L2 penalty on the first weight as the extra term
/// let stats = train_classifier_with(&mlp, &mut opt, &d, None, &cfg, |g| {
///     let wv = g.param(&w);
///     let sq = g.mul(wv, wv)?;
///     let s = g.sum(sq)?;
///     Ok(Some(g.scale(s, 1e-3)?))
/// })?;
/// assert_eq!(stats.len(), 1);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn train_classifier_with(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    mut extra: impl FnMut(&mut Graph) -> Result<Option<Var>>,
) -> Result<Vec<EpochStats>> {
    run(model, opt, train, test, cfg, None, &mut extra)
}

/// Where and how often [`train_classifier_checkpointed`] saves its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpointing {
    /// The checkpoint file (safetensors), replaced atomically at each save.
    pub path: PathBuf,
    /// Save after every this many epochs (and after the last one).
    pub every_epochs: usize,
    /// Continue from `path` if it exists.
    pub resume: bool,
}

/// Format tag stored in every training checkpoint.
pub const CHECKPOINT_FORMAT: &str = "qgoft-train-checkpoint-1";

/// [`train_classifier_with`] that saves the model, the optimizer's state,
/// the generator's state and the step counter to `ckpt.path` at epoch
/// boundaries, and, with `ckpt.resume`, continues from that file.
///
/// A run resumed with the same model, optimizer settings, data, `cfg` and
/// GEMM thread count reaches bit-identical weights to an uninterrupted run.
/// Each save goes through [`crate::io::atomic_write`], so an interrupted
/// save leaves the previous checkpoint intact. The returned statistics cover
/// the epochs run by this call.
///
/// # Errors
/// As [`train_classifier_with`]; [`Error::Checkpoint`] for a checkpoint that
/// does not fit the model or optimizer or was written with another seed or a
/// different format, or that already covers more epochs than `cfg.epochs`;
/// [`Error::InvalidArgument`] for `every_epochs = 0`.
pub fn train_classifier_checkpointed(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    ckpt: &Checkpointing,
    mut extra: impl FnMut(&mut Graph) -> Result<Option<Var>>,
) -> Result<Vec<EpochStats>> {
    if ckpt.every_epochs == 0 {
        return Err(Error::invalid("checkpoint interval (epochs)", 0));
    }
    run(model, opt, train, test, cfg, Some(ckpt), &mut extra)
}

/// Position of a run between epochs.
struct Resume {
    epoch: usize,
    step: usize,
    rng: Rng,
}

fn save_checkpoint(model: &dyn Module, opt: &dyn Optimizer, cfg: &TrainConfig, path: &Path, at: &Resume) -> Result<()> {
    let params = model.params();
    let values: Vec<(String, std::sync::Arc<Tensor>)> =
        params.iter().map(|p| (format!("model.{}", p.name()), p.value())).collect();
    let state: Vec<(String, Tensor)> = opt.export_state().into_iter().map(|(n, t)| (format!("optim.{n}"), t)).collect();
    let mut named: Vec<(&str, &Tensor)> = values.iter().map(|(n, t)| (n.as_str(), t.as_ref())).collect();
    named.extend(state.iter().map(|(n, t)| (n.as_str(), t)));
    let rng = at.rng.state().iter().map(|w| format!("{w:016x}")).collect::<Vec<_>>().join(",");
    let meta = HashMap::from([
        ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
        ("epoch".to_string(), at.epoch.to_string()),
        ("step".to_string(), at.step.to_string()),
        ("seed".to_string(), cfg.seed.to_string()),
        ("rng".to_string(), rng),
    ]);
    let bytes = crate::io::serialize_tensors(&named, Some(&meta))?;
    crate::io::atomic_write(path, &bytes)
}

fn load_checkpoint(model: &dyn Module, opt: &mut dyn Optimizer, cfg: &TrainConfig, path: &Path) -> Result<Resume> {
    let err = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
    let (tensors, meta) = crate::io::load_checkpoint(path)?;
    let field = |k: &str| meta.get(k).ok_or_else(|| err(format!("metadata key {k} is missing")));
    if field("format")? != CHECKPOINT_FORMAT {
        return Err(err(format!("format {:?} is not {CHECKPOINT_FORMAT:?}", field("format")?)));
    }
    let number = |k: &str| -> Result<u64> {
        let v = field(k)?;
        v.parse().map_err(|_| err(format!("metadata {k} = {v:?} is not a number")))
    };
    let (epoch, step, seed) = (number("epoch")? as usize, number("step")? as usize, number("seed")?);
    if seed != cfg.seed {
        return Err(err(format!("written with seed {seed}, this run uses seed {}", cfg.seed)));
    }
    if epoch > cfg.epochs {
        return Err(err(format!("already covers {epoch} epochs, more than the {} asked for", cfg.epochs)));
    }
    let words: Vec<u64> = field("rng")?.split(',').filter_map(|w| u64::from_str_radix(w, 16).ok()).collect();
    let rng = <[u64; 4]>::try_from(words)
        .map_err(|_| err("metadata rng is not four hexadecimal words".to_string()))
        .and_then(Rng::from_state)?;
    let mut model_tensors = HashMap::new();
    let mut state = Vec::new();
    for (name, t) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model_tensors.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix("optim.") {
            state.push((n.to_string(), t));
        } else {
            return Err(err(format!("unexpected tensor {name}")));
        }
    }
    let params = model.params();
    let mut updates = Vec::with_capacity(params.len());
    for p in &params {
        let t = model_tensors.remove(p.name()).ok_or_else(|| err(format!("tensor model.{} is missing", p.name())))?;
        if t.shape() != p.shape() {
            return Err(err(format!(
                "tensor model.{} has shape {:?}, the model expects {:?}",
                p.name(),
                t.shape(),
                p.shape()
            )));
        }
        updates.push((p, t));
    }
    if let Some(name) = model_tensors.keys().min() {
        return Err(err(format!("unexpected tensor model.{name} (not a parameter of the model)")));
    }
    opt.import_state(&state).map_err(|e| err(e.to_string()))?;
    for (p, t) in updates {
        p.set(t)?;
    }
    Ok(Resume { epoch, step, rng })
}

fn run(
    model: &dyn Module,
    opt: &mut dyn Optimizer,
    train: &Dataset,
    test: Option<&Dataset>,
    cfg: &TrainConfig,
    ckpt: Option<&Checkpointing>,
    extra: &mut dyn FnMut(&mut Graph) -> Result<Option<Var>>,
) -> Result<Vec<EpochStats>> {
    if cfg.batch_size == 0 || train.is_empty() {
        return Err(Error::invalid("batch size / training set size", format!("{} / {}", cfg.batch_size, train.len())));
    }
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size);
    let bar = ProgressBar::new((steps_per_epoch * cfg.epochs) as u64);
    if cfg.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}") {
        bar.set_style(style);
    }
    let mut at = Resume { epoch: 0, step: 0, rng: Rng::new(cfg.seed) };
    if let Some(c) = ckpt.filter(|c| c.resume && c.path.exists()) {
        at = load_checkpoint(model, opt, cfg, &c.path)?;
    }
    bar.set_position((at.epoch * steps_per_epoch) as u64);
    let (mut rng, mut step) = (at.rng, at.step);
    let mut stats = Vec::with_capacity(cfg.epochs - at.epoch);
    for epoch in at.epoch + 1..=cfg.epochs {
        let mut total = 0.0f64;
        let mut shuffle = rng.fork();
        for (i, (x, y)) in train.batches(cfg.batch_size, Some(&mut shuffle)).enumerate() {
            if let Some(s) = &cfg.schedule {
                opt.set_learning_rate(s.lr_at(step));
            }
            let mut g = Graph::training(rng.next_u64());
            let xv = g.constant(x);
            let z = model.forward(&mut g, xv)?;
            let mut loss = g.softmax_cross_entropy(z, &y)?;
            if let Some(e) = extra(&mut g)? {
                loss = g.add(loss, e)?;
            }
            let lv = g.value(loss).item();
            if !lv.is_finite() {
                return Err(Error::NonFinite {
                    what: format!("training loss (epoch {epoch}, step {})", i + 1),
                    index: 0,
                    value: f64::from(lv),
                });
            }
            let mut grads = g.backward(loss)?;
            drop(g);
            if let Some(max) = cfg.clip_norm {
                clip_grad_norm(&mut grads, max)?;
            }
            opt.step(&grads)?;
            total += f64::from(lv);
            step += 1;
            bar.inc(1);
            bar.set_message(format!("epoch {epoch} loss {lv:.4}"));
        }
        let test = test.map(|t| evaluate(model, t, 512)).transpose()?;
        stats.push(EpochStats { epoch, train_loss: total / steps_per_epoch as f64, test, lr: opt.learning_rate() });
        if let Some(c) = ckpt.filter(|c| epoch % c.every_epochs == 0 || epoch == cfg.epochs) {
            let here = Resume { epoch, step, rng: rng.clone() };
            save_checkpoint(model, opt, cfg, &c.path, &here)?;
        }
    }
    bar.finish_and_clear();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Activation, Mlp};
    use crate::optim::{AdamW, Decay, ParamsAdamW};

    fn run(seed: u64) -> (Vec<EpochStats>, Vec<f32>) {
        let (train, test) = crate::data::digits().unwrap().split(0.2, &mut Rng::new(seed)).unwrap();
        let mlp = Mlp::new("mlp", &[64, 48, 10], Activation::Gelu, 0.1, &mut Rng::new(seed)).unwrap();
        let mut opt = AdamW::new(mlp.params(), ParamsAdamW { lr: 5e-3, ..Default::default() }).unwrap();
        let steps = 3 * train.len().div_ceil(64);
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 64,
            seed,
            clip_norm: Some(5.0),
            schedule: Some(LrSchedule {
                peak: 5e-3,
                min: 5e-4,
                warmup_steps: 10,
                total_steps: steps,
                decay: Decay::Cosine,
            }),
            quiet: true,
        };
        let stats = train_classifier(&mlp, &mut opt, &train, Some(&test), &cfg).unwrap();
        let weights = mlp.params().iter().flat_map(|p| p.value().data().to_vec()).collect();
        (stats, weights)
    }

    #[test]
    fn mlp_on_digits_learns_and_is_bit_reproducible() {
        let (a, wa) = run(7);
        let (b, wb) = run(7);
        assert_eq!(a, b);
        assert!(wa.iter().zip(&wb).all(|(x, y)| x.to_bits() == y.to_bits()));
        assert!(a[2].train_loss < 0.5 * a[0].train_loss, "{a:?}");
        assert!(a[2].test.unwrap().accuracy > 0.9, "{a:?}");
        let (c, _) = run(8);
        assert_ne!(a, c);
    }

    #[test]
    fn bad_settings_are_errors() {
        let d = crate::data::digits().unwrap();
        let mlp = Mlp::new("m", &[64, 10], Activation::Relu, 0.0, &mut Rng::new(0)).unwrap();
        let mut opt = AdamW::new(mlp.params(), ParamsAdamW::default()).unwrap();
        let cfg = TrainConfig { batch_size: 0, quiet: true, ..Default::default() };
        assert!(train_classifier(&mlp, &mut opt, &d, None, &cfg).is_err());
        let mut opt = AdamW::new(mlp.params(), ParamsAdamW { lr: 1e30, ..Default::default() }).unwrap();
        let cfg = TrainConfig { epochs: 3, batch_size: 256, quiet: true, ..Default::default() };
        // an absurd learning rate must end in a named error, not silent NaN
        let e = train_classifier(&mlp, &mut opt, &d, None, &cfg).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }), "{e}");
    }
}
