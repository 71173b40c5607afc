//! Adapter files in the reference (PEFT) layout.
//!
//! An adapter is a directory holding
//!
//! * `adapter_config.json`: `"peft_type": "GIVENS"`, `"strict_oft"` (GOFT vs
//!   qGOFT), `"no_scaling"`, `"target_modules"` and the reference's other
//!   keys with their default values (`fast_config: false`,
//!   `fan_in_fan_out: false`, `beta: 1.0`, `bias: "none"`,
//!   `modules_to_save: null`, `init_givens_weights: true`,
//!   `layers_to_transform: null`, `layers_pattern: null`,
//!   `strict_oft_pattern: {}`, `no_scaling_pattern: {}`,
//!   `base_model_name_or_path`, `revision: null`, `task_type: null`,
//!   `inference_mode: true`);
//! * `adapter_model.safetensors`: per adapted module, `F32` tensors
//!   `base_model.model.<module>.givens_hard` (`[K]` raw angle parameters,
//!   `theta = pi tanh(p)`), `...givens_soft` (`[K, 2, 2]` quasi blocks
//!   `[[a, b], [c, e]]`) and, when scaling is on, `...givens_scaler` (`[d]`),
//!   with `K = d - 1` for the tree layout. Both `givens_hard` and
//!   `givens_soft` are written (the unused one at its initial value), as the
//!   reference does. The layout, if not the tree, and the qGOFT penalty
//!   weight are kept in the safetensors metadata (`qgoft.layout`,
//!   `qgoft.lambda`); a file without them is a tree-layout file.
//!
//! **Validation policy.** Reading checks everything before anything is
//! changed, and every failure is an [`Error::Checkpoint`] naming the file and
//! what is wrong:
//! * the safetensors header and data (truncation, dtype other than `F32`,
//!   non-finite values), tensor names (a name that is not
//!   `base_model.model.<module>.givens_{hard,soft,scaler}` is an error naming
//!   it), shapes (`[K]`, `[K, 2, 2]`, `[d]`, consistent with each other and,
//!   when loading into a model, with the layer's width);
//! * every module of the file must be a layer of the model and listed by
//!   `target_modules`; every targeted layer of the model must be in the file;
//! * the config must be a JSON object with `peft_type` `"GIVENS"`. **An
//!   unknown key is an error naming the key** (a key we do not know could
//!   change the meaning of the tensors). Keys whose non-default values change
//!   semantics this crate does not implement are errors naming the key and
//!   value: `fast_config: true`, `fan_in_fan_out: true`, `bias` other than
//!   `"none"`, a non-empty `modules_to_save`, `layers_to_transform` or
//!   `layers_pattern` not null, a non-empty `strict_oft_pattern` or
//!   `no_scaling_pattern`, and a regular-expression `target_modules` string.
//!   `beta`, `init_givens_weights`, `base_model_name_or_path`, `revision`,
//!   `task_type`, `inference_mode` and PEFT's `auto_mapping` are accepted
//!   (they do not change what the tensors mean here).
//! * With `strict_oft: false` the reference applies no scaling; a
//!   `givens_scaler` tensor in such a file is validated and then ignored, as
//!   the reference ignores it.
//!
//! Both files are written atomically ([`crate::io::atomic_write`]), the
//! tensors first: an interrupted save never leaves a half-written file, though
//! it can leave a new tensor file beside the previous configuration.
//!
//! ```
//! use qgoft_nn::layers::{GivensConfig, GivensLinear, GivensMode, Linear, Module};
//! use qgoft_nn::{peft, Graph, Rng, Tensor};
//! let mut rng = Rng::new(0);
//! let layer = GivensLinear::with_default(Linear::new("fc", 4, 3, true, &mut rng), GivensConfig::tree(GivensMode::GoftScaled))?;
//! layer.active().unwrap().params().set(Tensor::new(vec![3], vec![0.1, -0.2, 0.3])?)?;
//! let dir = std::env::temp_dir().join(format!("qgoft-doc-peft-{}", std::process::id()));
//! peft::save_adapter(&dir, std::slice::from_ref(&layer), "default", None)?;
//! let mut other = vec![GivensLinear::new(layer.base().clone())];
//! peft::load_adapter(&dir, &mut other, "loaded", None)?;
//! assert_eq!(*other[0].adapter("loaded").unwrap().params().value(), *layer.active().unwrap().params().value());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # use qgoft_nn::layers::Adapter;
//! # Ok::<(), qgoft_nn::Error>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use qgoft_math::Layout;
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::io;
use crate::layers::{Adapter, GivensConfig, GivensLinear, GivensMode};
use crate::tensor::Tensor;

