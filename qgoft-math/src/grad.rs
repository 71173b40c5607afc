//! Gradients: vector-Jacobian products (VJPs) of the batch application and of
//! the merge, the chain rules from block gradients to every parametrization,
//! and the gradient of the qGOFT penalty.
//!
//! ## What is differentiated
//! The forward maps are those of [`crate::apply`], applied to each row `x_r` of
//! a row-major `n x d` batch:
//!
//! ```text
//! Op::Transpose (the adapter):  y_r = R^T x_r = S P_1^T ... P_K^T x_r
//! Op::Forward   (the merge):    w'_r = R w_r  = P_K ... P_1 S w_r      (W' = W R^T)
//! ```
//!
//! Given the upstream gradient `G = dL/dY` (same shape), [`vjp_rows`] returns
//! `dL/dX` in place of `G` ([`vjp_rows_owned`] does the same for a caller
//! that owns `G`, checking the inputs through the results instead of before
//! the work; [`vjp_rows_from_input`] gives the block gradients of an
//! unscaled strict rotation from `X` and `dL/dX` for a caller that applied
//! it merged into a weight) and accumulates `dL/dB_k` for every block
//! `B_k = [[a, b], [c, e]]` and `dL/ds` for the scaling. Each elementary step
//! `z' = M z` of the forward (a block `M = B_k` or `B_k^T` on its plane, or
//! the scaling) is undone in reverse order:
//!
//! ```text
//! dL/dM += sum_r g'_r z_r^T        (outer product of upstream gradient and step input)
//! g_r    = M^T g'_r                (gradient of the step input)
//! ```
//!
//! with `dL/dB_k = dL/dM` for [`Op::Forward`] and its transpose for
//! [`Op::Transpose`]; for the scaling `dL/ds_i += sum_r g'_ri z_ri` and
//! `g_ri = s_i g'_ri`. Chain rules to the trainable parameters:
//! [`angle_param_grads`] (raw angles and `pi * tanh`), [`quasi_param_grads`]
//! (flat `[a, b, c, e]`), and [`penalty_grad`] for the penalty.
//!
//! ## What the backward stores
//! The backward needs the input `z` of every step. [`Saved`] says how it gets
//! them:
//! * [`Saved::Output`] (strict rotations only): the forward's output `Y`. The
//!   input of each step is recovered from its output by the inverse step,
//!   `z = M^T z'` (and `z_i = z'_i / s_i` for the scaling), while walking the
//!   steps in reverse. Nothing is stored per stage: the extra memory is two
//!   tiles of `d x w` values (the recovered inputs and the gradient of `w`
//!   rows in flight) plus the summation levels below. The recovered inputs
//!   agree with the forward's to rounding: within `2 u sqrt(d) |x|` for the
//!   chain and the tree from `d = 8` on (`2 u (sqrt(d) + 2) |x|` below, where
//!   one rotation's forward and inverse roundings alone reach `~3.4 u`), and
//!   `2 u d |x|` for the full layouts. For the tree, two stages are undone
//!   per pass over the tile, blocks of four coordinates and their gradients
//!   held in registers (bitwise the same results as stage by stage). For
//!   the tree with `d` a multiple of 8 the tiles are not copied at all: the
//!   first three stages are undone on the rows in place, 8 x 8 blocks at a
//!   time transposed into registers, and only every eighth coordinate (two
//!   tiles of `d / 8` values per row) is gathered for the later stages;
//!   the results are again bitwise those of the stage-by-stage walk.
//! * [`Saved::Input`] (any rotation, needed for quasi blocks): the forward's
//!   input `X`. The forward is recomputed tile by tile and the two inputs of
//!   every block are kept for the tile only: `2 (number of blocks) x w`
//!   values besides the two tiles (for the tree about `2 d` values per row of
//!   the tile, twice the tile itself; for the full layout `d (d - 1)` per row).
//!   Nothing proportional to the batch is stored.
//!
//! The caller provides all of this as one scratch slice of
//! [`workspace_len`] scalars (or uses [`Workspace`], feature `alloc`); no
//! heap allocation happens here.
//!
//! ## Summation
//! Per tile, the block and scaling gradients are summed across the tile's
//! lanes in `8` interleaved partial sums (vectorised, combined pairwise);
//! the tile sums are combined across tiles by pairwise (binary-counter)
//! summation, one level per power of two of tiles. The rounding error of a
//! parameter gradient therefore grows like `log n` in the batch size `n`,
//! not like `n`.
//!
//! ## Kernels
//! The backward runs on the rotation's kernel ([`Rotation::kernel`]) if
//! one was chosen with [`Rotation::with_kernel`]. Otherwise the tree's
//! rows from its output ([`Saved::Output`], `d` a multiple of 8) and its
//! VJP from the input ([`vjp_rows_from_input`], [`Op::Transpose`]) take
//! AVX-512 wherever the processor has it, also where it splits each 512-bit
//! operation in two: from the input in `f32`, from the output in `f64` and
//! in `f32` with rows a multiple of 2 KiB apart (`d` a multiple of 512).
//! On such a processor these ran 5 - 8 % (from the input) and up to 1.9
//! times (from the output) as fast as on AVX2, and the other cases slower.
//! Everything else runs on [`Kernel::best`]. All kernels give bitwise the
//! same results, so the choice changes only the speed.
//!
//! ## Accumulation
//! Every gradient output of this module is *accumulated* into (`+=`), never
//! overwritten, so gradients of several batches or several terms of a loss
//! add up in place. Zero the outputs first for a fresh gradient.
//!
//! ```
//! use qgoft_math::grad::{angle_param_grads, vjp_rows, workspace_len, Saved};
//! use qgoft_math::{param::blocks_from_angles, AngleMap, Block, Layout, Op, Rotation};
//! let (d, map) = (4, AngleMap::PiTanh);
//! let params = [0.3f64, -0.2, 0.1];
//! let mut blocks = [Block::identity(); 3];
//! blocks_from_angles(map, &params, &mut blocks)?;
//! let r = Rotation::strict(Layout::Tree, d, &blocks, None)?;
//! // Forward: two rows through R^T.
//! let mut y = [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.25, 2.0];
//! r.apply_rows(Op::Transpose, &mut y)?;
//! // Backward of L = sum(G * Y), from the output alone.
//! let mut g = [0.5, -1.0, 2.0, 0.0, 1.0, 1.0, -0.5, 0.25];
//! let mut dblocks = [Block::default(); 3];
//! let mut work = vec![0.0; workspace_len(&r, Saved::Output(&y))];
//! vjp_rows(&r, Op::Transpose, Saved::Output(&y), &mut g, &mut dblocks, None, &mut work)?;
//! let mut dparams = [0.0; 3];
//! angle_param_grads(map, &params, &dblocks, &mut dparams)?;
//! // dL/dX = R G row by row: norms are kept.
//! let n0: f64 = [0.5f64, -1.0, 2.0, 0.0].iter().map(|v| v * v).sum();
//! let n1: f64 = g[..4].iter().map(|v| v * v).sum();
//! assert!((n0 - n1).abs() < 1e-14);
//! # Ok::<(), qgoft_math::Error>(())
//! ```

use crate::apply::rotate_lanes;
use crate::error::{check_finite, check_len, Error, Result};
use crate::kernel::{gather, transpose, GradRows, Kernel, Transposer};
use crate::{AngleMap, Block, Layout, Op, Real, Rotation, Stage};

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// Interleaved partial sums per lane group (the SIMD width the kernels are
/// written for).
const LANES: usize = 8;

/// Target number of scalars in one tile (`d x w`).
const TILE_BUDGET: usize = 8192;

/// Target number of scalars in one tile of the strict backward: wider
/// tiles (more lanes per reduction of the partial sums) while the two tiles
/// stay in the second-level cache.
const STRICT_TILE_BUDGET: usize = 49152;

/// Widest tile of rows processed at once.
const MAX_TILE: usize = 64;

/// Coordinates per block of [`backward_cross`]: the tree's first three
/// stages act within each block of 8.
const CROSS: usize = 8;

/// The tree's stages that act within each block of [`CROSS`] coordinates.
const CROSS_STAGES: usize = CROSS.trailing_zeros() as usize;

/// Rows per tile of [`backward_cross`] (fewer where the batch has fewer).
/// Each row's leaders go to `d / 8` places one tile's width apart; at a
/// width of 32 or 64 lanes (128 or 256 bytes of `f32`) those places fall
/// into a quarter or half of the first-level cache's sets, which then hold
/// more lines than they have ways. An odd multiple of 8 lanes spreads them
/// over all sets, and ran faster: AVX2, `f32`, one
/// thread, ns per element, 64 rows against 56: 0.91 against 0.79 at
/// `(n, d) = (512, 768)`, 0.85 against 0.72 at `(512, 512)`, 0.91 against
/// 0.79 at `(512, 1024)` (32 rows there: 0.90), within 5 % of each other
/// at `d = 128, 256, 2048, 4096`.
const CROSS_TILE: usize = 56;

/// What the backward pass is given of the forward pass (see the
/// [module documentation](self)).
///
/// ```
/// use qgoft_math::grad::Saved;
/// let y = [1.0f32, 2.0];
/// assert!(matches!(Saved::Output(&y), Saved::Output(_)));
/// ```
#[derive(Clone, Copy, Debug)]
pub enum Saved<'a, T> {
    /// The forward's output, row-major `n x d` (strict rotations only): the
    /// stage inputs are recovered by inverse rotation.
    Output(&'a [T]),
    /// The forward's input, row-major `n x d`: the stage inputs are
    /// recomputed tile by tile.
    Input(&'a [T]),
}

impl<'a, T> Saved<'a, T> {
    /// The saved rows.
    ///
    /// ```
    /// use qgoft_math::grad::Saved;
    /// assert_eq!(Saved::Input(&[1.0f64, 2.0][..]).data().len(), 2);
    /// ```
    #[inline]
    pub fn data(&self) -> &'a [T] {
        match *self {
            Saved::Output(s) | Saved::Input(s) => s,
        }
    }
}

/// The sizes of one backward run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    d: usize,
    n: usize,
    /// Tile width (rows per tile).
    tw: usize,
    /// Number of tiles.
    tiles: usize,
    /// Summation levels.
    levels: usize,
    /// Scalars per gradient set: `4 * blocks + (d if scaled)`.
    g_len: usize,
    /// Scalars kept per tile for recomputed block inputs.
    save_len: usize,
    /// Whether the tiles go through the row-major fused backward of the
    /// tree ([`tile_rows_fused`]).
    rows_fused: bool,
    /// Whether the run is [`backward_cross`] (then `g_len` is the length of
    /// its sums per tile).
    cross: bool,
}

impl Geometry {
    fn of<T: Real>(rot: &Rotation<'_, T>, saved: &Saved<'_, T>) -> Self {
        let d = rot.dim();
        let n = saved.data().len() / d;
        let budget = match saved {
            Saved::Output(_) => STRICT_TILE_BUDGET,
            Saved::Input(_) => TILE_BUDGET,
        };
        let rows_fused = matches!(saved, Saved::Output(_)) && crate::kernel::fused_rows_fit(rot);
        let tw = if rows_fused {
            // Rows stay in place: as many as share each block's coefficients.
            (n.div_ceil(LANES) * LANES).clamp(LANES, MAX_TILE)
        } else {
            (budget / d / LANES * LANES).clamp(LANES, MAX_TILE).min(n.max(1))
        };
        let tiles = n.div_ceil(tw);
        let levels = (usize::BITS - tiles.leading_zeros()) as usize;
        let nb = rot.blocks().len();
        let g_len = 4 * nb + if rot.scale().is_some() { d } else { 0 };
        let save_len = match saved {
            Saved::Output(_) => 0,
            Saved::Input(_) => 2 * nb * tw,
        };
        Self { d, n, tw, tiles, levels, g_len, save_len, rows_fused, cross: false }
    }

    /// The sizes of [`backward_cross`] on `n` rows (`rot` as
    /// [`cross_fits`] requires).
    fn cross<T: Real>(rot: &Rotation<'_, T>, n: usize) -> Self {
        let d = rot.dim();
        let q = d / CROSS;
        let tw = CROSS_TILE.min(n.div_ceil(LANES) * LANES);
        let tiles = n.div_ceil(tw);
        let levels = (usize::BITS - tiles.leading_zeros()) as usize;
        let g_len = 4 * (q - 1) + CROSS * CROSS * q;
        Self { d, n, tw, tiles, levels, g_len, save_len: 0, rows_fused: false, cross: true }
    }

    fn workspace_len(&self) -> usize {
        if self.n == 0 {
            return 0;
        }
        if self.cross {
            // Levels, two leader tiles, the block gradients.
            self.levels * self.g_len + 2 * (self.d / CROSS) * self.tw + 4 * (self.d - 1)
        } else if self.rows_fused {
            self.levels * self.g_len + self.fused_len()
        } else {
            self.plain_len()
        }
    }

