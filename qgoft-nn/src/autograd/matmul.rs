//! Matrix products: `A B` and `A B^T`.
//!
//! For `C = A B`: `dA = dC B^T`, `dB = A^T dC`.
//! For `C = A B^T`: `dA = dC B`, `dB = dC^T A`.
//! For the layer `Y = X W^T + b`: `dX = dY W`, `dW = dY^T X`, `db` the
//! column sums of `dY`.

use super::{Graph, Var};
use crate::error::{Error, Result};
use crate::linalg::{Trans, gemm};
use crate::tensor::Tensor;

/// `Z W^T + b` into a fresh `n x m` buffer, for `Z` (`n x d`, row-major) and
/// `W` (`m x d`): one GEMM, then the bias added row by row.
pub(crate) fn affine(z: &[f32], n: usize, d: usize, w: &Tensor, b: Option<&Tensor>) -> Vec<f32> {
    affine_checked::<false>(z, n, d, w.data(), w.shape()[0], b).0
}

/// [`affine`] with the `m x d` weight `w` given as its row-major values;
/// with `CHECK`, also whether every entry of the result is finite (tested
/// in the pass that adds the bias, or in a pass of its own without one;
/// always `true` without it).
pub(crate) fn affine_checked<const CHECK: bool>(
    z: &[f32],
    n: usize,
    d: usize,
    w: &[f32],
    m: usize,
    b: Option<&Tensor>,
) -> (Vec<f32>, bool) {
    const EXP: u32 = 0x7f80_0000;
    let mut y = vec![0.0f32; n * m];
    gemm(n, d, m, z, Trans::N, w, Trans::T, &mut y, false);
    let mut bad = 0u32;
    match b {
        Some(b) => {
            for row in y.chunks_exact_mut(m.max(1)) {
                for (v, bi) in row.iter_mut().zip(b.data()) {
                    *v += bi;
                    if CHECK {
                        bad |= u32::from(v.to_bits() & EXP == EXP);
                    }
                }
            }
        }
        None if CHECK => y.iter().for_each(|v| bad |= u32::from(v.to_bits() & EXP == EXP)),
        None => {}
    }
    (y, bad == 0)
}

/// The column sums of a row-major matrix with `m` columns: the bias
/// gradient of `X W^T + b`.
pub(crate) fn column_sums(g: &[f32], m: usize) -> Vec<f32> {
    let mut s = vec![0.0f32; m];
    for row in g.chunks_exact(m.max(1)) {
        s.iter_mut().zip(row).for_each(|(a, v)| *a += v);
    }
    s
}

