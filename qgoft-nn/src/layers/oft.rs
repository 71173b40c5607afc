//! Block-diagonal OFT (Qiu et al., 2023) with the Cayley parametrization: a
//! baseline for the Givens adapters.
//!
//! The input dimension `d` is split into `d / b` blocks of size `b`. Block
//! `k` has a skew-symmetric `Q_k` built from `b (b - 1) / 2` parameters
//! (`Q[i][j] = p`, `Q[j][i] = -p` for `i < j`, row-major over the strict
//! upper triangle) and `R_k = (I - Q_k)(I + Q_k)^{-1}`, orthogonal with
//! determinant 1. `R = diag(R_1, ..)`, and as in DESIGN.md the layer computes
//! `y = W R^T x + b`; in row form `Y = (X R) W^T + b`. Merging gives
//! `W' = W R^T`; unmerging `W = W' R`.
//!
//! Gradient of the Cayley map: with `A = I + Q`, `R = 2 A^{-1} - I`, so
//! `dR = -2 A^{-1} dQ A^{-1}` and `dL/dQ = -2 A^{-T} G A^{-T}` for
//! `G = dL/dR`; then `dL/dp = G_Q[i][j] - G_Q[j][i]`.

use super::{Adapter, Linear, Module};
use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::linalg::{Trans, gemm, inverse};
use crate::param::{Param, ParamKind};
use crate::tensor::Tensor;

/// Builds `R_k = (I - Q_k)(I + Q_k)^{-1}` for parameters `params` of shape
/// `(nb, b (b - 1) / 2)`, returning `(R` of shape `(nb, b, b)`, the inverses
/// `A_k^{-1}` in `f64)`.
fn cayley_forward(params: &Tensor, b: usize) -> Result<(Tensor, Vec<f64>)> {
    let (nb, np) = params.dims2()?;
    if np != b * (b - 1) / 2 {
        return Err(Error::shape("Cayley parameters", &[nb, b * (b - 1) / 2], params.shape()));
    }
    let mut r = vec![0.0f32; nb * b * b];
    let mut inverses = vec![0.0f64; nb * b * b];
    for k in 0..nb {
        let p = &params.data()[k * np..(k + 1) * np];
        let mut a = vec![0.0f64; b * b];
        let mut t = 0;
        for i in 0..b {
            a[i * b + i] = 1.0;
            for j in i + 1..b {
                a[i * b + j] = f64::from(p[t]);
                a[j * b + i] = -f64::from(p[t]);
                t += 1;
            }
        }
        let inv = inverse(b, &a)?;
        // R = 2 A^{-1} - I
        for i in 0..b {
            for j in 0..b {
                let v = 2.0 * inv[i * b + j] - if i == j { 1.0 } else { 0.0 };
                r[k * b * b + i * b + j] = v as f32;
            }
        }
        inverses[k * b * b..(k + 1) * b * b].copy_from_slice(&inv);
    }
    Ok((Tensor::new(vec![nb, b, b], r)?, inverses))
}