    /// Scratch of [`tile_rows_fused`]: two leader tiles and two padded
    /// groups of 8 rows.
    fn fused_len(&self) -> usize {
        2 * (self.d / LANES) * self.tw + 4 * LANES * self.d
    }

    /// The workspace of the structure-of-arrays walk over the same tiles.
    fn plain_len(&self) -> usize {
        self.levels * self.g_len + 2 * self.d * self.tw + self.save_len
    }
}

/// Number of scalars of scratch that [`vjp_rows`] needs for this rotation and
/// this saved batch (`n = saved.data().len() / d` rows).
///
/// It is `L * (4 K + d_s) + 2 d w + s`, with `K` blocks, `d_s = d` when the
/// rotation is scaled (else 0), a tile width `w <= 64` rows, `L = 1 +
/// floor(log2(ceil(n / w)))` summation levels, and `s = 2 K w` for
/// [`Saved::Input`] (`0` for [`Saved::Output`]). For the tree from its
/// output with `d` a multiple of 8 (done on the rows in place) the tile
/// term `2 d w` becomes `2 (d / 8) w + 32 d`. Zero for an empty batch.
///
/// ```
/// use qgoft_math::grad::{workspace_len, Saved};
/// use qgoft_math::{Block, Layout, Rotation};
/// let blocks = [Block::<f32>::identity(); 7];
/// let r = Rotation::strict(Layout::Tree, 8, &blocks, None)?;
/// let y = vec![0.0f32; 8 * 100];
/// let strict = workspace_len(&r, Saved::Output(&y));
/// let stored = workspace_len(&r, Saved::Input(&y));
/// assert!(stored > strict && strict > 0);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn workspace_len<T: Real>(rot: &Rotation<'_, T>, saved: Saved<'_, T>) -> usize {
    Geometry::of(rot, &saved).workspace_len()
}

/// The vector-Jacobian product of applying `op` ([`Op::Transpose`] or
/// [`Op::Forward`]) to each row of a row-major `n x d` batch.
///
/// With `Y = op(X)` row by row and `dy = dL/dY` on entry:
/// * `dy` is overwritten by `dL/dX` (for [`Op::Transpose`], row `r` becomes
///   `R dy_r`; for [`Op::Forward`], `R^T dy_r`);
/// * `dblocks[k] += dL/dB_k` entry by entry (`a, b, c, e`);
/// * `dscale[i] += dL/ds_i` when given (the rotation must then be scaled).
///
/// `saved` is the forward's output ([`Saved::Output`], strict rotations) or
/// input ([`Saved::Input`], any rotation). `work` is scratch of at least
/// [`workspace_len`] scalars; its contents on entry are ignored.
///
/// # Errors
/// Nothing is written on error.
/// * [`Error::InvalidArgument`] for an inverse `op`, or for
///   [`Saved::Output`] with a quasi rotation;
/// * [`Error::ShapeMismatch`] unless `saved` and `dy` have the same length, a
///   multiple of `d`, `dblocks` has one entry per block, `dscale` has `d`
///   entries (and the rotation a scaling), and `work` is long enough;
/// * [`Error::NonFinite`] for a non-finite saved value or upstream gradient;
/// * [`Error::SingularScale`] for [`Saved::Output`] with a zero scaling entry
///   (the step input cannot be recovered; pass the input instead).
///
/// ```
/// use qgoft_math::grad::{vjp_rows, workspace_len, Saved};
/// use qgoft_math::{Block, Layout, Op, Rotation};
/// // A quasi block on d = 2: y = B^T x. With L = sum(g * y), dL/dB = x g^T.
/// let blocks = [Block { a: 1.0f64, b: 0.5, c: -0.25, e: 2.0 }];
/// let r = Rotation::quasi(Layout::Tree, 2, &blocks, None)?;
/// let x = [3.0, 5.0];
/// let mut g = [1.0, -1.0];
/// let mut db = [Block::default()];
/// let mut work = vec![0.0; workspace_len(&r, Saved::Input(&x))];
/// vjp_rows(&r, Op::Transpose, Saved::Input(&x), &mut g, &mut db, None, &mut work)?;
/// assert_eq!(db[0], Block { a: 3.0, b: -3.0, c: 5.0, e: -5.0 });
/// assert_eq!(g, [1.0 * 1.0 + 0.5 * -1.0, -0.25 * 1.0 + 2.0 * -1.0]); // B g
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn vjp_rows<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    saved: Saved<'_, T>,
    dy: &mut [T],
    dblocks: &mut [Block<T>],
    dscale: Option<&mut [T]>,
    work: &mut [T],
) -> Result<()> {
    vjp(rot, op, saved, dy, dblocks, dscale, work, true)
}

/// [`vjp_rows`] for a caller that owns `dy` and has no use for it after an
/// error (a training step's upstream gradient): the saved batch and `dy`
/// are checked through the results instead of by two passes over them
/// before the work. The results are bitwise those of [`vjp_rows`].
///
/// Every value of both batches reaches the block gradients (each coordinate
/// is in some block, and a non-finite value stays non-finite through
/// rotations, products and sums), or the scaling gradient for `d = 1`;
/// only an unscaled rotation of width 1 has neither, and is checked before
/// the work as [`vjp_rows`] does.
///
/// # Errors
/// As [`vjp_rows`], except for non-finite values: `dblocks` and `dscale` are
/// never written on error, but on [`Error::NonFinite`] and
/// [`Error::Overflow`] the contents of `dy` are unspecified.
/// * [`Error::NonFinite`] naming the first non-finite entry of the saved
///   batch (`"saved batch"`) if it has one; otherwise the first non-finite
///   entry of the computed `dL/dX` (`"input gradient (from a non-finite
///   upstream gradient)"`), which lies in the row of the offending upstream
///   value (rows are independent);
/// * [`Error::Overflow`] when both batches are finite and a block or
///   scaling gradient overflowed.
///
/// ```
/// use qgoft_math::grad::{vjp_rows, vjp_rows_owned, workspace_len, Saved};
/// use qgoft_math::{AngleMap, Block, Error, Layout, Op, RotationBuf};
/// let r = RotationBuf::from_angles(Layout::Tree, 4, AngleMap::Raw, &[0.3f64, -0.2, 0.9], None)?;
/// let r = r.as_rotation();
/// let y = [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0];
/// let mut work = vec![0.0; workspace_len(&r, Saved::Output(&y))];
/// let (mut g1, mut g2) = ([0.5; 8], [0.5; 8]);
/// let (mut db1, mut db2) = ([Block::default(); 3], [Block::default(); 3]);
/// vjp_rows(&r, Op::Transpose, Saved::Output(&y), &mut g1, &mut db1, None, &mut work)?;
/// vjp_rows_owned(&r, Op::Transpose, Saved::Output(&y), &mut g2, &mut db2, None, &mut work)?;
/// assert_eq!((g1, db1), (g2, db2));
/// // A NaN in the second row of the upstream gradient.
/// g2 = [0.5; 8];
/// g2[6] = f64::NAN;
/// let err = vjp_rows_owned(&r, Op::Transpose, Saved::Output(&y), &mut g2, &mut db2, None, &mut work);
/// assert!(matches!(err, Err(Error::NonFinite { index: 4..=7, .. })), "{err:?}");
/// assert_eq!(db2, db1);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn vjp_rows_owned<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    saved: Saved<'_, T>,
    dy: &mut [T],
    dblocks: &mut [Block<T>],
    dscale: Option<&mut [T]>,
    work: &mut [T],
) -> Result<()> {
    vjp(rot, op, saved, dy, dblocks, dscale, work, false)
}

/// Number of scalars of scratch that [`vjp_rows_from_input`] needs: that of
/// [`vjp_rows`] from the saved batch `x` (the input gradient is only read,
/// tile by tile, so it needs no room of its own), or, for the tree of exact
/// unscaled blocks with `d` a multiple of 8 (the sums of 8 x 8 blocks,
/// for [`Op::Transpose`]), the larger of that and
/// `L (4 (d/8 - 1) + 8 d) + 2 (d/8) w + 4 (d - 1)` with tiles of `w`
/// rows and `L` summation levels. Zero for an empty batch.
///
/// ```
/// use qgoft_math::grad::{workspace_len, workspace_len_from_input, Saved};
/// use qgoft_math::{Block, Layout, Rotation};
/// let blocks = [Block::<f32>::identity(); 7];
/// let r = Rotation::strict(Layout::Tree, 8, &blocks, None)?;
/// let x = vec![0.0f32; 8 * 100];
/// assert_eq!(workspace_len_from_input(&r, &x), workspace_len(&r, Saved::Output(&x)));
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn workspace_len_from_input<T: Real>(rot: &Rotation<'_, T>, x: &[T]) -> usize {
    let plain = workspace_len(rot, Saved::Output(x));
    if cross_fits(rot) && !x.is_empty() {
        plain.max(Geometry::cross(rot, x.len() / rot.dim()).workspace_len())
    } else {
        plain
    }
}

/// Whether [`vjp_rows_from_input`] of [`Op::Transpose`] goes through
/// [`backward_cross`]: the tree of exact blocks without scaling, `d` a
/// multiple of 8.
fn cross_fits<T: Real>(rot: &Rotation<'_, T>) -> bool {
    let d = rot.dim();
    rot.layout() == Layout::Tree && rot.is_strict() && rot.scale().is_none() && d >= CROSS && d.is_multiple_of(CROSS)
}

/// The block gradients of an exact rotation without scaling applied to each
/// row, `Y = op(X)` ([`Op::Transpose`] or [`Op::Forward`]), from its input
/// `x` and the gradient with respect to its input `dx = dL/dX`: for a caller
/// that never formed `Y`, because it applied `op` merged into the weight of
/// a following product (`op(X) W^T = X (W op^T)^T`, with `dL/dX` from that
/// product). `dblocks[k] += dL/dB_k` entry by entry (`a, b, c, e`); `x` and
/// `dx` are only read.
///
/// The rotation's inverse is its transpose, and the inverse maps `Y` back to
/// `X`: the backward of the inverse from its output `X`, with `dL/dX` as
/// its upstream gradient, recovers the inputs of every stage and carries
/// `dL/dX` to `dL/dY` (for an orthogonal step `M`, `dL/dz_k = M dL/dz_(k-1)`).
/// Its block gradients `D_k` are those of the inverse; the rotation's are
/// `B_k D_k^T B_k`. The same kernels as [`vjp_rows`] from [`Saved::Output`],
/// reading the input gradient where it lies and writing no carried
/// gradient back; except for [`Op::Transpose`] of the tree with `d` a
/// multiple of 8, where the first three stages' gradients come from one
/// 8 x 8 sum `sum_r dx'_r x'_r^T` per block of 8 coordinates, rotated by
/// those stages alone (no stage applied to the rows; the same results up
/// to rounding, bitwise the same on every kernel).
///
/// `work` is scratch of at least [`workspace_len_from_input`] scalars.
///
/// # Errors
/// Nothing is written on error.
/// * [`Error::InvalidArgument`] for an inverse `op`, a quasi rotation or a
///   scaled one (their inverse is not their transpose);
/// * [`Error::ShapeMismatch`] unless `x` and `dx` have the same length, a
///   multiple of `d`, `dblocks` has one entry per block, and `work` is long
///   enough;
/// * [`Error::NonFinite`] naming the first non-finite entry of `x` (`"input
///   batch"`), or else of `dx` (`"input gradient"`);
/// * [`Error::Overflow`] when both are finite and a block gradient
///   overflowed.
///
/// ```
/// use qgoft_math::grad::{vjp_rows, vjp_rows_from_input, workspace_len, workspace_len_from_input, Saved};
/// use qgoft_math::{AngleMap, Block, Layout, Op, RotationBuf};
/// let r = RotationBuf::from_angles(Layout::Tree, 4, AngleMap::Raw, &[0.3f64, -0.2, 0.9], None)?;
/// let r = r.as_rotation();
/// let x = [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0];
/// // Through the rotated batch: Y = X R, then dL/dX and the block gradients.
/// let mut y = [0.0; 8];
/// r.apply_rows_into(Op::Transpose, &x, &mut y)?;
/// let mut dx = [0.5, -1.0, 0.25, 2.0, 1.0, 0.0, -0.5, 1.5];
/// let mut db = [Block::default(); 3];
/// let mut work = vec![0.0; workspace_len(&r, Saved::Output(&y))];
/// vjp_rows(&r, Op::Transpose, Saved::Output(&y), &mut dx, &mut db, None, &mut work)?;
/// // From the input side: the same block gradients up to rounding.
/// let mut db2 = [Block::default(); 3];
/// let mut work = vec![0.0; workspace_len_from_input(&r, &x)];
/// vjp_rows_from_input(&r, Op::Transpose, &x, &dx, &mut db2, &mut work)?;
/// for (p, q) in db.iter().zip(&db2) {
///     assert!((p.a - q.a).abs() + (p.b - q.b).abs() + (p.c - q.c).abs() + (p.e - q.e).abs() < 1e-12);
/// }
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn vjp_rows_from_input<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    x: &[T],
    dx: &[T],
    dblocks: &mut [Block<T>],
    work: &mut [T],
) -> Result<()> {
    let inverse = match op {
        Op::Transpose => Op::Forward,
        Op::Forward => Op::Transpose,
        _ => return Err(Error::InvalidArgument { what: "operator of a VJP (Forward or Transpose only)", value: 0.0 }),
    };
    if !rot.is_strict() {
        return Err(Error::InvalidArgument {
            what: "quasi rotation in a VJP from the input side (its inverse is not its transpose)",
            value: 0.0,
        });
    }
    if rot.scale().is_some() {
        return Err(Error::InvalidArgument {
            what: "scaled rotation in a VJP from the input side (its inverse is not its transpose)",
            value: 0.0,
        });
    }
    let saved = Saved::Output(x);
    let need = workspace_len_from_input(rot, x);
    let geo = check_vjp(rot, inverse, saved, dx.len(), dblocks.len(), None, need)?;
    if work.len() < need {
        return Err(Error::ShapeMismatch { what: "gradient workspace", expected: need, found: work.len() });
    }
    if geo.n == 0 {
        return Ok(());
    }
    let geo = if inverse == Op::Forward && cross_fits(rot) { Geometry::cross(rot, geo.n) } else { geo };
    if geo.g_len == 0 {
        // No block reaches a result that could be checked (d = 1).
        check_finite("input batch", x)?;
        check_finite("input gradient", dx)?;
        return Ok(());
    }
    let total = crate::simd::Dispatch::backward(
        backward_kernel(rot, &geo),
        rot,
        inverse,
        saved,
        GradRows::Read(dx),
        &mut work[..need],
        &geo,
    );
    if !total.iter().all(|v| v.is_finite()) {
        check_finite("input batch", x)?;
        check_finite("input gradient", dx)?;
        return Err(Error::Overflow { what: "block gradients of a VJP" });
    }
    for ((db, s), b) in dblocks.iter_mut().zip(total.chunks_exact(4)).zip(rot.blocks()) {
        // B D^T B with D = [[s0, s1], [s2, s3]]: first P = B D^T.
        let (p11, p12) = (b.a * s[0] + b.b * s[1], b.a * s[2] + b.b * s[3]);
        let (p21, p22) = (b.c * s[0] + b.e * s[1], b.c * s[2] + b.e * s[3]);
        db.a = db.a + (p11 * b.a + p12 * b.c);
        db.b = db.b + (p11 * b.b + p12 * b.e);
        db.c = db.c + (p21 * b.a + p22 * b.c);
        db.e = db.e + (p21 * b.b + p22 * b.e);
    }
    Ok(())
}

