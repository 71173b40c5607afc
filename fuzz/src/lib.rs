//! Invariants checked by the fuzz targets, kept in a library so that the
//! committed corpora can be replayed by `cargo test` on a stable toolchain.
//!
//! Every function takes arbitrary bytes and panics only when an invariant of
//! the library is broken: errors are fine, panics and silent NaN are not.

use arbitrary::{Arbitrary, Unstructured};
use qgoft_math::{AngleMap, Error, Givens, Layout, Op, RotationBuf};

/// Givens generation on arbitrary `f32` and `f64` pairs: finite in, finite
/// out (or `Overflow` when the true `r` overflows); `G^T (a, b) = (r, 0)`;
/// `c >= 0`; `c^2 + s^2 = 1` to rounding.
pub fn givens(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(a32), Ok(b32), Ok(a64), Ok(b64)) =
        (f32::arbitrary(&mut u), f32::arbitrary(&mut u), f64::arbitrary(&mut u), f64::arbitrary(&mut u))
    else {
        return;
    };
    check_givens32(a32, b32);
    check_givens64(a64, b64);
}

fn check_givens32(a: f32, b: f32) {
    match Givens::generate(a, b) {
        Err(Error::NonFinite { .. }) => assert!(!a.is_finite() || !b.is_finite(), "NonFinite for ({a}, {b})"),
        Err(Error::Overflow { .. }) => {
            assert!((a as f64).hypot(b as f64) > f32::MAX as f64 * (1.0 - 1e-6), "spurious overflow ({a}, {b})")
        }
        Err(e) => panic!("unexpected error {e} for ({a}, {b})"),
        Ok((g, r)) => {
            assert!(a.is_finite() && b.is_finite());
            let (c, s) = (g.c() as f64, g.s() as f64);
            assert!(c.is_finite() && s.is_finite() && r.is_finite(), "non-finite output for ({a}, {b})");
            assert!(c >= 0.0, "c < 0 for ({a}, {b})");
            assert!((c * c + s * s - 1.0).abs() <= 5.0 * 2f64.powi(-24), "c^2+s^2 off for ({a}, {b})");
            let exact = (a as f64).hypot(b as f64);
            // Two units in the last place of f32, subnormal spacing included.
            let ulp = (exact * 2f64.powi(-23)).max(2f64.powi(-149));
            assert!(((r as f64).abs() - exact).abs() <= 2.0 * ulp, "r off for ({a}, {b})");
        }
    }
}

fn check_givens64(a: f64, b: f64) {
    match Givens::generate(a, b) {
        Err(Error::NonFinite { .. }) => assert!(!a.is_finite() || !b.is_finite()),
        Err(Error::Overflow { .. }) => assert!(a.abs().max(b.abs()) > f64::MAX / 2.0, "spurious overflow ({a}, {b})"),
        Err(e) => panic!("unexpected error {e} for ({a}, {b})"),
        Ok((g, r)) => {
            let (c, s) = (g.c(), g.s());
            assert!(c.is_finite() && s.is_finite() && r.is_finite(), "non-finite output for ({a}, {b})");
            assert!(c >= 0.0);
            assert!((c * c + s * s - 1.0).abs() <= 5.0 * 2f64.powi(-53), "c^2+s^2 off for ({a}, {b})");
            let big = a.abs().max(b.abs());
            let sub = 2.0 * 2f64.powi(-1074);
            assert!(r.abs() >= big * (1.0 - 4e-16) - sub, "r off for ({a}, {b})");
            assert!(r.abs() <= big * (2f64.sqrt() + 1e-15) + sub, "r off for ({a}, {b})");
        }
    }
}

#[derive(Arbitrary, Debug)]
enum LayoutChoice {
    Chain,
    Tree,
    Full,
    FullParallel,
}

#[derive(Arbitrary, Debug)]
struct ApplyWorkload {
    layout: LayoutChoice,
    d: u16,
    rows: u8,
    quasi: bool,
    pi_tanh: bool,
    scaled: bool,
    op: u8,
    values: Vec<f32>,
}

