//! The `qgoft demo` experiment: pretrain an MLP on the optdigits images,
//! then adapt it to a shifted version of the images with full fine-tuning,
//! LoRA, block OFT, GOFT, GOFT with scaling and qGOFT, and compare.
//!
//! **The shift.** Every image has its neighbouring pixel columns swapped
//! (columns `0 <-> 1`, `2 <-> 3`, `4 <-> 5`, `6 <-> 7`). As a map of the
//! 64-pixel input it is a permutation that exchanges the coordinates of
//! every first-stage plane `(2t, 2t + 1)` of the tree layout, so a rotation of
//! the first layer's input space comes close to undoing it: a Givens rotation
//! by `+-pi/2` on each of those planes maps the pair back up to the sign of
//! one coordinate, and the sign is repaired exactly by a scaling entry of
//! `-1` (GOFT with scaling) or by a free quasi block `[[0, 1], [1, 0]]`
//! (qGOFT, with zero penalty). Strict GOFT cannot flip a sign, so it is
//! expected to do less well. Every method adapts every linear layer of the
//! model and starts from the same pretrained weights.
//!
//! **What is reported**, per method: trainable parameters, accuracy on the
//! held-out shifted images (target), accuracy on the held-out original images
//! after merging the adapter into the weights (source: what the merged model
//! still knows of the original task), and the adaptation time.
//!
//! Everything is seeded; with the same seed and GEMM thread count two runs
//! print the same accuracies.

use std::time::Instant;

use crate::data::{self, Dataset};
use crate::error::Result;
use crate::layers::{
    Activation, Adapter, BlockOft, GivensConfig, GivensLinear, GivensMode, Linear, LoraLinear, Mlp, Module, Stack,
};
use crate::optim::{AdamW, Decay, LrSchedule, ParamsAdamW};
use crate::param::{Param, ParamKind};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::{TrainConfig, evaluate, train_classifier, train_classifier_with};

/// Settings of the demo.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoConfig {
    /// Seed for the split, initialisation, shuffling.
    pub seed: u64,
    /// Hidden widths of the MLP.
    pub hidden: Vec<usize>,
    /// Pretraining epochs.
    pub pretrain_epochs: usize,
    /// Adaptation epochs per method.
    pub adapt_epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// qGOFT penalty weight.
    pub lambda: f32,
    /// Hide progress bars.
    pub quiet: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            seed: 0,
            hidden: vec![64],
            pretrain_epochs: 30,
            adapt_epochs: 30,
            batch_size: 64,
            lambda: 1e-3,
            quiet: false,
        }
    }
}

/// One line of the demo table.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoRow {
    /// Method name.
    pub method: String,
    /// Trainable parameters.
    pub trainable: usize,
    /// Accuracy on the held-out shifted images.
    pub target_accuracy: f64,
    /// Accuracy on the held-out original images after merging.
    pub source_accuracy: f64,
    /// Adaptation time, seconds.
    pub seconds: f64,
}

/// The demo's results.
#[derive(Clone, Debug, PartialEq)]
pub struct DemoReport {
    /// Source test accuracy of the pretrained model.
    pub base_source_accuracy: f64,
    /// Target test accuracy of the pretrained model (before adaptation).
    pub base_target_accuracy: f64,
    /// Pretraining time, seconds.
    pub pretrain_seconds: f64,
    /// One row per method.
    pub rows: Vec<DemoRow>,
}