/// The gradients of `Y = Z W^T + b` (`Z` n x d, `W` m x d) from `dY`
/// (n x m), each computed only where `want` (in the order `dZ`, `dW`, `db`)
/// asks: `dZ = dY W`, `dW = dY^T Z`, `db` the column sums of `dY`. `z` is
/// read only for `dW`.
pub(crate) fn affine_backward(
    gy: &[f32],
    z: &[f32],
    w: &[f32],
    (n, d, m): (usize, usize, usize),
    want: [bool; 3],
) -> [Option<Vec<f32>>; 3] {
    let dz = want[0].then(|| {
        let mut dz = vec![0.0f32; n * d];
        gemm(n, m, d, gy, Trans::N, w, Trans::N, &mut dz, false);
        dz
    });
    let dw = want[1].then(|| {
        let mut dw = vec![0.0f32; m * d];
        gemm(m, n, d, gy, Trans::T, z, Trans::N, &mut dw, false);
        dw
    });
    [dz, dw, want[2].then(|| column_sums(gy, m))]
}

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

    /// The affine layer `X W^T + b` for `X` (n x k), `W` (m x k) and an
    /// optional bias `b` (m), as one node: one GEMM and a bias pass forward;
    /// backward, only the products whose inputs need a gradient.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] if `X` or `W` is not a matrix, their widths
    /// differ, or the bias does not have `m` elements.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.leaf(Tensor::full(&[1, 2], 1.0));
    /// let w = g.constant(Tensor::from_fn(&[3, 2], |i| i as f32));
    /// let b = g.constant(Tensor::full(&[3], 0.5));
    /// let y = g.linear(x, w, Some(b))?;
    /// assert_eq!(g.value(y).data(), &[1.5, 5.5, 9.5]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let (xv, wv) = (self.value(x), self.value(w));
        let (n, k) = xv.dims2()?;
        let (m, kw) = wv.dims2()?;
        if kw != k {
            return Err(Error::shape("linear weight", &[m, k], wv.shape()));
        }
        let bv = b.map(|b| self.value(b));
        if let Some(bv) = bv
            && bv.shape() != [m]
        {
            return Err(Error::shape("linear bias", &[m], bv.shape()));
        }
        let value = Tensor::new(vec![n, m], affine(xv.data(), n, k, wv, bv))?;
        let inputs: Vec<Var> = [x, w].into_iter().chain(b).collect();
        Ok(self.record(
            &inputs,
            value,
            Box::new(move |args| {
                let (x, w, gy) = (args.inputs[0].data(), args.inputs[1].data(), args.grad.data());
                let want = [args.needs[0], args.needs[1], args.needs.get(2) == Some(&true)];
                let [dx, dw, db] = affine_backward(gy, x, w, (n, k, m), want);
                let mut out = vec![dx.map(|v| Tensor::new(vec![n, k], v)).transpose()?];
                out.push(dw.map(|v| Tensor::new(vec![m, k], v)).transpose()?);
                if b.is_some() {
                    out.push(db.map(|v| Tensor::new(vec![m], v)).transpose()?);
                }
                Ok(out)
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::autograd::Graph;
    use crate::autograd::check::{check_gradients, random};

    #[test]
    fn matmul_backward_matches_finite_differences() {
        check_gradients(&[random(&[3, 4], 1), random(&[4, 5], 2)], |g, v| g.matmul(v[0], v[1]));
    }

    #[test]
    fn matmul_nt_backward_matches_finite_differences() {
        check_gradients(&[random(&[3, 4], 3), random(&[5, 4], 4)], |g, v| g.matmul_nt(v[0], v[1]));
    }

    #[test]
    fn linear_backward_matches_finite_differences() {
        check_gradients(&[random(&[3, 4], 5), random(&[5, 4], 6), random(&[5], 7)], |g, v| {
            g.linear(v[0], v[1], Some(v[2]))
        });
        check_gradients(&[random(&[2, 3], 8), random(&[4, 3], 9)], |g, v| g.linear(v[0], v[1], None));
    }

    #[test]
    fn linear_is_matmul_nt_then_bias_add() {
        let (x, w, b) = (random(&[6, 5], 10), random(&[3, 5], 11), random(&[3], 12));
        let mut g = Graph::new();
        let (xv, wv, bv) = (g.leaf(x), g.leaf(w), g.leaf(b));
        let fused = g.linear(xv, wv, Some(bv)).unwrap();
        let p = g.matmul_nt(xv, wv).unwrap();
        let two = g.bias_add(p, bv).unwrap();
        assert_eq!(g.value(fused).data(), g.value(two).data());
        let seed = random(&[6, 3], 13);
        let a = g.backward_from(fused, seed.clone()).unwrap();
        let c = g.backward_from(two, seed).unwrap();
        for v in [xv, wv, bv] {
            assert_eq!(a.wrt(v).unwrap().data(), c.wrt(v).unwrap().data());
        }
    }

    #[test]
    fn linear_rejects_mismatched_shapes() {
        let mut g = Graph::new();
        let x = g.leaf(random(&[2, 3], 14));
        let w = g.leaf(random(&[4, 2], 15));
        let b = g.leaf(random(&[3], 16));
        let w_ok = g.leaf(random(&[4, 3], 17));
        assert!(g.linear(x, w, None).is_err());
        assert!(g.linear(x, w_ok, Some(b)).is_err());
        assert!(g.linear(x, w_ok, None).is_ok());
    }
}