/// The kernel of a backward run over `geo`: the rotation's if it was
/// chosen, else for the tree's rows in place ([`Saved::Output`]) or its
/// cross sums ([`vjp_rows_from_input`]) [`Kernel::best_tree_vjp`], else
/// the rotation's.
fn backward_kernel<T: Real>(rot: &Rotation<'_, T>, geo: &Geometry) -> Kernel {
    if rot.kernel_chosen() || !(geo.rows_fused || geo.cross) {
        rot.kernel()
    } else {
        Kernel::best_tree_vjp::<T>(geo.d, geo.cross)
    }
}

/// [`vjp_rows`] (`check_first`) or [`vjp_rows_owned`].
#[allow(clippy::too_many_arguments)]
fn vjp<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    saved: Saved<'_, T>,
    dy: &mut [T],
    dblocks: &mut [Block<T>],
    dscale: Option<&mut [T]>,
    work: &mut [T],
    check_first: bool,
) -> Result<()> {
    let geo = check_vjp(rot, op, saved, dy.len(), dblocks.len(), dscale.as_deref().map(<[T]>::len), work.len())?;
    // Without blocks or scaling no value reaches a result that can be checked.
    let check_first = check_first || geo.g_len == 0;
    let data = saved.data();
    if check_first {
        if !crate::simd::Dispatch::all_finite(rot.kernel(), data) {
            check_finite("saved batch", data)?;
        }
        if !crate::simd::Dispatch::all_finite(rot.kernel(), dy) {
            check_finite("upstream gradient", dy)?;
        }
    }
    check_recoverable(rot, saved)?;
    if geo.n == 0 {
        return Ok(());
    }
    // The same arithmetic compiled for the rotation's kernel: wider vectors,
    // bitwise the same results (no products are fused).
    let work = &mut work[..geo.workspace_len()];
    let total =
        crate::simd::Dispatch::backward(backward_kernel(rot, &geo), rot, op, saved, GradRows::Write(dy), work, &geo);
    if !check_first && !total.iter().all(|v| v.is_finite()) {
        check_finite("saved batch", data)?;
        check_finite("input gradient (from a non-finite upstream gradient)", dy)?;
        return Err(Error::Overflow { what: "block or scaling gradients of a VJP" });
    }
    add_totals(total, dblocks, dscale);
    Ok(())
}

/// The argument checks of [`vjp_rows`] that read no data: operator, kind of
/// saved batch, lengths and workspace; returns the run's sizes.
fn check_vjp<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    saved: Saved<'_, T>,
    dy_len: usize,
    dblocks_len: usize,
    dscale_len: Option<usize>,
    work_len: usize,
) -> Result<Geometry> {
    let d = rot.dim();
    let data = saved.data();
    if !matches!(op, Op::Forward | Op::Transpose) {
        return Err(Error::InvalidArgument { what: "operator of a VJP (Forward or Transpose only)", value: 0.0 });
    }
    if matches!(saved, Saved::Output(_)) && !rot.is_strict() {
        return Err(Error::InvalidArgument {
            what: "saved output of a quasi rotation (pass the forward's input instead)",
            value: data.len() as f64,
        });
    }
    if !data.len().is_multiple_of(d) {
        return Err(Error::ShapeMismatch {
            what: "saved batch length (a multiple of d)",
            expected: d * (data.len() / d + 1),
            found: data.len(),
        });
    }
    check_len("upstream gradient (same shape as the saved batch)", data.len(), dy_len)?;
    check_len("block gradients", rot.blocks().len(), dblocks_len)?;
    match (dscale_len, rot.scale()) {
        (Some(n), None) => check_len("scale gradient of an unscaled rotation", 0, n)?,
        (Some(n), Some(_)) => check_len("scale gradient", d, n)?,
        _ => {}
    }
    let geo = Geometry::of(rot, &saved);
    let need = geo.workspace_len();
    if work_len < need {
        return Err(Error::ShapeMismatch { what: "gradient workspace", expected: need, found: work_len });
    }
    Ok(geo)
}

/// [`Error::SingularScale`] when the steps' inputs are to be recovered from
/// the output through a zero scaling entry.
fn check_recoverable<T: Real>(rot: &Rotation<'_, T>, saved: Saved<'_, T>) -> Result<()> {
    if let (Saved::Output(_), Some(s)) = (saved, rot.scale()) {
        if let Some(index) = s.iter().position(|v| *v == T::zero()) {
            return Err(Error::SingularScale { index, value: 0.0 });
        }
    }
    Ok(())
}

/// Adds a backward's gradient set (`4` entries per block, then the scaling)
/// to the caller's accumulators.
fn add_totals<T: Real>(total: &[T], dblocks: &mut [Block<T>], dscale: Option<&mut [T]>) {
    let nb = dblocks.len();
    for (db, s) in dblocks.iter_mut().zip(total.chunks_exact(4)) {
        db.a = db.a + s[0];
        db.b = db.b + s[1];
        db.c = db.c + s[2];
        db.e = db.e + s[3];
    }
    if let Some(ds) = dscale {
        for (v, s) in ds.iter_mut().zip(&total[4 * nb..]) {
            *v = *v + *s;
        }
    }
}

/// The VJP of the merge `W' = W R^T` (row `r`: `w'_r = R w_r`) for a
/// row-major `m x d` weight: [`vjp_rows`] with [`Op::Forward`].
///
/// On entry `dw` holds `dL/dW'`; on return `dL/dW` (`R^T` applied to each
/// row), and `dL/dB_k`, `dL/ds` are accumulated. `saved` is `W'` (strict) or
/// `W` (any rotation). This trains a merged weight directly.
///
/// # Errors
/// As [`vjp_rows`].
///
/// ```
/// use qgoft_math::grad::{vjp_merge, workspace_len, Saved};
/// use qgoft_math::{AngleMap, Block, Layout, RotationBuf};
/// let r = RotationBuf::from_angles(Layout::Chain, 3, AngleMap::Raw, &[0.4f64, -0.7], None)?;
/// let w = [1.0, 2.0, 3.0, -1.0, 0.0, 2.0];
/// let mut merged = w;
/// r.as_rotation().merge(&mut merged)?;
/// let mut dw = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
/// let mut db = [Block::default(); 2];
/// let mut work = vec![0.0; workspace_len(&r.as_rotation(), Saved::Output(&merged))];
/// vjp_merge(&r.as_rotation(), Saved::Output(&merged), &mut dw, &mut db, None, &mut work)?;
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn vjp_merge<T: Real>(
    rot: &Rotation<'_, T>,
    saved: Saved<'_, T>,
    dw: &mut [T],
    dblocks: &mut [Block<T>],
    dscale: Option<&mut [T]>,
    work: &mut [T],
) -> Result<()> {
    vjp_rows(rot, Op::Forward, saved, dw, dblocks, dscale, work)
}

/// Accumulates `dL/dp` for strict blocks built from angle parameters `p`
/// (`theta = p` or `pi tanh(p)`, see [`AngleMap`]) from the block gradients:
///
/// ```text
/// B = [[cos t, -sin t], [sin t, cos t]]
/// dL/dt = -dL/da sin t - dL/db cos t + dL/dc cos t - dL/de sin t
/// out[k] += dL/dt * dt/dp
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] unless the three slices have equal lengths;
/// [`Error::NonFinite`] for a non-finite parameter (nothing is written).
///
/// ```
/// use qgoft_math::grad::angle_param_grads;
/// use qgoft_math::{AngleMap, Block};
/// // At t = 0, only b and c move: dB/dt = [[0, -1], [1, 0]].
/// let db = [Block { a: 5.0f64, b: 2.0, c: 3.0, e: 7.0 }];
/// let mut out = [0.0];
/// angle_param_grads(AngleMap::Raw, &[0.0], &db, &mut out)?;
/// assert_eq!(out[0], 1.0);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn angle_param_grads<T: Real>(map: AngleMap, params: &[T], dblocks: &[Block<T>], out: &mut [T]) -> Result<()> {
    check_len("block gradients for angle parameters", params.len(), dblocks.len())?;
    check_len("angle parameter gradients", params.len(), out.len())?;
    check_finite("angle parameters", params)?;
    for ((o, &p), g) in out.iter_mut().zip(params).zip(dblocks) {
        let (s, c) = map.angle(p).sin_cos();
        let dtheta = (g.c - g.b) * c - (g.a + g.e) * s;
        *o = *o + dtheta * map.derivative(p);
    }
    Ok(())
}

/// Accumulates the gradient of flat quasi parameters `[a, b, c, e]` per
/// block (the layout of [`crate::param::blocks_from_quasi`]): an identity
/// reshaping, `out[4 k ..][.. 4] += dblocks[k]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `out.len() == 4 * dblocks.len()`.
///
/// ```
/// use qgoft_math::grad::quasi_param_grads;
/// use qgoft_math::Block;
/// let mut out = [1.0f32; 4];
/// quasi_param_grads(&[Block { a: 1.0, b: 2.0, c: 3.0, e: 4.0 }], &mut out)?;
/// assert_eq!(out, [2.0, 3.0, 4.0, 5.0]);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn quasi_param_grads<T: Real>(dblocks: &[Block<T>], out: &mut [T]) -> Result<()> {
    check_len("quasi parameter gradients", 4 * dblocks.len(), out.len())?;
    for (o, g) in out.chunks_exact_mut(4).zip(dblocks) {
        for (v, s) in o.iter_mut().zip(g.to_array()) {
            *v = *v + s;
        }
    }
    Ok(())
}

