//! The libraries Redis bundles into its Lua states, as scripts and
//! functions see them: lua-cjson (`cjson`), lua-cmsgpack (`cmsgpack`) and
//! LuaBitOp (`bit`), with their encodings, limits and error texts.

use mlua::{Table, Value};

/// If every key of `t` is a positive integer: the largest and how many
/// (the libraries' test for an array).
fn index_keys(t: &Table) -> mlua::Result<Option<(usize, usize)>> {
    let (mut max, mut count) = (0usize, 0usize);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        let index = match k {
            Value::Integer(i) if i >= 1 => i as usize,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n as usize,
            _ => return Ok(None),
        };
        max = max.max(index);
        count += 1;
    }
    Ok(Some((max, count)))
}

/// lua-cjson's `encode` and `decode` as Redis bundles them: numbers as
/// `%.14g`, `/` escaped, an empty table as an object, arrays where the keys
/// are 1..n (sparse ones refused past lua-cjson's ratio), JSON null as
/// `cjson.null`.
pub mod cjson {
    use mlua::{LightUserData, Lua, Table, Value};

    const MAX_DEPTH: usize = 1000;

    pub fn library(lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.raw_set(
            "encode",
            lua.create_function(|_, v: Value| {
                let mut out = String::new();
                encode(&v, &mut out, 0)?;
                Ok(out)
            })?,
        )?;
        t.raw_set(
            "decode",
            lua.create_function(|lua, s: mlua::String| {
                let v: serde_json::Value = serde_json::from_slice(&s.as_bytes())
                    .map_err(|e| mlua::Error::RuntimeError(format!("cjson.decode: {e}")))?;
                decode(lua, &v)
            })?,
        )?;
        t.raw_set("null", null())?;
        Ok(t)
    }

    fn null() -> Value {
        Value::LightUserData(LightUserData(std::ptr::null_mut()))
    }

    fn fail(what: &str) -> mlua::Error {
        mlua::Error::RuntimeError(format!("Cannot serialise {what}"))
    }

    fn number(n: f64, out: &mut String) -> mlua::Result<()> {
        if !n.is_finite() {
            return Err(fail("number: must not be NaN or Inf"));
        }
        let mut buf = [0u8; 64];
        // SAFETY: `buf` holds any %.14g output and snprintf writes at most
        // `buf.len()` bytes, NUL included.
        let len =
            unsafe { libc::snprintf(buf.as_mut_ptr().cast(), buf.len(), c"%.14g".as_ptr(), n) };
        out.push_str(&String::from_utf8_lossy(
            &buf[..(len.max(0) as usize).min(buf.len() - 1)],
        ));
        Ok(())
    }

    fn string(s: &[u8], out: &mut String) {
        out.push('"');
        for &b in s {
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                b'/' => out.push_str("\\/"),
                b'\n' => out.push_str("\\n"),
                b'\r' => out.push_str("\\r"),
                b'\t' => out.push_str("\\t"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                0..=0x1f | 0x7f => out.push_str(&format!("\\u{b:04x}")),
                // Bytes pass as they are, UTF-8 or not, as lua-cjson passes them.
                _ => out.push(char::from(b)),
            }
        }
        out.push('"');
    }

