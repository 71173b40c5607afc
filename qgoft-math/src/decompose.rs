//! From a matrix to angles and back: decomposition of SO(d) into the full
//! layout's Givens angles, dense rebuilding, vector alignment for the chain
//! and the tree, and the dimension of the family a layout reaches.
//!
//! ## Decomposition
//! [`Layout::Full`] holds one rotation per plane `(r - 1, r)` of column `c`,
//! `r = d - 1` down to `c + 1`, columns `c = 0 .. d - 1`, and
//! `R(theta) = P_N ... P_1`. Givens QR of `Q^T` with adjacent planes, column by
//! column and bottom-up, finds exactly these rotations:
//!
//! ```text
//! H_N^T ... H_1^T Q^T = D = diag(1, ..., 1, det Q)
//! Q = D H_N^T ... H_1^T = D R(theta)      with P_k = H_k^T
//! ```
//!
//! The sign of the last rotation of every column is chosen so that the
//! diagonal is `+1`; only the last entry is left, and it is `det Q`. For `Q` in
//! SO(d) this gives `Q = R(theta)`; for `det Q = -1` the [`decompose_with`]
//! variant that allows a reflection returns angles with
//! `Q = F R(theta)`, `F = diag(1, ..., 1, -1)` (the last row of `R(theta)`
//! negated), and says so.
//!
//! Angles lie in `(-pi, pi]`. [`Layout::FullParallel`] gets the same angles
//! permuted into its parameter order ([`Layout::sequential_index`]), bitwise.
//!
//! Accuracy target: `norm(R(theta) - Q)_F <= 4 u d` after [`rebuild`]
//! (`u` the unit roundoff). Near-degenerate columns (an intermediate norm near
//! zero) make some angles ill-determined, but not the matrix: the round trip
//! is judged by the matrix.
//!
//! ## Cost
//! Both directions are `O(d^3)` like a QR factorization (about `2 d^3` flops
//! each). The rotations of one column are applied as a sweep over the
//! trailing rows, a few columns at a time held in registers, and four
//! consecutive column groups share one pass, each trailing the previous by a
//! row, so every row is read and written once per four sweeps; every entry
//! still sees the same operations in the same order, so the results do not
//! depend on this. [`rebuild`] starts from the identity and touches only the
//! trailing block that is already filled. `benches/decompose.rs` compares
//! both with nalgebra's QR of the same matrix.
//!
//! ## Expressiveness
//! [`reachable_dimension`] measures the rank of the Jacobian of
//! `theta -> R(theta)`: `d (d - 1) / 2 = dim SO(d)` for the full layouts, but
//! only `d - 1` for the chain and the tree. For `d >= 3` the chain and the
//! tree therefore reach a thin (measure-zero) family of rotations: almost no
//! `Q` in SO(d) is a chain or tree rotation, and a fine-tuned `R` can only move
//! within that family.
//!
//! What `d - 1` rotations do achieve is moving one vector onto another
//! ([`align`]), with a condition. With the planes chosen for the pair, `d - 1`
//! rotations map any `x` to any `y` of the same norm (the paper's Theorem 4.1).
//! With the planes and their order fixed by a layout they do so exactly when
//! every rotation has enough norm in its plane for the coordinate it leaves
//! behind (see [`align`]). That always holds for `y = +-norm(x) e_root`
//! (`e_{d-1}` for the chain, `e_0` for the tree) and, for the chain, for
//! `x = norm(y) e_0`; it fails for instance for the tree in `d = 4`, which
//! never moves `e_0` onto `e_3` (coordinate 3 is final before any mass
//! reaches it).
//!
//! ```
//! use qgoft_math::decompose::{decompose, rebuild};
//! use qgoft_math::Layout;
//! // A rotation by 0.3 in the plane (0, 2) of R^3.
//! let (s, c) = 0.3f64.sin_cos();
//! let q = [c, 0.0, -s, 0.0, 1.0, 0.0, s, 0.0, c];
//! let angles = decompose(Layout::Full, &q, 3)?;
//! let back = rebuild(Layout::Full, &angles, 3)?;
//! let err: f64 = q.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
//! assert!(err <= 4.0 * 1.2e-16 * 3.0);
//! # Ok::<(), qgoft_math::Error>(())
//! ```

use crate::error::{check_finite, check_len, Error, Result};
use crate::kernel::{full_regs, ExactTable, PlainExact, Transposer};
use crate::scalar::dot2;
use crate::{AngleMap, Givens, Layout, Real};

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

/// Columns processed together by the fused sweeps (held in registers).
const CHUNK2: usize = 8;

/// Column groups fused into one sweep (at most 4: see [`workspace_len`]).
const DEPTH: usize = 4;

/// Length of the scratch buffer [`decompose_into`] needs: `d * d + 8 d`
/// scalars.
///
/// ```
/// assert_eq!(qgoft_math::decompose::workspace_len(4), 48);
/// ```
pub const fn workspace_len(d: usize) -> usize {
    d * d + 2 * DEPTH * d
}

/// Length of the scratch buffer [`rebuild_into`] needs for `layout`:
/// `d * d + 31 d` scalars for the full layouts (the table of every
/// rotation's cosine and sine, `d (d - 1)`, and a tile of 32 columns),
/// none for the others.
///
/// ```
/// use qgoft_math::decompose::rebuild_workspace_len;
/// use qgoft_math::Layout;
/// assert_eq!(rebuild_workspace_len(Layout::Full, 4), 140);
/// assert_eq!(rebuild_workspace_len(Layout::Tree, 4), 0);
/// ```
pub const fn rebuild_workspace_len(layout: Layout, d: usize) -> usize {
    match layout {
        Layout::Full | Layout::FullParallel => d * d.saturating_sub(1) + REBUILD_TILE * d,
        _ => 0,
    }
}

/// The default orthogonality tolerance for dimension `d`:
/// `norm(Q^T Q - I)_F <= 64 u d`.
///
/// A product of `d (d - 1) / 2` rotations meets `2 u d` (see `DESIGN.md`),
/// so this accepts any matrix that is orthogonal to working precision.
///
/// ```
/// use qgoft_math::decompose::default_tolerance;
/// assert_eq!(default_tolerance::<f64>(2), 128.0 * f64::EPSILON / 2.0);
/// ```
pub fn default_tolerance<T: Real>(d: usize) -> T {
    T::from_f64(64.0) * T::UNIT_ROUNDOFF * T::from_usize(d.max(1))
}

/// How strictly [`decompose_with`] checks its input.
///
/// ```
/// use qgoft_math::decompose::DecomposeOptions;
/// let o = DecomposeOptions::<f32> { tolerance: Some(1e-3), allow_reflection: true };
/// assert_eq!(DecomposeOptions::<f32>::default().tolerance, None);
/// # let _ = o;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct DecomposeOptions<T> {
    /// Largest accepted `norm(Q^T Q - I)_F`, in `[0, 1)`; `None` means
    /// [`default_tolerance`].
    pub tolerance: Option<T>,
    /// Accept `det Q = -1` and factor out the reflection
    /// `F = diag(1, ..., 1, -1)`: then `Q = F R(theta)`.
    pub allow_reflection: bool,
}

/// What [`decompose_into`] found besides the angles.
///
/// ```
/// use qgoft_math::decompose::{decompose_into, workspace_len, DecomposeOptions};
/// use qgoft_math::Layout;
/// let q = [0.0f64, 1.0, 1.0, 0.0]; // a reflection
/// let mut angles = [0.0];
/// let mut work = vec![0.0; workspace_len(2)];
/// let opts = DecomposeOptions { allow_reflection: true, ..Default::default() };
/// let info = decompose_into(Layout::Full, &q, 2, &opts, &mut angles, &mut work)?;
/// assert!(info.reflected);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecomposeInfo<T> {
    /// `true` when `det Q = -1` and `Q = F R(theta)`, `F = diag(1, ..., 1, -1)`;
    /// `false` when `Q = R(theta)`.
    pub reflected: bool,
    /// `norm(Q^T Q - I)_F` as measured on the triangular factor of the
    /// decomposition (to first order, which is exact to rounding for every
    /// matrix that passes the default tolerance).
    pub orthogonality_error: T,
}

