//! Batch kernels: the stages of one layout applied to a tile of vectors held
//! in structure-of-arrays form, and the choice of instruction set they run on.
//!
//! A tile is `tw` lanes (vectors) of `d` coordinates, coordinate `i` of lane
//! `l` at `data[i * ld + base + l]`. Every kernel walks the lanes in chunks
//! of `W` (a compile-time width: one to four SIMD registers per coordinate)
//! and keeps the chunk's values in registers across several rotations:
//!
//! * tree: the stages `s0 .. s0 + k` only mix coordinates inside aligned
//!   blocks of `2^k` active coordinates (the multiples of `2^s0`), so a
//!   block is loaded once, `2^k - 1` rotations are applied in registers and
//!   it is stored once; `d` that is not a power of two leaves a last, partial
//!   block that is done plane by plane;
//! * chain: the planes `(k, k + 1)` share a coordinate with their
//!   neighbours, so the shared one is carried in registers: one load and one
//!   store per rotation instead of two of each;
//! * full: each column `c` is a descending chain over `(r - 1, r)`, carried
//!   the same way;
//! * anything else (the full-parallel layout, lanes left over after the last
//!   whole chunk): the stages plane by plane over all lanes.
//!
//! Row-major batches are transposed tile by tile into this form, except for
//! the tree with `d` a multiple of 8, which has a kernel of its own for rows
//! (`tree_rows_fused`): one pass over the rows, 8 rows at a time (16 with
//! AVX-512 where the row stride spreads them over the cache's sets), each
//! 8 x 8 block (8 rows, 8 coordinates) transposed into registers, its first
//! three stages applied there and transposed back; the later stages only
//! touch every eighth coordinate (the blocks' leaders), which are gathered
//! and done as above. The strict backward of the tree has the same shape
//! (`grad`). Both evaluate every rotation exactly as the other kernels of
//! the same instruction set do, so their results are bitwise the same.
//!
//! A rotation is `u = a p + b q`, `v = c p + e q`. The portable kernels
//! evaluate it exactly so (two products and a sum, bitwise the same on every
//! machine); the SIMD kernels fuse one product into a multiply-add, which
//! changes the rounding by at most an ulp per rotation. A strict rotation
//! whose blocks are `[[a, b], [-b, a]]` bit for bit (those built from
//! angles) goes through the full layout's kernels with two coefficients
//! per block, `c p + e q` evaluated as `a q - b p`: bitwise the same
//! result, half the broadcasts.
//!
//! ## Kernels
//! [`Kernel::best`] is decided from the running processor (feature `std`
//! on x86-64; everywhere else it is [`Kernel::Portable`]). Column batches
//! take [`Kernel::best_columns`], and the tree's VJPs over rows a choice by
//! entry point, scalar and row stride ([`crate::grad`]), unless a kernel
//! was chosen with [`crate::Rotation::with_kernel`].
//! The SIMD kernels are the same generic code compiled for AVX2 + FMA or
//! AVX-512, so every fast path has its portable twin, and the tests compare
//! them on every layout and operator.
//!
//! ```
//! use qgoft_math::kernel::Kernel;
//! let best = Kernel::best();
//! assert!(best.is_available());
//! assert!(Kernel::Portable.is_available());
//! ```

use crate::apply::{Op, TILE_SCRATCH};
use crate::{Block, Layout, Real, Rotation, Stage};

/// The instruction set a batch kernel runs on.
///
/// ```
/// use qgoft_math::kernel::Kernel;
/// use qgoft_math::{Layout, Op, RotationBuf};
/// let r = RotationBuf::<f64>::identity(Layout::Tree, 4)?;
/// let rot = r.as_rotation().with_kernel(Kernel::Portable)?;
/// let mut x = [1.0, 2.0, 3.0, 4.0];
/// rot.apply_rows(Op::Forward, &mut x)?;
/// assert_eq!(x, [1.0, 2.0, 3.0, 4.0]);
/// # Ok::<(), qgoft_math::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// Safe Rust compiled for the build's baseline target; a rotation is
    /// two products and a sum, bitwise reproducible everywhere.
    Portable,
    /// The same kernels compiled for AVX2 with fused multiply-add
    /// (x86-64, feature `std`).
    Avx2,
    /// The same kernels compiled for AVX-512 (F, VL) with fused
    /// multiply-add (x86-64, feature `std`).
    Avx512,
}

impl Kernel {
    /// Every kernel, portable first.
    pub const ALL: [Kernel; 3] = [Kernel::Portable, Kernel::Avx2, Kernel::Avx512];

    /// Whether this processor (and this build) can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Portable => true,
            Kernel::Avx2 | Kernel::Avx512 => crate::simd::available(self),
        }
    }

    /// The fastest available kernel: AVX-512 where the processor runs
    /// 512-bit multiply-adds at full width, else AVX2, else the portable
    /// one. Processors that split each 512-bit operation in two (AMD's Zen
    /// 4, for one) gain nothing from the wider registers and lose their
    /// transposes' speed, so the first call times a register-resident loop
    /// of multiply-adds at both widths (about 0.1 ms, once per process) and
    /// takes AVX-512 when it does at least 1.5 times the work per unit of
    /// time. The AVX2 and AVX-512 kernels give bitwise the same results
    /// (the tests compare them on every layout, operator and entry point),
    /// so the choice changes only the speed.
    pub fn best() -> Kernel {
        if crate::simd::wide_pays() {
            Kernel::Avx512
        } else if Kernel::Avx2.is_available() {
            Kernel::Avx2
        } else {
            Kernel::Portable
        }
    }

    /// The fastest available kernel for column batches
    /// ([`Rotation::apply_cols`]) of `layout`: AVX-512 for the tree and the
    /// full layout wherever the processor has it, also where it splits each
    /// 512-bit operation in two; [`Kernel::best`] otherwise. On columns
    /// these kernels keep a tile's coordinates in registers, and
    /// AVX-512's 32 registers (against AVX2's 16) hold more of them. On an
    /// AMD EPYC that splits 512-bit operations (the same multiply-add peak
    /// at both widths), `apply_cols` in `f32` ran the tree at 1.12 - 1.55
    /// times the speed of AVX2 (`d` from 64 to 4096), the full layout at
    /// 1.01 - 1.25 times (`f32` and `f64`), but the chain at 0.92 - 1.07
    /// times, and rows at 0.90 - 0.93: those keep [`Kernel::best`].
    ///
    /// ```
    /// use qgoft_math::kernel::Kernel;
    /// use qgoft_math::Layout;
    /// assert!(Kernel::best_columns(Layout::Tree).is_available());
    /// assert_eq!(Kernel::best_columns(Layout::Chain), Kernel::best());
    /// ```
    pub fn best_columns(layout: Layout) -> Kernel {
        if layout != Layout::Chain && Kernel::Avx512.is_available() {
            Kernel::Avx512
        } else {
            Kernel::best()
        }
    }

    /// The fastest available kernel for the tree's VJPs over rows of `d`
    /// coordinates of `T` with `d` a multiple of 8 ([`crate::grad`]): from
    /// the input (`from_input`, [`crate::grad::vjp_rows_from_input`]) or
    /// from the output ([`crate::grad::Saved::Output`]). AVX-512 wherever
    /// the processor has it for the VJP from the input in `f32`, and from
    /// the output in `f64` or with rows a multiple of 2 KiB apart in `f32`;
    /// [`Kernel::best`] otherwise. Where the processor splits each 512-bit
    /// operation in two, these ran faster on AVX-512 (one thread, AVX2
    /// against AVX-512, ns per element): from the input in `f32` 0.54 against
    /// 0.50 at `(n, d) = (512, 768)` and 5 - 8 % less from `d = 128` to
    /// `4096`; from the output in `f32` 1.96 against 1.02 at `(512, 1024)`,
    /// 1.89 against 1.20 at `(128, 4096)`, 0.96 against 0.92 at `(1024,
    /// 512)`; in `f64` 1.1 - 1.5 times as fast from `d = 128` to `4096`.
    /// They ran slower there from the output in `f32` with other strides
    /// (0.88 against 1.06 at `(512, 768)`, 0.81 against 0.94 at `(2048,
    /// 128)`) and from the input in `f64` below `d = 4096` (1.27 against
    /// 1.35 at `(512, 768)`).
    pub(crate) fn best_tree_vjp<T>(d: usize, from_input: bool) -> Kernel {
        let size = core::mem::size_of::<T>();
        let wide = if from_input { size == 4 } else { size == 8 || (d * size).is_multiple_of(2048) };
        if wide && Kernel::Avx512.is_available() {
            Kernel::Avx512
        } else {
            Kernel::best()
        }
    }
}

/// How a rotation's two outputs are evaluated.
pub(crate) trait Arith {
    /// Whether one product is fused into a multiply-add.
    const FUSED: bool;
    /// Whether the blocks are exact (`[[a, b], [-b, a]]`, read from `a`
    /// and `b` alone).
    #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
    const EXACT: bool;
    /// The same evaluation for blocks `[[a, b], [-b, a]]` (bit for bit,
    /// [`Rotation`]'s exact blocks), from `a` and `b` alone: bitwise the
    /// same results, with two coefficients to broadcast instead of four.
    type Exact: Arith;
    fn rot<T: Real>(b: Block<T>, p: T, q: T) -> (T, T);
}

/// `a p + b q` as two products and a sum.
pub(crate) struct Plain;

/// `a p + b q` as a product and a fused multiply-add.
#[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
pub(crate) struct Fused;

/// [`Plain`] for exact blocks: `c p + e q` is `a q - b p` (negation is
/// exact and the sum commutes, so the result is bitwise the same).
pub(crate) struct PlainExact;

/// [`Fused`] for exact blocks: `fma(c, p, e q)` is `fma(-b, p, a q)`,
/// one rounding of the same exact value.
#[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
pub(crate) struct FusedExact;

impl Arith for Plain {
    const FUSED: bool = false;
    const EXACT: bool = false;
    type Exact = PlainExact;
    #[inline(always)]
    fn rot<T: Real>(b: Block<T>, p: T, q: T) -> (T, T) {
        (b.a * p + b.b * q, b.c * p + b.e * q)
    }
}

impl Arith for Fused {
    const FUSED: bool = true;
    const EXACT: bool = false;
    type Exact = FusedExact;
    #[inline(always)]
    fn rot<T: Real>(b: Block<T>, p: T, q: T) -> (T, T) {
        (b.a.mul_add(p, b.b * q), b.c.mul_add(p, b.e * q))
    }
}

impl Arith for PlainExact {
    const FUSED: bool = false;
    const EXACT: bool = true;
    type Exact = PlainExact;
    #[inline(always)]
    fn rot<T: Real>(b: Block<T>, p: T, q: T) -> (T, T) {
        (b.a * p + b.b * q, b.a * q - b.b * p)
    }
}

impl Arith for FusedExact {
    const FUSED: bool = true;
    const EXACT: bool = true;
    type Exact = FusedExact;
    #[inline(always)]
    fn rot<T: Real>(b: Block<T>, p: T, q: T) -> (T, T) {
        (b.a.mul_add(p, b.b * q), (-b.b).mul_add(p, b.a * q))
    }
}

#[inline(always)]
fn rot_arr<M: Arith, T: Real, const W: usize>(b: Block<T>, p: &mut [T; W], q: &mut [T; W]) {
    for l in 0..W {
        let (u, v) = M::rot(b, p[l], q[l]);
        p[l] = u;
        q[l] = v;
    }
}

#[inline(always)]
fn load<T: Real, const W: usize>(data: &[T], at: usize) -> [T; W] {
    let mut v = [T::zero(); W];
    v.copy_from_slice(&data[at..at + W]);
    v
}

#[inline(always)]
fn store<T: Real, const W: usize>(data: &mut [T], at: usize, v: &[T; W]) {
    data[at..at + W].copy_from_slice(v);
}

/// `(x[k], y[k]) <- b (x[k], y[k])` for every lane `k`.
#[inline(always)]
pub(crate) fn lanes<M: Arith, T: Real>(b: Block<T>, x: &mut [T], y: &mut [T]) {
    for (u, v) in x.iter_mut().zip(y.iter_mut()) {
        let (p, q) = M::rot(b, *u, *v);
        *u = p;
        *v = q;
    }
}

/// Applies `op` to the lanes `base .. base + tw` (see the module
/// documentation): the tree `WT` lanes at a time, the chain `WC` lanes at a
/// time (wider: its carried coordinate is a chain of dependent rotations,
/// and independent lanes hide the latency), the full layout `2 WT` lanes
/// at a time, several columns at once (see [`full`]).
#[inline(always)]
pub(crate) fn run<M: Arith, X: Transposer, T: Real, const WT: usize, const WC: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) -> bool {
    // One copy per operator, so that the choice of block (transposed,
    // inverted) is resolved at compile time in the inner loops. The inverse
    // of a strict block is its transpose (`Rotation::effective`), and the
    // inverses walk the stages in the transposes' order, so strict
    // rotations run the inverses' rotations as the transposes' (only the
    // scaling differs); otherwise the strictness would be tested at every
    // block.
    let blocks_op = match (op, rot.is_strict()) {
        (Op::Inverse, true) => Op::Transpose,
        (Op::InverseTranspose, true) => Op::Forward,
        (op, _) => op,
    };
    match blocks_op {
        Op::Forward => run_op::<M, X, T, WT, WC>(rot, op, Op::Forward, data, ld, base, tw),
        Op::Transpose => run_op::<M, X, T, WT, WC>(rot, op, Op::Transpose, data, ld, base, tw),
        Op::Inverse => run_op::<M, X, T, WT, WC>(rot, op, Op::Inverse, data, ld, base, tw),
        Op::InverseTranspose => run_op::<M, X, T, WT, WC>(rot, op, Op::InverseTranspose, data, ld, base, tw),
    }
}

/// [`run`] for `op`, whose rotations are those of `blocks_op` (`op`
/// itself, or the equivalent operator of a strict rotation).
#[inline(always)]
fn run_op<M: Arith, X: Transposer, T: Real, const WT: usize, const WC: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    blocks_op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) -> bool {
    let ascending = op.ascending();
    debug_assert_eq!(ascending, blocks_op.ascending());
    if ascending {
        rot.scale_lanes(op, data, ld, base, tw);
    }
    let scaling = op;
    let op = blocks_op;
    // Whether the kernel found every value it wrote finite: see below.
    let mut proved = false;
    let whole = match rot.layout() {
        // The tree on the processor's registers where the transposer has
        // them (see [`tree_regs`]), exact blocks from two coefficients. No
        // closure for the other case: one compiled apart from the SIMD
        // wrappers ran the arrays' kernel without their features.
        Layout::Tree => {
            let on_regs = if rot.is_exact() {
                X::tree::<M::Exact, T>(rot, op, data, ld, base, tw)
            } else {
                X::tree::<M, T>(rot, op, data, ld, base, tw)
            };
            match on_regs {
                Some((done, finite)) => {
                    proved = finite;
                    done
                }
                None => {
                    let whole = tw / WT * WT;
                    tree::<M, T, WT>(rot, op, data, ld, base, whole);
                    whole
                }
            }
        }
        // Whole chunks of `WC` lanes, then of `WT`; the rest plane by plane.
        // A carried chunk walks every coordinate: only where the tile's rows
        // lie close together (a packed tile); on a wide batch the planes go
        // one by one across all lanes, a streaming pass each.
        Layout::Chain | Layout::Full if ld * core::mem::size_of::<T>() > CARRY_MAX_ROW_BYTES => 0,
        Layout::Chain => {
            let whole = tw / WC * WC;
            chain::<M, T, WC>(rot, op, data, ld, base, whole);
            let more = (tw - whole) / WT * WT;
            chain::<M, T, WT>(rot, op, data, ld, base + whole, more);
            whole + more
        }
        // See `full_lanes`; exact blocks read two coefficients per rotation
        // instead of four.
        Layout::Full if rot.is_exact() => full_lanes::<M::Exact, X, T, WT, WC>(rot, op, data, ld, base, tw),
        Layout::Full => full_lanes::<M, X, T, WT, WC>(rot, op, data, ld, base, tw),
        _ => 0,
    };
    if whole < tw {
        stages::<M, T>(rot, op, data, ld, base + whole, tw - whole);
    }
    if !ascending {
        rot.scale_lanes(scaling, data, ld, base, tw);
    }
    // The register tree's check covers the outputs where it wrote every
    // lane and nothing came after it (see [`tree_regs`]).
    proved && whole == tw && (ascending || rot.scale().is_none())
}

/// The full layout on the whole chunks of `tw` lanes: chunks of two
/// registers, then of one; each column group as a wavefront of
/// [`FULL_WAVE`] columns where the carried width `WC` is four registers or
/// more (`run`'s SIMD wrappers, on the transposer's explicit registers
/// where it has them, see [`Transposer::full`]), one column at a time where
/// it is two (the portable kernel, compiled for the baseline's 16 vector
/// registers, which the wavefront's carries would not fit, and the row
/// kernels' transposed tiles). Returns the lanes done.
#[inline(always)]
fn full_lanes<M: Arith, X: Transposer, T: Real, const WT: usize, const WC: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) -> usize {
    match block_map(rot, op) {
        AS_STORED => full_mapped::<M, X, T, WT, WC, AS_STORED>(Applied { rot, op }, data, ld, base, tw),
        TRANSPOSED => full_mapped::<M, X, T, WT, WC, TRANSPOSED>(Applied { rot, op }, data, ld, base, tw),
        _ => full_mapped::<M, X, T, WT, WC, ANY_MAP>(Applied { rot, op }, data, ld, base, tw),
    }
}