/// Layouts and application for arbitrary `d` up to 4096 and arbitrary
/// parameters, NaN and infinities included: an error or a finite result,
/// never a panic; strict rotations without scaling keep every row's norm.
pub fn apply(data: &[u8]) {
    let Ok(w) = ApplyWorkload::arbitrary(&mut Unstructured::new(data)) else { return };
    let layout = match w.layout {
        LayoutChoice::Chain => Layout::Chain,
        LayoutChoice::Tree => Layout::Tree,
        LayoutChoice::Full => Layout::Full,
        LayoutChoice::FullParallel => Layout::FullParallel,
    };
    let max_d = if matches!(layout, Layout::Full | Layout::FullParallel) { 96 } else { 4096 };
    let d = (w.d as usize) % (max_d + 1);
    let n = (w.rows as usize % 4) + 1;
    let k = layout.num_rotations(d);
    let mut vals = w.values.iter().copied().cycle();
    let mut take = |len: usize| -> Vec<f32> {
        if w.values.is_empty() {
            vec![0.5; len]
        } else {
            (0..len).map(|_| vals.next().unwrap_or(0.0)).collect()
        }
    };
    let scale = w.scaled.then(|| take(d));
    let rot = if w.quasi {
        RotationBuf::from_quasi(layout, d, &take(4 * k), scale.as_deref())
    } else {
        let map = if w.pi_tanh { AngleMap::PiTanh } else { AngleMap::Raw };
        RotationBuf::from_angles(layout, d, map, &take(k), scale.as_deref())
    };
    let rot = match rot {
        Ok(r) => r,
        Err(_) if d == 0 => return,
        Err(Error::NonFinite { .. } | Error::NotOrthogonal { .. }) => return,
        Err(e) => panic!("unexpected construction error {e}"),
    };
    let op = [Op::Forward, Op::Transpose, Op::Inverse, Op::InverseTranspose][w.op as usize % 4];
    let mut x = take(n * d);
    let x0 = x.clone();
    let r = rot.as_rotation();
    match r.apply_rows(op, &mut x) {
        Ok(()) => {
            assert!(x.iter().all(|v| v.is_finite()), "non-finite output without an error");
            if r.is_strict() && r.scale().is_none() {
                for (a, b) in x.chunks(d).zip(x0.chunks(d)) {
                    let na: f64 = a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                    let nb: f64 = b.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                    let tol = 8.0 * f32::EPSILON as f64 * (d as f64).sqrt() * (layout.num_stages(d) as f64 + 1.0);
                    assert!((na - nb).abs() <= tol * nb + 1e-30, "norm changed: {nb} -> {na}");
                }
            }
        }
        Err(Error::NonFinite { .. }) => {
            assert!(x0.iter().any(|v| !v.is_finite()), "NonFinite error for a finite input");
            assert!(same_bits(&x, &x0), "input modified by a failing call");
        }
        Err(Error::SingularBlock { .. } | Error::SingularScale { .. }) => {
            assert!(same_bits(&x, &x0), "input modified by a failing call");
        }
        Err(Error::Overflow { .. }) => assert!(x0.iter().all(|v| v.is_finite())),
        Err(e) => panic!("unexpected apply error {e}"),
    }
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The safetensors loader on arbitrary bytes: an error or tensors whose
/// shapes account for their data, all finite.
pub fn safetensors(data: &[u8]) {
    if let Ok(tensors) = qgoft_nn::io::deserialize_tensors(data, std::path::Path::new("fuzz.safetensors")) {
        for (name, t) in &tensors {
            assert_eq!(t.shape().iter().product::<usize>(), t.len(), "{name}: shape does not match its data");
            assert!(t.data().iter().all(|v| v.is_finite()), "{name}: non-finite value accepted");
        }
    }
}

/// The CSV loader on arbitrary text: an error or a data set whose labels are
/// in range and whose features are finite.
pub fn csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let column = data.first().map_or(0, |b| (*b % 4) as usize);
    if let Ok(ds) = qgoft_nn::data::parse_csv(text, "fuzz.csv", column, None) {
        assert!(ds.labels().iter().all(|&l| l < ds.num_classes()), "label out of range accepted");
        assert!(ds.features().data().iter().all(|v| v.is_finite()), "non-finite feature accepted");
        assert_eq!(ds.features().len(), ds.len() * ds.num_features());
    }
}

/// The MNIST IDX loaders on arbitrary bytes: an error or arrays whose sizes
/// match their headers.
pub fn idx(data: &[u8]) {
    if let Ok(images) = qgoft_nn::data::parse_idx_images(data, "fuzz-images.idx") {
        assert_eq!(images.pixels.len(), images.count * images.rows * images.cols, "image sizes disagree");
    }
    if let Ok(labels) = qgoft_nn::data::parse_idx_labels(data, "fuzz-labels.idx") {
        assert_eq!(labels.len() + 8, data.len(), "label count disagrees with the file");
    }
}

#[derive(Arbitrary, Debug)]
struct DecomposeWorkload {
    d: u8,
    allow_reflection: bool,
    /// Entries of the matrix, or, with `rotate`, angles that build one.
    values: Vec<f64>,
    rotate: bool,
    perturb: f64,
}