/// The penalty `P = lambda * sum_k (a_k b_k + c_k e_k)^2` (summed pairwise)
/// and its gradient, accumulated into `out`:
///
/// ```text
/// g_k = a_k b_k + c_k e_k
/// dP/da = 2 lambda g b,  dP/db = 2 lambda g a,  dP/dc = 2 lambda g e,  dP/de = 2 lambda g c
/// ```
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `out.len() == blocks.len()`;
/// [`Error::NonFinite`] for a non-finite `lambda` or block entry.
///
/// ```
/// use qgoft_math::grad::penalty_grad;
/// use qgoft_math::Block;
/// let blocks = [Block { a: 1.0f64, b: 0.5, c: 0.0, e: 1.0 }];
/// let mut out = [Block::default()];
/// let p = penalty_grad(&blocks, 2.0, &mut out)?;
/// assert_eq!(p, 0.5); // 2 * 0.5^2
/// assert_eq!(out[0], Block { a: 1.0, b: 2.0, c: 2.0, e: 0.0 });
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn penalty_grad<T: Real>(blocks: &[Block<T>], lambda: T, out: &mut [Block<T>]) -> Result<T> {
    check_len("penalty gradient", blocks.len(), out.len())?;
    if !lambda.is_finite() {
        return Err(Error::NonFinite { what: "penalty weight lambda", index: 0, value: lambda.to_f64() });
    }
    for (index, b) in blocks.iter().enumerate() {
        if let Some(v) = b.to_array().into_iter().find(|v| !v.is_finite()) {
            return Err(Error::NonFinite { what: "penalty blocks", index, value: v.to_f64() });
        }
    }
    let two_l = lambda + lambda;
    for (o, b) in out.iter_mut().zip(blocks) {
        let g = two_l * (b.a * b.b + b.c * b.e);
        o.a = o.a + g * b.b;
        o.b = o.b + g * b.a;
        o.c = o.c + g * b.e;
        o.e = o.e + g * b.c;
    }
    Ok(lambda * crate::metrics::penalty(blocks))
}

/// A reusable, growing scratch buffer for [`vjp_rows`] (feature `alloc`).
///
/// ```
/// use qgoft_math::grad::{Saved, Workspace};
/// use qgoft_math::{AngleMap, Block, Layout, Op, RotationBuf};
/// let r = RotationBuf::from_angles(Layout::Tree, 3, AngleMap::PiTanh, &[0.1f32, 0.2], None)?;
/// let x = [1.0f32, 2.0, 3.0];
/// let mut g = [1.0f32, 0.0, 0.0];
/// let mut db = [Block::default(); 2];
/// let mut ws = Workspace::new();
/// ws.vjp_rows(&r.as_rotation(), Op::Transpose, Saved::Input(&x), &mut g, &mut db, None)?;
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default)]
pub struct Workspace<T> {
    buf: Vec<T>,
}

#[cfg(feature = "alloc")]
impl<T: Real> Workspace<T> {
    /// An empty workspace; it grows on first use.
    pub fn new() -> Self {
        Self { buf: Vec::new() }
    }

    /// [`vjp_rows`] with this workspace, grown as needed.
    ///
    /// # Errors
    /// As [`vjp_rows`].
    pub fn vjp_rows(
        &mut self,
        rot: &Rotation<'_, T>,
        op: Op,
        saved: Saved<'_, T>,
        dy: &mut [T],
        dblocks: &mut [Block<T>],
        dscale: Option<&mut [T]>,
    ) -> Result<()> {
        vjp_rows(rot, op, saved, dy, dblocks, dscale, self.grown(workspace_len(rot, saved)))
    }

    /// [`vjp_rows_owned`] with this workspace, grown as needed.
    ///
    /// # Errors
    /// As [`vjp_rows_owned`].
    pub fn vjp_rows_owned(
        &mut self,
        rot: &Rotation<'_, T>,
        op: Op,
        saved: Saved<'_, T>,
        dy: &mut [T],
        dblocks: &mut [Block<T>],
        dscale: Option<&mut [T]>,
    ) -> Result<()> {
        vjp_rows_owned(rot, op, saved, dy, dblocks, dscale, self.grown(workspace_len(rot, saved)))
    }

    /// [`vjp_rows_from_input`] with this workspace, grown as needed.
    ///
    /// # Errors
    /// As [`vjp_rows_from_input`].
    pub fn vjp_rows_from_input(
        &mut self,
        rot: &Rotation<'_, T>,
        op: Op,
        x: &[T],
        dx: &[T],
        dblocks: &mut [Block<T>],
    ) -> Result<()> {
        vjp_rows_from_input(rot, op, x, dx, dblocks, self.grown(workspace_len_from_input(rot, x)))
    }

    /// The buffer, grown to at least `need` scalars.
    fn grown(&mut self, need: usize) -> &mut [T] {
        if self.buf.len() < need {
            self.buf.resize(need, T::zero());
        }
        &mut self.buf
    }
}

// ---------------------------------------------------------------------------
// Kernels.

/// Called after each strict stage's input has been recovered, with the stage
/// index and the tile (coordinate-major, `ld` lanes per coordinate). Only the
/// tests observe it; production passes a no-op.
type StageHook<'h, T> = dyn FnMut(usize, &[T], usize) + 'h;

/// The backward over all row tiles with the tree's fused kernel, rows
/// transposed by `X`; returns the total gradient set (see
/// [`backward_rows`]). Inlined into the instruction-set wrappers of
/// [`crate::simd`].
#[inline(always)]
pub(crate) fn backward<'w, T: Real, X: Transposer>(
    rot: &Rotation<'_, T>,
    op: Op,
    saved: Saved<'_, T>,
    dy: GradRows<'_, T>,
    work: &'w mut [T],
    geo: &Geometry,
) -> &'w [T] {
    if geo.cross {
        return backward_cross::<T, X>(rot, saved.data(), dy.get(), work, geo);
    }
    backward_rows::<T, X, true>(rot, op, saved, dy, work, geo, &mut |_, _, _| {})
}

/// Runs the backward over all row tiles; returns the total gradient set
/// (`4` entries per block in `[a, b, c, e]` order, then the scaling). A
/// writable upstream gradient `dy` is overwritten by the input gradient; a
/// read-only one is only read (the input gradient is not formed).
#[inline(always)]
fn backward_rows<'w, T: Real, X: Transposer, const FUSED: bool>(
    rot: &Rotation<'_, T>,
    op: Op,
    saved: Saved<'_, T>,
    mut dy: GradRows<'_, T>,
    work: &'w mut [T],
    geo: &Geometry,
    hook: &mut StageHook<'_, T>,
) -> &'w [T] {
    let (d, tw, gl) = (geo.d, geo.tw, geo.g_len);
    let (levels, rest) = work.split_at_mut(geo.levels * gl);
    let rows_fused = FUSED && geo.rows_fused;
    let (z, rest) = rest.split_at_mut(if rows_fused { 0 } else { d * tw });
    let (g, save) = rest.split_at_mut(if rows_fused { 0 } else { d * tw });
    let data = saved.data();
    for t in 0..geo.tiles {
        let r0 = t * tw;
        let w = tw.min(geo.n - r0);
        let rows = r0 * d..(r0 + w) * d;
        // Binary counter: this tile's sums land in level `k` (free, since bit
        // `k` of `t` is clear) and absorb levels `0 .. k`.
        let k = t.trailing_ones() as usize;
        let (lower, upper) = levels.split_at_mut(k * gl);
        let out = &mut upper[..gl];
        if rows_fused {
            tile_rows_fused::<T, X>(rot, op, &data[rows.clone()], dy.part(rows), out, save);
        } else {
            let (z, g) = (&mut z[..d * w], &mut g[..d * w]);
            gather::<X, T>(&data[rows.clone()], z, w, d);
            gather::<X, T>(&dy.get()[rows.clone()], g, w, d);
            match saved {
                Saved::Output(_) => tile_recover::<T, FUSED>(rot, op, z, g, w, out, hook),
                Saved::Input(_) => {
                    tile_recompute(rot, op, &data[rows.clone()], z, g, &mut save[..geo.save_len / tw * w], w, out)
                }
            }
            if let GradRows::Write(dy) = &mut dy {
                transpose::<X, T, true>(&mut dy[rows], g, w, d);
            }
        }
        absorb(out, lower);
    }
    settle(levels, gl, geo)
}

/// Adds the sums of the lower levels (`gl` scalars each) to a tile's `out`,
/// level 0 first.
#[inline(always)]
fn absorb<T: Real>(out: &mut [T], lower: &[T]) {
    for lv in lower.chunks_exact(out.len().max(1)) {
        for (o, v) in out.iter_mut().zip(lv) {
            *o = *o + *v;
        }
    }
}

/// The total of the levels left by the binary counter over the tiles: the
/// levels of the set bits of the tile count, added low to high.
#[inline(always)]
fn settle<'a, T: Real>(levels: &'a mut [T], gl: usize, geo: &Geometry) -> &'a [T] {
    let mut bits = (0..geo.levels).filter(|b| geo.tiles >> b & 1 == 1);
    let first = bits.next().unwrap_or(0);
    let (head, tail) = levels.split_at_mut((first + 1) * gl);
    let acc = &mut head[first * gl..];
    for b in bits {
        let lv = &tail[(b - first - 1) * gl..(b - first) * gl];
        for (o, v) in acc.iter_mut().zip(lv) {
            *o = *o + *v;
        }
    }
    &levels[first * gl..(first + 1) * gl]
}

/// The backward of [`Op::Forward`] of the tree (exact blocks, no scaling,
/// `d` a multiple of 8) from its output `x` with the read-only upstream
/// gradient `dx`, as [`vjp_rows_from_input`] runs it; returns the block
/// gradient set (`4` entries per block).
///
/// Undoing `R` walks the later stages first: on the blocks' first
/// coordinates (leaders, every 8th) alone, done on two leader tiles with
/// [`tree_recover`], which leave there the leaders `x'` and their gradients
/// `dx'` as the first three stages see them. Those three stages act within
/// each block of 8 coordinates, and their steps are orthogonal, so the
/// block gradients of all 7 rotations of a block follow from one 8 x 8
/// sum over the rows, `E = sum_r dx'_r x'_r^T` ([`cross_sums`], the rows
/// read where they lie, with the leaders put in), by rotations of `E` alone
/// ([`cross_blocks`]): no stage is applied to the rows and nothing is
/// shuffled. A tile's rows are read twice, for the leaders and for the
/// sums, the second time from the second-level cache where it holds them
/// ([`CROSS_TILE`] rows: up to `d = 2048` on a cache of 1 MiB; at `d =
/// 4096` this ran no slower than tiles of 32 rows).
///
/// Each entry of `E` is a sum over the rows in order, then over the tiles
/// as in [`backward_rows`]; the same for every kernel, so the results are
/// bitwise the same on all of them.
#[inline(always)]
fn backward_cross<'w, T: Real, X: Transposer>(
    rot: &Rotation<'_, T>,
    x: &[T],
    dx: &[T],
    work: &'w mut [T],
    geo: &Geometry,
) -> &'w [T] {
    let (d, tw, gl) = (geo.d, geo.tw, geo.g_len);
    let q = d / CROSS;
    let nb = rot.blocks().len();
    let lead = 4 * (q - 1);
    let (levels, rest) = work.split_at_mut(geo.levels * gl);
    let (lz, rest) = rest.split_at_mut(q * tw);
    let (lg, rest) = rest.split_at_mut(q * tw);
    let total = &mut rest[..4 * nb];
    let sub = rot.sub_tree(CROSS_STAGES);
    for t in 0..geo.tiles {
        let r0 = t * tw;
        let w = tw.min(geo.n - r0);
        let w8 = w.div_ceil(LANES) * LANES;
        let rows = r0 * d..(r0 + w) * d;
        let (xs, gs) = (&x[rows.clone()], &dx[rows]);
        let k = t.trailing_ones() as usize;
        let (lower, upper) = levels.split_at_mut(k * gl);
        let out = &mut upper[..gl];
        let (lz, lg) = (&mut lz[..q * w8], &mut lg[..q * w8]);
        // Row by row: each row's lines in order.
        for (r, (xr, gr)) in xs.chunks_exact(d).zip(gs.chunks_exact(d)).enumerate() {
            let leaders = lz.chunks_exact_mut(w8).zip(lg.chunks_exact_mut(w8));
            for ((lzb, lgb), (xc, gc)) in leaders.zip(xr.chunks_exact(CROSS).zip(gr.chunks_exact(CROSS))) {
                lzb[r] = xc[0];
                lgb[r] = gc[0];
            }
        }
        for b in 0..q {
            lz[b * w8 + w..(b + 1) * w8].fill(T::zero());
            lg[b * w8 + w..(b + 1) * w8].fill(T::zero());
        }
        let (ol, oe) = out.split_at_mut(lead);
        tree_recover(&sub, Op::Forward, lz, lg, w8, ol);
        match X::cross_block::<T>() {
            (8, 8) => cross_sums::<T, X, 8, 8>(xs, gs, lz, lg, d, w8, oe),
            (8, 4) => cross_sums::<T, X, 8, 4>(xs, gs, lz, lg, d, w8, oe),
            _ => cross_sums::<T, X, 4, 4>(xs, gs, lz, lg, d, w8, oe),
        }
        absorb(out, lower);
    }
    let sums = settle(levels, gl, geo);
    // The later stages' blocks come last in parameter order.
    total[4 * (d - q)..].copy_from_slice(&sums[..lead]);
    for (b, e) in sums[lead..].chunks_exact(CROSS * CROSS).enumerate() {
        cross_blocks(rot, b, e, total);
    }
    total
}

