//! Elementwise arithmetic, bias broadcast and reductions.
//!
//! `z = x + y`: `dx = dz`, `dy = dz`. `z = x * y`: `dx = y dz`, `dy = x dz`.
//! `z = c x`: `dx = c dz`. `z = x + b` (b broadcast over rows): `db = sum_rows dz`.
//! `s = sum x`: `dx = ds 1`; `m = mean x`: `dx = dm / n`.

use super::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

impl Graph {
    /// `x + y` (same shapes).
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes differ.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::full(&[2], 1.0));
    /// let z = g.add(x, x)?;
    /// assert_eq!(g.value(z).data(), &[2.0, 2.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn add(&mut self, x: Var, y: Var) -> Result<Var> {
        let value = self.value(x).zip_map(self.value(y), |a, b| a + b)?;
        Ok(self.record(&[x, y], value, Box::new(|a| Ok(vec![Some(a.grad.clone()), Some(a.grad.clone())]))))
    }

    /// `x - y` (same shapes).
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes differ.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::full(&[2], 1.0));
    /// let z = g.sub(x, x)?;
    /// assert_eq!(g.value(z).data(), &[0.0, 0.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn sub(&mut self, x: Var, y: Var) -> Result<Var> {
        let value = self.value(x).zip_map(self.value(y), |a, b| a - b)?;
        Ok(self.record(&[x, y], value, Box::new(|a| Ok(vec![Some(a.grad.clone()), Some(a.grad.map(|g| -g))]))))
    }

    /// `x * y` elementwise (same shapes).
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes differ.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::full(&[2], 3.0));
    /// let z = g.mul(x, x)?;
    /// assert_eq!(g.value(z).data(), &[9.0, 9.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn mul(&mut self, x: Var, y: Var) -> Result<Var> {
        let value = self.value(x).zip_map(self.value(y), |a, b| a * b)?;
        Ok(self.record(
            &[x, y],
            value,
            Box::new(|a| {
                let dx = if a.needs[0] { Some(a.grad.zip_map(a.inputs[1], |g, y| g * y)?) } else { None };
                let dy = if a.needs[1] { Some(a.grad.zip_map(a.inputs[0], |g, x| g * x)?) } else { None };
                Ok(vec![dx, dy])
            }),
        ))
    }

    /// `c x` for a constant `c`.
    ///
    /// # Errors
    /// [`Error::NonFinite`] if `c` is NaN or infinite.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::full(&[2], 3.0));
    /// let z = g.scale(x, 0.5)?;
    /// assert_eq!(g.value(z).data(), &[1.5, 1.5]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn scale(&mut self, x: Var, c: f32) -> Result<Var> {
        if !c.is_finite() {
            return Err(Error::NonFinite { what: "scale factor".into(), index: 0, value: f64::from(c) });
        }
        let value = self.value(x).map(|v| c * v);
        Ok(self.record(&[x], value, Box::new(move |a| Ok(vec![Some(a.grad.map(|g| c * g))]))))
    }

    /// `x + b` with `x` of shape `(.., m)` and `b` of shape `(m)`, broadcast over the leading axes.
    ///
    /// # Errors
    /// [`Error::Shape`] if `b` is not a vector matching the last axis of `x`.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::zeros(&[2, 2]));
    /// let b = g.constant(Tensor::new(vec![2], vec![1.0, 2.0])?);
    /// let z = g.bias_add(x, b)?;
    /// assert_eq!(g.value(z).data(), &[1.0, 2.0, 1.0, 2.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn bias_add(&mut self, x: Var, b: Var) -> Result<Var> {
        let (xv, bv) = (self.value(x), self.value(b));
        let m = xv.shape().last().copied().unwrap_or(1);
        if bv.shape() != [m] {
            return Err(Error::shape("bias", &[m], bv.shape()));
        }
        let mut value = xv.clone();
        for row in value.data_mut().chunks_exact_mut(m.max(1)) {
            row.iter_mut().zip(bv.data()).for_each(|(v, b)| *v += b);
        }
        Ok(self.record(
            &[x, b],
            value,
            Box::new(move |a| {
                let db = if a.needs[1] {
                    Some(Tensor::new(vec![m], super::matmul::column_sums(a.grad.data(), m))?)
                } else {
                    None
                };
                Ok(vec![a.needs[0].then(|| a.grad.clone()), db])
            }),
        ))
    }

    /// Sum of all elements (a scalar), accumulated in `f64`.
    ///
    /// # Errors
    /// None at present; `Result` for uniformity.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::full(&[3], 2.0));
    /// let s = g.sum(x)?;
    /// assert_eq!(g.value(s).item(), 6.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        let s: f64 = self.value(x).data().iter().map(|&v| f64::from(v)).sum();
        Ok(self.record(
            &[x],
            Tensor::scalar(s as f32),
            Box::new(|a| Ok(vec![Some(Tensor::full(a.inputs[0].shape(), a.grad.item()))])),
        ))
    }

    /// Mean of all elements (a scalar).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `x` is empty.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.constant(Tensor::new(vec![2], vec![1.0, 3.0])?);
    /// let m = g.mean(x)?;
    /// assert_eq!(g.value(m).item(), 2.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn mean(&mut self, x: Var) -> Result<Var> {
        let n = self.value(x).len();
        if n == 0 {
            return Err(Error::invalid("mean of an empty tensor", format!("{:?}", self.value(x).shape())));
        }
        let s = self.sum(x)?;
        self.scale(s, 1.0 / n as f32)
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::check::{check_gradients, random};

    #[test]
    fn add_sub_mul_scale_backward() {
        let inputs = [random(&[3, 4], 10), random(&[3, 4], 11)];
        check_gradients(&inputs, |g, v| g.add(v[0], v[1]));
        check_gradients(&inputs, |g, v| g.sub(v[0], v[1]));
        check_gradients(&inputs, |g, v| g.mul(v[0], v[1]));
        check_gradients(&inputs[..1], |g, v| g.scale(v[0], -1.7));
        // the same input used twice accumulates both paths
        check_gradients(&inputs[..1], |g, v| g.mul(v[0], v[0]));
    }

    #[test]
    fn bias_add_sum_mean_backward() {
        check_gradients(&[random(&[5, 3], 12), random(&[3], 13)], |g, v| g.bias_add(v[0], v[1]));
        check_gradients(&[random(&[2, 3], 14)], |g, v| g.sum(v[0]));
        check_gradients(&[random(&[2, 3], 15)], |g, v| g.mean(v[0]));
    }

    #[test]
    fn shape_errors() {
        let mut g = crate::Graph::new();
        let x = g.constant(crate::Tensor::zeros(&[2, 3]));
        let b = g.constant(crate::Tensor::zeros(&[2]));
        assert!(g.bias_add(x, b).unwrap_err().to_string().contains("[3]"));
        assert!(g.add(x, b).is_err());
        assert!(g.scale(x, f32::NAN).is_err());
    }
}
