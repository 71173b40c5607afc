//! Adapter files: saved, loaded and merged adapters give identical outputs,
//! and every malformed file is rejected with an error naming what is wrong.

use std::path::{Path, PathBuf};

use qgoft_math::Layout;
use qgoft_nn::layers::{Activation, Adapter, GivensConfig, GivensLinear, GivensMode, Linear, Module, Stack};
use qgoft_nn::peft::{self, MODEL_PREFIX};
use qgoft_nn::{io, Graph, Rng, Tensor};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qgoft-files-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const MODES: [GivensMode; 3] = [GivensMode::Goft, GivensMode::GoftScaled, GivensMode::Qgoft { lambda: 0.01 }];

/// A two-layer model with a randomised adapter on each layer.
fn model(mode: GivensMode, layout: Layout, seed: u64) -> Stack<GivensLinear> {
    let mut rng = Rng::new(seed);
    let layers = [("enc.0", 9, 6), ("enc.1", 6, 4)]
        .iter()
        .map(|&(name, i, o)| {
            let l = GivensLinear::with_default(Linear::new(name, i, o, true, &mut rng), GivensConfig { mode, layout })
                .unwrap();
            for p in l.adapter_params() {
                p.update(|t| t.data_mut().iter_mut().for_each(|v| *v += rng.uniform(-0.5, 0.5)));
            }
            l
        })
        .collect();
    Stack::new(layers, Activation::Tanh)
}

fn fresh_base(m: &Stack<GivensLinear>) -> Vec<GivensLinear> {
    m.layers.iter().map(|l| GivensLinear::new(l.base().clone())).collect()
}

fn outputs(m: &dyn Module, x: &Tensor) -> Vec<f32> {
    let mut g = Graph::new();
    let xv = g.constant(x.clone());
    let y = m.forward(&mut g, xv).unwrap();
    g.value(y).data().to_vec()
}

