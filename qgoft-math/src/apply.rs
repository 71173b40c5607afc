//! Applying `R`, `R^T` and `R^-1` to vectors and batches, the merge `W R^T`,
//! and dense materialisation.
//!
//! ```text
//! R      = P_K ... P_1 S          R^T    = S P_1^T ... P_K^T
//! R^-1   = S^-1 P_1^-1 ... P_K^-1  R^-T   = P_K^-T ... P_1^-T S^-1
//! ```
//!
//! `P_k` is the product of stage `k`'s blocks (see [`crate::layout`]) and
//! `S = diag(scale)`. Strict rotations are inverted by transposition; quasi
//! blocks by their 2x2 inverses.
//!
//! ## Batches
//! Three memory layouts of `n` vectors of length `d` are accepted, all
//! transformed in place:
//! * rows ([`Rotation::apply_rows`]): row-major `n x d`, vector `k` is row `k`
//!   (a single vector is a batch of one row);
//! * columns ([`Rotation::apply_cols`]): row-major `d x n`, vector `k` is
//!   column `k` (coordinate-major, the layout the kernels vectorise across);
//! * strided ([`Rotation::apply_strided`]): element `i` of vector `k` at
//!   `k * vec_stride + i * elem_stride`.
//!
//! Every layout is processed in tiles of vectors in structure-of-arrays form
//! (one contiguous run of lanes per coordinate), with all stages applied to a
//! tile while it is in cache; the inner loops run across the tile's lanes, so
//! the compiler vectorises them. Row batches are transposed tile by tile
//! through a stack buffer of [`TILE_SCRATCH`] scalars (with `std`, rows
//! longer than `TILE_SCRATCH / 8` go 8 at a time through a buffer of 32768
//! scalars where it holds them: up to d = 4096, and d = 7280 for the
//! tree; longer rows of the tree go through one heap buffer per call,
//! sized for at least 8 rows of its leaders); no other heap allocation
//! happens in this module.
//!
//! Inputs are checked for NaN and infinity before anything is written: such a
//! failing call leaves its data untouched. Outputs are checked too, so an
//! overflow is reported as [`Error::Overflow`], never returned as silent
//! infinities.

use crate::error::{check_finite, check_len, Error, Result};
use crate::kernel::Kernel;
use crate::{Block, Layout, Real};

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// Number of scalars in the stack buffer that row batches are transposed
/// through: with `std`, 64 KiB of `f32` (128 KiB of `f64`), enough for 16
/// rows of `d = 1024` so that the SIMD kernels get whole register chunks;
/// without `std` (small stacks), 16 KiB of `f32` (32 KiB of `f64`).
#[cfg(feature = "std")]
pub const TILE_SCRATCH: usize = 16384;
/// Number of scalars in the stack buffer that row batches are transposed
/// through: with `std`, 64 KiB of `f32` (128 KiB of `f64`); without `std`
/// (small stacks), 16 KiB of `f32` (32 KiB of `f64`).
#[cfg(not(feature = "std"))]
pub const TILE_SCRATCH: usize = 4096;

/// Widest tile of vectors processed at once.
const MAX_TILE: usize = 64;

/// Which operator to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `R = P_K ... P_1 S`.
    Forward,
    /// `R^T = S P_1^T ... P_K^T`: what the adapter applies to its inputs.
    Transpose,
    /// `R^-1 = S^-1 P_1^-1 ... P_K^-1`.
    Inverse,
    /// `R^-T = P_K^-T ... P_1^-T S^-1`.
    InverseTranspose,
}

impl Op {
    /// Whether the stages run first to last (`P_1` first).
    #[inline]
    pub(crate) fn ascending(self) -> bool {
        matches!(self, Op::Forward | Op::InverseTranspose)
    }

    #[inline]
    pub(crate) fn inverts(self) -> bool {
        matches!(self, Op::Inverse | Op::InverseTranspose)
    }
}