impl DemoReport {
    /// The table as text (times excluded when `with_times` is false, for comparisons).
    ///
    /// ```
    /// use qgoft_nn::demo::{DemoReport, DemoRow};
    /// let r = DemoReport { base_source_accuracy: 0.9, base_target_accuracy: 0.5, pretrain_seconds: 1.0, rows: vec![
    ///     DemoRow { method: "lora".into(), trainable: 10, target_accuracy: 0.8, source_accuracy: 0.7, seconds: 0.5 }] };
    /// assert!(r.table(true).contains("lora"));
    /// ```
    pub fn table(&self, with_times: bool) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "pretrained model: source accuracy {:.2} %, target accuracy before adaptation {:.2} %\n\n",
            100.0 * self.base_source_accuracy,
            100.0 * self.base_target_accuracy
        ));
        s.push_str("| method | trainable params | target acc. | source acc. after merge | time |\n");
        s.push_str("| --- | ---: | ---: | ---: | ---: |\n");
        for r in &self.rows {
            let t = if with_times { format!("{:.2} s", r.seconds) } else { "-".into() };
            s.push_str(&format!(
                "| {} | {} | {:.2} % | {:.2} % | {t} |\n",
                r.method,
                r.trainable,
                100.0 * r.target_accuracy,
                100.0 * r.source_accuracy
            ));
        }
        s
    }
}

/// Swaps neighbouring pixel columns of 8 x 8 images (see the module documentation).
///
/// # Errors
/// Propagates data-set construction errors (none for 64-pixel images).
///
/// ```
/// use qgoft_nn::{data::Dataset, demo::shifted, Tensor};
/// let d = Dataset::new(Tensor::from_fn(&[1, 64], |i| i as f32), vec![0], 1)?;
/// assert_eq!(&shifted(&d)?.features().data()[..4], &[1.0, 0.0, 3.0, 2.0]);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn shifted(d: &Dataset) -> Result<Dataset> {
    let x = d.features();
    if d.num_features() != 64 {
        return Err(crate::Error::shape("images to shift (8 x 8 pixels)", &[d.len(), 64], x.shape()));
    }
    // Row-major 64-pixel rows: flipping the lowest index bit swaps columns 2t and 2t + 1.
    let y = Tensor::from_fn(x.shape(), |k| x.data()[k ^ 1]);
    Dataset::new(y, d.labels().to_vec(), d.num_classes())
}

/// A fresh copy (new parameters with the same values) of a linear layer.
fn copy_linear(l: &Linear) -> Result<Linear> {
    let w = Param::new(l.weight().name(), ParamKind::Weight, (*l.weight().value()).clone());
    let b = l.bias().map(|b| Param::new(b.name(), ParamKind::Bias, (*b.value()).clone()));
    Linear::from_params(w, b)
}

fn schedule(peak: f32, epochs: usize, steps_per_epoch: usize) -> LrSchedule {
    let total = epochs * steps_per_epoch;
    LrSchedule { peak, min: 0.05 * peak, warmup_steps: total / 20, total_steps: total, decay: Decay::Cosine }
}

/// The methods of the table, in order.
const METHODS: [&str; 6] = ["full fine-tuning", "LoRA (r = 4)", "block OFT (b = 8)", "GOFT", "GOFT + scaling", "qGOFT"];

