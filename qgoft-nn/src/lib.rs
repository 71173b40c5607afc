//! `qgoft-nn`: tensors, autograd, layers and training with qGOFT adapters.
#![deny(missing_docs)]

pub mod cuda;