/// Decomposition of arbitrary matrices, and of rotations built from arbitrary
/// angles and then perturbed: an error, or angles that rebuild the matrix to
/// `4 u d` in Frobenius norm.
pub fn decompose(data: &[u8]) {
    use qgoft_math::decompose::{decompose_with, rebuild, DecomposeOptions};
    let Ok(w) = DecomposeWorkload::arbitrary(&mut Unstructured::new(data)) else { return };
    let d = (w.d as usize % 24) + 1;
    let mut vals = w.values.iter().copied().cycle();
    let mut next = || if w.values.is_empty() { 0.25 } else { vals.next().unwrap_or(0.0) };
    let q: Vec<f64> = if w.rotate {
        let k = Layout::Full.num_rotations(d);
        let angles: Vec<f64> = (0..k).map(|_| next()).collect();
        let Ok(mut q) = rebuild(Layout::Full, &angles, d) else { return };
        if w.perturb.is_finite() {
            q[0] += w.perturb * 1e-12;
        }
        q
    } else {
        (0..d * d).map(|_| next()).collect()
    };
    let opts = DecomposeOptions { allow_reflection: w.allow_reflection, ..Default::default() };
    for layout in [Layout::Full, Layout::FullParallel] {
        match decompose_with(layout, &q, d, &opts) {
            Ok(dec) => {
                assert!(dec.angles.iter().all(|a| a.is_finite()), "non-finite angle");
                let mut back = rebuild(layout, &dec.angles, d).expect("rebuild of decomposed angles");
                if dec.reflected {
                    back[(d - 1) * d..].iter_mut().for_each(|v| *v = -*v);
                }
                let err: f64 = back.iter().zip(&q).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
                let tol = 4.0 * f64::EPSILON / 2.0 * d as f64 + dec.orthogonality_error * 2.0;
                assert!(err <= tol, "round trip error {err:e} > {tol:e} at d = {d}");
            }
            Err(Error::NotOrthogonal { .. } | Error::NonFinite { .. } | Error::NotSpecialOrthogonal { .. }) => {}
            Err(e) => panic!("unexpected decompose error {e}"),
        }
    }
}

/// The adapter loaders on arbitrary bytes: the first two bytes give the
/// length of an `adapter_config.json`, the rest is `adapter_model.safetensors`.
/// Configurations that parse survive a write-and-read round trip; a loaded
/// adapter gives a finite output on a finite input; a failed load leaves the
/// model without adapters.
pub fn adapter(data: &[u8]) {
    use qgoft_nn::layers::{GivensLinear, Linear, Module};
    use qgoft_nn::peft::{self, AdapterConfig};
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (config, weights) = data[2..].split_at(n);
    let Ok(text) = std::str::from_utf8(config) else { return };
    let cpath = std::path::Path::new("adapter_config.json");
    if let Ok(c) = AdapterConfig::from_json(text, cpath) {
        let again = AdapterConfig::from_json(&c.to_json(), cpath).expect("a written configuration reads back");
        assert_eq!(again, c, "configuration changed in a round trip");
    }
    let dir = std::env::temp_dir().join(format!("qgoft-fuzz-adapter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    std::fs::write(dir.join(peft::CONFIG_FILE), config).expect("write config");
    std::fs::write(dir.join(peft::WEIGHTS_FILE), weights).expect("write weights");
    let mut rng = qgoft_nn::Rng::new(0);
    let mut layers: Vec<GivensLinear> = [("fc", 4, 3), ("enc.0", 8, 4)]
        .iter()
        .map(|&(n, i, o)| GivensLinear::new(Linear::new(n, i, o, true, &mut rng)))
        .collect();
    let loaded = peft::load_adapter(&dir, &mut layers, "fuzz", None);
    std::fs::remove_dir_all(&dir).expect("remove the temporary directory");
    match loaded {
        Ok(_) => {
            for (l, d) in layers.iter().zip([4usize, 8]) {
                let mut g = qgoft_nn::Graph::new();
                let x = g.constant(qgoft_nn::Tensor::from_fn(&[2, d], |i| i as f32 * 0.25 - 1.0));
                if let Ok(y) = l.forward(&mut g, x) {
                    assert!(g.value(y).data().iter().all(|v| v.is_finite()), "non-finite output from a loaded adapter");
                }
            }
        }
        Err(_) => assert!(layers.iter().all(|l| l.adapter_names().is_empty()), "a failed load left an adapter behind"),
    }
}