/// Angles and findings of [`decompose_with`] (feature `alloc`).
///
/// ```
/// use qgoft_math::decompose::{decompose_with, DecomposeOptions};
/// use qgoft_math::Layout;
/// let q = [1.0f32, 0.0, 0.0, 1.0];
/// let dec = decompose_with(Layout::Full, &q, 2, &DecomposeOptions::default())?;
/// assert_eq!(dec.angles, vec![0.0]);
/// assert!(!dec.reflected);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, PartialEq)]
pub struct Decomposition<T> {
    /// The angles in the layout's parameter order (raw, `theta = p`).
    pub angles: Vec<T>,
    /// `true` when `Q = F R(theta)` with `F = diag(1, ..., 1, -1)`.
    pub reflected: bool,
    /// The measured `norm(Q^T Q - I)_F`, see [`DecomposeInfo`].
    pub orthogonality_error: T,
}

/// How a dense matrix is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    RowMajor,
    ColMajor,
}

/// The angles of `Q` in SO(d) for [`Layout::Full`] or [`Layout::FullParallel`]
/// (feature `alloc`): `Q = R(theta)` with the default tolerance.
///
/// `q` is the row-major `d x d` matrix.
///
/// # Errors
/// As [`decompose_into`] with [`DecomposeOptions::default`]; in particular
/// [`Error::NotSpecialOrthogonal`] for `det Q = -1` (see [`decompose_with`]).
///
/// ```
/// use qgoft_math::decompose::decompose;
/// use qgoft_math::{Error, Layout};
/// let q = [0.0f64, -1.0, 1.0, 0.0];
/// let a = decompose(Layout::Full, &q, 2)?;
/// assert!((a[0] - core::f64::consts::FRAC_PI_2).abs() < 1e-15);
/// let flip = [1.0f64, 0.0, 0.0, -1.0];
/// assert!(matches!(decompose(Layout::Full, &flip, 2), Err(Error::NotSpecialOrthogonal { .. })));
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "alloc")]
pub fn decompose<T: Real>(layout: Layout, q: &[T], d: usize) -> Result<Vec<T>> {
    Ok(decompose_with(layout, q, d, &DecomposeOptions::default())?.angles)
}

/// The angles of an orthogonal `Q` with a chosen tolerance, optionally
/// factoring out a reflection (feature `alloc`).
///
/// # Errors
/// As [`decompose_into`].
///
/// ```
/// use qgoft_math::decompose::{decompose_with, rebuild, DecomposeOptions};
/// use qgoft_math::Layout;
/// let q = [1.0f64, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]; // swaps e1, e2: det -1
/// let opts = DecomposeOptions { allow_reflection: true, ..Default::default() };
/// let dec = decompose_with(Layout::Full, &q, 3, &opts)?;
/// assert!(dec.reflected);
/// let mut r = rebuild(Layout::Full, &dec.angles, 3)?;
/// r[6..].iter_mut().for_each(|v| *v = -*v); // F R: negate the last row
/// assert!(r.iter().zip(&q).all(|(a, b)| (a - b).abs() < 1e-15));
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "alloc")]
pub fn decompose_with<T: Real>(
    layout: Layout,
    q: &[T],
    d: usize,
    opts: &DecomposeOptions<T>,
) -> Result<Decomposition<T>> {
    decompose_alloc(layout, q, d, Storage::RowMajor, opts)
}

#[cfg(feature = "alloc")]
fn decompose_alloc<T: Real>(
    layout: Layout,
    q: &[T],
    d: usize,
    storage: Storage,
    opts: &DecomposeOptions<T>,
) -> Result<Decomposition<T>> {
    check_full_layout(layout, d)?;
    let mut angles = alloc::vec![T::zero(); layout.num_rotations(d)];
    let mut work = alloc::vec![T::zero(); workspace_len(d)];
    let info = decompose_core(layout, q, d, storage, opts, &mut angles, &mut work)?;
    Ok(Decomposition { angles, reflected: info.reflected, orthogonality_error: info.orthogonality_error })
}

/// The angles of the row-major orthogonal `d x d` matrix `q` into `angles`,
/// without allocating (`work` holds at least [`workspace_len`]`(d)` scalars).
///
/// The angles are for [`Layout::Full`], or permuted into the parameter order
/// of [`Layout::FullParallel`] (bitwise the same values).
///
/// # Errors
/// * [`Error::InvalidArgument`] for `d = 0`, for a layout other than the two
///   full ones, or for a tolerance outside `[0, 1)`;
/// * [`Error::ShapeMismatch`] if `q`, `angles` or `work` has the wrong length;
/// * [`Error::NonFinite`] for a NaN or infinite entry of `q`;
/// * [`Error::NotOrthogonal`] with the measured `norm(Q^T Q - I)_F` when it
///   exceeds the tolerance;
/// * [`Error::NotSpecialOrthogonal`] with the measured determinant when
///   `det Q = -1` and no reflection is allowed.
///
/// `angles` may have been written when an error is returned.
///
/// ```
/// use qgoft_math::decompose::{decompose_into, workspace_len, DecomposeOptions};
/// use qgoft_math::{Error, Layout};
/// let mut angles = [0.0f32; 1];
/// let mut work = [0.0f32; 20];
/// let skewed = [1.0f32, 0.1, 0.0, 1.0];
/// let e = decompose_into(Layout::Full, &skewed, 2, &DecomposeOptions::default(), &mut angles, &mut work);
/// assert!(matches!(e, Err(Error::NotOrthogonal { error, .. }) if error > 0.09));
/// ```
pub fn decompose_into<T: Real>(
    layout: Layout,
    q: &[T],
    d: usize,
    opts: &DecomposeOptions<T>,
    angles: &mut [T],
    work: &mut [T],
) -> Result<DecomposeInfo<T>> {
    decompose_core(layout, q, d, Storage::RowMajor, opts, angles, work)
}

/// [`decompose_core_body`] compiled for the widest instruction set the
/// processor has (the same operations in the same order: bitwise the same
/// angles; only the vector width changes).
fn decompose_core<T: Real>(
    layout: Layout,
    q: &[T],
    d: usize,
    storage: Storage,
    opts: &DecomposeOptions<T>,
    angles: &mut [T],
    work: &mut [T],
) -> Result<DecomposeInfo<T>> {
    crate::simd::Dispatch::decompose(layout, q, d, storage, opts, angles, work)
}

/// [`rebuild_core_body`] compiled for the widest instruction set the
/// processor has (bitwise the same matrix).
fn rebuild_core<T: Real>(
    layout: Layout,
    angles: &[T],
    d: usize,
    storage: Storage,
    out: &mut [T],
    work: &mut [T],
) -> Result<()> {
    crate::simd::Dispatch::rebuild(layout, angles, d, storage, out, work)
}

fn check_full_layout(layout: Layout, d: usize) -> Result<()> {
    if d == 0 {
        return Err(Error::InvalidArgument { what: "dimension d", value: 0.0 });
    }
    match layout {
        Layout::Full | Layout::FullParallel => Ok(()),
        _ => Err(Error::InvalidArgument {
            what: "layout for decompose (only Full and FullParallel reach every rotation; value: its rotation count)",
            value: layout.num_rotations(d) as f64,
        }),
    }
}

fn check_workspace(what: &'static str, needed: usize, found: usize) -> Result<()> {
    if found < needed {
        return Err(Error::ShapeMismatch { what, expected: needed, found });
    }
    Ok(())
}

/// Parameter index, in `layout`'s order, of the full layout's rotation on the
/// plane `(r - 1, r)` of column `c`.
#[inline]
fn param_index(layout: Layout, d: usize, c: usize, r: usize) -> usize {
    match layout {
        Layout::FullParallel => {
            // Stage t = d - 1 - r + 2 c holds columns c_lo(t) ..= t / 2 in order.
            let t = d - 1 - r + 2 * c;
            parallel_stage_offset(d, t) + c - (t + 2).saturating_sub(d)
        }
        _ => crate::layout::full_column_start(d, c) + (d - 1 - r),
    }
}

/// First parameter of stage `t` of [`Layout::FullParallel`]:
/// `sum_{s < t} (floor(s / 2) + 1 - max(0, s + 2 - d))`.
#[inline]
fn parallel_stage_offset(d: usize, t: usize) -> usize {
    let m = t / 2;
    let halves = if t.is_multiple_of(2) { m * m.saturating_sub(1) } else { m * m };
    let k = (t + 1).saturating_sub(d);
    t + halves - k * (k + 1) / 2
}

