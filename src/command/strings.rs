//! String commands.
//!
//! Values that are canonical integers are stored as integers (see
//! `keyspace::value`), so INCR and friends parse nothing; everything else is
//! bytes. Effects: relative expiries are recorded as absolute `PXAT` /
//! `PEXPIREAT`, INCRBYFLOAT as `SET ... KEEPTTL` with its result, and the
//! deterministic commands (APPEND, INCR, SETRANGE, MSET ...) as themselves.

use bytes::Bytes;

use super::args::{int, Args};
use super::longdouble::LongDouble;
use super::{flags::*, key_flags::*, keys, spec, Access, Ctx, Spec};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::{Kind, Node, SlotTable, Value};
use crate::protocol::ReplyBuf;

const G: &str = "string";
const S: &[&str] = &["string"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("get", 2, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Returns the string value of a key.", get),
    Spec { key_flags_for: Some(set_key_flags), ..spec("set", -3, WRITE | DENYOOM, keys(1, 1, 1).flags(RW | ACCESS | UPDATE | VARIABLE_FLAGS), S, G, "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", set) },
    spec("setnx", 3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(OW | INSERT), S, G, "Set the string value of a key only when the key doesn't exist.", setnx),
    spec("setex", 4, WRITE | DENYOOM, keys(1, 1, 1).flags(OW | UPDATE), S, G, "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", setex),
    spec("psetex", 4, WRITE | DENYOOM, keys(1, 1, 1).flags(OW | UPDATE), S, G, "Sets both string value and expiration time in milliseconds of a key.", psetex),
    spec("getset", 3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), S, G, "Returns the previous string value of a key after setting it to a new value.", getset),
    spec("getdel", 2, WRITE | FAST, keys(1, 1, 1).flags(RW | ACCESS | DELETE), S, G, "Returns the string value of a key after deleting the key.", getdel),
    spec("getex", -2, WRITE | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), S, G, "Returns the string value of a key after setting its expiration time.", getex),
    spec("mget", -2, READONLY | FAST, keys(1, -1, 1).flags(RO | ACCESS), S, G, "Atomically returns the string values of one or more keys.", mget),
    spec("mset", -3, WRITE | DENYOOM, keys(1, -1, 2).flags(OW | UPDATE), S, G, "Atomically creates or modifies the string values of one or more keys.", mset),
    spec("msetnx", -3, WRITE | DENYOOM, keys(1, -1, 2).flags(OW | INSERT), S, G, "Atomically modifies the string values of one or more keys only when all keys don't exist.", msetnx),
    spec("append", 3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | INSERT), S, G, "Appends a string to the value of a key. Creates the key if it doesn't exist.", append),
    spec("strlen", 2, READONLY | FAST, keys(1, 1, 1).flags(RO), S, G, "Returns the length of a string value.", strlen),
    spec("incr", 2, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), S, G, "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", incr),
    spec("decr", 2, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), S, G, "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", decr),
    spec("incrby", 3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), S, G, "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", incrby),
    spec("decrby", 3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), S, G, "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", decrby),
    spec("incrbyfloat", 3, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), S, G, "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", incrbyfloat),
    spec("getrange", 4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Returns a substring of the string stored at a key.", getrange),
    spec("substr", 4, READONLY, keys(1, 1, 1).flags(RO | ACCESS), S, G, "Returns a substring from a string value.", getrange),
    spec("setrange", 4, WRITE | DENYOOM, keys(1, 1, 1).flags(RW | UPDATE), S, G, "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", setrange),
    spec("lcs", -3, READONLY, keys(1, 2, 1).flags(RO | ACCESS), S, G, "Finds the longest common substring.", lcs),
];

/// The string stored at a live key, or `WRONGTYPE`.
pub fn string_of(node: &Node) -> Result<&Value, CommandError> {
    if node.value.kind() != Kind::String {
        return Err(CommandError::WrongType);
    }
    Ok(&node.value)
}

