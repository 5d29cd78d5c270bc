//! INCRBYFLOAT's arithmetic, done as Redis does it on x86-64: in C's `long double`, the x87
//! 80-bit extended format (64-bit significand with an explicit integer bit, 15-bit exponent),
//! read with glibc's `strtold` and printed with `"%.17Lf"` minus trailing zeros (`string2ld`
//! and `ld2string(.., LD_STR_HUMAN)` in Redis's `util.c`).
//!
//! An f64 cannot stand in for it: `INCRBYFLOAT k 0.1` then `0.2` is `0.3` in Redis (the extra 11
//! bits absorb the decimal error before the 17-digit rounding) but `0.30000000000000004` in
//! f64, and Redis accepts values up to about 1.19e4932.
//!
//! Every step is exact then rounded once, to nearest with ties to even, as the FPU and glibc do:
//! parsing and addition go through a small big-integer rational, printing through the exact
//! decimal expansion.

use std::cmp::Ordering;

/// Significand bits, the integer bit included.
const SIGNIFICAND_BITS: i64 = 64;
/// Smallest exponent of the last significand bit: subnormals and the smallest normals are
/// `m * 2^-16445`.
const MIN_EXP: i64 = -16445;
/// Largest exponent of the last significand bit (the largest finite value is
/// `(2^64 - 1) * 2^16320`, about 1.19e4932).
const MAX_EXP: i64 = 16320;
/// Redis's `MAX_LONG_DOUBLE_CHARS`: `string2ld` refuses any text of this length or more.
const MAX_TEXT: usize = 5 * 1024;
/// Decimal exponents beyond which a value is surely infinite or surely rounds to zero (the
/// largest finite value is below 1e4933, half the smallest subnormal above 1e-4952): a value
/// in [10^(m - 1), 10^m) overflows when m > 4933 and rounds to zero when m <= -4952.
const DECIMAL_EXP_OVERFLOW: i64 = 4933;
const DECIMAL_EXP_UNDERFLOW: i64 = -4952;

/// A finite `long double`: `(-1)^negative * mantissa * 2^exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongDouble {
    negative: bool,
    mantissa: u64,
    exp: i64,
}

/// What `string2ld` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Finite(LongDouble),
    /// `inf` or `infinity`, either sign: accepted, and any sum with it is refused later.
    Infinite,
}

impl LongDouble {
    pub const ZERO: LongDouble = LongDouble { negative: false, mantissa: 0, exp: 0 };

    /// Redis's `string2ld`: glibc `strtold` over the whole argument, refusing an empty text, a
    /// leading space, trailing bytes (a NUL included), NaN, and a value out of range (overflow,
    /// or underflow to zero).
    pub fn parse(text: &[u8]) -> Option<Parsed> {
        if text.is_empty() || text.len() >= MAX_TEXT {
            return None;
        }
        let (negative, body) = match text[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(Parsed::Infinite);
        }
        let exact = if body.len() > 2 && body[0] == b'0' && matches!(body[1], b'x' | b'X') {
            parse_hex(&body[2..])?
        } else {
            parse_decimal(body)?
        };
        let rounded = match exact {
            Exact::Zero => LongDouble::ZERO,
            Exact::Overflow | Exact::Underflow => return None,
            Exact::Ratio { num, den, exp2 } => match round(num, den, exp2)? {
                zero if zero.mantissa == 0 => return None,
                value => value,
            },
        };
        Some(Parsed::Finite(LongDouble { negative, ..rounded }))
    }

    /// The sum rounded to the format, or `None` when it overflows to infinity.
    pub fn add(self, other: LongDouble) -> Option<LongDouble> {
        if self.mantissa == 0 {
            return Some(if other.mantissa == 0 { self.add_zeros(other) } else { other });
        }
        if other.mantissa == 0 {
            return Some(self);
        }
        let base = self.exp.min(other.exp);
        let a = Big::from_u64(self.mantissa).shl((self.exp - base) as usize);
        let b = Big::from_u64(other.mantissa).shl((other.exp - base) as usize);
        let (negative, magnitude) = if self.negative == other.negative {
            (self.negative, a.add(&b))
        } else {
            match a.cmp(&b) {
                // x + (-x) is +0 when rounding to nearest.
                Ordering::Equal => return Some(LongDouble::ZERO),
                Ordering::Greater => (self.negative, a.sub(&b)),
                Ordering::Less => (other.negative, b.sub(&a)),
            }
        };
        let rounded = round(magnitude, Big::from_u64(1), base)?;
        Some(LongDouble { negative, ..rounded })
    }

