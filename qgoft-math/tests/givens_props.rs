//! Properties of `Givens::generate` against a higher-precision reference
//! (DESIGN.md section 4): `c`, `s` within 3 ulp, `r` within 2 ulp,
//! `|c^2 + s^2 - 1| <= 5u`, `c >= 0`, `r` with the sign of `a`,
//! `G^T (a, b) = (r, 0)` to rounding, over every finite input (zeros,
//! subnormals, both signs, the whole exponent range), and the overflow error
//! exactly when the true `r` overflows.
//!
//! For `f32` the reference is computed in `f64`; for `f64` in double-double
//! arithmetic on the inputs' mantissas, scaled back once.

mod common;

use common::*;

/// Checks every Givens target for one input pair; `Err` explains a failure.
fn check_generate<T: TestReal>(a: T, b: T) -> Result<(), String> {
    let rf = T::givens_reference(a, b);
    let got = qgoft_math::Givens::generate(a, b);
    let (g, r) = match got {
        Err(qgoft_math::Error::Overflow { .. }) => {
            return if rf.r.is_infinite() || rf.overflow_band {
                Ok(())
            } else {
                Err(format!("Overflow error but reference r = {:e}", rf.r))
            };
        }
        Err(e) => return Err(format!("unexpected error {e}")),
        Ok(v) => v,
    };
    if rf.r.is_infinite() && !rf.overflow_band {
        return Err(format!("true r overflows, but got r = {r:e} instead of the Overflow error"));
    }
    let (c, s) = (g.c(), g.s());
    if !(c.is_finite() && s.is_finite() && r.is_finite()) {
        return Err(format!("non-finite result c = {c:e}, s = {s:e}, r = {r:e}"));
    }
    // Sign conventions (LAPACK 3.10 xLARTG).
    if !c.is_sign_positive() {
        return Err(format!("c = {c:e} is not >= +0"));
    }
    let zero = T::zero();
    if a != zero && r.is_sign_negative() != a.is_sign_negative() {
        return Err(format!("sign of r = {r:e} differs from a"));
    }
    if a == zero && b != zero && r.is_sign_negative() {
        return Err(format!("r = {r:e} must be |b| when a = 0"));
    }
    // Accuracy in ulps, counted in bit space.
    let dc = ulp_distance(c, rf.c).map_err(|e| format!("c: {e}"))?;
    let ds = ulp_distance(s, rf.s).map_err(|e| format!("s: {e}"))?;
    let dr = ulp_distance(r, rf.r).map_err(|e| format!("r: {e}"))?;
    record(&format!("{} givens c ulps (target 3)", T::NAME), dc as f64);
    record(&format!("{} givens s ulps (target 3)", T::NAME), ds as f64);
    record(&format!("{} givens r ulps (target 2)", T::NAME), dr as f64);
    if dc > 3 || ds > 3 || dr > 2 {
        return Err(format!(
            "ulp errors c {dc}, s {ds}, r {dr}: got ({c:e}, {s:e}, {r:e}), reference ({:e}, {:e}, {:e})",
            rf.c, rf.s, rf.r
        ));
    }
    let u = to64(T::UNIT_ROUNDOFF);
    let defect = T::norm_defect(c, s).abs();
    record(&format!("{} givens |c^2+s^2-1| / u (target 5)", T::NAME), defect / u);
    if defect > 5.0 * u {
        return Err(format!("|c^2 + s^2 - 1| = {defect:e} > 5u for c = {c:e}, s = {s:e}"));
    }
    // G^T (a, b) = (r, 0) to rounding, evaluated on inputs scaled by a power
    // of two (G^T is linear) so that no product over- or underflows.
    if a != zero || b != zero {
        let big = a.abs().max(b.abs()).to_f64();
        let k = big.log2().floor() as i32;
        let scale = |x: T| T::from_f64(ldexp(to64(x), -k));
        let (sa, sb, sr) = (scale(a), scale(b), ldexp(to64(r), -k));
        let (u1, u2) = g.apply_transpose(sa, sb);
        // Rounding is relative to |r|, except that a subnormal r (and
        // subnormal c a, s b) carries an absolute error of the spacing there.
        let unit = u * sr.abs() + ldexp(to64(T::from_bits_u64(1)), -k);
        let e1 = (to64(u1) - sr).abs() / unit;
        let e2 = to64(u2).abs() / unit;
        record(&format!("{} givens |G^T(a,b) - (r,0)| / (u |r| + tiny) (bound 8)", T::NAME), e1.max(e2));
        if e1 > 8.0 || e2 > 8.0 {
            return Err(format!(
                "G^T (a, b) = ({u1:e}, {u2:e}) is not (r, 0) = ({sr:e}, 0) to 8 (u |r| + tiny) (scaled by 2^{k})"
            ));
        }
    }
    Ok(())
}

macro_rules! givens_props {
    ($name:ident, $t:ty) => {
        mod $name {
            use super::*;
            use proptest::prelude::*;
            type T = $t;

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(cases(100_000)))]

                #[test]
                fn generate_meets_targets((a, b) in finite_pair::<T>()) {
                    check_generate::<T>(a, b).map_err(TestCaseError::fail)?;
                }

                #[test]
                fn generate_is_symmetric_in_signs((a, b) in finite_pair::<T>()) {
                    // Negating b negates s; negating a negates r and s, keeps c.
                    // (Zeros follow the special-case conventions instead.)
                    if a == 0.0 || b == 0.0 {
                        return Ok(());
                    }
                    let ok = |x: T, y: T| qgoft_math::Givens::generate(x, y);
                    if let (Ok((g, r)), Ok((gb, rb)), Ok((ga, ra))) = (ok(a, b), ok(a, -b), ok(-a, b)) {
                        prop_assert_eq!((gb.c(), gb.s().to_bits(), rb), (g.c(), (-g.s()).to_bits(), r));
                        prop_assert_eq!(ga.c(), g.c());
                        prop_assert_eq!((ga.s().to_bits(), ra.to_bits()), ((-g.s()).to_bits(), (-r).to_bits()));
                    }
                }
            }

            /// Hand-picked edge cases: zeros of both signs, the smallest
            /// subnormal, the largest finite value, the scaling thresholds.
            #[test]
            fn generate_edge_values() {
                let tiny = <T>::from_bits(1);
                let min = <T>::MIN_POSITIVE;
                let max = <T>::MAX;
                let rtmin = min.sqrt();
                let rtmax = (max / 2.0).sqrt();
                let vals = [0.0, -0.0, tiny, -tiny, min, rtmin, rtmax, max, -max, 1.0, -1.0, max / 2.0, 3.0 * tiny];
                for &a in &vals {
                    for &b in &vals {
                        for (x, y) in [(a, b), (a.next_up(), b), (a, b.next_down())] {
                            if x.is_finite() && y.is_finite() {
                                if let Err(e) = check_generate::<T>(x, y) {
                                    panic!("generate({x:e}, {y:e}): {e}");
                                }
                            }
                        }
                    }
                }
            }

            #[test]
            fn generate_overflow_is_an_error() {
                let max = <T>::MAX;
                assert!(matches!(qgoft_math::Givens::generate(max, max), Err(qgoft_math::Error::Overflow { .. })));
                assert!(matches!(
                    qgoft_math::Givens::generate(-max, max / 2.0),
                    Err(qgoft_math::Error::Overflow { .. })
                ));
                let (g, r) = qgoft_math::Givens::generate(max, <T>::MIN_POSITIVE).unwrap();
                assert_eq!((g.c(), r), (1.0, max));
            }
        }
    };
}

givens_props!(f32_props, f32);
givens_props!(f64_props, f64);