#[test]
fn saved_loaded_and_merged_adapters_give_identical_outputs() {
    for layout in [Layout::Tree, Layout::Chain] {
        for mode in MODES {
            let dir = tmp(&format!("rt-{}-{layout:?}", mode.name()));
            let mut m = model(mode, layout, 1);
            let x = Tensor::from_fn(&[5, 9], |i| ((i * 13 % 7) as f32 - 3.0) / 3.0);
            let want = outputs(&m, &x);
            peft::save_adapter(&dir, &m.layers, "default", Some("test-model")).unwrap();
            // Base weights are shared (cloned Params): load onto fresh wrappers of the same bases.
            let mut loaded = Stack::new(fresh_base(&m), Activation::Tanh);
            let file = peft::load_adapter(&dir, &mut loaded.layers, "default", None).unwrap();
            assert_eq!(file.layout, layout);
            assert_eq!(file.config.mode(file.lambda.unwrap_or(0.0)), mode);
            let got = outputs(&loaded, &x);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{mode:?} {layout:?}");
            // Merge the loaded adapters: the same outputs within 1e-5 relative.
            for l in &mut loaded.layers {
                l.merge().unwrap();
            }
            let merged = outputs(&loaded, &x);
            let num: f32 = merged.iter().zip(&want).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
            let den: f32 = want.iter().map(|b| b * b).sum::<f32>().sqrt();
            assert!(num <= 1e-5 * den, "{mode:?} {layout:?}: {}", num / den);
            for l in &mut loaded.layers {
                l.unmerge().unwrap();
            }
            for l in &mut m.layers {
                l.set_enabled(true);
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// A valid goft-scaled adapter for the layers `enc.0` (d = 9) and `enc.1` (d = 6).
fn valid_dir(tag: &str) -> (PathBuf, Stack<GivensLinear>) {
    let dir = tmp(tag);
    let m = model(GivensMode::GoftScaled, Layout::Tree, 2);
    peft::save_adapter(&dir, &m.layers, "default", None).unwrap();
    (dir, m)
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let mut c = peft::raw_config(dir).unwrap();
    f(&mut c);
    std::fs::write(dir.join(peft::CONFIG_FILE), serde_json::to_string(&c).unwrap()).unwrap();
}

fn edit_tensors(dir: &Path, f: impl FnOnce(&mut Vec<(String, Tensor)>)) {
    let mut t = io::load_tensors(&dir.join(peft::WEIGHTS_FILE)).unwrap();
    f(&mut t);
    let named: Vec<(&str, &Tensor)> = t.iter().map(|(n, t)| (n.as_str(), t)).collect();
    io::save_tensors(&dir.join(peft::WEIGHTS_FILE), &named, None).unwrap();
}

fn key(module: &str, kind: &str) -> String {
    format!("{MODEL_PREFIX}{module}.{kind}")
}

type Case = (&'static str, Box<dyn Fn(&Path)>, &'static str);

#[test]
fn every_malformed_adapter_is_an_error_naming_the_problem() {
    use serde_json::json;
    let cases: Vec<Case> = vec![
        ("no config", Box::new(|d| std::fs::remove_file(d.join(peft::CONFIG_FILE)).unwrap()), "adapter_config.json"),
        ("no weights", Box::new(|d| std::fs::remove_file(d.join(peft::WEIGHTS_FILE)).unwrap()), "adapter_model"),
        (
            "bad json",
            Box::new(|d| std::fs::write(d.join(peft::CONFIG_FILE), "{\"peft_type\": ").unwrap()),
            "not valid JSON",
        ),
        ("not an object", Box::new(|d| std::fs::write(d.join(peft::CONFIG_FILE), "[1]").unwrap()), "not a JSON object"),
        (
            "unknown key",
            Box::new(|d| edit_config(d, |c| drop(c.insert("lora_alpha".into(), json!(8))))),
            "\"lora_alpha\"",
        ),
        ("peft type", Box::new(|d| edit_config(d, |c| drop(c.insert("peft_type".into(), json!("LORA"))))), "peft_type"),
        ("strict missing", Box::new(|d| edit_config(d, |c| drop(c.remove("strict_oft")))), "\"strict_oft\" is missing"),
        (
            "strict type",
            Box::new(|d| edit_config(d, |c| drop(c.insert("strict_oft".into(), json!("yes"))))),
            "\"strict_oft\" must be",
        ),
        (
            "fan in fan out",
            Box::new(|d| edit_config(d, |c| drop(c.insert("fan_in_fan_out".into(), json!(true))))),
            "\"fan_in_fan_out\" = true",
        ),
        (
            "fast config",
            Box::new(|d| edit_config(d, |c| drop(c.insert("fast_config".into(), json!(true))))),
            "\"fast_config\" = true",
        ),
        ("bias", Box::new(|d| edit_config(d, |c| drop(c.insert("bias".into(), json!("all"))))), "\"bias\""),
        (
            "pattern",
            Box::new(|d| edit_config(d, |c| drop(c.insert("strict_oft_pattern".into(), json!({"enc.0": false}))))),
            "strict_oft_pattern",
        ),
        (
            "scaling pattern",
            Box::new(|d| edit_config(d, |c| drop(c.insert("no_scaling_pattern".into(), json!({"enc.0": true}))))),
            "no_scaling_pattern",
        ),
        (
            "layers",
            Box::new(|d| edit_config(d, |c| drop(c.insert("layers_to_transform".into(), json!([0]))))),
            "layers_to_transform",
        ),
        (
            "save",
            Box::new(|d| edit_config(d, |c| drop(c.insert("modules_to_save".into(), json!(["head"]))))),
            "modules_to_save",
        ),
        (
            "regex",
            Box::new(|d| edit_config(d, |c| drop(c.insert("target_modules".into(), json!(".*enc.*"))))),
            "regular expression",
        ),
        (
            "targets",
            Box::new(|d| edit_config(d, |c| drop(c.insert("target_modules".into(), json!(["enc.0"]))))),
            "module enc.1 is not listed",
        ),
        (
            "truncated",
            Box::new(|d| {
                let p = d.join(peft::WEIGHTS_FILE);
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 3]).unwrap();
            }),
            "adapter_model.safetensors",
        ),
        (
            "truncated header",
            Box::new(|d| {
                let p = d.join(peft::WEIGHTS_FILE);
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..20]).unwrap();
            }),
            "adapter_model.safetensors",
        ),
        (
            "wrong dtype",
            Box::new(|d| {
                let data = [0u8; 8];
                let view = safetensors_view(&data);
                std::fs::write(d.join(peft::WEIGHTS_FILE), view).unwrap();
            }),
            "dtype",
        ),
        ("nan", Box::new(|d| edit_tensors(d, |t| t[0].1.data_mut()[0] = f32::NAN)), "non-finite"),
        ("prefix", Box::new(|d| edit_tensors(d, |t| t[0].0 = "model.enc.0.givens_hard".into())), "does not start with"),
        (
            "suffix",
            Box::new(|d| edit_tensors(d, |t| t.push((key("enc.0", "lora_A"), Tensor::zeros(&[2]))))),
            "unexpected tensor base_model.model.enc.0.lora_A",
        ),
        (
            "hard shape",
            Box::new(|d| {
                edit_tensors(d, |t| {
                    t.retain(|(n, _)| n != &key("enc.0", "givens_hard") && n != &key("enc.0", "givens_soft"));
                    t.push((key("enc.0", "givens_hard"), Tensor::zeros(&[9])));
                })
            }),
            "tensor base_model.model.enc.0.givens_scaler has shape [9], expected [10]",
        ),
        (
            "soft shape",
            Box::new(|d| {
                edit_tensors(d, |t| {
                    t.retain(|(n, _)| n != &key("enc.1", "givens_soft"));
                    t.push((key("enc.1", "givens_soft"), Tensor::zeros(&[5, 2, 3])));
                })
            }),
            "expected [K, 2, 2]",
        ),
        (
            "count mismatch",
            Box::new(|d| {
                edit_tensors(d, |t| {
                    t.retain(|(n, _)| n != &key("enc.1", "givens_soft"));
                    t.push((key("enc.1", "givens_soft"), Tensor::zeros(&[4, 2, 2])));
                })
            }),
            "disagree on the number of rotations",
        ),
        (
            "no scaler",
            Box::new(|d| edit_tensors(d, |t| t.retain(|(n, _)| n != &key("enc.1", "givens_scaler")))),
            "enc.1.givens_scaler is missing",
        ),
        (
            "no hard",
            Box::new(|d| edit_tensors(d, |t| t.retain(|(n, _)| n != &key("enc.1", "givens_hard")))),
            "enc.1.givens_hard is missing",
        ),
        (
            "unknown module",
            Box::new(|d| {
                edit_config(d, |c| drop(c.insert("target_modules".into(), json!(["enc.0", "enc.1", "dec.0"]))));
                edit_tensors(d, |t| {
                    t.push((key("dec.0", "givens_hard"), Tensor::zeros(&[3])));
                    t.push((key("dec.0", "givens_scaler"), Tensor::zeros(&[4])));
                });
            }),
            "module dec.0 is not a layer of the model",
        ),
        (
            "missing module",
            Box::new(|d| edit_tensors(d, |t| t.retain(|(n, _)| !n.contains("enc.1")))),
            "enc.1 is targeted but has no tensors",
        ),
        (
            "width mismatch",
            Box::new(|d| {
                edit_tensors(d, |t| {
                    t.retain(|(n, _)| !n.contains("enc.1"));
                    t.push((key("enc.1", "givens_hard"), Tensor::zeros(&[7])));
                    t.push((key("enc.1", "givens_scaler"), Tensor::full(&[8], 1.0)));
                })
            }),
            "enc.1.givens_hard has shape [7], the model's layer (width 6) expects [5]",
        ),
        ("empty", Box::new(|d| edit_tensors(d, |t| t.clear())), "no adapter tensors"),
        (
            "bad layout",
            Box::new(|d| {
                let t = io::load_tensors(&d.join(peft::WEIGHTS_FILE)).unwrap();
                let named: Vec<(&str, &Tensor)> = t.iter().map(|(n, t)| (n.as_str(), t)).collect();
                let meta = std::collections::HashMap::from([("qgoft.layout".to_string(), "ring".to_string())]);
                io::save_tensors(&d.join(peft::WEIGHTS_FILE), &named, Some(&meta)).unwrap();
            }),
            "qgoft.layout",
        ),
    ];
    let n = cases.len();
    for (i, (what, corrupt, needle)) in cases.into_iter().enumerate() {
        let (dir, m) = valid_dir(&format!("bad{i}"));
        corrupt(&dir);
        let mut layers = fresh_base(&m);
        let e = peft::load_adapter(&dir, &mut layers, "x", None).expect_err(what).to_string();
        assert!(e.contains(needle), "{what}: message {e:?} lacks {needle:?}");
        // Nothing was added on failure.
        assert!(layers.iter().all(|l| l.adapter_names().is_empty()), "{what}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
    println!("{n} malformed adapters rejected");
    // A loaded adapter name that is already taken is an error too, and changes nothing.
    let (dir, m) = valid_dir("dup");
    let mut layers = fresh_base(&m);
    layers[1].add_adapter("x", GivensConfig::default()).unwrap();
    assert!(peft::load_adapter(&dir, &mut layers, "x", None).is_err());
    assert!(layers[0].adapter_names().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A safetensors file holding one F64 tensor with the right name.
fn safetensors_view(data: &[u8]) -> Vec<u8> {
    let header = format!(r#"{{"{}":{{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}}}"#, key("enc.0", "givens_hard"));
    let mut h = header.into_bytes();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn rel(a: &[f32], b: &[f32]) -> f32 {
    let num: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
    num / b.iter().map(|y| y * y).sum::<f32>().sqrt()
}

#[test]
fn two_named_adapters_on_one_model_switch_merge_and_unmerge() {
    let mut rng = Rng::new(5);
    let layers = [("enc.0", 9, 6), ("enc.1", 6, 4)]
        .iter()
        .map(|&(name, i, o)| GivensLinear::new(Linear::new(name, i, o, true, &mut rng)))
        .collect();
    let mut m = Stack::new(layers, Activation::Tanh);
    let w0: Vec<Vec<f32>> = m.layers.iter().map(|l| l.base().weight().value().data().to_vec()).collect();
    m.add_adapter("a", GivensConfig::tree(GivensMode::GoftScaled)).unwrap();
    m.add_adapter("b", GivensConfig { mode: GivensMode::Qgoft { lambda: 0.1 }, layout: Layout::Chain }).unwrap();
    for l in &m.layers {
        for name in ["a", "b"] {
            for p in l.adapter(name).unwrap().all_params() {
                p.update(|t| t.data_mut().iter_mut().for_each(|v| *v += rng.uniform(-0.4, 0.4)));
            }
        }
    }
    let x = Tensor::from_fn(&[4, 9], |i| ((i * 5 % 11) as f32 - 5.0) / 5.0);
    m.set_active("a").unwrap();
    let ya = outputs(&m, &x);
    m.set_active("b").unwrap();
    let yb = outputs(&m, &x);
    m.set_enabled(false);
    let y0 = outputs(&m, &x);
    m.set_enabled(true);
    assert!(rel(&ya, &yb) > 1e-3 && rel(&ya, &y0) > 1e-3 && rel(&yb, &y0) > 1e-3);
    // Merging "a" and activating it: the merged base alone gives y_a.
    m.merge_adapter("a").unwrap();
    m.set_active("a").unwrap();
    assert!(rel(&outputs(&m, &x), &ya) <= 1e-5);
    // "b" live on top of merged "a", then both merged: the same outputs.
    m.set_active("b").unwrap();
    let stacked = outputs(&m, &x);
    m.merge_adapter("b").unwrap();
    assert!(rel(&outputs(&m, &x), &stacked) <= 1e-5);
    // Unmerge in reverse order only.
    assert!(m.unmerge_adapter("a").is_err());
    m.unmerge_adapter("b").unwrap();
    assert!(rel(&outputs(&m, &x), &stacked) <= 1e-5, "b is live again after its unmerge");
    m.merge_all().unwrap();
    m.unmerge_all().unwrap();
    for (l, w) in m.layers.iter().zip(&w0) {
        assert!(rel(l.base().weight().value().data(), w) <= 1e-6);
    }
    m.set_active("b").unwrap();
    assert!(rel(&outputs(&m, &x), &yb) <= 1e-5);
    // Each adapter saves to its own directory and loads back by name.
    let dir = tmp("two");
    peft::save_adapter(&dir, &m.layers, "b", None).unwrap();
    let mut other = Stack::new(fresh_base(&m), Activation::Tanh);
    peft::load_adapter(&dir, &mut other.layers, "b", None).unwrap();
    assert_eq!(outputs(&other, &x), outputs(&m, &x));
    std::fs::remove_dir_all(&dir).unwrap();
}