    /// The length of a table that is an array (keys 1..n, holes allowed
    /// up to lua-cjson's sparse ratio), if it is one.
    fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
        let Some((max, items)) = super::index_keys(t)? else {
            return Ok(None);
        };
        if max > items * 2 && max > 10 {
            return Err(fail("table: excessively sparse array"));
        }
        Ok(Some(max))
    }

    fn encode(v: &Value, out: &mut String, depth: usize) -> mlua::Result<()> {
        match v {
            Value::Nil => out.push_str("null"),
            Value::LightUserData(p) if p.0.is_null() => out.push_str("null"),
            Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Integer(n) => number(*n as f64, out)?,
            Value::Number(n) => number(*n, out)?,
            Value::String(s) => string(&s.as_bytes(), out),
            Value::Table(t) => {
                if depth >= MAX_DEPTH {
                    return Err(mlua::Error::RuntimeError(format!(
                        "Cannot serialise, excessive nesting ({})",
                        depth + 1
                    )));
                }
                match array_len(t)? {
                    Some(n) if n > 0 => {
                        out.push('[');
                        for i in 1..=n {
                            if i > 1 {
                                out.push(',');
                            }
                            encode(&t.raw_get::<Value>(i)?, out, depth + 1)?;
                        }
                        out.push(']');
                    }
                    _ => {
                        out.push('{');
                        let mut first = true;
                        for pair in t.clone().pairs::<Value, Value>() {
                            let (k, v) = pair?;
                            if !first {
                                out.push(',');
                            }
                            first = false;
                            match &k {
                                Value::String(s) => string(&s.as_bytes(), out),
                                Value::Integer(_) | Value::Number(_) => {
                                    let mut n = String::new();
                                    encode(&k, &mut n, depth + 1)?;
                                    string(n.as_bytes(), out);
                                }
                                _ => {
                                    return Err(fail("table key type: must be a string or number"))
                                }
                            }
                            out.push(':');
                            encode(&v, out, depth + 1)?;
                        }
                        out.push('}');
                    }
                }
            }
            other => return Err(fail(&format!("{}: type not supported", other.type_name()))),
        }
        Ok(())
    }

    fn decode(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
        use serde_json::Value as J;
        Ok(match v {
            J::Null => null(),
            J::Bool(b) => Value::Boolean(*b),
            J::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
            J::String(s) => Value::String(lua.create_string(s)?),
            J::Array(items) => {
                let t = lua.create_table_with_capacity(items.len(), 0)?;
                for (i, item) in items.iter().enumerate() {
                    t.raw_set(i + 1, decode(lua, item)?)?;
                }
                Value::Table(t)
            }
            J::Object(map) => {
                let t = lua.create_table_with_capacity(0, map.len())?;
                for (k, item) in map {
                    t.raw_set(lua.create_string(k)?, decode(lua, item)?)?;
                }
                Value::Table(t)
            }
        })
    }
}

/// lua-cmsgpack's `pack` and `unpack` as Redis bundles them: integral
/// numbers in the smallest integer form, others as float32 when that holds
/// them exactly, else float64; tables with keys 1..n as arrays (an empty
/// one too), others as maps; nesting past 16 levels packed as nil.
pub mod cmsgpack {
    use mlua::{Lua, MultiValue, Table, Value};

    const MAX_NESTING: usize = 16;
    /// How deep a message unpacked may nest (serde_json's own limit for
    /// cjson): each level is a frame of the thread's stack.
    const MAX_UNPACK_DEPTH: usize = 128;

    pub fn library(lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.raw_set(
            "pack",
            lua.create_function(|lua, args: MultiValue| {
                if args.is_empty() {
                    return Err(mlua::Error::RuntimeError(
                        "MessagePack pack needs input.".into(),
                    ));
                }
                let mut out = Vec::new();
                for v in args.iter() {
                    pack(v, &mut out, 0)?;
                }
                lua.create_string(&out)
            })?,
        )?;
        t.raw_set(
            "unpack",
            lua.create_function(|lua, s: mlua::String| {
                let bytes = s.as_bytes();
                let mut at = 0;
                let mut values = Vec::new();
                while at < bytes.len() {
                    values.push(unpack(lua, &bytes, &mut at, 0)?);
                }
                Ok(MultiValue::from_iter(values))
            })?,
        )?;
        Ok(t)
    }

    fn io(e: impl std::fmt::Display) -> mlua::Error {
        mlua::Error::RuntimeError(format!("cmsgpack: {e}"))
    }

    fn number(n: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
        use rmp::encode;
        if n.fract() == 0.0 && n >= i64::MIN as f64 && n < 9.223_372_036_854_776e18 {
            if n >= 0.0 {
                encode::write_uint(out, n as u64).map_err(io)?;
            } else {
                encode::write_sint(out, n as i64).map_err(io)?;
            }
        } else if f64::from(n as f32) == n || n.is_nan() {
            encode::write_f32(out, n as f32).map_err(io)?;
        } else {
            encode::write_f64(out, n).map_err(io)?;
        }
        Ok(())
    }

