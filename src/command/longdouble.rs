//! The `long double` arithmetic of INCRBYFLOAT and HINCRBYFLOAT.
//!
//! Redis reads both operands with `strtold`, adds them in the x87's 80-bit
//! extended format (a 64-bit significand) and prints the sum with `%.17Lf`,
//! trailing zeros cut. Doing the same in `f64` gives other strings: three
//! INCRBYFLOAT 0.1 make `0.30000000000000004` instead of `0.3`, and values
//! beyond `f64`'s range (up to about 1.19e4932) are refused. So Shoal
//! computes in a software x87 format (`rustc_apfloat`, a port of LLVM's
//! APFloat, rounding as the hardware does) and prints the exact binary value
//! rounded to 17 decimals, as glibc's `printf` does.
//!
//! Invariant: callers print only finite values (`is_finite` first: a sum
//! can overflow, or be NaN from infinities of both signs). What is printed
//! is Redis's string, not a round trip: 17 decimals, so 1e-20 is stored as
//! "0" here as it is there.

use rustc_apfloat::ieee::X87DoubleExtended as X87;
use rustc_apfloat::{Category, Float, FloatConvert, Round};

use super::args::c_number_syntax;

/// An x87 extended-precision value: parsed ones are never NaN.
#[derive(Clone, Copy, Debug)]
pub struct LongDouble(X87);

/// `a + b` rounded to nearest, as the x87 adds.
impl std::ops::Add for LongDouble {
    type Output = LongDouble;
    fn add(self, other: LongDouble) -> LongDouble {
        LongDouble(self.0.add_r(other.0, Round::NearestTiesToEven).value)
    }
}

/// `strtold` accepts at most this much in Redis (`MAX_LONG_DOUBLE_CHARS`).
const MAX_CHARS: usize = 5 * 1024;

impl LongDouble {
    /// Parses as Redis's `string2ld`: the whole string must be one number
    /// in `strtold`'s syntax (decimal or hexadecimal, `inf`/`infinity`),
    /// with no leading space; NaN, and values that overflow to infinity or
    /// underflow to zero, are refused.
    pub fn parse(b: &[u8]) -> Option<LongDouble> {
        if b.is_empty() || b.len() >= MAX_CHARS {
            return None;
        }
        let s = std::str::from_utf8(b).ok()?;
        let (negative, body) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let lower = body.to_ascii_lowercase();
        if lower == "inf" || lower == "infinity" {
            return Some(LongDouble(if negative {
                -X87::INFINITY
            } else {
                X87::INFINITY
            }));
        }
        let text = if let Some(hex) = lower.strip_prefix("0x") {
            // APFloat wants the binary exponent that strtold makes optional.
            if !c_number_syntax(hex, true) {
                return None;
            }
            if hex.contains('p') {
                format!("0x{hex}")
            } else {
                format!("0x{hex}p0")
            }
        } else {
            if !c_number_syntax(&lower, false) {
                return None;
            }
            lower
        };
        let v = match plain_decimal(&text) {
            Some(v) => v,
            None => X87::from_str_r(&text, Round::NearestTiesToEven).ok()?.value,
        };
        // strtold's ERANGE cases that string2ld refuses.
        if v.is_infinite() || v.is_nan() || (v.is_zero() && !all_zero_digits(&text)) {
            return None;
        }
        Some(LongDouble(if negative { -v } else { v }))
    }

    pub fn from_i64(i: i64) -> LongDouble {
        LongDouble(X87::from_i128(i as i128).value)
    }

    /// Exactly `d` (every double is a long double).
    pub fn from_f64(d: f64) -> LongDouble {
        let mut loses_info = false;
        let v = rustc_apfloat::ieee::Double::from_bits(d.to_bits() as u128);
        LongDouble(v.convert(&mut loses_info).value)
    }

    /// The nearest `f64`.
    pub fn to_f64(self) -> f64 {
        let mut loses_info = false;
        let d: rustc_apfloat::ieee::Double = self.0.convert(&mut loses_info).value;
        f64::from_bits(d.to_bits() as u64)
    }

    /// Neither infinite nor NaN (a sum of infinities of both signs is NaN).
    pub fn is_finite(&self) -> bool {
        self.0.is_finite()
    }

