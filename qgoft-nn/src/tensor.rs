//! Row-major `f32` tensors: a shape and a flat buffer.
//!
//! Element `(i_0, .., i_{r-1})` of a tensor with shape `(n_0, .., n_{r-1})`
//! sits at flat index `sum_k i_k * prod_{l>k} n_l`. A scalar has shape `[]`
//! and one element. Matrix products are in [`crate::linalg`] and exposed here
//! as [`Tensor::matmul`], [`Tensor::matmul_nt`] and [`Tensor::matmul_tn`].

use crate::error::{Error, Result};
use crate::linalg::{Trans, gemm};

/// A dense row-major `f32` tensor.
///
/// ```
/// use qgoft_nn::Tensor;
/// let a = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])?;
/// let b = Tensor::new(vec![2, 1], vec![1.0, 1.0])?;
/// assert_eq!(a.matmul(&b)?.data(), &[3.0, 7.0]);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor with the given shape and row-major data.
    ///
    /// # Errors
    /// [`Error::Shape`] when `data.len()` is not the product of `shape`.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::new(vec![3], vec![1.0, 2.0, 3.0])?;
    /// assert_eq!(t.shape(), &[3]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::Shape { what: "tensor data".into(), expected: shape, found: vec![data.len()] });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::zeros(&[2, 3]);
    /// assert_eq!(t.len(), 6);
    /// ```
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor with every element equal to `value`.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::full(&[2], 1.5);
    /// assert_eq!(t.data(), &[1.5, 1.5]);
    /// ```
    pub fn full(shape: &[usize], value: f32) -> Self {
        Tensor { shape: shape.to_vec(), data: vec![value; shape.iter().product()] }
    }

    /// A scalar (shape `[]`).
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Tensor::scalar(2.0).item(), 2.0);
    /// ```
    pub fn scalar(value: f32) -> Self {
        Tensor { shape: Vec::new(), data: vec![value] }
    }

    /// A tensor whose flat element `i` is `f(i)`.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::from_fn(&[3], |i| i as f32);
    /// assert_eq!(t.data(), &[0.0, 1.0, 2.0]);
    /// ```
    pub fn from_fn(shape: &[usize], f: impl FnMut(usize) -> f32) -> Self {
        let n = shape.iter().product();
        Tensor { shape: shape.to_vec(), data: (0..n).map(f).collect() }
    }

    /// The identity matrix `I_n`.
    ///
    /// ```
    /// let i = qgoft_nn::Tensor::eye(2);
    /// assert_eq!(i.data(), &[1.0, 0.0, 0.0, 1.0]);
    /// ```
    pub fn eye(n: usize) -> Self {
        Tensor::from_fn(&[n, n], |k| if k / n == k % n { 1.0 } else { 0.0 })
    }

    /// The shape.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Tensor::zeros(&[4, 5]).shape(), &[4, 5]);
    /// ```
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The row-major elements.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Tensor::full(&[1], 3.0).data(), &[3.0]);
    /// ```
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The row-major elements, mutable.
    ///
    /// ```
    /// let mut t = qgoft_nn::Tensor::zeros(&[2]);
    /// t.data_mut()[1] = 4.0;
    /// assert_eq!(t.data(), &[0.0, 4.0]);
    /// ```
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its elements.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Tensor::scalar(1.0).into_data(), vec![1.0]);
    /// ```
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of elements.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Tensor::zeros(&[2, 3]).len(), 6);
    /// ```
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    ///
    /// ```
    /// assert!(qgoft_nn::Tensor::zeros(&[0, 3]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The single element of a one-element tensor.
    ///
    /// # Panics
    /// If the tensor does not have exactly one element.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Tensor::scalar(5.0).item(), 5.0);
    /// ```
    pub fn item(&self) -> f32 {
        assert_eq!(self.data.len(), 1, "item() needs a one-element tensor, shape is {:?}", self.shape);
        self.data[0]
    }

    /// `(rows, cols)` of a matrix.
    ///
    /// # Errors
    /// [`Error::Shape`] if the tensor is not two-dimensional.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Tensor::zeros(&[2, 3]).dims2()?, (2, 3));
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn dims2(&self) -> Result<(usize, usize)> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(Error::shape("matrix", &[usize::MAX, usize::MAX], &self.shape)),
        }
    }

    /// The same elements under a new shape.
    ///
    /// # Errors
    /// [`Error::Shape`] if the element counts differ.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::zeros(&[2, 3]).reshape(&[6])?;
    /// assert_eq!(t.shape(), &[6]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn reshape(self, shape: &[usize]) -> Result<Self> {
        Tensor::new(shape.to_vec(), self.data)
    }

    /// `self += other` elementwise.
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes differ.
    ///
    /// ```
    /// let mut a = qgoft_nn::Tensor::full(&[2], 1.0);
    /// a.add_assign(&qgoft_nn::Tensor::full(&[2], 2.0))?;
    /// assert_eq!(a.data(), &[3.0, 3.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        other.expect_shape("add_assign operand", &self.shape)?;
        self.data.iter_mut().zip(&other.data).for_each(|(a, b)| *a += b);
        Ok(())
    }

    /// `self *= c` elementwise.
    ///
    /// ```
    /// let mut a = qgoft_nn::Tensor::full(&[2], 1.5);
    /// a.scale(2.0);
    /// assert_eq!(a.data(), &[3.0, 3.0]);
    /// ```
    pub fn scale(&mut self, c: f32) {
        self.data.iter_mut().for_each(|a| *a *= c);
    }

    /// A new tensor `f(self)` elementwise.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::full(&[2], 2.0).map(|x| x * x);
    /// assert_eq!(t.data(), &[4.0, 4.0]);
    /// ```
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Tensor {
        Tensor { shape: self.shape.clone(), data: self.data.iter().map(|&x| f(x)).collect() }
    }

    /// A new tensor `f(self, other)` elementwise.
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes differ.
    ///
    /// ```
    /// let a = qgoft_nn::Tensor::full(&[2], 2.0);
    /// let b = qgoft_nn::Tensor::full(&[2], 3.0);
    /// assert_eq!(a.zip_map(&b, |x, y| x * y)?.data(), &[6.0, 6.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn zip_map(&self, other: &Tensor, f: impl Fn(f32, f32) -> f32) -> Result<Tensor> {
        other.expect_shape("elementwise operand", &self.shape)?;
        Ok(Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().zip(&other.data).map(|(&a, &b)| f(a, b)).collect(),
        })
    }

    /// Sum of squares, accumulated in `f64`.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Tensor::full(&[4], 0.5).sum_squares(), 1.0);
    /// ```
    pub fn sum_squares(&self) -> f64 {
        self.data.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
    }

    /// Largest absolute element (0 for an empty tensor).
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::new(vec![2], vec![-3.0, 2.0])?;
    /// assert_eq!(t.max_abs(), 3.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, &x| m.max(x.abs()))
    }

    /// Rows `start..end` of a tensor, viewed as a matrix over its first axis.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the range is out of bounds or the tensor is a scalar.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::from_fn(&[3, 2], |i| i as f32);
    /// assert_eq!(t.rows(1, 3)?.data(), &[2.0, 3.0, 4.0, 5.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn rows(&self, start: usize, end: usize) -> Result<Tensor> {
        if self.shape.is_empty() || start > end || end > self.shape[0] {
            return Err(Error::invalid("row range", format!("{start}..{end} for shape {:?}", self.shape)));
        }
        let width: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Ok(Tensor { shape, data: self.data[start * width..end * width].to_vec() })
    }

    /// The rows with the given indices, in that order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if an index is out of bounds or the tensor is a scalar.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::from_fn(&[3, 1], |i| i as f32);
    /// assert_eq!(t.gather_rows(&[2, 0])?.data(), &[2.0, 0.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn gather_rows(&self, indices: &[usize]) -> Result<Tensor> {
        if self.shape.is_empty() {
            return Err(Error::invalid("gather_rows on a scalar", "shape []"));
        }
        let width: usize = self.shape[1..].iter().product();
        let mut data = Vec::with_capacity(indices.len() * width);
        for &i in indices {
            if i >= self.shape[0] {
                return Err(Error::invalid("row index", format!("{i} for {} rows", self.shape[0])));
            }
            data.extend_from_slice(&self.data[i * width..(i + 1) * width]);
        }
        let mut shape = self.shape.clone();
        shape[0] = indices.len();
        Ok(Tensor { shape, data })
    }

    /// The transpose of a matrix (materialised; the products below never need it).
    ///
    /// # Errors
    /// [`Error::Shape`] if the tensor is not a matrix.
    ///
    /// ```
    /// let t = qgoft_nn::Tensor::from_fn(&[2, 3], |i| i as f32).transpose()?;
    /// assert_eq!(t.shape(), &[3, 2]);
    /// assert_eq!(t.data(), &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn transpose(&self) -> Result<Tensor> {
        let (r, c) = self.dims2()?;
        Ok(Tensor::from_fn(&[c, r], |k| self.data[(k % r) * c + k / r]))
    }

    /// Errors unless the shape equals `shape`.
    pub(crate) fn expect_shape(&self, what: &str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(Error::shape(what, shape, &self.shape));
        }
        Ok(())
    }

    /// `A B` for `A` (m x k) and `B` (k x n).
    ///
    /// # Errors
    /// [`Error::Shape`] if the operands are not matrices with matching inner dimension.
    ///
    /// ```
    /// let a = qgoft_nn::Tensor::eye(2);
    /// let b = qgoft_nn::Tensor::from_fn(&[2, 3], |i| i as f32);
    /// assert_eq!(a.matmul(&b)?, b);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn matmul(&self, b: &Tensor) -> Result<Tensor> {
        self.product(b, Trans::N, Trans::N)
    }

    /// `A B^T` for `A` (m x k) and `B` (n x k), without forming `B^T`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the operands are not matrices with matching `k`.
    ///
    /// ```
    /// let a = qgoft_nn::Tensor::from_fn(&[1, 2], |i| i as f32 + 1.0); // [1, 2]
    /// let b = qgoft_nn::Tensor::from_fn(&[3, 2], |i| i as f32);       // rows [0,1],[2,3],[4,5]
    /// assert_eq!(a.matmul_nt(&b)?.data(), &[2.0, 8.0, 14.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn matmul_nt(&self, b: &Tensor) -> Result<Tensor> {
        self.product(b, Trans::N, Trans::T)
    }

    /// `A^T B` for `A` (k x m) and `B` (k x n), without forming `A^T`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the operands are not matrices with matching `k`.
    ///
    /// ```
    /// let a = qgoft_nn::Tensor::from_fn(&[2, 1], |i| i as f32 + 1.0); // column [1, 2]
    /// let b = qgoft_nn::Tensor::from_fn(&[2, 2], |i| i as f32);
    /// assert_eq!(a.matmul_tn(&b)?.data(), &[4.0, 7.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn matmul_tn(&self, b: &Tensor) -> Result<Tensor> {
        self.product(b, Trans::T, Trans::N)
    }

    fn product(&self, b: &Tensor, ta: Trans, tb: Trans) -> Result<Tensor> {
        let (ar, ac) = self.dims2()?;
        let (br, bc) = b.dims2()?;
        let (m, k) = if ta == Trans::N { (ar, ac) } else { (ac, ar) };
        let (kb, n) = if tb == Trans::N { (br, bc) } else { (bc, br) };
        if k != kb {
            let expected = if tb == Trans::N { [k, usize::MAX] } else { [usize::MAX, k] };
            return Err(Error::shape("matmul right operand", &expected, b.shape()));
        }
        let mut out = Tensor::zeros(&[m, n]);
        gemm(m, k, n, &self.data, ta, &b.data, tb, &mut out.data, false);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn naive(a: &Tensor, b: &Tensor) -> Tensor {
        let (m, k) = a.dims2().unwrap();
        let n = b.shape()[1];
        Tensor::from_fn(&[m, n], |idx| {
            let (i, j) = (idx / n, idx % n);
            (0..k).map(|p| f64::from(a.data()[i * k + p]) * f64::from(b.data()[p * n + j])).sum::<f64>() as f32
        })
    }

    #[test]
    fn products_match_naive_including_threaded_sizes() {
        let mut rng = Rng::new(3);
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 2), (17, 33, 9), (130, 70, 150)] {
            let a = Tensor::from_fn(&[m, k], |_| rng.uniform(-1.0, 1.0));
            let b = Tensor::from_fn(&[k, n], |_| rng.uniform(-1.0, 1.0));
            let want = naive(&a, &b);
            let tol = 4.0 * f32::EPSILON * k as f32;
            let check = |got: Tensor| {
                assert_eq!(got.shape(), want.shape());
                let err = got.zip_map(&want, |x, y| (x - y).abs()).unwrap().max_abs();
                assert!(err <= tol, "error {err} > {tol} at {m}x{k}x{n}");
            };
            check(a.matmul(&b).unwrap());
            check(a.matmul_nt(&b.transpose().unwrap()).unwrap());
            check(a.transpose().unwrap().matmul_tn(&b).unwrap());
        }
    }

    #[test]
    fn repeated_large_products_are_bitwise_identical() {
        let mut rng = Rng::new(8);
        let a = Tensor::from_fn(&[200, 96], |_| rng.uniform(-1.0, 1.0));
        let b = Tensor::from_fn(&[120, 96], |_| rng.uniform(-1.0, 1.0));
        let first = a.matmul_nt(&b).unwrap();
        for _ in 0..3 {
            let again = a.matmul_nt(&b).unwrap();
            assert!(first.data().iter().zip(again.data()).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let a = Tensor::zeros(&[2, 3]);
        let err = a.matmul(&Tensor::zeros(&[2, 3])).unwrap_err();
        assert!(err.to_string().contains("[2, 3]"), "{err}");
        assert!(Tensor::zeros(&[3]).dims2().is_err());
        assert!(a.rows(1, 5).is_err());
        assert!(a.gather_rows(&[2]).is_err());
        let e = a.zip_map(&Tensor::zeros(&[3, 2]), |x, _| x).unwrap_err();
        assert!(e.to_string().contains("expected [2, 3], found [3, 2]"), "{e}");
    }
}
