//! Losses: softmax cross-entropy and mean squared error.
//!
//! Cross-entropy over a batch of `n` rows of logits `z` with labels `y_i`:
//! `L = (1/n) sum_i (logsumexp(z_i) - z_i[y_i])`, computed with the row
//! maximum subtracted; `dz_i = (softmax(z_i) - e_{y_i}) dL / n`.
//!
//! MSE: `L = (1/N) sum (p - t)^2` over all `N` elements;
//! `dp = 2 (p - t) dL / N`, `dt = -dp`.

use super::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Graph {
    /// Mean softmax cross-entropy of `logits` (n x c) against class labels.
    ///
    /// # Errors
    /// [`Error::Shape`] if `logits` is not n x c with `n = labels.len() > 0`;
    /// [`Error::Label`] for a label `>= c`.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let z = g.leaf(Tensor::zeros(&[2, 4]));
    /// let loss = g.softmax_cross_entropy(z, &[0, 3])?;
    /// assert!((g.value(loss).item() - 4f32.ln()).abs() < 1e-6);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn softmax_cross_entropy(&mut self, logits: Var, labels: &[usize]) -> Result<Var> {
        let z = self.value(logits);
        let (n, c) = z.dims2()?;
        if n != labels.len() || n == 0 {
            return Err(Error::shape("logits (one row per label)", &[labels.len(), c], z.shape()));
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= c) {
            return Err(Error::Label { index, label, num_classes: c });
        }
        let mut probs = vec![0.0f32; n * c];
        let mut total = 0.0f64;
        for (i, (row, p)) in z.data().chunks_exact(c).zip(probs.chunks_exact_mut(c)).enumerate() {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut s = 0.0f64;
            for (pj, &zj) in p.iter_mut().zip(row) {
                let e = f64::from(zj - max).exp();
                *pj = e as f32;
                s += e;
            }
            p.iter_mut().for_each(|pj| *pj = (f64::from(*pj) / s) as f32);
            total += s.ln() + f64::from(max) - f64::from(row[labels[i]]);
        }
        let loss = Tensor::scalar((total / n as f64) as f32);
        let labels = labels.to_vec();
        Ok(self.record(
            &[logits],
            loss,
            Box::new(move |a| {
                let scale = a.grad.item() / n as f32;
                let mut dz = probs.clone();
                for (i, row) in dz.chunks_exact_mut(c).enumerate() {
                    row[labels[i]] -= 1.0;
                    row.iter_mut().for_each(|v| *v *= scale);
                }
                Ok(vec![Some(Tensor::new(vec![n, c], dz)?)])
            }),
        ))
    }

    /// Mean squared error `mean((pred - target)^2)` (same shapes).
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes differ; [`Error::InvalidArgument`] if empty.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let p = g.leaf(Tensor::full(&[2], 1.0));
    /// let t = g.constant(Tensor::full(&[2], 3.0));
    /// let loss = g.mse(p, t)?;
    /// assert_eq!(g.value(loss).item(), 4.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn mse(&mut self, pred: Var, target: Var) -> Result<Var> {
        let diff = self.value(pred).zip_map(self.value(target), |p, t| p - t)?;
        let n = diff.len();
        if n == 0 {
            return Err(Error::invalid("mse of empty tensors", "0 elements"));
        }
        let loss = diff.sum_squares() / n as f64;
        Ok(self.record(
            &[pred, target],
            Tensor::scalar(loss as f32),
            Box::new(move |a| {
                let s = 2.0 * a.grad.item() / n as f32;
                let dp = a.inputs[0].zip_map(a.inputs[1], |p, t| s * (p - t))?;
                let dt = if a.needs[1] { Some(dp.map(|v| -v)) } else { None };
                Ok(vec![Some(dp), dt])
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::check::{check_gradients, random};

    #[test]
    fn cross_entropy_backward_matches_finite_differences() {
        check_gradients(&[random(&[4, 5], 30).map(|v| 3.0 * v)], |g, v| g.softmax_cross_entropy(v[0], &[0, 4, 2, 2]));
    }

    #[test]
    fn cross_entropy_is_stable_for_large_logits() {
        let mut g = crate::Graph::new();
        let z = g.leaf(crate::Tensor::new(vec![1, 2], vec![1000.0, 0.0]).unwrap());
        let loss = g.softmax_cross_entropy(z, &[1]).unwrap();
        assert_eq!(g.value(loss).item(), 1000.0);
        let grads = g.backward(loss).unwrap();
        assert_eq!(grads.wrt(z).unwrap().data(), &[1.0, -1.0]);
    }

    #[test]
    fn cross_entropy_rejects_bad_labels() {
        let mut g = crate::Graph::new();
        let z = g.leaf(crate::Tensor::zeros(&[2, 3]));
        let err = g.softmax_cross_entropy(z, &[0, 3]).unwrap_err();
        assert!(matches!(err, crate::Error::Label { index: 1, label: 3, num_classes: 3 }), "{err}");
        assert!(g.softmax_cross_entropy(z, &[0]).is_err());
    }

    #[test]
    fn mse_backward_matches_finite_differences() {
        check_gradients(&[random(&[3, 2], 31), random(&[3, 2], 32)], |g, v| g.mse(v[0], v[1]));
    }
}