/// [`full_lanes`] with the block map `MAP` ([`block_map`]) fixed.
#[inline(always)]
fn full_mapped<M: Arith, X: Transposer, T: Real, const WT: usize, const WC: usize, const MAP: u8>(
    src: Applied<'_, '_, T, MAP>,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) -> usize {
    if WC >= 4 * WT {
        if let Some(done) = X::full::<M, T, MAP>(src, data, ld, base, tw) {
            return done;
        }
        full_regs::<M, T, [T; WT], _, FULL_WAVE>(src, data, ld, base, tw)
    } else {
        full_regs::<M, T, [T; WT], _, 1>(src, data, ld, base, tw)
    }
}

/// The full layout on the whole chunks of `tw` lanes in registers `V`,
/// `K` columns at a time: chunks of two registers, then of one. Returns
/// the lanes done.
#[inline(always)]
pub(crate) fn full_regs<M: Arith, T: Real, V: Reg<T>, S: FullBlocks<T>, const K: usize>(
    src: S,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) -> usize {
    let whole = tw / (2 * V::W) * (2 * V::W);
    let more = (tw - whole) / V::W * V::W;
    full::<M, T, V, S, 2, K>(src, data, ld, base, whole);
    full::<M, T, V, S, 1, K>(src, data, ld, base + whole, more);
    whole + more
}

/// The blocks that the full layout's kernels ([`full_regs`]) apply, stored
/// in the layout's parameter order: a rotation's, as an operator applies
/// them ([`Applied`]), or a table of exact blocks ([`ExactTable`]).
pub(crate) trait FullBlocks<T: Real>: Copy {
    /// A stored block.
    type Item: Copy;
    /// The dimension.
    fn dim(&self) -> usize;
    /// Whether the columns go first to last (the product's first factor
    /// first).
    fn ascending(&self) -> bool;
    /// The stored blocks, in parameter order.
    fn items(&self) -> &[Self::Item];
    /// The block applied for a stored one.
    fn block(&self, it: Self::Item) -> Block<T>;
    /// A bound `live <= dim` with every input coordinate from `live` on
    /// zero in every lane: in ascending order, the planes that would act on
    /// zeros only are skipped (they would leave zeros, up to their signs).
    fn live(&self) -> usize {
        self.dim()
    }
}

/// [`Applied`]'s map from a stored block to the applied one: the block
/// itself ([`Op::Forward`], and [`Op::InverseTranspose`] of a strict
/// rotation).
pub(crate) const AS_STORED: u8 = 0;
/// The block's transpose ([`Op::Transpose`], and [`Op::Inverse`] of a
/// strict rotation).
pub(crate) const TRANSPOSED: u8 = 1;
/// [`Rotation::effective`] chosen block by block (the inverses of quasi
/// blocks).
pub(crate) const ANY_MAP: u8 = 2;

/// The map `op` applies to `rot`'s stored blocks: [`AS_STORED`],
/// [`TRANSPOSED`] or [`ANY_MAP`].
#[inline(always)]
pub(crate) fn block_map<T: Real>(rot: &Rotation<'_, T>, op: Op) -> u8 {
    match (op, rot.is_strict()) {
        (Op::Forward, _) | (Op::InverseTranspose, true) => AS_STORED,
        (Op::Transpose, _) | (Op::Inverse, true) => TRANSPOSED,
        _ => ANY_MAP,
    }
}

/// A rotation's blocks as `op` applies them ([`Rotation::effective`]).
/// `MAP` ([`block_map`]) fixes the map from a stored block to the applied
/// one when the kernel is compiled, so that the wavefront's inner loop
/// neither branches on the operator nor builds the block in registers
/// (with the operator matched block by block, f64 on AVX2 at d = 1024 went
/// through a jump table per rotation and broadcast the coefficients by
/// shuffles); [`ANY_MAP`] matches `op` block by block.
#[derive(Clone, Copy)]
pub(crate) struct Applied<'r, 'a, T, const MAP: u8 = ANY_MAP> {
    /// The rotation.
    pub(crate) rot: &'r Rotation<'a, T>,
    /// The operator.
    pub(crate) op: Op,
}

impl<T: Real, const MAP: u8> FullBlocks<T> for Applied<'_, '_, T, MAP> {
    type Item = Block<T>;
    #[inline(always)]
    fn dim(&self) -> usize {
        self.rot.dim()
    }
    #[inline(always)]
    fn ascending(&self) -> bool {
        self.op.ascending()
    }
    #[inline(always)]
    fn items(&self) -> &[Block<T>] {
        self.rot.blocks()
    }
    #[inline(always)]
    fn block(&self, b: Block<T>) -> Block<T> {
        match MAP {
            AS_STORED => b,
            TRANSPOSED => b.transpose(),
            _ => self.rot.effective(self.op, b),
        }
    }
}

/// The full layout's exact blocks as a table of `(cos, sin)` pairs, two
/// scalars per rotation ([`crate::decompose`]'s rebuild): the rotations
/// `[[cos, -sin], [sin, cos]]`, first to last.
#[derive(Clone, Copy)]
pub(crate) struct ExactTable<'a, T> {
    /// The dimension.
    pub(crate) d: usize,
    /// `(cos, sin)` of every rotation, in [`Layout::Full`]'s order.
    pub(crate) cs: &'a [[T; 2]],
    /// See [`FullBlocks::live`].
    pub(crate) live: usize,
}

impl<T: Real> FullBlocks<T> for ExactTable<'_, T> {
    type Item = [T; 2];
    #[inline(always)]
    fn dim(&self) -> usize {
        self.d
    }
    #[inline(always)]
    fn ascending(&self) -> bool {
        true
    }
    #[inline(always)]
    fn items(&self) -> &[[T; 2]] {
        self.cs
    }
    #[inline(always)]
    fn block(&self, [c, s]: [T; 2]) -> Block<T> {
        Block { a: c, b: -s, c: s, e: c }
    }
    #[inline(always)]
    fn live(&self) -> usize {
        self.live.min(self.d)
    }
}

/// Columns of the full layout per wavefront in the SIMD kernels: on AVX2
/// (f64, d = 1024, one thread) 5 ran faster than 4 and 6, and 25.2 against
/// 22.2 GFLOP/s for one column at a time; on the processor's registers
/// every other width tried (4 to 10) left `f64` carries in memory on
/// AVX-512 (see `benches/LIMITS.md`).
pub(crate) const FULL_WAVE: usize = 5;

/// A vector register of `W` lanes for the full layout's wavefront: arrays
/// (the compiler's own vectorisation) or, in [`crate::simd`], the
/// processor's registers, with the same arithmetic as [`Arith::rot`] lane
/// by lane (bitwise the same results).
pub(crate) trait Reg<T: Real>: Copy {
    /// Lanes per register.
    const W: usize;
    /// A block's coefficients as the register's rotation takes them.
    type Coef: Copy;
    /// All lanes zero.
    fn zero() -> Self;
    /// The coefficients of `b`, broadcast.
    fn coef<M: Arith>(b: Block<T>) -> Self::Coef;
    /// `W` lanes of `data` from `at`.
    fn load(data: &[T], at: usize) -> Self;
    /// Stores what [`Reg::load`] loads.
    fn store(&self, data: &mut [T], at: usize);
    /// `(p, q) <- b (p, q)` lane by lane, as [`Arith::rot`].
    fn rot<M: Arith>(c: &Self::Coef, p: &mut Self, q: &mut Self);
    /// `self - self` lane by lane: +0 where the lane is finite, NaN where
    /// it is NaN or infinite.
    #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
    fn probe(&self) -> Self;
    /// The lane-by-lane sum.
    #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
    fn sum(&self, o: &Self) -> Self;
    /// Whether every lane is zero.
    #[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
    fn all_zero(&self) -> bool;
}

impl<T: Real, const W: usize> Reg<T> for [T; W] {
    const W: usize = W;
    type Coef = Block<T>;
    #[inline(always)]
    fn zero() -> Self {
        [T::zero(); W]
    }
    #[inline(always)]
    fn coef<M: Arith>(b: Block<T>) -> Block<T> {
        b
    }
    #[inline(always)]
    fn load(data: &[T], at: usize) -> Self {
        load(data, at)
    }
    #[inline(always)]
    fn store(&self, data: &mut [T], at: usize) {
        store(data, at, self);
    }
    #[inline(always)]
    fn rot<M: Arith>(c: &Block<T>, p: &mut Self, q: &mut Self) {
        rot_arr::<M, T, W>(*c, p, q);
    }
    #[inline(always)]
    #[allow(clippy::eq_op)] // `v - v` is the test: NaN for NaN and the infinities.
    fn probe(&self) -> Self {
        let mut out = *self;
        for v in out.iter_mut() {
            *v = *v - *v;
        }
        out
    }
    #[inline(always)]
    fn sum(&self, o: &Self) -> Self {
        let mut out = *self;
        for (v, w) in out.iter_mut().zip(o) {
            *v = *v + *w;
        }
        out
    }
    #[inline(always)]
    fn all_zero(&self) -> bool {
        let mut zero = true;
        for v in self {
            zero &= *v == T::zero();
        }
        zero
    }
}

/// Longest distance between a tile's coordinates (bytes) for the carried
/// chain kernels.
const CARRY_MAX_ROW_BYTES: usize = 1024;

/// The stages plane by plane over all `tw` lanes (no scaling).
#[inline(always)]
fn stages<M: Arith, T: Real>(rot: &Rotation<'_, T>, op: Op, data: &mut [T], ld: usize, base: usize, tw: usize) {
    if tw == 0 {
        return;
    }
    if op.ascending() {
        for st in rot.layout().stages(rot.dim()) {
            stage_lanes::<M, T>(rot, op, st, data, ld, base, tw);
        }
    } else {
        for st in rot.layout().stages(rot.dim()).rev() {
            stage_lanes::<M, T>(rot, op, st, data, ld, base, tw);
        }
    }
}

/// One stage plane by plane over all `tw` lanes. No closures: everything
/// here is inlined into the SIMD wrappers (a closure passed to an iterator
/// adapter may be compiled apart, without the wrapper's features).
#[inline(always)]
fn stage_lanes<M: Arith, T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    stage: Stage,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) {
    let blocks = rot.blocks();
    for t in 0..stage.len {
        let i = stage.first + t * stage.stride;
        let j = i + stage.gap;
        let b = rot.effective(op, blocks[stage.offset + t]);
        // Split where coordinate j's lanes start: the base can exceed `ld`
        // (one vector of a strided batch), `tw <= ld` keeps i's run before.
        let (lo, hi) = data.split_at_mut(j * ld + base);
        lanes::<M, T>(b, &mut lo[i * ld + base..i * ld + base + tw], &mut hi[..tw]);
    }
}

/// Stages fused per group in the tree (log2 of the register block).
const TREE_GROUP: usize = 3;

/// Column batches of the tree larger than this many bytes (a second-level
/// cache) fetch each row ahead of the register passes (see [`tree_pass`]).
const STREAM_BYTES: usize = 1 << 20;

/// How far ahead of its loads each row of a register block is fetched.
const STREAM_AHEAD: usize = 1024;

/// The tree, `TREE_GROUP` stages per pass over the tile.
#[inline(always)]
fn tree<M: Arith, T: Real, const W: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) {
    let d = rot.dim();
    let ns = Layout::Tree.num_stages(d);
    let groups = ns.div_ceil(TREE_GROUP);
    for g in 0..groups {
        let g = if op.ascending() { g } else { groups - 1 - g };
        let s0 = g * TREE_GROUP;
        match (ns - s0).min(TREE_GROUP) {
            1 => tree_group::<M, T, W, 2>(rot, op, data, ld, base, tw, s0),
            2 => tree_group::<M, T, W, 4>(rot, op, data, ld, base, tw, s0),
            _ => tree_group::<M, T, W, 8>(rot, op, data, ld, base, tw, s0),
        }
    }
}

/// Stages `s0 .. s0 + log2 N` of the tree: blocks of `N` active coordinates
/// (multiples of `2^s0`) in registers.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn tree_group<M: Arith, T: Real, const W: usize, const N: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
    s0: usize,
) {
    let grp = Group::of(rot, op, s0, N);
    let h = grp.h;
    for blk in 0..grp.m / N {
        let b0 = blk * N;
        let cb = grp.coefs::<T, N>(rot, op, b0);
        let mut l0 = 0;
        while l0 < tw {
            let mut v = [[T::zero(); W]; N];
            for (a, va) in v.iter_mut().enumerate() {
                *va = load(data, (b0 + a) * h * ld + base + l0);
            }
            if grp.asc {
                tree_block::<M, T, W, N, true>(&mut v, &cb);
            } else {
                tree_block::<M, T, W, N, false>(&mut v, &cb);
            }
            for (a, va) in v.iter().enumerate() {
                store(data, (b0 + a) * h * ld + base + l0, va);
            }
            l0 += W;
        }
    }
    if tw > 0 {
        grp.partial::<M, T, false>(rot, op, data, ld, base, tw, grp.m / N * N);
    }
}

/// Stages `s0 .. s0 + k` of the tree as one pass: blocks of `2^k` active
/// coordinates (the multiples of `h = 2^s0`, `m` of them).
#[derive(Clone, Copy)]
struct Group {
    k: usize,
    h: usize,
    m: usize,
    asc: bool,
    /// Where each of the `k` stages' parameters start.
    offs: [usize; 4],
}

impl Group {
    /// The group of stages `s0 .. s0 + log2 n` for `op`.
    #[inline(always)]
    fn of<T: Real>(rot: &Rotation<'_, T>, op: Op, s0: usize, n: usize) -> Self {
        let d = rot.dim();
        let k = n.trailing_zeros() as usize;
        let h = 1usize << s0;
        let mut offs = [0usize; 4];
        for (kk, o) in offs.iter_mut().enumerate().take(k) {
            *o = Layout::Tree.stage(d, s0 + kk).offset;
        }
        Self { k, h, m: d.div_ceil(h), asc: op.ascending(), offs }
    }

    /// The rotations of the register block of `N` active coordinates from
    /// `b0`, in the order they are applied.
    #[inline(always)]
    fn coefs<T: Real, const N: usize>(&self, rot: &Rotation<'_, T>, op: Op, b0: usize) -> [Block<T>; N] {
        let blocks = rot.blocks();
        let mut cb = [Block::identity(); N];
        let mut r = 0;
        for step in 0..self.k {
            let kk = if self.asc { step } else { self.k - 1 - step };
            for t in 0..N >> (kk + 1) {
                cb[r] = rot.effective(op, blocks[self.offs[kk] + ((b0 + (t << (kk + 1))) >> (kk + 1))]);
                r += 1;
            }
        }
        cb
    }

    /// The last, partial block from active coordinate `b0`: plane by plane
    /// where the partner exists, on `tw` lanes. With `CHECK`, returns
    /// whether every value written was finite (otherwise `true`).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn partial<M: Arith, T: Real, const CHECK: bool>(
        &self,
        rot: &Rotation<'_, T>,
        op: Op,
        data: &mut [T],
        ld: usize,
        base: usize,
        tw: usize,
        b0: usize,
    ) -> bool {
        let blocks = rot.blocks();
        let mut finite = true;
        if b0 >= self.m {
            return finite;
        }
        for step in 0..self.k {
            let kk = if self.asc { step } else { self.k - 1 - step };
            let g = 1usize << kk;
            let mut i = b0;
            while i + g < self.m {
                let b = rot.effective(op, blocks[self.offs[kk] + (i >> (kk + 1))]);
                let (p, q) = (i * self.h, (i + g) * self.h);
                let (lo, hi) = data.split_at_mut(q * ld + base);
                let (x, y) = (&mut lo[p * ld + base..p * ld + base + tw], &mut hi[..tw]);
                lanes::<M, T>(b, x, y);
                if CHECK {
                    finite &= all_finite(x) && all_finite(y);
                }
                i += 2 * g;
            }
        }
        finite
    }
}

/// The coordinates `(i, j)` of rotation `r` of a register block of `n`
/// (`n` a power of two, at most 8), its `log2 n` stages in order (`asc`) or
/// reversed: stage `kk` pairs `i` (a multiple of `2^(kk + 1)`) with
/// `i + 2^kk`.
pub(crate) const fn block_pair(n: usize, asc: bool, r: usize) -> (usize, usize) {
    let k = n.trailing_zeros() as usize;
    let mut left = r;
    let mut step = 0;
    while step < k {
        let kk = if asc { step } else { k - 1 - step };
        let count = n >> (kk + 1);
        if left < count {
            let i = left << (kk + 1);
            return (i, i + (1 << kk));
        }
        left -= count;
        step += 1;
    }
    (0, 0)
}

