//! Shared helpers for the cross-crate integration tests: loading the reference
//! fixtures in `fixtures/official-goft-v1/` (outputs of the paper's published
//! implementation, see `fixtures/README.md`) and comparing arrays.
#![deny(missing_docs)]

use std::path::PathBuf;

/// The three modes of the reference fixtures.
pub const MODES: [&str; 3] = ["goft", "goft_scaled", "qgoft"];

/// The widths the reference fixtures cover.
pub const DIMS: [usize; 9] = [1, 2, 3, 4, 5, 8, 13, 16, 64];

/// One reference fixture file, every array flat and row-major in `f32`.
#[derive(Clone, Debug, Default)]
pub struct Fixture {
    /// The file's name, for messages.
    pub name: String,
    /// `"goft"`, `"goft_scaled"` or `"qgoft"`.
    pub mode: String,
    /// Input width.
    pub d: usize,
    /// Output width.
    pub m: usize,
    /// Rows of `x`.
    pub batch: usize,
    /// Frozen weight `W`, `m x d`.
    pub weight: Vec<f32>,
    /// Frozen bias, `m`.
    pub bias: Vec<f32>,
    /// Raw angle parameters `p`, `d - 1` (strict modes).
    pub angle_params: Option<Vec<f32>>,
    /// Scaling, `d` (mode `goft_scaled`).
    pub scaler: Option<Vec<f32>>,
    /// Quasi blocks `[a, b, c, e]`, `(d - 1) x 4` (mode `qgoft`).
    pub blocks: Option<Vec<f32>>,
    /// `R`, `d x d`.
    pub rotation: Vec<f32>,
    /// Inputs, `batch x d`.
    pub x: Vec<f32>,
    /// Outputs `x R W^T + b`, `batch x m`.
    pub y: Vec<f32>,
    /// `W R^T`, `m x d`.
    pub merged_weight: Vec<f32>,
    /// Upstream gradient `dL/dy`.
    pub grad_y: Vec<f32>,
    /// `dL/dx`.
    pub grad_x: Vec<f32>,
    /// `dL/dp` (strict modes).
    pub grad_angle_params: Option<Vec<f32>>,
    /// `dL/dS` (mode `goft_scaled`).
    pub grad_scaler: Option<Vec<f32>>,
    /// `dL/d(block entries)` (mode `qgoft`).
    pub grad_blocks: Option<Vec<f32>>,
}

/// The directory holding the fixture files.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("official-goft-v1")
}

fn array(v: &serde_json::Value, key: &str) -> Option<Vec<f32>> {
    v.get(key).map(|a| {
        a.as_array()
            .unwrap_or_else(|| panic!("fixture key {key} is not an array"))
            .iter()
            .map(|x| x.as_f64().unwrap_or_else(|| panic!("fixture key {key} holds a non-number")) as f32)
            .collect()
    })
}

impl Fixture {
    /// Loads `<mode>_d<d>.json`.
    ///
    /// # Panics
    /// If the file is missing or malformed (the fixtures are part of the
    /// repository; a broken one is a broken test).
    pub fn load(mode: &str, d: usize) -> Fixture {
        let name = format!("{mode}_d{d}.json");
        let text = std::fs::read_to_string(fixture_dir().join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let int = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{name}: missing {k}")) as usize;
        let req = |k: &str| array(&v, k).unwrap_or_else(|| panic!("{name}: missing {k}"));
        Fixture {
            mode: mode.to_string(),
            d: int("d"),
            m: int("m"),
            batch: int("batch"),
            weight: req("weight"),
            bias: req("bias"),
            angle_params: array(&v, "angle_params"),
            scaler: array(&v, "scaler"),
            blocks: array(&v, "blocks"),
            rotation: req("rotation"),
            x: req("x"),
            y: req("y"),
            merged_weight: req("merged_weight"),
            grad_y: req("grad_y"),
            grad_x: req("grad_x"),
            grad_angle_params: array(&v, "grad_angle_params"),
            grad_scaler: array(&v, "grad_scaler"),
            grad_blocks: array(&v, "grad_blocks"),
            name,
        }
    }

    /// The reference's rotation as `qgoft-math` builds it: the tree layout,
    /// `theta = pi * tanh(p)` with the optional scaling, or quasi blocks.
    ///
    /// # Panics
    /// If the fixture's parameters are rejected.
    pub fn rotation(&self) -> qgoft_math::RotationBuf<f32> {
        use qgoft_math::{AngleMap, Layout, RotationBuf};
        let params = |p: &Option<Vec<f32>>| p.clone().unwrap_or_else(|| panic!("{}: no parameters", self.name));
        match self.mode.as_str() {
            "qgoft" => RotationBuf::from_quasi(Layout::Tree, self.d, &params(&self.blocks), None),
            _ => RotationBuf::from_angles(
                Layout::Tree,
                self.d,
                AngleMap::PiTanh,
                &params(&self.angle_params),
                self.scaler.as_deref(),
            ),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// Every fixture file, all modes and widths.
    pub fn all() -> Vec<Fixture> {
        MODES.iter().flat_map(|m| DIMS.iter().map(move |&d| Fixture::load(m, d))).collect()
    }
}

/// Relative error `norm(got - want) / max(norm(want), tiny)` in `f64`.
///
/// # Panics
/// If the lengths differ.
pub fn rel_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let num: f64 = got.iter().zip(want).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum::<f64>().sqrt();
    num / den.max(f64::MIN_POSITIVE)
}