    /// Redis's `ld2string(..., LD_STR_HUMAN)`: `%.17Lf`, trailing zeros and
    /// a trailing point cut, and `-0` printed as `0`. Only for finite
    /// values.
    pub fn to_human(&self) -> String {
        debug_assert!(self.is_finite());
        let bits = self.0.to_bits();
        let negative = (bits >> 79) & 1 == 1;
        let biased = ((bits >> 64) & 0x7fff) as i64;
        let sig = bits as u64;
        // value = sig * 2^exp2 (denormals have the smallest exponent).
        let exp2 = biased.max(1) - 16383 - 63;
        let digits = if self.0.category() == Category::Zero || sig == 0 {
            "0".to_string()
        } else if exp2 >= 0 {
            // An integer: no fraction to print.
            shifted_decimal(sig, exp2 as u32)
        } else {
            // sig * 10^17 < 2^121: the rounded fixed-point value fits u128.
            let scaled = sig as u128 * 10u128.pow(17);
            let shift = (-exp2) as u32;
            let fixed = if shift >= 128 {
                0
            } else {
                let q = scaled >> shift;
                let rem = scaled & ((1u128 << shift) - 1);
                let half = 1u128 << (shift - 1);
                if rem > half || (rem == half && q & 1 == 1) {
                    q + 1
                } else {
                    q
                }
            };
            let s = format!("{fixed:018}");
            let (int, frac) = s.split_at(s.len() - 17);
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                int.to_string()
            } else {
                format!("{int}.{frac}")
            }
        };
        if negative && digits != "0" {
            format!("-{digits}")
        } else {
            digits
        }
    }
}

/// A plain decimal (`123`, `0.1`; no sign, no exponent) of at most 38
/// significant digits and 19 decimals (what INCRBYFLOAT stores has 17),
/// read without APFloat's general reader, whose bit-by-bit division was
/// most of INCRBYFLOAT's time (it ran at half Redis's speed). The digits
/// `m` (< 2^127) and `10^k` (< 2^64) are exact integers; `m * 2^128 /
/// 10^k` is divided in 64-bit limbs and rounded to a 64-bit significand,
/// half to even: the one correctly rounded value, which `strtold` gives.
fn plain_decimal(text: &str) -> Option<X87> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 19 || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut m: u128 = 0;
    for c in int.bytes().chain(frac.bytes()) {
        m = m.checked_mul(10)?.checked_add(u128::from(c - b'0'))?;
    }
    if frac.is_empty() || m == 0 {
        return (m < 1 << 64).then(|| X87::from_u128(m).value);
    }
    let d = 10u128.pow(frac.len() as u32);
    // Q = floor(m * 2^128 / d) in four limbs, high to low, and the rest.
    let mut q = [0u64; 4];
    let mut rem: u128 = 0;
    for (i, limb) in [(m >> 64) as u64, m as u64, 0, 0].into_iter().enumerate() {
        let cur = (rem << 64) | u128::from(limb);
        q[i] = (cur / d) as u64;
        rem = cur % d;
    }
    let hi = (u128::from(q[0]) << 64) | u128::from(q[1]);
    let lo = (u128::from(q[2]) << 64) | u128::from(q[3]);
    // Q >= 2^64 (m >= 1, d < 2^64): its top bit shifted to bit 255.
    let lz = if hi != 0 {
        hi.leading_zeros()
    } else {
        128 + lo.leading_zeros()
    };
    let (top, rest) = match lz {
        0 => (hi, lo),
        n if n < 128 => ((hi << n) | (lo >> (128 - n)), lo << n),
        n => (lo << (n - 128), 0),
    };
    let mut sig = (top >> 64) as u64;
    let round = (top >> 63) & 1 == 1;
    let sticky = top & ((1 << 63) - 1) != 0 || rest != 0 || rem != 0;
    // value = sig * 2^(64 - lz), sig in [2^63, 2^64).
    let mut exp2 = 64 - i64::from(lz);
    if round && (sticky || sig & 1 == 1) {
        sig = sig.wrapping_add(1);
        if sig == 0 {
            sig = 1 << 63;
            exp2 += 1;
        }
    }
    let biased = (exp2 + 63 + 16383) as u128;
    Some(X87::from_bits((biased << 64) | u128::from(sig)))
}

/// Whether the number's significand digits are all zero (a true zero, not
/// an underflow).
fn all_zero_digits(text: &str) -> bool {
    let (body, hex) = match text.strip_prefix("0x") {
        Some(h) => (h, true),
        None => (text, false),
    };
    body.bytes()
        .take_while(|&c| c != if hex { b'p' } else { b'e' })
        .all(|c| c == b'0' || c == b'.')
}

