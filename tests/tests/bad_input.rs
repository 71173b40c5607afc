//! One test per row of README.md's bad-input table: each row's input is
//! produced here, and the error a user sees must be exactly the row's text.
//! A row in the README without a case here, or a case without a row, fails.

use std::collections::BTreeMap;
use std::path::Path;

use qgoft_math::decompose::{decompose_with, DecomposeOptions};
use qgoft_math::{AngleMap, Layout, Op, RotationBuf};

type Case = fn() -> String;

fn err<T, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => panic!("the bad input was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Declares the test of one README row: `$key` is the row's first cell and
/// `$case` produces the error message a user sees.
macro_rules! row {
    ($name:ident, $key:literal, $case:expr) => {
        #[test]
        fn $name() {
            let case: Case = $case;
            check_row($key, case());
        }
    };
}

const KEYS: &[&str] = &[
    "non-finite parameter",
    "non-finite input",
    "wrong number of parameters",
    "batch not a multiple of d",
    "non-orthogonal matrix",
    "det = -1 matrix",
    "singular quasi block",
    "zero scaling entry",
    "truncated safetensors file",
    "oversized safetensors header",
    "non-finite value in a file",
    "malformed CSV value",
    "truncated IDX file",
    "unknown adapter config key",
    "adapter does not fit the model",
];

fn check_row(key: &str, got: String) {
    let rows = readme_rows();
    let msg = rows
        .get(key)
        .unwrap_or_else(|| panic!("README.md's bad-input table has no row {key:?}; add:\n| {key} | `{got}` |"));
    assert_eq!(*msg, got, "README.md row {key:?} is out of date");
}

row!(non_finite_parameter, "non-finite parameter", || {
    err(RotationBuf::from_angles(Layout::Tree, 4, AngleMap::PiTanh, &[0.1f32, f32::NAN, 0.3], None))
});
row!(non_finite_input, "non-finite input", || {
    let r = RotationBuf::<f32>::identity(Layout::Tree, 4).unwrap();
    let mut x = [1.0, 2.0, f32::INFINITY, 4.0];
    err(r.as_rotation().apply_rows(Op::Transpose, &mut x))
});
row!(wrong_number_of_parameters, "wrong number of parameters", || {
    err(RotationBuf::from_angles(Layout::Tree, 4, AngleMap::PiTanh, &[0.1f32, 0.2], None))
});
row!(batch_not_a_multiple_of_d, "batch not a multiple of d", || {
    let r = RotationBuf::<f32>::identity(Layout::Chain, 3).unwrap();
    err(r.as_rotation().apply_rows(Op::Forward, &mut [0.0; 7]))
});
row!(non_orthogonal_matrix, "non-orthogonal matrix", || {
    err(decompose_with(Layout::Full, &[1.0f64, 0.5, 0.0, 1.0], 2, &DecomposeOptions::default()))
});
row!(det_1_matrix, "det = -1 matrix", || {
    err(decompose_with(Layout::Full, &[1.0f64, 0.0, 0.0, -1.0], 2, &DecomposeOptions::default()))
});
row!(singular_quasi_block, "singular quasi block", || {
    let r = RotationBuf::from_quasi(Layout::Tree, 2, &[1.0f32, 2.0, 2.0, 4.0], None).unwrap();
    let mut w = [1.0, 1.0];
    err(r.as_rotation().unmerge(&mut w))
});
row!(zero_scaling_entry, "zero scaling entry", || {
    let r =
        RotationBuf::from_angles(Layout::Tree, 3, AngleMap::PiTanh, &[0.0f32, 0.0], Some(&[1.0, 1.0, 0.0])).unwrap();
    let mut w = [1.0, 1.0, 1.0];
    err(r.as_rotation().unmerge(&mut w))
});
row!(truncated_safetensors_file, "truncated safetensors file", || {
    let t = qgoft_nn::Tensor::eye(2);
    let bytes = qgoft_nn::io::serialize_tensors(&[("w", &t)], None).unwrap();
    err(qgoft_nn::io::deserialize_tensors(&bytes[..bytes.len() - 3], Path::new("model.safetensors")))
});
row!(oversized_safetensors_header, "oversized safetensors header", || {
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    err(qgoft_nn::io::deserialize_tensors(&bytes, Path::new("model.safetensors")))
});
row!(non_finite_value_in_a_file, "non-finite value in a file", || {
    let t = qgoft_nn::Tensor::new(vec![2], vec![1.0, f32::NAN]).unwrap();
    let bytes = qgoft_nn::io::serialize_tensors(&[("w", &t)], None).unwrap();
    err(qgoft_nn::io::deserialize_tensors(&bytes, Path::new("model.safetensors")))
});
row!(malformed_csv_value, "malformed CSV value", || err(qgoft_nn::data::parse_csv(
    "1,2,0\n3,x,1\n",
    "data.csv",
    2,
    None
)));
row!(unknown_adapter_config_key, "unknown adapter config key", || {
    let dir = adapter_dir("unknown-key");
    let path = dir.join(qgoft_nn::peft::CONFIG_FILE);
    let mut c = qgoft_nn::peft::raw_config(&dir).unwrap();
    c.insert("lora_alpha".into(), serde_json::json!(8));
    std::fs::write(&path, serde_json::to_string(&c).unwrap()).unwrap();
    let msg = load_onto_fresh(&dir, 6);
    std::fs::remove_dir_all(&dir).unwrap();
    msg
});
row!(adapter_does_not_fit_the_model, "adapter does not fit the model", || {
    let dir = adapter_dir("width");
    let msg = load_onto_fresh(&dir, 5);
    std::fs::remove_dir_all(&dir).unwrap();
    msg
});
row!(truncated_idx_file, "truncated IDX file", || {
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    bytes.extend_from_slice(&[0; 5]);
    err(qgoft_nn::data::parse_idx_images(&bytes, "images.idx"))
});

/// An adapter directory (relative, so messages name a stable path) holding a
/// GOFT adapter for one layer `fc` of width 6.
fn adapter_dir(tag: &str) -> std::path::PathBuf {
    use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear};
    let dir = std::path::PathBuf::from(format!("adapter-{tag}.tmp"));
    let _ = std::fs::remove_dir_all(&dir);
    let layer = Linear::new("fc", 6, 3, true, &mut qgoft_nn::Rng::new(0));
    let l = GivensLinear::with_default(layer, GivensConfig::default()).unwrap();
    qgoft_nn::peft::save_adapter(&dir, &[l], "default", None).unwrap();
    dir
}

/// Loads the adapter in `dir` onto a fresh layer `fc` of width `d`.
fn load_onto_fresh(dir: &Path, d: usize) -> String {
    use qgoft_nn::layers::{GivensLinear, Linear};
    let mut layers = [GivensLinear::new(Linear::new("fc", d, 3, true, &mut qgoft_nn::Rng::new(0)))];
    err(qgoft_nn::peft::load_adapter(dir, &mut layers, "default", None))
}

/// The `(key, message)` rows of README.md's bad-input table.
fn readme_rows() -> BTreeMap<String, String> {
    let readme = include_str!("../../README.md");
    let start = readme.find("## Bad input").expect("README.md has a '## Bad input' section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    section[..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("| ---") && !l.starts_with("| input"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            let msg = cells.last().unwrap().trim_matches('`').to_string();
            (cells[0].to_string(), msg)
        })
        .collect()
}

#[test]
fn every_readme_row_has_a_test() {
    for key in readme_rows().keys() {
        assert!(KEYS.contains(&key.as_str()), "README.md row {key:?} has no test here");
    }
}