/// Records the Cayley map on `g`: parameters `(nb, b (b-1)/2)` to blocks `(nb, b, b)`.
///
/// # Errors
/// [`Error::Shape`] if the parameter count does not match `b`;
/// [`Error::InvalidArgument`] if `b < 2`.
///
/// ```
/// use qgoft_nn::{layers::cayley_blocks, Graph, Tensor};
/// let mut g = Graph::new();
/// let p = g.leaf(Tensor::new(vec![1, 1], vec![1.0])?); // one 2x2 block, Q = [[0, 1], [-1, 0]]
/// let r = cayley_blocks(&mut g, p, 2)?;
/// // (I - Q)(I + Q)^{-1} = [[0, -1], [1, 0]]: a quarter turn
/// let v = g.value(r).data();
/// assert!(v[0].abs() < 1e-7 && (v[1] + 1.0).abs() < 1e-7 && (v[2] - 1.0).abs() < 1e-7);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn cayley_blocks(g: &mut Graph, params: Var, b: usize) -> Result<Var> {
    if b < 2 {
        return Err(Error::invalid("OFT block size (must be at least 2)", b));
    }
    let (r, inverses) = cayley_forward(g.value(params), b)?;
    let nb = r.shape()[0];
    Ok(g.record(
        &[params],
        r,
        Box::new(move |a| {
            let np = b * (b - 1) / 2;
            let mut dp = vec![0.0f32; nb * np];
            for k in 0..nb {
                let inv = &inverses[k * b * b..(k + 1) * b * b];
                let gr = &a.grad.data()[k * b * b..(k + 1) * b * b];
                // T = A^{-T} G, then G_Q = -2 T A^{-T}
                let mut t = vec![0.0f64; b * b];
                for i in 0..b {
                    for j in 0..b {
                        t[i * b + j] = (0..b).map(|l| inv[l * b + i] * f64::from(gr[l * b + j])).sum();
                    }
                }
                let gq = |i: usize, j: usize| -2.0 * (0..b).map(|l| t[i * b + l] * inv[j * b + l]).sum::<f64>();
                let mut idx = 0;
                for i in 0..b {
                    for j in i + 1..b {
                        dp[k * np + idx] = (gq(i, j) - gq(j, i)) as f32;
                        idx += 1;
                    }
                }
            }
            Ok(vec![Some(Tensor::new(vec![nb, np], dp)?)])
        }),
    ))
}

/// Copies block column `k` (width `b`) of the row-major `n x d` matrix `x`.
fn block_cols(x: &[f32], n: usize, d: usize, k: usize, b: usize) -> Vec<f32> {
    (0..n).flat_map(|i| x[i * d + k * b..i * d + (k + 1) * b].iter().copied()).collect()
}

fn put_block_cols(x: &mut [f32], n: usize, d: usize, k: usize, b: usize, blk: &[f32]) {
    for i in 0..n {
        x[i * d + k * b..i * d + (k + 1) * b].copy_from_slice(&blk[i * b..(i + 1) * b]);
    }
}

/// `Y[:, blk k] = X[:, blk k] R_k` for `X` (n x d) and blocks `R` (nb, b, b), `d = nb b`.
///
/// Backward: `dX_k = dY_k R_k^T`, `dR_k = X_k^T dY_k`.
fn block_diag_matmul(g: &mut Graph, x: Var, r: Var) -> Result<Var> {
    let (xv, rv) = (g.value(x), g.value(r));
    let (n, d) = xv.dims2()?;
    let (nb, b) = match *rv.shape() {
        [nb, b, b2] if b == b2 && nb * b == d => (nb, b),
        _ => {
            return Err(Error::Shape {
                what: format!("OFT blocks (nb, b, b with nb * b = {d})"),
                expected: vec![usize::MAX; 3],
                found: rv.shape().to_vec(),
            });
        }
    };
    let mut y = vec![0.0f32; n * d];
    for k in 0..nb {
        let xk = block_cols(xv.data(), n, d, k, b);
        let mut yk = vec![0.0f32; n * b];
        gemm(n, b, b, &xk, Trans::N, &rv.data()[k * b * b..(k + 1) * b * b], Trans::N, &mut yk, false);
        put_block_cols(&mut y, n, d, k, b, &yk);
    }
    let value = Tensor::new(vec![n, d], y)?;
    Ok(g.record(
        &[x, r],
        value,
        Box::new(move |a| {
            let (xv, rv, gy) = (a.inputs[0].data(), a.inputs[1].data(), a.grad.data());
            let mut dx = vec![0.0f32; n * d];
            let mut dr = vec![0.0f32; nb * b * b];
            for k in 0..nb {
                let gk = block_cols(gy, n, d, k, b);
                if a.needs[0] {
                    let mut dxk = vec![0.0f32; n * b];
                    gemm(n, b, b, &gk, Trans::N, &rv[k * b * b..(k + 1) * b * b], Trans::T, &mut dxk, false);
                    put_block_cols(&mut dx, n, d, k, b, &dxk);
                }
                if a.needs[1] {
                    let xk = block_cols(xv, n, d, k, b);
                    gemm(b, n, b, &xk, Trans::T, &gk, Trans::N, &mut dr[k * b * b..(k + 1) * b * b], false);
                }
            }
            Ok(vec![
                a.needs[0].then(|| Tensor::new(vec![n, d], dx)).transpose()?,
                a.needs[1].then(|| Tensor::new(vec![nb, b, b], dr)).transpose()?,
            ])
        }),
    ))
}

