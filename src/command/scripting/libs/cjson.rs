//! lua-cjson 2.1.0 as Redis bundles it: `encode`, `decode`, `null`, the
//! configuration functions and `new`, with its encodings, limits and error
//! texts.
//!
//! Encoding: numbers with `%.14g` (`encode_number_precision`), `/`
//! escaped, an empty table as an object, a table whose keys are 1..n as an
//! array (holes allowed up to the sparse ratio, `encode_sparse_array`),
//! JSON null as `cjson.null`. Decoding reads as lua-cjson's tokenizer
//! does: numbers through the C library's `strtod` (so, by default, `inf`,
//! `nan`, hex and a leading `+` too: `decode_invalid_numbers`), the input
//! ending at its first NUL byte, and errors naming the token expected, the
//! one found and where ("Expected value but found T_END at character 1").
//!
//! The configuration belongs to the library table, as lua-cjson keeps it
//! in its functions' upvalue: a script's `cjson.encode_max_depth(5)` holds
//! for later scripts run by the same Lua state, as in Redis (whose one
//! state serves every script; here each I/O thread has its own, so a
//! setting holds on the thread that made it). `cjson.new()` gives a table
//! with a configuration of its own.
//!
//! Nesting is bounded as Lua bounds lua-cjson's: besides the configured
//! depths, by the Lua stack a C function may use (`LUAI_MAXCSTACK`), so
//! that no setting makes the recursion here unbounded. Each level counts
//! the slots it holds here (mlua's references and iterations included),
//! more than lua-cjson's for arrays and encoded objects: past depths of
//! some 2,000 to 4,000, which only raised limits allow, the error comes a
//! little sooner than in Redis.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{LightUserData, Lua, MultiValue, Table, Value};

/// The Lua stack slots a C function may use (Lua 5.1's LUAI_MAXCSTACK).
const LUA_MAX_C_STACK: usize = 8000;

/// lua-cjson's settings, defaults as Redis builds it.
#[derive(Clone, Copy)]
struct Config {
    sparse_convert: bool,
    sparse_ratio: i32,
    sparse_safe: i32,
    encode_max_depth: i32,
    decode_max_depth: i32,
    /// 0 refuse, 1 write `nan`/`inf`, 2 write `null`.
    encode_invalid_numbers: i32,
    decode_invalid_numbers: bool,
    /// Kept only to be reported back: whether lua-cjson reuses its buffer
    /// changes nothing a script sees.
    keep_buffer: bool,
    precision: i32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: 0,
            decode_invalid_numbers: true,
            keep_buffer: true,
            precision: 14,
        }
    }
}

type Shared = Rc<Cell<Config>>;