/// `E_b = sum_r dx'_r x'_r^T` over the 8 coordinates of every block `b`
/// of the tile's rows `xs`, `gs` (row-major, `d` per row), with the
/// leaders (coordinate `8 b`) taken from `lz[b * w8 + r]`, `lg[..]`, into
/// `out[64 b ..]` (row `i` of `E_b`, the gradient's coordinate, at `8 i`).
/// Blocks of `I x J` sums stay in registers over a chunk of rows that the
/// first-level cache holds ([`cross_chunk_rows`], or [`cross8_chunk_rows`]
/// for a kernel's whole blocks), then go on from `out` over the next
/// chunk; every sum takes its products in row order.
#[inline(always)]
fn cross_sums<T: Real, X: Transposer, const I: usize, const J: usize>(
    xs: &[T],
    gs: &[T],
    lz: &[T],
    lg: &[T],
    d: usize,
    w8: usize,
    out: &mut [T],
) {
    if cross8_sums::<T, X>(xs, gs, lz, lg, d, w8, out) {
        return;
    }
    let w = xs.len() / d;
    let chunk = cross_chunk_rows(d * core::mem::size_of::<T>());
    for (b, eb) in out.chunks_exact_mut(CROSS * CROSS).enumerate() {
        let (lzb, lgb) = (&lz[b * w8..b * w8 + w], &lg[b * w8..b * w8 + w]);
        let (xb, gb) = (&xs[CROSS * b..], &gs[CROSS * b..]);
        for r0 in (0..w).step_by(chunk) {
            let rows = r0..(r0 + chunk).min(w);
            let (xc, gc) = (&xb[r0 * d..], &gb[r0 * d..]);
            let (lzc, lgc) = (&lzb[rows.clone()], &lgb[rows]);
            for i0 in (0..CROSS).step_by(I) {
                for j0 in (0..CROSS).step_by(J) {
                    let mut acc = [[T::zero(); J]; I];
                    if r0 > 0 {
                        for (i, a) in acc.iter_mut().enumerate() {
                            let at = (i0 + i) * CROSS + j0;
                            a.copy_from_slice(&eb[at..at + J]);
                        }
                    }
                    match (i0 == 0, j0 == 0) {
                        (true, true) => cross_chunk::<T, I, J, true, true>(xc, gc, lzc, lgc, d, i0, j0, &mut acc),
                        (true, false) => cross_chunk::<T, I, J, true, false>(xc, gc, lzc, lgc, d, i0, j0, &mut acc),
                        (false, true) => cross_chunk::<T, I, J, false, true>(xc, gc, lzc, lgc, d, i0, j0, &mut acc),
                        (false, false) => cross_chunk::<T, I, J, false, false>(xc, gc, lzc, lgc, d, i0, j0, &mut acc),
                    }
                    for (i, a) in acc.iter().enumerate() {
                        let at = (i0 + i) * CROSS + j0;
                        eb[at..at + J].copy_from_slice(a);
                    }
                }
            }
        }
    }
}

/// [`cross_sums`] by the kernel's whole `8 x 8` blocks in registers
/// ([`Transposer::cross8`]): every block over a chunk of rows
/// ([`cross8_chunk_rows`]), then the next chunk. `false` if the kernel
/// does not handle `T` (it answers for the type, so the first call
/// decides and nothing is touched).
#[inline(always)]
fn cross8_sums<T: Real, X: Transposer>(
    xs: &[T],
    gs: &[T],
    lz: &[T],
    lg: &[T],
    d: usize,
    w8: usize,
    out: &mut [T],
) -> bool {
    let w = xs.len() / d;
    let step = cross8_chunk_rows(d * core::mem::size_of::<T>());
    for r0 in (0..w).step_by(step) {
        let r1 = (r0 + step).min(w);
        for (b, eb) in out.chunks_exact_mut(CROSS * CROSS).enumerate() {
            let leaders = b * w8 + r0..b * w8 + r1;
            let at = r0 * d + CROSS * b;
            if !X::cross8(&xs[at..], &gs[at..], &lz[leaders.clone()], &lg[leaders], d, eb, r0 > 0) {
                return false;
            }
        }
    }
    true
}

/// Rows per chunk of a kernel's whole-block sums ([`Transposer::cross8`])
/// for rows `stride` bytes apart: two rows per set of the first-level
/// cache from each input (rows in the same sets come every `p = 4096 /
/// gcd(stride, 4096)` rows, see [`cross_chunk_rows`]), so `2 p`, and at
/// least 4. Each call reads 32 of a line's 64 bytes and the next block's
/// call the rest; in between the chunk's lines stay in that cache.
#[inline(always)]
const fn cross8_chunk_rows(stride: usize) -> usize {
    let every = cross_chunk_rows(stride) / 4;
    if 2 * every > 4 {
        2 * every
    } else {
        4
    }
}

/// Rows per chunk of the sums of [`cross_sums`] for rows `stride` bytes
/// apart: the rows whose lines fall into one set of a first-level cache
/// come every `4096 / gcd(stride, 4096)` rows (sets of 64-byte lines
/// repeating every 4 KiB), and a chunk takes four of them per set from
/// each of the two inputs, which leaves room in caches of 8 or more ways.
/// Sums of several passes over the rows then read them from that cache
/// (at rows 16 KiB apart a chunk of all 32 rows of a tile was 1.7 times
/// as slow).
#[inline(always)]
const fn cross_chunk_rows(stride: usize) -> usize {
    let (mut a, mut b) = (stride, 4096);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    4 * (4096 / a)
}

/// The sums `E[i0 + i][j0 + j]` of [`cross_sums`] over the rows of one
/// block (`xb`, `gb` start at its first coordinate), added to `acc` (which
/// holds the sums of the rows before): the products of the rows as they
/// lie, where row `0` (`I0`) takes the leader gradient `lg` in place of
/// `dx_0` and column `0` (`J0`) is summed on its own with the leader `lz`
/// in place of `x_0`, so no register is ever patched.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn cross_chunk<T: Real, const I: usize, const J: usize, const I0: bool, const J0: bool>(
    xb: &[T],
    gb: &[T],
    lz: &[T],
    lg: &[T],
    d: usize,
    i0: usize,
    j0: usize,
    acc: &mut [[T; J]; I],
) {
    let mut col: [T; I] = core::array::from_fn(|i| acc[i][0]);
    let mut corner = acc[0][0];
    for (r, (&l, &lgr)) in lz.iter().zip(lg).enumerate() {
        let at = r * d;
        let xv: [T; J] = xb[at + j0..at + j0 + J].try_into().expect("J coordinates");
        let gv: [T; I] = gb[at + i0..at + i0 + I].try_into().expect("I coordinates");
        for (i, a) in acc.iter_mut().enumerate() {
            let g = if I0 && i == 0 { lgr } else { gv[i] };
            for (s, v) in a.iter_mut().zip(xv) {
                *s = *s + g * v;
            }
        }
        if J0 {
            for (c, g) in col.iter_mut().zip(gv) {
                *c = *c + g * l;
            }
            if I0 {
                corner = corner + lgr * l;
            }
        }
    }
    if J0 {
        for (a, c) in acc.iter_mut().zip(col) {
            a[0] = c;
        }
        if I0 {
            acc[0][0] = corner;
        }
    }
}

/// The step gradients of the first three stages' 7 blocks within block `b`
/// of 8 coordinates from its sum `E = sum_r dx' x'^T` (row-major 8 x 8),
/// into `total` (`4` entries per block, `dL/dM` of the step `M = B`).
///
/// With `V_k = P_3 ... P_k` (the stages within the block, `V_4 = I`), stage
/// `k`'s input is `u = V_k^T x'` and the gradient at its output `g =
/// V_(k+1)^T dx'` (orthogonal steps carry the gradient forward as they
/// carry the values), so `sum_r g u^T = V_(k+1)^T E V_k`: from `W = E`,
/// stage by stage from the third, `N = W P_k` gives the stage's 2 x 2
/// sums at its planes and `W <- P_k^T N` the next. A stage's planes need
/// `W` only on the diagonal blocks of their spans (2, 4, 8 coordinates),
/// so only those are carried.
#[inline(always)]
fn cross_blocks<T: Real>(rot: &Rotation<'_, T>, b: usize, e: &[T], total: &mut [T]) {
    let d = rot.dim();
    let mut wm = [[T::zero(); CROSS]; CROSS];
    for (row, src) in wm.iter_mut().zip(e.chunks_exact(CROSS)) {
        row.copy_from_slice(src);
    }
    for s in (0..CROSS_STAGES).rev() {
        let st = Layout::Tree.stage(d, s);
        let span = st.stride;
        let t0 = CROSS * b / span;
        for t in t0..t0 + CROSS / span {
            let k = st.offset + t;
            let m = rot.blocks()[k];
            let i = st.first + span * t - CROSS * b;
            let j = i + st.gap;
            for row in &mut wm[i..i + span] {
                let (u, v) = (row[i], row[j]);
                row[i] = m.a * u + m.c * v;
                row[j] = m.b * u + m.e * v;
            }
            total[4 * k..4 * k + 4].copy_from_slice(&[wm[i][i], wm[i][j], wm[j][i], wm[j][j]]);
            let (lo, hi) = wm.split_at_mut(j);
            for (p, q) in lo[i][i..i + span].iter_mut().zip(&mut hi[0][i..i + span]) {
                let (u, v) = (*p, *q);
                *p = m.a * u + m.c * v;
                *q = m.b * u + m.e * v;
            }
        }
    }
}