fn reply_value(out: &mut ReplyBuf, v: &Value) {
    match v {
        Value::Int(n) => out.bulk_int(*n),
        other => out.bulk(
            other
                .str_bytes(&mut itoa::Buffer::new())
                .unwrap_or_default(),
        ),
    }
}

fn value_bytes(v: &Value) -> Vec<u8> {
    let mut b = itoa::Buffer::new();
    v.str_bytes(&mut b).map(<[u8]>::to_vec).unwrap_or_default()
}

fn get(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    match ctx.lookup_read(&mut t, &argv[1]) {
        Some(n) => reply_value(ctx.out, string_of(n)?),
        None => ctx.out.null(),
    }
    Ok(())
}

/// When a write with an expiry option takes effect.
#[derive(Clone, Copy, PartialEq)]
enum ExpireOpt {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Turns an expiry option into absolute Unix ms, with Redis's checks.
fn expire_at(opt: ExpireOpt, arg: &[u8], now: i64, cmd: &'static str) -> Result<i64, CommandError> {
    let v = int(arg)?;
    if v <= 0 {
        return Err(CommandError::InvalidExpire(cmd));
    }
    let bad = || CommandError::InvalidExpire(cmd);
    match opt {
        ExpireOpt::Ex => v
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(now))
            .ok_or_else(bad),
        ExpireOpt::Px => v.checked_add(now).ok_or_else(bad),
        ExpireOpt::ExAt => v.checked_mul(1000).ok_or_else(bad),
        ExpireOpt::PxAt => Ok(v),
    }
}

fn expire_word(a: &[u8]) -> Option<ExpireOpt> {
    [
        ("ex", ExpireOpt::Ex),
        ("px", ExpireOpt::Px),
        ("exat", ExpireOpt::ExAt),
        ("pxat", ExpireOpt::PxAt),
    ]
    .into_iter()
    .find(|(w, _)| a.eq_ignore_ascii_case(w.as_bytes()))
    .map(|(_, o)| o)
}

#[derive(Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    expire_at: Option<i64>,
}

fn parse_set(argv: &[Bytes], now: i64) -> Result<SetOptions, CommandError> {
    let mut o = SetOptions::default();
    let mut a = Args::new(argv, 2);
    let mut expire: Option<(ExpireOpt, &Bytes)> = None;
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"nx") && !o.xx {
            o.nx = true;
        } else if w.eq_ignore_ascii_case(b"xx") && !o.nx {
            o.xx = true;
        } else if w.eq_ignore_ascii_case(b"get") {
            o.get = true;
        } else if w.eq_ignore_ascii_case(b"keepttl") && expire.is_none() {
            o.keep_ttl = true;
        } else if let Some(opt) = expire_word(w)
            .filter(|&opt| expire.is_none_or(|(before, _)| before == opt) && !o.keep_ttl)
        {
            // The first expiry, or the same one again: Redis lets
            // `EX 10 EX 20` through, the last value counting.
            expire = Some((opt, a.value()?));
        } else {
            return Err(CommandError::Syntax);
        }
    }
    if let Some((opt, v)) = expire {
        o.expire_at = Some(expire_at(opt, v, now, "set")?);
    }
    Ok(o)
}

/// SET overwrites its key, and reads it too when GET returns the old
/// value (so ACL needs read access only then).
fn set_key_flags(argv: &[Bytes]) -> u16 {
    let get = argv
        .get(3..)
        .unwrap_or_default()
        .iter()
        .any(|a| a.eq_ignore_ascii_case(b"get"));
    if get {
        RW | ACCESS | UPDATE
    } else {
        OW | UPDATE
    }
}

