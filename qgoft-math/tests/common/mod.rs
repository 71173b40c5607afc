//! Shared helpers of the property tests: bit-level access to the scalar
//! types, ulp distances, higher-precision references, dense linear algebra in
//! extended precision, and input strategies.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use proptest::prelude::*;
use qgoft_math::{Block, Layout, Real};

// ---------------------------------------------------------------------------
// Scalar types seen as bit patterns.

/// What the properties need from `f32` and `f64` beyond [`Real`].
pub trait TestReal: Real + core::fmt::LowerExp {
    /// Number of stored mantissa bits.
    const MANT_BITS: u32;
    /// Largest biased exponent of a finite value.
    const MAX_BIASED_EXP: u64;
    /// Total width in bits.
    const WIDTH: u32;
    /// Name used in messages.
    const NAME: &'static str;
    /// The bit pattern, zero-extended.
    fn bits(self) -> u64;
    /// The value of a bit pattern.
    fn from_bits_u64(bits: u64) -> Self;
    /// The reference Givens rotation, from arithmetic in higher precision.
    fn givens_reference(a: Self, b: Self) -> GivensReference<Self>;
    /// `c^2 + s^2 - 1`, evaluated so that its own rounding error is
    /// negligible against the unit roundoff of `Self`.
    fn norm_defect(c: Self, s: Self) -> f64;
}

impl TestReal for f32 {
    const MANT_BITS: u32 = 23;
    const MAX_BIASED_EXP: u64 = 254;
    const WIDTH: u32 = 32;
    const NAME: &'static str = "f32";
    fn bits(self) -> u64 {
        self.to_bits() as u64
    }
    fn from_bits_u64(bits: u64) -> Self {
        f32::from_bits(bits as u32)
    }
    fn givens_reference(a: f32, b: f32) -> GivensReference<f32> {
        // In f64 nothing over- or underflows for f32 inputs, and the relative
        // error of each quantity is about 2^-52: far below an f32 ulp.
        let (a, b) = (a as f64, b as f64);
        if b == 0.0 {
            return GivensReference { c: 1.0, s: 0.0, r: a as f32, overflow_band: false };
        }
        if a == 0.0 {
            return GivensReference { c: 0.0, s: 1f32.copysign(b as f32), r: b.abs() as f32, overflow_band: false };
        }
        let h = (a * a + b * b).sqrt();
        let r = h.copysign(a);
        let band = (h / f32::MAX as f64 - 1.0).abs() <= 4.0 * f32::UNIT_ROUNDOFF as f64;
        GivensReference { c: (a.abs() / h) as f32, s: (b / r) as f32, r: r as f32, overflow_band: band }
    }
    fn norm_defect(c: f32, s: f32) -> f64 {
        let (c, s) = (c as f64, s as f64);
        // c*c and s*s are exact in f64; the sum rounds once, at 2^-53.
        c * c + s * s - 1.0
    }
}

impl TestReal for f64 {
    const MANT_BITS: u32 = 52;
    const MAX_BIASED_EXP: u64 = 2046;
    const WIDTH: u32 = 64;
    const NAME: &'static str = "f64";
    fn bits(self) -> u64 {
        self.to_bits()
    }
    fn from_bits_u64(bits: u64) -> Self {
        f64::from_bits(bits)
    }
    fn givens_reference(a: f64, b: f64) -> GivensReference<f64> {
        if b == 0.0 {
            return GivensReference { c: 1.0, s: 0.0, r: a, overflow_band: false };
        }
        if a == 0.0 {
            return GivensReference { c: 0.0, s: 1f64.copysign(b), r: b.abs(), overflow_band: false };
        }
        // |a| = ma 2^ea, |b| = mb 2^eb with ma, mb in [1, 2); everything is
        // computed on the mantissas in double-double and scaled back once.
        let (ma, ea) = decompose(a);
        let (mb, eb) = decompose(b);
        let e = ea.max(eb);
        let (ta, tb) = (ldexp(ma, ea - e), ldexp(mb, eb - e));
        // Terms lost to underflow here are below 2^-1074 against a sum >= 1.
        let rs = Dd::prod(ta, ta).add(Dd::prod(tb, tb)).sqrt();
        let sign_ab = if (a < 0.0) != (b < 0.0) { -1.0 } else { 1.0 };
        let r = round_scaled(rs, e).copysign(a);
        let c = round_scaled(Dd::from(ma).div(rs), ea - e);
        let s = sign_ab * round_scaled(Dd::from(mb).div(rs), eb - e);
        // True |r| within 4u of f64::MAX = (2 - 2^-52) 2^1023.
        let band = e == 1023 && (rs.hi + rs.lo - 2.0).abs() <= 8.0 * f64::UNIT_ROUNDOFF;
        GivensReference { c, s, r, overflow_band: band }
    }
    fn norm_defect(c: f64, s: f64) -> f64 {
        let (p1, e1) = two_prod(c, c);
        let (p2, e2) = two_prod(s, s);
        let (t, et) = two_sum(p1, p2);
        // t lies in [1/2, 2] here, so t - 1 is exact (Sterbenz).
        ((t - 1.0) + et) + (e1 + e2)
    }
}