/// Runs the demo.
///
/// # Errors
/// Errors from data loading, the layers and training (none expected).
///
/// ```no_run
/// let report = qgoft_nn::demo::run(&qgoft_nn::demo::DemoConfig { quiet: true, ..Default::default() })?;
/// println!("{}", report.table(true));
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn run(cfg: &DemoConfig) -> Result<DemoReport> {
    let (src_train, src_test) = data::digits()?.split(0.2, &mut Rng::new(cfg.seed))?;
    let (tgt_train, tgt_test) = (shifted(&src_train)?, shifted(&src_test)?);
    let mut sizes = vec![64];
    sizes.extend(&cfg.hidden);
    sizes.push(10);
    let steps = src_train.len().div_ceil(cfg.batch_size);
    let train_cfg = |epochs: usize, peak: f32| TrainConfig {
        epochs,
        batch_size: cfg.batch_size,
        seed: cfg.seed,
        clip_norm: Some(1.0),
        schedule: Some(schedule(peak, epochs, steps)),
        quiet: cfg.quiet,
    };
    let t0 = Instant::now();
    let mlp = Mlp::new("mlp", &sizes, Activation::Relu, 0.0, &mut Rng::new(cfg.seed))?;
    let mut opt = AdamW::new(mlp.params(), ParamsAdamW { lr: 5e-3, ..Default::default() })?;
    train_classifier(&mlp, &mut opt, &src_train, None, &train_cfg(cfg.pretrain_epochs, 5e-3))?;
    let pretrain_seconds = t0.elapsed().as_secs_f64();
    let base_source_accuracy = evaluate(&mlp, &src_test, 512)?.accuracy;
    let base_target_accuracy = evaluate(&mlp, &tgt_test, 512)?.accuracy;

    let mut rows = Vec::new();
    for (k, method) in METHODS.iter().enumerate() {
        let layers: Vec<Linear> = mlp.layers().iter().map(copy_linear).collect::<Result<_>>()?;
        let t0 = Instant::now();
        let mut rng = Rng::new(cfg.seed ^ 0x5eed);
        let (target_accuracy, source_accuracy, trainable) = match k {
            0 => {
                let model = Stack::new(layers, Activation::Relu);
                let params = model.params();
                let n = params.iter().map(|p| p.value().len()).sum();
                let mut opt = AdamW::new(params, ParamsAdamW { lr: 2e-3, ..Default::default() })?;
                train_classifier(&model, &mut opt, &tgt_train, None, &train_cfg(cfg.adapt_epochs, 2e-3))?;
                (evaluate(&model, &tgt_test, 512)?.accuracy, evaluate(&model, &src_test, 512)?.accuracy, n)
            }
            1 | 2 => {
                let adapters: Vec<Box<dyn Adapter>> = layers
                    .into_iter()
                    .map(|l| -> Result<Box<dyn Adapter>> {
                        Ok(if k == 1 {
                            Box::new(LoraLinear::new(l, 4, 8.0, &mut rng)?)
                        } else {
                            Box::new(BlockOft::new(l, 8)?)
                        })
                    })
                    .collect::<Result<_>>()?;
                let mut model = Stack::new(adapters, Activation::Relu);
                let params: Vec<Param> = model.layers.iter().flat_map(|l| l.adapter_params()).collect();
                let n = params.iter().map(|p| p.value().len()).sum();
                let mut opt = AdamW::new(params, ParamsAdamW { lr: 1e-2, ..Default::default() })?;
                train_classifier(&model, &mut opt, &tgt_train, None, &train_cfg(cfg.adapt_epochs, 1e-2))?;
                let tgt = evaluate(&model, &tgt_test, 512)?.accuracy;
                model.layers.iter_mut().try_for_each(|l| l.merge())?;
                (tgt, evaluate(&model, &src_test, 512)?.accuracy, n)
            }
            _ => {
                let mode = match k {
                    3 => GivensMode::Goft,
                    4 => GivensMode::GoftScaled,
                    _ => GivensMode::Qgoft { lambda: cfg.lambda },
                };
                let adapters = layers
                    .into_iter()
                    .map(|l| GivensLinear::with_default(l, GivensConfig::tree(mode)))
                    .collect::<Result<Vec<_>>>()?;
                let mut model = Stack::new(adapters, Activation::Relu);
                let params: Vec<Param> = model.layers.iter().flat_map(|l| l.adapter_params()).collect();
                let n = params.iter().map(|p| p.value().len()).sum();
                let mut opt = AdamW::new(params, ParamsAdamW { lr: 2e-2, ..Default::default() })?;
                let tc = train_cfg(cfg.adapt_epochs, 2e-2);
                train_classifier_with(&model, &mut opt, &tgt_train, None, &tc, |g| model.penalty(g))?;
                let tgt = evaluate(&model, &tgt_test, 512)?.accuracy;
                model.layers.iter_mut().try_for_each(|l| l.merge())?;
                (tgt, evaluate(&model, &src_test, 512)?.accuracy, n)
            }
        };
        rows.push(DemoRow {
            method: method.to_string(),
            trainable,
            target_accuracy,
            source_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
        });
    }
    Ok(DemoReport { base_source_accuracy, base_target_accuracy, pretrain_seconds, rows })
}