#[inline(always)]
pub(crate) fn decompose_core_body<T: Real>(
    layout: Layout,
    q: &[T],
    d: usize,
    storage: Storage,
    opts: &DecomposeOptions<T>,
    angles: &mut [T],
    work: &mut [T],
) -> Result<DecomposeInfo<T>> {
    check_full_layout(layout, d)?;
    check_len("matrix (d * d)", d * d, q.len())?;
    check_len("angles", layout.num_rotations(d), angles.len())?;
    check_workspace("workspace (d * d + 8 d)", workspace_len(d), work.len())?;
    check_finite("matrix", q)?;
    let tol = opts.tolerance.unwrap_or_else(|| default_tolerance(d));
    if !(tol >= T::zero() && tol < T::one()) {
        return Err(Error::InvalidArgument {
            what: "orthogonality tolerance (needs 0 <= tol < 1)",
            value: tol.to_f64(),
        });
    }
    let (a, rest) = work.split_at_mut(d * d);
    let groups = &mut rest[..2 * DEPTH * d];

    // a = Q^T, row-major: the rotations then act on contiguous rows.
    match storage {
        Storage::ColMajor => a.copy_from_slice(q),
        Storage::RowMajor => transpose_into(q, a, d),
    }
    // Within the tolerance, norm(Q)_2^2 <= 1 + tol bounds every entry; a larger
    // one settles the question before any rotation is generated.
    let max = a.iter().fold(T::zero(), |m, v| m.max(v.abs()));
    let bound = (T::one() + tol).sqrt() * (T::one() + T::from_f64(8.0) * T::UNIT_ROUNDOFF);
    if max > bound {
        return Err(not_orthogonal(q, d, tol, max * max - T::one()));
    }

    // Column groups DEPTH at a time: group c + i is generated once groups
    // c .. c + i have reached column c + i, then all sweep the rest in one pass.
    let (cs_all, sn_all) = groups.split_at_mut(DEPTH * d);
    let mut c = 0;
    while c + 1 < d {
        if d - c > DEPTH {
            for i in 0..DEPTH {
                for h in 0..i {
                    let (cs, sn) = (&cs_all[h * d..(h + 1) * d], &sn_all[h * d..(h + 1) * d]);
                    sweep_up_k_chunk::<T, 1, 1>(a, d, c + h, c + i, [cs], [sn]);
                }
                let (cs, sn) = (&mut cs_all[i * d..(i + 1) * d], &mut sn_all[i * d..(i + 1) * d]);
                generate_group(layout, a, d, c + i, cs, sn, angles)?;
            }
            let cs: [&[T]; DEPTH] = core::array::from_fn(|h| &cs_all[h * d..(h + 1) * d]);
            let sn: [&[T]; DEPTH] = core::array::from_fn(|h| &sn_all[h * d..(h + 1) * d]);
            sweep_up_k::<T, DEPTH>(a, d, c, cs, sn);
            c += DEPTH;
        } else {
            let (cs, sn) = (&mut cs_all[..d], &mut sn_all[..d]);
            generate_group(layout, a, d, c, cs, sn, angles)?;
            sweep_up_k::<T, 1>(a, d, c, [&cs_all[..d]], [&sn_all[..d]]);
            c += 1;
        }
    }

    // a is now upper triangular: diagonal ~ (1, ..., 1, det Q), residual F above.
    // (A^T A - I)_jj = a_jj^2 - 1 + sum_{k<j} a_kj^2, (A^T A)_ij = a_ii a_ij + (F^T F)_ij:
    // delta below is norm(A^T A - I)_F without the F^T F terms, which are at most norm(F)_F^2.
    let colsq = &mut groups[..d];
    colsq.iter_mut().for_each(|v| *v = T::zero());
    let (mut f2, mut off) = (T::zero(), T::zero());
    for i in 0..d {
        let aii = a[i * d + i];
        for (j, &v) in a[i * d + i + 1..(i + 1) * d].iter().enumerate() {
            let w = aii * v;
            f2 = f2 + v * v;
            off = off + w * w;
            colsq[i + 1 + j] = colsq[i + 1 + j] + v * v;
        }
    }
    let mut diag = T::zero();
    for (j, &s) in colsq.iter().enumerate() {
        let x = a[j * d + j].abs();
        let t = (x - T::one()) * (x + T::one()) + s;
        diag = diag + t * t;
    }
    let two = T::one() + T::one();
    let mut measured = (diag + two * off).sqrt();
    if !within(measured + f2, tol) {
        let exact = exact_orthogonality_error(q, d);
        if !within(exact, tol) {
            return Err(Error::NotOrthogonal { error: exact.to_f64(), tolerance: tol.to_f64() });
        }
        measured = exact;
    }

    let reflected = a[d * d - 1] < T::zero();
    if reflected && !opts.allow_reflection {
        let det = (0..d).fold(1.0f64, |p, j| p * a[j * d + j].to_f64());
        return Err(Error::NotSpecialOrthogonal { det });
    }
    Ok(DecomposeInfo { reflected, orthogonality_error: measured })
}

/// The rotations of column `c`, bottom-up, from rows `c ..` of the column
/// alone: `(cs[r], sn[r])` for the plane `(r - 1, r)`, angles written in
/// `layout`'s order, diagonal entry `a[c][c]` set.
#[inline(always)]
fn generate_group<T: Real>(
    layout: Layout,
    a: &mut [T],
    d: usize,
    c: usize,
    cs: &mut [T],
    sn: &mut [T],
    angles: &mut [T],
) -> Result<()> {
    let mut b = a[(d - 1) * d + c];
    for r in (c + 1..d).rev() {
        let (g, rho) = Givens::generate(a[(r - 1) * d + c], b)?;
        let (mut gc, mut gs, mut rho) = (g.c(), g.s(), rho);
        if r == c + 1 && rho < T::zero() {
            // The diagonal entry becomes +|rho|: rotate by pi more.
            (gc, gs, rho) = (-gc, -gs, -rho);
        }
        cs[r] = gc;
        sn[r] = gs;
        b = rho;
        // H = [[gc, -gs], [gs, gc]] is applied as H^T; P_k = H^T rotates by -angle(H).
        angles[param_index(layout, d, c, r)] = (T::zero() - gs).atan2(gc);
    }
    a[c * d + c] = b;
    Ok(())
}

/// `x <= tol`, false for NaN.
#[inline]
fn within<T: Real>(x: T, tol: T) -> bool {
    x <= tol
}

/// `norm(Q^T Q - I)_F` in twice the working precision (infinite if it overflows).
fn exact_orthogonality_error<T: Real>(q: &[T], d: usize) -> T {
    // Q^T Q and Q Q^T - I have the same Frobenius norm, so the storage order does not matter.
    match crate::metrics::orthogonality_error(q, d) {
        Ok(e) if e.frobenius.is_finite() => e.frobenius,
        _ => T::infinity(),
    }
}

fn not_orthogonal<T: Real>(q: &[T], d: usize, tol: T, lower_bound: T) -> Error {
    let e = exact_orthogonality_error(q, d).max(lower_bound);
    Error::NotOrthogonal { error: e.to_f64(), tolerance: tol.to_f64() }
}

/// `dst = src^T` for row-major `d x d` matrices.
#[inline(always)]
fn transpose_into<T: Real>(src: &[T], dst: &mut [T], d: usize) {
    const B: usize = 16;
    for i0 in (0..d).step_by(B) {
        for j0 in (0..d).step_by(B) {
            for i in i0..(i0 + B).min(d) {
                for j in j0..(j0 + B).min(d) {
                    dst[j * d + i] = src[i * d + j];
                }
            }
        }
    }
}

#[inline(always)]
fn transpose_in_place<T: Real>(a: &mut [T], d: usize) {
    for i in 0..d {
        for j in i + 1..d {
            a.swap(i * d + j, j * d + i);
        }
    }
}

#[inline(always)]
fn load<T: Real, const W: usize>(a: &[T], at: usize) -> [T; W] {
    let mut v = [T::zero(); W];
    v.copy_from_slice(&a[at..at + W]);
    v
}

/// `K` decomposition sweeps at once: the groups of columns `c .. c + K`
/// (`cs[k]`, `sn[k]` for column `c + k`) on columns `c + K .. d`, each group
/// trailing the previous one by a row, so that each row is read and written
/// once for all of them. Every entry sees the same operations in the same
/// order as `K` separate sweeps. Needs `d - c > K`.
#[inline(always)]
fn sweep_up_k<T: Real, const K: usize>(a: &mut [T], d: usize, c: usize, cs: [&[T]; K], sn: [&[T]; K]) {
    let mut j = c + K;
    j = sweep_up_k_chunks::<T, K, CHUNK2>(a, d, c, j, cs, sn);
    j = sweep_up_k_chunks::<T, K, 4>(a, d, c, j, cs, sn);
    j = sweep_up_k_chunks::<T, K, 2>(a, d, c, j, cs, sn);
    sweep_up_k_chunks::<T, K, 1>(a, d, c, j, cs, sn);
}

