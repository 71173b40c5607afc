//! Layer normalisation over the last axis, with affine `gamma`, `beta`.
//!
//! For each row `x` of width `m`: `mu = mean(x)`, `var = mean((x - mu)^2)`
//! (biased, as PyTorch), `r = 1 / sqrt(var + eps)`, `xh = (x - mu) r`,
//! `y = gamma * xh + beta`. Backward, with `g = dy * gamma`:
//! `dx = r (g - mean(g) - xh mean(g xh))`, `dgamma = sum_rows dy xh`,
//! `dbeta = sum_rows dy`.

use super::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Graph {
    /// Layer norm of `x` (.., m) with `gamma`, `beta` of shape (m).
    ///
    /// # Errors
    /// [`Error::Shape`] if `gamma` or `beta` does not match the last axis;
    /// [`Error::InvalidArgument`] if `eps` is not positive and finite.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::new(vec![1, 2], vec![1.0, 3.0])?);
    /// let gamma = g.constant(Tensor::full(&[2], 1.0));
    /// let beta = g.constant(Tensor::zeros(&[2]));
    /// let y = g.layer_norm(x, gamma, beta, 1e-5)?;
    /// assert!((g.value(y).data()[0] + 1.0).abs() < 1e-4);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn layer_norm(&mut self, x: Var, gamma: Var, beta: Var, eps: f32) -> Result<Var> {
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(Error::invalid("layer norm eps", eps));
        }
        let xv = self.value(x);
        let m = match xv.shape().last() {
            Some(&m) if m > 0 => m,
            _ => return Err(Error::shape("layer norm input", &[usize::MAX, usize::MAX], xv.shape())),
        };
        for (name, v) in [("layer norm gamma", gamma), ("layer norm beta", beta)] {
            if self.value(v).shape() != [m] {
                return Err(Error::shape(name, &[m], self.value(v).shape()));
            }
        }
        let (gv, bv) = (self.value(gamma).data(), self.value(beta).data());
        let rows = xv.len() / m;
        let mut xhat = vec![0.0f32; xv.len()];
        let mut rstd = vec![0.0f32; rows];
        let mut y = vec![0.0f32; xv.len()];
        for (r, ((row, xh), yr)) in
            xv.data().chunks_exact(m).zip(xhat.chunks_exact_mut(m)).zip(y.chunks_exact_mut(m)).enumerate()
        {
            let mu = row.iter().map(|&v| f64::from(v)).sum::<f64>() / m as f64;
            let var = row.iter().map(|&v| (f64::from(v) - mu).powi(2)).sum::<f64>() / m as f64;
            let rs = 1.0 / (var + f64::from(eps)).sqrt();
            rstd[r] = rs as f32;
            for j in 0..m {
                xh[j] = ((f64::from(row[j]) - mu) * rs) as f32;
                yr[j] = gv[j] * xh[j] + bv[j];
            }
        }
        let value = Tensor::new(xv.shape().to_vec(), y)?;
        Ok(self.record(
            &[x, gamma, beta],
            value,
            Box::new(move |a| {
                let (dy, gamma) = (a.grad.data(), a.inputs[1].data());
                let mut dx = vec![0.0f32; dy.len()];
                let mut dgamma = vec![0.0f32; m];
                let mut dbeta = vec![0.0f32; m];
                for r in 0..rows {
                    let (dyr, xh) = (&dy[r * m..(r + 1) * m], &xhat[r * m..(r + 1) * m]);
                    let mut mean_g = 0.0f64;
                    let mut mean_gx = 0.0f64;
                    for j in 0..m {
                        let g = f64::from(dyr[j] * gamma[j]);
                        mean_g += g;
                        mean_gx += g * f64::from(xh[j]);
                        dgamma[j] += dyr[j] * xh[j];
                        dbeta[j] += dyr[j];
                    }
                    mean_g /= m as f64;
                    mean_gx /= m as f64;
                    for j in 0..m {
                        let g = f64::from(dyr[j] * gamma[j]);
                        dx[r * m + j] = (f64::from(rstd[r]) * (g - mean_g - f64::from(xh[j]) * mean_gx)) as f32;
                    }
                }
                Ok(vec![
                    Some(Tensor::new(a.inputs[0].shape().to_vec(), dx)?),
                    Some(Tensor::new(vec![m], dgamma)?),
                    Some(Tensor::new(vec![m], dbeta)?),
                ])
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::check::{check_gradients, random};

    #[test]
    fn layer_norm_backward_matches_finite_differences() {
        let inputs = [random(&[3, 5], 40).map(|v| 2.0 * v), random(&[5], 41), random(&[5], 42)];
        check_gradients(&inputs, |g, v| g.layer_norm(v[0], v[1], v[2], 1e-5));
    }

    #[test]
    fn layer_norm_rejects_bad_arguments() {
        let mut g = crate::Graph::new();
        let x = g.constant(crate::Tensor::zeros(&[2, 3]));
        let ok = g.constant(crate::Tensor::zeros(&[3]));
        let bad = g.constant(crate::Tensor::zeros(&[2]));
        assert!(g.layer_norm(x, bad, ok, 1e-5).unwrap_err().to_string().contains("gamma"));
        assert!(g.layer_norm(x, ok, ok, 0.0).is_err());
    }
}