fn set(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let o = parse_set(argv, ctx.now_ms)?;
    let (key, val) = (&argv[1], &argv[2]);
    let mut t = ctx.lock_key(key);
    if !o.nx && !o.xx && !o.get && !o.keep_ttl {
        // A plain SET replaces whatever is there, expired or not, so it needs
        // no lookup first (KEEPTTL does: an expired key has no TTL to keep).
        write_string(ctx, &mut t, key, val, o.expire_at, o.keep_ttl, false);
        ctx.out.ok();
        return Ok(());
    }
    // GET reads the old value as a read (a keyspace hit or miss); the
    // store after it is then a use of its own, as in Redis.
    let access = if o.get { Access::READ } else { Access::WRITE };
    let old = ctx.lookup_as(ctx.db(), &mut t, key, access);
    let exists = old.is_some();
    let old_value = match (o.get, old) {
        (true, Some(n)) => Some(string_of(n)?.clone()),
        _ => None,
    };
    if (o.nx && exists) || (o.xx && !exists) {
        if o.get {
            match &old_value {
                Some(v) => reply_value(ctx.out, v),
                None => ctx.out.null(),
            }
        } else {
            ctx.out.null();
        }
        return Ok(());
    }
    write_string(ctx, &mut t, key, val, o.expire_at, o.keep_ttl, !o.get);
    if o.get {
        match &old_value {
            Some(v) => reply_value(ctx.out, v),
            None => ctx.out.null(),
        }
    } else {
        ctx.out.ok();
    }
    Ok(())
}

/// Stores a string and records the effect; an expiry already in the past
/// deletes the key instead, as Redis does, except in a replay of recorded
/// effects (see `expire_generic`). `looked_up`: the command has just used
/// the key (so the store is not counted as another use, see `Ctx::store`).
fn write_string(
    ctx: &Ctx,
    t: &mut SlotTable,
    key: &[u8],
    val: &[u8],
    expire_at: Option<i64>,
    keep_ttl: bool,
    looked_up: bool,
) {
    #[inline]
    fn put(ctx: &Ctx, t: &mut SlotTable, key: &[u8], val: &[u8], keep_ttl: bool, looked_up: bool) {
        if looked_up {
            t.set(key, Value::string(val), ctx.now_ms, keep_ttl);
        } else {
            ctx.store(t, key, Value::string(val), keep_ttl);
        }
    }
    match expire_at {
        Some(at) if at <= ctx.now_ms && !ctx.replaying() => {
            if t.remove(key).is_some() {
                ctx.emit(&[b"DEL", key]);
            }
        }
        Some(at) => {
            put(ctx, t, key, val, false, looked_up);
            t.set_expire(key, at);
            let mut b = itoa::Buffer::new();
            ctx.emit(&[b"SET", key, val, b"PXAT", b.format(at).as_bytes()]);
        }
        None => {
            put(ctx, t, key, val, keep_ttl, looked_up);
            if keep_ttl {
                ctx.emit(&[b"SET", key, val, b"KEEPTTL"]);
            } else {
                ctx.emit(&[b"SET", key, val]);
            }
        }
    }
}

fn setnx(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    if ctx.lookup(&mut t, &argv[1]).is_some() {
        ctx.out.int(0);
    } else {
        write_string(ctx, &mut t, &argv[1], &argv[2], None, false, true);
        ctx.out.int(1);
    }
    Ok(())
}

fn setex_generic(ctx: &mut Ctx, argv: &[Bytes], opt: ExpireOpt, cmd: &'static str) -> CmdResult {
    let at = expire_at(opt, &argv[2], ctx.now_ms, cmd)?;
    let mut t = ctx.lock_key(&argv[1]);
    ctx.lookup(&mut t, &argv[1]);
    write_string(ctx, &mut t, &argv[1], &argv[3], Some(at), false, true);
    ctx.out.ok();
    Ok(())
}

fn setex(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    setex_generic(ctx, argv, ExpireOpt::Ex, "setex")
}

fn psetex(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    setex_generic(ctx, argv, ExpireOpt::Px, "psetex")
}