#[inline(always)]
fn sweep_up_k_chunks<T: Real, const K: usize, const W: usize>(
    a: &mut [T],
    d: usize,
    c: usize,
    mut j: usize,
    cs: [&[T]; K],
    sn: [&[T]; K],
) -> usize {
    while j + W <= d {
        sweep_up_k_chunk::<T, K, W>(a, d, c, j, cs, sn);
        j += W;
    }
    j
}

/// One step of an up-sweep: with `x` row `r - 1` and `carry` row `r`,
/// returns the finished row `r` and leaves row `r - 1` in `carry`.
#[inline(always)]
fn step_up<T: Real, const W: usize>(co: T, s: T, carry: &mut [T; W], x: &[T; W]) -> [T; W] {
    let mut out = [T::zero(); W];
    for ((o, cv), &xv) in out.iter_mut().zip(carry.iter_mut()).zip(x.iter()) {
        *o = co * *cv - s * xv;
        *cv = co * xv + s * *cv;
    }
    out
}

#[inline(always)]
fn sweep_up_k_chunk<T: Real, const K: usize, const W: usize>(
    a: &mut [T],
    d: usize,
    c: usize,
    j: usize,
    cs: [&[T]; K],
    sn: [&[T]; K],
) {
    // Group k does its step r + k (plane (r + k - 1, r + k)) in iteration r.
    let mut carry = [[T::zero(); W]; K];
    carry[0] = load::<T, W>(a, (d - 1) * d + j);
    // Groups start one by one: in iteration r, group d - 1 - r takes its first step.
    for r in (d + 1 - K..d).rev() {
        let mut x = load::<T, W>(a, (r - 1) * d + j);
        for k in 0..d - r {
            x = step_up(cs[k][r + k], sn[k][r + k], &mut carry[k], &x);
        }
        carry[d - r] = x;
    }
    for r in (c + 1..=d - K).rev() {
        let mut x = load::<T, W>(a, (r - 1) * d + j);
        for k in 0..K {
            x = step_up(cs[k][r + k], sn[k][r + k], &mut carry[k], &x);
        }
        a[(r + K - 1) * d + j..(r + K - 1) * d + j + W].copy_from_slice(&x);
    }
    for (k, v) in carry.iter().enumerate() {
        a[(c + k) * d + j..(c + k) * d + j + W].copy_from_slice(v);
    }
}

/// The dense row-major `R(theta) = P_N ... P_1` of any layout (feature `alloc`).
///
/// For the full layouts this is the inverse of [`decompose`]; the result is
/// bitwise the same for [`Layout::FullParallel`] as for [`Layout::Full`]
/// with the angles permuted.
///
/// # Errors
/// As [`rebuild_into`].
///
/// ```
/// use qgoft_math::decompose::rebuild;
/// use qgoft_math::Layout;
/// let r = rebuild(Layout::Chain, &[core::f32::consts::FRAC_PI_2], 2)?;
/// assert!(r[1] == -1.0 && r[2] == 1.0 && r[0].abs() < 1e-7);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "alloc")]
pub fn rebuild<T: Real>(layout: Layout, angles: &[T], d: usize) -> Result<Vec<T>> {
    let mut out = alloc::vec![T::zero(); d * d];
    let mut work = alloc::vec![T::zero(); rebuild_workspace_len(layout, d)];
    rebuild_core(layout, angles, d, Storage::RowMajor, &mut out, &mut work)?;
    Ok(out)
}

/// Writes the dense row-major `R(theta) = P_N ... P_1` of any layout into
/// `out` (`d * d`) without allocating; `work` holds at least
/// [`rebuild_workspace_len`]`(layout, d)` scalars.
///
/// The full layouts go through the batch kernels' wavefront (as
/// [`Rotation::apply_cols`](crate::Rotation::apply_cols) on the identity,
/// on the processor's widest registers, skipping the rotations of zeros:
/// about `2 d^3` flops), with the products not fused, so the matrix is
/// bitwise the same on every processor; the other layouts apply their
/// `O(d)` rotations to the identity.
///
/// # Errors
/// [`Error::InvalidArgument`] for `d = 0`; [`Error::ShapeMismatch`] if
/// `angles`, `out` or `work` has the wrong length; [`Error::NonFinite`] for a
/// NaN or infinite angle.
///
/// ```
/// use qgoft_math::decompose::{rebuild_into, rebuild_workspace_len};
/// use qgoft_math::Layout;
/// let mut out = [0.0f64; 9];
/// let mut work = vec![0.0f64; rebuild_workspace_len(Layout::Full, 3)];
/// rebuild_into(Layout::Full, &[0.0, 0.0, 0.0], 3, &mut out, &mut work)?;
/// assert_eq!(out, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn rebuild_into<T: Real>(layout: Layout, angles: &[T], d: usize, out: &mut [T], work: &mut [T]) -> Result<()> {
    rebuild_core(layout, angles, d, Storage::RowMajor, out, work)
}

/// Columns of the dense output that [`rebuild_core_body`] builds at a time
/// for the full layouts: two 512-bit registers of `f32`, 32 columns (16 of
/// `f64`), in a tile of `32 d` scalars of the workspace.
const REBUILD_TILE: usize = 32;

/// [`rebuild_into`]'s body for the kernels' transposer `X` (the
/// processor's registers in the SIMD builds, arrays in the portable one):
/// bitwise the same matrix for every `X`.
///
/// The full layouts go through the batch kernel's wavefront: the table of
/// `(cos, sin)` of every rotation (in [`Layout::Full`]'s order, `d (d - 1)`
/// scalars), then the identity's columns [`REBUILD_TILE`] at a time in a
/// packed tile (rows of 4 KiB apart would share the first-level cache's
/// sets), through every column group in registers, unfused (two products
/// and a sum per output), and the tile into its columns of `out`
/// (transposed at the end for [`Storage::ColMajor`]). The planes that act
/// on zeros only (past the tile's last column, one coordinate further per
/// column group done) are skipped: about `2 d^3` flops.
#[inline(always)]
pub(crate) fn rebuild_core_body<T: Real, X: Transposer>(
    layout: Layout,
    angles: &[T],
    d: usize,
    storage: Storage,
    out: &mut [T],
    work: &mut [T],
) -> Result<()> {
    if d == 0 {
        return Err(Error::InvalidArgument { what: "dimension d", value: 0.0 });
    }
    check_len("angles", layout.num_rotations(d), angles.len())?;
    check_len("dense output (d * d)", d * d, out.len())?;
    let full = matches!(layout, Layout::Full | Layout::FullParallel);
    check_workspace("workspace (d * d + 31 d)", rebuild_workspace_len(layout, d), work.len())?;
    check_finite("angles", angles)?;
    if full {
        let (table, rest) = work.split_at_mut(d * (d - 1));
        let (cs, _) = table.as_chunks_mut::<2>();
        for c in 0..d - 1 {
            let at = crate::layout::full_column_start(d, c);
            for r in c + 1..d {
                let (s, co) = angles[param_index(layout, d, c, r)].sin_cos();
                cs[at + (d - 1 - r)] = [co, s];
            }
        }
        // `R` applied to the identity's columns gives `R` row-major.
        let mut j0 = 0;
        while j0 < d {
            let tw = REBUILD_TILE.min(d - j0);
            // The tile's coordinates from `j0 + tw` on start at zero.
            let src = ExactTable { d, cs, live: j0 + tw };
            let tile = &mut rest[..d * tw];
            for (i, row) in tile.chunks_exact_mut(tw).enumerate() {
                for (l, v) in row.iter_mut().enumerate() {
                    *v = if i == j0 + l { T::one() } else { T::zero() };
                }
            }
            let done = match X::full_table(src, tile, tw, 0, tw) {
                Some(done) => done,
                None => full_regs::<PlainExact, T, [T; 4], _, 1>(src, tile, tw, 0, tw),
            };
            full_regs::<PlainExact, T, [T; 1], _, 1>(src, tile, tw, done, tw - done);
            // Plus zero: a zero's sign, which the planes skipped on zeros
            // (where the kernels' wavefronts differ) could have changed, is
            // the only thing they change, and `-0 + 0 = +0`.
            for (row, t) in out.chunks_exact_mut(d).zip(tile.chunks_exact(tw)) {
                for (o, &v) in row[j0..j0 + tw].iter_mut().zip(t) {
                    *o = v + T::zero();
                }
            }
            j0 += tw;
        }
        if storage == Storage::ColMajor {
            transpose_in_place(out, d);
        }
        return Ok(());
    }
    // R = P_N ... P_1 I: the rows of the identity, P_1 first.
    for (k, v) in out.iter_mut().enumerate() {
        *v = if k % (d + 1) == 0 { T::one() } else { T::zero() };
    }
    for (k, p) in layout.planes(d).enumerate() {
        let g = Givens::from_angle(angles[k]);
        let (lo, hi) = out.split_at_mut(p.j * d);
        g.apply_slices(&mut lo[p.i * d..(p.i + 1) * d], &mut hi[..d]);
    }
    if storage == Storage::ColMajor {
        transpose_in_place(out, d);
    }
    Ok(())
}