/// Runs `$body` once for each rotation `$r` of a register block of `$n`
/// (at most 8), with `$i`, `$j` its coordinates as constants: the block is
/// unrolled whatever the optimiser decides about loops, so a block held in
/// an array stays in registers.
macro_rules! each_block_rotation {
    ($n:expr, $asc:expr, |$r:ident, $i:ident, $j:ident| $body:block) => {
        $crate::kernel::each_block_rotation!(@ $n, $asc, $r, $i, $j, $body, 0 1 2 3 4 5 6)
    };
    (@ $n:expr, $asc:expr, $r:ident, $i:ident, $j:ident, $body:block, $($k:literal)*) => {
        $(
            if $k + 1 < $n {
                let $r: usize = $k;
                let ($i, $j) = const { $crate::kernel::block_pair($n, $asc, $k) };
                $body
            }
        )*
    };
}
pub(crate) use each_block_rotation;

/// The `log2 N` stages of one register block, in order (`ASC`) or reversed;
/// every index is a constant, so `v` stays in registers. `cb` holds the
/// blocks in the order they are applied.
#[inline(always)]
fn tree_block<M: Arith, T: Real, const W: usize, const N: usize, const ASC: bool>(
    v: &mut [[T; W]; N],
    cb: &[Block<T>; N],
) {
    const { assert!(N.is_power_of_two() && N <= 8) };
    each_block_rotation!(N, ASC, |r, i, j| {
        let (mut p, mut q) = (v[i], v[j]);
        rot_arr::<M, T, W>(cb[r], &mut p, &mut q);
        v[i] = p;
        v[j] = q;
    });
}

/// The tree on the lanes' whole registers `V`, [`TREE_GROUP`] stages per
/// pass (blocks of 8 coordinates held in registers), as [`tree`] does on
/// arrays, bitwise the same results.
/// Each block's rows of lanes are taken as slices of one length, so the
/// loads and stores of the lane loop carry no bounds checks; on arrays the
/// checks and the rows' addresses, kept on the stack, took more
/// instructions than the rotations.
///
/// Returns the lanes done (none where a row of the tile is shorter than
/// the tile) and `true` where every value written is finite. Every
/// coordinate is written (`d >= 2`: stage `k` takes each coordinate whose
/// lowest set bit is `2^k`, and coordinate 0 in the first), and a rotation
/// of a NaN or an infinity gives a NaN or an infinity in the same
/// coordinate (`0 * inf` is NaN), so that check says whether every output
/// lane is finite without a pass of its own. It sums the registers of a
/// block as they are stored and takes the sum's `s - s` (+0 where the sum
/// is finite): a NaN or an infinity among them makes the sum NaN or
/// infinite, so `true` proves every output finite. `false` says only that
/// a sum was not finite, which finite values near the largest one can also
/// give: the caller then checks the outputs themselves. Its sums leave the
/// rotations' pipes alone on processors with separate pipes for sums and
/// products.
#[inline(always)]
#[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
pub(crate) fn tree_regs<M: Arith, T: Real, V: Reg<T>>(
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) -> (usize, bool) {
    let whole = tw / V::W * V::W;
    if whole == 0 || ld < whole || rot.dim() < 2 {
        // Nothing written.
        return (0, true);
    }
    let ns = Layout::Tree.num_stages(rot.dim());
    let groups = ns.div_ceil(TREE_GROUP);
    let mut finite = true;
    for g in 0..groups {
        let g = if op.ascending() { g } else { groups - 1 - g };
        let s0 = g * TREE_GROUP;
        let k = (ns - s0).min(TREE_GROUP);
        finite &= if k >= 3 {
            tree_pass::<M, T, V, 8>(rot, op, data, ld, base, whole, s0)
        } else if k == 2 {
            tree_pass::<M, T, V, 4>(rot, op, data, ld, base, whole, s0)
        } else {
            tree_pass::<M, T, V, 2>(rot, op, data, ld, base, whole, s0)
        };
    }
    (whole, finite)
}

/// Stages `s0 .. s0 + log2 N` of the tree on `tw` lanes (a multiple of
/// `V::W`, at most `ld`) in registers `V`: [`tree_group`] on registers.
/// Returns `true` where every value written is finite (see [`tree_regs`]).
#[inline(always)]
#[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
fn tree_pass<M: Arith, T: Real, V: Reg<T>, const N: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
    s0: usize,
) -> bool {
    let grp = Group::of(rot, op, s0, N);
    let step = grp.h * ld;
    // Batches larger than a second-level cache come from memory on every
    // pass: each row of a block is then fetched ahead of its loads.
    let streams = rot.dim() * tw * core::mem::size_of::<T>() > STREAM_BYTES;
    let mut acc = V::zero();
    for blk in 0..grp.m / N {
        let b0 = blk * N;
        let cb = grp.coefs::<T, N>(rot, op, b0);
        // The block's N rows of lanes, each `tw` long.
        let mut rows: [&mut [T]; N] = core::array::from_fn(|_| <&mut [T]>::default());
        let mut rest = &mut data[b0 * step + base..];
        for (a, row) in rows.iter_mut().enumerate() {
            let (head, tail) = core::mem::take(&mut rest).split_at_mut(if a + 1 < N { step } else { tw });
            *row = &mut head[..tw];
            rest = tail;
        }
        acc = match (grp.asc, streams) {
            (true, false) => tree_lanes::<M, T, V, N, true, false>(&mut rows, &cb, tw, acc),
            (false, false) => tree_lanes::<M, T, V, N, false, false>(&mut rows, &cb, tw, acc),
            (true, true) => tree_lanes::<M, T, V, N, true, true>(&mut rows, &cb, tw, acc),
            (false, true) => tree_lanes::<M, T, V, N, false, true>(&mut rows, &cb, tw, acc),
        };
    }
    let partial = grp.partial::<M, T, true>(rot, op, data, ld, base, tw, grp.m / N * N);
    acc.all_zero() && partial
}

/// One register block's rotations `cb` (in the order they are applied) on
/// every register of lanes of its `N` rows (all `tw` long, a multiple of
/// `V::W`). Returns `acc` plus, for every register of lanes, [`Reg::probe`]
/// of the sum of the `N` values written (see [`tree_regs`]).
#[inline(always)]
#[cfg_attr(not(all(feature = "std", target_arch = "x86_64")), allow(dead_code))]
fn tree_lanes<M: Arith, T: Real, V: Reg<T>, const N: usize, const ASC: bool, const FETCH: bool>(
    rows: &mut [&mut [T]; N],
    cb: &[Block<T>; N],
    tw: usize,
    mut acc: V,
) -> V {
    const { assert!(N.is_power_of_two() && N <= 8) };
    let mut l0 = 0;
    while l0 + V::W <= tw {
        if FETCH {
            // One line of each row per register of lanes (64 bytes with
            // AVX-512), STREAM_AHEAD bytes ahead: a hint, harmless past
            // the end of a row.
            for row in rows.iter() {
                crate::simd::prefetch_l2(row.as_ptr().wrapping_add(l0).cast::<u8>().wrapping_add(STREAM_AHEAD));
            }
        }
        let mut v = [V::zero(); N];
        for (x, row) in v.iter_mut().zip(rows.iter()) {
            *x = V::load(row, l0);
        }
        each_block_rotation!(N, ASC, |r, i, j| {
            let c = V::coef::<M>(cb[r]);
            let (mut p, mut q) = (v[i], v[j]);
            V::rot::<M>(&c, &mut p, &mut q);
            v[i] = p;
            v[j] = q;
        });
        for (x, row) in v.iter().zip(rows.iter_mut()) {
            x.store(row, l0);
        }
        // The registers written summed in pairs, and that sum's probe
        // added to `acc`: `N + 1` operations per register of lanes where a
        // probe of each register took `2 N`.
        let mut p = v;
        let mut w = N;
        while w > 1 {
            w /= 2;
            for i in 0..w {
                p[i] = p[i].sum(&p[i + w]);
            }
        }
        acc = acc.sum(&p[0].probe());
        l0 += V::W;
    }
    acc
}

/// The chain: planes `(k, k + 1)`, the shared coordinate carried.
#[inline(always)]
fn chain<M: Arith, T: Real, const W: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) {
    let d = rot.dim();
    if d < 2 {
        return;
    }
    let blocks = rot.blocks();
    let mut l0 = 0;
    while l0 < tw {
        let at = |i: usize| i * ld + base + l0;
        if op.ascending() {
            let mut c: [T; W] = load(data, at(0));
            for (k, &blk) in blocks.iter().enumerate() {
                let mut q = load(data, at(k + 1));
                rot_arr::<M, T, W>(rot.effective(op, blk), &mut c, &mut q);
                store(data, at(k), &c);
                c = q;
            }
            store(data, at(d - 1), &c);
        } else {
            let mut c: [T; W] = load(data, at(d - 1));
            for (k, &blk) in blocks.iter().enumerate().rev() {
                let mut p = load(data, at(k));
                rot_arr::<M, T, W>(rot.effective(op, blk), &mut p, &mut c);
                store(data, at(k + 1), &c);
                c = p;
            }
            store(data, at(0), &c);
        }
        l0 += W;
    }
}

/// The full layout: column `c` is the descending chain `(r - 1, r)`,
/// `r = d - 1 .. c + 1`, its parameters consecutive. Chunks of `R`
/// registers `V`; `K` columns at a time go as a wavefront (see
/// [`full_up`] and [`full_down`]), the columns left over one at a time.
#[inline(always)]
fn full<M: Arith, T: Real, V: Reg<T>, S: FullBlocks<T>, const R: usize, const K: usize>(
    src: S,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) {
    let d = src.dim();
    let live = src.live();
    if d < 2 || live == 0 {
        return;
    }
    let mut l0 = 0;
    while l0 < tw {
        let lanes = Lanes { ld, base: base + l0 };
        if src.ascending() {
            // Before column `c`, the coordinates from `live + c` on are
            // still zero (each column moves the last nonzero one down by
            // at most one): the columns `c0 .. c0 + K` act on the first
            // `live + c0 + K` coordinates only.
            let mut c0 = 0;
            while c0 + K < d {
                full_up::<M, T, V, S, R, K>(src, data, lanes, c0, d.min(live + c0 + K));
                c0 += K;
            }
            while c0 + 1 < d {
                full_up::<M, T, V, S, R, 1>(src, data, lanes, c0, d.min(live + c0 + 1));
                c0 += 1;
            }
        } else {
            // Columns `d - 2` down to 0: whole groups first, from the top.
            let mut left = d - 1;
            while left >= K {
                full_down::<M, T, V, S, R, K>(src, data, lanes, left - 1);
                left -= K;
            }
            while left >= 1 {
                full_down::<M, T, V, S, R, 1>(src, data, lanes, left - 1);
                left -= 1;
            }
        }
        l0 += R * V::W;
    }
}

/// Where coordinate `i` of a chunk of lanes lies: `i * ld + base`.
#[derive(Clone, Copy)]
struct Lanes {
    ld: usize,
    base: usize,
}

impl Lanes {
    #[inline(always)]
    fn at(self, i: usize) -> usize {
        i * self.ld + self.base
    }
}

/// Columns `c0 .. c0 + K` (all below `d - 1`) of the full layout, on its
/// first `d` coordinates (see [`FullBlocks::live`]), in ascending order, as
/// a wavefront: each coordinate is loaded once, passes
/// through the `K` columns in registers (column `j` one plane behind column
/// `j - 1`) and is stored once, where one column at a time loads and stores
/// it once per column. Every rotation sees the values it sees column by
/// column, so the result is bitwise the same.
///
/// Column `c` carries coordinate `d - 1` up to `c`: at plane `(r - 1, r)`
/// it takes `x[r - 1]`, leaves `x[r]` final and carries the rest. Column
/// `c + 1` takes the values column `c` leaves, one plane later; all `K`
/// columns end with the same input `x[c0]`, and their carries are their
/// final coordinates `c0 .. c0 + K`.
#[inline(always)]
fn full_up<M: Arith, T: Real, V: Reg<T>, S: FullBlocks<T>, const R: usize, const K: usize>(
    src: S,
    data: &mut [T],
    lanes: Lanes,
    c0: usize,
    d: usize,
) {
    // Only the first `d` coordinates (of `src.dim()`): each column's
    // planes below them, its first, are skipped.
    let skip = src.dim() - d;
    let blocks = src.items();
    // The inputs x[d - 1], x[d - 2], .., x[c0]; column j has one plane
    // fewer than column j - 1.
    let inputs = d - c0;
    let cols: [&[S::Item]; K] = core::array::from_fn(|j| {
        let o = crate::layout::full_column_start(src.dim(), c0 + j) + skip;
        &blocks[o..o + (d - 1 - c0 - j)]
    });
    let mut carry = [[V::zero(); R]; K];
    // Fill: input i reaches columns 0 .. i; column i takes it as its carry.
    // The carries are reached by an iterator, never by an index that is
    // not a constant: where the compiler leaves this loop rolled, such an
    // index keeps the whole array in memory, the steady loop's carries with
    // it (7.9 against 60 GFLOP/s, f64 on AVX-512 registers).
    for i in 0..K {
        let mut v = load_regs::<T, V, R>(data, lanes.at(d - 1 - i));
        for (j, c) in carry.iter_mut().enumerate() {
            if j < i {
                rot_regs::<M, T, V, R>(src.block(cols[j][i - j - 1]), &mut v, c);
                core::mem::swap(&mut v, c);
            } else if j == i {
                *c = v;
            }
        }
    }
    // Every column takes a plane; the last one's final coordinate leaves.
    // Column j's planes for inputs K.., as slices of one length (built in
    // a plain loop, so that the compiler knows their lengths and drops the
    // bounds checks of the loop below).
    let steps = inputs - K;
    let mut steady: [&[S::Item]; K] = [&[]; K];
    for (j, sl) in steady.iter_mut().enumerate() {
        *sl = &cols[j][K - j - 1..][..steps];
    }
    for t in 0..steps {
        let mut v = load_regs::<T, V, R>(data, lanes.at(d - 1 - K - t));
        // The new value and the carry rotated in place, then exchanged
        // (as in `full_down`): with the value copied out and back instead,
        // the 512-bit build kept the carries in memory, 5 - 7 times as slow.
        for (sl, c) in steady.iter().zip(carry.iter_mut()) {
            rot_regs::<M, T, V, R>(src.block(sl[t]), &mut v, c);
            core::mem::swap(&mut v, c);
        }
        store_regs::<T, V, R>(data, lanes.at(d - 1 - t), &v);
    }
    for (j, c) in carry.iter().enumerate() {
        store_regs::<T, V, R>(data, lanes.at(c0 + j), c);
    }
}

/// Columns `c0, c0 - 1, .., c0 + 1 - K` (with `K <= c0 + 1 < d`) of the
/// full layout in descending order (the inverse of [`full_up`]'s order), as
/// a wavefront, bitwise the same as column by column.
///
/// Column `c` carries coordinate `c` down to `d - 1`: at plane `(r - 1, r)`
/// it takes `x[r]`, leaves `x[r - 1]` final and carries the rest. Column
/// `c - 1` starts from `x[c - 1]` and takes, at its plane `s`, what column
/// `c` left at its plane `s`; it has one plane more, which takes column
/// `c`'s final carry.
#[inline(always)]
fn full_down<M: Arith, T: Real, V: Reg<T>, S: FullBlocks<T>, const R: usize, const K: usize>(
    src: S,
    data: &mut [T],
    lanes: Lanes,
    c0: usize,
) {
    let d = src.dim();
    let blocks = src.items();
    // Column j has d - 1 - c0 + j planes; its plane s is its parameter
    // d - 2 - c0 + j - s (parameters run from x[d - 1] up).
    let planes = d - 1 - c0;
    let cols: [&[S::Item]; K] = core::array::from_fn(|j| {
        let o = crate::layout::full_column_start(d, c0 - j);
        &blocks[o..o + (planes + j)]
    });
    let mut carry = [[V::zero(); R]; K];
    for (j, c) in carry.iter_mut().enumerate() {
        *c = load_regs::<T, V, R>(data, lanes.at(c0 - j));
    }
    // Column j's planes, last parameter first, as slices of one length
    // (as in `full_up`).
    let mut steady: [&[S::Item]; K] = [&[]; K];
    for (j, sl) in steady.iter_mut().enumerate() {
        *sl = &cols[j][j..][..planes];
    }
    for s in 0..planes {
        let mut v = load_regs::<T, V, R>(data, lanes.at(c0 + 1 + s));
        for (sl, c) in steady.iter().zip(carry.iter_mut()) {
            rot_regs::<M, T, V, R>(src.block(sl[planes - 1 - s]), c, &mut v);
            core::mem::swap(&mut v, c);
        }
        store_regs::<T, V, R>(data, lanes.at(c0 + 1 + s - K), &v);
    }
    // Drain: column e is done; its final carry is column e + 1's last input.
    // The carries through an iterator, as in `full_up`'s fill.
    for e in 0..K - 1 {
        let s = planes + e;
        let mut v = [V::zero(); R];
        for (j, c) in carry.iter_mut().enumerate() {
            if j == e {
                v = *c;
            } else if j > e {
                rot_regs::<M, T, V, R>(src.block(cols[j][planes - 1 + j - s]), c, &mut v);
                core::mem::swap(&mut v, c);
            }
        }
        store_regs::<T, V, R>(data, lanes.at(c0 + 1 + s - K), &v);
    }
    store_regs::<T, V, R>(data, lanes.at(d - 1), &carry[K - 1]);
}

