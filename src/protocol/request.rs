//! Incremental request parsing.
//!
//! The parser is called on the connection's read buffer after every read. It
//! either consumes one whole request and returns its arguments, or returns
//! `None` and leaves the buffer untouched until more bytes arrive. A
//! [`Parser`] remembers how far it got into a multibulk request, so a
//! request arriving in many reads is parsed once, not once per read (that
//! was quadratic: a 6 MB, 300,000-argument RPUSH trickled in 4 KB pieces
//! cost 0.45 s of CPU, Redis 0.05 s). Bodies are skipped by length, never
//! scanned.
//!
//! Arguments are zero-copy: the consumed prefix of the buffer is frozen and each
//! argument is a `Bytes` slice of it (the last one the frozen prefix itself,
//! cut down: one reference count fewer to take and drop per request).
//!
//! The common header (`*3`, `$5`: a plain number and `\r\n`) is read in
//! one pass; anything unusual, or a header not all there yet, goes the
//! general way (find the line's end, then parse it as Redis's `string2ll`
//! does), which gives the exact errors. Parsing a pipelined LPUSH took 870
//! instructions of the 3,690 its I/O thread ran in user space (callgrind);
//! 580 since.
//!
//! Limits, as in Redis 7: an inline line or a multibulk/bulk header line
//! longer than 64 KiB, a multibulk count above 2^31-1, or a bulk length
//! above `proto-max-bulk-len` are protocol errors. The query-buffer limit
//! is the connection's business (it counts bytes not yet forming a
//! request).

use bytes::{Bytes, BytesMut};

/// Longest inline request or header line Redis accepts (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX: usize = 64 * 1024;
/// Largest multibulk count Redis accepts (INT_MAX).
const MULTIBULK_MAX: i64 = i32::MAX as i64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn perr(msg: impl Into<String>) -> ProtocolError {
    ProtocolError(msg.into())
}

#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_bulk_len: i64,
}

/// Parses one request from the front of `buf`, with no memory of earlier
/// calls (a whole buffer at hand: the log at start-up).
///
/// Returns `Ok(Some(args))` and consumes the request, `Ok(None)` when more bytes
/// are needed, or a protocol error. Empty requests (`*0`, `*-1`, blank inline
/// lines) are consumed and returned as an empty vector, which callers skip.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: RequestLimits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    Parser::default().next(buf, limits)
}

/// How far a multibulk request has been read. Offsets are into the buffer,
/// which only grows at its end until the request is taken from its front.
struct Partial {
    count: usize,
    /// Where the next bulk header starts.
    pos: usize,
    spans: smallvec::SmallVec<[(usize, usize); 8]>,
}

/// [`parse_request`] for a connection: between calls the buffer may only
/// grow at its end, and a partly read request goes on from where it was.
#[derive(Default)]
pub struct Parser {
    partial: Option<Partial>,
}

impl Parser {
    pub fn next(
        &mut self,
        buf: &mut BytesMut,
        limits: RequestLimits,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        if buf.is_empty() {
            return Ok(None);
        }
        if self.partial.is_some() || buf[0] == b'*' {
            parse_multibulk(buf, limits, &mut self.partial)
        } else {
            parse_inline(buf)
        }
    }
}

/// Finds `\r\n` at or after `from`; returns the index of `\r`.
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(pos) = memchr(b'\r', &buf[i..]) {
        let at = i + pos;
        if at + 1 >= buf.len() {
            return None;
        }
        if buf[at + 1] == b'\n' {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Parses a signed decimal as Redis's `string2ll` does: no spaces, no '+',
/// no leading zeros except "0" itself.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let (neg, digits) = if s[0] == b'-' {
        (true, &s[1..])
    } else {
        (false, s)
    };
    if digits.is_empty() || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    if neg && v == 0 {
        return None; // "-0" is not canonical
    }
    Some(v)
}

/// The usual header number: a plain decimal of 1 to 18 digits starting
/// at `from`, followed by `\r\n`; its value and where the next line
/// starts. Anything else (a sign, a leading zero, a line not complete
/// yet, a bad one) is `None`, and the caller takes the general path, which
/// has the exact errors. One pass instead of a search for the line's end
/// and then a parse of it: a request's headers are most of its bytes.
#[inline(always)]
fn plain_number(buf: &[u8], from: usize) -> Option<(u64, usize)> {
    let mut i = from;
    let mut n: u64 = 0;
    while let Some(&c) = buf.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        // Past 18 digits the value is not used.
        n = n.wrapping_mul(10).wrapping_add(d as u64);
        i += 1;
    }
    let len = i - from;
    let plain = (1..=18).contains(&len) && !(len > 1 && buf[from] == b'0');
    (plain && buf.get(i..i + 2) == Some(b"\r\n")).then_some((n, i + 2))
}