/// The raw parameter `p` with `map.angle(p) = theta`: the inverse of an
/// [`AngleMap`], for initialising an adapter from given angles.
///
/// * [`AngleMap::Raw`]: `p = theta`.
/// * [`AngleMap::PiTanh`]: `p = atanh(theta / pi)` for `|theta| < pi`. The
///   ends `theta = +-pi` (which [`decompose`] returns, e.g. for `-I`) are
///   reached in floating point: they map to `p = +-P` with `P` the
///   smallest integer past which `tanh(p)` rounds to `1` (`10` for `f32`,
///   `20` for `f64`), so `pi * tanh(p)` gives `+-pi` back exactly. The
///   derivative of `pi * tanh` vanishes there to working precision: such a
///   parameter is saturated and gradient descent will not move it.
///
/// # Errors
/// [`Error::NonFinite`] for a NaN or infinite angle;
/// [`Error::InvalidArgument`] for [`AngleMap::PiTanh`] and `|theta| > pi`.
///
/// ```
/// use qgoft_math::decompose::param_from_angle;
/// use qgoft_math::AngleMap;
/// let p = param_from_angle(AngleMap::PiTanh, 1.0f64)?;
/// assert!((AngleMap::PiTanh.angle(p) - 1.0).abs() < 1e-15);
/// let pi = core::f32::consts::PI;
/// assert_eq!(AngleMap::PiTanh.angle(param_from_angle(AngleMap::PiTanh, pi)?), pi);
/// assert!(param_from_angle(AngleMap::PiTanh, 3.2f64).is_err());
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn param_from_angle<T: Real>(map: AngleMap, theta: T) -> Result<T> {
    if !theta.is_finite() {
        return Err(Error::NonFinite { what: "angle", index: 0, value: theta.to_f64() });
    }
    match map {
        AngleMap::Raw => Ok(theta),
        AngleMap::PiTanh => {
            let x = theta / T::PI();
            if x.abs() > T::one() {
                return Err(Error::InvalidArgument {
                    what: "angle for AngleMap::PiTanh (needs |theta| <= pi)",
                    value: theta.to_f64(),
                });
            }
            if x.abs() == T::one() {
                return Ok(pitanh_saturation::<T>().copysign(x));
            }
            Ok(x.atanh())
        }
    }
}

/// The smallest integer `P` with `tanh(p) = 1` in floating point for `p >= P`.
fn pitanh_saturation<T: Real>() -> T {
    // 1 - tanh(p) ~ 2 exp(-2 p) < u / 2 from p > ln(4 / u) / 2.
    let four = T::from_f64(4.0);
    ((four / T::UNIT_ROUNDOFF).ln() / (T::one() + T::one())).floor() + T::one()
}

/// Raw parameters for `angles` under `map`, entry by entry
/// (see [`param_from_angle`]).
///
/// # Errors
/// [`Error::ShapeMismatch`] if the lengths differ; otherwise as
/// [`param_from_angle`], with the index of the offending angle for
/// [`Error::NonFinite`].
///
/// ```
/// use qgoft_math::decompose::params_from_angles;
/// use qgoft_math::AngleMap;
/// let mut p = [0.0f32; 2];
/// params_from_angles(AngleMap::PiTanh, &[0.0, -1.0], &mut p)?;
/// assert_eq!(p[0], 0.0);
/// assert!((AngleMap::PiTanh.angle(p[1]) + 1.0).abs() < 1e-6);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn params_from_angles<T: Real>(map: AngleMap, angles: &[T], params: &mut [T]) -> Result<()> {
    check_len("parameters for angles", angles.len(), params.len())?;
    check_finite("angles", angles)?;
    for (p, &theta) in params.iter_mut().zip(angles) {
        *p = param_from_angle(map, theta)?;
    }
    Ok(())
}

/// The raw parameters of `layout` (full) under `map` that reproduce the
/// row-major `Q` in SO(d): `RotationBuf::from_angles(layout, d, map, &p, None)`
/// is `Q` to rounding (feature `alloc`).
///
/// This is the full layout's analogue of PyTorch's `right_inverse` for a
/// parametrization: it initialises an adapter from an existing rotation.
///
/// # Errors
/// As [`decompose`] and [`params_from_angles`].
///
/// ```
/// use qgoft_math::decompose::params_from_matrix;
/// use qgoft_math::{AngleMap, Layout, RotationBuf};
/// let q = [-1.0f64, 0.0, 0.0, -1.0]; // a rotation by pi
/// let p = params_from_matrix(Layout::Full, AngleMap::PiTanh, &q, 2)?;
/// let r = RotationBuf::from_angles(Layout::Full, 2, AngleMap::PiTanh, &p, None)?.to_dense();
/// assert!(r.iter().zip(&q).all(|(a, b)| (a - b).abs() < 1e-15));
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "alloc")]
pub fn params_from_matrix<T: Real>(layout: Layout, map: AngleMap, q: &[T], d: usize) -> Result<Vec<T>> {
    let angles = decompose(layout, q, d)?;
    let mut params = alloc::vec![T::zero(); angles.len()];
    params_from_angles(map, &angles, &mut params)?;
    Ok(params)
}

/// The default relative tolerance of [`align`] on `|norm(x) - norm(y)|`:
/// `16 u sqrt(d)`.
///
/// ```
/// use qgoft_math::decompose::default_align_tolerance;
/// assert_eq!(default_align_tolerance::<f32>(4), 32.0 * f32::EPSILON / 2.0);
/// ```
pub fn default_align_tolerance<T: Real>(d: usize) -> T {
    T::from_f64(16.0) * T::UNIT_ROUNDOFF * T::from_usize(d.max(1)).sqrt()
}

/// Angles for the chain or the tree with `R x = y`, when the layout can do it.
///
/// The construction follows the proof that `d - 1` rotations move a vector
/// onto any other of the same norm, with the planes and their order fixed by
/// the layout. Every rotation but the last leaves one coordinate final (the
/// chain's plane `(k, k + 1)` finishes `k`; the tree's plane `(i, j)` finishes
/// `j`): it is given `y`'s value there and passes the rest of the norm on.
/// The last rotation places both of its coordinates. Each angle is computed
/// from the values the previous rotations actually produce, so rounding does
/// not accumulate in the result.
///
/// This succeeds exactly when every rotation has at least `|y_j|` of norm in
/// its plane for the coordinate `j` it finishes, e.g. for the chain when
/// `norm(x_0..=k+1) >= norm(y_0..=k)` for all `k`. It always does for
/// `y = +-norm(x) e_{d-1}` (chain) or `y = +-norm(x) e_0` (tree), and for the
/// chain from `x = norm(y) e_0`; the tree in `d = 4`, for instance, never
/// moves `e_0` onto `e_3`. In `d = 1` there is no rotation: `x = y` is
/// needed.
///
/// Accuracy. Rounding leaves each finished coordinate slightly off, and
/// the norm it gains or loses, like any mismatch of `norm(x)` and `norm(y)`,
/// would all land in the last rotation's plane, amplified by `norm(x)` over
/// the norm of `y` there. Instead, a rotation whose finished coordinate is
/// at least as large as every later one absorbs that debt (it passes on the
/// exact remaining norm, from compensated sums), and the largest finished
/// coordinate takes the inputs' mismatch. Measured in `f64` over thousands of
/// cases with `d <= 64`: `norm(R x - y) <= 2.2 u sqrt(d) norm(x)` for targets
/// `y = R(phi) x` of either layout, and up to `5.4 u sqrt(d) norm(x)` for the
/// chain spreading `norm(y) e_0` onto a random `y`; the tests hold the tree to
/// `4` and the chain to `8` (and to `4` for targets on its root axis).
///
/// Uses the tolerance [`default_align_tolerance`]; see
/// [`align_with_tolerance`].
///
/// # Errors
/// As [`align_with_tolerance`].
///
/// ```
/// use qgoft_math::decompose::align;
/// use qgoft_math::{AngleMap, Layout, RotationBuf};
/// let x = [3.0f64, 0.0, 4.0, 0.0];
/// let y = [0.0f64, 0.0, 0.0, 5.0];
/// let mut angles = [0.0; 3];
/// align(Layout::Chain, &x, &y, &mut angles)?;
/// let r = RotationBuf::from_angles(Layout::Chain, 4, AngleMap::Raw, &angles, None)?;
/// let mut v = x;
/// r.as_rotation().apply(&mut v)?;
/// assert!(v.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-14));
/// # Ok::<(), qgoft_math::Error>(())
/// ```
pub fn align<T: Real>(layout: Layout, x: &[T], y: &[T], angles: &mut [T]) -> Result<()> {
    align_with_tolerance(layout, x, y, default_align_tolerance(x.len()), angles)
}