/// The reference `(c, s, r)` of [`qgoft_math::Givens::generate`], each
/// rounded to the scalar type; `r` is infinite when the true `r` overflows.
#[derive(Clone, Copy, Debug)]
pub struct GivensReference<T> {
    pub c: T,
    pub s: T,
    pub r: T,
    /// The true `|r|` lies within `4u` (relative) of the largest finite
    /// value, where rounding decides between overflow and a finite result.
    pub overflow_band: bool,
}

/// Builds a value from its sign, biased exponent and stored mantissa.
pub fn from_parts<T: TestReal>(negative: bool, biased_exp: u64, mantissa: u64) -> T {
    let sign = (negative as u64) << (T::WIDTH - 1);
    let mant = mantissa & ((1u64 << T::MANT_BITS) - 1);
    T::from_bits_u64(sign | (biased_exp << T::MANT_BITS) | mant)
}

/// The distance in ulps between two values, counted in bit space (the number
/// of representable values between them). Like libm's test crate, NaN and a
/// sign mismatch (other than `+0` against `-0`) are failures of their own.
pub fn ulp_distance<T: TestReal>(x: T, y: T) -> Result<u64, String> {
    if x.is_nan() || y.is_nan() {
        return Err(format!("NaN: {x:e} vs {y:e}"));
    }
    if x.is_sign_negative() != y.is_sign_negative() && !(x == T::zero() && y == T::zero()) {
        return Err(format!("sign mismatch: {x:e} vs {y:e}"));
    }
    let mag = |v: T| (v.bits() & !(1u64 << (T::WIDTH - 1))) as i128;
    Ok((mag(x) - mag(y)).unsigned_abs() as u64)
}

// ---------------------------------------------------------------------------
// Double-double arithmetic (f64 pairs, about 106 bits), using the fused
// multiply-add of `std`.

pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

pub fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

/// An unevaluated sum `hi + lo` with `|lo| <= ulp(hi) / 2`.
#[derive(Clone, Copy, Debug)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

impl From<f64> for Dd {
    fn from(x: f64) -> Self {
        Dd { hi: x, lo: 0.0 }
    }
}

impl Dd {
    fn norm(hi: f64, lo: f64) -> Self {
        let (h, l) = quick_two_sum(hi, lo);
        Dd { hi: h, lo: l }
    }
    pub fn prod(a: f64, b: f64) -> Self {
        let (p, e) = two_prod(a, b);
        Dd::norm(p, e)
    }
    pub fn add(self, o: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, o.hi);
        Dd::norm(s, e + self.lo + o.lo)
    }
    pub fn sub(self, o: Dd) -> Dd {
        self.add(Dd { hi: -o.hi, lo: -o.lo })
    }
    pub fn mul(self, o: Dd) -> Dd {
        let (p, e) = two_prod(self.hi, o.hi);
        Dd::norm(p, e + self.hi * o.lo + self.lo * o.hi)
    }
    pub fn div(self, o: Dd) -> Dd {
        let q1 = self.hi / o.hi;
        let r = self.sub(o.mul(Dd::from(q1)));
        let q2 = r.hi / o.hi;
        let r = r.sub(o.mul(Dd::from(q2)));
        let q3 = r.hi / o.hi;
        Dd::from(q1).add(Dd::from(q2)).add(Dd::from(q3))
    }
    pub fn sqrt(self) -> Dd {
        let x = self.hi.sqrt();
        let (p, e) = two_prod(x, x);
        let corr = (((self.hi - p) - e) + self.lo) / (2.0 * x);
        Dd::norm(x, corr)
    }
}

/// `|x| = m 2^e` with `m` in `[1, 2)`, for finite nonzero `x`.
fn decompose(x: f64) -> (f64, i32) {
    let mut v = x.abs();
    let mut e = 0;
    if v < f64::MIN_POSITIVE {
        v *= 2f64.powi(64);
        e -= 64;
    }
    let bits = v.to_bits();
    let be = ((bits >> 52) & 0x7ff) as i32 - 1023;
    let m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    (m, e + be)
}