/// A borrowed rotation: a layout, its blocks in parameter order, and an
/// optional diagonal scaling.
///
/// Build the blocks with [`crate::param`], or use the owning
/// [`RotationBuf`] (feature `alloc`).
///
/// ```
/// use qgoft_math::{param::blocks_from_angles, AngleMap, Block, Layout, Op, Rotation};
/// let d = 4;
/// let mut blocks = [Block::identity(); 3];
/// blocks_from_angles(AngleMap::Raw, &[0.3f64, -0.2, 0.9], &mut blocks)?;
/// let r = Rotation::strict(Layout::Tree, d, &blocks, None)?;
/// // A batch of two rows: R^T then R gives the input back.
/// let mut x = [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.25, 2.0];
/// let x0 = x;
/// r.apply_rows(Op::Transpose, &mut x)?;
/// r.apply_rows(Op::Forward, &mut x)?;
/// for (a, b) in x.iter().zip(&x0) {
///     assert!((a - b).abs() < 1e-14);
/// }
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Rotation<'a, T> {
    layout: Layout,
    d: usize,
    blocks: &'a [Block<T>],
    scale: Option<&'a [T]>,
    strict: bool,
    /// Strict, and every block is `[[a, b], [-b, a]]` bit for bit.
    exact: bool,
    kernel: Kernel,
    /// Whether `kernel` was chosen ([`Rotation::with_kernel`]): it then
    /// runs column batches too, instead of [`Kernel::best_columns`].
    chosen: bool,
}

/// Largest deviation of a block from a rotation that [`Rotation::strict`]
/// accepts, in units of the unit roundoff.
pub const STRICT_BLOCK_TOLERANCE_ULPS: f64 = 16.0;

impl<'a, T: Real> Rotation<'a, T> {
    /// A rotation whose blocks are exact rotations (GOFT).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `d = 0`; [`Error::ShapeMismatch`] unless
    /// `blocks.len() == layout.num_rotations(d)` and `scale` (if any) has
    /// length `d`; [`Error::NonFinite`] for a non-finite entry;
    /// [`Error::NotOrthogonal`] for a block that is not a rotation
    /// `[[c, -s], [s, c]]` within [`STRICT_BLOCK_TOLERANCE_ULPS`] units of
    /// roundoff.
    pub fn strict(layout: Layout, d: usize, blocks: &'a [Block<T>], scale: Option<&'a [T]>) -> Result<Self> {
        let r = Self::validated(layout, d, blocks, scale, true)?;
        let tol = T::from_f64(STRICT_BLOCK_TOLERANCE_ULPS) * T::UNIT_ROUNDOFF;
        for b in blocks {
            let err = (b.a - b.e).abs().max((b.b + b.c).abs()).max((b.a * b.a + b.c * b.c - T::one()).abs());
            if err > tol {
                return Err(Error::NotOrthogonal { error: err.to_f64(), tolerance: tol.to_f64() });
            }
        }
        Ok(r)
    }

    /// A rotation with free (quasi-Givens) blocks (qGOFT). It is orthogonal
    /// only as far as the blocks are; see [`crate::metrics`].
    ///
    /// # Errors
    /// As [`Rotation::strict`], without the orthogonality check.
    pub fn quasi(layout: Layout, d: usize, blocks: &'a [Block<T>], scale: Option<&'a [T]>) -> Result<Self> {
        Self::validated(layout, d, blocks, scale, false)
    }

    fn validated(
        layout: Layout,
        d: usize,
        blocks: &'a [Block<T>],
        scale: Option<&'a [T]>,
        strict: bool,
    ) -> Result<Self> {
        if d == 0 {
            return Err(Error::InvalidArgument { what: "dimension d", value: 0.0 });
        }
        check_len("rotation blocks", layout.num_rotations(d), blocks.len())?;
        for (index, b) in blocks.iter().enumerate() {
            for v in b.to_array() {
                if !v.is_finite() {
                    return Err(Error::NonFinite { what: "rotation blocks", index, value: v.to_f64() });
                }
            }
        }
        if let Some(s) = scale {
            check_len("scaling", d, s.len())?;
            check_finite("scaling", s)?;
        }
        let exact = strict && blocks.iter().all(is_exact_rotation);
        Ok(Self { layout, d, blocks, scale, strict, exact, kernel: Kernel::best(), chosen: false })
    }

