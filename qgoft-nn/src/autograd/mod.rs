//! Tape autograd.
//!
//! A [`Graph`] is a tape: every operation appends a node holding its value,
//! its inputs and a backward closure. Nodes are appended after their inputs,
//! so the tape order is a topological order and [`Graph::backward`] walks it
//! in reverse, calling each closure with the gradient of the loss with
//! respect to the node's output and accumulating the returned input
//! gradients. Gradients are keyed by node for plain leaves and by
//! [`ParamId`] for parameters.
//!
//! Each operation lives in a submodule with its backward next to its forward.
//! Operations that are not part of this crate (the qGOFT adapter, whose
//! forward and vector-Jacobian products come from `qgoft-math` kernels) are
//! recorded with [`Graph::record`], passing their own backward closure; a
//! parameter passed as an input (through [`Graph::param`]) receives the
//! gradient that closure returns for it.
//!
//! ```
//! use qgoft_nn::{Graph, Tensor};
//! let mut g = Graph::new();
//! let x = g.leaf(Tensor::new(vec![1, 2], vec![1.0, -2.0])?);
//! let y = g.relu(x)?;
//! let loss = g.sum(y)?;
//! let grads = g.backward(loss)?;
//! assert_eq!(grads.wrt(x).unwrap().data(), &[1.0, 0.0]);
//! # Ok::<(), qgoft_nn::Error>(())
//! ```

mod activation;
mod dropout;
mod elementwise;
mod loss;
pub(crate) mod matmul;
mod norm;