/// `x 2^k`, rounded once (the chunks before the last one are exact).
pub fn ldexp(mut x: f64, mut k: i32) -> f64 {
    while k > 1000 {
        x *= 2f64.powi(1000);
        k -= 1000;
    }
    while k < -1000 {
        x *= 2f64.powi(-1000);
        k += 1000;
    }
    x * 2f64.powi(k)
}

/// `(hi + lo) 2^k` rounded to f64 (double rounding only in the subnormal
/// range, where it costs at most a fraction of an ulp).
fn round_scaled(x: Dd, k: i32) -> f64 {
    ldexp(x.hi, k) + ldexp(x.lo, k)
}

/// `start + sum x_k y_k` accumulated in double-double, rounded once.
pub fn dot_dd(start: f64, pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
    let mut acc = Dd::from(start);
    for (x, y) in pairs {
        acc = acc.add(Dd::prod(x, y));
    }
    acc.hi + acc.lo
}

// ---------------------------------------------------------------------------
// Dense linear algebra on row-major matrices, evaluated in double-double.

/// `y = A x` for a row-major `d x d` matrix.
pub fn matvec<T: Real>(a: &[T], x: &[T], d: usize) -> Vec<f64> {
    (0..d).map(|i| dot_dd(0.0, (0..d).map(|k| (to64(a[i * d + k]), to64(x[k]))))).collect()
}

/// `y = A^T x` for a row-major `d x d` matrix.
pub fn matvec_t<T: Real>(a: &[T], x: &[T], d: usize) -> Vec<f64> {
    (0..d).map(|i| dot_dd(0.0, (0..d).map(|k| (to64(a[k * d + i]), to64(x[k]))))).collect()
}

/// Euclidean norm of the difference of two vectors, in f64.
pub fn dist<T: Real>(x: &[T], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| (to64(*a) - b).powi(2)).sum::<f64>().sqrt()
}

/// Euclidean norm.
pub fn norm<T: Real>(x: &[T]) -> f64 {
    x.iter().map(|v| to64(*v).powi(2)).sum::<f64>().sqrt()
}

/// Determinant of a row-major `d x d` matrix by Gaussian elimination with
/// partial pivoting, in f64.
pub fn determinant(m: &[f64], d: usize) -> f64 {
    let mut a = m.to_vec();
    let mut det = 1.0;
    for k in 0..d {
        let p = (k..d).max_by(|&i, &j| a[i * d + k].abs().total_cmp(&a[j * d + k].abs())).unwrap();
        if a[p * d + k] == 0.0 {
            return 0.0;
        }
        if p != k {
            for c in 0..d {
                a.swap(k * d + c, p * d + c);
            }
            det = -det;
        }
        let piv = a[k * d + k];
        det *= piv;
        for i in k + 1..d {
            let f = a[i * d + k] / piv;
            for c in k..d {
                a[i * d + c] -= f * a[k * d + c];
            }
        }
    }
    det
}

/// Largest singular value of a 2x2 block.
pub fn block_norm<T: Real>(b: &Block<T>) -> f64 {
    let [a, bb, c, e] = b.to_array().map(to64);
    let f2 = a * a + bb * bb + c * c + e * e;
    let det = a * e - bb * c;
    ((f2 + (f2 * f2 - 4.0 * det * det).max(0.0).sqrt()) / 2.0).sqrt()
}

/// Condition number `sigma_max / sigma_min` of a 2x2 block.
pub fn block_cond<T: Real>(b: &Block<T>) -> f64 {
    let n = block_norm(b);
    let det = to64(b.det()).abs();
    n * n / det
}

/// `prod_k max_{blocks of stage k} f(block)`: a bound on a product of
/// stage operators, each a direct sum of its blocks.
pub fn stage_product<T: Real>(layout: Layout, d: usize, blocks: &[Block<T>], f: impl Fn(&Block<T>) -> f64) -> f64 {
    layout.stages(d).map(|s| s.params().map(|p| f(&blocks[p])).fold(1.0, f64::max)).product()
}

// ---------------------------------------------------------------------------
// Strategies.

/// Any finite value: uniform sign, biased exponent and mantissa, with extra
/// weight on zero and subnormal exponents and on extreme mantissas.
pub fn finite_parts<T: TestReal>() -> impl Strategy<Value = (bool, u64, u64)> {
    let mant_max = (1u64 << T::MANT_BITS) - 1;
    let exp = prop_oneof![
        8 => 0..=T::MAX_BIASED_EXP,
        1 => Just(0u64),
        1 => (T::MAX_BIASED_EXP - 2)..=T::MAX_BIASED_EXP,
    ];
    let mant = prop_oneof![6 => 0..=mant_max, 1 => Just(0u64), 1 => Just(mant_max)];
    (any::<bool>(), exp, mant)
}