/// [`align`] with a relative tolerance `tol` on the norms: accepted when
/// `|norm(x) - norm(y)| <= tol max(norm(x), norm(y))`. The same absolute
/// slack `tol max(norm(x), norm(y))` is allowed where a rotation falls short
/// of its target coordinate.
///
/// # Errors
/// * [`Error::InvalidArgument`] for empty vectors, a layout other than
///   [`Layout::Chain`] and [`Layout::Tree`], or a negative or non-finite `tol`;
/// * [`Error::ShapeMismatch`] if `y` or `angles` has the wrong length;
/// * [`Error::NonFinite`] for a NaN or infinite entry;
/// * [`Error::NormMismatch`] with both norms when they differ beyond `tol`;
/// * [`Error::Unreachable`] with the coordinate that falls short, the norm
///   available to it and the value it needs, when the layout cannot map `x`
///   onto `y`.
///
/// `angles` may have been written when an error is returned.
///
/// ```
/// use qgoft_math::decompose::align_with_tolerance;
/// use qgoft_math::{Error, Layout};
/// let mut a = [0.0f32; 3];
/// let e = align_with_tolerance(Layout::Tree, &[1.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 1.0], 1e-6, &mut a);
/// assert!(matches!(e, Err(Error::Unreachable { index: 3, .. })));
/// let e = align_with_tolerance(Layout::Tree, &[1.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 2.0], 1e-6, &mut a);
/// assert!(matches!(e, Err(Error::NormMismatch { .. })));
/// ```
pub fn align_with_tolerance<T: Real>(layout: Layout, x: &[T], y: &[T], tol: T, angles: &mut [T]) -> Result<()> {
    let d = x.len();
    if d == 0 {
        return Err(Error::InvalidArgument { what: "vector length d", value: 0.0 });
    }
    check_len("target vector y", d, y.len())?;
    check_len("angles", layout.num_rotations(d), angles.len())?;
    check_finite("vector x", x)?;
    check_finite("vector y", y)?;
    if !(tol >= T::zero() && tol.is_finite()) {
        return Err(Error::InvalidArgument { what: "norm tolerance (needs a finite tol >= 0)", value: tol.to_f64() });
    }
    let (nx, ny) = (norm(x), norm(y));
    let slack = tol * nx.max(ny);
    if (nx - ny).abs() > slack {
        return Err(Error::NormMismatch { left: nx.to_f64(), right: ny.to_f64() });
    }
    match layout {
        Layout::Chain => align_chain(x, y, slack, angles),
        Layout::Tree => align_tree(x, y, slack, angles),
        _ => Err(Error::InvalidArgument {
            what: "layout for align (Chain or Tree; value: its rotation count)",
            value: layout.num_rotations(d) as f64,
        }),
    }
}

/// Euclidean norm, scaled against overflow and underflow, summed in twice the
/// working precision.
fn norm<T: Real>(x: &[T]) -> T {
    let m = x.iter().fold(T::zero(), |m, v| m.max(v.abs()));
    if m == T::zero() {
        return m;
    }
    m * dot2(T::zero(), x.iter().map(|v| (*v / m, *v / m))).sqrt()
}

fn align_chain<T: Real>(x: &[T], y: &[T], slack: T, angles: &mut [T]) -> Result<()> {
    let d = x.len();
    if d == 1 {
        return check_scalar(x[0], y[0], slack);
    }
    // Rounding leaves each finished coordinate slightly off, and the norm it
    // gains or loses would all land in the last plane, amplified when y has
    // little norm there. A rotation whose finished coordinate is at least as
    // large as every later one (and the last plane's part of y) absorbs that
    // debt instead: it passes on exactly the carry the rest needs,
    // sqrt(norm(y_{k+1..})^2 - norm(x_{k+2..})^2). The largest finished
    // coordinate also takes the mismatch norm(x)^2 - norm(y)^2 of the inputs.
    let last = y[d - 2].hypot(y[d - 1]);
    let (big, mismatch) = mismatch_taker(x, y, &y[..d - 2], last);
    // Plane (k, k+1) finishes coordinate k and carries the rest into k + 1.
    let mut carry = x[0];
    for k in 0..d - 1 {
        let (p, q) = (carry, x[k + 1]);
        let theta = if k + 2 == d {
            rotation_angle(p, q, y[k], y[k + 1])
        } else if y[k].abs() >= y[k + 1..d - 2].iter().fold(last, |m, v| m.max(v.abs())) {
            let owed = if big.is_some_and(|b| b > k) { mismatch } else { T::zero() };
            let m = (diff_sq(&y[k + 1..], &x[k + 2..]) + owed).max(T::zero()).sqrt();
            let (fin, rest) = absorb_target(p, q, y[k], m, q, slack, k)?;
            rotation_angle(p, q, fin, rest)
        } else {
            let (fin, rest) = split_target(p, q, y[k], q, slack, k)?;
            rotation_angle(p, q, fin, rest)
        };
        angles[k] = theta;
        carry = Givens::from_angle(theta).apply(p, q).1;
    }
    Ok(())
}

/// The coordinate (index into `finished`) with the largest `|y|` among those
/// finished by single rotations, when it is at least the last plane's part of
/// `y`, and `norm(x)^2 - norm(y)^2` in twice the working precision.
fn mismatch_taker<T: Real>(x: &[T], y: &[T], finished: &[T], last: T) -> (Option<usize>, T) {
    let mut big = None;
    let mut best = last;
    for (k, v) in finished.iter().enumerate() {
        if v.abs() >= best {
            best = v.abs();
            big = Some(k);
        }
    }
    (big, diff_sq(x, y))
}

/// `sum(a_i^2) - sum(b_i^2)` in twice the working precision.
fn diff_sq<T: Real>(a: &[T], b: &[T]) -> T {
    dot2(T::zero(), a.iter().map(|v| (*v, *v)).chain(b.iter().map(|v| (-*v, *v))))
}

/// As [`split_target`], but passing on the exact carry `m` the rest needs,
/// so that the finished coordinate absorbs the rounding of earlier steps.
fn absorb_target<T: Real>(a: T, b: T, target: T, m: T, sign_of: T, slack: T, index: usize) -> Result<(T, T)> {
    let h = a.hypot(b);
    if target.abs() > h + slack {
        return Err(Error::Unreachable { index, available: h.to_f64(), required: target.to_f64() });
    }
    let m = m.min(h);
    let f = ((h - m) * (h + m)).sqrt().copysign(target);
    Ok((f, if sign_of < T::zero() { -m } else { m }))
}