    /// The same rotation applied with the batch kernel `kernel` (by default
    /// [`Kernel::best`]); results of different kernels agree to a few units
    /// of roundoff per rotation (see [`crate::kernel`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if this processor cannot run `kernel`
    /// (the value is the kernel's index in [`Kernel::ALL`]).
    ///
    /// ```
    /// use qgoft_math::kernel::Kernel;
    /// use qgoft_math::{AngleMap, Layout, Op, RotationBuf};
    /// let r = RotationBuf::from_angles(Layout::Chain, 3, AngleMap::Raw, &[0.5f64, -0.25], None)?;
    /// let (mut x, mut y) = ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]);
    /// r.as_rotation().with_kernel(Kernel::Portable)?.apply_rows(Op::Forward, &mut x)?;
    /// r.as_rotation().with_kernel(Kernel::best())?.apply_rows(Op::Forward, &mut y)?;
    /// for (a, b) in x.iter().zip(&y) {
    ///     assert!((a - b).abs() < 1e-15);
    /// }
    /// # Ok::<(), qgoft_math::Error>(())
    /// ```
    pub fn with_kernel(self, kernel: Kernel) -> Result<Self> {
        if !kernel.is_available() {
            let index = Kernel::ALL.iter().position(|k| *k == kernel).unwrap_or(0);
            return Err(Error::InvalidArgument {
                what: "kernel (not supported by this processor)",
                value: index as f64,
            });
        }
        Ok(Self { kernel, chosen: true, ..self })
    }

    /// The batch kernel used: [`Kernel::best`] unless another was chosen
    /// with [`Rotation::with_kernel`]. Column batches
    /// ([`Rotation::columns_kernel`]) and the tree's VJPs over rows (see
    /// [`crate::grad`]) take their own fastest kernel unless one was
    /// chosen.
    #[inline]
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The batch kernel of [`Rotation::apply_cols`]: the one chosen with
    /// [`Rotation::with_kernel`], else [`Kernel::best_columns`] for the
    /// layout.
    #[inline]
    pub fn columns_kernel(&self) -> Kernel {
        if self.chosen {
            self.kernel
        } else {
            Kernel::best_columns(self.layout)
        }
    }

    /// Whether the kernel was chosen with [`Rotation::with_kernel`].
    #[inline]
    pub(crate) fn kernel_chosen(&self) -> bool {
        self.chosen
    }

    /// The dimension `d`.
    #[inline]
    pub fn dim(&self) -> usize {
        self.d
    }

