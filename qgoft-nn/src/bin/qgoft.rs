//! The `qgoft` command line: the adapter comparison demo, training small
//! models on optdigits, CSV or MNIST, fine-tuning them with adapters
//! (GOFT, GOFT with scaling, qGOFT, and the LoRA and block-OFT baselines),
//! merging adapters, and inspecting or verifying files.
//!
//! Model checkpoints carry their architecture in the safetensors metadata
//! (`qgoft.model = mlp`, `qgoft.sizes`, `qgoft.activation`). Givens adapters
//! are directories in the reference (PEFT) layout (`qgoft_nn::peft`); LoRA
//! and OFT adapters are single safetensors files carrying `qgoft.method` and
//! their settings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget};
use qgoft_math::Layout;
use qgoft_math::metrics::orthogonality_error;
use qgoft_nn::cuda::Device;
use qgoft_nn::data::{self, Dataset};
use qgoft_nn::layers::{
    Activation, Adapter, BlockOft, GivensConfig, GivensLinear, GivensMode, Linear, LoraLinear, Mlp, Module, Stack,
};
use qgoft_nn::optim::{AdamW, Decay, LrSchedule, ParamsAdamW};
use qgoft_nn::train::{TrainConfig, evaluate, train_classifier, train_classifier_with};
use qgoft_nn::{Error, Param, Result, Rng, Tensor, demo, io, peft};

#[derive(Parser, Debug)]
#[command(name = "qgoft", version, about = "Givens-rotation orthogonal fine-tuning (GOFT/qGOFT) on the CPU")]
struct Cli {
    /// GEMM threads (0: all available cores).
    #[arg(long, global = true, default_value_t = 0)]
    threads: usize,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pretrain an MLP on optdigits, adapt it to shifted digits with every method, print a table.
    Demo(DemoArgs),
    /// Train an MLP classifier and save it as safetensors.
    Train(TrainArgs),
    /// Fine-tune a saved model with an adapter on a shifted-digits task.
    Finetune(FinetuneArgs),
    /// Merge a saved adapter into its base model.
    Merge(MergeArgs),
    /// Describe a safetensors file, or an adapter directory (per-layer orthogonality error, penalty, parameters).
    Inspect {
        /// The file or adapter directory.
        path: PathBuf,
    },
    /// Check a matrix (safetensors, .npy or CSV): orthogonality error, determinant, decomposition round trip.
    /// A model checkpoint is validated and evaluated on optdigits.
    Verify {
        /// The file.
        path: PathBuf,
        /// The tensor to check in a safetensors file with several.
        #[arg(long)]
        tensor: Option<String>,
    },
}

