//! The reply encoder.
//!
//! [`ReplyBuf`] appends RESP to a byte buffer. Each method writes one reply (or
//! the header of an aggregate whose elements follow). Where RESP3 has a richer
//! type than RESP2 (null, map, set, double, verbatim string, push) the method
//! picks the encoding from the negotiated protocol, so command code states the
//! *kind* of reply once and works for both.

use bytes::BytesMut;

/// Whether `line` holds a CR or LF, which a one-line reply cannot.
fn breaks(line: &[u8]) -> bool {
    line.iter().any(|&b| b == b'\r' || b == b'\n')
}

/// A CR or LF as a space (see [`ReplyBuf::line`]).
fn unbroken(b: u8) -> u8 {
    if b == b'\r' || b == b'\n' {
        b' '
    } else {
        b
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

pub struct ReplyBuf {
    pub buf: BytesMut,
    pub proto: Protocol,
}

impl ReplyBuf {
    pub fn new(proto: Protocol) -> Self {
        ReplyBuf {
            buf: BytesMut::with_capacity(16 * 1024),
            proto,
        }
    }

    /// A buffer for one reply built apart (a script's command, a stream's
    /// part of XREAD): it grows only as far as the reply needs.
    pub fn scratch(proto: Protocol) -> Self {
        ReplyBuf {
            buf: BytesMut::new(),
            proto,
        }
    }

    pub fn resp3(&self) -> bool {
        self.proto == Protocol::Resp3
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn header(&mut self, tag: u8, n: i64) {
        let mut b = itoa::Buffer::new();
        let s = b.format(n);
        self.buf.reserve(s.len() + 3);
        self.buf.extend_from_slice(&[tag]);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// A reply that is one line: `tag`, `line` with its CR and LF made
    /// spaces, CRLF. A CR or LF would end the line early, and the client
    /// would read the rest as further replies (a script's status reply
    /// could forge any): Redis maps them to spaces too.
    fn line(&mut self, tag: u8, line: &[u8]) {
        self.buf.reserve(line.len() + 3);
        self.buf.extend_from_slice(&[tag]);
        if breaks(line) {
            self.buf.extend(line.iter().map(|&b| unbroken(b)));
        } else {
            self.buf.extend_from_slice(line);
        }
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn simple(&mut self, s: &str) {
        self.line(b'+', s.as_bytes());
    }

    /// An error reply; `msg` starts with its code (`ERR`, `WRONGTYPE`, ...).
    pub fn error(&mut self, msg: &str) {
        self.line(b'-', msg.as_bytes());
    }

    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.header(b'$', data.len() as i64);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn bulk_int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        self.bulk(b.format(n).as_bytes());
    }

    /// The null bulk string (`$-1` / `_`).
    pub fn null(&mut self) {
        if self.resp3() {
            self.buf.extend_from_slice(b"_\r\n");
        } else {
            self.buf.extend_from_slice(b"$-1\r\n");
        }
    }

    /// The null array (`*-1` / `_`).
    pub fn null_array(&mut self) {
        if self.resp3() {
            self.buf.extend_from_slice(b"_\r\n");
        } else {
            self.buf.extend_from_slice(b"*-1\r\n");
        }
    }

    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as i64);
    }

    /// A map of `n` pairs; in RESP2 a flat array of `2n` elements.
    pub fn map(&mut self, n: usize) {
        if self.resp3() {
            self.header(b'%', n as i64);
        } else {
            self.header(b'*', 2 * n as i64);
        }
    }

    pub fn set(&mut self, n: usize) {
        if self.resp3() {
            self.header(b'~', n as i64);
        } else {
            self.header(b'*', n as i64);
        }
    }

    /// RESP3's attribute of `n` pairs, which the next reply carries (a
    /// RESP2 client gets none: the caller leaves it out).
    pub fn attribute(&mut self, n: usize) {
        self.header(b'|', n as i64);
    }

    pub fn push(&mut self, n: usize) {
        if self.resp3() {
            self.header(b'>', n as i64);
        } else {
            self.header(b'*', n as i64);
        }
    }

    /// A double: `,` in RESP3, a bulk string in RESP2 (formatted as Redis's `%.17g`).
    pub fn double(&mut self, d: f64) {
        // Whole scores are the common case and print as integers under
        // %.17g below 1e17: no printf, no allocation.
        if d.fract() == 0.0 && d.abs() < 1e17 && !(d == 0.0 && d.is_sign_negative()) {
            let mut b = itoa::Buffer::new();
            self.double_text(b.format(d as i64));
            return;
        }
        self.double_text(&format_double(d));
    }

    /// A double already formatted (GEOPOS's coordinates are printed as
    /// Redis prints long doubles): `,` in RESP3, a bulk string in RESP2.
    pub fn double_text(&mut self, s: &str) {
        if self.resp3() {
            self.buf.extend_from_slice(b",");
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(s.as_bytes());
        }
    }

    /// A free-form text reply (INFO, CLIENT LIST): verbatim `txt` in RESP3.
    pub fn verbatim(&mut self, text: &str) {
        self.verbatim_as(b"txt", text.as_bytes());
    }

    /// A verbatim string of `format` (three characters, as RESP3 has
    /// them; a script may give others, cut or padded as Redis does), a
    /// bulk string in RESP2.
    pub fn verbatim_as(&mut self, format: &[u8], text: &[u8]) {
        if self.resp3() {
            let mut f = [b' '; 3];
            for (d, s) in f.iter_mut().zip(format) {
                *d = *s;
            }
            self.header(b'=', text.len() as i64 + 4);
            self.buf.extend_from_slice(&f);
            self.buf.extend_from_slice(b":");
            self.buf.extend_from_slice(text);
            self.buf.extend_from_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }

    /// A boolean: `#t`/`#f` in RESP3, 1 or 0 in RESP2.
    pub fn boolean(&mut self, b: bool) {
        if self.resp3() {
            self.buf
                .extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" });
        } else {
            self.int(b as i64);
        }
    }

    /// A big number's digits: `(` in RESP3, a bulk string in RESP2.
    /// A big number (a bulk string in RESP2, with the same text: its CR
    /// and LF spaces, as Redis writes a script's big number).
    pub fn big_number(&mut self, digits: &[u8]) {
        if self.resp3() {
            self.line(b'(', digits);
        } else if breaks(digits) {
            let spaced: Vec<u8> = digits.iter().map(|&b| unbroken(b)).collect();
            self.bulk(&spaced);
        } else {
            self.bulk(digits);
        }
    }

    pub fn strings<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.array(items.len());
        for i in items {
            self.bulk(i);
        }
    }
}

/// Formats a double the way Redis 7.0 replies with one: C's `%.17g`
/// (`0.1` is `0.10000000000000001`), `inf` and `-inf`. Seventeen
/// significant digits also read back to the same double, which is what the
/// log and the digest rely on.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let mut buf = [0u8; 64];
    // SAFETY: `buf` holds any %.17g output (at most 24 bytes) and snprintf
    // writes at most `buf.len()` bytes, NUL included.
    let n = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.17g".as_ptr(), d) };
    String::from_utf8_lossy(&buf[..(n.max(0) as usize).min(buf.len() - 1)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_and_resp3_encodings() {
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.null();
        r.map(1);
        r.bulk(b"a");
        r.int(1);
        assert_eq!(&r.buf[..], b"$-1\r\n*2\r\n$1\r\na\r\n:1\r\n");
        let mut r = ReplyBuf::new(Protocol::Resp3);
        r.null();
        r.map(1);
        r.verbatim("hi");
        r.double(1.5);
        assert_eq!(&r.buf[..], b"_\r\n%1\r\n=6\r\ntxt:hi\r\n,1.5\r\n");
    }

    #[test]
    fn line_replies_cannot_be_broken() {
        let mut r = ReplyBuf::new(Protocol::Resp3);
        r.simple("a\r\n+OK");
        r.error("ERR x\ny");
        r.big_number(b"1\r2");
        assert_eq!(&r.buf[..], b"+a  +OK\r\n-ERR x y\r\n(1 2\r\n");
    }

    #[test]
    fn doubles_use_printf_g17() {
        for d in [3.0, -7.0, 0.0, -0.0, 1e16, 1e17, 0.5, 123456789.0] {
            let mut a = ReplyBuf::new(Protocol::Resp2);
            a.double(d);
            let mut b = ReplyBuf::new(Protocol::Resp2);
            b.bulk(format_double(d).as_bytes());
            assert_eq!(a.buf, b.buf, "{d}");
        }
        assert_eq!(format_double(1.0), "1");
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(1e20), "1e+20");
    }

    #[test]
    fn errors_cannot_break_framing() {
        let mut r = ReplyBuf::new(Protocol::Resp2);
        r.error("ERR a\r\nb");
        assert_eq!(&r.buf[..], b"-ERR a  b\r\n");
    }
}
