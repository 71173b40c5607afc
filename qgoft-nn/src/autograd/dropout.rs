//! Inverted dropout: in training, each element is kept with probability
//! `1 - p` and scaled by `1 / (1 - p)`; `dx = mask * dy / (1 - p)`. In
//! evaluation mode (or with `p = 0`) it is the identity. Masks come from the
//! graph's seeded generator, so they are reproducible.

use super::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Graph {
    /// Dropout with drop probability `p` in `[0, 1)`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `p` is outside `[0, 1)`.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::training(1);
    /// let x = g.constant(Tensor::full(&[1000], 1.0));
    /// let y = g.dropout(x, 0.5)?;
    /// let kept = g.value(y).data().iter().filter(|&&v| v == 2.0).count();
    /// assert!((400..600).contains(&kept));
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn dropout(&mut self, x: Var, p: f32) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::invalid("dropout probability (must be in [0, 1))", p));
        }
        if !self.is_training() || p == 0.0 {
            return Ok(x);
        }
        let keep = 1.0 / (1.0 - p);
        let n = self.value(x).len();
        let mask: Vec<f32> = (0..n).map(|_| if self.rng().next_f32() < p { 0.0 } else { keep }).collect();
        let mask = Tensor::new(self.value(x).shape().to_vec(), mask)?;
        let value = self.value(x).zip_map(&mask, |v, m| v * m)?;
        Ok(self.record(&[x], value, Box::new(move |a| Ok(vec![Some(a.grad.zip_map(&mask, |g, m| g * m)?)]))))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::check::{check_gradients, random};
    use crate::{Graph, Tensor};

    #[test]
    fn dropout_backward_matches_finite_differences() {
        check_gradients(&[random(&[4, 8], 50)], |g, v| g.dropout(v[0], 0.3));
    }

    #[test]
    fn dropout_is_seeded_and_identity_in_eval() {
        let run = |seed| {
            let mut g = Graph::training(seed);
            let x = g.constant(Tensor::full(&[64], 1.0));
            let y = g.dropout(x, 0.5).unwrap();
            g.value(y).clone()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
        let mut g = Graph::new();
        let x = g.constant(Tensor::full(&[4], 1.0));
        let y = g.dropout(x, 0.9).unwrap();
        assert_eq!(g.value(y).data(), &[1.0; 4]);
        assert!(g.dropout(x, 1.0).is_err());
    }
}