    /// The length of a table whose keys are exactly 1..n.
    fn array_len(t: &Table) -> mlua::Result<Option<usize>> {
        Ok(super::index_keys(t)?.and_then(|(max, count)| (max == count).then_some(count)))
    }

    fn pack(v: &Value, out: &mut Vec<u8>, depth: usize) -> mlua::Result<()> {
        use rmp::encode;
        match v {
            Value::Boolean(b) => encode::write_bool(out, *b).map_err(io)?,
            Value::Integer(n) => number(*n as f64, out)?,
            Value::Number(n) => number(*n, out)?,
            Value::String(s) => {
                let b = s.as_bytes();
                encode::write_str_len(out, b.len() as u32).map_err(io)?;
                out.extend_from_slice(&b);
            }
            Value::Table(t) if depth < MAX_NESTING => match array_len(t)? {
                Some(n) => {
                    encode::write_array_len(out, n as u32).map_err(io)?;
                    for i in 1..=n {
                        pack(&t.raw_get::<Value>(i)?, out, depth + 1)?;
                    }
                }
                None => {
                    let pairs: Vec<(Value, Value)> = t
                        .clone()
                        .pairs::<Value, Value>()
                        .collect::<mlua::Result<_>>()?;
                    encode::write_map_len(out, pairs.len() as u32).map_err(io)?;
                    for (k, v) in &pairs {
                        pack(k, out, depth + 1)?;
                        pack(v, out, depth + 1)?;
                    }
                }
            },
            _ => encode::write_nil(out).map_err(io)?,
        }
        Ok(())
    }

    fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> mlua::Result<&'a [u8]> {
        let s = b
            .get(*at..*at + n)
            .ok_or_else(|| io("Missing bytes in input."))?;
        *at += n;
        Ok(s)
    }

    fn be(b: &[u8]) -> u64 {
        b.iter().fold(0, |n, &x| (n << 8) | u64::from(x))
    }

    fn unpack(lua: &Lua, b: &[u8], at: &mut usize, depth: usize) -> mlua::Result<Value> {
        use rmp::Marker as M;
        if depth > MAX_UNPACK_DEPTH {
            return Err(io("input nested too deeply"));
        }
        let marker = M::from_u8(take(b, at, 1)?[0]);
        let len =
            |at: &mut usize, n: usize| -> mlua::Result<usize> { Ok(be(take(b, at, n)?) as usize) };
        let num = |x: f64| Ok(Value::Number(x));
        let string = |at: &mut usize, n: usize| -> mlua::Result<Value> {
            Ok(Value::String(lua.create_string(take(b, at, n)?)?))
        };
        let array = |at: &mut usize, n: usize| -> mlua::Result<Value> {
            let t = lua.create_table_with_capacity(n.min(1 << 16), 0)?;
            for i in 1..=n {
                t.raw_set(i, unpack(lua, b, at, depth + 1)?)?;
            }
            Ok(Value::Table(t))
        };
        let map = |at: &mut usize, n: usize| -> mlua::Result<Value> {
            let t = lua.create_table()?;
            for _ in 0..n {
                let k = unpack(lua, b, at, depth + 1)?;
                let v = unpack(lua, b, at, depth + 1)?;
                if !matches!(k, Value::Nil) {
                    t.raw_set(k, v)?;
                }
            }
            Ok(Value::Table(t))
        };
        match marker {
            M::FixPos(n) => num(f64::from(n)),
            M::FixNeg(n) => num(f64::from(n)),
            M::Null => Ok(Value::Nil),
            M::True => Ok(Value::Boolean(true)),
            M::False => Ok(Value::Boolean(false)),
            M::U8 | M::U16 | M::U32 | M::U64 => {
                let n = match marker {
                    M::U8 => 1,
                    M::U16 => 2,
                    M::U32 => 4,
                    _ => 8,
                };
                num(be(take(b, at, n)?) as f64)
            }
            M::I8 => num(f64::from(take(b, at, 1)?[0] as i8)),
            M::I16 => num(f64::from(be(take(b, at, 2)?) as u16 as i16)),
            M::I32 => num(f64::from(be(take(b, at, 4)?) as u32 as i32)),
            M::I64 => num(be(take(b, at, 8)?) as i64 as f64),
            M::F32 => num(f64::from(f32::from_bits(be(take(b, at, 4)?) as u32))),
            M::F64 => num(f64::from_bits(be(take(b, at, 8)?))),
            M::FixStr(n) => string(at, usize::from(n)),
            M::Str8 | M::Bin8 => {
                let n = len(at, 1)?;
                string(at, n)
            }
            M::Str16 | M::Bin16 => {
                let n = len(at, 2)?;
                string(at, n)
            }
            M::Str32 | M::Bin32 => {
                let n = len(at, 4)?;
                string(at, n)
            }
            M::FixArray(n) => array(at, usize::from(n)),
            M::Array16 => {
                let n = len(at, 2)?;
                array(at, n)
            }
            M::Array32 => {
                let n = len(at, 4)?;
                array(at, n)
            }
            M::FixMap(n) => map(at, usize::from(n)),
            M::Map16 => {
                let n = len(at, 2)?;
                map(at, n)
            }
            M::Map32 => {
                let n = len(at, 4)?;
                map(at, n)
            }
            _ => Err(io("Bad data format in input.")),
        }
    }
}

