//! Argument parsing shared by every handler: a cursor over the arguments
//! and Redis's number parsers with its exact error replies.

use bytes::Bytes;

use crate::error::CommandError;
use crate::protocol::request::parse_i64;

/// A cursor over a command's arguments (after the name).
pub struct Args<'a> {
    argv: &'a [Bytes],
    pos: usize,
}

impl<'a> Iterator for Args<'a> {
    type Item = &'a Bytes;

    fn next(&mut self) -> Option<&'a Bytes> {
        let a = self.argv.get(self.pos);
        if a.is_some() {
            self.pos += 1;
        }
        a
    }
}

impl<'a> Args<'a> {
    /// Starts after the command name (and after `skip` more arguments).
    pub fn new(argv: &'a [Bytes], skip: usize) -> Args<'a> {
        Args {
            argv,
            pos: 1 + skip,
        }
    }

    pub fn remaining(&self) -> usize {
        self.argv.len().saturating_sub(self.pos)
    }

    /// The next argument, or a syntax error if there is none.
    pub fn value(&mut self) -> Result<&'a Bytes, CommandError> {
        self.next().ok_or(CommandError::Syntax)
    }

    pub fn int(&mut self) -> Result<i64, CommandError> {
        int(self.value()?)
    }

    /// The next argument as an integer of at least `min`; see [`int_at_least`].
    pub fn int_at_least(&mut self, min: i64, msg: &'static str) -> Result<i64, CommandError> {
        int_at_least(self.value()?, min, msg)
    }