/// `R` registers of consecutive lanes from `at`. No closure (as in
/// `stage_lanes`): one compiled apart from the SIMD wrappers, without
/// their features, passed `f64` registers of 512 bits through memory
/// (7.4 against 60 GFLOP/s).
#[inline(always)]
fn load_regs<T: Real, V: Reg<T>, const R: usize>(data: &[T], at: usize) -> [V; R] {
    // One bounds check for the whole chunk: the registers' own checks are
    // then on a slice of known length, and fold away.
    let chunk = &data[at..at + R * V::W];
    let mut v = [V::zero(); R];
    for (r, x) in v.iter_mut().enumerate() {
        *x = V::load(chunk, r * V::W);
    }
    v
}

/// Stores what [`load_regs`] loads.
#[inline(always)]
fn store_regs<T: Real, V: Reg<T>, const R: usize>(data: &mut [T], at: usize, v: &[V; R]) {
    let chunk = &mut data[at..at + R * V::W];
    for (r, x) in v.iter().enumerate() {
        x.store(chunk, r * V::W);
    }
}

/// [`Reg::rot`] on each of `R` registers, the coefficients broadcast once.
#[inline(always)]
fn rot_regs<M: Arith, T: Real, V: Reg<T>, const R: usize>(b: Block<T>, p: &mut [V; R], q: &mut [V; R]) {
    let c = V::coef::<M>(b);
    for (p, q) in p.iter_mut().zip(q.iter_mut()) {
        V::rot::<M>(&c, p, q);
    }
}

/// The scratch buffer that [`rows`] takes for a batch of `len` scalars in
/// tiles of `tile` rows: the first that holds `tile` rows and, where the
/// fused kernel applies, its table and the leaders of at least 8 rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowScratch {
    /// [`ROWS_SMALL`] scalars on the stack.
    Small,
    /// [`TILE_SCRATCH`] scalars on the stack.
    Tile,
    /// [`ROWS_BIG`] scalars on the stack.
    #[cfg(feature = "std")]
    Big,
    /// This many scalars on the heap.
    #[cfg(feature = "std")]
    Heap(usize),
}

/// Chooses [`rows`]'s buffer (see [`RowScratch`]). The caller declares it,
/// so that the kernel, inlined into each instruction set's wrapper, is
/// compiled once for all four buffers.
#[inline]
pub(crate) fn row_scratch<T: Real>(rot: &Rotation<'_, T>, len: usize, tile: usize) -> RowScratch {
    let d = rot.dim();
    let fits = |s: usize| tile * d <= s && (!fused_rows_forward(rot) || fused_rows_tile(d, s) > 0);
    // A batch that goes whole through the fused kernel needs only its
    // coefficient table and leaders: a smaller buffer where the passes keep
    // as many rows, so that less of it is zeroed on every call.
    // (A fused tile of 0 rows means the fused kernel does not run at all.)
    let whole_fused = fused_rows_forward(rot) && (len / d).is_multiple_of(ROW_BLOCK);
    let small = if whole_fused { fused_rows_tile(d, ROWS_SMALL) } else { 0 };
    if TILE_SCRATCH > ROWS_SMALL && small > 0 && small == fused_rows_tile(d, TILE_SCRATCH) {
        return RowScratch::Small;
    }
    if fits(TILE_SCRATCH) {
        return RowScratch::Tile;
    }
    // Without `std` (small stacks, and no allocation in a call), tiles never
    // outgrow `TILE_SCRATCH` (see `Rotation::row_tile`), and the tiled
    // kernel takes rows too long for the fused one.
    #[cfg(feature = "std")]
    if fits(ROWS_BIG) {
        return RowScratch::Big;
    }
    #[cfg(feature = "std")]
    return RowScratch::Heap(heap_len(rot, tile));
    #[cfg(not(feature = "std"))]
    RowScratch::Tile
}

/// Scalars of the stack buffer of [`rows`] for batches that the fused
/// kernel takes whole, when that leaves its passes as many rows.
pub(crate) const ROWS_SMALL: usize = 4096;

/// Scalars of the stack buffer for rows too long for 8 of them to fit in
/// [`TILE_SCRATCH`] (with `std` only: 128 KiB of `f32`, 256 KiB of `f64`),
/// so that rows up to `d = 4096` still go 8 at a time through the SIMD
/// transposes and register chunks.
pub(crate) const ROWS_BIG: usize = 8 * 4096;

/// Leaders per pass that [`heap_len`] sizes the buffer for: those of 32
/// rows of `d = 4096`, as [`ROWS_BIG`] holds.
#[cfg(feature = "std")]
const HEAP_LEADERS: usize = 32 * 512;

/// Scalars of the heap buffer of [`rows`] for rows longer than the stack
/// buffers take (`d > 4096`, with `std`): room for `tile` rows and for the
/// fused kernel's table and the leaders of up to [`HEAP_LEADERS`] / `(d / 8)`
/// rows (at least 8).
#[cfg(feature = "std")]
#[inline(always)]
fn heap_len<T: Real>(rot: &Rotation<'_, T>, tile: usize) -> usize {
    let d = rot.dim();
    let q = d / ROW_BLOCK;
    let fused = if fused_rows_forward(rot) {
        let w = (HEAP_LEADERS / q / ROW_BLOCK * ROW_BLOCK).clamp(ROW_BLOCK, MAX_FUSED_ROWS);
        first_table_len(d) + q * w
    } else {
        0
    };
    fused.max(tile * d)
}

/// Applies `op` to every row of the row-major batch `x` (read from `src`
/// when given), `tile` rows at a time transposed through `scratch` (at least
/// `tile` rows; the fused kernel runs if it also holds its table and the
/// leaders of 8 rows, see [`row_scratch`]); returns whether every input read
/// from `src` and whether every output is finite.
#[inline(always)]
pub(crate) fn rows<M: Arith, X: Transposer, T: Real, const WT: usize, const WC: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    src: Option<&[T]>,
    x: &mut [T],
    tile: usize,
    scratch: &mut [T],
) -> (bool, bool) {
    let d = rot.dim();
    let n = x.len() / d;
    let (mut input_ok, mut finite) = (true, true);
    let mut r0 = 0;
    // Whole groups of 8 rows of the tree in one pass (the buffer holds only
    // the blocks' leaders there: up to 64 rows at a time).
    if fused_rows_forward(rot) && fused_rows_tile(d, scratch.len()) > 0 {
        r0 = n / ROW_BLOCK * ROW_BLOCK;
        let (i, o) = tree_rows_fused::<M, X, T, WT, WC>(rot, op, src.map(|s| &s[..r0 * d]), &mut x[..r0 * d], scratch);
        input_ok &= i;
        finite &= o;
    }
    if let Some(src) = src {
        x[r0 * d..].copy_from_slice(&src[r0 * d..]);
        input_ok &= all_finite(&src[r0 * d..]);
    }
    if !input_ok {
        return (false, finite);
    }
    while r0 < n {
        let tw = tile.min(n - r0);
        let rows = &mut x[r0 * d..(r0 + tw) * d];
        let buf = &mut scratch[..d * tw];
        transpose::<X, T, false>(rows, buf, tw, d);
        finite &= run::<M, X, T, WT, WC>(rot, op, buf, tw, 0, tw) || all_finite(buf);
        transpose::<X, T, true>(rows, buf, tw, d);
        r0 += tw;
    }
    (input_ok, finite)
}

/// Coordinates (and rows) of the register blocks of the fused row kernels.
pub(crate) const ROW_BLOCK: usize = 8;

/// Most rows the fused row kernels take per pass (rows of one pass share
/// each register block's coefficients). 32 (a pass at d = 256 within the
/// first-level cache) measured no better than 64, within the spread of
/// runs.
pub(crate) const MAX_FUSED_ROWS: usize = 64;

/// Whether the fused row kernels apply: the tree with `d` a multiple of
/// [`ROW_BLOCK`], so that its first three stages act inside whole blocks of
/// 8 coordinates.
#[inline(always)]
pub(crate) fn fused_rows_fit<T: Real>(rot: &Rotation<'_, T>) -> bool {
    let d = rot.dim();
    rot.layout() == Layout::Tree && d >= ROW_BLOCK && d.is_multiple_of(ROW_BLOCK)
}

/// Whether [`rows`] takes the fused row kernel: where it fits, for `f32`.
/// For `f64` the transposed tiles ran faster on AVX2 and AVX-512 alike
/// (AVX-512, ns per element, in place, d = 768 and 4096: `R^T` 0.65 and
/// 0.61 against 0.90, `R` 0.63 and 0.66 against 1.21 and 1.25).
#[inline(always)]
pub(crate) fn fused_rows_forward<T: Real>(rot: &Rotation<'_, T>) -> bool {
    core::mem::size_of::<T>() == 4 && fused_rows_fit(rot)
}

/// Whether [`Rotation::apply_rows_into`] copies the batch and rotates the
/// copy in place: on the fused row kernel with rows a multiple of 4 KiB
/// apart (one set of the first-level cache for a column of 8 rows), where
/// the out-of-place blocks, paired or not, keep evicting the lines they
/// read. One thread, AVX2, ns per element, `R^T` and `R`: out of place
/// 1.13 and 1.15 at `(n, d) = (512, 1024)`, 1.06 and 1.07 at
/// `(256, 4096)`; copy and in place 0.83 and 0.70, 0.76 and 0.82. At rows
/// 2 KiB apart (`d = 512`, two sets) out of place stays ahead: 0.53 and
/// 0.57 against 0.63 and 0.66.
#[inline(always)]
pub(crate) fn rows_into_by_copy<T: Real>(rot: &Rotation<'_, T>) -> bool {
    fused_rows_forward(rot) && row_sets::<T>(rot.dim(), ROW_BLOCK) == 1
}

/// The 8 x 8 block of `src` (rows `l`, coordinates `a`, row stride `ss`)
/// transposed into registers: `v[a][l]`.
#[inline(always)]
pub(crate) fn load_block<X: Transposer, T: Real>(src: &[T], ss: usize) -> [[T; ROW_BLOCK]; ROW_BLOCK] {
    let mut v = [[T::zero(); ROW_BLOCK]; ROW_BLOCK];
    let flat = v.as_flattened_mut();
    if !X::block8(src, ss, flat, ROW_BLOCK) {
        for l in 0..ROW_BLOCK {
            for a in 0..ROW_BLOCK {
                flat[a * ROW_BLOCK + l] = src[l * ss + a];
            }
        }
    }
    v
}

/// Stores the register block `v[a][l]` back to rows `l`, coordinates `a` of
/// `dst` (row stride `ds`).
#[inline(always)]
pub(crate) fn store_block<X: Transposer, T: Real>(v: &[[T; ROW_BLOCK]; ROW_BLOCK], dst: &mut [T], ds: usize) {
    let flat = v.as_flattened();
    if !X::block8(flat, ROW_BLOCK, dst, ds) {
        for l in 0..ROW_BLOCK {
            for a in 0..ROW_BLOCK {
                dst[l * ds + a] = flat[a * ROW_BLOCK + l];
            }
        }
    }
}

/// The coefficients of the first three tree stages inside the 8-coordinate
/// block starting at `b0`, in the order `op` applies them (`ASC`: stage
/// order), and their parameter indices.
#[inline(always)]
pub(crate) fn first_stages<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    b0: usize,
    asc: bool,
    offs: &[usize; 3],
    map: impl Fn(Op, Block<T>) -> Block<T>,
) -> ([Block<T>; ROW_BLOCK], [usize; ROW_BLOCK]) {
    let blocks = rot.blocks();
    let mut cb = [Block::identity(); ROW_BLOCK];
    let mut idx = [0usize; ROW_BLOCK];
    let mut r = 0;
    for step in 0..3 {
        let kk = if asc { step } else { 2 - step };
        for t in 0..ROW_BLOCK >> (kk + 1) {
            let q = offs[kk] + ((b0 + (t << (kk + 1))) >> (kk + 1));
            cb[r] = map(op, blocks[q]);
            idx[r] = q;
            r += 1;
        }
    }
    (cb, idx)
}

/// Stage and plane `(i, j)` (coordinates within its 8-coordinate block) of
/// block `r` of a row of [`first_stages`] in the order `asc` gives.
#[inline(always)]
pub(crate) const fn first_plane(asc: bool, r: usize) -> (usize, usize, usize) {
    // Ascending: stage 0's four planes, stage 1's two, stage 2's one;
    // descending: stage 2, stage 1, stage 0 (each stage's planes in order).
    match (asc, r) {
        (true, 0..=3) => (0, 2 * r, 2 * r + 1),
        (true, 4) | (false, 1) => (1, 0, 2),
        (true, 5) | (false, 2) => (1, 4, 6),
        (false, 3..) => (0, 2 * (r - 3), 2 * (r - 3) + 1),
        _ => (2, 0, 4),
    }
}

/// Parameter offsets of the tree's first three stages (`d >= 8`).
#[inline(always)]
pub(crate) fn first_offsets(d: usize) -> [usize; 3] {
    [0, Layout::Tree.stage(d, 1).offset, Layout::Tree.stage(d, 2).offset]
}

/// Scalars of the coefficient table of [`tree_rows_fused`]: the first
/// three stages' 7 blocks of each 8-coordinate block, 4 scalars each.
#[inline(always)]
pub(crate) fn first_table_len(d: usize) -> usize {
    28 * (d / ROW_BLOCK)
}

/// Rows per pass of [`tree_rows_fused`] with `s` scalars of scratch (a
/// multiple of 8, at most [`MAX_FUSED_ROWS`]), or 0 if it does not fit.
#[inline(always)]
pub(crate) fn fused_rows_tile(d: usize, s: usize) -> usize {
    let q = d / ROW_BLOCK;
    let t = first_table_len(d);
    if q == 0 || s < t {
        return 0;
    }
    let w = ((s - t) / q / ROW_BLOCK * ROW_BLOCK).min(MAX_FUSED_ROWS);
    if w >= ROW_BLOCK {
        w
    } else {
        0
    }
}

/// Fills `table` with the first three stages' blocks that `op` applies,
/// per 8-coordinate block in the order they are applied (see
/// [`first_stages`]).
#[inline(always)]
pub(crate) fn fill_first_table<T: Real>(rot: &Rotation<'_, T>, op: Op, table: &mut [T]) {
    let d = rot.dim();
    let offs = first_offsets(d);
    let asc = op.ascending();
    for (b, t) in table.chunks_exact_mut(28).enumerate().take(d / ROW_BLOCK) {
        let (cb, _) = first_stages(rot, op, b * ROW_BLOCK, asc, &offs, |op, blk| rot.effective(op, blk));
        for (r, c) in t.chunks_exact_mut(4).enumerate() {
            c.copy_from_slice(&cb[r].to_array());
        }
    }
}

/// The 7 blocks of one 8-coordinate block from the coefficient table.
#[inline(always)]
pub(crate) fn table_blocks<T: Real>(t: &[T]) -> [Block<T>; ROW_BLOCK] {
    let mut cb = [Block::identity(); ROW_BLOCK];
    for (r, c) in t.chunks_exact(4).enumerate().take(7) {
        cb[r] = Block { a: c[0], b: c[1], c: c[2], e: c[3] };
    }
    cb
}

