//! Activations: ReLU, GELU (tanh approximation) and tanh.
//!
//! - `relu(x) = max(x, 0)`, derivative `1[x > 0]` (0 at the kink).
//! - `gelu(x) = x/2 (1 + tanh(k (x + 0.044715 x^3)))`, `k = sqrt(2/pi)`: the
//!   tanh approximation (PyTorch `approximate="tanh"`, GPT-2, BERT's
//!   `gelu_new`), which differs from the exact `x Phi(x)` by under `1e-3`.
//!   Derivative `(1 + t)/2 + x/2 (1 - t^2) k (1 + 3 * 0.044715 x^2)`.
//! - `tanh(x)`, derivative `1 - tanh(x)^2` (from the stored output).

use super::{Graph, Var};
use crate::error::Result;

const GELU_K: f32 = 0.797_884_6; // sqrt(2 / pi)
const GELU_C: f32 = 0.044_715;

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + (GELU_K * (x + GELU_C * x * x * x)).tanh())
}

fn gelu_grad(x: f32) -> f32 {
    let t = (GELU_K * (x + GELU_C * x * x * x)).tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * x * x)
}

impl Graph {
    /// `max(x, 0)` elementwise.
    ///
    /// # Errors
    /// None at present; `Result` for uniformity.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::new(vec![2], vec![-1.0, 2.0])?);
    /// let y = g.relu(x)?;
    /// assert_eq!(g.value(y).data(), &[0.0, 2.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        let value = self.value(x).map(|v| v.max(0.0));
        Ok(self.record(
            &[x],
            value,
            Box::new(|a| Ok(vec![Some(a.inputs[0].zip_map(a.grad, |x, g| if x > 0.0 { g } else { 0.0 })?)])),
        ))
    }

    /// GELU, tanh approximation (see the module documentation).
    ///
    /// # Errors
    /// None at present; `Result` for uniformity.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::new(vec![2], vec![0.0, 3.0])?);
    /// let y = g.gelu(x)?;
    /// assert_eq!(g.value(y).data()[0], 0.0);
    /// assert!((g.value(y).data()[1] - 2.9964).abs() < 1e-3);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn gelu(&mut self, x: Var) -> Result<Var> {
        let value = self.value(x).map(gelu);
        Ok(self.record(
            &[x],
            value,
            Box::new(|a| Ok(vec![Some(a.inputs[0].zip_map(a.grad, |x, g| gelu_grad(x) * g)?)])),
        ))
    }

    /// `tanh(x)` elementwise.
    ///
    /// # Errors
    /// None at present; `Result` for uniformity.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::scalar(0.0));
    /// let y = g.tanh(x)?;
    /// assert_eq!(g.value(y).item(), 0.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        let value = self.value(x).map(f32::tanh);
        Ok(self.record(&[x], value, Box::new(|a| Ok(vec![Some(a.output.zip_map(a.grad, |t, g| (1.0 - t * t) * g)?)]))))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::check::{check_gradients, random};

    #[test]
    fn activation_backward_matches_finite_differences() {
        let x = [random(&[4, 6], 20).map(|v| 3.0 * v)];
        check_gradients(&x, |g, v| g.relu(v[0]));
        check_gradients(&x, |g, v| g.gelu(v[0]));
        check_gradients(&x, |g, v| g.tanh(v[0]));
    }

    #[test]
    fn gelu_is_close_to_exact_gelu() {
        // exact x Phi(x) at a few points (Phi from erfc tables)
        for &(x, exact) in &[(-2.0f32, -0.045_500_26f32), (-0.5, -0.154_268_5), (1.0, 0.841_344_7), (2.5, 2.484_474)] {
            assert!((super::gelu(x) - exact).abs() < 1e-3, "gelu({x}) = {} vs {exact}", super::gelu(x));
        }
    }
}