fn getset(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let old = match ctx.lookup_read(&mut t, &argv[1]) {
        Some(n) => Some(string_of(n)?.clone()),
        None => None,
    };
    write_string(ctx, &mut t, &argv[1], &argv[2], None, false, false);
    match old {
        Some(v) => reply_value(ctx.out, &v),
        None => ctx.out.null(),
    }
    Ok(())
}

fn getdel(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let Some(n) = ctx.lookup_read(&mut t, &argv[1]) else {
        ctx.out.null();
        return Ok(());
    };
    reply_value(ctx.out, string_of(n)?);
    t.remove(&argv[1]);
    ctx.emit(&[b"DEL", &argv[1]]);
    Ok(())
}

fn getex(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    enum Change<'a> {
        None,
        Persist,
        In(ExpireOpt, &'a [u8]),
        At(i64),
    }
    let mut a = Args::new(argv, 1);
    let mut change = Change::None;
    while let Some(w) = a.next() {
        // The first expiry, or the same one again (the last value counts).
        let may = |opt| match change {
            Change::None => true,
            Change::In(before, _) => before == opt,
            _ => false,
        };
        if let Some(opt) = expire_word(w).filter(|&opt| may(opt)) {
            change = Change::In(opt, a.value()?);
        } else if w.eq_ignore_ascii_case(b"persist")
            && matches!(change, Change::None | Change::Persist)
        {
            change = Change::Persist;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let Some(n) = ctx.lookup_read(&mut t, key) else {
        ctx.out.null();
        return Ok(());
    };
    let value = string_of(n)?;
    // Redis reads the time only once the key has passed: a missing key is
    // nil and a wrong type WRONGTYPE whatever the time says.
    if let Change::In(opt, v) = change {
        change = Change::At(expire_at(opt, v, ctx.now_ms, "getex")?);
    }
    reply_value(ctx.out, value);
    let had_ttl = n.expire_at != 0;
    match change {
        Change::None | Change::In(..) => {}
        Change::Persist => {
            if had_ttl {
                t.set_expire(key, 0);
                ctx.emit(&[b"PERSIST", key]);
            }
        }
        Change::At(at) if at <= ctx.now_ms => {
            t.remove(key);
            ctx.emit(&[b"DEL", key]);
        }
        Change::At(at) => {
            t.set_expire(key, at);
            let mut b = itoa::Buffer::new();
            ctx.emit(&[b"PEXPIREAT", key, b.format(at).as_bytes()]);
        }
    }
    Ok(())
}

fn mget(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let keys = &argv[1..];
    let db = ctx.db();
    let mut locked = ctx.lock_keys(keys.iter());
    ctx.out.array(keys.len());
    for k in keys {
        let t = locked.table_for(db, k);
        match ctx.lookup_read(t, k) {
            Some(n) if n.value.kind() == Kind::String => reply_value(ctx.out, &n.value),
            _ => ctx.out.null(),
        }
    }
    Ok(())
}

fn mset_generic(ctx: &mut Ctx, argv: &[Bytes], nx: bool) -> CmdResult {
    if argv.len().is_multiple_of(2) {
        return Err(CommandError::Arity(
            argv[0]
                .to_ascii_lowercase()
                .iter()
                .map(|&c| c as char)
                .collect(),
        ));
    }
    let db = ctx.db();
    let mut locked = ctx.lock_keys(argv[1..].iter().step_by(2));
    if nx {
        let any = argv[1..]
            .chunks(2)
            .any(|kv| ctx.lookup(locked.table_for(db, &kv[0]), &kv[0]).is_some());
        if any {
            ctx.out.int(0);
            return Ok(());
        }
    }
    for kv in argv[1..].chunks(2) {
        let t = locked.table_for(db, &kv[0]);
        ctx.store(t, &kv[0], Value::string(&kv[1]), false);
    }
    let mut effect = argv.to_vec();
    effect[0] = Bytes::from_static(b"MSET");
    ctx.emit_argv(&effect);
    drop(locked);
    if nx {
        ctx.out.int(1);
    } else {
        ctx.out.ok();
    }
    Ok(())
}

fn mset(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    mset_generic(ctx, argv, false)
}

fn msetnx(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    mset_generic(ctx, argv, true)
}

pub fn check_len(ctx: &Ctx, len: usize) -> CmdResult {
    let max = ctx
        .server
        .tun
        .max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed);
    // Compared unsigned: an offset near i64::MAX plus a patch is past any
    // limit, not a negative length.
    if len as u64 > max.max(0) as u64 {
        return Err(CommandError::StringTooLong);
    }
    Ok(())
}

fn append(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (key, extra) = (&argv[1], &argv[2]);
    let mut t = ctx.lock_key(key);
    let len = match ctx.lookup(&mut t, key) {
        Some(n) => {
            check_len(ctx, string_len(string_of(n)?) + extra.len())?;
            let buf = n.value.make_raw();
            buf.extend_from_slice(extra);
            buf.len()
        }
        None => {
            // A new key's value is encoded as SET would (an integer stays
            // one), as Redis's APPEND does.
            t.set(key, Value::string(extra), ctx.now_ms, false);
            extra.len()
        }
    };
    ctx.emit_argv(argv);
    ctx.out.int(len as i64);
    Ok(())
}

fn string_len(v: &Value) -> usize {
    let mut b = itoa::Buffer::new();
    v.str_bytes(&mut b).map_or(0, <[u8]>::len)
}

fn strlen(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let len = match ctx.lookup_read(&mut t, &argv[1]) {
        Some(n) => string_len(string_of(n)?),
        None => 0,
    };
    ctx.out.int(len as i64);
    Ok(())
}

fn incr_generic(ctx: &mut Ctx, argv: &[Bytes], delta: i64) -> CmdResult {
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    let new = match ctx.lookup(&mut t, key) {
        Some(n) => {
            let cur = match string_of(n)? {
                Value::Int(i) => *i,
                other => crate::protocol::request::parse_i64(
                    other
                        .str_bytes(&mut itoa::Buffer::new())
                        .unwrap_or_default(),
                )
                .ok_or(CommandError::NotInteger)?,
            };
            let new = cur.checked_add(delta).ok_or(CommandError::Overflow)?;
            n.value = Value::Int(new);
            new
        }
        None => {
            t.set(key, Value::Int(delta), ctx.now_ms, false);
            delta
        }
    };
    ctx.emit_argv(argv);
    ctx.out.int(new);
    Ok(())
}

fn incr(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    incr_generic(ctx, argv, 1)
}

fn decr(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    incr_generic(ctx, argv, -1)
}

fn incrby(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let d = int(&argv[2])?;
    incr_generic(ctx, argv, d)
}

fn decrby(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let d = int(&argv[2])?;
    let d = d
        .checked_neg()
        .ok_or_else(|| CommandError::err("decrement would overflow"))?;
    incr_generic(ctx, argv, d)
}

fn incrbyfloat(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let mut t = ctx.lock_key(key);
    // Redis's order: the key's type, its value, then the increment.
    let cur = match ctx.lookup(&mut t, key) {
        Some(n) => match string_of(n)? {
            Value::Int(i) => LongDouble::from_i64(*i),
            other => LongDouble::parse(
                other
                    .str_bytes(&mut itoa::Buffer::new())
                    .unwrap_or_default(),
            )
            .ok_or(CommandError::NotFloat)?,
        },
        None => LongDouble::from_i64(0),
    };
    let incr = LongDouble::parse(&argv[2]).ok_or(CommandError::NotFloat)?;
    let new = cur + incr;
    if !new.is_finite() {
        return Err(CommandError::NanOrInfinity);
    }
    let text = new.to_human();
    // Kept as text even when whole, as Redis keeps INCRBYFLOAT's result
    // (OBJECT ENCODING embstr; its replicas, given SET, say int).
    t.set(
        key,
        Value::Str(crate::keyspace::SmallBuf::new(text.as_bytes())),
        ctx.now_ms,
        true,
    );
    ctx.emit_as("incrbyfloat", &[b"SET", key, text.as_bytes(), b"KEEPTTL"]);
    ctx.out.bulk(text.as_bytes());
    Ok(())
}

/// Resolves Redis's inclusive, possibly negative range over `len` bytes,
/// as GETRANGE and BITCOUNT do: two negative ends the wrong way round are
/// empty before they are clamped.
pub fn byte_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    if start < 0 && end < 0 && start > end {
        return None;
    }
    clamped_range(start, end, len)
}