/// `--device`, checked before any work.
#[derive(Args, Debug, Clone)]
struct DeviceArg {
    /// Where to train: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// Training epochs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (AdamW, linear warm-up then cosine decay).
    #[arg(long, default_value_t = 5e-3)]
    lr: f32,
    /// Seed for initialisation, splits, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Seed for the split, initialisation and shuffling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Pretraining epochs.
    #[arg(long, default_value_t = 30)]
    pretrain_epochs: usize,
    /// Adaptation epochs per method.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// qGOFT penalty weight.
    #[arg(long, default_value_t = 1e-3)]
    lambda: f32,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ActivationArg {
    Relu,
    Gelu,
    Tanh,
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Hidden layer widths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    hidden: Vec<usize>,
    /// Activation between layers.
    #[arg(long, value_enum, default_value_t = ActivationArg::Relu)]
    activation: ActivationArg,
    /// Dropout probability after each hidden layer.
    #[arg(long, default_value_t = 0.0)]
    dropout: f32,
    /// Train on a CSV file (numeric features and one label column) instead of optdigits.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Zero-based index of the label column of the CSV file (default: the last).
    #[arg(long)]
    label_column: Option<usize>,
    /// Train on MNIST: the IDX image file (needs --mnist-labels).
    #[arg(long, requires = "mnist_labels")]
    mnist_images: Option<PathBuf>,
    /// MNIST IDX label file.
    #[arg(long, requires = "mnist_images")]
    mnist_labels: Option<PathBuf>,
    /// Where to write the model.
    #[arg(long, short, default_value = "model.safetensors")]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Method {
    /// Low-rank adaptation (baseline).
    Lora,
    /// Block-diagonal OFT with the Cayley map (baseline).
    Oft,
    /// Givens rotations (strict).
    Goft,
    /// Givens rotations and a diagonal scaling.
    GoftScaled,
    /// Quasi-Givens blocks with the orthogonality penalty.
    Qgoft,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LayoutArg {
    /// The reference's tree: ceil(log2 d) stages.
    Tree,
    /// Adjacent planes, d - 1 stages.
    Chain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Task {
    /// Neighbouring pixel columns swapped (the demo's task).
    SwapColumns,
    /// Images mirrored left to right.
    Mirror,
}

#[derive(Args, Debug)]
struct FinetuneArgs {
    #[command(flatten)]
    common: Common,
    /// The base model (from `qgoft train`).
    #[arg(long)]
    base: PathBuf,
    /// Adapter type.
    #[arg(long, value_enum, default_value_t = Method::Goft)]
    method: Method,
    /// The shifted task to adapt to.
    #[arg(long, value_enum, default_value_t = Task::SwapColumns)]
    task: Task,
    /// Layout of the Givens rotations.
    #[arg(long, value_enum, default_value_t = LayoutArg::Tree)]
    layout: LayoutArg,
    /// qGOFT penalty weight.
    #[arg(long, default_value_t = 1e-3)]
    lambda: f32,
    /// LoRA rank.
    #[arg(long, default_value_t = 4)]
    rank: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 8.0)]
    alpha: f32,
    /// OFT block size (must divide every layer's input width).
    #[arg(long, default_value_t = 8)]
    block: usize,
    /// Where to write the adapter (a directory for the Givens methods, a safetensors file otherwise).
    #[arg(long, short)]
    out: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// The base model.
    #[arg(long)]
    base: PathBuf,
    /// The adapter (a Givens adapter directory, or a LoRA/OFT file from `qgoft finetune`).
    #[arg(long)]
    adapter: PathBuf,
    /// Where to write the merged model.
    #[arg(long, short, default_value = "merged.safetensors")]
    out: PathBuf,
}

struct Arch {
    sizes: Vec<usize>,
    activation: Activation,
}

impl Arch {
    fn metadata(&self) -> HashMap<String, String> {
        let sizes: Vec<String> = self.sizes.iter().map(usize::to_string).collect();
        let act = match self.activation {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Tanh => "tanh",
        };
        HashMap::from([
            ("qgoft.model".to_string(), "mlp".to_string()),
            ("qgoft.sizes".to_string(), sizes.join(",")),
            ("qgoft.activation".to_string(), act.to_string()),
        ])
    }

    fn from_metadata(path: &Path, meta: &HashMap<String, String>) -> Result<Arch> {
        let bad = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
        if meta.get("qgoft.model").map(String::as_str) != Some("mlp") {
            return Err(bad("metadata has no qgoft.model = mlp (not a model written by `qgoft train`)".into()));
        }
        let sizes = meta
            .get("qgoft.sizes")
            .ok_or_else(|| bad("metadata lacks qgoft.sizes".into()))?
            .split(',')
            .map(|s| s.trim().parse::<usize>().map_err(|_| bad(format!("qgoft.sizes entry {s:?} is not a size"))))
            .collect::<Result<Vec<_>>>()?;
        let activation = match meta.get("qgoft.activation").map(String::as_str) {
            Some("relu") => Activation::Relu,
            Some("gelu") => Activation::Gelu,
            Some("tanh") => Activation::Tanh,
            other => return Err(bad(format!("unknown qgoft.activation {other:?}"))),
        };
        Ok(Arch { sizes, activation })
    }