/// Pairs `(a, b)` over the whole finite range: independent exponents, or
/// exponents within 40 of each other (where both matter to `r`).
pub fn finite_pair<T: TestReal>() -> impl Strategy<Value = (T, T)> {
    let independent = (finite_parts::<T>(), finite_parts::<T>())
        .prop_map(|((na, ea, ma), (nb, eb, mb))| (from_parts::<T>(na, ea, ma), from_parts::<T>(nb, eb, mb)));
    let close = (finite_parts::<T>(), any::<bool>(), -40i64..=40, 0..=(1u64 << T::MANT_BITS) - 1).prop_map(
        |((na, ea, ma), nb, delta, mb)| {
            let eb = (ea as i64 + delta).clamp(0, T::MAX_BIASED_EXP as i64) as u64;
            (from_parts::<T>(na, ea, ma), from_parts::<T>(nb, eb, mb))
        },
    );
    prop_oneof![independent, close]
}

/// A layout among those given.
pub fn layout_of(layouts: &'static [Layout]) -> impl Strategy<Value = Layout> {
    proptest::sample::select(layouts)
}

/// `(layout, d, params)` with `d` in `dims` and one raw angle parameter per
/// rotation, uniform in `[-4, 4]` (beyond `[-pi, pi]` for raw angles, well
/// into the saturation of `pi * tanh`).
pub fn angle_case(
    layouts: &'static [Layout],
    dims: core::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = (Layout, usize, Vec<f64>)> {
    (layout_of(layouts), dims).prop_flat_map(|(layout, d)| {
        (Just(layout), Just(d), proptest::collection::vec(-4.0f64..4.0, layout.num_rotations(d)))
    })
}

/// Quasi blocks: rotations by uniform angles plus a perturbation of each
/// entry uniform in `[-eta, eta]`.
pub fn quasi_blocks(n: usize, eta: f64) -> impl Strategy<Value = Vec<[f64; 4]>> {
    proptest::collection::vec((-4.0f64..4.0, proptest::array::uniform4(-1.0f64..1.0)), n).prop_map(move |v| {
        v.into_iter()
            .map(|(t, p)| {
                let (s, c) = t.sin_cos();
                [c + eta * p[0], -s + eta * p[1], s + eta * p[2], c + eta * p[3]]
            })
            .collect()
    })
}

/// A scaling vector of length `d`, entries with magnitude in `[1/2, 2]` and
/// either sign.
pub fn scaling(d: usize) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec((any::<bool>(), -1.0f64..1.0), d)
        .prop_map(|v| v.into_iter().map(|(neg, e)| if neg { -(2f64.powf(e)) } else { 2f64.powf(e) }).collect())
}

/// Values uniform in `[-1, 1]`.
pub fn values(n: usize) -> impl Strategy<Value = Vec<f64>> {
    proptest::collection::vec(-1.0f64..1.0, n)
}

/// Converts f64 test data to the scalar type.
pub fn cast<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x)).collect()
}

/// Quasi blocks from `[a, b, c, e]` arrays.
pub fn to_blocks<T: Real>(v: &[[f64; 4]]) -> Vec<Block<T>> {
    v.iter().map(|a| Block::from_array(a.map(T::from_f64))).collect()
}

// ---------------------------------------------------------------------------
// Measurements: the largest ratio of a measured error to its target seen by
// each property, printed (with `--nocapture`) whenever it grows.

static MAXIMA: Mutex<BTreeMap<String, f64>> = Mutex::new(BTreeMap::new());

/// Records `value` under `key`, printing it when it is a new maximum.
pub fn record(key: &str, value: f64) {
    let mut m = MAXIMA.lock().unwrap_or_else(|e| e.into_inner());
    let e = m.entry(key.to_string()).or_insert(f64::NEG_INFINITY);
    if value > *e {
        *e = value;
        eprintln!("max {key}: {value:.4}");
    }
}

/// The raw bits of a slice, for bitwise comparisons.
pub fn bits_of<T: TestReal>(x: &[T]) -> Vec<u64> {
    x.iter().map(|v| v.bits()).collect()
}

/// `x` as f64, exactly.
pub fn to64<T: Real>(x: T) -> f64 {
    Real::to_f64(x)
}

/// The number of cases of a property: `default`, unless the environment
/// variable `PROPTEST_CASES` asks for another count (e.g. a long soak run).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