/// The prefix of module paths in adapter files.
pub const MODEL_PREFIX: &str = "base_model.model.";
/// The configuration file's name.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The tensor file's name.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The configuration keys this crate reads (see the module documentation).
pub const KNOWN_KEYS: [&str; 19] = [
    "peft_type",
    "strict_oft",
    "no_scaling",
    "target_modules",
    "fast_config",
    "fan_in_fan_out",
    "beta",
    "bias",
    "modules_to_save",
    "init_givens_weights",
    "layers_to_transform",
    "layers_pattern",
    "strict_oft_pattern",
    "no_scaling_pattern",
    "base_model_name_or_path",
    "revision",
    "task_type",
    "inference_mode",
    "auto_mapping",
];

/// The meaningful part of `adapter_config.json`.
///
/// ```
/// use qgoft_nn::layers::GivensMode;
/// use qgoft_nn::peft::AdapterConfig;
/// let c = AdapterConfig::for_mode(GivensMode::GoftScaled, vec!["fc".into()]);
/// assert!(c.strict_oft && !c.no_scaling);
/// let back = AdapterConfig::from_json(&c.to_json(), "x".as_ref())?;
/// assert_eq!(back, c);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterConfig {
    /// Exact rotations (GOFT) rather than quasi blocks (qGOFT).
    pub strict_oft: bool,
    /// No diagonal scaling.
    pub no_scaling: bool,
    /// Module names (a module is targeted if its path equals one or ends with `.` and one).
    pub target_modules: Vec<String>,
    /// The base model's name or path.
    pub base_model_name_or_path: Option<String>,
    /// The base model's revision.
    pub revision: Option<String>,
    /// PEFT task type.
    pub task_type: Option<String>,
    /// Written for inference.
    pub inference_mode: bool,
}

impl AdapterConfig {
    /// The configuration of a mode.
    ///
    /// ```
    /// use qgoft_nn::{layers::GivensMode, peft::AdapterConfig};
    /// assert!(!AdapterConfig::for_mode(GivensMode::Qgoft { lambda: 0.1 }, vec![]).strict_oft);
    /// ```
    pub fn for_mode(mode: GivensMode, target_modules: Vec<String>) -> Self {
        AdapterConfig {
            strict_oft: mode.is_strict(),
            no_scaling: !mode.has_scaling(),
            target_modules,
            base_model_name_or_path: None,
            revision: None,
            task_type: None,
            inference_mode: true,
        }
    }

    /// The mode the configuration describes (`lambda` for qGOFT).
    ///
    /// ```
    /// use qgoft_nn::{layers::GivensMode, peft::AdapterConfig};
    /// assert_eq!(AdapterConfig::for_mode(GivensMode::Goft, vec![]).mode(0.0), GivensMode::Goft);
    /// ```
    pub fn mode(&self, lambda: f32) -> GivensMode {
        match (self.strict_oft, self.no_scaling) {
            (true, true) => GivensMode::Goft,
            (true, false) => GivensMode::GoftScaled,
            (false, _) => GivensMode::Qgoft { lambda },
        }
    }

    /// Whether a module path is targeted.
    ///
    /// ```
    /// use qgoft_nn::{layers::GivensMode, peft::AdapterConfig};
    /// let c = AdapterConfig::for_mode(GivensMode::Goft, vec!["query".into()]);
    /// assert!(c.targets("encoder.layer.0.query") && !c.targets("encoder.layer.0.key"));
    /// ```
    pub fn targets(&self, module: &str) -> bool {
        self.target_modules.iter().any(|t| module == t || module.ends_with(&format!(".{t}")))
    }