/// Block-diagonal OFT on a frozen linear layer (see the module documentation).
/// Parameter: `<base prefix>.oft_Q` of shape `(in / b, b (b - 1) / 2)`, kind
/// [`ParamKind::Adapter`], initialised to zero (`R = I`).
///
/// ```
/// use qgoft_nn::{layers::{Adapter, BlockOft, Linear, Module}, Graph, Rng, Tensor};
/// let mut rng = Rng::new(0);
/// let mut oft = BlockOft::new(Linear::new("fc", 8, 3, true, &mut rng), 4)?;
/// assert_eq!(oft.q().shape(), vec![2, 6]);
/// oft.q().set(Tensor::from_fn(&[2, 6], |i| 0.1 * i as f32))?;
/// let mut g = Graph::new();
/// let x = g.constant(Tensor::full(&[1, 8], 1.0));
/// let y = oft.forward(&mut g, x)?;
/// let before = g.value(y).clone();
/// oft.merge()?;
/// let y = oft.forward(&mut g, x)?;
/// assert!(before.zip_map(g.value(y), |a, b| (a - b).abs())?.max_abs() < 1e-5);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BlockOft {
    base: Linear,
    q: Param,
    block: usize,
    merged: bool,
}

impl BlockOft {
    /// Wraps `base` (which is frozen) with blocks of size `block`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `block < 2` or does not divide the input width.
    ///
    /// ```
    /// use qgoft_nn::{layers::{BlockOft, Linear}, Rng};
    /// let base = Linear::new("fc", 6, 3, true, &mut Rng::new(0));
    /// assert!(BlockOft::new(base, 4).is_err());
    /// ```
    pub fn new(base: Linear, block: usize) -> Result<Self> {
        let d = base.in_features();
        if block < 2 || !d.is_multiple_of(block) {
            return Err(Error::invalid("OFT block size", format!("{block} for input width {d}")));
        }
        base.freeze();
        let prefix = base.weight().name().strip_suffix(".weight").unwrap_or(base.weight().name()).to_string();
        let q = Tensor::zeros(&[d / block, block * (block - 1) / 2]);
        Ok(BlockOft { q: Param::new(format!("{prefix}.oft_Q"), ParamKind::Adapter, q), base, block, merged: false })
    }

    /// The skew parameters.
    ///
    /// ```
    /// use qgoft_nn::{layers::{BlockOft, Linear}, Rng};
    /// let oft = BlockOft::new(Linear::new("fc", 6, 3, true, &mut Rng::new(0)), 3)?;
    /// assert_eq!(oft.q().name(), "fc.oft_Q");
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn q(&self) -> &Param {
        &self.q
    }

    /// The blocks `R_k` (nb, b, b) for the current parameters.
    ///
    /// # Errors
    /// Propagates shape errors (none for a well-formed layer).
    ///
    /// ```
    /// use qgoft_nn::{layers::{BlockOft, Linear}, Rng};
    /// let oft = BlockOft::new(Linear::new("fc", 4, 3, true, &mut Rng::new(0)), 2)?;
    /// assert_eq!(oft.rotation()?.data(), &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn rotation(&self) -> Result<Tensor> {
        Ok(cayley_forward(&self.q.value(), self.block)?.0)
    }

    /// `W <- W R^T` (`transpose = true`) or `W <- W R`, blockwise over columns.
    fn apply_to_weight(&self, transpose: bool) -> Result<()> {
        let r = self.rotation()?;
        let b = self.block;
        self.base.weight().update(|w| {
            let (m, d) = (w.shape()[0], w.shape()[1]);
            for k in 0..d / b {
                let wk = block_cols(w.data(), m, d, k, b);
                let mut out = vec![0.0f32; m * b];
                let tr = if transpose { Trans::T } else { Trans::N };
                gemm(m, b, b, &wk, Trans::N, &r.data()[k * b * b..(k + 1) * b * b], tr, &mut out, false);
                put_block_cols(w.data_mut(), m, d, k, b, &out);
            }
        });
        Ok(())
    }
}

