//! `qgoft-nn`: tensors, a tape autograd, layers, optimizers, data loading,
//! checkpoints and training for small models with orthogonal fine-tuning
//! adapters.
//!
//! ```
//! use qgoft_nn::{Graph, Tensor, layers::{Linear, Module}, Rng};
//! let mut rng = Rng::new(0);
//! let layer = Linear::new("fc", 4, 2, true, &mut rng);
//! let mut g = Graph::new();
//! let x = g.constant(Tensor::zeros(&[3, 4]));
//! let y = layer.forward(&mut g, x)?;
//! assert_eq!(g.value(y).shape(), &[3, 2]);
//! # Ok::<(), qgoft_nn::Error>(())
//! ```
#![deny(missing_docs)]

pub mod autograd;
pub mod cuda;
pub mod data;
pub mod demo;
pub mod error;
pub mod io;
pub mod layers;
pub mod linalg;
pub mod optim;
pub mod param;
pub mod peft;
pub mod rng;
pub mod tensor;
pub mod train;

pub use autograd::{BackwardArgs, BackwardFn, Grads, Graph, Var};
pub use error::{Error, Result};
pub use param::{Param, ParamId, ParamKind, Params};
pub use rng::Rng;
pub use tensor::Tensor;