fn parse_multibulk(
    buf: &mut BytesMut,
    limits: RequestLimits,
    partial: &mut Option<Partial>,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let p = match partial {
        Some(p) => p,
        None => {
            let (count, pos) = match plain_number(buf, 1) {
                Some((n, pos)) if n <= MULTIBULK_MAX as u64 => (n as i64, pos),
                _ => {
                    let Some(eol) = find_crlf(buf, 0) else {
                        if buf.len() > INLINE_MAX {
                            return Err(perr("too big mbulk count string"));
                        }
                        return Ok(None);
                    };
                    if eol > INLINE_MAX {
                        return Err(perr("too big mbulk count string"));
                    }
                    match parse_i64(&buf[1..eol]) {
                        Some(n) if n <= MULTIBULK_MAX => (n, eol + 2),
                        _ => return Err(perr("invalid multibulk length")),
                    }
                }
            };
            if count <= 0 {
                let _ = buf.split_to(pos);
                return Ok(Some(Vec::new()));
            }
            partial.insert(Partial {
                count: count as usize,
                pos,
                spans: smallvec::SmallVec::new(),
            })
        }
    };
    // Validate each header and find where the request ends; stop (and
    // remember where) at the first that has not fully arrived.
    while p.spans.len() < p.count {
        let pos = p.pos;
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            let got = buf[pos] as char;
            *partial = None;
            return Err(perr(format!("expected '$', got '{got}'")));
        }
        let (len, start) = match plain_number(buf, pos + 1) {
            Some((n, start)) if n <= limits.max_bulk_len as u64 => (n as usize, start),
            _ => {
                let Some(eol) = find_crlf(buf, pos) else {
                    if buf.len() - pos > INLINE_MAX {
                        *partial = None;
                        return Err(perr("too big bulk count string"));
                    }
                    return Ok(None);
                };
                if eol - pos > INLINE_MAX {
                    *partial = None;
                    return Err(perr("too big bulk count string"));
                }
                match parse_i64(&buf[pos + 1..eol]) {
                    Some(n) if (0..=limits.max_bulk_len).contains(&n) => (n as usize, eol + 2),
                    _ => {
                        *partial = None;
                        return Err(perr("invalid bulk length"));
                    }
                }
            }
        };
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        // Redis does not check the terminator either; it skips two bytes.
        p.spans.push((start, end));
        p.pos = end + 2;
    }
    // One reference to the request's bytes per argument: the last
    // argument is the request's frame itself, cut down to it.
    let mut frame = buf.split_to(p.pos).freeze();
    let (last, rest) = p.spans.split_last().expect("count > 0");
    let mut args = Vec::with_capacity(p.count);
    args.extend(rest.iter().map(|&(s, e)| frame.slice(s..e)));
    frame.truncate(last.1);
    bytes::Buf::advance(&mut frame, last.0);
    args.push(frame);
    *partial = None;
    Ok(Some(args))
}

fn parse_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > INLINE_MAX {
            return Err(perr("too big inline request"));
        }
        return Ok(None);
    };
    if nl > INLINE_MAX {
        return Err(perr("too big inline request"));
    }
    let line = buf.split_to(nl + 1);
    let mut end = nl;
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    let args = split_args(&line[..end]).ok_or_else(|| perr("unbalanced quotes in request"))?;
    Ok(Some(args.into_iter().map(Bytes::from).collect()))
}