    /// The layout.
    #[inline]
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The blocks in parameter order.
    #[inline]
    pub fn blocks(&self) -> &'a [Block<T>] {
        self.blocks
    }

    /// The diagonal scaling, if any.
    #[inline]
    pub fn scale(&self) -> Option<&'a [T]> {
        self.scale
    }

    /// Whether the blocks are exact rotations (inverted by transposition).
    #[inline]
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// Whether the rotation is strict and every block is `[[a, b], [-b, a]]`
    /// bit for bit (as blocks built from angles are): the kernels then
    /// read two coefficients per block instead of four (see
    /// [`crate::kernel`]), with bitwise the same results.
    #[inline]
    pub(crate) fn is_exact(&self) -> bool {
        self.exact
    }

    /// The same rotation with the two-coefficient evaluation turned off
    /// (to compare it with the four-coefficient one).
    #[cfg(test)]
    pub(crate) fn without_exact(self) -> Self {
        Self { exact: false, ..self }
    }

    /// `x <- R x` for one vector of length `d`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `x.len() == d`; [`Error::NonFinite`].
    pub fn apply(&self, x: &mut [T]) -> Result<()> {
        check_len("vector", self.d, x.len())?;
        self.apply_rows(Op::Forward, x)
    }

    /// `x <- R^T x` for one vector of length `d`.
    ///
    /// # Errors
    /// As [`Rotation::apply`].
    pub fn apply_transpose(&self, x: &mut [T]) -> Result<()> {
        check_len("vector", self.d, x.len())?;
        self.apply_rows(Op::Transpose, x)
    }

    /// `x <- R^-1 x` for one vector of length `d`.
    ///
    /// # Errors
    /// As [`Rotation::apply`], plus [`Error::SingularBlock`] and
    /// [`Error::SingularScale`].
    pub fn apply_inverse(&self, x: &mut [T]) -> Result<()> {
        check_len("vector", self.d, x.len())?;
        self.apply_rows(Op::Inverse, x)
    }

    /// Applies `op` to each row of the row-major `n x d` batch `x`
    /// (`n = x.len() / d`).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `d` divides `x.len()`;
    /// [`Error::NonFinite`] for a non-finite input; for the inverses,
    /// [`Error::SingularBlock`] or [`Error::SingularScale`]: nothing is
    /// written on these errors. [`Error::Overflow`] if a finite input
    /// produced an infinite output (possible with quasi blocks or a scaling
    /// of large norm, or inputs near the largest finite value); the batch's
    /// contents are then unspecified.
    pub fn apply_rows(&self, op: Op, x: &mut [T]) -> Result<()> {
        let d = self.d;
        let tile = self.row_tile(x.len())?;
        self.check_input(x)?;
        self.check_invertible(op)?;
        if tile < 2 {
            let mut finite = true;
            for row in x.chunks_exact_mut(d) {
                self.run_soa(op, row, 1, 0, 1);
                finite &= crate::simd::Dispatch::all_finite(self.kernel, row);
            }
            return overflow_unless(finite);
        }
        overflow_unless(crate::simd::Dispatch::rows(self.kernel, self, op, None, x, tile).1)
    }

    /// Applies `op` to each row of the row-major `n x d` batch `x` into
    /// `out` (same length), leaving `x` as it is. For the tree with `d` a
    /// multiple of 8 the input is checked as it is read, in the same pass
    /// as the rotation: one pass over the data where [`Rotation::apply_rows`]
    /// on a copy makes three (copy, check, rotation). The exception, `f32`
    /// rows a multiple of 4 KiB apart (`d` a multiple of 1024): there the
    /// out-of-place pass keeps evicting the lines it reads, and the batch
    /// is copied, checked and rotated in place, 0.70 to 0.83 ns per element
    /// against 1.06 to 1.15 in one pass (one thread, AVX2).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `d` divides `x.len()` and
    /// `out.len() == x.len()`; for the inverses, [`Error::SingularBlock`] or
    /// [`Error::SingularScale`] (nothing written). [`Error::NonFinite`] for
    /// a non-finite input and [`Error::Overflow`] for an infinite output:
    /// `out`'s contents are then unspecified.
    ///
    /// ```
    /// use qgoft_math::{AngleMap, Layout, Op, RotationBuf};
    /// let r = RotationBuf::from_angles(Layout::Tree, 8, AngleMap::Raw, &[0.1f32; 7], None)?;
    /// let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
    /// let (mut a, mut b) = (x.clone(), vec![0.0; 16]);
    /// r.as_rotation().apply_rows(Op::Transpose, &mut a)?;
    /// r.as_rotation().apply_rows_into(Op::Transpose, &x, &mut b)?;
    /// assert_eq!(a, b);
    /// # Ok::<(), qgoft_math::Error>(())
    /// ```
    pub fn apply_rows_into(&self, op: Op, x: &[T], out: &mut [T]) -> Result<()> {
        let d = self.d;
        let tile = self.row_tile(x.len())?;
        check_len("output batch (same length as the input)", x.len(), out.len())?;
        self.check_invertible(op)?;
        if tile < 2 {
            self.check_input(x)?;
            out.copy_from_slice(x);
            let mut finite = true;
            for row in out.chunks_exact_mut(d) {
                self.run_soa(op, row, 1, 0, 1);
                finite &= crate::simd::Dispatch::all_finite(self.kernel, row);
            }
            return overflow_unless(finite);
        }
        if crate::kernel::rows_into_by_copy(self) {
            // Copied whole, checked, then rotated in place (see the
            // kernel's reasons). One copy, not pieces: with the output 16
            // bytes past the input modulo 4 KiB, pieces of 16 KiB copied at
            // 2.4 ns per element and the whole batch at 0.2 (the system's
            // copy picks its method by size).
            out.copy_from_slice(x);
            self.check_input(out)?;
            return overflow_unless(crate::simd::Dispatch::rows(self.kernel, self, op, None, out, tile).1);
        }
        let (input_ok, finite) = crate::simd::Dispatch::rows(self.kernel, self, op, Some(x), out, tile);
        if !input_ok {
            return check_finite("input batch", x);
        }
        overflow_unless(finite)
    }

    /// Rows per tile of the row kernels for a row-major batch of `len`
    /// scalars: whole 8 x 8 blocks for the transposes where the buffer
    /// allows.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `d` divides `len`.
    fn row_tile(&self, len: usize) -> Result<usize> {
        let d = self.d;
        self.vectors_in("row batch length (a multiple of d)", len)?;
        let fit = (TILE_SCRATCH / d).min(MAX_TILE);
        Ok(if fit >= 8 {
            fit / 8 * 8
        } else if cfg!(feature = "std") && (8 * d <= crate::kernel::ROWS_BIG || crate::kernel::fused_rows_forward(self))
        {
            8
        } else {
            fit
        })
    }

    /// Applies `op` to each column of the row-major `d x n` matrix `x`, with
    /// [`Rotation::columns_kernel`].
    ///
    /// The SIMD kernels load and store whole registers of a row's entries
    /// (32 bytes with AVX2, 64 with AVX-512). Where `x` starts on such a
    /// boundary and `n` is a multiple of the register's lanes, none of
    /// them straddles two cache lines: with AVX2, the tree at `d = 256`,
    /// `n = 64` (`f32`) took 2.6 - 2.8 us a call from a 32-byte boundary
    /// and 3.2 - 3.8 us from 4, 8, 16 or 48 bytes past one.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `x.len() == d * n`; otherwise as
    /// [`Rotation::apply_rows`].
    pub fn apply_cols(&self, op: Op, x: &mut [T], n: usize) -> Result<()> {
        Self { kernel: self.columns_kernel(), ..*self }.apply_cols_here(op, x, n)
    }

    /// [`Rotation::apply_cols`] on this rotation's own kernel.
    fn apply_cols_here(&self, op: Op, x: &mut [T], n: usize) -> Result<()> {
        check_len("column batch (d * n)", self.d * n, x.len())?;
        self.check_input(x)?;
        self.check_invertible(op)?;
        let d = self.d;
        // Packed tiles: within 32 KiB (the first-level cache) if that leaves
        // 16 lanes or more, else 16 lanes from the whole buffer.
        let in_l1 = (32 * 1024 / core::mem::size_of::<T>()).min(TILE_SCRATCH) / d / 8 * 8;
        let packed = if in_l1 >= 16 { in_l1.min(MAX_TILE) } else { (TILE_SCRATCH / d / 8 * 8).min(16) };
        if self.layout == Layout::Tree || packed < 8 {
            // The tree kernel builds each register block's coefficients once
            // and sweeps every lane with them, a few passes in all: one tile.
            // Where it found every output finite as it wrote it, no pass of
            // its own for that; where it could not tell, the pass below.
            if self.run_soa(op, x, n, 0, n) {
                return Ok(());
            }
        } else if self.layout == Layout::Chain {
            // One streaming pass per plane over tiles of up to 512 lanes:
            // the carried coordinate stays in cache from one plane to the
            // next.
            let mut c0 = 0;
            while c0 < n {
                let tw = (n - c0).min(512);
                self.run_soa(op, x, n, c0, tw);
                c0 += tw;
            }
        } else {
            // The other layouts make many passes over a tile: it is packed
            // into a contiguous stack buffer (rows of a batch whose width is
            // a power of two would otherwise fall into the same cache sets).
            let mut scratch = [T::zero(); TILE_SCRATCH];
            let mut c0 = 0;
            while c0 < n {
                let tw = packed.min(n - c0);
                let buf = &mut scratch[..d * tw];
                for (i, b) in buf.chunks_exact_mut(tw).enumerate() {
                    b.copy_from_slice(&x[i * n + c0..i * n + c0 + tw]);
                }
                self.run_soa(op, buf, tw, 0, tw);
                for (i, b) in buf.chunks_exact(tw).enumerate() {
                    x[i * n + c0..i * n + c0 + tw].copy_from_slice(b);
                }
                c0 += tw;
            }
        }
        overflow_unless(crate::simd::Dispatch::all_finite(self.kernel, x))
    }

    /// Applies `op` to `n` vectors where element `i` of vector `k` is
    /// `x[k * vec_stride + i * elem_stride]`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the strides make vectors or elements
    /// overlap; [`Error::ShapeMismatch`] if `x` is too short; otherwise as
    /// [`Rotation::apply_rows`].
    pub fn apply_strided(&self, op: Op, x: &mut [T], n: usize, vec_stride: usize, elem_stride: usize) -> Result<()> {
        let d = self.d;
        if n == 0 {
            return Ok(());
        }
        let disjoint = (d == 1 || elem_stride > 0)
            && (n == 1 || vec_stride > 0)
            && (n == 1 || d == 1 || vec_stride >= d * elem_stride || elem_stride >= n * vec_stride);
        if !disjoint {
            return Err(Error::InvalidArgument {
                what: "strides (vectors or elements overlap)",
                value: vec_stride as f64,
            });
        }
        let needed = (n - 1) * vec_stride + (d - 1) * elem_stride + 1;
        if x.len() < needed {
            return Err(Error::ShapeMismatch { what: "strided batch length", expected: needed, found: x.len() });
        }
        for k in 0..n {
            for i in 0..d {
                let v = x[k * vec_stride + i * elem_stride];
                if !v.is_finite() {
                    return Err(Error::NonFinite {
                        what: "input batch",
                        index: k * vec_stride + i * elem_stride,
                        value: v.to_f64(),
                    });
                }
            }
        }
        self.check_invertible(op)?;
        if vec_stride == 1 {
            // Coordinate-major: vectorise across the batch.
            let mut c0 = 0;
            while c0 < n {
                let tw = MAX_TILE.min(n - c0);
                self.run_soa(op, x, elem_stride, c0, tw);
                c0 += tw;
            }
        } else {
            for k in 0..n {
                self.run_soa(op, x, elem_stride, k * vec_stride, 1);
            }
        }
        let finite = (0..n).all(|k| (0..d).all(|i| x[k * vec_stride + i * elem_stride].is_finite()));
        overflow_unless(finite)
    }

    /// The merge `W <- W R^T` for a row-major `m x d` weight (`m = w.len() / d`),
    /// in `O(d m)` without forming `R`: row `r` of `W R^T` is `R w_r`.
    ///
    /// # Errors
    /// As [`Rotation::apply_rows`].
    pub fn merge(&self, w: &mut [T]) -> Result<()> {
        self.apply_rows(Op::Forward, w)
    }

    /// Undoes [`Rotation::merge`]: `W <- W R^-T`, row by row `R^-1 w_r`,
    /// without any dense inverse.
    ///
    /// # Errors
    /// As [`Rotation::apply_rows`] with [`Op::Inverse`].
    pub fn unmerge(&self, w: &mut [T]) -> Result<()> {
        self.apply_rows(Op::Inverse, w)
    }

    /// The merge `W <- W R^T` for an `m x d` weight stored column by column
    /// (`W^T` row-major, `d x m`, as nalgebra stores a matrix;
    /// `m = w_t.len() / d`): [`Rotation::apply_cols`] on its `m` columns,
    /// bitwise the values [`Rotation::merge`] gives on the same weight
    /// stored row by row. The batch is structure-of-arrays already, so
    /// the columns kernel needs no register transposes: on one core of a
    /// Zen 4 class host (AVX-512), `d = m = 4096` in `f32` took 4.45 - 4.61
    /// ms this way against 9.96 - 10.12 ms row by row (the crate's limits
    /// bench).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `d` divides `w_t.len()`; otherwise as
    /// [`Rotation::apply_cols`].
    ///
    /// ```
    /// use qgoft_math::{AngleMap, Layout, RotationBuf};
    /// let r = RotationBuf::from_angles(Layout::Tree, 4, AngleMap::Raw, &[0.3f64, -0.2, 0.9], None)?;
    /// let r = r.as_rotation();
    /// // A 2 x 4 weight, row by row and column by column.
    /// let mut w = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    /// let mut w_t = vec![1.0, 5.0, 2.0, 6.0, 3.0, 7.0, 4.0, 8.0];
    /// r.merge(&mut w)?;
    /// r.merge_col_major(&mut w_t)?;
    /// for i in 0..2 {
    ///     for j in 0..4 {
    ///         assert_eq!(w[i * 4 + j].to_bits(), w_t[j * 2 + i].to_bits());
    ///     }
    /// }
    /// # Ok::<(), qgoft_math::Error>(())
    /// ```
    pub fn merge_col_major(&self, w_t: &mut [T]) -> Result<()> {
        let m = self.vectors_in("column-major weight length (a multiple of d)", w_t.len())?;
        self.apply_cols(Op::Forward, w_t, m)
    }

    /// Undoes [`Rotation::merge_col_major`]: `W <- W R^-T` for a weight
    /// stored column by column.
    ///
    /// # Errors
    /// As [`Rotation::merge_col_major`], and as [`Rotation::apply_cols`] with
    /// [`Op::Inverse`].
    pub fn unmerge_col_major(&self, w_t: &mut [T]) -> Result<()> {
        let m = self.vectors_in("column-major weight length (a multiple of d)", w_t.len())?;
        self.apply_cols(Op::Inverse, w_t, m)
    }

    /// `len / d`, the vectors of `d` scalars in `len` of them.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] naming `what` unless `d` divides `len`.
    fn vectors_in(&self, what: &'static str, len: usize) -> Result<usize> {
        let d = self.d;
        if !len.is_multiple_of(d) {
            return Err(Error::ShapeMismatch { what, expected: d * (len / d + 1), found: len });
        }
        Ok(len / d)
    }

    /// Writes the dense `d x d` matrix `R` (row-major) into `out`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless `out.len() == d * d`.
    pub fn to_dense(&self, out: &mut [T]) -> Result<()> {
        let d = self.d;
        check_len("dense output (d * d)", d * d, out.len())?;
        for (k, v) in out.iter_mut().enumerate() {
            *v = if k % (d + 1) == 0 { T::one() } else { T::zero() };
        }
        self.apply_cols(Op::Forward, out, d)
    }

    /// [`Error::NonFinite`] naming the first non-finite entry of `x`.
    #[inline]
    fn check_input(&self, x: &[T]) -> Result<()> {
        if crate::simd::Dispatch::all_finite(self.kernel, x) {
            Ok(())
        } else {
            check_finite("input batch", x)
        }
    }

    /// Checks, before anything is written, that `op` can be applied.
    fn check_invertible(&self, op: Op) -> Result<()> {
        if !op.inverts() {
            return Ok(());
        }
        if let Some(s) = self.scale {
            if let Some(index) = s.iter().position(|v| *v == T::zero()) {
                return Err(Error::SingularScale { index, value: 0.0 });
            }
        }
        if !self.strict {
            for (k, b) in self.blocks.iter().enumerate() {
                b.inverse(k)?;
            }
        }
        Ok(())
    }

    /// The tree's stages `s0 ..` as a tree of their own: they act on the
    /// multiples of `2^s0` only, which form the tree of `ceil(d / 2^s0)`
    /// coordinates with the remaining parameters (no scaling).
    pub(crate) fn sub_tree(&self, s0: usize) -> Self {
        debug_assert_eq!(self.layout, Layout::Tree);
        let offset = if s0 < Layout::Tree.num_stages(self.d) {
            Layout::Tree.stage(self.d, s0).offset
        } else {
            self.blocks.len()
        };
        let d = self.d.div_ceil(1 << s0);
        Self {
            layout: Layout::Tree,
            d,
            blocks: &self.blocks[offset..],
            scale: None,
            strict: self.strict,
            exact: self.exact,
            kernel: self.kernel,
            chosen: self.chosen,
        }
    }

    /// The block that `op` applies for block `b`.
    #[inline(always)]
    pub(crate) fn effective(&self, op: Op, b: Block<T>) -> Block<T> {
        match (op, self.strict) {
            (Op::Forward, _) | (Op::InverseTranspose, true) => b,
            (Op::Transpose, _) | (Op::Inverse, true) => b.transpose(),
            (Op::Inverse, false) => inverse_unchecked(b),
            (Op::InverseTranspose, false) => inverse_unchecked(b).transpose(),
        }
    }

    /// Applies `op` to the lanes `base .. base + tw` of the structure-of-arrays
    /// data where coordinate `i` lies at `data[i * ld + base ..][.. tw]`.
    /// Returns `true` where the kernel found every output finite as it
    /// wrote it; `false` where it did not check or could not tell.
    #[inline]
    fn run_soa(&self, op: Op, data: &mut [T], ld: usize, base: usize, tw: usize) -> bool {
        crate::simd::Dispatch::run(self.kernel, self, op, data, ld, base, tw)
    }

    #[inline(always)]
    pub(crate) fn scale_lanes(&self, op: Op, data: &mut [T], ld: usize, base: usize, tw: usize) {
        let Some(s) = self.scale else { return };
        for (i, &si) in s.iter().enumerate() {
            let lanes = &mut data[i * ld + base..i * ld + base + tw];
            if op.inverts() {
                lanes.iter_mut().for_each(|v| *v = *v / si);
            } else {
                lanes.iter_mut().for_each(|v| *v = *v * si);
            }
        }
    }
}

