//! The libraries Redis bundles into its Lua states, as scripts and
//! functions see them: lua-cjson (`cjson`), lua-cmsgpack (`cmsgpack`),
//! LuaBitOp (`bit`) and struct (`struct`), with their encodings, limits
//! and error texts.

use mlua::{Lua, Table, Value};

/// An error raised as Lua's C libraries raise theirs: a message.
fn error(m: &str) -> mlua::Error {
    mlua::Error::RuntimeError(m.to_string())
}

/// luaL_argerror's message.
fn bad_argument(n: usize, function: &str, m: &str) -> mlua::Error {
    error(&format!("bad argument #{n} to '{function}' ({m})"))
}

/// Lua's name for the type of argument `n` (1-based), "no value" past
/// the last.
fn got(args: &[Value], n: usize) -> &'static str {
    args.get(n - 1).map_or("no value", type_name)
}

/// Lua's name for a value's type, as lua_typename gives it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// Lua 5.1's own `unpack` (luaB_unpack): one C function for every state.
static RAW_UNPACK: std::sync::OnceLock<mlua::ffi::lua_CFunction> = std::sync::OnceLock::new();

/// Puts a guarded `unpack` in `globals` in place of Lua 5.1's, Redis's fix
/// for CVE-2025-46817: the C function counts `j - i + 1` in an `int`, so a
/// range such as `-2147483648, -2` wrapped to a small count and grew the
/// stack past its end (a crash, or worse, from one EVAL). The guard is a C
/// function too, so the C one runs in its frame: the values go straight
/// onto Lua's stack (7,999 of them, as in Redis) and errors name the
/// function as the script called it.
pub fn guard_unpack(lua: &Lua, globals: &Table) -> mlua::Result<()> {
    let raw: mlua::Function = globals.raw_get("unpack")?;
    let mut found = None;
    // SAFETY: reads the C function pointer of the value exec_raw pushed.
    unsafe {
        lua.exec_raw::<()>(raw, |state| {
            found = mlua::ffi::lua_tocfunction(state, -1);
            mlua::ffi::lua_settop(state, 0);
        })?;
    }
    let raw = found.ok_or_else(|| error("unpack is not a C function"))?;
    RAW_UNPACK.get_or_init(|| raw);
    // SAFETY: `guarded_unpack` follows the lua_CFunction protocol.
    let guarded = unsafe { lua.create_c_function(guarded_unpack)? };
    globals.raw_set("unpack", guarded)
}

/// `unpack(t [, i [, j]])`: reads `i` and `j` as luaL_checkint does and,
/// for a range whose count an `int` cannot hold, hands the C function one
/// it counts right and still refuses (`1, 2147483646`: "too many results
/// to unpack"). Anything else (a wrong type included) is the C function's
/// to answer, errors and all.
unsafe extern "C-unwind" fn guarded_unpack(state: *mut mlua::ffi::lua_State) -> std::ffi::c_int {
    use mlua::ffi;
    let raw = *RAW_UNPACK.get().expect("set before the guard is made");
    // An argument as luaL_optint reads it: absent, or its number cast to
    // an int as C casts it; `None` when it is no number (the C function
    // raises that).
    let arg = |n: std::ffi::c_int, absent: i64| -> Option<i64> {
        match ffi::lua_type(state, n) {
            ffi::LUA_TNONE | ffi::LUA_TNIL => Some(absent),
            _ if ffi::lua_isnumber(state, n) != 0 => {
                // (int)(ptrdiff_t)d on x86-64: out of range is INT64_MIN.
                let d = ffi::lua_tonumber(state, n);
                let wide = if d.abs() < 9_223_372_036_854_775_808.0 {
                    d as i64
                } else {
                    i64::MIN
                };
                Some(wide as i32 as i64)
            }
            _ => None,
        }
    };
    if ffi::lua_type(state, 1) == ffi::LUA_TTABLE {
        let len = ffi::lua_objlen(state, 1) as i32 as i64;
        if let (Some(i), Some(e)) = (arg(2, 1), arg(3, len)) {
            if i <= e && e - i + 1 > i32::MAX as i64 {
                ffi::lua_settop(state, ffi::lua_gettop(state).max(3));
                ffi::lua_pushinteger(state, 1);
                ffi::lua_replace(state, 2);
                ffi::lua_pushinteger(state, i32::MAX as ffi::lua_Integer - 1);
                ffi::lua_replace(state, 3);
            }
        }
    }
    raw(state)
}

