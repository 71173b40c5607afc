//! The `qgoft` command line: train small models on optdigits, CSV or MNIST,
//! fine-tune them with adapters, merge adapters, and inspect or verify
//! safetensors checkpoints.
//!
//! Model checkpoints carry their architecture in the safetensors metadata
//! (`qgoft.model = mlp`, `qgoft.sizes`, `qgoft.activation`); adapter files
//! carry `qgoft.method` and its settings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use qgoft_nn::data::{self, Dataset};
use qgoft_nn::io;
use qgoft_nn::layers::{Activation, Adapter, BlockOft, Linear, LoraLinear, Mlp, Module};
use qgoft_nn::optim::{AdamW, Decay, LrSchedule, ParamsAdamW};
use qgoft_nn::train::{TrainConfig, evaluate, train_classifier};
use qgoft_nn::{Error, Graph, Param, Result, Rng, Tensor, Var};

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
    /// Pretrain an MLP on the embedded optdigits set and report accuracy.
    Demo(DemoArgs),
    /// Train an MLP classifier and save it as safetensors.
    Train(TrainArgs),
    /// Fine-tune a saved model with an adapter on the mirrored-digits task.
    Finetune(FinetuneArgs),
    /// Merge a saved adapter into its base model.
    Merge(MergeArgs),
    /// List the tensors and metadata of a safetensors file.
    Inspect {
        /// The file.
        path: PathBuf,
    },
    /// Validate a checkpoint and, for a model, evaluate it on optdigits.
    Verify {
        /// The file.
        path: PathBuf,
    },
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
    #[command(flatten)]
    common: Common,
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Method {
    /// Low-rank adaptation (baseline).
    Lora,
    /// Block-diagonal OFT with the Cayley map (baseline).
    Oft,
    /// Givens-rotation adapter (strict or quasi).
    Qgoft,
}

#[derive(Args, Debug)]
struct FinetuneArgs {
    #[command(flatten)]
    common: Common,
    /// The base model (from `qgoft train`).
    #[arg(long)]
    base: PathBuf,
    /// Adapter type.
    #[arg(long, value_enum, default_value_t = Method::Lora)]
    method: Method,
    /// LoRA rank.
    #[arg(long, default_value_t = 4)]
    rank: usize,
    /// LoRA alpha.
    #[arg(long, default_value_t = 8.0)]
    alpha: f32,
    /// OFT block size (must divide every layer's input width).
    #[arg(long, default_value_t = 8)]
    block: usize,
    /// Where to write the adapter.
    #[arg(long, short, default_value = "adapter.safetensors")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// The base model.
    #[arg(long)]
    base: PathBuf,
    /// The adapter (from `qgoft finetune`).
    #[arg(long)]
    adapter: PathBuf,
    /// Where to write the merged model.
    #[arg(long, short, default_value = "merged.safetensors")]
    out: PathBuf,
}

/// An MLP whose layers may be wrapped by adapters.
struct Stack {
    layers: Vec<Box<dyn Module>>,
    activation: Activation,
}

impl Module for Stack {
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
        self.layers.iter().flat_map(|l| l.params()).collect()
    }
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

/// Optdigits with every image mirrored left to right: the fine-tuning task.
fn mirrored(d: &Dataset) -> Result<Dataset> {
    let x = d.features();
    let y = Tensor::from_fn(x.shape(), |k| {
        let (i, p) = (k / 64, k % 64);
        x.data()[i * 64 + (p / 8) * 8 + (7 - p % 8)]
    });
    Dataset::new(y, d.labels().to_vec(), d.num_classes())
}

fn print_epochs(stats: &[qgoft_nn::train::EpochStats]) {
    for s in stats {
        let acc = s
            .test
            .map_or(String::new(), |t| format!("  test loss {:.4}  test accuracy {:.2} %", t.loss, 100.0 * t.accuracy));
        println!("epoch {:3}  train loss {:.4}{acc}", s.epoch, s.train_loss);
    }
}