    /// The JSON text, with every key of the reference.
    ///
    /// ```
    /// use qgoft_nn::{layers::GivensMode, peft::AdapterConfig};
    /// assert!(AdapterConfig::for_mode(GivensMode::Goft, vec![]).to_json().contains("\"peft_type\": \"GIVENS\""));
    /// ```
    pub fn to_json(&self) -> String {
        let v = json!({
            "peft_type": "GIVENS",
            "strict_oft": self.strict_oft,
            "no_scaling": self.no_scaling,
            "target_modules": self.target_modules,
            "fast_config": false,
            "fan_in_fan_out": false,
            "beta": 1.0,
            "bias": "none",
            "modules_to_save": null,
            "init_givens_weights": true,
            "layers_to_transform": null,
            "layers_pattern": null,
            "strict_oft_pattern": {},
            "no_scaling_pattern": {},
            "base_model_name_or_path": self.base_model_name_or_path,
            "revision": self.revision,
            "task_type": self.task_type,
            "inference_mode": self.inference_mode,
        });
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    /// Parses and validates `adapter_config.json` text (policy in the module
    /// documentation); `path` names the file in errors.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the offending key and value.
    ///
    /// ```
    /// let e = qgoft_nn::peft::AdapterConfig::from_json(
    ///     r#"{"peft_type": "GIVENS", "strict_oft": true, "target_modules": ["q"], "lora_alpha": 8}"#, "c.json".as_ref());
    /// assert!(e.unwrap_err().to_string().contains("lora_alpha"));
    /// ```
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
        let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let obj = v.as_object().ok_or_else(|| bad("the configuration is not a JSON object".into()))?;
        if let Some(k) = obj.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(bad(format!("unknown configuration key {k:?} (known: {})", KNOWN_KEYS.join(", "))));
        }
        let unsupported = |k: &str, v: &Value| bad(format!("configuration key {k:?} = {v} is not supported"));
        match obj.get("peft_type") {
            Some(Value::String(s)) if s == "GIVENS" => {}
            other => return Err(bad(format!("peft_type must be \"GIVENS\", found {other:?}"))),
        }
        let boolean = |k: &str, default: Option<bool>| -> Result<bool> {
            match (obj.get(k), default) {
                (Some(Value::Bool(b)), _) => Ok(*b),
                (None | Some(Value::Null), Some(d)) => Ok(d),
                (None, None) => Err(bad(format!("configuration key {k:?} is missing"))),
                (Some(v), _) => Err(bad(format!("configuration key {k:?} must be true or false, found {v}"))),
            }
        };
        let opt_string = |k: &str| -> Result<Option<String>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => Err(bad(format!("configuration key {k:?} must be a string or null, found {v}"))),
            }
        };
        let strict_oft = boolean("strict_oft", None)?;
        let no_scaling = boolean("no_scaling", Some(false))?;
        for k in ["fast_config", "fan_in_fan_out"] {
            if boolean(k, Some(false))? {
                return Err(unsupported(k, &obj[k]));
            }
        }
        boolean("init_givens_weights", Some(true))?;
        let inference_mode = boolean("inference_mode", Some(true))?;
        match obj.get("beta") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => {}
            Some(v) => return Err(bad(format!("configuration key \"beta\" must be a number, found {v}"))),
        }
        match obj.get("bias") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "none" => {}
            Some(v) => return Err(unsupported("bias", v)),
        }
        for k in ["modules_to_save", "layers_to_transform", "layers_pattern"] {
            match obj.get(k) {
                None | Some(Value::Null) => {}
                Some(Value::Array(a)) if a.is_empty() => {}
                Some(v) => return Err(unsupported(k, v)),
            }
        }
        for k in ["strict_oft_pattern", "no_scaling_pattern"] {
            match obj.get(k) {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) if m.is_empty() => {}
                Some(v) => return Err(unsupported(k, v)),
            }
        }
        match obj.get("auto_mapping") {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(v) => {
                return Err(bad(format!("configuration key \"auto_mapping\" must be an object or null, found {v}")));
            }
        }
        let target_modules = match obj.get("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|t| match t {
                    Value::String(s) if !s.is_empty() => Ok(s.clone()),
                    other => Err(bad(format!("target_modules entry {other} is not a module name"))),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(Value::String(s)) if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "._-".contains(c)) => {
                vec![s.clone()]
            }
            Some(v @ Value::String(_)) => {
                return Err(bad(format!("target_modules {v} looks like a regular expression, which is not supported")));
            }
            other => return Err(bad(format!("target_modules must be a list of module names, found {other:?}"))),
        };
        Ok(AdapterConfig {
            strict_oft,
            no_scaling,
            target_modules,
            base_model_name_or_path: opt_string("base_model_name_or_path")?,
            revision: opt_string("revision")?,
            task_type: opt_string("task_type")?,
            inference_mode,
        })
    }
}