    /// IEEE signed zeros: the sum is -0 only when both are.
    fn add_zeros(self, other: LongDouble) -> LongDouble {
        LongDouble { negative: self.negative && other.negative, ..LongDouble::ZERO }
    }

    /// `ld2string(.., LD_STR_HUMAN)`: `"%.17Lf"`, trailing zeros and a trailing dot removed,
    /// and `-0` written `0`.
    pub fn to_human_string(self) -> String {
        let scaled = u128::from(self.mantissa) * 100_000_000_000_000_000u128;
        // round(|value| * 10^17), ties to even, as glibc's printf rounds.
        let units = if self.exp >= 0 {
            Big::from_u128(scaled).shl(self.exp as usize)
        } else if self.exp <= -128 {
            // scaled < 2^121: below half a unit.
            Big::zero()
        } else {
            let shift = (-self.exp) as u32;
            let (quotient, rest, half) =
                (scaled >> shift, scaled & ((1u128 << shift) - 1), 1u128 << (shift - 1));
            let up = rest > half || (rest == half && quotient & 1 == 1);
            Big::from_u128(quotient + u128::from(up))
        };
        let digits = units.to_decimal();
        let digits = format!("{digits:0>18}");
        let (int_part, frac_part) = digits.split_at(digits.len() - 17);
        let frac_part = frac_part.trim_end_matches('0');
        let mut text = String::with_capacity(digits.len() + 2);
        if self.negative && (int_part != "0" || !frac_part.is_empty()) {
            text.push('-');
        }
        text.push_str(int_part);
        if !frac_part.is_empty() {
            text.push('.');
            text.push_str(frac_part);
        }
        text
    }
}

/// A parsed number before rounding: `num / den * 2^exp2`, or what it surely rounds to.
enum Exact {
    Zero,
    Overflow,
    Underflow,
    Ratio { num: Big, den: Big, exp2: i64 },
}

/// Appends the digits of `text` from `start` (`radix` 10 or 16) to `value`, stopping at the
/// first non-digit, and returns where it stopped. `count` grows by the digits `value` gained
/// (none for zeros before its first non-zero digit).
fn digits(text: &[u8], start: usize, radix: u32, value: &mut Big, count: &mut i64) -> usize {
    let mut i = start;
    while let Some(d) = text.get(i).and_then(|&c| char::from(c).to_digit(radix)) {
        if !value.is_zero() || d != 0 {
            *value = value.mul_small(radix).add_small(d);
            *count += 1;
        }
        i += 1;
    }
    i
}

/// An exponent's digits (`e-12`, `p+3`) from `start`, saturated far beyond any finite value:
/// `None` when there is no digit.
fn exponent(text: &[u8], start: usize) -> Option<(i64, usize)> {
    let (negative, mut i) = match text.get(start) {
        Some(b'-') => (true, start + 1),
        Some(b'+') => (false, start + 1),
        _ => (false, start),
    };
    let first = i;
    let mut value: i64 = 0;
    while let Some(&c) = text.get(i).filter(|c| c.is_ascii_digit()) {
        value = (value * 10 + i64::from(c - b'0')).min(1 << 40);
        i += 1;
    }
    (i > first).then_some((if negative { -value } else { value }, i))
}

