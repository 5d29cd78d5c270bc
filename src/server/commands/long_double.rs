//! INCRBYFLOAT's arithmetic, done as Redis does it: in C's `long double` (on x86-64 the x87
//! 80-bit extended format: a 64-bit significand, a 15-bit exponent), read with the C library's
//! `strtold` and printed with `"%.17Lf"` minus trailing zeros (`string2ld` and
//! `ld2string(.., LD_STR_HUMAN)` in Redis's `util.c`).
//!
//! An f64 cannot stand in for it: `INCRBYFLOAT k 0.1` then `0.2` is `0.3` in Redis (the extra 11
//! bits absorb the decimal error before the 17-decimal rounding) but `0.30000000000000004` in
//! f64, and Redis accepts values up to about 1.19e4932. Rust has no `long double`, so the few
//! lines that use it are Redis's own, in C (`long_double.c`, compiled by build.rs): the same
//! parsing, addition and printing, so the same bytes on the same platform.

/// Redis's `MAX_LONG_DOUBLE_CHARS`: no text INCRBYFLOAT reads or writes is this long.
const MAX_LONG_DOUBLE_CHARS: usize = 5 * 1024;

unsafe extern "C" {
    /// See long_double.c: the length of the text written to `out`, or -1 (not a number),
    /// -2 (NaN or infinite sum), -3 (`out` too small).
    fn mapcache_incrbyfloat(
        current: *const std::ffi::c_char,
        current_len: usize,
        incr: *const std::ffi::c_char,
        incr_len: usize,
        out: *mut std::ffi::c_char,
        outlen: usize,
    ) -> std::ffi::c_long;
}

/// Why INCRBYFLOAT refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrError {
    /// `-ERR value is not a valid float`: the stored value or the increment.
    NotAFloat,
    /// `-ERR increment would produce NaN or Infinity`.
    NanOrInfinity,
}

/// The text INCRBYFLOAT stores and replies: `current` (`None` for a missing key, which counts
/// as 0) plus `incr`, as Redis's `incrbyfloatCommand` computes and prints it.
pub fn incr_by_float(current: Option<&[u8]>, incr: &[u8]) -> Result<Vec<u8>, IncrError> {
    let mut out = [0u8; MAX_LONG_DOUBLE_CHARS];
    let (current_ptr, current_len) =
        current.map_or((std::ptr::null(), 0), |c| (c.as_ptr(), c.len()));
    // SAFETY: each pointer and length pair describes a live buffer (or null, which the C side
    // reads as a missing key); the C side reads at most `len` bytes of each input, writes at most
    // `out.len()` bytes to `out`, and keeps no pointer after it returns.
    let written = unsafe {
        mapcache_incrbyfloat(
            current_ptr.cast(),
            current_len,
            incr.as_ptr().cast(),
            incr.len(),
            out.as_mut_ptr().cast(),
            out.len(),
        )
    };
    match written {
        -1 => Err(IncrError::NotAFloat),
        -2 => Err(IncrError::NanOrInfinity),
        len if len >= 0 => Ok(out[..len as usize].to_vec()),
        // No finite long double prints to 5 KiB: `%.17Lf` of the largest is 4952 bytes with its
        // sign (4953 with the NUL), before the trailing zeros go.
        other => unreachable!("mapcache_incrbyfloat returned {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// INCRBYFLOAT of `by` on a key holding `current`, as text.
    fn incr(current: &str, by: &str) -> Result<String, IncrError> {
        let text = incr_by_float(Some(current.as_bytes()), by.as_bytes())?;
        Ok(String::from_utf8(text).expect("ASCII"))
    }

    /// INCRBYFLOAT of `text` on a missing key: `text` as Redis prints it.
    fn human(text: &str) -> Result<String, IncrError> {
        let text = incr_by_float(None, text.as_bytes())?;
        Ok(String::from_utf8(text).expect("ASCII"))
    }

    // Expected values are Redis 7.0.15's replies on x86-64 (Debian's redis-server).
    #[test]
    fn decimal_fractions_add_as_in_redis() {
        assert_eq!(incr("10.5", "0.1").as_deref(), Ok("10.6"));
        assert_eq!(incr("0.1", "0.2").as_deref(), Ok("0.3"));
        assert_eq!(incr("1.1", "-1.1").as_deref(), Ok("0"));
        assert_eq!(human("5.0e3").as_deref(), Ok("5000"));
        assert_eq!(human("1e-5").as_deref(), Ok("0.00001"));
        assert_eq!(human("-0").as_deref(), Ok("0"));
    }

    #[test]
    fn wide_values_print_every_integer_digit() {
        assert_eq!(
            human("123456789012345678901234567890").as_deref(),
            Ok("123456789012345678899921813504")
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
        assert_eq!(human("0.000003814697265625").as_deref(), Ok("0.00000381469726562"));
        assert_eq!(human("0.000011444091796875").as_deref(), Ok("0.00001144409179688"));
        assert_eq!(human("0.00000762939453125").as_deref(), Ok("0.00000762939453125"));
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
            assert_eq!(human(text).as_deref(), Ok(expected), "{text}");
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
            assert_eq!(human(refused), Err(IncrError::NotAFloat), "{refused:?}");
            assert_eq!(incr(refused, "1"), Err(IncrError::NotAFloat), "{refused:?} stored");
        }
        // Infinity is a number to strtold: the sum is what is refused.
        for infinite in ["inf", "-inf", "INFINITY", "+Inf"] {
            assert_eq!(human(infinite), Err(IncrError::NanOrInfinity), "{infinite}");
        }
    }

    #[test]
    fn sums_past_the_largest_value_overflow() {
        assert_eq!(incr("1.18973149535723176502e+4932", "1e4932"), Err(IncrError::NanOrInfinity));
    }
}