pub fn library(lua: &Lua) -> mlua::Result<Table> {
    let cfg: Shared = Rc::default();
    let t = lua.create_table()?;
    let c = cfg.clone();
    t.raw_set(
        "encode",
        lua.create_function(move |lua, args: MultiValue| {
            let args = args.into_vec();
            if args.len() != 1 {
                return Err(arg_error(lua, 1, "encode", "expected 1 argument"));
            }
            let mut e = Encoder {
                cfg: c.get(),
                out: Vec::new(),
                slots: 1,
            };
            e.value(&args[0], 0)?;
            lua.create_string(&e.out)
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "decode",
        lua.create_function(move |lua, args: MultiValue| {
            let args = args.into_vec();
            if args.len() != 1 {
                return Err(arg_error(lua, 1, "decode", "expected 1 argument"));
            }
            let text = super::string(lua, &args, 1, "decode")?;
            decode(lua, c.get(), &text)
        })?,
    )?;
    let option =
        |name: &'static str, set: fn(&Lua, &[Value], &mut Config) -> mlua::Result<MultiValue>| {
            let c = cfg.clone();
            lua.create_function(move |lua, args: MultiValue| {
                let mut now = c.get();
                let out = set(lua, &args.into_vec(), &mut now);
                c.set(now);
                out
            })
            .and_then(|f| t.raw_set(name, f))
        };
    option("encode_sparse_array", |lua, args, c| {
        let name = "encode_sparse_array";
        at_most(lua, args, 3, name)?;
        let convert = bool_option(lua, args, 1, name, &mut c.sparse_convert)?;
        let ratio = int_option(lua, args, 2, name, &mut c.sparse_ratio, 0, i32::MAX)?;
        let safe = int_option(lua, args, 3, name, &mut c.sparse_safe, 0, i32::MAX)?;
        Ok(MultiValue::from_iter([convert, ratio, safe]))
    })?;
    option("encode_max_depth", |lua, args, c| {
        int_setting(
            lua,
            args,
            "encode_max_depth",
            &mut c.encode_max_depth,
            1,
            i32::MAX,
        )
    })?;
    option("decode_max_depth", |lua, args, c| {
        int_setting(
            lua,
            args,
            "decode_max_depth",
            &mut c.decode_max_depth,
            1,
            i32::MAX,
        )
    })?;
    option("encode_number_precision", |lua, args, c| {
        int_setting(
            lua,
            args,
            "encode_number_precision",
            &mut c.precision,
            1,
            14,
        )
    })?;
    option("encode_keep_buffer", |lua, args, c| {
        bool_setting(lua, args, "encode_keep_buffer", &mut c.keep_buffer)
    })?;
    option("encode_invalid_numbers", |lua, args, c| {
        let name = "encode_invalid_numbers";
        at_most(lua, args, 1, name)?;
        let options = ["off", "on", "null"];
        enum_option(lua, args, 1, name, &mut c.encode_invalid_numbers, &options).map(one)
    })?;
    option("decode_invalid_numbers", |lua, args, c| {
        bool_setting(
            lua,
            args,
            "decode_invalid_numbers",
            &mut c.decode_invalid_numbers,
        )
    })?;
    t.raw_set("new", lua.create_function(|lua, ()| library(lua))?)?;
    t.raw_set("null", null())?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    Ok(t)
}

fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// A setting that takes one integer argument (or none, to read it).
fn int_setting(
    lua: &Lua,
    args: &[Value],
    name: &str,
    setting: &mut i32,
    min: i32,
    max: i32,
) -> mlua::Result<MultiValue> {
    at_most(lua, args, 1, name)?;
    int_option(lua, args, 1, name, setting, min, max).map(one)
}

/// A setting that takes one on/off argument (or none, to read it).
fn bool_setting(
    lua: &Lua,
    args: &[Value],
    name: &str,
    setting: &mut bool,
) -> mlua::Result<MultiValue> {
    at_most(lua, args, 1, name)?;
    bool_option(lua, args, 1, name, setting).map(one)
}

fn one(v: Value) -> MultiValue {
    MultiValue::from_iter([v])
}

/// luaL_argerror's error, named as the function was called.
fn arg_error(lua: &Lua, n: usize, function: &str, m: &str) -> mlua::Error {
    super::bad_argument(n, &super::called(lua, function), m)
}

/// lua-cjson's json_arg_init: at most `n` arguments.
fn at_most(lua: &Lua, args: &[Value], n: usize, function: &str) -> mlua::Result<()> {
    if args.len() > n {
        return Err(arg_error(lua, n + 1, function, "found too many arguments"));
    }
    Ok(())
}

fn given(args: &[Value], n: usize) -> bool {
    !matches!(args.get(n - 1), None | Some(Value::Nil))
}

/// json_integer_option: sets `setting` from argument `n` if given, within
/// `min..=max` (an error names argument 1 whichever it was, as
/// lua-cjson's does), and returns the setting.
fn int_option(
    lua: &Lua,
    args: &[Value],
    n: usize,
    function: &str,
    setting: &mut i32,
    min: i32,
    max: i32,
) -> mlua::Result<Value> {
    if given(args, n) {
        // luaL_checkinteger's truncation, then C's int.
        let v = super::number(lua, args, n, function)? as i64 as i32;
        if !(min..=max).contains(&v) {
            let m = format!("expected integer between {min} and {max}");
            return Err(arg_error(lua, 1, function, &m));
        }
        *setting = v;
    }
    Ok(Value::Number(f64::from(*setting)))
}

/// json_enum_option: a boolean (true is 1) or one of `options` by name;
/// returns the setting as a boolean when it is 0 or 1, else its name.
fn enum_option(
    lua: &Lua,
    args: &[Value],
    n: usize,
    function: &str,
    setting: &mut i32,
    options: &[&str],
) -> mlua::Result<Value> {
    match args.get(n - 1) {
        None | Some(Value::Nil) => {}
        Some(Value::Boolean(b)) => *setting = i32::from(*b),
        Some(_) => {
            let name = super::string(lua, args, n, function)?;
            let Some(i) = options.iter().position(|o| o.as_bytes() == name) else {
                let m = format!("invalid option '{}'", String::from_utf8_lossy(&name));
                return Err(arg_error(lua, n, function, &m));
            };
            *setting = i as i32;
        }
    }
    Ok(match *setting {
        0 | 1 => Value::Boolean(*setting == 1),
        s => Value::String(lua.create_string(options[s as usize])?),
    })
}

fn bool_option(
    lua: &Lua,
    args: &[Value],
    n: usize,
    function: &str,
    setting: &mut bool,
) -> mlua::Result<Value> {
    let mut s = i32::from(*setting);
    let v = enum_option(lua, args, n, function, &mut s, &["off", "on"])?;
    *setting = s == 1;
    Ok(v)
}

fn cannot(v: &Value, why: &str) -> mlua::Error {
    super::error(&format!("Cannot serialise {}: {why}", super::type_name(v)))
}

struct Encoder {
    cfg: Config,
    out: Vec<u8>,
    /// Lua stack slots held at this point: the argument, and per
    /// enclosing table 2 (an array) or 4 (an object, walked by mlua).
    slots: usize,
}

impl Encoder {
    fn value(&mut self, v: &Value, depth: i32) -> mlua::Result<()> {
        match v {
            Value::String(s) => string(&s.as_bytes(), &mut self.out),
            Value::Integer(n) => self.number(v, *n as f64)?,
            Value::Number(n) => self.number(v, *n)?,
            Value::Boolean(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
            Value::Nil => self.out.extend_from_slice(b"null"),
            Value::LightUserData(p) if p.0.is_null() => self.out.extend_from_slice(b"null"),
            Value::Table(t) => {
                let depth = depth + 1;
                if depth > self.cfg.encode_max_depth || self.slots + 3 > LUA_MAX_C_STACK {
                    return Err(super::error(&format!(
                        "Cannot serialise, excessive nesting ({depth})"
                    )));
                }
                match self.array_len(v, t)? {
                    Some(n) if n > 0 => self.array(t, n, depth)?,
                    _ => self.object(t, depth)?,
                }
            }
            other => return Err(cannot(other, "type not supported")),
        }
        Ok(())
    }

    fn number(&mut self, v: &Value, n: f64) -> mlua::Result<()> {
        match self.cfg.encode_invalid_numbers {
            0 if !n.is_finite() => return Err(cannot(v, "must not be NaN or Inf")),
            1 if n.is_nan() => {
                self.out.extend_from_slice(b"nan");
                return Ok(());
            }
            2 if !n.is_finite() => {
                self.out.extend_from_slice(b"null");
                return Ok(());
            }
            _ => {}
        }
        let mut buf = [0u8; 64];
        let fmt = format!("%.{}g\0", self.cfg.precision);
        // SAFETY: `fmt` is a NUL-terminated %.Ng format taking one double
        // (N within 1..=14), and snprintf writes at most `buf.len()` bytes,
        // its NUL included.
        let len =
            unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr().cast(), n) };
        self.out
            .extend_from_slice(&buf[..(len.max(0) as usize).min(buf.len() - 1)]);
        Ok(())
    }

    /// lua_array_length: the largest key of a table whose keys are all
    /// positive integers, unless it is too sparse (an error, or an object
    /// with `encode_sparse_array(true)`); None for any other table.
    fn array_len(&self, v: &Value, t: &Table) -> mlua::Result<Option<usize>> {
        let Some((max, items)) = super::index_keys(t)? else {
            return Ok(None);
        };
        let c = &self.cfg;
        if c.sparse_ratio > 0
            && max as i64 > items as i64 * i64::from(c.sparse_ratio)
            && max as i64 > i64::from(c.sparse_safe)
        {
            if !c.sparse_convert {
                return Err(cannot(v, "excessively sparse array"));
            }
            return Ok(None);
        }
        Ok(Some(max))
    }

    fn array(&mut self, t: &Table, n: usize, depth: i32) -> mlua::Result<()> {
        self.out.push(b'[');
        self.slots += 2;
        for i in 1..=n {
            if i > 1 {
                self.out.push(b',');
            }
            self.value(&t.raw_get::<Value>(i)?, depth)?;
        }
        self.slots -= 2;
        self.out.push(b']');
        Ok(())
    }

    fn object(&mut self, t: &Table, depth: i32) -> mlua::Result<()> {
        self.out.push(b'{');
        self.slots += 4;
        let mut first = true;
        // Walked pair by pair: a large table's pairs are never all held
        // (each takes one of mlua's reference slots).
        t.for_each::<Value, Value>(|k, v| {
            if !first {
                self.out.push(b',');
            }
            first = false;
            match &k {
                Value::Integer(_) | Value::Number(_) => {
                    self.out.push(b'"');
                    let n = match k {
                        Value::Integer(i) => i as f64,
                        Value::Number(n) => n,
                        _ => unreachable!("matched above"),
                    };
                    self.number(&k, n)?;
                    self.out.extend_from_slice(b"\":");
                }
                Value::String(s) => {
                    string(&s.as_bytes(), &mut self.out);
                    self.out.push(b':');
                }
                other => return Err(cannot(other, "table key must be a number or string")),
            }
            self.value(&v, depth)
        })?;
        self.slots -= 4;
        self.out.push(b'}');
        Ok(())
    }
}