/// The strict backward of the tree on one tile of rows (`d` a multiple of
/// 8) straight from the row-major saved output `y` and upstream gradient
/// `g` (overwritten by the input gradient if writable, else only read):
/// for each pair of blocks of 8 coordinates, every group of 8 rows is
/// transposed into registers one block at a time, the first three stages
/// (and the scaling) are undone there and the gradient transposed back (or,
/// where a register holds a row's 16 coordinates, both blocks of the pair
/// are undone a row at a time, see [`Transposer::recover_pair`]);
/// the later stages act only on the blocks' first
/// coordinates (leaders), gathered into two tiles of `ceil8(w)` lanes, with
/// [`tree_recover`]. A last group of fewer than 8 rows goes through
/// zero-padded copies, as the structure-of-arrays walk pads its last lanes.
/// Each rotation sees the same operations in the same order as in
/// [`plane_recover`], and its products are summed over the tile's rows in
/// the same order: the results are bitwise those of the stage-by-stage
/// walk.
#[inline(always)]
fn tile_rows_fused<T: Real, X: Transposer>(
    rot: &Rotation<'_, T>,
    op: Op,
    y: &[T],
    mut g: GradRows<'_, T>,
    out: &mut [T],
    scratch: &mut [T],
) {
    use crate::kernel::{
        first_offsets, first_plane, first_stages, gather_leaders, load_block, scatter_leaders, store_block,
        ROW_BLOCK as B,
    };
    let d = rot.dim();
    let q = d / B;
    let w = y.len() / d;
    let w8 = w.div_ceil(B) * B;
    let full = w / B * B;
    let nb = rot.blocks().len();
    let (lz, rest) = scratch.split_at_mut(q * w8);
    let (lg, rest) = rest.split_at_mut(q * w8);
    let (py, rest) = rest.split_at_mut(B * d);
    let pg = &mut rest[..B * d];
    if full < w {
        py[..(w - full) * d].copy_from_slice(&y[full * d..]);
        py[(w - full) * d..].fill(T::zero());
        pg[..(w - full) * d].copy_from_slice(&g.get()[full * d..]);
        pg[(w - full) * d..].fill(T::zero());
    }
    let sub = rot.sub_tree(3);
    let sub_at = 4 * (nb + 1 - sub.dim());
    // Undoing `R^T` walks the stages in parameter order (scaling first),
    // undoing `R` backwards (scaling last).
    let asc = op == Op::Transpose;
    if !asc {
        gather_leaders(y, lz, d, w8);
        gather_leaders(g.get(), lg, d, w8);
        for b in 0..q {
            lz[b * w8 + w..(b + 1) * w8].fill(T::zero());
            lg[b * w8 + w..(b + 1) * w8].fill(T::zero());
        }
        tree_recover(&sub, op, lz, lg, w8, &mut out[sub_at..4 * nb]);
    }
    let offs = first_offsets(d);
    let (outb, outs) = out.split_at_mut(4 * nb);
    // The blocks of coordinates go in pairs, both blocks of a pair for each
    // group of 8 rows in turn: a pair spans one 64-byte line of each row
    // (for aligned rows), so each line is used twice while it is in the
    // first-level cache, whatever the row stride (a stride near a multiple
    // of 4 KiB maps every row of a column to a few cache sets).
    for b0 in (0..q).step_by(PAIR) {
        let pair = b0..(b0 + PAIR).min(q);
        let mut cbs = [[Block::identity(); B]; PAIR];
        let mut idxs = [[0usize; B]; PAIR];
        let mut flats = [[T::zero(); 28]; PAIR];
        let mut scs: [Option<&[T]>; PAIR] = [None; PAIR];
        for (p, b) in pair.clone().enumerate() {
            scs[p] = rot.scale().map(|s| &s[b * B..b * B + B]);
            let (cb, idx) = first_stages(rot, op, b * B, asc, &offs, step_block);
            for (f, blk) in flats[p].chunks_exact_mut(4).zip(&cb) {
                f.copy_from_slice(&blk.to_array());
            }
            (cbs[p], idxs[p]) = (cb, idx);
        }
        // Both blocks of a pair in one register per row where the
        // instruction set has 16 lanes (see `Transposer::recover_pair`).
        if pair.len() == PAIR && X::pair::<T>() {
            let at = b0 * B;
            let mut red = [T::zero(); 7 * 2 * B];
            let (lzp, lgp) = (&mut lz[b0 * w8..(b0 + PAIR) * w8], &mut lg[b0 * w8..(b0 + PAIR) * w8]);
            let sc = rot.scale().map(|s| &s[at..at + PAIR * B]);
            let cb = [&flats[0][..], &flats[1][..]];
            let (ys, gs) = (&y[at..], g.tail(at));
            if X::recover_pair(asc, ys, gs, &py[at..], &mut pg[at..], d, full, w8, cb, sc, lzp, lgp, &mut red) {
                let v = |acc: usize, lane: usize| red[2 * B * acc + lane];
                for (p, b) in pair.clone().enumerate() {
                    for (r, &at) in idxs[p].iter().enumerate().take(B - 1) {
                        let (s, i, j) = first_plane(asc, r);
                        let (li, lj) = (B * p + i, B * p + j);
                        put_block(op, outb, at, [v(s, li), v(3 + s, lj), v(3 + s, li), v(s, lj)]);
                    }
                    if rot.scale().is_some() {
                        outs[b * B..b * B + B].copy_from_slice(&red[12 * B + B * p..12 * B + B * p + B]);
                    }
                }
                continue;
            }
        }
        let mut sums = [[[[T::zero(); LANES]; 4]; B]; PAIR];
        let mut scale_sums = [[[T::zero(); LANES]; B]; PAIR];
        let mut k = 0;
        while k < w8 {
            for (p, b) in pair.clone().enumerate() {
                let (cb, flat, sc, acc, accs) = (&cbs[p], &flats[p], scs[p], &mut sums[p], &mut scale_sums[p]);
                let (ys, mut gs, at) = if k < full {
                    (y, g.tail(k * d + b * B), k * d + b * B)
                } else {
                    (&*py, GradRows::Write(&mut pg[b * B..]), b * B)
                };
                let lk = b * w8 + k..b * w8 + k + B;
                if X::recover8(
                    asc,
                    &ys[at..],
                    gs.tail(0),
                    d,
                    flat,
                    sc,
                    acc.as_flattened_mut().as_flattened_mut(),
                    accs.as_flattened_mut(),
                    &mut lz[lk.clone()],
                    &mut lg[lk.clone()],
                ) {
                    continue;
                }
                let mut zv = load_block::<X, T>(&ys[at..], d);
                let mut gv = load_block::<X, T>(gs.get(), d);
                if asc {
                    if let Some(sc) = sc {
                        scale_back_block(&mut zv, &mut gv, sc, accs);
                    }
                    tree_block_recover::<T, B, true>(cb, &mut zv, &mut gv, acc);
                    lz[lk.clone()].copy_from_slice(&zv[0]);
                    lg[lk].copy_from_slice(&gv[0]);
                } else {
                    zv[0].copy_from_slice(&lz[lk.clone()]);
                    gv[0].copy_from_slice(&lg[lk]);
                    tree_block_recover::<T, B, false>(cb, &mut zv, &mut gv, acc);
                    if let Some(sc) = sc {
                        scale_back_block(&mut zv, &mut gv, sc, accs);
                    }
                }
                if let GradRows::Write(gs) = gs {
                    store_block::<X, T>(&gv, gs, d);
                }
            }
            k += B;
        }
        for (p, b) in pair.enumerate() {
            for r in 0..B - 1 {
                put_block(op, outb, idxs[p][r], sums[p][r].map(reduce));
            }
            if rot.scale().is_some() {
                for (o, a) in outs[b * B..b * B + B].iter_mut().zip(scale_sums[p]) {
                    *o = reduce(a);
                }
            }
        }
    }
    let mut g = match g {
        GradRows::Write(g) => Some(g),
        GradRows::Read(_) => None,
    };
    if let Some(g) = g.as_mut().filter(|_| full < w) {
        g[full * d..].copy_from_slice(&pg[..(w - full) * d]);
    }
    if asc {
        tree_recover(&sub, op, lz, lg, w8, &mut out[sub_at..4 * nb]);
        if let Some(g) = g {
            scatter_leaders(g, lg, d, w8);
        }
    }
}

/// Blocks of coordinates walked together by [`tile_rows_fused`].
const PAIR: usize = 2;

/// The scaling step backward on one register block, as [`scale_back`]
/// with recovery: `z_a <- z_a / s_a`, `acc_a += g_a z_a`, `g_a <- s_a g_a`.
#[inline(always)]
fn scale_back_block<T: Real>(
    zv: &mut [[T; LANES]; LANES],
    gv: &mut [[T; LANES]; LANES],
    sc: &[T],
    accs: &mut [[T; LANES]; LANES],
) {
    for (a, &si) in sc.iter().enumerate().take(LANES) {
        for l in 0..LANES {
            let zz = zv[a][l] / si;
            zv[a][l] = zz;
            accs[a][l] = accs[a][l] + gv[a][l] * zz;
            gv[a][l] = gv[a][l] * si;
        }
    }
}

/// Row-major `w x d` rows to the coordinate-major tile `buf[i * w + l]`.
#[inline(always)]
fn to_soa<T: Real>(rows: &[T], buf: &mut [T], d: usize, w: usize) {
    for (l, row) in rows.chunks_exact(d).enumerate() {
        for (i, &v) in row.iter().enumerate() {
            buf[i * w + l] = v;
        }
    }
}

/// The block a step of `op` applies for block `b`.
#[inline(always)]
fn step_block<T: Real>(op: Op, b: Block<T>) -> Block<T> {
    if op == Op::Forward {
        b
    } else {
        b.transpose()
    }
}

/// Stores the step gradient `dL/dM = [[s11, s12], [s21, s22]]` as `dL/dB`.
#[inline(always)]
fn put_block<T: Real>(op: Op, out: &mut [T], k: usize, s: [T; 4]) {
    let o = &mut out[4 * k..4 * k + 4];
    if op == Op::Forward {
        o.copy_from_slice(&s);
    } else {
        o.copy_from_slice(&[s[0], s[2], s[1], s[3]]);
    }
}

/// The lanes of coordinates `i` and `j` of a coordinate-major tile.
#[inline(always)]
fn pair<T>(buf: &mut [T], i: usize, j: usize, w: usize) -> (&mut [T], &mut [T]) {
    let (lo, hi) = buf.split_at_mut(j * w);
    (&mut lo[i * w..i * w + w], &mut hi[..w])
}

/// Strict backward of one tile from the stage outputs `z` (overwritten by
/// the recovered inputs) and the upstream gradient `g` (overwritten by the
/// input gradient).
#[inline(always)]
fn tile_recover<T: Real, const FUSED: bool>(
    rot: &Rotation<'_, T>,
    op: Op,
    z: &mut [T],
    g: &mut [T],
    w: usize,
    out: &mut [T],
    hook: &mut StageHook<'_, T>,
) {
    let d = rot.dim();
    let nb = rot.blocks().len();
    if FUSED && rot.layout() == crate::Layout::Tree {
        // The stage hook is not called here: a group's stages are done
        // together (the tests compare this with the plain walk).
        if op == Op::Transpose {
            scale_back(rot, z, g, w, &mut out[4 * nb..], true);
            tree_recover(rot, op, z, g, w, out);
        } else {
            tree_recover(rot, op, z, g, w, out);
            scale_back(rot, z, g, w, &mut out[4 * nb..], true);
        }
        return;
    }
    let stage = |st: Stage, z: &mut [T], g: &mut [T], out: &mut [T]| {
        for (t, p) in st.planes().enumerate() {
            let k = st.offset + t;
            let m = step_block(op, rot.blocks()[k]);
            let (zi, zj) = pair(z, p.i, p.j, w);
            let (gi, gj) = pair(g, p.i, p.j, w);
            put_block(op, out, k, plane_recover(m, zi, zj, gi, gj));
        }
    };
    let layout = rot.layout();
    if op == Op::Transpose {
        scale_back(rot, z, g, w, &mut out[4 * nb..], true);
        for (idx, st) in layout.stages(d).enumerate() {
            stage(st, z, g, out);
            hook(idx, z, w);
        }
    } else {
        let ns = layout.num_stages(d);
        for (idx, st) in layout.stages(d).rev().enumerate() {
            stage(st, z, g, out);
            hook(ns - 1 - idx, z, w);
        }
        scale_back(rot, z, g, w, &mut out[4 * nb..], true);
    }
}

/// Backward of one tile from the forward's input: recomputes the forward on
/// `z` keeping every block's two inputs in `save`, then walks back.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tile_recompute<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    rows: &[T],
    z: &mut [T],
    g: &mut [T],
    save: &mut [T],
    w: usize,
    out: &mut [T],
) {
    let d = rot.dim();
    let blocks = rot.blocks();
    let nb = blocks.len();
    let layout = rot.layout();
    let fwd = |st: Stage, z: &mut [T], save: &mut [T]| {
        for (t, p) in st.planes().enumerate() {
            let k = st.offset + t;
            let (zi, zj) = pair(z, p.i, p.j, w);
            let (si, sj) = save[2 * k * w..2 * k * w + 2 * w].split_at_mut(w);
            si.copy_from_slice(zi);
            sj.copy_from_slice(zj);
            rotate_lanes(step_block(op, blocks[k]), zi, zj);
        }
    };
    let bwd = |st: Stage, g: &mut [T], out: &mut [T], save: &[T]| {
        for (t, p) in st.planes().enumerate() {
            let k = st.offset + t;
            let (si, sj) = save[2 * k * w..2 * k * w + 2 * w].split_at(w);
            let (gi, gj) = pair(g, p.i, p.j, w);
            put_block(op, out, k, plane_stored(step_block(op, blocks[k]), si, sj, gi, gj));
        }
    };
    if op == Op::Transpose {
        for st in layout.stages(d).rev() {
            fwd(st, z, save);
        }
        scale_back(rot, z, g, w, &mut out[4 * nb..], false);
        for st in layout.stages(d) {
            bwd(st, g, out, save);
        }
    } else {
        if let Some(s) = rot.scale() {
            for (i, &si) in s.iter().enumerate() {
                z[i * w..i * w + w].iter_mut().for_each(|v| *v = *v * si);
            }
        }
        for st in layout.stages(d) {
            fwd(st, z, save);
        }
        for st in layout.stages(d).rev() {
            bwd(st, g, out, save);
        }
        if rot.scale().is_some() {
            to_soa(rows, z, d, w);
            scale_back(rot, z, g, w, &mut out[4 * nb..], false);
        }
    }
}

/// The scaling step backward: optionally recovers `z_i = z'_i / s_i`, then
/// `out[i] = sum_l g_il z_il` and `g_i <- s_i g_i`.
#[inline(always)]
fn scale_back<T: Real>(rot: &Rotation<'_, T>, z: &mut [T], g: &mut [T], w: usize, out: &mut [T], recover: bool) {
    let Some(s) = rot.scale() else { return };
    for (i, &si) in s.iter().enumerate() {
        let zi = &mut z[i * w..i * w + w];
        let gi = &mut g[i * w..i * w + w];
        if recover {
            zi.iter_mut().for_each(|v| *v = *v / si);
        }
        let mut acc = [T::zero(); LANES];
        let mut zc = zi.chunks_exact(LANES);
        let mut gc = gi.chunks_exact_mut(LANES);
        for (zz, gg) in (&mut zc).zip(&mut gc) {
            let zz: &[T; LANES] = zz.try_into().expect("chunk of LANES");
            let gg: &mut [T; LANES] = gg.try_into().expect("chunk of LANES");
            for k in 0..LANES {
                acc[k] = acc[k] + gg[k] * zz[k];
                gg[k] = gg[k] * si;
            }
        }
        for (k, (zz, gg)) in zc.remainder().iter().zip(gc.into_remainder()).enumerate() {
            acc[k] = acc[k] + *gg * *zz;
            *gg = *gg * si;
        }
        out[i] = reduce(acc);
    }
}