/// The tree on the row-major rows of `x` (`d` a multiple of 8, the number
/// of rows a multiple of 8), in passes of up to [`fused_rows_tile`] rows.
/// Each pass goes once over its rows, 8 rows at a time: 8 x 8 blocks (8
/// rows, 8 coordinates) are transposed into registers, the first three
/// stages applied there (coefficients from a table built once per call),
/// and transposed back; the later stages act only on each block's first
/// coordinate (its leader), gathered in `scratch` (`d / 8` coordinates of
/// the pass's rows as lanes) and done with the structure-of-arrays
/// kernel, before the pass for the descending operators, after it for the
/// ascending ones. Every rotation is evaluated as in [`run`] (bitwise the
/// same results). Returns whether every output is finite.
///
/// Out of place with `f32`, two blocks share each row's 64-byte line, and
/// rows a multiple of 2 KiB or 4 KiB apart fall into one or two sets of the
/// first-level cache ([`row_sets`]): the 8 destination lines that one
/// block's stores bring in evict the 8 source lines that the next block
/// reads. The blocks then go in pairs: the first one's result into a stash
/// on the stack, the second one straight into the rows, then the stash into
/// its rows, so each source line is loaded once. (Where the rows spread over
/// more sets, the stash's copies cost more than they save.) Only rows 2 KiB
/// apart come here paired: at 4 KiB `apply_rows_into` copies the batch and
/// rotates it in place instead ([`rows_into_by_copy`]).
#[inline(always)]
fn tree_rows_fused<M: Arith, X: Transposer, T: Real, const WT: usize, const WC: usize>(
    rot: &Rotation<'_, T>,
    op: Op,
    src: Option<&[T]>,
    x: &mut [T],
    scratch: &mut [T],
) -> (bool, bool) {
    const B: usize = ROW_BLOCK;
    let d = rot.dim();
    let q = d / B;
    let n = x.len() / d;
    let tw = fused_rows_tile(d, scratch.len());
    let (table, lead) = scratch.split_at_mut(first_table_len(d));
    fill_first_table(rot, op, table);
    let sub = rot.sub_tree(3);
    let asc = op.ascending();
    let inverts = op.inverts();
    // Out of place, with two blocks to a 64-byte line and rows that share
    // cache sets, the blocks go in pairs (see the doc).
    let paired = src.is_some() && 2 * B * core::mem::size_of::<T>() <= 64 && row_sets::<T>(d, B) <= 2;
    // Groups of 16 rows where the instruction set holds 16 lanes and their
    // lines (16 rows, 32 out of place) come to at most 8 per cache set: at
    // a row stride of a multiple of 4 KiB all 16 share one set, more than
    // its ways, and the group's stores miss the lines its loads brought in.
    let lines = if src.is_some() { 4 * B } else { 2 * B };
    let wide = M::FUSED && X::wide::<T>() && !paired && lines <= 8 * row_sets::<T>(d, 2 * B) as usize;
    let (mut input_ok, mut finite) = (true, true);
    // Where the rows are read from, for the prefetches of the next pass.
    let origin: *const T = src.map_or(x.as_ptr(), |s| s.as_ptr());
    let dest: Option<*const T> = src.map(|_| x.as_ptr());
    let mut r0 = 0;
    while r0 < n {
        let w = tw.min(n - r0);
        // The next pass's rows are fetched while this one computes, spread
        // over its block calls (see `Prefetch`).
        let mut ahead = Prefetch::next_pass(origin, dest, r0 + w, tw.min(n - r0 - w), d, w / B * q);
        let rows = &mut x[r0 * d..(r0 + w) * d];
        let from = src.map(|s| &s[r0 * d..(r0 + w) * d]);
        let lead = &mut lead[..q * w];
        if !asc {
            gather_leaders(from.unwrap_or(rows), lead, d, w);
            run::<M, X, T, WT, WC>(&sub, op, lead, w, 0, w);
        }
        let mut k = 0;
        while k < w {
            // A group of 16 rows in one pass (see `wide`).
            if wide && k + 2 * B <= w {
                for b in 0..q {
                    ahead.step();
                    ahead.step();
                    let sc: Option<&[T; B]> = rot.scale().map(|s| s[b * B..b * B + B].try_into().expect("8 scales"));
                    let at = k * d + b * B;
                    let from = from.map(|s| (&s[at..], d));
                    let f = (&mut input_ok, &mut finite);
                    let done = X::tree16(
                        asc,
                        from,
                        &mut rows[at..],
                        d,
                        &table[28 * b..],
                        sc,
                        inverts,
                        &mut lead[b * w + k..],
                        f,
                    );
                    assert!(done, "wide kernels take every group of 16 rows");
                }
                k += 2 * B;
                continue;
            }
            let mut b = 0;
            while b < q {
                ahead.step();
                let t = &table[28 * b..];
                let at = k * d + b * B;
                let f = (&mut input_ok, &mut finite);
                if paired && b + 1 < q {
                    // Block `b` into the stash, block `b + 1` in place, then
                    // the stash out: the rows' lines are read once (see the
                    // doc).
                    let from = from.map(|s| (&s[at..], d));
                    let (lk, ln) = (b * w + k, (b + 1) * w + k);
                    let sc = rot.scale().map(|s| &s[b * B..b * B + 2 * B]);
                    let mut stash = [[T::zero(); B]; B];
                    let (s0, s1) = sc.map_or((None, None), |s| (Some(&s[..B]), Some(&s[B..])));
                    fused_block::<M, X, T>(asc, inverts, from, stash.as_flattened_mut(), B, t, s0, &mut lead[lk..], f);
                    let f = (&mut input_ok, &mut finite);
                    let from = from.map(|(s, ss)| (&s[B..], ss));
                    fused_block::<M, X, T>(
                        asc,
                        inverts,
                        from,
                        &mut rows[at + B..],
                        d,
                        &t[28..],
                        s1,
                        &mut lead[ln..],
                        f,
                    );
                    for (l, v) in stash.iter().enumerate() {
                        rows[at + l * d..at + l * d + B].copy_from_slice(v);
                    }
                    ahead.step();
                    b += 2;
                } else {
                    let sc = rot.scale().map(|s| &s[b * B..b * B + B]);
                    let from = from.map(|s| (&s[at..], d));
                    fused_block::<M, X, T>(asc, inverts, from, &mut rows[at..], d, t, sc, &mut lead[b * w + k..], f);
                    b += 1;
                }
            }
            k += B;
        }
        if asc {
            finite &= run::<M, X, T, WT, WC>(&sub, op, lead, w, 0, w) || all_finite(lead);
            scatter_leaders(rows, lead, d, w);
        }
        r0 += w;
    }
    (input_ok, finite)
}

/// Prefetches of the rows of the next pass of [`tree_rows_fused`] into
/// the second-level cache, a few lines per block call of the current pass,
/// so that the next pass finds its rows there: each pass first gathers its
/// rows' leaders, loads that only wait on memory, and then computes on rows
/// the caches hold, so without them the memory and the arithmetic take
/// turns. Only for passes that leave room for the next one in that cache
/// ([`PREFETCH_PASS_BYTES`]).
struct Prefetch {
    /// The next pass's first byte in the rows read.
    base: *const u8,
    /// The same in the rows written, out of place where both passes of
    /// both fit too (a read prefetch of a line no other core holds brings
    /// it in a state that the stores then take without another request).
    dest: Option<*const u8>,
    /// Offset of the next line to fetch, and the end of the next pass.
    at: usize,
    end: usize,
    /// Lines per step (from each of the two).
    per: usize,
}

/// Passes whose rows take at most this many bytes fetch the next pass's
/// rows while they compute, and its destination rows too where both
/// together do (two passes then take at most half of a second-level cache
/// of 512 KiB).
const PREFETCH_PASS_BYTES: usize = 128 * 1024;

impl Prefetch {
    /// For the pass of `rows` rows (`d` scalars each) from row `r0` of the
    /// rows at `origin` (and at `dest`, written out of place), fetched over
    /// `steps` steps; nothing if the pass is empty or too large.
    #[inline(always)]
    fn next_pass<T>(origin: *const T, dest: Option<*const T>, r0: usize, rows: usize, d: usize, steps: usize) -> Self {
        let bytes = rows * d * core::mem::size_of::<T>();
        let end = if bytes <= PREFETCH_PASS_BYTES { bytes } else { 0 };
        let base = origin.wrapping_add(r0 * d).cast::<u8>();
        let dest = dest.filter(|_| 2 * bytes <= PREFETCH_PASS_BYTES).map(|p| p.wrapping_add(r0 * d).cast::<u8>());
        Self { base, dest, at: 0, end, per: end.div_ceil(64).div_ceil(steps.max(1)) }
    }

    /// Fetches the next few lines.
    #[inline(always)]
    fn step(&mut self) {
        let stop = (self.at + 64 * self.per).min(self.end);
        while self.at < stop {
            crate::simd::prefetch_l2(self.base.wrapping_add(self.at));
            if let Some(p) = self.dest {
                crate::simd::prefetch_l2(p.wrapping_add(self.at));
            }
            self.at += 64;
        }
    }
}

/// Sets of a first-level cache of 64 sets of 64-byte lines (4 KiB apart
/// repeat the same set, as on current x86 cores) that the same column of
/// `rows` consecutive rows of `d` scalars falls into.
#[inline(always)]
fn row_sets<T>(d: usize, rows: usize) -> u32 {
    let stride = d * core::mem::size_of::<T>();
    let mut sets = 0u64;
    for r in 0..rows {
        sets |= 1 << (r * stride % 4096 / 64);
    }
    sets.count_ones()
}

/// One 8 x 8 block of [`tree_rows_fused`]: rows `l < 8`, coordinates
/// `a < 8` of `src` (with its row stride; `dst` itself if `None`) into `dst`
/// (row stride `ds`), the first three stages from the table entry `t`, the
/// scaling `sc`; the leaders to or from `lead` (see [`Transposer::tree8`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fused_block<M: Arith, X: Transposer, T: Real>(
    asc: bool,
    inverts: bool,
    src: Option<(&[T], usize)>,
    dst: &mut [T],
    ds: usize,
    t: &[T],
    sc: Option<&[T]>,
    lead: &mut [T],
    finite: (&mut bool, &mut bool),
) {
    const B: usize = ROW_BLOCK;
    let sc: Option<&[T; B]> = sc.map(|s| s.try_into().expect("8 scales"));
    if M::FUSED && X::tree8(asc, src, dst, ds, t, sc, inverts, &mut *lead, (&mut *finite.0, &mut *finite.1)) {
        return;
    }
    let cb = table_blocks(t);
    let mut v = match src {
        Some((s, ss)) => {
            let v = load_block::<X, T>(s, ss);
            *finite.0 &= all_finite(v.as_flattened());
            v
        }
        None => load_block::<X, T>(dst, ds),
    };
    let lead = &mut lead[..B];
    if asc {
        if let Some(sc) = sc {
            scale_block(&mut v, sc, inverts);
        }
        tree_block::<M, T, B, B, true>(&mut v, &cb);
        lead.copy_from_slice(&v[0]);
    } else {
        v[0].copy_from_slice(lead);
        tree_block::<M, T, B, B, false>(&mut v, &cb);
        if let Some(sc) = sc {
            scale_block(&mut v, sc, inverts);
        }
    }
    *finite.1 &= all_finite(v.as_flattened());
    store_block::<X, T>(&v, dst, ds);
}

/// The gradient rows a register block of the strict backward reads: carried
/// to the input and written back in place, or only read (for a caller that
/// needs the block gradients and not the carried gradient).
pub(crate) enum GradRows<'a, T> {
    /// Read, carried and written back.
    Write(&'a mut [T]),
    /// Read only; the carried gradient is discarded.
    Read(&'a [T]),
}

impl<T> GradRows<'_, T> {
    /// The rows, for reading.
    #[inline(always)]
    pub(crate) fn get(&self) -> &[T] {
        match self {
            Self::Write(s) => s,
            Self::Read(s) => s,
        }
    }

    /// The rows from index `at` on, in the same mode.
    #[inline(always)]
    pub(crate) fn tail(&mut self, at: usize) -> GradRows<'_, T> {
        let len = self.get().len();
        self.part(at..len)
    }

    /// The entries in `range`, in the same mode.
    #[inline(always)]
    pub(crate) fn part(&mut self, range: core::ops::Range<usize>) -> GradRows<'_, T> {
        match self {
            Self::Write(s) => GradRows::Write(&mut s[range]),
            Self::Read(s) => GradRows::Read(&s[range]),
        }
    }
}

/// `lead[b * stride + r] = rows[r * d + 8 b]` for every row `r` of `rows`,
/// row by row: each row cut to its `8 q` leaders' span and walked in
/// blocks of 8 next to `lead`'s rows, so that the loop carries no
/// multiplication, no division and one bounds check. Against the same walk
/// through `step_by` iterators: from the third-level cache 0.63 - 1.19 ns
/// per leader against 0.82 - 1.43 (d = 768 with 1024 and 4096 rows, d =
/// 256 with 8192), in cache and from memory the same (0.63 - 1.02 for 64
/// rows of d = 256 - 4096; 1.86 - 2.13 for 2^20 rows of d = 256).
/// Eight rows at a time (8 consecutive stores into `lead` per block) ran
/// faster in cache (0.36 - 0.53) but 1.4 times as slow from memory (2.65 -
/// 2.98 against 1.86 - 1.95 ns at d = 256, 2^20 rows): the 8 rows' lines
/// are not one stream for the prefetchers. Leader by leader down all the
/// rows was slower where rows lie a multiple of 4 KiB apart and share the
/// cache's sets (d = 4096, `R`, AVX-512: 5.2 - 5.6 against 14.0 - 17.9
/// GFLOP/s).
#[inline(always)]
pub(crate) fn gather_leaders<T: Real>(rows: &[T], lead: &mut [T], d: usize, stride: usize) {
    let span = d / ROW_BLOCK * ROW_BLOCK;
    for (r, row) in rows.chunks_exact(d).enumerate() {
        for (c, lb) in row[..span].chunks_exact(ROW_BLOCK).zip(lead.chunks_exact_mut(stride)) {
            lb[r] = c[0];
        }
    }
}

/// `rows[r * d + 8 b] = lead[b * stride + r]` for every row `r` of `rows`,
/// as [`gather_leaders`] walks them.
#[inline(always)]
pub(crate) fn scatter_leaders<T: Real>(rows: &mut [T], lead: &[T], d: usize, stride: usize) {
    let span = d / ROW_BLOCK * ROW_BLOCK;
    for (r, row) in rows.chunks_exact_mut(d).enumerate() {
        for (c, lb) in row[..span].chunks_exact_mut(ROW_BLOCK).zip(lead.chunks_exact(stride)) {
            c[0] = lb[r];
        }
    }
}

/// Coordinate `a` of every lane times `sc[a]` (divided, for the inverses),
/// as [`Rotation::scale_lanes`] does.
#[inline(always)]
pub(crate) fn scale_block<T: Real>(v: &mut [[T; ROW_BLOCK]; ROW_BLOCK], sc: &[T; ROW_BLOCK], inverts: bool) {
    for (va, &s) in v.iter_mut().zip(sc) {
        if inverts {
            va.iter_mut().for_each(|x| *x = *x / s);
        } else {
            va.iter_mut().for_each(|x| *x = *x * s);
        }
    }
}

/// Transposes 8 x 8 blocks with the instruction set's shuffles, and runs
/// the kernels that have a register-level form of their own.
pub(crate) trait Transposer {
    /// The full layout's wavefront ([`full_regs`]) on the processor's own
    /// registers, for exact (`M::Exact`) or any blocks: the lanes done, or
    /// `None` if not handled (then the arrays' kernel runs).
    #[inline(always)]
    fn full<M: Arith, T: Real, const MAP: u8>(
        _src: Applied<'_, '_, T, MAP>,
        _data: &mut [T],
        _ld: usize,
        _base: usize,
        _tw: usize,
    ) -> Option<usize> {
        None
    }

    /// The full layout's wavefront ([`full_regs`]) for a table of exact
    /// blocks, unfused ([`PlainExact`]: bitwise the arrays' kernel), on the
    /// processor's own registers: the lanes done, or `None` if not handled
    /// (then the arrays' kernel runs).
    #[inline(always)]
    fn full_table<T: Real>(
        _src: ExactTable<'_, T>,
        _data: &mut [T],
        _ld: usize,
        _base: usize,
        _tw: usize,
    ) -> Option<usize> {
        None
    }

    /// The tree ([`tree_regs`]) on the processor's own registers: the
    /// lanes done and whether every value written was finite, or `None` if
    /// not handled (then the arrays' kernel runs).
    #[inline(always)]
    fn tree<M: Arith, T: Real>(
        _rot: &Rotation<'_, T>,
        _op: Op,
        _data: &mut [T],
        _ld: usize,
        _base: usize,
        _tw: usize,
    ) -> Option<(usize, bool)> {
        None
    }

    /// `dst[c * ds + r] = src[r * ss + c]` for `r, c < 8`; `false` if not
    /// handled (then the caller copies element by element).
    fn block8<T: Real>(src: &[T], ss: usize, dst: &mut [T], ds: usize) -> bool;