/// Whether `b` is `[[a, b], [-b, a]]` bit for bit (`==` with equal signs
/// is equality of the bits for finite values, zeros included).
fn is_exact_rotation<T: Real>(b: &Block<T>) -> bool {
    let same = |x: T, y: T| x == y && x.is_sign_negative() == y.is_sign_negative();
    same(b.e, b.a) && same(b.c, -b.b)
}

/// `Ok` if `finite`, else the error for an output that overflowed.
#[inline]
fn overflow_unless(finite: bool) -> Result<()> {
    if finite {
        Ok(())
    } else {
        Err(Error::Overflow { what: "rotated output (its contents are unspecified)" })
    }
}

/// `(x[k], y[k]) <- b (x[k], y[k])` for every lane `k`.
#[inline(always)]
pub(crate) fn rotate_lanes<T: Real>(b: Block<T>, x: &mut [T], y: &mut [T]) {
    let (a, bb, c, e) = (b.a, b.b, b.c, b.e);
    for (u, v) in x.iter_mut().zip(y.iter_mut()) {
        let (p, q) = (*u, *v);
        *u = a * p + bb * q;
        *v = c * p + e * q;
    }
}

#[inline(always)]
fn inverse_unchecked<T: Real>(b: Block<T>) -> Block<T> {
    let det = b.det();
    Block { a: b.e / det, b: -b.b / det, c: -b.c / det, e: b.a / det }
}