fn demo(a: &DemoArgs, quiet: bool) -> Result<()> {
    let c = &a.common;
    let (train, test) = data::digits()?.split(0.2, &mut Rng::new(c.seed))?;
    let mlp = Mlp::new("mlp", &[64, 64, 10], Activation::Relu, 0.0, &mut Rng::new(c.seed))?;
    let mut opt = AdamW::new(mlp.params(), ParamsAdamW { lr: c.lr, ..Default::default() })?;
    println!("optdigits: {} training and {} test images (8x8), MLP 64-64-10", train.len(), test.len());
    let stats = train_classifier(&mlp, &mut opt, &train, Some(&test), &config(c, quiet, train.len()))?;
    print_epochs(&stats);
    let e = evaluate(&mlp, &test, 512)?;
    println!("final test accuracy {:.2} %", 100.0 * e.accuracy);
    println!("(the adapter comparison table needs the qGOFT adapter, which this build does not include yet)");
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

fn wrap(layers: Vec<Linear>, method: Method, a: &FinetuneArgs, rng: &mut Rng) -> Result<Vec<Box<dyn Adapter>>> {
    layers
        .into_iter()
        .map(|l| -> Result<Box<dyn Adapter>> {
            Ok(match method {
                Method::Lora => Box::new(LoraLinear::new(l, a.rank, a.alpha, rng)?),
                Method::Oft => Box::new(BlockOft::new(l, a.block)?),
                Method::Qgoft => unreachable!("rejected before wrapping"),
            })
        })
        .collect()
}

fn not_yet() -> Error {
    Error::InvalidArgument {
        what: "adapter method".into(),
        value: "qgoft: the Givens adapter is not included in this build yet (use lora or oft)".into(),
    }
}

fn finetune(a: &FinetuneArgs, quiet: bool) -> Result<()> {
    if a.method == Method::Qgoft {
        return Err(not_yet());
    }
    let c = &a.common;
    let (arch, layers) = Arch::load(&a.base)?;
    let task = mirrored(&data::digits()?)?;
    let (train, test) = task.split(0.2, &mut Rng::new(c.seed))?;
    let base = Stack {
        layers: layers.iter().cloned().map(|l| Box::new(l) as Box<dyn Module>).collect(),
        activation: arch.activation,
    };
    println!("base model on mirrored digits: test accuracy {:.2} %", 100.0 * evaluate(&base, &test, 512)?.accuracy);
    let adapters = wrap(layers, a.method, a, &mut Rng::new(c.seed))?;
    let adapter_params: Vec<Param> = adapters.iter().flat_map(|l| l.adapter_params()).collect();
    let n_train: usize = adapter_params.iter().map(|p| p.value().len()).sum();
    let model =
        Stack { layers: adapters.into_iter().map(|l| l as Box<dyn Module>).collect(), activation: arch.activation };
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
    io::save_params(&a.out, &adapter_params, Some(&meta))?;
    println!("saved {}", a.out.display());
    Ok(())
}

fn merge(a: &MergeArgs) -> Result<()> {
    let (arch, layers) = Arch::load(&a.base)?;
    let (_, meta) = io::load_checkpoint(&a.adapter)?;
    let bad = |reason: String| Error::Checkpoint { path: a.adapter.clone(), reason };
    let get = |k: &str| meta.get(k).ok_or_else(|| bad(format!("metadata lacks {k}")));
    let num = |k: &str| get(k)?.parse::<f64>().map_err(|_| bad(format!("metadata {k} is not a number")));
    let method = match get("qgoft.method")?.as_str() {
        "lora" => Method::Lora,
        "oft" => Method::Oft,
        "qgoft" => return Err(not_yet()),
        m => return Err(bad(format!("unknown adapter method {m:?}"))),
    };
    let args = FinetuneArgs {
        common: Common { epochs: 0, batch_size: 1, lr: 0.0, seed: 0 },
        base: a.base.clone(),
        method,
        rank: num("qgoft.rank")? as usize,
        alpha: num("qgoft.alpha")? as f32,
        block: num("qgoft.block")? as usize,
        out: a.out.clone(),
    };
    let mut adapters = wrap(layers, method, &args, &mut Rng::new(0))?;
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

fn inspect(path: &Path) -> Result<()> {
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

fn verify(path: &Path) -> Result<()> {
    let (tensors, meta) = io::load_checkpoint(path)?;
    println!("{}: {} tensors, header and data valid, all values finite", path.display(), tensors.len());
    if meta.contains_key("qgoft.model") && !meta.contains_key("qgoft.method") {
        let (arch, layers) = Arch::load(path)?;
        let model = Stack {
            layers: layers.into_iter().map(|l| Box::new(l) as Box<dyn Module>).collect(),
            activation: arch.activation,
        };
        let d = data::digits()?;
        if arch.sizes.first() == Some(&d.num_features()) && arch.sizes.last() == Some(&d.num_classes()) {
            println!("accuracy on all of optdigits {:.2} %", 100.0 * evaluate(&model, &d, 512)?.accuracy);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    qgoft_nn::linalg::set_num_threads(cli.threads);
    let result = match &cli.command {
        Command::Demo(a) => demo(a, cli.quiet),
        Command::Train(a) => train_cmd(a, cli.quiet),
        Command::Finetune(a) => finetune(a, cli.quiet),
        Command::Merge(a) => merge(a),
        Command::Inspect { path } => inspect(path),
        Command::Verify { path } => verify(path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