/// Pairwise sum of the `LANES` partial sums.
#[inline(always)]
fn reduce<T: Real>(a: [T; LANES]) -> T {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// Stages of the tree fused per group in the strict backward (log2 of the
/// register block). Two, not the forward's three: every rotation here holds
/// four partial-sum vectors besides the coordinates and their gradients, and
/// blocks of 8 coordinates spill them (measured slower, `benches/kernels.rs`).
const TREE_GROUP: usize = 2;

/// The strict backward of the tree over one tile, `TREE_GROUP` stages per
/// pass: a block of `2^TREE_GROUP` active coordinates (multiples of `2^s0`)
/// and their gradients stay in registers for `LANES` lanes while the
/// group's stages are undone, each rotation's products accumulated in its
/// own `LANES` partial sums. Every rotation sees the same operations in the
/// same order as in [`plane_recover`], so the results are bitwise those of
/// the stage-by-stage walk.
#[inline(always)]
fn tree_recover<T: Real>(rot: &Rotation<'_, T>, op: Op, z: &mut [T], g: &mut [T], w: usize, out: &mut [T]) {
    let d = rot.dim();
    let ns = crate::Layout::Tree.num_stages(d);
    let groups = ns.div_ceil(TREE_GROUP);
    // Undoing R^T walks the stages in parameter order, undoing R backwards.
    let asc = op == Op::Transpose;
    for gi in 0..groups {
        let gi = if asc { gi } else { groups - 1 - gi };
        let s0 = gi * TREE_GROUP;
        match (ns - s0).min(TREE_GROUP) {
            1 => tree_group_recover::<T, 2>(rot, op, z, g, w, out, s0, asc),
            2 => tree_group_recover::<T, 4>(rot, op, z, g, w, out, s0, asc),
            _ => tree_group_recover::<T, 8>(rot, op, z, g, w, out, s0, asc),
        }
    }
}

/// Stages `s0 .. s0 + log2 N` of the tree's strict backward (see
/// [`tree_recover`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tree_group_recover<T: Real, const N: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    z: &mut [T],
    g: &mut [T],
    w: usize,
    out: &mut [T],
    s0: usize,
    asc: bool,
) {
    let d = rot.dim();
    let k = N.trailing_zeros() as usize;
    let h = 1usize << s0;
    let m = d.div_ceil(h);
    let blocks = rot.blocks();
    let mut offs = [0usize; 8];
    for (kk, o) in offs.iter_mut().enumerate().take(k) {
        *o = crate::Layout::Tree.stage(d, s0 + kk).offset;
    }
    let full = w - w % LANES;
    let whole = m / N;
    for blk in 0..whole {
        let b0 = blk * N;
        // The block's rotations in the order they are undone: step block,
        // parameter index, and local plane.
        let mut cb = [Block::identity(); N];
        let mut idx = [0usize; N];
        let mut r = 0;
        for step in 0..k {
            let kk = if asc { step } else { k - 1 - step };
            for t in 0..N >> (kk + 1) {
                let q = offs[kk] + ((b0 + (t << (kk + 1))) >> (kk + 1));
                cb[r] = step_block(op, blocks[q]);
                idx[r] = q;
                r += 1;
            }
        }
        let mut acc = [[[T::zero(); LANES]; 4]; N];
        let mut c = 0;
        while c < full {
            let mut zv = [[T::zero(); LANES]; N];
            let mut gv = [[T::zero(); LANES]; N];
            for a in 0..N {
                let at = (b0 + a) * h * w + c;
                zv[a].copy_from_slice(&z[at..at + LANES]);
                gv[a].copy_from_slice(&g[at..at + LANES]);
            }
            if asc {
                tree_block_recover::<T, N, true>(&cb, &mut zv, &mut gv, &mut acc);
            } else {
                tree_block_recover::<T, N, false>(&cb, &mut zv, &mut gv, &mut acc);
            }
            for a in 0..N {
                let at = (b0 + a) * h * w + c;
                z[at..at + LANES].copy_from_slice(&zv[a]);
                g[at..at + LANES].copy_from_slice(&gv[a]);
            }
            c += LANES;
        }
        if full < w {
            // Zero-padded tail: padded lanes contribute nothing.
            let rem = w - full;
            let mut zv = [[T::zero(); LANES]; N];
            let mut gv = [[T::zero(); LANES]; N];
            for a in 0..N {
                let at = (b0 + a) * h * w + full;
                zv[a][..rem].copy_from_slice(&z[at..at + rem]);
                gv[a][..rem].copy_from_slice(&g[at..at + rem]);
            }
            if asc {
                tree_block_recover::<T, N, true>(&cb, &mut zv, &mut gv, &mut acc);
            } else {
                tree_block_recover::<T, N, false>(&cb, &mut zv, &mut gv, &mut acc);
            }
            for a in 0..N {
                let at = (b0 + a) * h * w + full;
                z[at..at + rem].copy_from_slice(&zv[a][..rem]);
                g[at..at + rem].copy_from_slice(&gv[a][..rem]);
            }
        }
        for r in 0..N - 1 {
            put_block(op, out, idx[r], acc[r].map(reduce));
        }
    }
    // The last, partial block: plane by plane where the partner exists.
    let b0 = whole * N;
    if b0 < m {
        for step in 0..k {
            let kk = if asc { step } else { k - 1 - step };
            let gap = 1usize << kk;
            let mut i = b0;
            while i + gap < m {
                let q = offs[kk] + (i >> (kk + 1));
                let (zi, zj) = pair(z, i * h, (i + gap) * h, w);
                let (gi, gj) = pair(g, i * h, (i + gap) * h, w);
                put_block(op, out, q, plane_recover(step_block(op, blocks[q]), zi, zj, gi, gj));
                i += 2 * gap;
            }
        }
    }
}

/// The `log2 N` stages of one register block of the strict backward, in
/// parameter order (`ASC`) or reversed; `cb` holds the step blocks in the
/// order they are undone, `acc[r]` the partial sums of rotation `r`.
#[inline(always)]
fn tree_block_recover<T: Real, const N: usize, const ASC: bool>(
    cb: &[Block<T>; N],
    zv: &mut [[T; LANES]; N],
    gv: &mut [[T; LANES]; N],
    acc: &mut [[[T; LANES]; 4]; N],
) {
    const { assert!(N.is_power_of_two() && N <= 8) };
    crate::kernel::each_block_rotation!(N, ASC, |r, i, j| {
        let (mut u, mut v, mut p, mut q) = (zv[i], zv[j], gv[i], gv[j]);
        lanes_recover(&cb[r], &mut u, &mut v, &mut p, &mut q, &mut acc[r]);
        zv[i] = u;
        zv[j] = v;
        gv[i] = p;
        gv[j] = q;
    });
}

/// One step of the strict backward for `LANES` lanes: recover the input
/// `M^T z'`, accumulate `g' z^T`, propagate `M^T g'`.
#[inline(always)]
fn lanes_recover<T: Real>(
    m: &Block<T>,
    u: &mut [T; LANES],
    v: &mut [T; LANES],
    p: &mut [T; LANES],
    q: &mut [T; LANES],
    acc: &mut [[T; LANES]; 4],
) {
    for k in 0..LANES {
        let (o1, o2) = (u[k], v[k]);
        let z1 = m.a * o1 + m.c * o2;
        let z2 = m.b * o1 + m.e * o2;
        u[k] = z1;
        v[k] = z2;
        let (g1, g2) = (p[k], q[k]);
        acc[0][k] = acc[0][k] + g1 * z1;
        acc[1][k] = acc[1][k] + g1 * z2;
        acc[2][k] = acc[2][k] + g2 * z1;
        acc[3][k] = acc[3][k] + g2 * z2;
        p[k] = m.a * g1 + m.c * g2;
        q[k] = m.b * g1 + m.e * g2;
    }
}

/// One step of the stored-input backward for `LANES` lanes.
#[inline(always)]
fn lanes_stored<T: Real>(
    m: &Block<T>,
    u: &[T; LANES],
    v: &[T; LANES],
    p: &mut [T; LANES],
    q: &mut [T; LANES],
    acc: &mut [[T; LANES]; 4],
) {
    for k in 0..LANES {
        let (z1, z2) = (u[k], v[k]);
        let (g1, g2) = (p[k], q[k]);
        acc[0][k] = acc[0][k] + g1 * z1;
        acc[1][k] = acc[1][k] + g1 * z2;
        acc[2][k] = acc[2][k] + g2 * z1;
        acc[3][k] = acc[3][k] + g2 * z2;
        p[k] = m.a * g1 + m.c * g2;
        q[k] = m.b * g1 + m.e * g2;
    }
}

#[inline(always)]
fn arr<T>(s: &mut [T]) -> &mut [T; LANES] {
    s.try_into().expect("chunk of LANES")
}

/// The strict backward of one plane over all lanes of a tile; returns the
/// step gradient `[s11, s12, s21, s22]`.
#[inline(always)]
fn plane_recover<T: Real>(m: Block<T>, zi: &mut [T], zj: &mut [T], gi: &mut [T], gj: &mut [T]) -> [T; 4] {
    let n = zi.len();
    let full = n - n % LANES;
    let mut acc = [[T::zero(); LANES]; 4];
    let mut c = 0;
    while c < full {
        let r = c..c + LANES;
        lanes_recover(
            &m,
            arr(&mut zi[r.clone()]),
            arr(&mut zj[r.clone()]),
            arr(&mut gi[r.clone()]),
            arr(&mut gj[r]),
            &mut acc,
        );
        c += LANES;
    }
    if full < n {
        // Zero-padded tail: padded lanes contribute nothing.
        let mut t = [[T::zero(); LANES]; 4];
        let rem = n - full;
        for (buf, src) in t.iter_mut().zip([&*zi, &*zj, &*gi, &*gj]) {
            buf[..rem].copy_from_slice(&src[full..]);
        }
        let [mut u, mut v, mut p, mut q] = t;
        lanes_recover(&m, &mut u, &mut v, &mut p, &mut q, &mut acc);
        zi[full..].copy_from_slice(&u[..rem]);
        zj[full..].copy_from_slice(&v[..rem]);
        gi[full..].copy_from_slice(&p[..rem]);
        gj[full..].copy_from_slice(&q[..rem]);
    }
    acc.map(reduce)
}

/// The stored-input backward of one plane over all lanes of a tile.
#[inline(always)]
fn plane_stored<T: Real>(m: Block<T>, si: &[T], sj: &[T], gi: &mut [T], gj: &mut [T]) -> [T; 4] {
    let n = si.len();
    let full = n - n % LANES;
    let mut acc = [[T::zero(); LANES]; 4];
    let mut c = 0;
    while c < full {
        let r = c..c + LANES;
        let u: &[T; LANES] = si[r.clone()].try_into().expect("chunk of LANES");
        let v: &[T; LANES] = sj[r.clone()].try_into().expect("chunk of LANES");
        lanes_stored(&m, u, v, arr(&mut gi[r.clone()]), arr(&mut gj[r]), &mut acc);
        c += LANES;
    }
    if full < n {
        let mut t = [[T::zero(); LANES]; 4];
        let rem = n - full;
        for (buf, src) in t.iter_mut().zip([si, sj, &*gi, &*gj]) {
            buf[..rem].copy_from_slice(&src[full..]);
        }
        let [u, v, mut p, mut q] = t;
        lanes_stored(&m, &u, &v, &mut p, &mut q, &mut acc);
        gi[full..].copy_from_slice(&p[..rem]);
        gj[full..].copy_from_slice(&q[..rem]);
    }
    acc.map(reduce)
}

#[cfg(test)]
mod tests {
    //! The strict backward's recovered stage inputs against the forward's.
    use super::*;
    use crate::kernel::ByElement;
    use crate::param::blocks_from_angles;
    use crate::{AngleMap, Layout};
    use alloc::{vec, vec::Vec};
    use proptest::prelude::*;

    const LAYOUTS: [Layout; 4] = [Layout::Chain, Layout::Tree, Layout::Full, Layout::FullParallel];

