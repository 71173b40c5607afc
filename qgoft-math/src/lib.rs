//! # qgoft-math
//!
//! The `no_std` numerical core of quasi-Givens orthogonal fine-tuning (qGOFT).
//!
//! A frozen linear layer `y = W x + b` (`W` is `m x d`, out x in) is adapted by
//! a learned rotation `R`: `y = W R^T x + b`, merged weight `W' = W R^T`.
//! `R` is a product of 2x2 blocks acting on planes `(i, j)` of `R^d`, grouped
//! into stages of disjoint planes:
//!
//! ```text
//! R = P_K ... P_2 P_1 S        (S = diag(scale), identity if absent)
//! R^T x = S P_1^T ... P_K^T x
//! ```
//!
//! * [`givens`] — the 2x2 rotation and its safe generation from a pair `(a, b)`.
//! * [`layout`] — which planes, in which stages: [`Layout::Chain`],
//!   [`Layout::Tree`] (the reference qGOFT order), [`Layout::Full`] and
//!   [`Layout::FullParallel`] (all of SO(d)).
//! * [`param`] — raw angles, `theta = pi * tanh(p)`, quasi-Givens blocks.
//! * [`apply`] — `R x`, `R^T x`, `R^-1 x` on vectors and batches, the merge
//!   `W R^T` in `O(d m)` (on a weight stored row by row or column by
//!   column), dense `R` on request.
//! * [`kernel`] — the batch kernels' instruction sets (portable, AVX2,
//!   AVX-512), chosen at run time.
//! * [`grad`] — vector-Jacobian products of the batch application and the
//!   merge w.r.t. inputs and every parametrization; the penalty's gradient.
//! * [`decompose`] — a matrix of SO(d) into the full layout's angles and
//!   back, `R x = y` for the chain and the tree, the dimension a layout
//!   reaches.
//! * [`metrics`] — orthogonality error, the qGOFT penalty, determinant sign,
//!   cosine-similarity change.
//! * [`error`] — the one error type.
//!
//! ## Expressiveness, honestly
//! The chain and the tree hold `d - 1` rotations. The rotations they reach
//! form a `(d - 1)`-dimensional family inside the `d (d - 1) / 2`-dimensional
//! SO(d) ([`decompose::reachable_dimension`]); only the full layout reaches
//! every rotation. `d - 1` rotations on planes chosen for the pair move any
//! vector onto any other of the same norm (the paper's Theorem 4.1); with the
//! planes fixed by the chain or the tree that holds for many pairs but not
//! all: the tree in `d = 4` never moves `e_0` onto `e_3`
//! ([`decompose::align`] says when it does).
//!
//! ## Features
//! * `std` (default): math from the standard library.
//! * `libm`: math from `libm`, for `no_std` targets.
//! * `alloc`: owned buffers such as [`apply::RotationBuf`].
//! * `nalgebra`: conversions to and from nalgebra matrices.
//!
//! ```
//! use qgoft_math::{AngleMap, Layout, RotationBuf};
//! let d = 6;
//! let params = [0.1f64, -0.2, 0.3, 0.05, 0.4];
//! let r = RotationBuf::from_angles(Layout::Tree, d, AngleMap::PiTanh, &params, None)?;
//! let mut x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let n0: f64 = x.iter().map(|v| v * v).sum();
//! r.as_rotation().apply_transpose(&mut x)?;
//! let n1: f64 = x.iter().map(|v| v * v).sum();
//! assert!((n0 - n1).abs() <= 1e-12 * n0);
//! # Ok::<(), qgoft_math::Error>(())
//! ```
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_code)]

#[cfg(not(any(feature = "std", feature = "libm")))]
compile_error!("qgoft-math needs a math backend: enable the `std` (default) or the `libm` feature");

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod apply;
pub mod decompose;
pub mod error;
pub mod givens;
pub mod grad;
pub mod kernel;
pub mod layout;
pub mod metrics;
pub mod param;
pub mod scalar;
mod simd;

#[cfg(feature = "nalgebra")]
pub mod interop;

#[cfg(feature = "alloc")]
pub use apply::RotationBuf;
pub use apply::{Op, Rotation};
pub use error::{Error, Result};
pub use givens::Givens;
pub use grad::{vjp_merge, vjp_rows, Saved};
pub use layout::{Layout, Plane, Stage};
pub use param::{AngleMap, Block};
pub use scalar::Real;