    /// One register block of [`tree_rows_fused`] with fused multiply-adds:
    /// rows `l < 8`, coordinates `a < 8` of `src` (with its row stride; or
    /// of `rows` if `None`) into `rows` (row stride `ld`), the first three
    /// stages `cb` in stage order (`asc`) after the scaling `sc`, the
    /// leaders written to `lead`; or, descending, the leaders read from
    /// `lead`, the stages, then the scaling. Clears `finite.0` if an input
    /// from `src` is not finite, `finite.1` if an output is not. `false` if
    /// not handled (nothing is touched).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn tree8<T: Real>(
        _asc: bool,
        _src: Option<(&[T], usize)>,
        _rows: &mut [T],
        _ld: usize,
        _cb: &[T],
        _sc: Option<&[T; ROW_BLOCK]>,
        _inverts: bool,
        _lead: &mut [T],
        _finite: (&mut bool, &mut bool),
    ) -> bool {
        false
    }

    /// One register block of the strict backward of the tree on rows (see
    /// `grad::tile_rows_fused`), without fused products: the saved output
    /// `y` and the gradient `g` of rows `l < 8`, coordinates `a < 8` (row
    /// stride `ld`); the scaling (`sc`, first if `asc`) and the first three
    /// stages' step blocks `cb` (`[a, b, c, e]` each, in the order they are
    /// undone) undone, the products summed into `acc` (`[rotation][entry]
    /// [lane]`, 7 x 4 x 8) and `accs` (`[coordinate][lane]`), the gradient
    /// written back to `g` if it is writable; the leaders of `y` and `g`
    /// stored to `lz`, `lg` (`asc`) or taken from them first. `false` if not
    /// handled (nothing is touched).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn recover8<T: Real>(
        _asc: bool,
        _y: &[T],
        _g: GradRows<'_, T>,
        _ld: usize,
        _cb: &[T],
        _sc: Option<&[T]>,
        _acc: &mut [T],
        _accs: &mut [T],
        _lz: &mut [T],
        _lg: &mut [T],
    ) -> bool {
        false
    }

    /// Whether [`Transposer::tree16`] handles `T` (then the caller gives it
    /// every whole group of 16 rows where their lines spread over enough
    /// cache sets, see `tree_rows_fused`).
    #[inline(always)]
    fn wide<T: Real>() -> bool {
        false
    }

    /// [`Transposer::tree8`] on rows `l < 16` (one register holds a
    /// coordinate of all 16), the leaders of the 16 rows to or from
    /// `lead[..16]`: every value bitwise as two calls of `tree8` on rows
    /// 0-7 and 8-15 give it. `false` if not handled (nothing is touched).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn tree16<T: Real>(
        _asc: bool,
        _src: Option<(&[T], usize)>,
        _rows: &mut [T],
        _ld: usize,
        _cb: &[T],
        _sc: Option<&[T; ROW_BLOCK]>,
        _inverts: bool,
        _lead: &mut [T],
        _finite: (&mut bool, &mut bool),
    ) -> bool {
        false
    }

    /// Whether [`Transposer::recover_pair`] handles `T`.
    #[inline(always)]
    fn pair<T: Real>() -> bool {
        false
    }

    /// Rows and columns of the register block of accumulators in
    /// `grad::backward_cross` (each a divisor of 8): as many as the
    /// registers hold with room for the row's values.
    #[inline(always)]
    fn cross_block<T: Real>() -> (usize, usize) {
        (4, 4)
    }

    /// The sums of `grad::cross_sums` for one block of 8 coordinates in
    /// one pass: `out[8 i + j] = sum_r dx'_i x'_j` over the rows `r <
    /// lz.len()` of `xb` and `gb` (row `r` at `r * ld`), the leaders
    /// `x'_0 = lz[r]`, `dx'_0 = lg[r]`; every sum bitwise as that function
    /// forms it. With `add` the sums go on from those that an earlier call
    /// over the rows before left in `out`. `false` if not handled (nothing
    /// is touched).
    #[inline(always)]
    fn cross8<T: Real>(_xb: &[T], _gb: &[T], _lz: &[T], _lg: &[T], _ld: usize, _out: &mut [T], _add: bool) -> bool {
        false
    }

    /// [`Transposer::recover8`] on two adjacent 8-coordinate blocks of all
    /// the rows `r < w8` of a tile, one register per row: rows below `full`
    /// from `y` and `g`, the others from the zero-padded copies `py`, `pg`
    /// (row `r` at `(r - full) * ld`); `cb` the two blocks' step blocks,
    /// `sc` their 16 scales, the leaders of the first block at `lz[r]`,
    /// `lg[r]`, of the second at `w8 + r`. The sums go to `out` already
    /// reduced over the lanes (as `grad::reduce`), 16 values each: the
    /// products `g_i z_i` and `g_j z_j` of stages 0, 1 and 2 at the lanes of
    /// their planes' coordinates `(i, j)`, then `g_j z_i` and `g_i z_j`, then
    /// the scaling's. Every value bitwise as `recover8` gives it. `false` if
    /// not handled (nothing is touched).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn recover_pair<T: Real>(
        _asc: bool,
        _y: &[T],
        _g: GradRows<'_, T>,
        _py: &[T],
        _pg: &mut [T],
        _ld: usize,
        _full: usize,
        _w8: usize,
        _cb: [&[T]; 2],
        _sc: Option<&[T]>,
        _lz: &mut [T],
        _lg: &mut [T],
        _out: &mut [T],
    ) -> bool {
        false
    }
}

/// No shuffles: element by element.
pub(crate) struct ByElement;

impl Transposer for ByElement {
    #[inline(always)]
    fn block8<T: Real>(_: &[T], _: usize, _: &mut [T], _: usize) -> bool {
        false
    }
}

/// Copies between the row-major `tw x d` rows and the coordinate-major
/// `d x tw` buffer (`BACK`: buffer to rows), in 8 x 8 blocks.
#[inline(always)]
pub(crate) fn transpose<X: Transposer, T: Real, const BACK: bool>(rows: &mut [T], buf: &mut [T], tw: usize, d: usize) {
    const B: usize = 8;
    let (lw, dw) = (tw / B * B, d / B * B);
    let mut l0 = 0;
    while l0 < lw {
        let mut i0 = 0;
        while i0 < dw {
            let done = if BACK {
                X::block8(&buf[i0 * tw + l0..], tw, &mut rows[l0 * d + i0..], d)
            } else {
                X::block8(&rows[l0 * d + i0..], d, &mut buf[i0 * tw + l0..], tw)
            };
            if done {
                i0 += B;
                continue;
            }
            let mut blk = [[T::zero(); B]; B];
            if BACK {
                for (ii, r) in blk.iter_mut().enumerate() {
                    r.copy_from_slice(&buf[(i0 + ii) * tw + l0..(i0 + ii) * tw + l0 + B]);
                }
                for ll in 0..B {
                    let row = &mut rows[(l0 + ll) * d + i0..(l0 + ll) * d + i0 + B];
                    for (ii, v) in row.iter_mut().enumerate() {
                        *v = blk[ii][ll];
                    }
                }
            } else {
                for (ll, r) in blk.iter_mut().enumerate() {
                    r.copy_from_slice(&rows[(l0 + ll) * d + i0..(l0 + ll) * d + i0 + B]);
                }
                for ii in 0..B {
                    let col = &mut buf[(i0 + ii) * tw + l0..(i0 + ii) * tw + l0 + B];
                    for (ll, v) in col.iter_mut().enumerate() {
                        *v = blk[ll][ii];
                    }
                }
            }
            i0 += B;
        }
        l0 += B;
    }
    // Edges: the rows past the last whole block of lanes, the coordinates
    // past the last whole block of coordinates.
    for l in 0..tw {
        let from = if l < lw { dw } else { 0 };
        for i in from..d {
            if BACK {
                rows[l * d + i] = buf[i * tw + l];
            } else {
                buf[i * tw + l] = rows[l * d + i];
            }
        }
    }
}

/// Copies the row-major `tw x d` rows to the coordinate-major `d x tw`
/// buffer (read-only rows), in 8 x 8 blocks.
#[inline(always)]
pub(crate) fn gather<X: Transposer, T: Real>(rows: &[T], buf: &mut [T], tw: usize, d: usize) {
    const B: usize = 8;
    let (lw, dw) = (tw / B * B, d / B * B);
    let mut l0 = 0;
    while l0 < lw {
        let mut i0 = 0;
        while i0 < dw {
            if !X::block8(&rows[l0 * d + i0..], d, &mut buf[i0 * tw + l0..], tw) {
                for ll in 0..B {
                    for ii in 0..B {
                        buf[(i0 + ii) * tw + l0 + ll] = rows[(l0 + ll) * d + i0 + ii];
                    }
                }
            }
            i0 += B;
        }
        l0 += B;
    }
    for l in 0..tw {
        let from = if l < lw { dw } else { 0 };
        for i in from..d {
            buf[i * tw + l] = rows[l * d + i];
        }
    }
}

/// Whether every entry is finite, with [`all_finite_in`]'s 64 sums.
#[inline(always)]
pub(crate) fn all_finite<T: Real>(xs: &[T]) -> bool {
    all_finite_in::<T, 64>(xs)
}

/// Whether every entry is finite: `v * 0` is a zero for a finite `v` and
/// NaN for NaN and the infinities, and a sum of such products is a zero
/// exactly when every one is. `L` independent sums (whole vectors of any
/// width) keep the adds' latency off the critical path; the compiler
/// vectorises them. A product and a sum per value, where `v - v` took two
/// sums: on processors with separate pipes for products and sums the two
/// no longer queue on the same ones.
///
/// Up to [`BACKWARD_CHECK_BYTES`] the pass runs from the last entry to the
/// first: the callers check a batch and then rotate it from its first
/// entry on, and what a backward pass leaves in the first-level cache is
/// the batch's head, which the rotation reads next. On the tree in cache
/// (`d = 256`, `n = 64`, 64 KiB, columns, AVX2, first-level cache 32 KiB)
/// a call took 2.74 - 2.85 us against 4.42 - 4.56 us with the check
/// running forwards.
#[inline(always)]
pub(crate) fn all_finite_in<T: Real, const L: usize>(xs: &[T]) -> bool {
    // Opaque to the optimiser, which otherwise turns `v * 0` back into
    // `v - v` (two sums per value again).
    let zero = core::hint::black_box(T::zero());
    let mut acc = [zero; L];
    // The two directions' loops are written out: one generic loop over
    // either iterator compiled to the same instructions but measured slower
    // in the columns' call in cache (0.28 - 0.34 of the FMA peak against
    // 0.33 - 0.34, `limits --quick`, five runs of each alternating).
    let tail = if core::mem::size_of_val(xs) <= BACKWARD_CHECK_BYTES {
        let mut chunks = xs.rchunks_exact(L);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a = *a + v * zero;
            }
        }
        chunks.remainder()
    } else {
        let mut chunks = xs.chunks_exact(L);
        for c in &mut chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a = *a + v * zero;
            }
        }
        chunks.remainder()
    };
    let tail = tail.iter().fold(zero, |s, &v| s + v * zero);
    acc.iter().fold(tail, |s, &a| s + a) == zero
}

/// Largest batch (in bytes) that [`all_finite_in`] reads backwards: about
/// what a last-level cache holds. Beyond it only a negligible head of the
/// batch would still be cached for the rotation, and the pass keeps the
/// forward order that every prefetcher follows.
const BACKWARD_CHECK_BYTES: usize = 32 << 20;

/// The portable row kernel.
pub(crate) fn rows_portable<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    src: Option<&[T]>,
    x: &mut [T],
    tile: usize,
    scratch: &mut [T],
) -> (bool, bool) {
    rows::<Plain, ByElement, T, 8, 16>(rot, op, src, x, tile, scratch)
}

/// The portable kernel.
pub(crate) fn run_portable<T: Real>(
    rot: &Rotation<'_, T>,
    op: Op,
    data: &mut [T],
    ld: usize,
    base: usize,
    tw: usize,
) -> bool {
    run::<Plain, ByElement, T, 8, 16>(rot, op, data, ld, base, tw)
}

#[cfg(test)]
mod tests {
    use super::{block_map, full, Applied, Arith, Fused, Kernel, Plain, ANY_MAP, AS_STORED, TRANSPOSED};
    use crate::{Block, Layout, Op, Real, Rotation};
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const LAYOUTS: [Layout; 4] = [Layout::Chain, Layout::Tree, Layout::Full, Layout::FullParallel];
    const OPS: [Op; 4] = [Op::Forward, Op::Transpose, Op::Inverse, Op::InverseTranspose];