/// The tensors of one module in an adapter file.
#[derive(Clone, Debug, PartialEq)]
pub struct ModuleTensors {
    /// The module path (without [`MODEL_PREFIX`]).
    pub module: String,
    /// `givens_hard`, `[K]`.
    pub hard: Option<Tensor>,
    /// `givens_soft`, `[K, 2, 2]`.
    pub soft: Option<Tensor>,
    /// `givens_scaler`, `[d]`.
    pub scaler: Option<Tensor>,
}

impl ModuleTensors {
    /// The number of rotations `K` the tensors carry.
    fn rotations(&self) -> usize {
        self.hard.as_ref().map_or_else(|| self.soft.as_ref().map_or(0, |s| s.shape()[0]), Tensor::len)
    }
}

/// A validated adapter directory.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterFile {
    /// The directory.
    pub dir: PathBuf,
    /// The configuration.
    pub config: AdapterConfig,
    /// The layout (metadata `qgoft.layout`, default tree).
    pub layout: Layout,
    /// The qGOFT penalty weight, if recorded (metadata `qgoft.lambda`).
    pub lambda: Option<f32>,
    /// The modules, sorted by path.
    pub modules: Vec<ModuleTensors>,
}

fn layout_name(l: Layout) -> &'static str {
    match l {
        Layout::Chain => "chain",
        Layout::Tree => "tree",
        Layout::Full => "full",
        Layout::FullParallel => "full-parallel",
        _ => "unknown",
    }
}

/// Parses a layout name: `chain`, `tree`, `full` or `full-parallel`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming an unknown layout.
///
/// ```
/// assert_eq!(qgoft_nn::peft::parse_layout("chain")?, qgoft_math::Layout::Chain);
/// assert!(qgoft_nn::peft::parse_layout("ring").is_err());
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn parse_layout(s: &str) -> Result<Layout> {
    Ok(match s {
        "chain" => Layout::Chain,
        "tree" => Layout::Tree,
        "full" => Layout::Full,
        "full-parallel" => Layout::FullParallel,
        _ => return Err(Error::invalid("layout (chain, tree, full, full-parallel)", s)),
    })
}

/// Reads and validates an adapter directory (see the module documentation).
///
/// # Errors
/// [`Error::Io`] if a file cannot be read; [`Error::Checkpoint`] naming the
/// file and what is wrong.
///
/// ```
/// assert!(qgoft_nn::peft::read_adapter("/nonexistent".as_ref()).is_err());
/// ```
pub fn read_adapter(dir: &Path) -> Result<AdapterFile> {
    let cpath = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
    let config = AdapterConfig::from_json(&text, &cpath)?;
    let wpath = dir.join(WEIGHTS_FILE);
    let (tensors, meta) = io::load_checkpoint(&wpath)?;
    let bad = |reason: String| Error::Checkpoint { path: wpath.clone(), reason };
    let layout = match meta.get("qgoft.layout") {
        Some(s) => parse_layout(s).map_err(|_| bad(format!("metadata qgoft.layout {s:?} is not a layout")))?,
        None => Layout::Tree,
    };
    let lambda = match meta.get("qgoft.lambda") {
        Some(s) => Some(
            s.parse::<f32>()
                .ok()
                .filter(|l| l.is_finite() && *l >= 0.0)
                .ok_or_else(|| bad(format!("metadata qgoft.lambda {s:?} is not a penalty weight")))?,
        ),
        None => None,
    };
    let mut modules: HashMap<String, ModuleTensors> = HashMap::new();
    for (name, t) in tensors {
        let rest = name.strip_prefix(MODEL_PREFIX).ok_or_else(|| {
            bad(format!("tensor {name} does not start with {MODEL_PREFIX:?} (not a module of the model)"))
        })?;
        let (module, kind) = rest
            .rsplit_once('.')
            .filter(|(m, _)| !m.is_empty())
            .ok_or_else(|| bad(format!("tensor {name} is not <module>.givens_hard/givens_soft/givens_scaler")))?;
        let entry = modules.entry(module.to_string()).or_insert_with(|| ModuleTensors {
            module: module.to_string(),
            hard: None,
            soft: None,
            scaler: None,
        });
        let shape = t.shape().to_vec();
        let slot = match kind {
            "givens_hard" if shape.len() == 1 => &mut entry.hard,
            "givens_soft" if shape.len() == 3 && shape[1] == 2 && shape[2] == 2 => &mut entry.soft,
            "givens_scaler" if shape.len() == 1 => &mut entry.scaler,
            "givens_hard" | "givens_scaler" => {
                return Err(bad(format!("tensor {name} has shape {shape:?}, expected one dimension")));
            }
            "givens_soft" => return Err(bad(format!("tensor {name} has shape {shape:?}, expected [K, 2, 2]"))),
            _ => return Err(bad(format!("unexpected tensor {name} (not givens_hard, givens_soft or givens_scaler)"))),
        };
        *slot = Some(t);
    }
    let mut modules: Vec<ModuleTensors> = modules.into_values().collect();
    modules.sort_by(|a, b| a.module.cmp(&b.module));
    if modules.is_empty() {
        return Err(bad("the file holds no adapter tensors".into()));
    }
    for m in &modules {
        let name = |k: &str| format!("{MODEL_PREFIX}{}.{k}", m.module);
        let need = if config.strict_oft { "givens_hard" } else { "givens_soft" };
        let present = if config.strict_oft { m.hard.is_some() } else { m.soft.is_some() };
        if !present {
            return Err(bad(format!("tensor {} is missing (strict_oft is {})", name(need), config.strict_oft)));
        }
        if let (Some(h), Some(s)) = (&m.hard, &m.soft)
            && h.len() != s.shape()[0]
        {
            return Err(bad(format!(
                "tensors {} ({:?}) and {} ({:?}) disagree on the number of rotations",
                name("givens_hard"),
                h.shape(),
                name("givens_soft"),
                s.shape()
            )));
        }
        if config.strict_oft && !config.no_scaling && m.scaler.is_none() {
            return Err(bad(format!("tensor {} is missing (no_scaling is false)", name("givens_scaler"))));
        }
        let k = m.rotations();
        if let Some(s) = &m.scaler
            && matches!(layout, Layout::Tree | Layout::Chain)
            && s.len() != k + 1
        {
            return Err(bad(format!(
                "tensor {} has shape {:?}, expected [{}] (K + 1)",
                name("givens_scaler"),
                s.shape(),
                k + 1
            )));
        }
        if !config.targets(&m.module) {
            return Err(bad(format!(
                "module {} is not listed in target_modules {:?}",
                m.module, config.target_modules
            )));
        }
    }
    Ok(AdapterFile { dir: dir.to_path_buf(), config, layout, lambda, modules })
}