/// An owned rotation (feature `alloc`): blocks and scaling in vectors.
///
/// ```
/// use qgoft_math::{AngleMap, Layout, RotationBuf};
/// let r = RotationBuf::from_angles(Layout::Chain, 3, AngleMap::Raw, &[0.5f32, -0.5], None)?;
/// let mut dense = [0.0f32; 9];
/// r.as_rotation().to_dense(&mut dense)?;
/// assert!((dense[0] - 0.5f32.cos()).abs() < 1e-6);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq)]
pub struct RotationBuf<T> {
    layout: Layout,
    d: usize,
    blocks: Vec<Block<T>>,
    scale: Option<Vec<T>>,
    strict: bool,
    exact: bool,
}

#[cfg(feature = "alloc")]
impl<T: Real> RotationBuf<T> {
    /// The identity rotation of the layout (all angles zero), strict.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `d = 0`.
    pub fn identity(layout: Layout, d: usize) -> Result<Self> {
        let blocks = alloc::vec![Block::identity(); layout.num_rotations(d)];
        let exact = Rotation::strict(layout, d, &blocks, None)?.exact;
        Ok(Self { layout, d, blocks, scale: None, strict: true, exact })
    }

    /// A strict rotation from angle parameters (and an optional scaling).
    ///
    /// # Errors
    /// As [`crate::param::blocks_from_angles`] and [`Rotation::strict`].
    pub fn from_angles(layout: Layout, d: usize, map: AngleMap, params: &[T], scale: Option<&[T]>) -> Result<Self> {
        let mut blocks = alloc::vec![Block::identity(); params.len()];
        crate::param::blocks_from_angles(map, params, &mut blocks)?;
        let exact = Rotation::strict(layout, d, &blocks, scale)?.exact;
        Ok(Self { layout, d, blocks, scale: scale.map(|s| s.to_vec()), strict: true, exact })
    }

