//! Hash commands.
//!
//! Effects: every hash write is deterministic and recorded as itself,
//! except HINCRBYFLOAT, recorded as `HSET key field <result>` so that a
//! replay never redoes float arithmetic. Commands that change nothing
//! (HDEL of absent fields, HSETNX on an existing field) record nothing.

use bytes::Bytes;

use super::args::{int, rand_count};
use super::element_scan::{self, Slot};
use super::longdouble::LongDouble;
use super::{flags::*, key_flags::*, keys, spec, Ctx, Spec};
use crate::error::{CmdResult, CommandError};
use crate::keyspace::Hash;

const G: &str = "hash";
const H: &[&str] = &["hash"];

#[rustfmt::skip]
pub static COMMANDS: &[Spec] = &[
    spec("hset", -4, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | UPDATE), H, G, "Creates or modifies the value of a field in a hash.", hset),
    spec("hmset", -4, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | UPDATE), H, G, "Sets the values of multiple fields.", hset),
    spec("hsetnx", 4, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | INSERT), H, G, "Sets the value of a field in a hash only when the field doesn't exist.", hsetnx),
    spec("hget", 3, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), H, G, "Returns the value of a field in a hash.", hget),
    spec("hmget", -3, READONLY | FAST, keys(1, 1, 1).flags(RO | ACCESS), H, G, "Returns the values of all fields in a hash.", hmget),
    spec("hdel", -3, WRITE | FAST, keys(1, 1, 1).flags(RW | DELETE), H, G, "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.", hdel),
    spec("hexists", 3, READONLY | FAST, keys(1, 1, 1).flags(RO), H, G, "Determines whether a field exists in a hash.", hexists),
    spec("hlen", 2, READONLY | FAST, keys(1, 1, 1).flags(RO), H, G, "Returns the number of fields in a hash.", hlen),
    spec("hstrlen", 3, READONLY | FAST, keys(1, 1, 1).flags(RO), H, G, "Returns the length of the value of a field.", hstrlen),
    spec("hkeys", 2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), H, G, "Returns all fields in a hash.", hkeys),
    spec("hvals", 2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), H, G, "Returns all values in a hash.", hvals),
    spec("hgetall", 2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), H, G, "Returns all fields and values in a hash.", hgetall),
    spec("hincrby", 4, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), H, G, "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.", hincrby),
    spec("hincrbyfloat", 4, WRITE | DENYOOM | FAST, keys(1, 1, 1).flags(RW | ACCESS | UPDATE), H, G, "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.", hincrbyfloat),
    spec("hrandfield", -2, READONLY, keys(1, 1, 1).flags(RO | ACCESS), H, G, "Returns one or more random fields from a hash.", hrandfield),
    spec("hscan", -3, READONLY, keys(1, 1, 1).flags(RO | ACCESS), H, G, "Iterates over fields and values of a hash.", hscan),
];

fn hset(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    if !argv.len().is_multiple_of(2) {
        return Err(CommandError::Arity(
            String::from_utf8_lossy(&argv[0]).to_ascii_lowercase(),
        ));
    }
    let limits = ctx.encodings().hash;
    let mut t = ctx.lock_key(&argv[1]);
    let h: &mut Hash = ctx.write_or_create(&mut t, &argv[1])?;
    let added = h.insert_all(&argv[2..], limits);
    if argv[0].eq_ignore_ascii_case(b"hmset") {
        // Recorded, and notified, as the HSET it is, as Redis does.
        let mut rec: Vec<&[u8]> = vec![b"HSET"];
        rec.extend(argv[1..].iter().map(|a| &a[..]));
        ctx.emit(&rec);
        ctx.out.ok();
    } else {
        ctx.emit_argv(argv);
        ctx.out.int(added as i64);
    }
    Ok(())
}

fn hsetnx(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let limits = ctx.encodings().hash;
    let mut t = ctx.lock_key(&argv[1]);
    let h: &mut Hash = ctx.write_or_create(&mut t, &argv[1])?;
    let set = h.get(&argv[2]).is_none();
    if set {
        h.insert(&argv[2], &argv[3], limits);
        ctx.emit(&[b"HSET", &argv[1], &argv[2], &argv[3]]);
    }
    ctx.out.int(set as i64);
    Ok(())
}