/// Saves the adapter `adapter` of every layer that has it (at least one
/// must) in the reference layout (see the module documentation).
///
/// # Errors
/// [`Error::InvalidArgument`] if no layer has the adapter or the layers'
/// configurations differ; [`Error::Io`] if the directory cannot be written.
///
/// ```
/// use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
/// let l = GivensLinear::new(Linear::new("fc", 4, 3, true, &mut qgoft_nn::Rng::new(0)));
/// assert!(qgoft_nn::peft::save_adapter("unused".as_ref(), &[l], "missing", None).is_err());
/// ```
pub fn save_adapter(dir: &Path, layers: &[GivensLinear], adapter: &str, base_model: Option<&str>) -> Result<()> {
    let with: Vec<&GivensLinear> = layers.iter().filter(|l| l.adapter(adapter).is_some()).collect();
    let first = with
        .first()
        .ok_or_else(|| Error::invalid("adapter to save (no layer has it)", format!("{adapter:?}")))?
        .adapter(adapter)
        .map(|a| a.config())
        .unwrap_or_default();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for l in &with {
        let Some(a) = l.adapter(adapter) else { continue };
        if a.config() != first {
            return Err(Error::invalid(
                "adapter configurations (all layers of one adapter file share one)",
                format!("{:?} on {} vs {first:?}", a.config(), l.module_path()),
            ));
        }
        let key = |k: &str| format!("{MODEL_PREFIX}{}.{k}", l.module_path());
        let p = (*a.params().value()).clone();
        let k = p.shape()[0];
        let (hard, soft) = if first.mode.is_strict() {
            let eye = Tensor::from_fn(&[k, 2, 2], |i| if i % 4 == 0 || i % 4 == 3 { 1.0 } else { 0.0 });
            (p, eye)
        } else {
            (Tensor::zeros(&[k]), p)
        };
        tensors.push((key("givens_hard"), hard));
        tensors.push((key("givens_soft"), soft));
        if let Some(s) = a.scaler() {
            tensors.push((key("givens_scaler"), (*s.value()).clone()));
        }
    }
    let mut meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    if first.layout != Layout::Tree {
        meta.insert("qgoft.layout".into(), layout_name(first.layout).into());
    }
    if let GivensMode::Qgoft { lambda } = first.mode {
        meta.insert("qgoft.lambda".into(), lambda.to_string());
    }
    let mut config = AdapterConfig::for_mode(first.mode, with.iter().map(|l| l.module_path().to_string()).collect());
    config.base_model_name_or_path = base_model.map(str::to_string);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    io::save_tensors(&dir.join(WEIGHTS_FILE), &named, Some(&meta))?;
    io::atomic_write(&dir.join(CONFIG_FILE), config.to_json().as_bytes())
}