    /// A quasi rotation from flat `[a, b, c, e]` block parameters.
    ///
    /// # Errors
    /// As [`crate::param::blocks_from_quasi`] and [`Rotation::quasi`].
    pub fn from_quasi(layout: Layout, d: usize, params: &[T], scale: Option<&[T]>) -> Result<Self> {
        let mut blocks = alloc::vec![Block::identity(); params.len() / 4];
        crate::param::blocks_from_quasi(params, &mut blocks)?;
        Rotation::quasi(layout, d, &blocks, scale)?;
        Ok(Self { layout, d, blocks, scale: scale.map(|s| s.to_vec()), strict: false, exact: false })
    }

    /// The borrowed view that applies it.
    pub fn as_rotation(&self) -> Rotation<'_, T> {
        Rotation {
            layout: self.layout,
            d: self.d,
            blocks: &self.blocks,
            scale: self.scale.as_deref(),
            strict: self.strict,
            exact: self.exact,
            kernel: Kernel::best(),
            chosen: false,
        }
    }

    /// The dense `d x d` matrix `R`, row-major.
    pub fn to_dense(&self) -> Vec<T> {
        let mut out = alloc::vec![T::zero(); self.d * self.d];
        // Cannot fail: the shape is right and the identity is finite.
        let _ = self.as_rotation().to_dense(&mut out);
        out
    }
}

#[cfg(feature = "alloc")]
use crate::AngleMap;