fn align_tree<T: Real>(x: &[T], y: &[T], slack: T, angles: &mut [T]) -> Result<()> {
    let d = x.len();
    if d == 1 {
        return check_scalar(x[0], y[0], slack);
    }
    let stages = Layout::Tree.num_stages(d);
    let mut offsets = [0usize; usize::BITS as usize];
    for (s, stage) in Layout::Tree.stages(d).enumerate() {
        offsets[s] = stage.offset;
    }
    // The root plane (0, r) finishes both its coordinates; the largest of the
    // others takes the inputs' norm mismatch (see align_chain).
    let r = 1usize << (stages - 1);
    let last = y[0].hypot(y[r]);
    let (mut big, mismatch) = mismatch_taker(x, y, y, last);
    if big == Some(0) || big == Some(r) {
        big = None;
    }
    for (s, stage) in Layout::Tree.stages(d).enumerate() {
        for (t, pl) in stage.planes().enumerate() {
            // Plane (i, j) finishes coordinate j and carries the rest into i.
            let p = tree_value(x, angles, &offsets, pl.i, s);
            let q = tree_value(x, angles, &offsets, pl.j, s);
            angles[stage.offset + t] = if s + 1 == stages {
                rotation_angle(p, q, y[pl.i], y[pl.j])
            } else if y[pl.j].abs() >= tree_later_max(y, pl.i, s, stages) {
                // As in the chain: the carry of the block i .. i + 2 gap is
                // sqrt(norm(x_block)^2 - norm(y_block without i)^2) exactly,
                // less the inputs' mismatch if the block finishes its taker.
                let end = (pl.i + 2 * stage.gap).min(d);
                let owed = if big.is_some_and(|b| b > pl.i && b < end) { mismatch } else { T::zero() };
                let m = (diff_sq(&x[pl.i..end], &y[pl.i + 1..end]) - owed).max(T::zero()).sqrt();
                let (fin, rest) = absorb_target(q, p, y[pl.j], m, p, slack, pl.j)?;
                rotation_angle(p, q, rest, fin)
            } else {
                let (fin, rest) = split_target(q, p, y[pl.j], p, slack, pl.j)?;
                rotation_angle(p, q, rest, fin)
            };
        }
    }
    Ok(())
}

/// The largest `|y|` that the rotations after stage `s` on the path of the
/// carry at `i` to the root finish (the root plane counts with the norm of its
/// part of `y`).
fn tree_later_max<T: Real>(y: &[T], i: usize, s: usize, stages: usize) -> T {
    let d = y.len();
    let mut cur = i;
    let mut best = T::zero();
    for t in s + 1..stages {
        let step = 1usize << t;
        let (lo, hi) = if (cur / step) % 2 == 1 { (cur - step, cur) } else { (cur, cur + step) };
        if hi >= d {
            continue;
        }
        if t + 1 == stages {
            return best.max(y[lo].hypot(y[hi]));
        }
        best = best.max(y[hi].abs());
        cur = lo;
    }
    best
}

/// The value at coordinate `i` (a multiple of `2^s`) after the tree's stages
/// `0 .. s` are applied to `x`, recomputed from the angles already chosen:
/// the carry of the block `i .. min(i + 2^s, d)`. Bitwise what the forward
/// application computes.
fn tree_value<T: Real>(x: &[T], angles: &[T], offsets: &[usize], i: usize, s: usize) -> T {
    if s == 0 {
        return x[i];
    }
    let step = 1usize << (s - 1);
    let p = tree_value(x, angles, offsets, i, s - 1);
    let j = i + step;
    if j >= x.len() {
        return p;
    }
    let q = tree_value(x, angles, offsets, j, s - 1);
    Givens::from_angle(angles[offsets[s - 1] + i / (2 * step)]).apply(p, q).0
}

/// For a rotation with `h = hypot(a, b)` in its plane that must leave `target`
/// on the finished coordinate: `(target, m)` with `m^2 = h^2 - target^2`, `m`
/// with the sign of `sign_of` (the carry coordinate's current value). A
/// shortfall within `slack` is absorbed by finishing at `+-h`.
fn split_target<T: Real>(a: T, b: T, target: T, sign_of: T, slack: T, index: usize) -> Result<(T, T)> {
    let h = a.hypot(b);
    let need = target.abs();
    if need >= h {
        if need - h > slack {
            return Err(Error::Unreachable { index, available: h.to_f64(), required: target.to_f64() });
        }
        return Ok((h.copysign(target), T::zero()));
    }
    let r = need / h;
    let m = h * ((T::one() - r) * (T::one() + r)).sqrt();
    Ok((target, if sign_of < T::zero() { -m } else { m }))
}

/// The angle of the rotation that turns the direction of `(p, q)` into the
/// direction of `(a, b)` (zero if either is the zero vector).
fn rotation_angle<T: Real>(p: T, q: T, a: T, b: T) -> T {
    let h = p.hypot(q);
    let t = a.hypot(b);
    if h == T::zero() || t == T::zero() {
        return T::zero();
    }
    let (p, q, a, b) = (p / h, q / h, a / t, b / t);
    (p * b - q * a).atan2(p * a + q * b)
}

fn check_scalar<T: Real>(x: T, y: T, slack: T) -> Result<()> {
    if (x - y).abs() > slack {
        return Err(Error::Unreachable { index: 0, available: x.to_f64(), required: y.to_f64() });
    }
    Ok(())
}

/// The dimension of the family of rotations `layout` reaches in SO(d): the
/// numerical rank of the Jacobian of `theta -> R(theta)` (`d^2` entries) at
/// random angles (feature `alloc`).
///
/// `dR/dtheta_k = R (L_k^T J_k L_k)` with `L_k = P_{k-1} ... P_1` and `J_k`
/// the generator `e_j e_i^T - e_i e_j^T` of the plane `(i, j)`; the skew
/// matrices `L_k^T J_k L_k` (upper triangles, `d (d - 1) / 2` entries) form
/// the columns, and the rank is read off a QR factorization with column
/// pivoting: columns count while `|r_kk| > 4 u max(rows, columns) |r_00|`.
/// The rank is the largest found at three points drawn uniformly from
/// `(-pi, pi)` by a small deterministic generator seeded with `seed`. It is
/// the same for [`AngleMap::PiTanh`], whose derivative never vanishes, and
/// for either scalar type: the dimension belongs to the layout. It is
/// measured in `f64`, since at random points the Jacobian's smallest singular
/// value falls to about `1e-5` of its largest already for `d = 14`, below what
/// `f32` resolves.
///
/// Expected, and what the tests check for `d` in `2 ..= 24`:
///
/// | layout | reachable dimension | of `dim SO(d)` |
/// | --- | --- | --- |
/// | [`Layout::Chain`], [`Layout::Tree`] | `d - 1` | `d (d - 1) / 2` |
/// | [`Layout::Full`], [`Layout::FullParallel`] | `d (d - 1) / 2` | `d (d - 1) / 2` |
///
/// The consequence: for `d >= 3` the chain and the tree reach only a
/// `(d - 1)`-dimensional slice of the `d (d - 1) / 2`-dimensional SO(d), so
/// almost no rotation can be written with them, and fine-tuning moves `R`
/// within that slice only (for `d = 4096`, 4095 of about 8.4 million
/// directions). Only the full layouts reach every rotation.
///
/// # Errors
/// [`Error::InvalidArgument`] for `d = 0`.
///
/// ```
/// use qgoft_math::decompose::reachable_dimension;
/// use qgoft_math::Layout;
/// assert_eq!(reachable_dimension(Layout::Tree, 6, 1)?, 5);
/// assert_eq!(reachable_dimension(Layout::Full, 6, 1)?, 15);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "alloc")]
pub fn reachable_dimension(layout: Layout, d: usize, seed: u64) -> Result<usize> {
    if d == 0 {
        return Err(Error::InvalidArgument { what: "dimension d", value: 0.0 });
    }
    let n = layout.num_rotations(d);
    let m = d * (d - 1) / 2;
    let mut rng = SplitMix64(seed);
    let mut best = 0;
    for _ in 0..3 {
        if best == n.min(m) {
            break;
        }
        let angles: Vec<f64> = (0..n).map(|_| (2.0 * rng.next_f64() - 1.0) * core::f64::consts::PI).collect();
        best = best.max(numerical_rank(jacobian(layout, d, &angles), m, n));
    }
    Ok(best)
}

/// A 64-bit generator (SplitMix64): small, fast, and deterministic.
#[cfg(feature = "alloc")]
struct SplitMix64(u64);