    /// Builds the layers and loads the weights of `path` into them.
    fn load(path: &Path) -> Result<(Arch, Vec<Linear>)> {
        let (_, meta) = io::load_checkpoint(path)?;
        let arch = Arch::from_metadata(path, &meta)?;
        let mlp = Mlp::new("mlp", &arch.sizes, arch.activation, 0.0, &mut Rng::new(0))?;
        io::load_params(path, &mlp.params(), true)?;
        Ok((arch, mlp.layers().to_vec()))
    }
}

/// Parses and opens `--device`. The CPU continues; a CUDA device that opens
/// is reported as not wired to this command yet; a failure is the typed error.
fn check_device(arg: &DeviceArg, command: &str) -> std::result::Result<(), String> {
    let device: Device = arg.device.parse().map_err(|e| format!("{e}"))?;
    match device.open() {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(format!(
            "device {device} opened, but `qgoft {command}` trains on the CPU only in this build \
             (the CUDA kernels are available through qgoft_nn::cuda); use --device cpu"
        )),
        Err(e) => Err(format!("cannot use device {device}: {e}")),
    }
}

fn schedule(c: &Common, train_len: usize) -> LrSchedule {
    let total = c.epochs * train_len.div_ceil(c.batch_size.max(1));
    LrSchedule { peak: c.lr, min: 0.05 * c.lr, warmup_steps: total / 20, total_steps: total, decay: Decay::Cosine }
}

fn config(c: &Common, quiet: bool, train_len: usize) -> TrainConfig {
    TrainConfig {
        epochs: c.epochs,
        batch_size: c.batch_size,
        seed: c.seed,
        clip_norm: Some(1.0),
        schedule: Some(schedule(c, train_len)),
        quiet,
    }
}

/// Optdigits with every image mirrored left to right.
fn mirrored(d: &Dataset) -> Result<Dataset> {
    let x = d.features();
    let y = Tensor::from_fn(x.shape(), |k| {
        let (i, p) = (k / 64, k % 64);
        x.data()[i * 64 + (p / 8) * 8 + (7 - p % 8)]
    });
    Dataset::new(y, d.labels().to_vec(), d.num_classes())
}

fn task_data(task: Task) -> Result<Dataset> {
    let d = data::digits()?;
    match task {
        Task::SwapColumns => demo::shifted(&d),
        Task::Mirror => mirrored(&d),
    }
}

fn print_epochs(stats: &[qgoft_nn::train::EpochStats]) {
    for s in stats {
        let acc = s
            .test
            .map_or(String::new(), |t| format!("  test loss {:.4}  test accuracy {:.2} %", t.loss, 100.0 * t.accuracy));
        println!("epoch {:3}  train loss {:.4}{acc}", s.epoch, s.train_loss);
    }
}

fn demo_cmd(a: &DemoArgs, quiet: bool) -> Result<()> {
    let cfg = demo::DemoConfig {
        seed: a.seed,
        pretrain_epochs: a.pretrain_epochs,
        adapt_epochs: a.epochs,
        lambda: a.lambda,
        quiet,
        ..Default::default()
    };
    println!(
        "optdigits (8x8, 1797 images, 20 % held out); MLP 64-{}-10 pretrained for {} epochs, then adapted for {} \
         epochs to the same digits with neighbouring pixel columns swapped; every method adapts every layer",
        cfg.hidden.iter().map(usize::to_string).collect::<Vec<_>>().join("-"),
        cfg.pretrain_epochs,
        cfg.adapt_epochs
    );
    let r = demo::run(&cfg)?;
    println!("pretraining took {:.2} s\n", r.pretrain_seconds);
    print!("{}", r.table(true));
    Ok(())
}

fn train_cmd(a: &TrainArgs, quiet: bool) -> Result<()> {
    let c = &a.common;
    let dataset = match (&a.csv, &a.mnist_images, &a.mnist_labels) {
        (Some(p), _, _) => {
            let text = std::fs::read_to_string(p).map_err(|e| Error::Io { path: p.clone(), source: e })?;
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            let col = a.label_column.unwrap_or(first.split(',').count().saturating_sub(1));
            data::parse_csv(&text, &p.display().to_string(), col, None)?
        }
        (None, Some(x), Some(y)) => data::load_mnist(x, y)?,
        _ => data::digits()?,
    };
    let (train, test) = dataset.split(0.2, &mut Rng::new(c.seed))?;
    let mut sizes = vec![dataset.num_features()];
    sizes.extend(&a.hidden);
    sizes.push(dataset.num_classes());
    let activation = match a.activation {
        ActivationArg::Relu => Activation::Relu,
        ActivationArg::Gelu => Activation::Gelu,
        ActivationArg::Tanh => Activation::Tanh,
    };
    let mlp = Mlp::new("mlp", &sizes, activation, a.dropout, &mut Rng::new(c.seed))?;
    let mut opt = AdamW::new(mlp.params(), ParamsAdamW { lr: c.lr, ..Default::default() })?;
    let stats = train_classifier(&mlp, &mut opt, &train, Some(&test), &config(c, quiet, train.len()))?;
    print_epochs(&stats);
    let arch = Arch { sizes, activation };
    io::save_params(&a.out, &mlp.params(), Some(&arch.metadata()))?;
    println!("saved {}", a.out.display());
    Ok(())
}

fn givens_mode(method: Method, lambda: f32) -> Option<GivensMode> {
    match method {
        Method::Goft => Some(GivensMode::Goft),
        Method::GoftScaled => Some(GivensMode::GoftScaled),
        Method::Qgoft => Some(GivensMode::Qgoft { lambda }),
        Method::Lora | Method::Oft => None,
    }
}

fn wrap_baseline(
    layers: Vec<Linear>,
    method: Method,
    a: &FinetuneArgs,
    rng: &mut Rng,
) -> Result<Vec<Box<dyn Adapter>>> {
    layers
        .into_iter()
        .map(|l| -> Result<Box<dyn Adapter>> {
            Ok(match method {
                Method::Lora => Box::new(LoraLinear::new(l, a.rank, a.alpha, rng)?),
                _ => Box::new(BlockOft::new(l, a.block)?),
            })
        })
        .collect()
}

fn finetune(a: &FinetuneArgs, quiet: bool) -> Result<()> {
    let c = &a.common;
    let (arch, layers) = Arch::load(&a.base)?;
    let (train, test) = task_data(a.task)?.split(0.2, &mut Rng::new(c.seed))?;
    let base = Stack::new(layers.clone(), arch.activation);
    println!(
        "base model on the {:?} task: test accuracy {:.2} %",
        a.task,
        100.0 * evaluate(&base, &test, 512)?.accuracy
    );
    if let Some(mode) = givens_mode(a.method, a.lambda) {
        let layout = if a.layout == LayoutArg::Chain { Layout::Chain } else { Layout::Tree };
        let layers = layers
            .into_iter()
            .map(|l| GivensLinear::with_default(l, GivensConfig { mode, layout }))
            .collect::<Result<Vec<_>>>()?;
        let model = Stack::new(layers, arch.activation);
        let params: Vec<Param> = model.layers.iter().flat_map(|l| l.adapter_params()).collect();
        let n: usize = params.iter().map(|p| p.value().len()).sum();
        println!("{} adapter ({layout:?} layout): {n} trainable parameters", mode.name());
        let mut opt = AdamW::new(params, ParamsAdamW { lr: c.lr, ..Default::default() })?;
        let stats =
            train_classifier_with(&model, &mut opt, &train, Some(&test), &config(c, quiet, train.len()), |g| {
                model.penalty(g)
            })?;
        print_epochs(&stats);
        let out = a.out.clone().unwrap_or_else(|| PathBuf::from("adapter"));
        let base_name = a.base.display().to_string();
        peft::save_adapter(&out, &model.layers, "default", Some(&base_name))?;
        println!("saved {}", out.display());
        return Ok(());
    }
    let adapters = wrap_baseline(layers, a.method, a, &mut Rng::new(c.seed))?;
    let adapter_params: Vec<Param> = adapters.iter().flat_map(|l| l.adapter_params()).collect();
    let n_train: usize = adapter_params.iter().map(|p| p.value().len()).sum();
    let model = Stack::new(adapters, arch.activation);
    println!("{:?} adapter: {n_train} trainable parameters", a.method);
    let mut opt = AdamW::new(adapter_params.clone(), ParamsAdamW { lr: c.lr, ..Default::default() })?;
    let stats = train_classifier(&model, &mut opt, &train, Some(&test), &config(c, quiet, train.len()))?;
    print_epochs(&stats);
    let mut meta = HashMap::from([
        ("qgoft.method".to_string(), format!("{:?}", a.method).to_lowercase()),
        ("qgoft.rank".to_string(), a.rank.to_string()),
        ("qgoft.alpha".to_string(), a.alpha.to_string()),
        ("qgoft.block".to_string(), a.block.to_string()),
    ]);
    meta.extend(arch.metadata());
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("adapter.safetensors"));
    io::save_params(&out, &adapter_params, Some(&meta))?;
    println!("saved {}", out.display());
    Ok(())
}