fn hget(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    match ctx
        .read::<Hash>(&mut t, &argv[1])?
        .and_then(|h| h.get(&argv[2]))
    {
        Some(v) => ctx.out.bulk(v),
        None => ctx.out.null(),
    }
    Ok(())
}

fn hmget(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let h = ctx.read::<Hash>(&mut t, &argv[1])?;
    let values = h.map_or_else(|| vec![None; argv.len() - 2], |h| h.get_each(&argv[2..]));
    ctx.out.array(values.len());
    for v in values {
        match v {
            Some(v) => ctx.out.bulk(v),
            None => ctx.out.null(),
        }
    }
    Ok(())
}

fn hdel(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.remove_members::<Hash>(argv, Hash::remove_all)
}

fn hexists(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let found = ctx
        .read::<Hash>(&mut t, &argv[1])?
        .is_some_and(|h| h.get(&argv[2]).is_some());
    ctx.out.int(found as i64);
    Ok(())
}

fn hlen(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    ctx.reply_count::<Hash>(&argv[1])
}

fn hstrlen(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let mut t = ctx.lock_key(&argv[1]);
    let n = ctx
        .read::<Hash>(&mut t, &argv[1])?
        .and_then(|h| h.get(&argv[2]))
        .map_or(0, <[u8]>::len);
    ctx.out.int(n as i64);
    Ok(())
}

/// HKEYS, HVALS and HGETALL: which halves of each pair to reply with.
fn hget_all(ctx: &mut Ctx, key: &[u8], fields: bool, values: bool) -> CmdResult {
    let mut t = ctx.lock_key(key);
    let Some(h) = ctx.read::<Hash>(&mut t, key)? else {
        if fields && values {
            ctx.out.map(0);
        } else {
            ctx.out.array(0);
        }
        return Ok(());
    };
    if fields && values {
        ctx.out.map(h.len());
    } else {
        ctx.out.array(h.len());
    }
    for (f, v) in h.iter() {
        if fields {
            ctx.out.bulk(f);
        }
        if values {
            ctx.out.bulk(v);
        }
    }
    Ok(())
}

fn hkeys(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    hget_all(ctx, &argv[1], true, false)
}

fn hvals(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    hget_all(ctx, &argv[1], false, true)
}

fn hgetall(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    hget_all(ctx, &argv[1], true, true)
}

fn hincrby(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let delta = int(&argv[3])?;
    let limits = ctx.encodings().hash;
    let mut t = ctx.lock_key(&argv[1]);
    let h: &mut Hash = ctx.write_or_create(&mut t, &argv[1])?;
    let cur = match h.get(&argv[2]) {
        Some(v) => crate::protocol::request::parse_i64(v)
            .ok_or_else(|| CommandError::err("hash value is not an integer"))?,
        None => 0,
    };
    let new = cur.checked_add(delta).ok_or(CommandError::Overflow);
    let new = match new {
        Ok(n) => n,
        Err(e) => {
            ctx.remove_if_empty::<Hash>(&mut t, &argv[1]);
            return Err(e);
        }
    };
    h.insert(&argv[2], itoa::Buffer::new().format(new).as_bytes(), limits);
    ctx.emit_argv(argv);
    ctx.out.int(new);
    Ok(())
}

