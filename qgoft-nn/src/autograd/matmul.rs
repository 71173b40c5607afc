//! Matrix products: `A B` and `A B^T`.
//!
//! For `C = A B`: `dA = dC B^T`, `dB = A^T dC`.
//! For `C = A B^T`: `dA = dC B`, `dB = dC^T A`.

use super::{Graph, Var};
use crate::error::Result;

impl Graph {
    /// `A B` for `A` (m x k), `B` (k x n).
    ///
    /// # Errors
    /// [`crate::Error::Shape`] on mismatched dimensions.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let a = g.leaf(Tensor::eye(2));
    /// let b = g.constant(Tensor::from_fn(&[2, 2], |i| i as f32));
    /// let c = g.matmul(a, b)?;
    /// assert_eq!(g.value(c).data(), &[0.0, 1.0, 2.0, 3.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        let value = self.value(a).matmul(self.value(b))?;
        Ok(self.record(
            &[a, b],
            value,
            Box::new(|args| {
                let (a, b, g) = (args.inputs[0], args.inputs[1], args.grad);
                let da = if args.needs[0] { Some(g.matmul_nt(b)?) } else { None };
                let db = if args.needs[1] { Some(a.matmul_tn(g)?) } else { None };
                Ok(vec![da, db])
            }),
        ))
    }

    /// `A B^T` for `A` (m x k), `B` (n x k): the linear-layer product `x W^T`.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] on mismatched dimensions.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.leaf(Tensor::full(&[1, 2], 1.0));
    /// let w = g.constant(Tensor::from_fn(&[3, 2], |i| i as f32));
    /// let y = g.matmul_nt(x, w)?;
    /// assert_eq!(g.value(y).data(), &[1.0, 5.0, 9.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn matmul_nt(&mut self, a: Var, b: Var) -> Result<Var> {
        let value = self.value(a).matmul_nt(self.value(b))?;
        Ok(self.record(
            &[a, b],
            value,
            Box::new(|args| {
                let (a, b, g) = (args.inputs[0], args.inputs[1], args.grad);
                let da = if args.needs[0] { Some(g.matmul(b)?) } else { None };
                let db = if args.needs[1] { Some(g.matmul_tn(a)?) } else { None };
                Ok(vec![da, db])
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::check::{check_gradients, random};

    #[test]
    fn matmul_backward_matches_finite_differences() {
        check_gradients(&[random(&[3, 4], 1), random(&[4, 5], 2)], |g, v| g.matmul(v[0], v[1]));
    }

    #[test]
    fn matmul_nt_backward_matches_finite_differences() {
        check_gradients(&[random(&[3, 4], 3), random(&[5, 4], 4)], |g, v| g.matmul_nt(v[0], v[1]));
    }
}