/// LuaBitOp's `bit` as Redis bundles it: operations on numbers taken as
/// 32-bit integers (rounded, then modulo 2^32), results signed.
pub mod bit {
    use mlua::{Lua, Table, Variadic};

    fn tobit(n: f64) -> i32 {
        n.round_ties_even() as i64 as u32 as i32
    }

    pub fn library(lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        let unary =
            |f: fn(i32) -> i32| lua.create_function(move |_, n: f64| Ok(f64::from(f(tobit(n)))));
        t.raw_set("tobit", unary(|x| x)?)?;
        t.raw_set("bnot", unary(|x| !x)?)?;
        t.raw_set("bswap", unary(i32::swap_bytes)?)?;
        let fold = |f: fn(i32, i32) -> i32| {
            lua.create_function(move |_, (first, rest): (f64, Variadic<f64>)| {
                Ok(f64::from(
                    rest.iter().fold(tobit(first), |acc, &n| f(acc, tobit(n))),
                ))
            })
        };
        t.raw_set("band", fold(|a, b| a & b)?)?;
        t.raw_set("bor", fold(|a, b| a | b)?)?;
        t.raw_set("bxor", fold(|a, b| a ^ b)?)?;
        let shift = |f: fn(i32, u32) -> i32| {
            lua.create_function(move |_, (x, n): (f64, f64)| {
                Ok(f64::from(f(tobit(x), tobit(n) as u32 & 31)))
            })
        };
        t.raw_set("lshift", shift(|x, n| ((x as u32) << n) as i32)?)?;
        t.raw_set("rshift", shift(|x, n| ((x as u32) >> n) as i32)?)?;
        t.raw_set("arshift", shift(|x, n| x >> n)?)?;
        t.raw_set("rol", shift(|x, n| (x as u32).rotate_left(n) as i32)?)?;
        t.raw_set("ror", shift(|x, n| (x as u32).rotate_right(n) as i32)?)?;
        t.raw_set(
            "tohex",
            lua.create_function(|_, (x, n): (f64, Option<f64>)| {
                let n = n.map_or(8, tobit);
                let upper = n < 0;
                let digits = (n.unsigned_abs() as usize).min(8);
                let v = tobit(x) as u32;
                let hex = if upper {
                    format!("{v:08X}")
                } else {
                    format!("{v:08x}")
                };
                Ok(hex[8 - digits..].to_string())
            })?,
        )?;
        Ok(t)
    }
}