    /// Whether the next argument is `word` (case-insensitive); consumes it if so.
    pub fn eat(&mut self, word: &str) -> bool {
        match self.argv.get(self.pos) {
            Some(a) if a.eq_ignore_ascii_case(word.as_bytes()) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    /// Rejects anything left over.
    pub fn finish(&self) -> Result<(), CommandError> {
        if self.remaining() > 0 {
            Err(CommandError::Syntax)
        } else {
            Ok(())
        }
    }
}

pub fn int(b: &[u8]) -> Result<i64, CommandError> {
    parse_i64(b).ok_or(CommandError::NotInteger)
}

/// An integer of at least `min`, or `-ERR <msg>` for anything else, a word
/// that is no number included (Redis's `getRangeLongFromObjectOrReply` and
/// `getPositiveLongFromObjectOrReply` given a message: "COUNT can't be
/// negative" answers `COUNT x` too).
pub fn int_at_least(b: &[u8], min: i64, msg: &'static str) -> Result<i64, CommandError> {
    match parse_i64(b) {
        Some(n) if n >= min => Ok(n),
        _ => Err(CommandError::err(msg)),
    }
}

/// A count that must not be negative (pops, DEBUG POPULATE), with Redis's
/// message for anything else, a word that is no number included.
pub fn positive_count(b: &[u8]) -> Result<usize, CommandError> {
    int_at_least(b, 0, "value is out of range, must be positive").map(|n| n as usize)
}

/// SRANDMEMBER's, HRANDFIELD's and ZRANDMEMBER's count: how many to draw
/// and whether distinct (a negative count draws with repeats). Redis takes
/// -i64::MAX..=i64::MAX, and half that with values or scores, whose reply
/// is twice as long. A draw with repeats is also refused where even the
/// smallest reply it could make (an empty string per element, and the
/// element's place in the draw) would not fit in this machine's memory:
/// Redis builds such a reply until the kernel kills it.
pub fn rand_count(b: &[u8], with_values: bool) -> Result<(usize, bool), CommandError> {
    let out_of_range = || CommandError::err("value is out of range");
    let count = int(b)?;
    let n = count.unsigned_abs();
    if count == i64::MIN || (with_values && n > (i64::MAX / 2) as u64) {
        return Err(out_of_range());
    }
    if count < 0 {
        let per_element: u64 = if with_values { 2 * 6 + 16 } else { 6 + 16 };
        if n.saturating_mul(per_element) > crate::server::memory::total_system_memory() {
            return Err(out_of_range());
        }
    }
    Ok((n as usize, count >= 0))
}

/// A non-negative integer that fits `usize` (counts, offsets).
pub fn uint(b: &[u8]) -> Result<usize, CommandError> {
    match parse_i64(b) {
        Some(n) if n >= 0 => Ok(n as usize),
        _ => Err(CommandError::NotInteger),
    }
}

/// Parses a double as Redis's `string2d` does: the whole string is one
/// number in `strtod`'s syntax (decimal or hexadecimal, `inf`,
/// `infinity`), no leading space; NaN, and numbers that overflow to
/// infinity or underflow to zero, refused.
pub fn float(b: &[u8]) -> Result<f64, CommandError> {
    match strtod(b) {
        Some((v, erange)) if !v.is_nan() && !(erange && (v.is_infinite() || v == 0.0)) => Ok(v),
        _ => Err(CommandError::NotFloat),
    }
}

/// C's `strtod` over the whole of `b` (no leading space skipped): the value
/// and whether `errno` would say ERANGE (overflow, or an underflow to zero
/// or a denormal). None when `b` is not entirely one number.
pub fn strtod(b: &[u8]) -> Option<(f64, bool)> {
    let s = std::str::from_utf8(b).ok()?;
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.len() > 2 && body.as_bytes()[0] == b'0' && matches!(body.as_bytes()[1], b'x' | b'X') {
        return strtod_hex(&body[2..]).map(|(v, erange)| (if negative { -v } else { v }, erange));
    }
    if !body.starts_with(|c: char| {
        c.is_ascii_digit() || c == '.' || c == 'i' || c == 'I' || c == 'n' || c == 'N'
    }) {
        // Rust would take a second sign or a space that strtod refuses.
        return None;
    }
    // Rust's reading of the decimal forms is strtod's, correctly rounded.
    let v: f64 = s.parse().ok()?;
    // An underflow to zero is a zero read from nonzero digits; looked for
    // only when the value is zero (every ZADD score comes through here).
    let underflow = || {
        let digits = body.split(['e', 'E']).next().unwrap_or("");
        digits.bytes().any(|c| (b'1'..=b'9').contains(&c))
    };
    let erange = (v.is_infinite() && body.starts_with(|c: char| c.is_ascii_digit() || c == '.'))
        || (v == 0.0 && underflow())
        || v.is_subnormal();
    Some((v, erange))
}

/// `strtod` as Redis calls it straight on an argument (score ranges, SORT):
/// leading white space skipped, and an empty string is 0 (nothing
/// converted, nothing left over); a string of spaces is no number.
pub fn strtod_lenient(b: &[u8]) -> Option<(f64, bool)> {
    if b.is_empty() {
        return Some((0.0, false));
    }
    let start = b
        .iter()
        .position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'))?;
    strtod(&b[start..])
}

/// A hexadecimal float after its `0x`.
fn strtod_hex(h: &str) -> Option<(f64, bool)> {
    use rustc_apfloat::{Float, Round, Status};
    if !c_number_syntax(h, true) {
        return None;
    }
    // APFloat wants the binary exponent that strtod makes optional.
    let text = if h.contains(['p', 'P']) {
        format!("0x{h}")
    } else {
        format!("0x{h}p0")
    };
    let r = rustc_apfloat::ieee::Double::from_str_r(&text, Round::NearestTiesToEven).ok()?;
    let v = f64::from_bits(r.value.to_bits() as u64);
    let erange = r.status.intersects(Status::OVERFLOW | Status::UNDERFLOW);
    Some((v, erange))
}

/// Whether `s` (past any sign, and past `0x` when `hex`) is entirely one
/// number as C's strtod reads it: `[digits][.digits]` with at least one
/// digit, then an optional exponent (`e` for decimal, `p` for hexadecimal)
/// of decimal digits.
pub fn c_number_syntax(s: &str, hex: bool) -> bool {
    let (marks, digit): (&[char], fn(&u8) -> bool) = if hex {
        (&['p', 'P'], u8::is_ascii_hexdigit)
    } else {
        (&['e', 'E'], u8::is_ascii_digit)
    };
    let (mantissa, exponent) = match s.find(marks) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.len() + frac.len() == 0
        || !int.as_bytes().iter().all(digit)
        || !frac.as_bytes().iter().all(digit)
    {
        return false;
    }
    exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
    })
}

/// Lossy UTF-8 for messages that quote an argument.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_follow_redis() {
        assert_eq!(float(b"1.5").unwrap(), 1.5);
        assert_eq!(float(b"-inf").unwrap(), f64::NEG_INFINITY);
        assert_eq!(float(b"5e3").unwrap(), 5000.0);
        assert!(float(b" 1").is_err());
        assert!(float(b"nan").is_err());
        assert!(float(b"abc").is_err());
        assert_eq!(float(b"0x10").unwrap(), 16.0);
        assert_eq!(float(b"-0x1.8p1").unwrap(), -3.0);
        assert!(float(b"1e400").is_err(), "overflow");
        assert!(float(b"1e-400").is_err(), "underflow to zero");
        assert_eq!(float(b"0e-400").unwrap(), 0.0);
        assert!(float(b"1e-310").is_ok(), "a denormal is a number");
        assert!(float(b"+-1").is_err());
        assert!(float(b"0x").is_err());
        assert_eq!(strtod(b"1e400"), Some((f64::INFINITY, true)));
        assert_eq!(strtod(b"inf"), Some((f64::INFINITY, false)));
    }

    #[test]
    fn cursor_finish_rejects_extra() {
        let argv: Vec<Bytes> = ["set", "k", "v", "NX", "x"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        let mut a = Args::new(&argv, 2);
        assert!(a.eat("nx"));
        assert!(a.finish().is_err());
    }
}