#[cfg(test)]
pub(crate) mod check;

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::param::{Param, ParamId};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A handle to a node of a [`Graph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(usize);

/// What a backward closure receives.
#[derive(Debug)]
pub struct BackwardArgs<'a> {
    /// The values of the node's inputs, in the order given when recording.
    pub inputs: Vec<&'a Tensor>,
    /// The node's own value.
    pub output: &'a Tensor,
    /// Gradient of the loss with respect to the output (same shape).
    pub grad: &'a Tensor,
    /// Whether each input needs a gradient; the closure may return `None` where not.
    pub needs: Vec<bool>,
}

/// A backward closure: returns one optional gradient per input, each with
/// that input's shape.
pub type BackwardFn = Box<dyn Fn(&BackwardArgs<'_>) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    value: Arc<Tensor>,
    inputs: Vec<usize>,
    backward: Option<BackwardFn>,
    requires_grad: bool,
    param: Option<Param>,
}

/// A tape of operations (see the module documentation).
pub struct Graph {
    nodes: Vec<Node>,
    training: bool,
    rng: Rng,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph").field("nodes", &self.nodes.len()).field("training", &self.training).finish()
    }
}

impl Graph {
    /// An empty graph in evaluation mode (dropout is the identity).
    ///
    /// ```
    /// assert!(!qgoft_nn::Graph::new().is_training());
    /// ```
    pub fn new() -> Self {
        Graph { nodes: Vec::new(), training: false, rng: Rng::new(0) }
    }

    /// An empty graph in training mode; dropout masks are drawn from `Rng::new(seed)`.
    ///
    /// ```
    /// assert!(qgoft_nn::Graph::training(1).is_training());
    /// ```
    pub fn training(seed: u64) -> Self {
        Graph { nodes: Vec::new(), training: true, rng: Rng::new(seed) }
    }

    /// Whether the graph is in training mode.
    ///
    /// ```
    /// assert!(!qgoft_nn::Graph::default().is_training());
    /// ```
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The graph's random generator (used by dropout).
    ///
    /// ```
    /// let _ = qgoft_nn::Graph::training(3).rng().next_u64();
    /// ```
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Number of nodes on the tape.
    ///
    /// ```
    /// let mut g = qgoft_nn::Graph::new();
    /// g.constant(qgoft_nn::Tensor::scalar(1.0));
    /// assert_eq!(g.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tape is empty.
    ///
    /// ```
    /// assert!(qgoft_nn::Graph::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn push_leaf(&mut self, value: Arc<Tensor>, requires_grad: bool, param: Option<Param>) -> Var {
        self.nodes.push(Node { value, inputs: Vec::new(), backward: None, requires_grad, param });
        Var(self.nodes.len() - 1)
    }

    /// A constant input (no gradient).
    ///
    /// ```
    /// let mut g = qgoft_nn::Graph::new();
    /// let x = g.constant(qgoft_nn::Tensor::zeros(&[2]));
    /// assert_eq!(g.value(x).shape(), &[2]);
    /// ```
    pub fn constant(&mut self, value: Tensor) -> Var {
        self.push_leaf(Arc::new(value), false, None)
    }

    /// An input whose gradient [`Graph::backward`] reports (see [`Grads::wrt`]).
    ///
    /// ```
    /// let mut g = qgoft_nn::Graph::new();
    /// let x = g.leaf(qgoft_nn::Tensor::scalar(2.0));
    /// let y = g.scale(x, 3.0)?;
    /// assert_eq!(g.backward(y)?.wrt(x).unwrap().item(), 3.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn leaf(&mut self, value: Tensor) -> Var {
        self.push_leaf(Arc::new(value), true, None)
    }

    /// A parameter's current value; its gradient is reported by [`Grads::get`]
    /// when the parameter is trainable, and not computed when it is frozen.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Param, ParamKind, Tensor};
    /// let p = Param::new("w", ParamKind::Weight, Tensor::scalar(2.0));
    /// let mut g = Graph::new();
    /// let w = g.param(&p);
    /// let y = g.mul(w, w)?;
    /// assert_eq!(g.backward(y)?.get(&p).unwrap().item(), 4.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn param(&mut self, p: &Param) -> Var {
        let trainable = p.is_trainable();
        self.push_leaf(p.value(), trainable, Some(p.clone()))
    }

    /// The value of a node.
    ///
    /// # Panics
    /// If `v` belongs to another graph with fewer nodes.
    ///
    /// ```
    /// let mut g = qgoft_nn::Graph::new();
    /// let x = g.constant(qgoft_nn::Tensor::scalar(4.0));
    /// assert_eq!(g.value(x).item(), 4.0);
    /// ```
    pub fn value(&self, v: Var) -> &Tensor {
        &self.nodes[v.0].value
    }

    /// Whether a gradient flows to `v`.
    ///
    /// ```
    /// let mut g = qgoft_nn::Graph::new();
    /// let x = g.constant(qgoft_nn::Tensor::scalar(4.0));
    /// assert!(!g.requires_grad(x));
    /// ```
    pub fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// Records an operation computed outside the graph: `value` is its output
    /// and `backward` maps the output gradient to input gradients.
    ///
    /// This is the extension point for operations with their own kernels
    /// (the qGOFT adapter): pass the adapter's parameters as inputs through
    /// [`Graph::param`] and return their gradients from `backward`. When no
    /// input needs a gradient the closure is dropped unrun.
    ///
    /// # Errors
    /// Errors returned by `backward` surface from [`Graph::backward`]; a
    /// returned gradient of the wrong shape is an [`Error::Shape`] there.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.leaf(Tensor::full(&[3], 2.0));
    /// // y = x^3 elementwise, with a hand-written backward 3 x^2 dy.
    /// let y_val = g.value(x).map(|v| v * v * v);
    /// let y = g.record(&[x], y_val, Box::new(|a| {
    ///     Ok(vec![Some(a.inputs[0].zip_map(a.grad, |v, dy| 3.0 * v * v * dy)?)])
    /// }));
    /// let loss = g.sum(y)?;
    /// assert_eq!(g.backward(loss)?.wrt(x).unwrap().data(), &[12.0; 3]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn record(&mut self, inputs: &[Var], value: Tensor, backward: BackwardFn) -> Var {
        let requires_grad = inputs.iter().any(|v| self.nodes[v.0].requires_grad);
        self.nodes.push(Node {
            value: Arc::new(value),
            inputs: inputs.iter().map(|v| v.0).collect(),
            backward: if requires_grad { Some(backward) } else { None },
            requires_grad,
            param: None,
        });
        Var(self.nodes.len() - 1)
    }

    /// Reverse pass from a scalar (one-element) loss, seeded with `d loss = 1`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `loss` has more than one element; errors from
    /// backward closures.
    ///
    /// ```
    /// let mut g = qgoft_nn::Graph::new();
    /// let x = g.leaf(qgoft_nn::Tensor::zeros(&[2]));
    /// assert!(g.backward(x).is_err()); // not a scalar
    /// ```
    pub fn backward(&self, loss: Var) -> Result<Grads> {
        let v = self.value(loss);
        if v.len() != 1 {
            return Err(Error::shape("loss (backward needs one element)", &[1], v.shape()));
        }
        self.backward_from(loss, Tensor::full(v.shape(), 1.0))
    }

    /// Reverse pass from any node with a given output gradient (a
    /// vector-Jacobian product of the whole graph).
    ///
    /// # Errors
    /// [`Error::Shape`] if `seed` does not have the node's shape; errors from
    /// backward closures.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Tensor};
    /// let mut g = Graph::new();
    /// let x = g.leaf(Tensor::full(&[2], 1.0));
    /// let y = g.scale(x, 2.0)?;
    /// let grads = g.backward_from(y, Tensor::new(vec![2], vec![1.0, 3.0])?)?;
    /// assert_eq!(grads.wrt(x).unwrap().data(), &[2.0, 6.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn backward_from(&self, output: Var, seed: Tensor) -> Result<Grads> {
        seed.expect_shape("backward seed", self.value(output).shape())?;
        let mut grads: Vec<Option<Tensor>> = (0..=output.0).map(|_| None).collect();
        grads[output.0] = Some(seed);
        let mut leaves: Vec<Option<Tensor>> = (0..=output.0).map(|_| None).collect();
        let mut params: HashMap<ParamId, (Param, Tensor)> = HashMap::new();
        for i in (0..=output.0).rev() {
            let Some(grad) = grads[i].take() else { continue };
            let node = &self.nodes[i];
            if !node.requires_grad {
                continue;
            }
            let Some(backward) = &node.backward else {
                // A leaf: keep its gradient.
                match &node.param {
                    Some(p) => match params.get_mut(&p.id()) {
                        Some((_, acc)) => acc.add_assign(&grad)?,
                        None => {
                            params.insert(p.id(), (p.clone(), grad));
                        }
                    },
                    None => leaves[i] = Some(grad),
                }
                continue;
            };
            let args = BackwardArgs {
                inputs: node.inputs.iter().map(|&j| &*self.nodes[j].value).collect(),
                output: &node.value,
                grad: &grad,
                needs: node.inputs.iter().map(|&j| self.nodes[j].requires_grad).collect(),
            };
            let input_grads = backward(&args)?;
            if input_grads.len() != node.inputs.len() {
                return Err(Error::shape("backward result count", &[node.inputs.len()], &[input_grads.len()]));
            }
            for (&j, g) in node.inputs.iter().zip(input_grads) {
                let Some(g) = g else { continue };
                if !self.nodes[j].requires_grad {
                    continue;
                }
                g.expect_shape("gradient returned by backward", self.nodes[j].value.shape())?;
                match &mut grads[j] {
                    Some(acc) => acc.add_assign(&g)?,
                    slot => *slot = Some(g),
                }
            }
        }
        Ok(Grads { leaves, params })
    }
}