/// The same range with no such shortcut (BITPOS): `-1 -5` over one byte
/// clamps to byte 0.
pub fn clamped_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    if len == 0 {
        return None;
    }
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if end < 0 { len + end } else { end };
    s = s.max(0);
    e = e.max(0);
    if e >= len {
        e = len - 1;
    }
    if s > e {
        return None;
    }
    Some((s as usize, e as usize))
}

fn getrange(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let start = int(&argv[2])?;
    let end = int(&argv[3])?;
    let mut t = ctx.lock_key(&argv[1]);
    let Some(n) = ctx.lookup_read(&mut t, &argv[1]) else {
        ctx.out.bulk(b"");
        return Ok(());
    };
    let mut scratch = itoa::Buffer::new();
    let bytes = string_of(n)?.str_bytes(&mut scratch).unwrap_or_default();
    match byte_range(start, end, bytes.len()) {
        Some((s, e)) => ctx.out.bulk(&bytes[s..=e]),
        None => ctx.out.bulk(b""),
    }
    Ok(())
}

fn setrange(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let key = &argv[1];
    let offset = int(&argv[2])?;
    if offset < 0 {
        return Err(CommandError::err("offset is out of range"));
    }
    let offset = offset as usize;
    let patch = &argv[3];
    let mut t = ctx.lock_key(key);
    let len = match ctx.lookup(&mut t, key) {
        Some(n) => {
            let cur_len = string_len(string_of(n)?);
            if patch.is_empty() {
                cur_len
            } else {
                check_len(ctx, offset.saturating_add(patch.len()))?;
                let buf = n.value.make_raw();
                if buf.len() < offset + patch.len() {
                    buf.resize(offset + patch.len(), 0);
                }
                buf[offset..offset + patch.len()].copy_from_slice(patch);
                let len = buf.len();
                ctx.emit_argv(argv);
                len
            }
        }
        None => {
            if patch.is_empty() {
                0
            } else {
                check_len(ctx, offset.saturating_add(patch.len()))?;
                let mut v = vec![0u8; offset + patch.len()];
                v[offset..].copy_from_slice(patch);
                let len = v.len();
                t.set(key, Value::Raw(Box::new(v)), ctx.now_ms, false);
                ctx.emit_argv(argv);
                len
            }
        }
    };
    ctx.out.int(len as i64);
    Ok(())
}