/// Splits a line into arguments the way Redis's `sdssplitargs` does: spaces
/// separate, double quotes allow `\n \r \t \b \a \\ \" \xHH` escapes, single
/// quotes allow only `\'`. A closing quote must be followed by a space or the
/// end. Returns `None` on unbalanced quotes. Also used by the config file reader.
///
/// A NUL byte ends the line, as it ends the C string `sdssplitargs` reads
/// (so a NUL inside quotes leaves them unbalanced); a NUL that only ended
/// the current argument made the space-skipping loop stand still and push
/// empty arguments until memory ran out.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let line = &line[..memchr(0, line).unwrap_or(line.len())];
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        // C's isspace, which Redis skips between arguments (\v included).
        while i < n && matches!(line[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
            i += 1;
        }
        if i >= n {
            return Some(out);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\'
                    && i + 3 < n
                    && line[i + 1] == b'x'
                    && is_hex(line[i + 2])
                    && is_hex(line[i + 3])
                {
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if i + 1 < n && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        out.push(cur);
    }
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: RequestLimits = RequestLimits {
        max_bulk_len: 512 * 1024 * 1024,
    };

    fn parse(s: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut b = BytesMut::from(s);
        parse_request(&mut b, LIM)
    }

    #[test]
    fn multibulk_whole_and_partial() {
        let full = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        let args = parse(full).unwrap().unwrap();
        assert_eq!(args, vec![Bytes::from("GET"), Bytes::from("k")]);
    }

    #[test]
    fn pipelined_requests_consume_one_at_a_time() {
        let mut b = BytesMut::from(&b"*1\r\n$4\r\nPING\r\nPING\r\n"[..]);
        assert_eq!(parse_request(&mut b, LIM).unwrap().unwrap().len(), 1);
        assert_eq!(
            parse_request(&mut b, LIM).unwrap().unwrap(),
            vec![Bytes::from("PING")]
        );
        assert!(b.is_empty());
    }

    #[test]
    fn a_request_arriving_in_pieces_is_parsed_once_and_whole() {
        let req = b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$10\r\n0123456789\r\n*1\r\n$4\r\nPING\r\n";
        for step in [1, 2, 3, 7, 64] {
            let (mut parser, mut buf, mut got) = (Parser::default(), BytesMut::new(), Vec::new());
            for piece in req.chunks(step) {
                buf.extend_from_slice(piece);
                while let Some(argv) = parser.next(&mut buf, LIM).unwrap() {
                    got.push(argv);
                }
            }
            let want: Vec<Vec<Bytes>> = vec![
                vec!["SET".into(), "hello".into(), "0123456789".into()],
                vec!["PING".into()],
            ];
            assert_eq!(got, want, "in pieces of {step}");
            assert!(buf.is_empty() && parser.partial.is_none());
        }
    }

    #[test]
    fn counts_up_to_int_max_wait_for_their_arguments() {
        assert_eq!(parse(b"*2147483647\r\n$1\r\na\r\n"), Ok(None));
        assert!(parse(b"*2147483648\r\n").is_err());
    }

    #[test]
    fn protocol_errors_match_redis() {
        assert_eq!(
            parse(b"*x\r\n").unwrap_err().to_string(),
            "Protocol error: invalid multibulk length"
        );
        assert_eq!(
            parse(b"*1\r\n+x\r\n").unwrap_err().to_string(),
            "Protocol error: expected '$', got '+'"
        );
        assert_eq!(
            parse(b"*1\r\n$-5\r\n").unwrap_err().to_string(),
            "Protocol error: invalid bulk length"
        );
        let small = RequestLimits { max_bulk_len: 10 };
        let mut b = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
        assert!(parse_request(&mut b, small).is_err());
        assert_eq!(
            parse(b"SET \"a b\r\n").unwrap_err().to_string(),
            "Protocol error: unbalanced quotes in request"
        );
        let big = vec![b'a'; INLINE_MAX + 10];
        assert_eq!(
            parse(&big).unwrap_err().to_string(),
            "Protocol error: too big inline request"
        );
    }

    /// Headers the one-pass path does not take (leading zeros, signs,
    /// over 18 digits, a stray byte) get the general path's answers, and
    /// the arguments it cuts are exact, empty ones and binary ones too.
    #[test]
    fn unusual_headers_and_arguments_parse_as_in_redis() {
        let err = |s: &[u8]| parse(s).unwrap_err().to_string();
        assert_eq!(err(b"*01\r\n"), "Protocol error: invalid multibulk length");
        assert_eq!(
            err(b"*1\r\n$03\r\nabc\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            err(b"*1\r\n$3x\r\nabc\r\n"),
            "Protocol error: invalid bulk length"
        );
        let long = b"*1\r\n$1234567890123456789\r\n";
        assert_eq!(err(long), "Protocol error: invalid bulk length");
        assert_eq!(
            err(b"*1\r\n$+3\r\nabc\r\n"),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(parse(b"*-1\r\n").unwrap().unwrap(), Vec::<Bytes>::new());
        let args = parse(b"*3\r\n$0\r\n\r\n$4\r\na\r\nb\r\n$0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            args,
            vec![Bytes::new(), Bytes::from("a\r\nb"), Bytes::new()]
        );
        let mut b = BytesMut::from(&b"*2\r\n$1\r\nx\r\n$2\r\nyz\r\n*1"[..]);
        let args = parse_request(&mut b, LIM).unwrap().unwrap();
        assert_eq!(args, vec![Bytes::from("x"), Bytes::from("yz")]);
        assert_eq!(&b[..], b"*1");
    }

    #[test]
    fn inline_with_quotes_and_escapes() {
        let args = parse(b"set \"a\\x41\\n\" 'it\\'s'\r\n").unwrap().unwrap();
        assert_eq!(
            args,
            vec![Bytes::from("set"), Bytes::from("aA\n"), Bytes::from("it's")]
        );
        assert_eq!(parse(b"\r\n").unwrap().unwrap(), Vec::<Bytes>::new());
    }

    #[test]
    fn a_nul_byte_ends_an_inline_line() {
        assert_eq!(parse(b"\0\r\n").unwrap().unwrap(), Vec::<Bytes>::new());
        assert_eq!(
            parse(b"ECHO ab\0cd ef\r\n").unwrap().unwrap(),
            vec![Bytes::from("ECHO"), Bytes::from("ab")]
        );
        assert!(parse(b"ECHO \"ab\0\"\r\n").is_err());
        assert_eq!(
            parse(b"\x0bPING\x0c\r\n").unwrap().unwrap(),
            vec![Bytes::from("PING\x0c")]
        );
    }

    #[test]
    fn integers_parse_canonically() {
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"012"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b"-0"), None);
    }
}