/// `[digits][.digits][e[+-]digits]`, with at least one digit before the exponent; an `e`
/// without exponent digits is trailing text, so refused.
fn parse_decimal(text: &[u8]) -> Option<Exact> {
    let mut value = Big::zero();
    // Digits of `value` (those from its first non-zero one): it is below 10^significant.
    let mut significant = 0;
    let mut i = digits(text, 0, 10, &mut value, &mut significant);
    let mut any_digit = i > 0;
    let mut exp10: i64 = 0;
    if text.get(i) == Some(&b'.') {
        let start = i + 1;
        i = digits(text, start, 10, &mut value, &mut significant);
        // Every fraction digit divides by ten, a leading zero too.
        exp10 -= (i - start) as i64;
        any_digit |= i > start;
    }
    if !any_digit {
        return None;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        let (e, end) = exponent(text, i + 1)?;
        exp10 += e;
        i = end;
    }
    if i != text.len() {
        return None;
    }
    if value.is_zero() {
        return Some(Exact::Zero);
    }
    // value * 10^exp10 lies in [10^(magnitude - 1), 10^magnitude).
    let magnitude = significant + exp10;
    if magnitude > DECIMAL_EXP_OVERFLOW {
        return Some(Exact::Overflow);
    }
    if magnitude <= DECIMAL_EXP_UNDERFLOW {
        return Some(Exact::Underflow);
    }
    Some(if exp10 >= 0 {
        Exact::Ratio { num: value.mul(&Big::pow10(exp10 as u32)), den: Big::from_u64(1), exp2: 0 }
    } else {
        Exact::Ratio { num: value, den: Big::pow10((-exp10) as u32), exp2: 0 }
    })
}

/// After `0x`: `[hexdigits][.hexdigits][p[+-]digits]`. Without any hex digit strtold reads
/// only the `0` and stops at the `x`, which is trailing text.
fn parse_hex(text: &[u8]) -> Option<Exact> {
    let mut value = Big::zero();
    let mut count = 0;
    let mut i = digits(text, 0, 16, &mut value, &mut count);
    let mut any_digit = i > 0;
    let mut exp2: i64 = 0;
    if text.get(i) == Some(&b'.') {
        let start = i + 1;
        let end = digits(text, start, 16, &mut value, &mut count);
        exp2 -= 4 * (end - start) as i64;
        any_digit |= end > start;
        i = end;
    }
    if !any_digit {
        return None;
    }
    if matches!(text.get(i), Some(b'p' | b'P')) {
        let (e, end) = exponent(text, i + 1)?;
        exp2 += e;
        i = end;
    }
    if i != text.len() {
        return None;
    }
    if value.is_zero() {
        return Some(Exact::Zero);
    }
    let top = value.bit_len() as i64 + exp2;
    if top > MAX_EXP + SIGNIFICAND_BITS + 1 {
        return Some(Exact::Overflow);
    }
    if top < MIN_EXP - 2 {
        return Some(Exact::Underflow);
    }
    Some(Exact::Ratio { num: value, den: Big::from_u64(1), exp2 })
}

/// Rounds the positive `num / den * 2^exp2` to the format, to nearest with ties to even;
/// `None` on overflow. A result below half the smallest subnormal is zero.
fn round(num: Big, den: Big, exp2: i64) -> Option<LongDouble> {
    // value < 2^top and value >= 2^(top - 2).
    let top = num.bit_len() as i64 - den.bit_len() as i64 + 1 + exp2;
    // A quotient of 66 to 68 bits: the significand, a rounding bit and spare.
    let unit = top - 68;
    let shift = exp2 - unit;
    let (num, den) =
        if shift >= 0 { (num.shl(shift as usize), den) } else { (num, den.shl((-shift) as usize)) };
    let (quotient, inexact) = num.div_small_quotient(&den, 68);
    let bits = 128 - i64::from(quotient.leading_zeros());
    let exp = (unit + bits - SIGNIFICAND_BITS).max(MIN_EXP);
    let drop = exp - unit;
    let (mut mantissa, round_bit, sticky) = if drop >= 128 {
        (0u128, false, quotient != 0 || inexact)
    } else {
        let below = quotient & ((1u128 << drop) - 1);
        let half = 1u128 << (drop - 1);
        (quotient >> drop, below & half != 0, below & (half - 1) != 0 || inexact)
    };
    let mut exp = exp;
    if round_bit && (sticky || mantissa & 1 == 1) {
        mantissa += 1;
        if mantissa == 1u128 << SIGNIFICAND_BITS {
            mantissa >>= 1;
            exp += 1;
        }
    }
    if exp > MAX_EXP {
        return None;
    }
    debug_assert!(mantissa < 1u128 << SIGNIFICAND_BITS);
    Some(LongDouble { negative: false, mantissa: mantissa as u64, exp })
}