fn merge(a: &MergeArgs) -> Result<()> {
    let (arch, layers) = Arch::load(&a.base)?;
    if a.adapter.is_dir() {
        let mut layers: Vec<GivensLinear> = layers.into_iter().map(GivensLinear::new).collect();
        let file = peft::load_adapter(&a.adapter, &mut layers, "default", None)?;
        for l in layers.iter_mut().filter(|l| l.adapter("default").is_some()) {
            l.merge_adapter("default")?;
        }
        let merged: Vec<Param> = layers.iter().flat_map(|l| l.base().params()).collect();
        io::save_params(&a.out, &merged, Some(&arch.metadata()))?;
        println!(
            "merged {} ({} modules) into {} -> {}",
            a.adapter.display(),
            file.modules.len(),
            a.base.display(),
            a.out.display()
        );
        return Ok(());
    }
    let (_, meta) = io::load_checkpoint(&a.adapter)?;
    let bad = |reason: String| Error::Checkpoint { path: a.adapter.clone(), reason };
    let get = |k: &str| meta.get(k).ok_or_else(|| bad(format!("metadata lacks {k}")));
    let num = |k: &str| get(k)?.parse::<f64>().map_err(|_| bad(format!("metadata {k} is not a number")));
    let method = match get("qgoft.method")?.as_str() {
        "lora" => Method::Lora,
        "oft" => Method::Oft,
        m => return Err(bad(format!("unknown adapter method {m:?} (Givens adapters are directories)"))),
    };
    let args = FinetuneArgs {
        common: Common { epochs: 0, batch_size: 1, lr: 0.0, seed: 0 },
        base: a.base.clone(),
        method,
        task: Task::SwapColumns,
        layout: LayoutArg::Tree,
        lambda: 0.0,
        rank: num("qgoft.rank")? as usize,
        alpha: num("qgoft.alpha")? as f32,
        block: num("qgoft.block")? as usize,
        out: None,
        device: DeviceArg { device: "cpu".into() },
    };
    let mut adapters = wrap_baseline(layers, method, &args, &mut Rng::new(0))?;
    let params: Vec<Param> = adapters.iter().flat_map(|l| l.adapter_params()).collect();
    io::load_params(&a.adapter, &params, true)?;
    for l in &mut adapters {
        l.merge()?;
    }
    let merged: Vec<Param> = adapters.iter().flat_map(|l| l.base().params()).collect();
    io::save_params(&a.out, &merged, Some(&arch.metadata()))?;
    println!("merged {} into {} -> {}", a.adapter.display(), a.base.display(), a.out.display());
    Ok(())
}