/// Loads an adapter directory into the layers as a new adapter `name`
/// (active), after validating it entirely against the model: every module of
/// the file must be one of `layers` (by module path), every layer targeted
/// by the configuration must be in the file, and the shapes must fit each
/// layer's width. Nothing is changed unless everything validates.
/// `lambda` overrides the file's qGOFT penalty weight (default `0`).
///
/// # Errors
/// As [`read_adapter`]; [`Error::Checkpoint`] naming a module or tensor that
/// does not fit the model; [`Error::InvalidArgument`] if a layer already has
/// an adapter called `name`.
///
/// ```
/// assert!(qgoft_nn::peft::load_adapter("/nonexistent".as_ref(), &mut [], "a", None).is_err());
/// ```
pub fn load_adapter(dir: &Path, layers: &mut [GivensLinear], name: &str, lambda: Option<f32>) -> Result<AdapterFile> {
    let file = read_adapter(dir)?;
    let wpath = dir.join(WEIGHTS_FILE);
    let bad = |reason: String| Error::Checkpoint { path: wpath.clone(), reason };
    let lambda = lambda.or(file.lambda).unwrap_or(0.0);
    let config = GivensConfig { mode: file.config.mode(lambda), layout: file.layout };
    let mut plan = Vec::new();
    for m in &file.modules {
        let Some(i) = layers.iter().position(|l| l.module_path() == m.module) else {
            let known: Vec<&str> = layers.iter().map(GivensLinear::module_path).collect();
            return Err(bad(format!("module {} is not a layer of the model (layers: {known:?})", m.module)));
        };
        let d = layers[i].base().in_features();
        let k = file.layout.num_rotations(d);
        let key = |t: &str| format!("{MODEL_PREFIX}{}.{t}", m.module);
        let check = |t: &str, x: &Option<Tensor>, want: &[usize]| -> Result<()> {
            match x {
                Some(x) if x.shape() != want => Err(bad(format!(
                    "tensor {} has shape {:?}, the model's layer (width {d}) expects {want:?}",
                    key(t),
                    x.shape()
                ))),
                _ => Ok(()),
            }
        };
        check("givens_hard", &m.hard, &[k])?;
        check("givens_soft", &m.soft, &[k, 2, 2])?;
        check("givens_scaler", &m.scaler, &[d])?;
        if layers[i].adapter(name).is_some() {
            return Err(Error::invalid(format!("adapter name on {}", m.module), format!("{name:?} already present")));
        }
        plan.push((i, m));
    }
    for l in layers.iter() {
        if file.config.targets(l.module_path()) && !file.modules.iter().any(|m| m.module == l.module_path()) {
            return Err(bad(format!(
                "the model's layer {} is targeted but has no tensors in the file",
                l.module_path()
            )));
        }
    }
    for (i, m) in plan {
        let a = layers[i].add_adapter(name, config)?;
        let values = if config.mode.is_strict() { m.hard.clone() } else { m.soft.clone() };
        if let Some(v) = values {
            a.params().set(v)?;
        }
        if let (Some(s), Some(p)) = (&m.scaler, a.scaler()) {
            p.set(s.clone())?;
        }
    }
    Ok(file)
}

/// The configuration keys and values of a file, as written (for `qgoft inspect`).
///
/// # Errors
/// [`Error::Io`] or [`Error::Checkpoint`] if the file is unreadable or not a JSON object.
///
/// ```
/// assert!(qgoft_nn::peft::raw_config("/nonexistent".as_ref()).is_err());
/// ```
pub fn raw_config(dir: &Path) -> Result<Map<String, Value>> {
    let cpath = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cpath).map_err(|e| Error::io(&cpath, e))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::Checkpoint { path: cpath, reason: "not a JSON object".into() }),
    }
}