    /// Largest `|recovered - forward| / |x|` over the stage inputs of every
    /// row, relative to the bound: `2 u sqrt(d)` for the chain and the tree
    /// from `d = 8` on, `2 u (sqrt(d) + 2)` below (one rotation's forward and
    /// inverse roundings alone reach about `3.4 u`), `2 u d` for the full
    /// layouts.
    fn worst_recovery<T: Real>(layout: Layout, d: usize, n: usize, transpose: bool, seed: u64) -> f64 {
        let op = if transpose { Op::Transpose } else { Op::Forward };
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            <T as Real>::from_f64(((state >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0)
        };
        let params: Vec<T> = (0..layout.num_rotations(d)).map(|_| next()).collect();
        let mut blocks = vec![Block::identity(); params.len()];
        blocks_from_angles(AngleMap::Raw, &params, &mut blocks).unwrap();
        let rot = Rotation::strict(layout, d, &blocks, None).unwrap();
        let x: Vec<T> = (0..n * d).map(|_| next()).collect();
        let mut y = x.clone();
        rot.apply_rows(op, &mut y).unwrap();

        // The forward's stage inputs, one snapshot per stage, coordinate-major.
        let ns = layout.num_stages(d);
        let mut z = vec![T::zero(); n * d];
        to_soa(&x, &mut z, d, n);
        let mut fwd = vec![Vec::new(); ns];
        let order: Vec<(usize, Stage)> = if transpose {
            layout.stages(d).enumerate().rev().collect()
        } else {
            layout.stages(d).enumerate().collect()
        };
        for (k, st) in order {
            fwd[k] = z.clone();
            for (t, p) in st.planes().enumerate() {
                let (zi, zj) = pair(&mut z, p.i, p.j, n);
                rotate_lanes(step_block(op, blocks[st.offset + t]), zi, zj);
            }
        }

        let saved = Saved::Output(&y[..]);
        let geo = Geometry::of(&rot, &saved);
        assert_eq!(geo.tiles, 1);
        let mut work = vec![T::zero(); geo.plain_len()];
        let mut g = x.clone();
        let mut seen = vec![false; ns];
        let mut worst: f64 = 0.0;
        let xnorm = |r: usize| x[r * d..(r + 1) * d].iter().map(|v| Real::to_f64(*v).powi(2)).sum::<f64>().sqrt();
        let bound = Real::to_f64(T::UNIT_ROUNDOFF)
            * 2.0
            * match layout {
                Layout::Chain | Layout::Tree if d >= 8 => (d as f64).sqrt(),
                Layout::Chain | Layout::Tree => (d as f64).sqrt() + 2.0,
                _ => d as f64,
            };
        backward_rows::<T, ByElement, false>(
            &rot,
            op,
            saved,
            GradRows::Write(&mut g),
            &mut work,
            &geo,
            &mut |k, rec, w| {
                seen[k] = true;
                for r in 0..w {
                    let e2: f64 =
                        (0..d).map(|i| (Real::to_f64(rec[i * w + r]) - Real::to_f64(fwd[k][i * w + r])).powi(2)).sum();
                    worst = worst.max(e2.sqrt() / xnorm(r) / bound);
                }
            },
        );
        assert!(seen.iter().all(|s| *s), "every stage recovered");
        worst
    }

    macro_rules! recovery_props {
        ($name:ident, $t:ty) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(256))]
                #[test]
                fn $name(layout in 0usize..4, d in 1usize..=64, n in 1usize..=8, transpose in any::<bool>(), seed in any::<u64>()) {
                    let w = worst_recovery::<$t>(LAYOUTS[layout], d, n, transpose, seed);
                    prop_assert!(w <= 1.0, "recovered stage input off by {w} times the bound");
                }
            }
        };
    }

    recovery_props!(recovered_stage_inputs_f32, f32);
    recovery_props!(recovered_stage_inputs_f64, f64);

    /// The fused strict backward (tree) against the stage-by-stage walk:
    /// input gradients and block and scaling gradients, bitwise (the same
    /// operations in the same order; only the loop nesting differs).
    fn fused_matches_plain<T: Real>(d: usize, n: usize, transpose: bool, scaled: bool, seed: u64) {
        let op = if transpose { Op::Transpose } else { Op::Forward };
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            <T as Real>::from_f64(((state >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0)
        };
        let layout = Layout::Tree;
        let params: Vec<T> = (0..layout.num_rotations(d)).map(|_| next()).collect();
        let mut blocks = vec![Block::identity(); params.len()];
        blocks_from_angles(AngleMap::Raw, &params, &mut blocks).unwrap();
        let sc: Vec<T> = (0..d).map(|_| next() / <T as Real>::from_f64(6.0) + <T as Real>::from_f64(1.0)).collect();
        let rot = Rotation::strict(layout, d, &blocks, if scaled { Some(&sc[..]) } else { None }).unwrap();
        let x: Vec<T> = (0..n * d).map(|_| next()).collect();
        let mut y = x.clone();
        rot.apply_rows(op, &mut y).unwrap();
        let g0: Vec<T> = (0..n * d).map(|_| next()).collect();
        let saved = Saved::Output(&y[..]);
        let geo = Geometry::of(&rot, &saved);
        let run = |fused: bool| {
            let mut work = vec![T::zero(); if fused { geo.workspace_len() } else { geo.plain_len() }];
            let mut g = g0.clone();
            let (dy, hook) = (GradRows::Write(&mut g), &mut |_: usize, _: &[T], _: usize| {});
            let total = if fused {
                backward_rows::<T, ByElement, true>(&rot, op, saved, dy, &mut work, &geo, hook).to_vec()
            } else {
                backward_rows::<T, ByElement, false>(&rot, op, saved, dy, &mut work, &geo, hook).to_vec()
            };
            g.into_iter().chain(total).map(|v| Real::to_f64(v).to_bits()).collect::<Vec<u64>>()
        };
        let (fused, plain) = (run(true), run(false));
        assert_eq!(fused.len(), plain.len());
        for (i, (a, b)) in fused.iter().zip(&plain).enumerate() {
            assert_eq!(a, b, "d={d} n={n} {op:?} scaled={scaled}: entry {i} of the gradients differs");
        }
    }

    macro_rules! fused_props {
        ($name:ident, $t:ty) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(64))]
                #[test]
                fn $name(d in 1usize..=140, n in 1usize..=150, transpose in any::<bool>(),
                         scaled in any::<bool>(), seed in any::<u64>()) {
                    fused_matches_plain::<$t>(d, n, transpose, scaled, seed);
                }
            }
        };
    }

    fused_props!(fused_tree_backward_matches_plain_f32, f32);
    fused_props!(fused_tree_backward_matches_plain_f64, f64);

    /// Sizes with whole register blocks in every group, several tiles and a
    /// partial lane chunk, which small random sizes rarely combine.
    #[test]
    fn fused_tree_backward_matches_plain_on_large_sizes() {
        for (d, n) in [(512, 70), (768, 21), (1000, 19), (4096, 9)] {
            fused_matches_plain::<f32>(d, n, true, false, d as u64);
            fused_matches_plain::<f64>(d, n, false, true, n as u64);
        }
    }

    /// Widths and batches where whole tiles go through the row-major fused
    /// backward (`d` and the tile's rows multiples of 8), with a last tile
    /// that does not.
    #[test]
    fn fused_tree_backward_matches_plain_on_row_blocks() {
        for (d, n) in [(8, 8), (16, 64), (64, 128), (136, 72), (768, 136), (4096, 20)] {
            for (transpose, scaled) in [(true, false), (true, true), (false, false), (false, true)] {
                fused_matches_plain::<f32>(d, n, transpose, scaled, (d * n) as u64);
                fused_matches_plain::<f64>(d, n, transpose, scaled, (d + n) as u64);
            }
        }
    }

    /// The strict backward reading its upstream gradient where it lies
    /// (`src`, as [`vjp_rows_from_input`] runs it) gives bitwise the block
    /// gradients of the one that carries the gradient in place, on every
    /// kernel, both operators, row-block and other widths.
    fn read_only_matches_carried<T: Real>(d: usize, n: usize, op: Op, seed: u64) {
        use crate::kernel::Kernel;
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            <T as Real>::from_f64(((state >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0)
        };
        let params: Vec<T> = (0..Layout::Tree.num_rotations(d)).map(|_| next()).collect();
        let mut blocks = vec![Block::identity(); params.len()];
        blocks_from_angles(AngleMap::Raw, &params, &mut blocks).unwrap();
        let x: Vec<T> = (0..n * d).map(|_| next()).collect();
        let g0: Vec<T> = (0..n * d).map(|_| next()).collect();
        for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            let rot = Rotation::strict(Layout::Tree, d, &blocks, None).unwrap().with_kernel(k).unwrap();
            let saved = Saved::Output(&x[..]);
            let geo = Geometry::of(&rot, &saved);
            let mut work = vec![T::zero(); geo.workspace_len()];
            let mut g = g0.clone();
            let carried =
                crate::simd::Dispatch::backward(k, &rot, op, saved, GradRows::Write(&mut g), &mut work, &geo).to_vec();
            let mut work = vec![T::zero(); geo.workspace_len()];
            let src = g0.clone();
            let read =
                crate::simd::Dispatch::backward(k, &rot, op, saved, GradRows::Read(&src), &mut work, &geo).to_vec();
            let bits = |v: &[T]| v.iter().map(|v| Real::to_f64(*v).to_bits()).collect::<Vec<u64>>();
            assert_eq!(bits(&carried), bits(&read), "{k:?} d={d} n={n} {op:?}");
            assert_eq!(bits(&src), bits(&g0), "{k:?} d={d} n={n} {op:?}: the source was written");
        }
    }

    #[test]
    fn read_only_upstream_gradient_matches_carried() {
        for (d, n) in [(8, 8), (16, 64), (40, 13), (37, 70), (136, 72), (768, 136)] {
            for op in [Op::Transpose, Op::Forward] {
                read_only_matches_carried::<f32>(d, n, op, (d * n) as u64);
                read_only_matches_carried::<f64>(d, n, op, (d + n) as u64);
            }
        }
    }

    /// The tree's VJPs without a chosen kernel run the one its rule names
    /// (AVX-512 where available by entry point, scalar and row stride, else
    /// [`Kernel::best`]), every other run the rotation's, and a chosen
    /// kernel runs them all; the default gives the bits of every kernel.
    fn vjp_kernels_match<T: Real>(d: usize, n: usize, seed: u64) {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            <T as Real>::from_f64(((state >> 11) as f64 / (1u64 << 53) as f64) * 6.0 - 3.0)
        };
        let params: Vec<T> = (0..Layout::Tree.num_rotations(d)).map(|_| next()).collect();
        let r = crate::RotationBuf::from_angles(Layout::Tree, d, AngleMap::Raw, &params, None).unwrap();
        let rot = r.as_rotation();
        let x: Vec<T> = (0..n * d).map(|_| next()).collect();
        let g0: Vec<T> = (0..n * d).map(|_| next()).collect();
        let wide = Kernel::Avx512.is_available();
        let f32 = core::mem::size_of::<T>() == 4;
        let fits = d.is_multiple_of(8);
        let from_output = Geometry::of(&rot, &Saved::Output(&x[..]));
        let from_input = Geometry::cross(&rot, n);
        let stored = Geometry::of(&rot, &Saved::Input(&x[..]));
        assert_eq!(from_output.rows_fused, fits);
        let want_output = if fits && wide && (!f32 || d.is_multiple_of(512)) { Kernel::Avx512 } else { Kernel::best() };
        let want_input = if wide && f32 { Kernel::Avx512 } else { Kernel::best() };
        assert_eq!(backward_kernel(&rot, &from_output), want_output, "d={d}");
        if fits {
            assert_eq!(backward_kernel(&rot, &from_input), want_input, "d={d}");
        }
        assert_eq!(backward_kernel(&rot, &stored), Kernel::best(), "d={d}");
        let bits = |v: &[T]| v.iter().map(|v| Real::to_f64(*v).to_bits()).collect::<Vec<u64>>();
        let run = |rot: &Rotation<'_, T>| {
            let mut g = g0.clone();
            let mut db = vec![Block::default(); d - 1];
            let mut work = vec![T::zero(); workspace_len(rot, Saved::Output(&x))];
            vjp_rows_owned(rot, Op::Transpose, Saved::Output(&x), &mut g, &mut db, None, &mut work).unwrap();
            let mut db2 = vec![Block::default(); d - 1];
            let mut work = vec![T::zero(); workspace_len_from_input(rot, &x)];
            vjp_rows_from_input(rot, Op::Transpose, &x, &g0, &mut db2, &mut work).unwrap();
            let flat = |b: &[Block<T>]| bits(&b.iter().flat_map(|b| [b.a, b.b, b.c, b.e]).collect::<Vec<T>>());
            (bits(&g), flat(&db), flat(&db2))
        };
        let default = run(&rot);
        for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            let chosen = rot.with_kernel(k).unwrap();
            for geo in [&from_output, &from_input, &stored] {
                assert_eq!(backward_kernel(&chosen, geo), k, "d={d} {k:?}");
            }
            assert!(run(&chosen) == default, "d={d} {k:?}");
        }
    }

    #[test]
    fn tree_vjps_take_their_own_kernel_unless_one_is_chosen() {
        for (d, n) in [(512, 24), (768, 20), (1024, 9), (128, 40), (60, 17)] {
            vjp_kernels_match::<f32>(d, n, (d * n) as u64);
            vjp_kernels_match::<f64>(d, n, (d + n) as u64);
        }
    }

    /// How close the recovery comes to its bound (printed with --nocapture).
    #[test]
    fn recovery_margin() {
        let mut worst: f64 = 0.0;
        for (s, layout) in LAYOUTS.into_iter().enumerate() {
            for d in [2, 3, 5, 8, 13, 31, 64] {
                for seed in 0..8 {
                    worst = worst.max(worst_recovery::<f32>(layout, d, 8, seed % 2 == 0, seed + 100 * s as u64));
                }
            }
        }
        std::println!("largest recovered-input error: {worst:.3} of its bound");
        assert!(worst <= 1.0);
    }
}