/// A non-negative big integer, little-endian 32-bit limbs without high zero limbs. Only what
/// the conversions above need, written for clarity over speed: a value has at most about
/// 33,000 bits (`10^9885`, the widest exact decimal quotient).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn zero() -> Big {
        Big(Vec::new())
    }

    fn from_u64(v: u64) -> Big {
        Big::from_u128(u128::from(v))
    }

    fn from_u128(mut v: u128) -> Big {
        let mut limbs = Vec::new();
        while v != 0 {
            limbs.push(v as u32);
            v >>= 32;
        }
        Big(limbs)
    }

    fn pow10(n: u32) -> Big {
        let mut value = Big::from_u64(1);
        for _ in 0..n / 9 {
            value = value.mul_small(1_000_000_000);
        }
        value.mul_small(10u32.pow(n % 9))
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn trim(mut self) -> Big {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        self
    }

    fn bit_len(&self) -> usize {
        self.0.last().map_or(0, |top| self.0.len() * 32 - top.leading_zeros() as usize)
    }

    fn mul_small(&self, m: u32) -> Big {
        let mut carry = 0u64;
        let mut limbs = Vec::with_capacity(self.0.len() + 1);
        for &l in &self.0 {
            let v = u64::from(l) * u64::from(m) + carry;
            limbs.push(v as u32);
            carry = v >> 32;
        }
        limbs.push(carry as u32);
        Big(limbs).trim()
    }

    fn add_small(&self, a: u32) -> Big {
        self.add(&Big::from_u64(u64::from(a)))
    }

    fn mul(&self, other: &Big) -> Big {
        let mut limbs = vec![0u32; self.0.len() + other.0.len()];
        for (i, &a) in self.0.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.0.iter().enumerate() {
                let v = u64::from(a) * u64::from(b) + u64::from(limbs[i + j]) + carry;
                limbs[i + j] = v as u32;
                carry = v >> 32;
            }
            limbs[i + other.0.len()] = carry as u32;
        }
        Big(limbs).trim()
    }

    fn add(&self, other: &Big) -> Big {
        let (long, short) =
            if self.0.len() >= other.0.len() { (self, other) } else { (other, self) };
        let mut limbs = Vec::with_capacity(long.0.len() + 1);
        let mut carry = 0u64;
        for (i, &l) in long.0.iter().enumerate() {
            let v = u64::from(l) + u64::from(short.0.get(i).copied().unwrap_or(0)) + carry;
            limbs.push(v as u32);
            carry = v >> 32;
        }
        limbs.push(carry as u32);
        Big(limbs).trim()
    }

    /// `self - other`, for `self >= other`.
    fn sub(&self, other: &Big) -> Big {
        debug_assert!(self.cmp(other) != Ordering::Less);
        let mut limbs = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for (i, &l) in self.0.iter().enumerate() {
            let mut v = i64::from(l) - i64::from(other.0.get(i).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(v < 0);
            if v < 0 {
                v += 1 << 32;
            }
            limbs.push(v as u32);
        }
        Big(limbs).trim()
    }

    fn shl(&self, bits: usize) -> Big {
        if self.is_zero() {
            return Big::zero();
        }
        let (words, bits) = (bits / 32, bits % 32);
        let mut limbs = vec![0u32; words];
        let mut carry = 0u32;
        for &l in &self.0 {
            limbs.push(if bits == 0 { l } else { (l << bits) | carry });
            carry = if bits == 0 { 0 } else { l >> (32 - bits) };
        }
        limbs.push(carry);
        Big(limbs).trim()
    }

    fn cmp(&self, other: &Big) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }

    /// `floor(self / den)` when it is known to be below `2^bits` (at most 128), and whether
    /// there was a remainder: binary long division, one quotient bit per step.
    fn div_small_quotient(&self, den: &Big, bits: u32) -> (u128, bool) {
        let mut rest = self.clone();
        let mut quotient = 0u128;
        for i in (0..bits).rev() {
            let part = den.shl(i as usize);
            if rest.cmp(&part) != Ordering::Less {
                rest = rest.sub(&part);
                quotient |= 1 << i;
            }
        }
        debug_assert!(rest.cmp(den) == Ordering::Less, "quotient wider than {bits} bits");
        (quotient, !rest.is_zero())
    }

    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".to_string();
        }
        let mut chunks = Vec::new();
        let mut limbs = self.0.clone();
        while !limbs.is_empty() {
            let mut rem = 0u64;
            for l in limbs.iter_mut().rev() {
                let v = (rem << 32) | u64::from(*l);
                *l = (v / 1_000_000_000) as u32;
                rem = v % 1_000_000_000;
            }
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
            chunks.push(rem as u32);
        }
        let mut text = chunks.pop().map(|c| c.to_string()).unwrap_or_default();
        for c in chunks.iter().rev() {
            text.push_str(&format!("{c:09}"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// INCRBYFLOAT of `by` on a key holding `current`, as text.
    fn incr(current: &str, by: &str) -> Option<String> {
        let finite = |t: &str| match LongDouble::parse(t.as_bytes()) {
            Some(Parsed::Finite(v)) => Some(v),
            _ => None,
        };
        Some(finite(current)?.add(finite(by)?)?.to_human_string())
    }

    fn human(text: &str) -> Option<String> {
        incr("0", text)
    }

    // Expected values are Redis 7.0.15's replies on x86-64 (Debian's redis-server).
    #[test]
    fn decimal_fractions_add_as_in_redis() {
        assert_eq!(incr("10.5", "0.1").as_deref(), Some("10.6"));
        assert_eq!(incr("0.1", "0.2").as_deref(), Some("0.3"));
        assert_eq!(incr("1.1", "-1.1").as_deref(), Some("0"));
        assert_eq!(human("5.0e3").as_deref(), Some("5000"));
        assert_eq!(human("1e-5").as_deref(), Some("0.00001"));
        assert_eq!(human("-0").as_deref(), Some("0"));
    }

    #[test]
    fn wide_values_print_every_integer_digit() {
        assert_eq!(
            human("123456789012345678901234567890").as_deref(),
            Some("123456789012345678899921813504")
        );
        let sum = incr("1e308", "1e308").expect("finite in long double");
        assert!(sum.starts_with("199999999999999999993371759311691291321120199694831134415"));
        assert_eq!(sum.len(), 309);
        let largest = human("1.18973149535723176502e+4932").expect("largest finite");
        assert_eq!(largest.len(), 4933);
        assert!(largest.starts_with("118973149535723176502126385303097020516906332229462420044"));
    }

    #[test]
    fn printing_rounds_ties_to_even_at_17_decimals() {
        assert_eq!(human("0.000003814697265625").as_deref(), Some("0.00000381469726562"));
        assert_eq!(human("0.000011444091796875").as_deref(), Some("0.00001144409179688"));
        assert_eq!(human("0.00000762939453125").as_deref(), Some("0.00000762939453125"));
    }

    #[test]
    fn parsing_follows_strtold_and_string2ld() {
        for (text, expected) in [
            ("0x10", "16"),
            ("0x1p3", "8"),
            ("0X1.8P1", "3"),
            ("0x.8", "0.5"),
            ("1.e5", "100000"),
            (".5", "0.5"),
            ("+.5e-3", "0.0005"),
            ("00001.5", "1.5"),
            ("4e-4951", "0"),
            ("2.5e-310", "0"),
        ] {
            assert_eq!(human(text).as_deref(), Some(expected), "{text}");
        }
        for refused in [
            "",
            " 1",
            "1 ",
            "\t1",
            "1\0",
            "0x",
            "nan",
            "1e",
            "1e+",
            ".",
            "-",
            ".e1",
            "1_000",
            "1e-4951",
            "1e5000",
            "1.2e4932",
            "1e-99999999999999999999",
        ] {
            assert_eq!(LongDouble::parse(refused.as_bytes()), None, "{refused:?}");
        }
        for infinite in ["inf", "-inf", "INFINITY", "+Inf"] {
            assert_eq!(LongDouble::parse(infinite.as_bytes()), Some(Parsed::Infinite));
        }
    }

    #[test]
    fn sums_past_the_largest_value_overflow() {
        assert_eq!(incr("1.18973149535723176502e+4932", "1e4932"), None);
    }
}