/// A string as lua-cjson writes one: bytes as they are, UTF-8 or not,
/// `"`, `\`, `/` and control characters escaped.
fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// What lua-cjson's tokenizer reads next.
enum Token {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    Str(Vec<u8>),
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    /// A token that could not be read, and why.
    Error(&'static str),
}

impl Token {
    /// lua-cjson's name for the token in its errors.
    fn name(&self) -> &'static str {
        match self {
            Token::ObjBegin => "T_OBJ_BEGIN",
            Token::ObjEnd => "T_OBJ_END",
            Token::ArrBegin => "T_ARR_BEGIN",
            Token::ArrEnd => "T_ARR_END",
            Token::Str(_) => "T_STRING",
            Token::Number(_) => "T_NUMBER",
            Token::Boolean(_) => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Error(why) => why,
        }
    }
}

fn decode(lua: &Lua, cfg: Config, text: &[u8]) -> mlua::Result<Value> {
    // Only the first characters are sure to be ASCII in JSON, which is
    // enough to see UTF-16 or UTF-32.
    if text.len() >= 2 && (text[0] == 0 || text[1] == 0) {
        return Err(super::error(
            "JSON parser does not support UTF-16 or UTF-32",
        ));
    }
    // NUL-terminated: the C tokenizer ends at the first NUL, and strtod
    // needs one.
    let mut data = Vec::with_capacity(text.len() + 1);
    data.extend_from_slice(text);
    data.push(0);
    let mut p = Parser {
        lua,
        cfg,
        data: &data,
        at: 0,
        depth: 0,
        slots: 1,
    };
    let (token, index) = p.next();
    let v = p.value(token, index)?;
    let (token, index) = p.next();
    if !matches!(token, Token::End) {
        return Err(p.expected("the end", &token, index));
    }
    Ok(v)
}