fn inspect_adapter(dir: &Path, quiet: bool) -> Result<()> {
    let file = peft::read_adapter(dir)?;
    let raw = peft::raw_config(dir)?;
    for (k, v) in &raw {
        println!("config {k} = {v}");
    }
    let c = &file.config;
    let mode = c.mode(file.lambda.unwrap_or(0.0));
    println!(
        "mode {}  layout {:?}  lambda {}",
        mode.name(),
        file.layout,
        file.lambda.map_or("-".into(), |l| l.to_string())
    );
    println!("{:60} {:>6} {:>8} {:>14} {:>14}", "module", "d", "params", "orth. error", "penalty");
    let bar = progress(file.modules.len(), quiet);
    let mut total = 0usize;
    for m in &file.modules {
        let k = m.hard.as_ref().map_or_else(|| m.soft.as_ref().map_or(0, |s| s.shape()[0]), Tensor::len);
        let d = m.scaler.as_ref().map_or(k + 1, Tensor::len);
        let mut linear = GivensLinear::new(Linear::from_params(
            Param::new(format!("{}.weight", m.module), qgoft_nn::ParamKind::Weight, Tensor::zeros(&[1, d])),
            None,
        )?);
        // An adapter on a stand-in layer of the right width, loaded with the module's tensors.
        let a = linear.add_adapter("inspect", GivensConfig { mode, layout: file.layout })?;
        let values = if mode.is_strict() { m.hard.clone() } else { m.soft.clone() };
        if let Some(v) = values {
            a.params().set(v)?;
        }
        if let (Some(s), Some(p)) = (&m.scaler, a.scaler()) {
            p.set(s.clone())?;
        }
        let r = a.rotation()?;
        // Orthogonality of the rotation part (the scaling is not meant to be orthogonal).
        let unscaled = if mode.is_strict() {
            qgoft_math::RotationBuf::from_angles(
                file.layout,
                d,
                qgoft_nn::layers::givens::ANGLE_MAP,
                a.params().value().data(),
                None,
            )?
        } else {
            r
        };
        let err = orthogonality_error(&unscaled.to_dense(), d)?;
        let n = a.num_trainable();
        total += n;
        println!("{:60} {d:>6} {n:>8} {:>14.3e} {:>14.3e}", m.module, err.frobenius, a.penalty_value()?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("{} modules, {total} trainable parameters", file.modules.len());
    Ok(())
}

fn progress(len: usize, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn inspect(path: &Path, quiet: bool) -> Result<()> {
    if path.is_dir() {
        return inspect_adapter(path, quiet);
    }
    let (tensors, meta) = io::load_checkpoint(path)?;
    let mut keys: Vec<_> = meta.iter().collect();
    keys.sort();
    for (k, v) in keys {
        println!("metadata {k} = {v}");
    }
    let mut total = 0;
    for (name, t) in &tensors {
        total += t.len();
        println!("{name:40} F32 {:?}  norm {:.6e}  max |x| {:.6e}", t.shape(), t.sum_squares().sqrt(), t.max_abs());
    }
    println!("{} tensors, {total} values", tensors.len());
    Ok(())
}

/// Reads a square matrix from a `.npy` (f4 or f8, C or Fortran order) file.
fn read_npy(path: &Path) -> Result<(usize, usize, Vec<f64>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let bad = |reason: &str| Error::Data { source_name: path.display().to_string(), reason: reason.to_string() };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unsupported .npy version")),
    };
    let header = bytes.get(start..start + hlen).ok_or_else(|| bad("truncated header"))?;
    let header = String::from_utf8_lossy(header);
    let descr =
        ["<f4", "<f8"].into_iter().find(|d| header.contains(d)).ok_or_else(|| bad("dtype must be <f4 or <f8"))?;
    let fortran = header.contains("'fortran_order': True");
    let shape_txt = header
        .split("'shape':")
        .nth(1)
        .and_then(|s| s.split('(').nth(1))
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape in header"))?;
    let dims: Vec<usize> = shape_txt
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("bad shape"))?;
    let [r, c] = dims[..] else { return Err(bad("the array is not two-dimensional")) };
    let body = &bytes[start + hlen..];
    let size = if descr == "<f4" { 4 } else { 8 };
    if body.len() != r * c * size {
        return Err(bad(&format!("data has {} bytes, the shape needs {}", body.len(), r * c * size)));
    }
    let vals: Vec<f64> = body
        .chunks_exact(size)
        .map(|b| {
            if size == 4 {
                f64::from(f32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
            } else {
                f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
            }
        })
        .collect();
    let vals = if fortran { (0..r * c).map(|k| vals[(k % c) * r + k / c]).collect() } else { vals };
    Ok((r, c, vals))
}

fn read_csv_matrix(path: &Path) -> Result<(usize, usize, Vec<f64>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row = line
            .split(',')
            .map(|f| {
                f.trim().parse::<f64>().map_err(|_| Error::Data {
                    source_name: path.display().to_string(),
                    reason: format!("line {}: {f:?} is not a number", i + 1),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        rows.push(row);
    }
    let c = rows.first().map_or(0, Vec::len);
    if let Some(i) = rows.iter().position(|r| r.len() != c) {
        return Err(Error::Data {
            source_name: path.display().to_string(),
            reason: format!("row {} has {} fields, the first has {c}", i + 1, rows[i].len()),
        });
    }
    Ok((rows.len(), c, rows.concat()))
}

/// Determinant by LU with partial pivoting, in f64.
fn determinant(d: usize, a: &[f64]) -> f64 {
    let mut m = a.to_vec();
    let mut det = 1.0;
    for k in 0..d {
        let p = (k..d).max_by(|&i, &j| m[i * d + k].abs().total_cmp(&m[j * d + k].abs())).unwrap_or(k);
        if m[p * d + k] == 0.0 {
            return 0.0;
        }
        if p != k {
            for j in 0..d {
                m.swap(k * d + j, p * d + j);
            }
            det = -det;
        }
        let piv = m[k * d + k];
        det *= piv;
        for i in k + 1..d {
            let f = m[i * d + k] / piv;
            for j in k..d {
                m[i * d + j] -= f * m[k * d + j];
            }
        }
    }
    det
}

/// Orthogonality tolerance for `verify`'s decomposition: matrices read from
/// files are often stored in `f32`, far from `f64` rounding.
const VERIFY_TOLERANCE: f64 = 1e-3;

/// The round-trip error `norm(Q(theta(Q)) - Q)_F` of decomposing `Q` into
/// full-layout angles and rebuilding it, and whether a reflection had to be
/// factored out (`det Q = -1`).
fn decomposition_roundtrip(q: &[f64], d: usize) -> std::result::Result<(f64, bool), qgoft_math::Error> {
    use qgoft_math::decompose::{DecomposeOptions, decompose_with, rebuild};
    let opts = DecomposeOptions { tolerance: Some(VERIFY_TOLERANCE), allow_reflection: true };
    let dec = decompose_with(qgoft_math::Layout::Full, q, d, &opts)?;
    let mut back = rebuild(qgoft_math::Layout::Full, &dec.angles, d)?;
    if dec.reflected {
        back[(d - 1) * d..].iter_mut().for_each(|v| *v = -*v);
    }
    let err = back.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    Ok((err, dec.reflected))
}

fn verify_matrix(path: &Path, name: &str, d: usize, q: &[f64]) -> Result<()> {
    println!("{}: matrix {name}, {d} x {d}", path.display());
    let err = orthogonality_error(q, d)?;
    // The unit roundoff of each precision the matrix may have been computed in.
    let (u_f32, u_f64) = (f64::from(f32::EPSILON) / 2.0, f64::EPSILON / 2.0);
    println!(
        "orthogonality error  norm(Q^T Q - I)_F = {:.3e}  (max entry {:.3e}; target 2 u d = {:.3e} in f32, {:.3e} in f64)",
        err.frobenius,
        err.max,
        2.0 * u_f32 * d as f64,
        2.0 * u_f64 * d as f64
    );
    let det = determinant(d, q);
    println!(
        "determinant {det:.9}  ({})",
        if (det - 1.0).abs() < 1e-3 {
            "special orthogonal"
        } else if (det + 1.0).abs() < 1e-3 {
            "a reflection: not in SO(d)"
        } else {
            "not orthogonal"
        }
    );
    match decomposition_roundtrip(q, d) {
        Ok((e, reflected)) => println!(
            "decomposition round trip  norm(Q(theta) - Q)_F = {e:.3e}  ({} full-layout angles{})",
            d * (d - 1) / 2,
            if reflected { ", one reflection factored out" } else { "" }
        ),
        Err(e) => println!("decomposition: {e}"),
    }
    Ok(())
}

fn verify(path: &Path, tensor: Option<&str>) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let square = |r: usize, c: usize| {
        if r == c && r > 0 { Ok(r) } else { Err(invalid("matrix shape (square, non-empty)", format!("{r} x {c}"))) }
    };
    if ext == "npy" || ext == "csv" {
        let (r, c, q) = if ext == "npy" { read_npy(path)? } else { read_csv_matrix(path)? };
        return verify_matrix(path, &ext, square(r, c)?, &q);
    }
    let (tensors, meta) = io::load_checkpoint(path)?;
    println!("{}: {} tensors, header and data valid, all values finite", path.display(), tensors.len());
    let pick = match tensor {
        Some(n) => Some(tensors.iter().find(|(k, _)| k == n).ok_or_else(|| invalid("tensor name", n))?),
        None if tensors.len() == 1 && !meta.contains_key("qgoft.model") => tensors.first(),
        None => None,
    };
    if let Some((name, t)) = pick {
        let (r, c) = t.dims2()?;
        let q: Vec<f64> = t.data().iter().map(|&v| f64::from(v)).collect();
        return verify_matrix(path, name, square(r, c)?, &q);
    }
    if meta.contains_key("qgoft.model") && !meta.contains_key("qgoft.method") {
        let (arch, layers) = Arch::load(path)?;
        let model = Stack::new(layers, arch.activation);
        let d = data::digits()?;
        if arch.sizes.first() == Some(&d.num_features()) && arch.sizes.last() == Some(&d.num_classes()) {
            println!("accuracy on all of optdigits {:.2} %", 100.0 * evaluate(&model, &d, 512)?.accuracy);
        }
    }
    Ok(())
}

fn invalid(what: &str, value: impl std::fmt::Display) -> Error {
    Error::InvalidArgument { what: what.to_string(), value: value.to_string() }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    qgoft_nn::linalg::retain_freed_memory();
    qgoft_nn::linalg::set_num_threads(cli.threads);
    let device = match &cli.command {
        Command::Demo(a) => Some((&a.device, "demo")),
        Command::Train(a) => Some((&a.device, "train")),
        Command::Finetune(a) => Some((&a.device, "finetune")),
        _ => None,
    };
    if let Some((arg, name)) = device
        && let Err(msg) = check_device(arg, name)
    {
        eprintln!("error: {msg}");
        return ExitCode::FAILURE;
    }
    let result = match &cli.command {
        Command::Demo(a) => demo_cmd(a, cli.quiet),
        Command::Train(a) => train_cmd(a, cli.quiet),
        Command::Finetune(a) => finetune(a, cli.quiet),
        Command::Merge(a) => merge(a),
        Command::Inspect { path } => inspect(path, cli.quiet),
        Command::Verify { path, tensor } => verify(path, tensor.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