/// The decimal digits of `sig * 2^shift`, for integers past `u128`.
fn shifted_decimal(sig: u64, shift: u32) -> String {
    const BASE: u64 = 1_000_000_000;
    // Little-endian limbs of nine decimal digits.
    let mut limbs = vec![sig % BASE, (sig / BASE) % BASE, sig / BASE / BASE];
    let mut left = shift;
    while left > 0 {
        let k = left.min(32);
        let mut carry = 0u64;
        for l in limbs.iter_mut() {
            let v = (*l << k) + carry;
            *l = v % BASE;
            carry = v / BASE;
        }
        while carry > 0 {
            limbs.push(carry % BASE);
            carry /= BASE;
        }
        left -= k;
    }
    while limbs.len() > 1 && *limbs.last().unwrap() == 0 {
        limbs.pop();
    }
    let mut out = limbs.last().unwrap().to_string();
    for l in limbs.iter().rev().skip(1) {
        out.push_str(&format!("{l:09}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(a: &str, b: &str) -> String {
        let a = LongDouble::parse(a.as_bytes()).unwrap();
        let b = LongDouble::parse(b.as_bytes()).unwrap();
        (a + b).to_human()
    }

    // Expected strings are redis-server 7's replies to the same INCRBYFLOAT.
    #[test]
    fn sums_print_as_redis_prints_them() {
        assert_eq!(sum("0.2", "0.1"), "0.3");
        assert_eq!(sum("2.51", "-1"), "1.51");
        assert_eq!(sum("10.50", "0.1"), "10.6");
        assert_eq!(sum("5.0e3", "2.0e2"), "5200");
        assert_eq!(sum("9223372036854775807", "3"), "9223372036854775810");
        assert_eq!(sum("-9223372036854775808", "1"), "-9223372036854775807");
        assert_eq!(sum("1", "-1"), "0");
        assert_eq!(sum("-0", "-0"), "0");
        assert_eq!(sum("0", "1e-20"), "0");
        assert_eq!(sum("0", "-1e-20"), "0");
        assert_eq!(sum("0", "0x10"), "16");
        assert_eq!(sum("0", "0x1.8p1"), "3");
        assert!(sum("0", "1e400").starts_with("10000000000000000000281880683947586514586"));
        assert_eq!(sum("0", "1e400").len(), 401);
    }

    #[test]
    fn parsing_follows_strtold_as_string2ld_uses_it() {
        for ok in [
            "1",
            "+1",
            "-1",
            ".5",
            "5.",
            "1e3",
            "1E+3",
            "1e-3",
            "inf",
            "-Infinity",
            "0",
        ] {
            assert!(LongDouble::parse(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            "", " 1", "1 ", "1e", "e1", ".", "-", "nan", "1x", "0x", "1e99999", "1e-99999",
        ] {
            assert!(LongDouble::parse(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn plain_decimals_read_as_the_general_reader_reads_them() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut texts: Vec<String> = [
            "0.1",
            "0.3",
            "1.5",
            "5.",
            ".5",
            "18446744073709551615",
            "0.000000000000000000000000001",
            // Exactly halfway between two 64-bit significands: ties to even.
            "36893488147419103233.5",
            "36893488147419103235.5",
            "18446744073709551617.25",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let int_digits = rng.gen_range(0..20);
            let int: u128 = rng.gen_range(0..10u128.pow(int_digits));
            let decimals = rng.gen_range(0..22);
            let frac: u64 = rng.gen_range(0..10u64.pow(decimals.min(18)));
            texts.push(format!("{int}.{frac:0>width$}", width = decimals as usize));
        }
        let mut fast_ones = 0;
        for t in texts {
            let general = X87::from_str_r(&t, Round::NearestTiesToEven).unwrap().value;
            // Past 19 significant digits the general reader takes over.
            if let Some(fast) = plain_decimal(&t) {
                assert_eq!(fast.to_bits(), general.to_bits(), "{t}");
                fast_ones += 1;
            }
        }
        assert!(fast_ones > 10_000, "{fast_ones}");
    }

    #[test]
    fn infinities_are_not_finite() {
        let inf = LongDouble::parse(b"inf").unwrap();
        let ninf = LongDouble::parse(b"-inf").unwrap();
        assert!(!inf.is_finite());
        assert!(!(inf + ninf).is_finite());
        assert!(LongDouble::from_i64(i64::MIN).is_finite());
        assert_eq!(
            LongDouble::from_i64(i64::MIN).to_human(),
            "-9223372036854775808"
        );
    }
}