fn lcs(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (mut want_len, mut want_idx, mut with_len, mut min_len) = (false, false, false, 0usize);
    let mut a = Args::new(argv, 2);
    while let Some(w) = a.next() {
        if w.eq_ignore_ascii_case(b"len") {
            want_len = true;
        } else if w.eq_ignore_ascii_case(b"idx") {
            want_idx = true;
        } else if w.eq_ignore_ascii_case(b"withmatchlen") {
            with_len = true;
        } else if w.eq_ignore_ascii_case(b"minmatchlen") {
            min_len = a.int()?.max(0) as usize;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    if want_len && want_idx {
        return Err(CommandError::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    let db = ctx.db();
    let (sa, sb) = {
        let mut locked = ctx.lock_keys(argv[1..3].iter());
        let mut fetch = |k: &Bytes| -> Result<Vec<u8>, CommandError> {
            match ctx.lookup_read(locked.table_for(db, k), k) {
                Some(n) if n.value.kind() != Kind::String => Err(CommandError::err(
                    "The specified keys must contain string values",
                )),
                Some(n) => Ok(value_bytes(&n.value)),
                None => Ok(Vec::new()),
            }
        };
        // Both keys are read before either's type is judged, as in Redis.
        let (a, b) = (fetch(&argv[1]), fetch(&argv[2]));
        (a?, b?)
    };
    let (alen, blen) = (sa.len(), sb.len());
    let cells = (alen as u128 + 1) * (blen as u128 + 1);
    if cells * 4
        > ctx
            .server
            .tun
            .max_bulk_len
            .load(std::sync::atomic::Ordering::Relaxed) as u128
    {
        return Err(CommandError::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    // Classic dynamic programme: dp[i][j] = LCS length of a[..i], b[..j].
    let w = blen + 1;
    let mut dp = vec![0u32; (alen + 1) * w];
    for i in 1..=alen {
        for j in 1..=blen {
            dp[i * w + j] = if sa[i - 1] == sb[j - 1] {
                dp[(i - 1) * w + j - 1] + 1
            } else {
                dp[(i - 1) * w + j].max(dp[i * w + j - 1])
            };
        }
    }
    let total = dp[alen * w + blen] as usize;
    if want_len {
        ctx.out.int(total as i64);
        return Ok(());
    }
    // Walk back from the end, collecting the string and the matching ranges
    // (newest first, as Redis reports them).
    let mut result = vec![0u8; total];
    let mut ranges: Vec<[usize; 5]> = Vec::new();
    let (mut i, mut j, mut idx) = (alen, blen, total);
    let mut cur: Option<[usize; 4]> = None; // a_start, a_end, b_start, b_end
    while i > 0 && j > 0 {
        let mut emit = false;
        if sa[i - 1] == sb[j - 1] {
            result[idx - 1] = sa[i - 1];
            match &mut cur {
                None => cur = Some([i - 1, i - 1, j - 1, j - 1]),
                Some(r) if r[0] == i && r[2] == j => {
                    r[0] -= 1;
                    r[2] -= 1;
                }
                Some(_) => emit = true,
            }
            if let Some(r) = cur {
                if r[0] == 0 || r[2] == 0 {
                    emit = true;
                }
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if dp[(i - 1) * w + j] > dp[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if cur.is_some() {
                emit = true;
            }
        }
        if emit {
            if let Some(r) = cur.take() {
                let mlen = r[1] - r[0] + 1;
                if min_len == 0 || mlen >= min_len {
                    ranges.push([r[0], r[1], r[2], r[3], mlen]);
                }
            }
        }
    }
    if !want_idx {
        ctx.out.bulk(&result);
        return Ok(());
    }
    let out = &mut *ctx.out;
    out.map(2);
    out.bulk(b"matches");
    out.array(ranges.len());
    for r in &ranges {
        out.array(if with_len { 3 } else { 2 });
        out.array(2);
        out.int(r[0] as i64);
        out.int(r[1] as i64);
        out.array(2);
        out.int(r[2] as i64);
        out.int(r[3] as i64);
        if with_len {
            out.int(r[4] as i64);
        }
    }
    out.bulk(b"len");
    out.int(total as i64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_redis() {
        assert_eq!(byte_range(0, 3, 11), Some((0, 3)));
        assert_eq!(byte_range(-3, -1, 11), Some((8, 10)));
        assert_eq!(byte_range(0, -1, 11), Some((0, 10)));
        assert_eq!(byte_range(10, 100, 11), Some((10, 10)));
        assert_eq!(byte_range(5, 3, 11), None);
        assert_eq!(byte_range(-1, -5, 11), None);
        assert_eq!(byte_range(0, 0, 0), None);
        assert_eq!(clamped_range(-1, -5, 1), Some((0, 0)));
        assert_eq!(clamped_range(-1, -5, 2), None);
    }
}