    fn rng(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// Strict blocks from angles, or quasi blocks within 0.02 of them.
    fn blocks<T: Real>(n: usize, quasi: bool, seed: &mut u64) -> Vec<Block<T>> {
        (0..n)
            .map(|_| {
                let th = 6.0 * rng(seed);
                let (s, c) = th.sin_cos();
                let mut p = || if quasi { 0.04 * rng(seed) } else { 0.0 };
                Block {
                    a: T::from_f64(c + p()),
                    b: T::from_f64(-s + p()),
                    c: T::from_f64(s + p()),
                    e: T::from_f64(c + p()),
                }
            })
            .collect()
    }

    /// A case's blocks (one per rotation of `layout` at width `d`) and a
    /// scaling with entries in `[0.75, 1.25)`.
    fn case<T: Real>(layout: Layout, d: usize, quasi: bool, seed: &mut u64) -> (Vec<Block<T>>, Vec<T>) {
        let bl = blocks::<T>(layout.num_rotations(d), quasi, seed);
        let sc = (0..d).map(|_| T::from_f64(1.0 + 0.5 * rng(seed))).collect();
        (bl, sc)
    }

    /// The quasi or strict rotation on `bl`.
    fn rotation<'a, T: Real>(
        layout: Layout,
        d: usize,
        bl: &'a [Block<T>],
        scale: Option<&'a [T]>,
        quasi: bool,
    ) -> Rotation<'a, T> {
        if quasi { Rotation::quasi(layout, d, bl, scale) } else { Rotation::strict(layout, d, bl, scale) }
            .expect("rotation")
    }

    /// The plain definition, one vector at a time: the stages in order,
    /// each block as two products and a sum.
    fn reference<T: Real>(rot: &Rotation<'_, T>, op: Op, x: &mut [T]) {
        let d = rot.dim();
        let scale = |x: &mut [T]| {
            if let Some(s) = rot.scale() {
                for (v, &si) in x.iter_mut().zip(s) {
                    *v = if matches!(op, Op::Inverse | Op::InverseTranspose) { *v / si } else { *v * si };
                }
            }
        };
        let ascending = matches!(op, Op::Forward | Op::InverseTranspose);
        let mut stages: Vec<_> = rot.layout().stages(d).collect();
        if !ascending {
            stages.reverse();
        }
        for v in x.chunks_exact_mut(d) {
            if ascending {
                scale(v);
            }
            for st in &stages {
                for (t, p) in st.planes().enumerate() {
                    let b = rot.effective(op, rot.blocks()[st.offset + t]);
                    let (u, w) = b.apply(v[p.i], v[p.j]);
                    v[p.i] = u;
                    v[p.j] = w;
                }
            }
            if !ascending {
                scale(v);
            }
        }
    }

    /// Largest difference between the kernels' results over
    /// `(stages + 2) u max|y| G`, where `G` bounds the growth (the product of
    /// the stages' largest block norms, 1 for rotations); at most a few
    /// units are expected (one rounding per rotation output changes).
    fn worst<T: Real>(layout: Layout, d: usize, n: usize, quasi: bool, scaled: bool, seed: u64) -> f64 {
        let mut seed = seed;
        let (bl, sc) = case::<T>(layout, d, quasi, &mut seed);
        let scale = if scaled { Some(&sc[..]) } else { None };
        let rot = rotation(layout, d, &bl, scale, quasi);
        let x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
        let mut growth = 1.0f64;
        for st in layout.stages(d) {
            let m = bl[st.params()]
                .iter()
                .map(|b| b.to_array().iter().map(|v| Real::to_f64(*v).powi(2)).sum::<f64>().sqrt())
                .fold(1.0f64, f64::max);
            growth *= if quasi { m * m } else { 1.0 };
        }
        let mut worst = 0.0f64;
        for op in OPS {
            let mut want = x.clone();
            reference(&rot, op, &mut want);
            let ymax = want.iter().map(|v| Real::to_f64(*v).abs()).fold(1e-300, f64::max) * 2.0;
            let unit = (layout.num_stages(d) + 2) as f64 * Real::to_f64(T::UNIT_ROUNDOFF) * ymax * growth;
            for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let r = rot.with_kernel(k).expect("available");
                // Rows, columns and strided (coordinate-major) batches.
                let mut rows = x.clone();
                r.apply_rows(op, &mut rows).expect("rows");
                let mut into = alloc::vec![T::zero(); n * d];
                r.apply_rows_into(op, &x, &mut into).expect("rows into");
                for (a, b) in rows.iter().zip(&into) {
                    assert_eq!(Real::to_f64(*a).to_bits(), Real::to_f64(*b).to_bits(), "{layout:?} {op:?} into");
                }
                let mut cols = alloc::vec![T::zero(); n * d];
                for l in 0..n {
                    for i in 0..d {
                        cols[i * n + l] = x[l * d + i];
                    }
                }
                r.apply_cols(op, &mut cols, n).expect("cols");
                let mut strided = cols.clone();
                for l in 0..n {
                    for i in 0..d {
                        strided[i * n + l] = x[l * d + i];
                    }
                }
                r.apply_strided(op, &mut strided, n, 1, n).expect("strided");
                // Vectors apart (element stride 1, vector stride d + 3): one
                // vector at a time, its base beyond the element stride.
                let mut apart = alloc::vec![T::zero(); n * (d + 3)];
                for l in 0..n {
                    apart[l * (d + 3)..l * (d + 3) + d].copy_from_slice(&x[l * d..l * d + d]);
                }
                r.apply_strided(op, &mut apart, n, d + 3, 1).expect("strided apart");
                for l in 0..n {
                    for i in 0..d {
                        let w = want[l * d + i];
                        if k == Kernel::Portable {
                            assert_eq!(apart[l * (d + 3) + i], w, "{layout:?} {op:?} apart");
                        }
                        worst = worst.max(Real::to_f64((apart[l * (d + 3) + i] - w).abs()) / unit);
                    }
                }
                for l in 0..n {
                    for i in 0..d {
                        let w = want[l * d + i];
                        for got in [rows[l * d + i], cols[i * n + l], strided[i * n + l]] {
                            if k == Kernel::Portable {
                                // The portable kernels are the definition, bitwise.
                                assert_eq!(got, w, "{layout:?} {op:?} d={d} n={n} lane {l} coordinate {i}");
                            }
                            worst = worst.max(Real::to_f64((got - w).abs()) / unit);
                        }
                    }
                }
            }
        }
        worst
    }

    macro_rules! twin_props {
        ($name:ident, $t:ty) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(96))]
                #[test]
                fn $name(layout in 0usize..4, d in 1usize..=40, n in 1usize..=70, quasi in any::<bool>(),
                         scaled in any::<bool>(), seed in any::<u64>()) {
                    let w = worst::<$t>(LAYOUTS[layout], d, n, quasi, scaled, seed);
                    prop_assert!(w <= 4.0, "kernels differ by {w} units");
                }
            }
        };
    }

    twin_props!(kernels_agree_f32, f32);
    twin_props!(kernels_agree_f64, f64);

    macro_rules! finite_props {
        ($name:ident, $t:ty) => {
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(256))]
                /// The finiteness test on every kernel: true on finite
                /// values of any size (zeros of both signs, the extremes),
                /// false as soon as one NaN or infinity is anywhere, at any
                /// length around the 64-value chunks.
                #[test]
                fn $name(len in 0usize..200, at in any::<prop::sample::Index>(), which in 0usize..3,
                         vals in prop::collection::vec(-1.0e3f64..1.0e3, 200)) {
                    let mut xs: Vec<$t> = vals[..len].iter().map(|&v| <$t as Real>::from_f64(v)).collect();
                    if len > 2 {
                        xs[0] = -<$t>::MAX;
                        xs[1] = -0.0;
                        xs[len - 1] = <$t>::MAX;
                    }
                    for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                        prop_assert!(crate::simd::Dispatch::all_finite(k, &xs), "{k:?}");
                    }
                    if len > 0 {
                        xs[at.index(len)] = [<$t>::NAN, <$t>::INFINITY, <$t>::NEG_INFINITY][which];
                        for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                            prop_assert!(!crate::simd::Dispatch::all_finite(k, &xs), "{k:?} at {}", at.index(len));
                        }
                    }
                }
            }
        };
    }

    finite_props!(finiteness_test_f32, f32);
    finite_props!(finiteness_test_f64, f64);

    /// Sizes where the fused tree kernels have whole register blocks and
    /// lane chunks (and a partial last block), which small random sizes
    /// rarely reach.
    #[test]
    fn kernels_agree_on_fused_sizes() {
        for (d, n) in [(64, 64), (256, 40), (200, 33), (129, 17), (512, 16), (3000, 9)] {
            for layout in [Layout::Tree, Layout::Chain] {
                for quasi in [false, true] {
                    assert!(worst::<f32>(layout, d, n, quasi, true, d as u64) <= 4.0, "{layout:?} d={d} n={n}");
                    assert!(worst::<f64>(layout, d, n, quasi, false, n as u64) <= 4.0, "{layout:?} d={d} n={n}");
                }
            }
        }
        for (d, n) in [(40, 48), (33, 20)] {
            assert!(worst::<f64>(Layout::Full, d, n, true, true, 7) <= 4.0, "Full d={d} n={n}");
            assert!(worst::<f32>(Layout::Full, d, n, false, false, 8) <= 4.0, "Full d={d} n={n}");
        }
    }

    /// The backward is compiled for each kernel's instruction set without
    /// fusing products: bitwise the portable result (`f32` and `f64`, both
    /// operators, with and without scaling, row counts that leave a partial
    /// group of 8 or no whole one).
    #[test]
    fn backward_is_bitwise_the_same_on_every_kernel() {
        use crate::grad::{vjp_rows, vjp_rows_from_input, workspace_len, workspace_len_from_input, Saved};
        fn check<T: Real>(layout: Layout, d: usize, n: usize, quasi: bool, scaled: bool, op: Op) {
            let mut seed = d as u64 ^ (n as u64) << 20;
            let bl = blocks::<T>(layout.num_rotations(d), quasi, &mut seed);
            let sc: Vec<T> = (0..d).map(|_| T::from_f64(1.0 + 0.25 * rng(&mut seed))).collect();
            let sc = scaled.then_some(&sc[..]);
            let x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            let g0: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            let mut results = Vec::new();
            for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let rot = rotation(layout, d, &bl, sc, quasi).with_kernel(k).expect("available");
                // The strict backward from the output too (the fused tree),
                // the same output for every kernel (the portable forward's).
                let mut y = x.clone();
                rot.with_kernel(Kernel::Portable).expect("portable").apply_rows(op, &mut y).expect("fwd");
                let strict = [Saved::Input(&x[..]), Saved::Output(&y[..])];
                let mut flat = Vec::new();
                for saved in strict.into_iter().take(if quasi { 1 } else { 2 }) {
                    let mut g = g0.clone();
                    let mut db = alloc::vec![Block::default(); bl.len()];
                    let mut ds = alloc::vec![T::zero(); d];
                    let mut work = alloc::vec![T::zero(); workspace_len(&rot, saved)];
                    let dsc = scaled.then_some(&mut ds[..]);
                    vjp_rows(&rot, op, saved, &mut g, &mut db, dsc, &mut work).expect("vjp");
                    let blocks = db.iter().flat_map(|b| b.to_array());
                    flat.extend(g.iter().copied().chain(blocks).chain(ds).map(|v| v.to_f64().to_bits()));
                }
                // From the input side (for `Op::Transpose` with `d` a
                // multiple of 8, the sums of 8 x 8 blocks).
                if !quasi && !scaled {
                    let mut db = alloc::vec![Block::default(); bl.len()];
                    let mut work = alloc::vec![T::zero(); workspace_len_from_input(&rot, &x)];
                    vjp_rows_from_input(&rot, op, &x, &g0, &mut db, &mut work).expect("vjp from the input");
                    flat.extend(db.iter().flat_map(|b| b.to_array()).map(|v| v.to_f64().to_bits()));
                }
                results.push(flat);
            }
            assert!(results.windows(2).all(|w| w[0] == w[1]), "{layout:?} d={d} n={n} {op:?} scaled={scaled}");
        }
        for (layout, d, n, quasi) in [
            (Layout::Tree, 37, 70, false),
            (Layout::Tree, 300, 70, false),
            (Layout::Tree, 64, 72, false),
            (Layout::Tree, 768, 136, false),
            (Layout::Chain, 20, 33, true),
            (Layout::Full, 9, 17, true),
        ] {
            check::<f64>(layout, d, n, quasi, false, Op::Transpose);
        }
        check::<f64>(Layout::Tree, 32, 200, false, false, Op::Forward);
        for (d, n) in
            [(8, 9), (16, 5), (24, 70), (48, 13), (64, 72), (96, 70), (776, 24), (768, 136), (32, 200), (1024, 70)]
        {
            for op in [Op::Transpose, Op::Forward] {
                for scaled in [false, true] {
                    check::<f32>(Layout::Tree, d, n, false, scaled, op);
                }
            }
        }
    }

    /// The full layout's wavefront evaluates every rotation on the values
    /// that the column-by-column walk gives it: bitwise the same results.
    #[test]
    fn full_wavefront_is_bitwise_column_by_column() {
        // Wavefronts of 5 columns on a chunk of two registers and of 3 on
        // one, with the block map `MAP`.
        fn wavefront<M: Arith, T: Real, const MAP: u8>(rot: &Rotation<'_, T>, op: Op, x: &[T], tw: usize) -> Vec<T> {
            let mut w = x.to_vec();
            full::<M, T, [T; 4], _, 2, 5>(Applied::<T, MAP> { rot, op }, &mut w, tw, 0, 8);
            full::<M, T, [T; 4], _, 1, 3>(Applied::<T, MAP> { rot, op }, &mut w, tw, 8, 4);
            w
        }
        // Widths below, at and around multiples of the wavefront, with a
        // chunk of two registers and one of one; every operator, strict and
        // quasi blocks, both arithmetics.
        fn check<M: Arith, T: Real>(d: usize, quasi: bool, seed: u64) {
            let mut seed = seed;
            let bl = blocks::<T>(Layout::Full.num_rotations(d), quasi, &mut seed);
            let rot = rotation(Layout::Full, d, &bl, None, quasi);
            let tw = 12;
            let x: Vec<T> = (0..d * tw).map(|_| T::from_f64(rng(&mut seed))).collect();
            for op in [Op::Forward, Op::Transpose, Op::Inverse, Op::InverseTranspose] {
                let mut one = x.clone();
                full::<M, T, [T; 4], _, 2, 1>(Applied::<T> { rot: &rot, op }, &mut one, tw, 0, 8);
                full::<M, T, [T; 4], _, 1, 1>(Applied::<T> { rot: &rot, op }, &mut one, tw, 8, 4);
                let wave = wavefront::<M, T, ANY_MAP>(&rot, op, &x, tw);
                // The block map fixed when compiled, as the SIMD kernels
                // take it: the blocks `Rotation::effective` gives.
                let map = block_map(&rot, op);
                assert_eq!(map == ANY_MAP, quasi && op.inverts(), "d={d} {op:?}");
                let mapped = match map {
                    AS_STORED => wavefront::<M, T, AS_STORED>(&rot, op, &x, tw),
                    TRANSPOSED => wavefront::<M, T, TRANSPOSED>(&rot, op, &x, tw),
                    _ => wave.clone(),
                };
                assert_ne!(one, x, "d={d} {op:?}: nothing rotated");
                let bits = |v: &[T]| v.iter().map(|&a| Real::to_f64(a).to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one), bits(&wave), "d={d} quasi={quasi} {op:?}");
                assert_eq!(bits(&one), bits(&mapped), "d={d} quasi={quasi} {op:?}: block map {map}");
            }
        }
        for d in [2usize, 3, 4, 5, 6, 7, 11, 16, 23, 40] {
            for quasi in [false, true] {
                check::<Plain, f64>(d, quasi, d as u64);
                check::<Fused, f64>(d, quasi, 2 * d as u64);
                check::<Plain, f32>(d, quasi, 3 * d as u64);
                check::<Fused, f32>(d, quasi, 4 * d as u64);
            }
        }
    }

    /// The full layout's columns go through the processor's registers, a
    /// wavefront of [`FULL_WAVE`] columns (see [`Transposer::full`]); its
    /// rows through arrays, one column at a time: bitwise the same results
    /// on every kernel, operator and block kind, for batches with chunks of
    /// two 512-bit registers, of one, and lanes left over.
    #[test]
    fn full_layout_registers_are_bitwise_the_arrays() {
        fn check<T: Real>(d: usize, quasi: bool, scaled: bool, seed: u64) {
            let mut seed = seed;
            let (bl, sc) = case::<T>(Layout::Full, d, quasi, &mut seed);
            let scale = if scaled { Some(&sc[..]) } else { None };
            let rot = rotation(Layout::Full, d, &bl, scale, quasi);
            let n = 53;
            let x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            let bits = |v: &[T]| v.iter().map(|v| Real::to_f64(*v).to_bits()).collect::<Vec<u64>>();
            for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let r = rot.with_kernel(k).expect("available");
                for op in OPS {
                    let mut rows = x.clone();
                    r.apply_rows(op, &mut rows).expect("rows");
                    let mut cols = alloc::vec![T::zero(); n * d];
                    for l in 0..n {
                        for i in 0..d {
                            cols[i * n + l] = x[l * d + i];
                        }
                    }
                    r.apply_cols(op, &mut cols, n).expect("cols");
                    let back: Vec<T> = (0..n * d).map(|q| cols[(q % d) * n + q / d]).collect();
                    assert_ne!(rows, x, "d={d} {op:?}: nothing rotated");
                    assert!(bits(&rows) == bits(&back), "d={d} quasi={quasi} scaled={scaled} {k:?} {op:?}");
                }
            }
        }
        for d in [2usize, 3, 5, 6, 7, 11, 16, 23] {
            for (quasi, scaled) in [(false, false), (false, true), (true, false), (true, true)] {
                check::<f32>(d, quasi, scaled, 7 * d as u64);
                check::<f64>(d, quasi, scaled, 11 * d as u64);
            }
        }
    }

    /// The tree on the processor's registers (`tree_regs`, under every SIMD
    /// kernel's `apply_cols`) is bitwise the arrays' kernel with the same
    /// fused arithmetic (`run` with no register hook, its multiply-adds
    /// exactly rounded in software): every operator, strict (exact) and
    /// quasi blocks, scaled or not, widths with partial blocks, lane counts
    /// with and without a partial register.
    #[test]
    fn tree_on_registers_is_bitwise_the_arrays() {
        fn check<T: Real>(d: usize, n: usize, quasi: bool, scaled: bool, seed: u64) {
            let mut seed = seed;
            let (bl, sc) = case::<T>(Layout::Tree, d, quasi, &mut seed);
            let scale = if scaled { Some(&sc[..]) } else { None };
            let rot = rotation(Layout::Tree, d, &bl, scale, quasi);
            let x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            let bits = |v: &[T]| v.iter().map(|v| Real::to_f64(*v).to_bits()).collect::<Vec<u64>>();
            for op in OPS {
                let mut arrays = x.clone();
                super::run::<Fused, super::ByElement, T, 8, 32>(&rot, op, &mut arrays, n, 0, n);
                assert_ne!(arrays, x, "d={d} {op:?}: nothing rotated");
                for k in [Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| k.is_available()) {
                    let mut regs = x.clone();
                    rot.with_kernel(k).expect("available").apply_cols(op, &mut regs, n).expect("cols");
                    assert!(bits(&regs) == bits(&arrays), "d={d} n={n} quasi={quasi} scaled={scaled} {k:?} {op:?}");
                }
            }
        }
        for (d, n) in
            [(2, 40), (3, 33), (5, 19), (8, 16), (17, 48), (33, 35), (64, 7), (255, 70), (256, 64), (1000, 24)]
        {
            for (quasi, scaled) in [(false, false), (false, true), (true, false), (true, true)] {
                check::<f32>(d, n, quasi, scaled, (3 * d + n) as u64);
                check::<f64>(d, n, quasi, scaled, (5 * d + n) as u64);
            }
        }
    }

    /// A finite input whose rotation overflows is reported, one whose
    /// rotation does not is not: [`crate::Error::Overflow`] exactly when the
    /// output written holds a value that is not finite, a single lane among
    /// many included. Every kernel, layout and operator; rows, columns and
    /// out of place; the tree's register kernels check as they write.
    #[test]
    fn overflow_is_reported_exactly_when_an_output_is_not_finite() {
        use crate::Error;
        fn verdict<T: Real>(r: crate::Result<()>, out: &[T], what: &str) -> bool {
            let bad = out.iter().any(|v| !v.is_finite());
            match r {
                Ok(()) => assert!(!bad, "{what}: Ok with a non-finite output"),
                Err(Error::Overflow { .. }) => assert!(bad, "{what}: Overflow with every output finite"),
                Err(e) => panic!("{what}: {e}"),
            }
            bad
        }
        fn check<T: Real>(layout: Layout, d: usize, n: usize, quasi: bool, scaled: bool, seed: u64) -> [usize; 2] {
            let mut seed = seed;
            let (bl, sc) = case::<T>(layout, d, quasi, &mut seed);
            let scale = if scaled { Some(&sc[..]) } else { None };
            let rot = rotation(layout, d, &bl, scale, quasi);
            let mut x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            // Two coordinates of one row near the largest finite value: a
            // rotation that mixes them may overflow, or may not.
            let row = (rng(&mut seed).abs() * n as f64) as usize % n;
            let big = T::max_value() * T::from_f64(0.9);
            x[row * d] = big;
            x[row * d + d - 1] = big;
            let mut seen = [0usize; 2];
            for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let r = rot.with_kernel(k).expect("available");
                for op in OPS {
                    let what = alloc::format!("{layout:?} d={d} n={n} quasi={quasi} scaled={scaled} {k:?} {op:?}");
                    let mut rows = x.clone();
                    let res = r.apply_rows(op, &mut rows);
                    seen[usize::from(verdict(res, &rows, &what))] += 1;
                    let mut into = alloc::vec![T::zero(); n * d];
                    let res = r.apply_rows_into(op, &x, &mut into);
                    seen[usize::from(verdict(res, &into, &what))] += 1;
                    let mut cols = alloc::vec![T::zero(); n * d];
                    for l in 0..n {
                        for i in 0..d {
                            cols[i * n + l] = x[l * d + i];
                        }
                    }
                    let res = r.apply_cols(op, &mut cols, n);
                    seen[usize::from(verdict(res, &cols, &what))] += 1;
                }
            }
            seen
        }
        let mut seen = [0usize; 2];
        for (layout, d, n) in [
            (Layout::Tree, 1, 40),
            (Layout::Tree, 2, 40),
            (Layout::Tree, 17, 33),
            (Layout::Tree, 64, 64),
            (Layout::Tree, 256, 20),
            (Layout::Chain, 9, 40),
            (Layout::Full, 12, 35),
            (Layout::FullParallel, 10, 24),
        ] {
            for (quasi, scaled) in [(false, false), (false, true), (true, false), (true, true)] {
                for seed in 0..4u64 {
                    for (a, b) in seen.iter_mut().zip(check::<f32>(layout, d, n, quasi, scaled, seed + 100 * d as u64))
                    {
                        *a += b;
                    }
                    for (a, b) in seen.iter_mut().zip(check::<f64>(layout, d, n, quasi, scaled, seed + 7 * d as u64)) {
                        *a += b;
                    }
                }
            }
        }
        // Both verdicts occur, so neither half of the check is vacuous.
        assert!(seen[0] > 0 && seen[1] > 0, "finite {} / overflowed {}", seen[0], seen[1]);
    }

    /// The register tree's own check: `true` for ordinary data (so
    /// `apply_cols` skips its output pass), `false` where the sum of a
    /// block's finite outputs overflows, and there `apply_cols` checks the
    /// outputs itself and finds them finite.
    #[test]
    fn register_tree_check_proves_finite_outputs_and_defers_on_large_sums() {
        use crate::simd::Dispatch;
        fn check<T: Real>(d: usize, n: usize, seed: u64) -> usize {
            let mut seed = seed;
            let (bl, _) = case::<T>(Layout::Tree, d, false, &mut seed);
            let rot = rotation(Layout::Tree, d, &bl, None, false);
            // Angle zero everywhere: every output equals its input.
            let one = [Block { a: T::one(), b: T::zero(), c: T::zero(), e: T::one() }];
            let ident: Vec<Block<T>> = one.iter().copied().cycle().take(bl.len()).collect();
            let id = rotation(Layout::Tree, d, &ident, None, false);
            let x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            let big: Vec<T> = x.iter().map(|_| T::max_value() * T::from_f64(0.5)).collect();
            let mut ran = 0;
            for k in [Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| k.is_available()) {
                for op in OPS {
                    let mut y = x.clone();
                    let v = Dispatch::run(k, &rot.with_kernel(k).expect("available"), op, &mut y, n, 0, n);
                    assert!(v, "d={d} n={n} {k:?} {op:?}: ordinary data");
                    let mut y = big.clone();
                    let id = id.with_kernel(k).expect("available");
                    let v = Dispatch::run(k, &id, op, &mut y, n, 0, n);
                    assert!(!v, "d={d} n={n} {k:?} {op:?}: the sums overflow");
                    assert_eq!(y, big, "d={d} {k:?} {op:?}: the identity");
                    let mut y = big.clone();
                    assert_eq!(id.apply_cols(op, &mut y, n), Ok(()), "d={d} n={n} {k:?} {op:?}");
                    assert_eq!(y, big);
                    ran += 1;
                }
            }
            ran
        }
        let mut ran = 0;
        for (d, n) in [(8, 16), (64, 32), (256, 64), (1000, 16)] {
            ran += check::<f32>(d, n, 3 * d as u64);
            ran += check::<f64>(d, n, 5 * d as u64);
        }
        if Kernel::Avx2.is_available() {
            assert!(ran > 0);
        }
    }

    /// AVX2 and AVX-512 do the same arithmetic on every lane (the 16-row
    /// register blocks of AVX-512 included), so their results are bitwise
    /// the same and [`Kernel::best`] may choose between them by speed alone.
    #[test]
    fn simd_widths_agree_bitwise() {
        use crate::grad::{vjp_rows, workspace_len, Saved};
        fn check<T: Real>(layout: Layout, d: usize, n: usize, quasi: bool, scaled: bool, seed: u64) {
            let mut seed = seed;
            let (bl, sc) = case::<T>(layout, d, quasi, &mut seed);
            let scale = if scaled { Some(&sc[..]) } else { None };
            let rot = rotation(layout, d, &bl, scale, quasi);
            let x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            let g0: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            let bits = |v: &[T]| v.iter().map(|v| Real::to_f64(*v).to_bits()).collect::<Vec<u64>>();
            for op in OPS {
                let mut out = Vec::new();
                for k in [Kernel::Avx2, Kernel::Avx512] {
                    let r = rot.with_kernel(k).expect("available");
                    let mut rows = x.clone();
                    r.apply_rows(op, &mut rows).expect("rows");
                    let mut into = alloc::vec![T::zero(); n * d];
                    r.apply_rows_into(op, &x, &mut into).expect("rows into");
                    let mut cols = x.clone();
                    r.apply_cols(op, &mut cols, n).expect("cols");
                    // Vectors apart: element stride 1, vector stride d + 3.
                    let mut apart = alloc::vec![T::zero(); n * (d + 3)];
                    for l in 0..n {
                        apart[l * (d + 3)..l * (d + 3) + d].copy_from_slice(&x[l * d..l * d + d]);
                    }
                    r.apply_strided(op, &mut apart, n, d + 3, 1).expect("strided");
                    // The backward (of the two operators that have one) from
                    // the input, and from the output for a strict rotation
                    // (the tree's fused row kernel).
                    let mut grads = Vec::new();
                    let saved = [Saved::Input(&x[..]), Saved::Output(&rows[..])];
                    let vjps = if matches!(op, Op::Forward | Op::Transpose) { 1 + usize::from(!quasi) } else { 0 };
                    for saved in saved.into_iter().take(vjps) {
                        let mut g = g0.clone();
                        let mut db = alloc::vec![Block::default(); bl.len()];
                        let mut ds = alloc::vec![T::zero(); d];
                        let mut work = alloc::vec![T::zero(); workspace_len(&r, saved)];
                        vjp_rows(&r, op, saved, &mut g, &mut db, scaled.then_some(&mut ds[..]), &mut work)
                            .expect("vjp");
                        grads.extend(g.iter().chain(&ds).copied().chain(db.iter().flat_map(|b| b.to_array())));
                    }
                    out.push([bits(&rows), bits(&into), bits(&cols), bits(&apart), bits(&grads)]);
                }
                assert_ne!(out[0][0], bits(&x), "{layout:?} d={d} {op:?}: nothing rotated");
                for (e, what) in ["rows", "rows into", "cols", "strided", "vjp"].iter().enumerate() {
                    assert!(
                        out[0][e] == out[1][e],
                        "{layout:?} d={d} n={n} quasi={quasi} scaled={scaled} {op:?} {what}"
                    );
                }
            }
        }
        if !(Kernel::Avx2.is_available() && Kernel::Avx512.is_available()) {
            // One width or none here: nothing to compare.
            return;
        }
        // Rows of 16-row groups and a last group of 8 (n = 40), strides
        // that take the 16-row blocks (64 to 768 coordinates) and those
        // that do not (1024: every row in one cache set), `d` not a
        // multiple of 8.
        for (d, n) in [(8, 40), (13, 37), (64, 48), (256, 40), (512, 24), (768, 40), (1024, 24)] {
            for layout in LAYOUTS.into_iter().filter(|l| d <= 256 || *l == Layout::Tree) {
                for (quasi, scaled) in [(false, false), (false, true), (true, false), (true, true)] {
                    check::<f32>(layout, d, n, quasi, scaled, (d * n) as u64);
                    check::<f64>(layout, d, n, quasi, scaled, (d + n) as u64);
                }
            }
        }
    }

    /// Exact blocks (`[[a, b], [-b, a]]` bit for bit) are evaluated from two
    /// coefficients: bitwise the four-coefficient results, for every layout,
    /// kernel, operator, scaling, rows and columns. A strict block off by
    /// an ulp keeps the rotation strict but not exact.
    #[test]
    fn exact_blocks_are_bitwise_the_four_coefficient_walk() {
        fn check<T: Real>(layout: Layout, d: usize, scaled: bool, seed: u64) {
            let mut seed = seed;
            let bl = blocks::<T>(layout.num_rotations(d), false, &mut seed);
            let sc: Vec<T> = (0..d).map(|_| T::from_f64(1.0 + 0.5 * rng(&mut seed))).collect();
            let scale = if scaled { Some(&sc[..]) } else { None };
            let rot = Rotation::strict(layout, d, &bl, scale).expect("rotation");
            assert!(rot.is_exact(), "{layout:?} d={d}");
            let n = 21;
            let x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let r = rot.with_kernel(k).expect("available");
                for op in OPS {
                    for cols in [false, true] {
                        let (mut two, mut four) = (x.clone(), x.clone());
                        if cols {
                            r.apply_cols(op, &mut two, n).expect("cols");
                            r.without_exact().apply_cols(op, &mut four, n).expect("cols");
                        } else {
                            r.apply_rows(op, &mut two).expect("rows");
                            r.without_exact().apply_rows(op, &mut four).expect("rows");
                        }
                        assert_ne!(two, x, "{layout:?} d={d} {op:?}: nothing rotated");
                        let same = two
                            .iter()
                            .zip(&four)
                            .all(|(&a, &b)| Real::to_f64(a).to_bits() == Real::to_f64(b).to_bits());
                        assert!(same, "{layout:?} d={d} scaled={scaled} {k:?} {op:?} cols={cols}");
                    }
                }
            }
            let mut off = bl.clone();
            off[0].e = off[0].a + off[0].a * T::UNIT_ROUNDOFF * T::from_f64(2.0);
            let r = Rotation::strict(layout, d, &off, scale).expect("within the strict tolerance");
            assert!(r.is_strict() && !r.is_exact(), "{layout:?} d={d}");
        }
        for layout in LAYOUTS {
            for d in [2usize, 3, 7, 8, 13, 24] {
                for scaled in [false, true] {
                    check::<f64>(layout, d, scaled, d as u64 + 100);
                    check::<f32>(layout, d, scaled, d as u64 + 200);
                }
            }
        }
    }

    /// The fused row kernel of the tree evaluates every rotation as the
    /// structure-of-arrays kernel does: rows and columns agree bitwise for
    /// every kernel, operator, block kind and scaling.
    #[test]
    fn fused_tree_rows_are_bitwise_the_column_kernel() {
        fn check<T: Real>(d: usize, n: usize, quasi: bool, scaled: bool, seed: u64) {
            let mut seed = seed;
            let (bl, sc) = case::<T>(Layout::Tree, d, quasi, &mut seed);
            let scale = if scaled { Some(&sc[..]) } else { None };
            let rot = rotation(Layout::Tree, d, &bl, scale, quasi);
            let x: Vec<T> = (0..n * d).map(|_| T::from_f64(rng(&mut seed))).collect();
            for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let r = rot.with_kernel(k).expect("available");
                for op in OPS {
                    let mut rows = x.clone();
                    r.apply_rows(op, &mut rows).expect("rows");
                    let mut into = alloc::vec![T::zero(); n * d];
                    r.apply_rows_into(op, &x, &mut into).expect("rows into");
                    assert!(rows
                        .iter()
                        .zip(&into)
                        .all(|(a, b)| Real::to_f64(*a).to_bits() == Real::to_f64(*b).to_bits()));
                    let mut cols = alloc::vec![T::zero(); n * d];
                    for l in 0..n {
                        for i in 0..d {
                            cols[i * n + l] = x[l * d + i];
                        }
                    }
                    r.apply_cols(op, &mut cols, n).expect("cols");
                    for l in 0..n {
                        for i in 0..d {
                            assert_eq!(
                                rows[l * d + i].to_f64().to_bits(),
                                cols[i * n + l].to_f64().to_bits(),
                                "{k:?} {op:?} d={d} n={n} quasi={quasi} scaled={scaled} row {l} coordinate {i}"
                            );
                        }
                    }
                }
            }
        }
        for (d, n) in [
            (8, 8),
            (16, 24),
            (24, 17),
            (64, 64),
            (128, 72),
            (136, 9),
            (768, 20),
            (2048, 16),
            (4096, 8),
            (4104, 9),
            (5120, 9),
        ] {
            for (quasi, scaled) in [(false, false), (false, true), (true, false), (true, true)] {
                check::<f32>(d, n, quasi, scaled, (d * n) as u64);
                check::<f64>(d, n, quasi, scaled, (d + n) as u64);
            }
        }
    }

    #[test]
    fn rows_fall_into_the_sets_of_their_stride() {
        assert_eq!(super::row_sets::<f32>(1024, 8), 1);
        assert_eq!(super::row_sets::<f32>(5120, 8), 1);
        assert_eq!(super::row_sets::<f32>(512, 8), 2);
        assert_eq!(super::row_sets::<f32>(768, 8), 4);
        assert_eq!(super::row_sets::<f32>(4104, 8), 4);
        assert_eq!(super::row_sets::<f32>(128, 8), 8);
        assert_eq!(super::row_sets::<f64>(512, 8), 1);
        assert_eq!(super::row_sets::<f64>(8, 8), 8);
        // Sixteen rows: more sets only where 8 rows do not already repeat them.
        assert_eq!(super::row_sets::<f32>(1024, 16), 1);
        assert_eq!(super::row_sets::<f32>(512, 16), 2);
        assert_eq!(super::row_sets::<f32>(768, 16), 4);
        assert_eq!(super::row_sets::<f32>(4104, 16), 8);
        assert_eq!(super::row_sets::<f32>(128, 16), 8);
    }

    #[test]
    fn unavailable_kernel_is_an_error() {
        let bl = [Block::<f64>::identity(); 3];
        let rot = Rotation::strict(Layout::Tree, 4, &bl, None).expect("rotation");
        for k in Kernel::ALL {
            assert_eq!(rot.with_kernel(k).is_ok(), k.is_available());
        }
        assert!(Kernel::best().is_available());
    }

    /// Column batches take [`Kernel::best_columns`] unless a kernel was
    /// chosen, and a chosen kernel runs them (rows and columns alike), with
    /// the same bits as the default choice where the two are one kernel.
    #[test]
    fn columns_take_their_own_kernel_unless_one_is_chosen() {
        for layout in [Layout::Chain, Layout::Tree, Layout::Full] {
            let d = 24;
            let k = layout.num_rotations(d);
            let params: Vec<f32> = (0..k).map(|i| (i as f32 * 0.37).sin()).collect();
            let r = crate::RotationBuf::from_angles(layout, d, crate::AngleMap::Raw, &params, None).expect("rotation");
            let rot = r.as_rotation();
            assert_eq!(rot.columns_kernel(), Kernel::best_columns(layout));
            assert_eq!(rot.kernel(), Kernel::best());
            if layout == Layout::Chain {
                assert_eq!(Kernel::best_columns(layout), Kernel::best());
            }
            let n = 16;
            let x: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.11).cos()).collect();
            for kern in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let chosen = rot.with_kernel(kern).expect("available");
                assert_eq!((chosen.kernel(), chosen.columns_kernel()), (kern, kern));
                // The same batch as columns under the chosen kernel and
                // under the default choice for columns, when they are the
                // same kernel, give the same bits.
                let mut a = x.clone();
                chosen.apply_cols(Op::Forward, &mut a, n).expect("finite");
                if kern == rot.columns_kernel() {
                    let mut b = x.clone();
                    rot.apply_cols(Op::Forward, &mut b, n).expect("finite");
                    assert_eq!(a, b, "{layout:?} {kern:?}");
                }
            }
        }
    }

    /// The out-of-place rows check the input as they read it: the first
    /// non-finite value is named and the input is left as it was, on the
    /// fused path (d = 64) and the others (d = 60, the chain).
    #[test]
    fn non_finite_input_into_is_reported_and_input_kept() {
        // d = 512: rows 2 KiB apart, the paired blocks; d = 1024: 4 KiB
        // apart, copied then rotated in place.
        for (layout, d) in
            [(Layout::Tree, 64), (Layout::Tree, 512), (Layout::Tree, 1024), (Layout::Tree, 60), (Layout::Chain, 64)]
        {
            let bl = alloc::vec![Block::<f32>::identity(); d - 1];
            for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
                let rot = Rotation::strict(layout, d, &bl, None).expect("rotation").with_kernel(k).expect("k");
                for (bad, at) in [
                    (f32::NAN, d * 20 + 5),
                    (f32::NAN, d * 9 + 12),
                    (f32::INFINITY, d * 36 + 1),
                    (f32::NEG_INFINITY, 0),
                ] {
                    let mut x = alloc::vec![1.0f32; d * 37];
                    x[at] = bad;
                    let x0 = x.clone();
                    let mut out = alloc::vec![0.0f32; d * 37];
                    let err = rot.apply_rows_into(Op::Transpose, &x, &mut out).unwrap_err();
                    assert!(matches!(err, crate::Error::NonFinite { index, .. } if index == at), "{err:?}");
                    assert!(x.iter().zip(&x0).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
                let x = alloc::vec![1.0f32; d * 3];
                let mut out = alloc::vec![0.0f32; d * 3 + 1];
                assert!(matches!(
                    rot.apply_rows_into(Op::Forward, &x, &mut out),
                    Err(crate::Error::ShapeMismatch { .. })
                ));
            }
        }
    }

    #[test]
    fn non_finite_input_is_reported_and_nothing_written() {
        let bl = [Block::<f32>::identity(); 63];
        for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
            let rot = Rotation::strict(Layout::Tree, 64, &bl, None).expect("rotation").with_kernel(k).expect("k");
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut x = alloc::vec![1.0f32; 64 * 37];
                x[64 * 20 + 5] = bad;
                let x0 = x.clone();
                let err = rot.apply_cols(Op::Transpose, &mut x, 37).unwrap_err();
                assert!(matches!(err, crate::Error::NonFinite { index, .. } if index == 64 * 20 + 5), "{err:?}");
                assert!(x.iter().zip(&x0).all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        }
    }
}