/// The name the running library function was called by, as luaL_argerror
/// finds it: how its caller named it (`band` for `bit.band(...)`), `?`
/// where it has none (called by pcall). `function` where there is no
/// running function to ask.
fn called(lua: &Lua, function: &str) -> String {
    lua.inspect_stack(0, |d| {
        d.names()
            .name
            .map_or_else(|| "?".to_string(), |n| n.into_owned())
    })
    .unwrap_or_else(|| function.to_string())
}

/// Argument `n` as luaL_checknumber takes it.
fn number(lua: &Lua, args: &[Value], n: usize, function: &str) -> mlua::Result<f64> {
    let v = args.get(n - 1).cloned().unwrap_or(Value::Nil);
    lua.coerce_number(v)?.ok_or_else(|| {
        bad_argument(
            n,
            &called(lua, function),
            &format!("number expected, got {}", got(args, n)),
        )
    })
}

/// Argument `n` as luaL_checklstring takes it.
fn string(lua: &Lua, args: &[Value], n: usize, function: &str) -> mlua::Result<Vec<u8>> {
    let v = args.get(n - 1).cloned().unwrap_or(Value::Nil);
    match lua.coerce_string(v)? {
        Some(s) => Ok(s.as_bytes().to_vec()),
        None => Err(bad_argument(
            n,
            &called(lua, function),
            &format!("string expected, got {}", got(args, n)),
        )),
    }
}

/// How many pairs `t` holds (walked, each pair let go as it passes).
pub(super) fn pair_count(t: &Table) -> usize {
    t.clone().pairs::<Value, Value>().count()
}

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

pub mod cjson;