fn hincrbyfloat(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    // Redis refuses an infinite increment before it looks at the key.
    let delta = LongDouble::parse(&argv[3]).ok_or(CommandError::NotFloat)?;
    if !delta.is_finite() {
        return Err(CommandError::err("value is NaN or Infinity"));
    }
    let limits = ctx.encodings().hash;
    let mut t = ctx.lock_key(&argv[1]);
    let h: &mut Hash = ctx.write_or_create(&mut t, &argv[1])?;
    let result = match h.get(&argv[2]) {
        Some(v) => {
            LongDouble::parse(v).ok_or_else(|| CommandError::err("hash value is not a float"))
        }
        None => Ok(LongDouble::from_i64(0)),
    }
    .and_then(|cur| {
        let new = cur + delta;
        if new.is_finite() {
            Ok(new)
        } else {
            Err(CommandError::NanOrInfinity)
        }
    });
    let new = match result {
        Ok(n) => n,
        Err(e) => {
            ctx.remove_if_empty::<Hash>(&mut t, &argv[1]);
            return Err(e);
        }
    };
    let text = new.to_human();
    h.insert(&argv[2], text.as_bytes(), limits);
    ctx.emit_as(
        "hincrbyfloat",
        &[b"HSET", &argv[1], &argv[2], text.as_bytes()],
    );
    ctx.out.bulk(text.as_bytes());
    Ok(())
}

fn hrandfield(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let (count, with_values) = match argv.len() {
        2 => (None, false),
        3 => (Some(rand_count(&argv[2], false)?), false),
        4 if argv[3].eq_ignore_ascii_case(b"withvalues") => {
            (Some(rand_count(&argv[2], true)?), true)
        }
        _ => return Err(CommandError::Syntax),
    };
    let mut t = ctx.lock_key(&argv[1]);
    let h = ctx.read::<Hash>(&mut t, &argv[1])?;
    let mut rng = rand::thread_rng();
    let Some(count) = count else {
        match h {
            Some(h) => ctx.out.bulk(h.random_pairs(1, false, &mut rng)[0].0),
            None => ctx.out.null(),
        }
        return Ok(());
    };
    let Some(h) = h else {
        ctx.out.array(0);
        return Ok(());
    };
    let (n, distinct) = count;
    let picks = h.random_pairs(n, distinct, &mut rng);
    let n = picks.len();
    reply_pairs(ctx, picks.into_iter(), n, with_values);
    Ok(())
}

/// Field/value (or member/score) pairs: RESP3 nests each pair, RESP2 is flat.
fn reply_pairs<'a>(
    ctx: &mut Ctx,
    pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    n: usize,
    with_values: bool,
) {
    if !with_values {
        ctx.out.array(n);
        pairs.for_each(|(f, _)| ctx.out.bulk(f));
        return;
    }
    let nested = ctx.out.resp3();
    ctx.out.array(if nested { n } else { 2 * n });
    for (f, v) in pairs {
        if nested {
            ctx.out.array(2);
        }
        ctx.out.bulk(f);
        ctx.out.bulk(v);
    }
}

fn hscan(ctx: &mut Ctx, argv: &[Bytes]) -> CmdResult {
    let cursor = element_scan::cursor(argv)?;
    let mut t = ctx.lock_key(&argv[1]);
    let Some(h) = ctx.read::<Hash>(&mut t, &argv[1])? else {
        element_scan::empty(ctx);
        return Ok(());
    };
    let o = element_scan::parse(argv, cursor, true)?;
    element_scan::reply(ctx, &o, &HashScan(h));
    Ok(())
}

struct HashScan<'a>(&'a Hash);

impl<'a> element_scan::Source for HashScan<'a> {
    type E = (&'a [u8], &'a [u8]);
    fn size(&self) -> usize {
        self.0.len()
    }
    fn buckets(&self) -> Option<(usize, u16)> {
        self.0.table().map(|t| (t.num_buckets(), t.epoch()))
    }
    fn bucket(&self, i: usize) -> Slot<Self::E> {
        match self.0.table().and_then(|t| t.get_bucket(i)) {
            Some(p) => Slot::Full((p.field.as_bytes(), p.value.as_bytes())),
            None => Slot::Empty,
        }
    }
    fn each(&self, f: &mut dyn FnMut(Self::E)) {
        self.0.iter().for_each(f)
    }
    fn name<'e>(&self, e: &'e Self::E) -> &'e [u8] {
        e.0
    }
    fn value(&self, e: &Self::E) -> Option<Vec<u8>> {
        Some(e.1.to_vec())
    }
}
