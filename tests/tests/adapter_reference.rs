//! The reference fixtures reproduced through the adapter layer: for every
//! fixture, an adapter directory in the reference layout is written from the
//! fixture's parameters (as the reference trainer would write it), loaded with
//! `qgoft_nn::peft::load_adapter` onto a frozen `Linear` holding the
//! fixture's `W` and `b`, and checked against the reference's outputs:
//! `y` and `merged_weight` within relative 1e-5, `grad_x` and the parameter
//! gradients within relative 1e-4 (DESIGN.md section 4). Unmerging restores
//! `W` within relative 1e-6.

use std::path::{Path, PathBuf};

use qgoft_nn::layers::{Adapter, GivensLinear, Linear, Module};
use qgoft_nn::peft::{self, MODEL_PREFIX};
use qgoft_nn::{io, Graph, Param, ParamKind, Tensor};
use qgoft_tests::{rel_error, Fixture};

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("qgoft-ref-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Writes the fixture's adapter as the reference does: both `givens_hard`
/// and `givens_soft`, `givens_scaler` only when scaling is on.
fn write_reference_dir(f: &Fixture, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let k = f.d - 1;
    let strict = f.mode != "qgoft";
    let config = format!(
        r#"{{
  "auto_mapping": null,
  "base_model_name_or_path": "fixture",
  "beta": 1.0,
  "bias": "none",
  "fan_in_fan_out": false,
  "fast_config": false,
  "inference_mode": true,
  "init_givens_weights": true,
  "layers_pattern": null,
  "layers_to_transform": null,
  "modules_to_save": null,
  "no_scaling": {},
  "no_scaling_pattern": {{}},
  "peft_type": "GIVENS",
  "revision": null,
  "strict_oft": {strict},
  "strict_oft_pattern": {{}},
  "target_modules": ["fc"],
  "task_type": null
}}"#,
        f.scaler.is_none()
    );
    std::fs::write(dir.join(peft::CONFIG_FILE), config).unwrap();
    let hard = Tensor::new(vec![k], f.angle_params.clone().unwrap_or_else(|| vec![0.0; k])).unwrap();
    let eye: Vec<f32> = (0..4 * k).map(|i| if i % 4 == 0 || i % 4 == 3 { 1.0 } else { 0.0 }).collect();
    let soft = Tensor::new(vec![k, 2, 2], f.blocks.clone().unwrap_or(eye)).unwrap();
    let mut tensors =
        vec![(format!("{MODEL_PREFIX}fc.givens_hard"), hard), (format!("{MODEL_PREFIX}fc.givens_soft"), soft)];
    if let Some(s) = &f.scaler {
        tensors.push((format!("{MODEL_PREFIX}fc.givens_scaler"), Tensor::new(vec![f.d], s.clone()).unwrap()));
    }
    let named: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    io::save_tensors(&dir.join(peft::WEIGHTS_FILE), &named, None).unwrap();
}

fn base_layer(f: &Fixture) -> Linear {
    let w = Param::new("fc.weight", ParamKind::Weight, Tensor::new(vec![f.m, f.d], f.weight.clone()).unwrap());
    let b = Param::new("fc.bias", ParamKind::Bias, Tensor::new(vec![f.m], f.bias.clone()).unwrap());
    Linear::from_params(w, Some(b)).unwrap()
}

#[test]
fn every_fixture_through_a_loaded_adapter() {
    let fixtures = Fixture::all();
    assert_eq!(fixtures.len(), 27);
    let (mut worst_fwd, mut worst_grad, mut worst_unmerge) = (0f64, 0f64, 0f64);
    for f in &fixtures {
        let dir = tmp(&f.name);
        write_reference_dir(f, &dir);
        let mut layers = vec![GivensLinear::new(base_layer(f))];
        peft::load_adapter(&dir, &mut layers, "reference", None).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        std::fs::remove_dir_all(&dir).unwrap();
        let mut layer = layers.pop().unwrap();
        assert_eq!(layer.active_name(), Some("reference"));
        let x = Tensor::new(vec![f.batch, f.d], f.x.clone()).unwrap();
        let mut g = Graph::new();
        let xv = g.leaf(x.clone());
        let y = layer.forward(&mut g, xv).unwrap();
        let e = rel_error(g.value(y).data(), &f.y);
        assert!(e <= 1e-5, "{}: y relative error {e:e}", f.name);
        worst_fwd = worst_fwd.max(e);
        let grads = g.backward_from(y, Tensor::new(vec![f.batch, f.m], f.grad_y.clone()).unwrap()).unwrap();
        let mut check = |what: &str, got: &[f32], want: &[f32]| {
            let e = if want.is_empty() { 0.0 } else { rel_error(got, want) };
            assert!(e <= 1e-4, "{}: {what} relative error {e:e}", f.name);
            worst_grad = worst_grad.max(e);
        };
        check("grad_x", grads.wrt(xv).unwrap().data(), &f.grad_x);
        let a = layer.active().unwrap();
        let want = if f.mode == "qgoft" { f.grad_blocks.as_ref() } else { f.grad_angle_params.as_ref() }.unwrap();
        match grads.get(a.params()) {
            Some(gp) => check("parameter gradient", gp.data(), want),
            None => assert!(want.is_empty(), "{}: no parameter gradient", f.name),
        }
        if let Some(want) = &f.grad_scaler {
            check("grad_scaler", grads.get(a.scaler().unwrap()).unwrap().data(), want);
        }
        let w0 = layer.base().weight().value();
        layer.merge().unwrap();
        let e = rel_error(layer.base().weight().value().data(), &f.merged_weight);
        assert!(e <= 1e-5, "{}: merged weight relative error {e:e}", f.name);
        worst_fwd = worst_fwd.max(e);
        // The merged layer alone reproduces y.
        let mut g = Graph::new();
        let xv = g.constant(x);
        let y = layer.forward(&mut g, xv).unwrap();
        let e = rel_error(g.value(y).data(), &f.y);
        assert!(e <= 1e-5, "{}: merged y relative error {e:e}", f.name);
        layer.unmerge().unwrap();
        let e = rel_error(layer.base().weight().value().data(), w0.data());
        assert!(e <= 1e-6, "{}: unmerged weight relative error {e:e}", f.name);
        worst_unmerge = worst_unmerge.max(e);
    }
    println!(
        "largest relative errors: forward and merge {worst_fwd:e} (target 1e-5), gradients {worst_grad:e} \
         (target 1e-4), unmerge {worst_unmerge:e} (target 1e-6)"
    );
}