/// lua-cmsgpack's `pack`, `unpack`, `unpack_one` and `unpack_limit` as
/// Redis bundles them: integral numbers in the smallest integer form,
/// others as float32 when that holds them exactly, else float64; tables
/// with keys 1..n as arrays (an empty one too), others as maps; nesting
/// past 16 levels packed as nil.
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
            lua.create_function(|lua, args: MultiValue| {
                unpack_full(lua, &args.into_vec(), 0, 0, "unpack")
            })?,
        )?;
        t.raw_set(
            "unpack_one",
            lua.create_function(|lua, args: MultiValue| {
                let args = args.into_vec();
                let offset = opt_integer(lua, &args, 2, "unpack_one")?;
                unpack_full(lua, &args, 1, offset, "unpack_one")
            })?,
        )?;
        t.raw_set(
            "unpack_limit",
            lua.create_function(|lua, args: MultiValue| {
                let args = args.into_vec();
                let limit = super::number(lua, &args, 2, "unpack_limit")? as i64;
                let offset = opt_integer(lua, &args, 3, "unpack_limit")?;
                unpack_full(lua, &args, limit, offset, "unpack_limit")
            })?,
        )?;
        Ok(t)
    }

    /// Argument `n` as luaL_optinteger takes it, 0 when absent or nil.
    fn opt_integer(lua: &Lua, args: &[Value], n: usize, function: &str) -> mlua::Result<i64> {
        match args.get(n - 1) {
            None | Some(Value::Nil) => Ok(0),
            Some(_) => Ok(super::number(lua, args, n, function)? as i64),
        }
    }

    /// Up to `limit` values from byte `offset` on, as lua-cmsgpack's
    /// mp_unpack_full: all of them when both are 0, else preceded by the
    /// offset of what follows (-1 at the end).
    fn unpack_full(
        lua: &Lua,
        args: &[Value],
        limit: i64,
        offset: i64,
        function: &str,
    ) -> mlua::Result<MultiValue> {
        let bytes = super::string(lua, args, 1, function)?;
        let all = limit == 0 && offset == 0;
        if offset < 0 || limit < 0 {
            // Its words, the input's length named as the limit included.
            return Err(io(format!(
                "Invalid request to unpack with offset of {} and limit of {}.",
                offset as i32,
                bytes.len() as i32
            )));
        }
        if offset as u64 > bytes.len() as u64 {
            return Err(io(format!(
                "Start offset {} greater than input length {}.",
                offset as i32,
                bytes.len() as i32
            )));
        }
        let limit = if all { i32::MAX as i64 } else { limit };
        let mut at = offset as usize;
        let mut values = Vec::new();
        while at < bytes.len() && (values.len() as i64) < limit {
            values.push(unpack(lua, &bytes, &mut at, 0)?);
        }
        if !all {
            let next = if at == bytes.len() { -1 } else { at as i64 };
            values.insert(0, Value::Integer(next));
        }
        Ok(MultiValue::from_iter(values))
    }

    fn io(e: impl std::fmt::Display) -> mlua::Error {
        super::error(&e.to_string())
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
                    encode::write_map_len(out, super::pair_count(t) as u32).map_err(io)?;
                    t.for_each::<Value, Value>(|k, v| {
                        pack(&k, out, depth + 1)?;
                        pack(&v, out, depth + 1)
                    })?;
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
    use mlua::{Lua, MultiValue, Table};

    use super::number;

    fn tobit(n: f64) -> i32 {
        n.round_ties_even() as i64 as u32 as i32
    }

    /// A function of `bit` taking numbers, their checks (luaL_checknumber)
    /// and errors named after it.
    fn function<R: mlua::IntoLua>(
        lua: &Lua,
        name: &'static str,
        f: impl Fn(&[mlua::Value], &dyn Fn(usize) -> mlua::Result<i32>) -> mlua::Result<R> + 'static,
    ) -> mlua::Result<mlua::Function> {
        lua.create_function(move |lua, args: MultiValue| {
            let args: Vec<mlua::Value> = args.into_vec();
            let arg = |n: usize| number(lua, &args, n, name).map(tobit);
            f(&args, &arg)
        })
    }

    pub fn library(lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        let unary =
            |name, f: fn(i32) -> i32| function(lua, name, move |_, arg| Ok(f64::from(f(arg(1)?))));
        t.raw_set("tobit", unary("tobit", |x| x)?)?;
        t.raw_set("bnot", unary("bnot", |x| !x)?)?;
        t.raw_set("bswap", unary("bswap", i32::swap_bytes)?)?;
        let fold = |name, f: fn(i32, i32) -> i32| {
            function(lua, name, move |args, arg| {
                // LuaBitOp checks the first, then the rest from the last.
                let mut acc = arg(1)?;
                for n in (2..=args.len()).rev() {
                    acc = f(acc, arg(n)?);
                }
                Ok(f64::from(acc))
            })
        };
        t.raw_set("band", fold("band", |a, b| a & b)?)?;
        t.raw_set("bor", fold("bor", |a, b| a | b)?)?;
        t.raw_set("bxor", fold("bxor", |a, b| a ^ b)?)?;
        let shift = |name, f: fn(i32, u32) -> i32| {
            function(lua, name, move |_, arg| {
                Ok(f64::from(f(arg(1)?, arg(2)? as u32 & 31)))
            })
        };
        t.raw_set("lshift", shift("lshift", |x, n| ((x as u32) << n) as i32)?)?;
        t.raw_set("rshift", shift("rshift", |x, n| ((x as u32) >> n) as i32)?)?;
        t.raw_set("arshift", shift("arshift", |x, n| x >> n)?)?;
        t.raw_set(
            "rol",
            shift("rol", |x, n| (x as u32).rotate_left(n) as i32)?,
        )?;
        t.raw_set(
            "ror",
            shift("ror", |x, n| (x as u32).rotate_right(n) as i32)?,
        )?;
        t.raw_set(
            "tohex",
            function(lua, "tohex", |args, arg| {
                let x = arg(1)?;
                // Absent (not nil) is 8.
                let n = if args.len() < 2 { 8 } else { arg(2)? };
                let upper = n < 0;
                let digits = (n.unsigned_abs() as usize).min(8);
                let v = x as u32;
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

/// Roberto Ierusalimschy's `struct` as Redis bundles it: `pack`, `unpack`
/// and `size` of binary layouts (`<` `>` endianness, `!n` alignment, `x`
/// padding, `b h l T i[n]` integers and their unsigned capitals, `f d`
/// floats, `c[n]` and `s` strings), with x86-64's C sizes and Redis's
/// limits and error texts.
pub mod structlib {
    use mlua::{Lua, MultiValue, Table, Value};

    use super::{bad_argument, error, number, string};

    /// The largest integer `i[n]` takes, in bytes.
    const MAX_INT_SIZE: usize = 32;
    /// `!` without a number: the C ABI's largest alignment.
    const MAX_ALIGN: usize = 8;

    struct Format<'a> {
        fmt: &'a [u8],
        at: usize,
        little: bool,
        align: usize,
    }

    impl<'a> Format<'a> {
        fn new(fmt: &'a [u8]) -> Self {
            Format {
                fmt,
                at: 0,
                little: true,
                align: 1,
            }
        }

        fn next(&mut self) -> Option<u8> {
            let c = self.fmt.get(self.at).copied()?;
            self.at += 1;
            Some(c)
        }

        /// A number after an option, or `default`.
        fn number(&mut self, default: usize) -> mlua::Result<usize> {
            if !self.fmt.get(self.at).is_some_and(u8::is_ascii_digit) {
                return Ok(default);
            }
            let mut n: usize = 0;
            while let Some(d) = self.fmt.get(self.at).filter(|c| c.is_ascii_digit()) {
                let d = (d - b'0') as usize;
                if n > (i32::MAX as usize) / 10 || n * 10 > i32::MAX as usize - d {
                    return Err(error("integral size overflow"));
                }
                n = n * 10 + d;
                self.at += 1;
            }
            Ok(n)
        }

        /// The size of option `opt` (reading its number), 0 for those
        /// without one.
        fn size(&mut self, opt: u8) -> mlua::Result<usize> {
            Ok(match opt {
                b'b' | b'B' | b'x' => 1,
                b'h' | b'H' => 2,
                b'l' | b'L' | b'T' | b'd' => 8,
                b'f' => 4,
                b'c' => self.number(1)?,
                b'i' | b'I' => {
                    let n = self.number(4)?;
                    if n > MAX_INT_SIZE {
                        return Err(error(&format!(
                            "integral size {n} is larger than limit of {MAX_INT_SIZE}"
                        )));
                    }
                    n
                }
                _ => 0,
            })
        }

        /// Padding before an option of `size` at offset `len`.
        fn padding(&self, len: usize, opt: u8, size: usize) -> usize {
            if size == 0 || opt == b'c' {
                return 0;
            }
            let size = size.min(self.align);
            (size.wrapping_sub(len & (size - 1))) & (size - 1)
        }

        /// Endianness, alignment and spaces; anything else is refused.
        fn control(&mut self, opt: u8, function: &str) -> mlua::Result<()> {
            match opt {
                b' ' => {}
                b'>' => self.little = false,
                b'<' => self.little = true,
                b'!' => {
                    let a = self.number(MAX_ALIGN)?;
                    if !a.is_power_of_two() {
                        return Err(error(&format!("alignment {a} is not a power of 2")));
                    }
                    self.align = a;
                }
                _ => {
                    return Err(bad_argument(
                        1,
                        function,
                        &format!("invalid format option '{}'", opt as char),
                    ))
                }
            }
            Ok(())
        }
    }

    /// 2^63, exactly.
    const TWO63: f64 = (1u64 << 63) as f64;

    /// A double converted to C's long on x86: truncated, and out of range
    /// (or NaN) the "integer indefinite" 0x8000000000000000.
    fn c_long(n: f64) -> u64 {
        if n.is_nan() || !(-TWO63..TWO63).contains(&n) {
            1 << 63
        } else {
            n as i64 as u64
        }
    }

    /// A double converted to C's unsigned long as gcc does it on x86.
    fn c_unsigned_long(n: f64) -> u64 {
        if n < TWO63 {
            c_long(n)
        } else {
            c_long(n - TWO63) ^ (1 << 63)
        }
    }

    /// An integer's `size` bytes, as C's unsigned long holds it.
    fn put_integer(out: &mut Vec<u8>, n: f64, little: bool, size: usize) {
        let mut value = if n < 0.0 {
            c_long(n)
        } else {
            c_unsigned_long(n)
        };
        let mut bytes = [0u8; MAX_INT_SIZE];
        for b in bytes.iter_mut().take(size) {
            *b = value as u8;
            value >>= 8;
        }
        let bytes = &mut bytes[..size];
        if !little {
            bytes.reverse();
        }
        out.extend_from_slice(bytes);
    }

    fn get_integer(data: &[u8], little: bool, signed: bool, size: usize) -> f64 {
        let mut l: u64 = 0;
        let mut push = |b: u8| l = (l << 8) | u64::from(b);
        if little {
            data.iter().rev().for_each(|&b| push(b));
        } else {
            data.iter().for_each(|&b| push(b));
        }
        if !signed {
            return l as f64;
        }
        // C shifts by the count modulo 64 on x86.
        let mask = !0u64 << ((size * 8 - 1) % 64);
        if l & mask != 0 {
            l |= mask;
        }
        l as i64 as f64
    }

    fn pack(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::String> {
        let mut args: Vec<Value> = args.into_iter().collect();
        let fmt = string(lua, &args, 1, "pack")?;
        // pack reads its values past a nil it pushes: a value not given
        // is a nil, not "no value", in its errors.
        args.push(Value::Nil);
        let mut f = Format::new(&fmt);
        let mut out = Vec::new();
        let mut arg = 2;
        while let Some(opt) = f.next() {
            let mut size = f.size(opt)?;
            let pad = f.padding(out.len(), opt, size);
            out.resize(out.len() + pad, 0);
            match opt {
                b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                    let n = number(lua, &args, arg, "pack")?;
                    arg += 1;
                    put_integer(&mut out, n, f.little, size);
                }
                b'x' => out.push(0),
                b'f' => {
                    let v = number(lua, &args, arg, "pack")? as f32;
                    arg += 1;
                    out.extend(if f.little {
                        v.to_le_bytes()
                    } else {
                        v.to_be_bytes()
                    });
                }
                b'd' => {
                    let v = number(lua, &args, arg, "pack")?;
                    arg += 1;
                    out.extend(if f.little {
                        v.to_le_bytes()
                    } else {
                        v.to_be_bytes()
                    });
                }
                b'c' | b's' => {
                    let s = string(lua, &args, arg, "pack")?;
                    arg += 1;
                    if size == 0 {
                        size = s.len();
                    }
                    if s.len() < size {
                        // Redis names the argument after the string.
                        return Err(bad_argument(arg, "pack", "string too short"));
                    }
                    out.extend_from_slice(&s[..size]);
                    if opt == b's' {
                        out.push(0);
                    }
                }
                _ => f.control(opt, "pack")?,
            }
        }
        lua.create_string(&out)
    }

    fn unpack(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
        let args: Vec<Value> = args.into_iter().collect();
        let fmt = string(lua, &args, 1, "unpack")?;
        let data = string(lua, &args, 2, "unpack")?;
        let start = match args.get(2) {
            None | Some(Value::Nil) => 1,
            Some(_) => number(lua, &args, 3, "unpack")? as i64,
        };
        // Redis reads the offset as a size_t: only 0 is too small; a
        // negative one is past any data.
        if start == 0 {
            return Err(bad_argument(3, "unpack", "offset must be 1 or greater"));
        }
        let mut pos = (start - 1) as usize;
        let mut f = Format::new(&fmt);
        let mut out: Vec<Value> = Vec::new();
        let short = || bad_argument(2, "unpack", "data string too short");
        while let Some(opt) = f.next() {
            let mut size = f.size(opt)?;
            pos = pos.wrapping_add(f.padding(pos, opt, size));
            if size > data.len() || pos > data.len() - size {
                return Err(short());
            }
            match opt {
                b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                    let signed = opt.is_ascii_lowercase();
                    let v = get_integer(&data[pos..pos + size], f.little, signed, size);
                    out.push(Value::Number(v));
                }
                b'x' => {}
                b'f' => {
                    let b: [u8; 4] = data[pos..pos + 4].try_into().expect("4 bytes");
                    let v = if f.little {
                        f32::from_le_bytes(b)
                    } else {
                        f32::from_be_bytes(b)
                    };
                    out.push(Value::Number(f64::from(v)));
                }
                b'd' => {
                    let b: [u8; 8] = data[pos..pos + 8].try_into().expect("8 bytes");
                    let v = if f.little {
                        f64::from_le_bytes(b)
                    } else {
                        f64::from_be_bytes(b)
                    };
                    out.push(Value::Number(v));
                }
                b'c' => {
                    if size == 0 {
                        let previous = out.pop().and_then(|v| lua.coerce_number(v).ok().flatten());
                        let Some(n) = previous else {
                            return Err(error("format 'c0' needs a previous size"));
                        };
                        size = n as usize;
                        if size > data.len() || pos > data.len() - size {
                            return Err(short());
                        }
                    }
                    out.push(Value::String(lua.create_string(&data[pos..pos + size])?));
                }
                b's' => {
                    let Some(end) = data[pos..].iter().position(|&c| c == 0) else {
                        return Err(error("unfinished string in data"));
                    };
                    out.push(Value::String(lua.create_string(&data[pos..pos + end])?));
                    size = end + 1;
                }
                _ => f.control(opt, "unpack")?,
            }
            pos += size;
        }
        out.push(Value::Number((pos + 1) as f64));
        Ok(MultiValue::from_iter(out))
    }

    fn size(lua: &Lua, args: MultiValue) -> mlua::Result<f64> {
        let args: Vec<Value> = args.into_iter().collect();
        let fmt = string(lua, &args, 1, "size")?;
        let mut f = Format::new(&fmt);
        let mut pos = 0usize;
        while let Some(opt) = f.next() {
            let size = f.size(opt)?;
            pos += f.padding(pos, opt, size);
            if opt == b's' {
                return Err(bad_argument(1, "size", "option 's' has no fixed size"));
            }
            if opt == b'c' && size == 0 {
                return Err(bad_argument(1, "size", "option 'c0' has no fixed size"));
            }
            if !opt.is_ascii_alphanumeric() {
                f.control(opt, "size")?;
            }
            pos += size;
        }
        Ok(pos as f64)
    }

    pub fn library(lua: &Lua) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.raw_set("pack", lua.create_function(pack)?)?;
        t.raw_set("unpack", lua.create_function(unpack)?)?;
        t.raw_set("size", lua.create_function(size)?)?;
        Ok(t)
    }
}
