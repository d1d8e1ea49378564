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

/// A non-negative integer that fits `usize` (counts, offsets).
pub fn uint(b: &[u8]) -> Result<usize, CommandError> {
    match parse_i64(b) {
        Some(n) if n >= 0 => Ok(n as usize),
        _ => Err(CommandError::NotInteger),
    }
}

/// Parses a float as Redis's `string2ld` does: no surrounding spaces, `inf`
/// and `-inf` accepted, NaN refused.
pub fn float(b: &[u8]) -> Result<f64, CommandError> {
    let s = std::str::from_utf8(b).map_err(|_| CommandError::NotFloat)?;
    if s.is_empty()
        || s.len() > 5120
        || s.starts_with(char::is_whitespace)
        || s.ends_with(char::is_whitespace)
    {
        return Err(CommandError::NotFloat);
    }
    let v: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => s.parse().map_err(|_| CommandError::NotFloat)?,
    };
    if v.is_nan() {
        return Err(CommandError::NotFloat);
    }
    Ok(v)
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