#[cfg(feature = "alloc")]
impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The Jacobian of `theta -> R^T R(theta)` at `angles`, column-major
/// `d (d - 1) / 2 x N`: column `k` is the upper triangle of
/// `L_k^T J_k L_k = a_j a_i^T - a_i a_j^T` (`a_m` row `m` of `L_k`).
#[cfg(feature = "alloc")]
fn jacobian<T: Real>(layout: Layout, d: usize, angles: &[T]) -> Vec<T> {
    let m = d * (d - 1) / 2;
    let mut jac = alloc::vec![T::zero(); m * angles.len()];
    let mut l = alloc::vec![T::zero(); d * d];
    for i in 0..d {
        l[i * d + i] = T::one();
    }
    for ((k, p), &theta) in layout.planes(d).enumerate().zip(angles) {
        let col = &mut jac[k * m..(k + 1) * m];
        let (ai, aj) = (&l[p.i * d..(p.i + 1) * d], &l[p.j * d..(p.j + 1) * d]);
        let mut idx = 0;
        for a in 0..d {
            for b in a + 1..d {
                col[idx] = aj[a] * ai[b] - ai[a] * aj[b];
                idx += 1;
            }
        }
        let (lo, hi) = l.split_at_mut(p.j * d);
        Givens::from_angle(theta).apply_slices(&mut lo[p.i * d..(p.i + 1) * d], &mut hi[..d]);
    }
    jac
}

/// Numerical rank of the column-major `m x n` matrix `a` by Householder QR
/// with column pivoting.
#[cfg(feature = "alloc")]
fn numerical_rank<T: Real>(mut a: Vec<T>, m: usize, n: usize) -> usize {
    let tol = T::from_f64(4.0) * T::UNIT_ROUNDOFF * T::from_usize(m.max(n));
    let mut r00 = T::zero();
    let mut norms = alloc::vec![T::zero(); n];
    for s in 0..m.min(n) {
        // Norms of the trailing parts, recomputed (no downdating to go wrong).
        for (c, v) in norms.iter_mut().enumerate().skip(s) {
            *v = a[c * m + s..(c + 1) * m].iter().fold(T::zero(), |acc, x| acc + *x * *x);
        }
        let mut p = s;
        for c in s + 1..n {
            if norms[c] > norms[p] {
                p = c;
            }
        }
        let nrm = norms[p].sqrt();
        if s == 0 {
            r00 = nrm;
        }
        if nrm == T::zero() || nrm <= tol * r00 {
            return s;
        }
        if p != s {
            for r in 0..m {
                a.swap(s * m + r, p * m + r);
            }
        }
        // Householder reflector I - beta v v^T taking column s to -sign(x0) nrm e_s.
        let (head, tail) = a.split_at_mut((s + 1) * m);
        let v = &mut head[s * m + s..(s + 1) * m];
        let x0 = v[0];
        let alpha = if x0 < T::zero() { nrm } else { -nrm };
        v[0] = x0 - alpha;
        let vnorm2 = v.iter().fold(T::zero(), |acc, x| acc + *x * *x);
        let beta = (T::one() + T::one()) / vnorm2;
        for col in tail.chunks_exact_mut(m) {
            let part = &mut col[s..];
            let w = beta * part.iter().zip(v.iter()).fold(T::zero(), |acc, (x, y)| acc + *x * *y);
            part.iter_mut().zip(v.iter()).for_each(|(x, y)| *x = *x - w * *y);
        }
    }
    m.min(n)
}

/// The angles of the nalgebra matrix `q` (feature `nalgebra`); as
/// [`decompose_with`].
///
/// nalgebra stores `Q` column by column, which is `Q^T` row by row: the
/// decomposition reads it without a transposition.
///
/// # Errors
/// [`Error::ShapeMismatch`] unless `q` is square; otherwise as
/// [`decompose_into`].
///
/// ```
/// use qgoft_math::decompose::{decompose_dmatrix, rebuild_dmatrix, DecomposeOptions};
/// use qgoft_math::Layout;
/// let q = nalgebra::Rotation3::from_euler_angles(0.1f64, -0.7, 2.0).into_inner();
/// let q = nalgebra::DMatrix::from_column_slice(3, 3, q.as_slice());
/// let dec = decompose_dmatrix(Layout::Full, &q, &DecomposeOptions::default())?;
/// let back = rebuild_dmatrix(Layout::Full, &dec.angles, 3)?;
/// assert!((back - q).norm() < 4.0 * 1.2e-16 * 3.0);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "nalgebra")]
pub fn decompose_dmatrix<T: Real>(
    layout: Layout,
    q: &nalgebra::DMatrix<T>,
    opts: &DecomposeOptions<T>,
) -> Result<Decomposition<T>> {
    check_len("matrix columns (a square matrix)", q.nrows(), q.ncols())?;
    decompose_alloc(layout, q.as_slice(), q.nrows(), Storage::ColMajor, opts)
}

/// The dense `R(theta)` of any layout as a nalgebra matrix (feature
/// `nalgebra`); as [`rebuild`], built directly in nalgebra's column order.
///
/// # Errors
/// As [`rebuild_into`].
///
/// ```
/// use qgoft_math::decompose::rebuild_dmatrix;
/// use qgoft_math::{AngleMap, Layout, RotationBuf};
/// let angles = [0.3f64, -0.1, 0.8];
/// let m = rebuild_dmatrix(Layout::Tree, &angles, 4)?;
/// let r = RotationBuf::from_angles(Layout::Tree, 4, AngleMap::Raw, &angles, None)?;
/// assert_eq!(m, r.to_dmatrix());
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[cfg(feature = "nalgebra")]
pub fn rebuild_dmatrix<T: Real>(layout: Layout, angles: &[T], d: usize) -> Result<nalgebra::DMatrix<T>> {
    let mut out = alloc::vec![T::zero(); d * d];
    let mut work = alloc::vec![T::zero(); rebuild_workspace_len(layout, d)];
    rebuild_core(layout, angles, d, Storage::ColMajor, &mut out, &mut work)?;
    Ok(nalgebra::DMatrix::from_vec(d, d, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate alloc;

    /// The rebuild compiled for the processor's widest instruction set
    /// (AVX-512 where it pays, AVX2) gives bitwise the matrix of the
    /// baseline build: the same products and sums, none fused.
    #[test]
    fn rebuild_is_bitwise_the_baseline_build() {
        fn check<T: Real>(layout: Layout, d: usize, storage: Storage) {
            let mut s = (d as u64) << 8 | layout as u64;
            let angles: alloc::vec::Vec<T> = (0..layout.num_rotations(d))
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    T::from_f64(6.0 * ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5))
                })
                .collect();
            let mut work = alloc::vec![T::zero(); rebuild_workspace_len(layout, d)];
            let (mut fast, mut base) = (alloc::vec![T::zero(); d * d], alloc::vec![T::zero(); d * d]);
            rebuild_core(layout, &angles, d, storage, &mut fast, &mut work).expect("rebuild");
            rebuild_core_body::<T, crate::kernel::ByElement>(layout, &angles, d, storage, &mut base, &mut work)
                .expect("rebuild");
            assert!(
                fast.iter().zip(&base).all(|(a, b)| Real::to_f64(*a).to_bits() == Real::to_f64(*b).to_bits()),
                "{layout:?} d={d} {storage:?}"
            );
        }
        for layout in [Layout::Chain, Layout::Tree, Layout::Full, Layout::FullParallel] {
            for d in [1usize, 2, 3, 5, 8, 13, 17, 31, 40, 67, 130] {
                for storage in [Storage::RowMajor, Storage::ColMajor] {
                    check::<f32>(layout, d, storage);
                    check::<f64>(layout, d, storage);
                }
            }
        }
    }

    #[test]
    fn parallel_index_matches_layout() {
        for d in 1..40 {
            let full: alloc::vec::Vec<_> = Layout::Full.planes(d).collect();
            for c in 0..d.saturating_sub(1) {
                for r in c + 1..d {
                    let k = param_index(Layout::Full, d, c, r);
                    assert_eq!((full[k].i, full[k].j), (r - 1, r), "d={d} c={c} r={r}");
                    let p = param_index(Layout::FullParallel, d, c, r);
                    assert_eq!(Layout::FullParallel.sequential_index(d, p), k, "d={d} c={c} r={r}");
                }
            }
        }
    }

    #[test]
    fn saturation_is_where_tanh_rounds_to_one() {
        let (p32, p64) = (pitanh_saturation::<f32>(), pitanh_saturation::<f64>());
        assert_eq!((p32, p64), (10.0, 20.0));
        assert_eq!(p32.tanh(), 1.0);
        assert_eq!(p64.tanh(), 1.0);
        assert!((p32 - 2.0).tanh() < 1.0 && (p64 - 2.0).tanh() < 1.0);
    }
}