struct Parser<'a> {
    lua: &'a Lua,
    cfg: Config,
    /// The input and a NUL.
    data: &'a [u8],
    at: usize,
    depth: i32,
    /// Lua stack slots held: the input, and per enclosing table 2 (its
    /// table, and a key for an object; an array's table is one of mlua's
    /// references here).
    slots: usize,
}

impl Parser<'_> {
    fn byte(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }

    fn expected(&self, what: &str, found: &Token, index: usize) -> mlua::Error {
        super::error(&format!(
            "Expected {what} but found {} at character {}",
            found.name(),
            index + 1
        ))
    }

    /// The next token and where it starts (where it failed, for an error
    /// inside a string).
    fn next(&mut self) -> (Token, usize) {
        while matches!(self.byte(self.at), b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
        let start = self.at;
        let single = match self.byte(start) {
            b'{' => Some(Token::ObjBegin),
            b'}' => Some(Token::ObjEnd),
            b'[' => Some(Token::ArrBegin),
            b']' => Some(Token::ArrEnd),
            b',' => Some(Token::Comma),
            b':' => Some(Token::Colon),
            0 => return (Token::End, start),
            _ => None,
        };
        if let Some(t) = single {
            self.at += 1;
            return (t, start);
        }
        let rest = &self.data[start..];
        let c = rest[0];
        if c == b'"' {
            return self.string();
        }
        if c == b'-' || c.is_ascii_digit() {
            if !self.cfg.decode_invalid_numbers && invalid_number(rest) {
                return (Token::Error("invalid number"), start);
            }
            return (self.number(), start);
        }
        if !matches!(c, b'f' | b'i' | b'I' | b'n' | b'N' | b't' | b'+') {
            return (Token::Error("invalid token"), start);
        }
        for (word, t) in [
            (&b"true"[..], Token::Boolean(true)),
            (b"false", Token::Boolean(false)),
            (b"null", Token::Null),
        ] {
            if rest.starts_with(word) {
                self.at += word.len();
                return (t, start);
            }
        }
        if self.cfg.decode_invalid_numbers && invalid_number(rest) {
            return (self.number(), start);
        }
        (Token::Error("invalid token"), start)
    }

    fn number(&mut self) -> Token {
        let start = self.at;
        let mut end: *mut libc::c_char = std::ptr::null_mut();
        // SAFETY: `data` ends with a NUL at or after `start`, so strtod
        // reads a C string within it; it sets `end` to a position in it.
        let n = unsafe {
            let p = self.data.as_ptr().add(start).cast::<libc::c_char>();
            let n = libc::strtod(p, &mut end);
            self.at = start + end.offset_from(p) as usize;
            n
        };
        if self.at == start {
            return Token::Error("invalid number");
        }
        Token::Number(n)
    }

    fn string(&mut self) -> (Token, usize) {
        let start = self.at;
        self.at += 1;
        let mut s = Vec::new();
        loop {
            let c = self.byte(self.at);
            match c {
                b'"' => break,
                0 => return (Token::Error("unexpected end of string"), self.at),
                b'\\' => {
                    let unescaped = match self.byte(self.at + 1) {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => 0x0c,
                        b'r' => b'\r',
                        b'u' => match self.unicode_escape(&mut s) {
                            Some(()) => continue,
                            None => return (Token::Error("invalid unicode escape code"), self.at),
                        },
                        _ => return (Token::Error("invalid escape code"), self.at),
                    };
                    s.push(unescaped);
                    self.at += 2;
                }
                _ => {
                    s.push(c);
                    self.at += 1;
                }
            }
        }
        self.at += 1;
        (Token::Str(s), start)
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        (0..4).try_fold(0u32, |n, i| {
            let d = (self.byte(at + i) as char).to_digit(16)?;
            Some(n << 4 | d)
        })
    }

    /// `\uXXXX` (a surrogate pair as two) at the cursor, appended as
    /// UTF-8; None where lua-cjson finds it invalid.
    fn unicode_escape(&mut self, s: &mut Vec<u8>) -> Option<()> {
        let mut code = self.hex4(self.at + 2)?;
        let mut len = 6;
        if code & 0xF800 == 0xD800 {
            if code & 0x400 != 0
                || self.byte(self.at + 6) != b'\\'
                || self.byte(self.at + 7) != b'u'
            {
                return None;
            }
            let low = self.hex4(self.at + 8)?;
            if low & 0xFC00 != 0xDC00 {
                return None;
            }
            code = (((code & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000;
            len = 12;
        }
        // Encoded by hand: lua-cjson writes any code point, a lone low
        // surrogate included, as its UTF-8 bit pattern.
        match code {
            0..=0x7F => s.push(code as u8),
            0x80..=0x7FF => s.extend([0xC0 | (code >> 6) as u8, 0x80 | (code & 0x3F) as u8]),
            0x800..=0xFFFF => s.extend([
                0xE0 | (code >> 12) as u8,
                0x80 | ((code >> 6) & 0x3F) as u8,
                0x80 | (code & 0x3F) as u8,
            ]),
            _ => s.extend([
                0xF0 | (code >> 18) as u8,
                0x80 | ((code >> 12) & 0x3F) as u8,
                0x80 | ((code >> 6) & 0x3F) as u8,
                0x80 | (code & 0x3F) as u8,
            ]),
        }
        self.at += len;
        Some(())
    }

    fn value(&mut self, token: Token, index: usize) -> mlua::Result<Value> {
        Ok(match token {
            Token::Str(s) => Value::String(self.lua.create_string(&s)?),
            Token::Number(n) => Value::Number(n),
            Token::Boolean(b) => Value::Boolean(b),
            Token::Null => null(),
            Token::ObjBegin => Value::Table(self.object()?),
            Token::ArrBegin => Value::Table(self.array()?),
            other => return Err(self.expected("value", &other, index)),
        })
    }

    /// json_decode_descend: one level deeper, within decode_max_depth and
    /// the Lua stack (`slots` more of it).
    fn descend(&mut self, slots: usize) -> mlua::Result<()> {
        self.depth += 1;
        if self.depth <= self.cfg.decode_max_depth && self.slots + slots <= LUA_MAX_C_STACK {
            return Ok(());
        }
        Err(super::error(&format!(
            "Found too many nested data structures ({}) at character {}",
            self.depth, self.at
        )))
    }

    fn object(&mut self) -> mlua::Result<Table> {
        self.descend(3)?;
        let t = self.lua.create_table()?;
        let (mut token, mut index) = self.next();
        if matches!(token, Token::ObjEnd) {
            self.depth -= 1;
            return Ok(t);
        }
        self.slots += 2;
        loop {
            let Token::Str(key) = token else {
                return Err(self.expected("object key string", &token, index));
            };
            let (colon, i) = self.next();
            if !matches!(colon, Token::Colon) {
                return Err(self.expected("colon", &colon, i));
            }
            let (v, i) = self.next();
            let v = self.value(v, i)?;
            t.raw_set(self.lua.create_string(&key)?, v)?;
            let (after, i) = self.next();
            match after {
                Token::ObjEnd => break,
                Token::Comma => {}
                other => return Err(self.expected("comma or object end", &other, i)),
            }
            (token, index) = self.next();
        }
        self.slots -= 2;
        self.depth -= 1;
        Ok(t)
    }

    fn array(&mut self) -> mlua::Result<Table> {
        self.descend(2)?;
        let t = self.lua.create_table()?;
        let (mut token, mut index) = self.next();
        if matches!(token, Token::ArrEnd) {
            self.depth -= 1;
            return Ok(t);
        }
        self.slots += 2;
        for i in 1.. {
            let v = self.value(token, index)?;
            t.raw_set(i, v)?;
            let (after, at) = self.next();
            match after {
                Token::ArrEnd => break,
                Token::Comma => {}
                other => return Err(self.expected("comma or array end", &other, at)),
            }
            (token, index) = self.next();
        }
        self.slots -= 2;
        self.depth -= 1;
        Ok(t)
    }
}

/// json_is_invalid_number: what strtod takes that JSON does not (a
/// leading `+`, hex, leading zeros, inf, nan).
fn invalid_number(s: &[u8]) -> bool {
    let s = match s.first() {
        Some(b'+') => return true,
        Some(b'-') => &s[1..],
        _ => s,
    };
    match s.first().copied().unwrap_or(0) {
        b'0' => {
            let c = s.get(1).copied().unwrap_or(0);
            c | 0x20 == b'x' || c.is_ascii_digit()
        }
        c if c <= b'9' => false,
        _ => {
            let head = |w: &[u8]| s.len() >= 3 && s[..3].eq_ignore_ascii_case(w);
            head(b"inf") || head(b"nan")
        }
    }
}