impl Module for BlockOft {
    fn forward(&self, g: &mut Graph, x: Var) -> Result<Var> {
        if self.merged {
            return self.base.forward(g, x);
        }
        let q = g.param(&self.q);
        let r = cayley_blocks(g, q, self.block)?;
        let xr = block_diag_matmul(g, x, r)?;
        self.base.forward(g, xr)
    }

    fn params(&self) -> Vec<Param> {
        let mut ps = self.base.params();
        ps.push(self.q.clone());
        ps
    }
}

impl Adapter for BlockOft {
    fn base(&self) -> &Linear {
        &self.base
    }

    fn adapter_params(&self) -> Vec<Param> {
        vec![self.q.clone()]
    }

    fn merge(&mut self) -> Result<()> {
        if self.merged {
            return Err(Error::invalid("merge", "the OFT adapter is already merged"));
        }
        self.apply_to_weight(true)?;
        self.merged = true;
        Ok(())
    }

    fn unmerge(&mut self) -> Result<()> {
        if !self.merged {
            return Err(Error::invalid("unmerge", "the OFT adapter is not merged"));
        }
        self.apply_to_weight(false)?;
        self.merged = false;
        Ok(())
    }

    fn is_merged(&self) -> bool {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;
    use crate::autograd::check::{check_gradients, random};

    #[test]
    fn cayley_backward_matches_finite_differences() {
        check_gradients(&[random(&[2, 6], 60).map(|v| 0.5 * v)], |g, v| cayley_blocks(g, v[0], 4));
    }

    #[test]
    fn block_diag_matmul_backward_matches_finite_differences() {
        check_gradients(&[random(&[3, 6], 61), random(&[2, 3, 3], 62)], |g, v| block_diag_matmul(g, v[0], v[1]));
    }

    #[test]
    fn cayley_blocks_are_orthogonal() {
        let mut rng = Rng::new(63);
        let b = 8;
        let p = Tensor::from_fn(&[3, b * (b - 1) / 2], |_| rng.uniform(-2.0, 2.0));
        let (r, _) = cayley_forward(&p, b).unwrap();
        for k in 0..3 {
            let rk = Tensor::new(vec![b, b], r.data()[k * b * b..(k + 1) * b * b].to_vec()).unwrap();
            let err = rk.matmul_tn(&rk).unwrap().zip_map(&Tensor::eye(b), |a, e| a - e).unwrap();
            assert!(err.sum_squares().sqrt() < 1e-5, "block {k}: {}", err.sum_squares().sqrt());
        }
    }

    #[test]
    fn unmerge_restores_the_weight() {
        let mut rng = Rng::new(64);
        let mut oft = BlockOft::new(Linear::new("fc", 6, 4, true, &mut rng), 3).unwrap();
        oft.q().set(Tensor::from_fn(&[2, 3], |_| rng.uniform(-1.0, 1.0))).unwrap();
        let w0 = oft.base().weight().value();
        oft.merge().unwrap();
        assert!(w0.zip_map(&oft.base().weight().value(), |a, b| (a - b).abs()).unwrap().max_abs() > 1e-3);
        oft.unmerge().unwrap();
        assert!(w0.zip_map(&oft.base().weight().value(), |a, b| (a - b).abs()).unwrap().max_abs() < 1e-5);
    }

    #[test]
    fn mismatched_blocks_are_rejected() {
        let mut g = Graph::new();
        let x = g.constant(Tensor::zeros(&[2, 6]));
        let r = g.constant(Tensor::zeros(&[2, 2, 2]));
        assert!(block_diag_matmul(&mut g, x, r).is_err());
    }
}