/// Gradients from a reverse pass.
#[derive(Debug, Default)]
pub struct Grads {
    leaves: Vec<Option<Tensor>>,
    params: HashMap<ParamId, (Param, Tensor)>,
}

impl Grads {
    /// The gradient with respect to a leaf created by [`Graph::leaf`].
    ///
    /// ```
    /// let mut g = qgoft_nn::Graph::new();
    /// let x = g.leaf(qgoft_nn::Tensor::scalar(1.0));
    /// assert_eq!(g.backward(x)?.wrt(x).unwrap().item(), 1.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn wrt(&self, v: Var) -> Option<&Tensor> {
        self.leaves.get(v.0).and_then(Option::as_ref)
    }

    /// The gradient with respect to a trainable parameter (summed over every
    /// time it entered the graph); `None` if it did not influence the loss.
    ///
    /// ```
    /// use qgoft_nn::{Graph, Param, ParamKind, Tensor};
    /// let p = Param::new("w", ParamKind::Weight, Tensor::scalar(1.0));
    /// let mut g = Graph::new();
    /// let w = g.param(&p);
    /// assert!(g.backward(w)?.get(&p).is_some());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn get(&self, p: &Param) -> Option<&Tensor> {
        self.params.get(&p.id()).map(|(_, t)| t)
    }

    /// Sets (replaces) a parameter's gradient.
    ///
    /// # Errors
    /// [`Error::Shape`] if `grad` does not have the parameter's shape.
    ///
    /// ```
    /// use qgoft_nn::{Grads, Param, ParamKind, Tensor};
    /// let p = Param::new("w", ParamKind::Weight, Tensor::zeros(&[2]));
    /// let mut grads = Grads::default();
    /// grads.insert(&p, Tensor::full(&[2], 1.0))?;
    /// assert_eq!(grads.get(&p).unwrap().data(), &[1.0, 1.0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn insert(&mut self, p: &Param, grad: Tensor) -> Result<()> {
        grad.expect_shape(&format!("gradient of {}", p.name()), &p.shape())?;
        self.params.insert(p.id(), (p.clone(), grad));
        Ok(())
    }

    /// Every parameter gradient, in no particular order.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Grads::default().params().count(), 0);
    /// ```
    pub fn params(&self) -> impl Iterator<Item = (&Param, &Tensor)> {
        self.params.values().map(|(p, t)| (p, t))
    }

    /// Every parameter gradient, mutable (for clipping or scaling).
    ///
    /// ```
    /// let mut grads = qgoft_nn::Grads::default();
    /// grads.params_mut().for_each(|(_, t)| t.scale(0.5));
    /// ```
    pub fn params_mut(&mut self) -> impl Iterator<Item = (&Param, &mut Tensor)> {
        self.params.values_mut().map(|(p, t)| (&*p, t))
    }

    /// `sqrt(sum of squares)` over every parameter gradient, in `f64`,
    /// summed in parameter-id order so the result does not depend on hashing.
    ///
    /// ```
    /// use qgoft_nn::{Grads, Param, ParamKind, Tensor};
    /// let p = Param::new("w", ParamKind::Weight, Tensor::zeros(&[2]));
    /// let mut grads = Grads::default();
    /// grads.insert(&p, Tensor::new(vec![2], vec![3.0, 4.0])?)?;
    /// assert_eq!(grads.global_norm(), 5.0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn global_norm(&self) -> f64 {
        let mut ids: Vec<&ParamId> = self.params.keys().collect();
        ids.sort();
        ids.iter().map(|id| self.params[id].1.sum_squares()).sum::<f64>().sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamKind;

    /// An external op `y = x * s` (s a per-column scale parameter) recorded
    /// with its own backward, as an adapter with its own kernels would be.
    fn column_scale(g: &mut Graph, x: Var, s: Var) -> Var {
        let (xv, sv) = (g.value(x), g.value(s));
        let m = sv.len();
        let y = Tensor::from_fn(xv.shape(), |k| xv.data()[k] * sv.data()[k % m]);
        g.record(
            &[x, s],
            y,
            Box::new(move |a| {
                let (x, s, gy) = (a.inputs[0], a.inputs[1], a.grad);
                let dx = Tensor::from_fn(x.shape(), |k| gy.data()[k] * s.data()[k % m]);
                let mut ds = Tensor::zeros(&[m]);
                for (k, (&xv, &gv)) in x.data().iter().zip(gy.data()).enumerate() {
                    ds.data_mut()[k % m] += xv * gv;
                }
                Ok(vec![a.needs[0].then_some(dx), a.needs[1].then_some(ds)])
            }),
        )
    }

    #[test]
    fn external_op_delivers_parameter_gradients_summed_over_uses() {
        let p = Param::new("adapter.scale", ParamKind::Adapter, Tensor::new(vec![2], vec![2.0, -1.0]).unwrap());
        let x = Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let mut g = Graph::new();
        let xv = g.constant(x.clone());
        let s1 = g.param(&p);
        let y = column_scale(&mut g, xv, s1);
        let s2 = g.param(&p); // the same parameter entering twice
        let y = column_scale(&mut g, y, s2);
        let loss = g.sum(y).unwrap();
        let grads = g.backward(loss).unwrap();
        // loss = sum_k x_k s_{k%2}^2, so d/ds_j = 2 s_j sum_{rows} x_{., j}
        let (s, col_sums) = ([2.0f32, -1.0], [4.0f32, 6.0]);
        let want: Vec<f32> = (0..2).map(|j| 2.0 * s[j] * col_sums[j]).collect();
        assert_eq!(grads.get(&p).unwrap().data(), &want[..]);
        p.freeze();
        let mut g = Graph::new();
        let xv = g.constant(x);
        let s = g.param(&p);
        let y = column_scale(&mut g, xv, s);
        assert!(!g.requires_grad(y));
        let loss = g.sum(y).unwrap();
        assert!(g.backward(loss).unwrap().get(&p).is_none());
    }

    #[test]
    fn wrong_backward_results_are_errors() {
        let mut g = Graph::new();
        let x = g.leaf(Tensor::zeros(&[3]));
        let y = g.record(&[x], Tensor::zeros(&[3]), Box::new(|_| Ok(vec![Some(Tensor::zeros(&[2]))])));
        let e = g.backward_from(y, Tensor::zeros(&[3])).unwrap_err();
        assert!(e.to_string().contains("gradient returned by backward"), "{e}");
        let z = g.record(&[x], Tensor::zeros(&[3]), Box::new(|_| Ok(vec![])));
        assert!(g.backward_from(z, Tensor::zeros(&[3])).is_err());
        assert!(g.backward_from(z, Tensor::zeros(&[4])).is_err());
    }
}
